/* netlink.h — a plain NETLINK_ROUTE socket: dumps of links, addresses, routes and neighbours
 * into plain structs, and a link monitor whose messages all pass through one parser. */
#pragma once

#include <glib.h>
#include <linux/netlink.h>

G_BEGIN_DECLS

/* A dump must finish within this time or it fails (the kernel answers in microseconds). */
#define MA_NETLINK_DUMP_TIMEOUT_SECONDS 5

typedef struct
{
  int ifindex;
  char *name;
  char *kind;       /* IFLA_INFO_KIND ("bond", "veth"…), NULL for a plain device */
  char *slave_kind; /* IFLA_INFO_SLAVE_KIND when enslaved */
  char *mac;        /* "aa:bb:cc:dd:ee:ff", NULL when the link has none */
  char *perm_mac;   /* IFLA_PERM_ADDRESS, NULL when the kernel does not say */
  guint flags;      /* IFF_* */
  guint type;       /* ARPHRD_* */
  guint operstate;  /* IF_OPER_* */
  int carrier;      /* 0/1, -1 when absent */
  guint mtu;
  int master;       /* ifindex, 0 when none */
  int event;        /* IFLA_EVENT_*, -1 when the message carries none */
} MaNlLink;

typedef struct
{
  int ifindex;
  int family;    /* AF_INET / AF_INET6 */
  char *address; /* text form */
  guint prefixlen;
  guint flags;   /* IFA_F_* (IFA_FLAGS when present) */
  guint scope;
} MaNlAddress;

typedef struct
{
  int family;
  guint table;
  char *dst; /* NULL for the default route */
  guint dst_len;
  char *gateway;
  char *prefsrc;
  int oif;
  guint priority;
  guint protocol;
  guint type;
} MaNlRoute;

typedef struct
{
  int ifindex;
  int family;
  char *address;
  char *lladdr;
  guint state; /* NUD_* */
} MaNlNeighbour;

typedef struct
{
  GPtrArray *links;      /* MaNlLink* */
  GPtrArray *addresses;  /* MaNlAddress* */
  GPtrArray *routes;     /* MaNlRoute*, main table, unicast only */
  GPtrArray *neighbours; /* MaNlNeighbour* */
} MaNlDump;

void ma_nl_link_clear (MaNlLink *link);
void ma_nl_link_free (MaNlLink *link);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaNlLink, ma_nl_link_free)

/* The one parser of link messages (RTM_NEWLINK/RTM_DELLINK), used by dumps and by the
 * monitor alike. Returns FALSE (and leaves *out cleared) for anything else or a malformed one. */
gboolean ma_netlink_parse_link (const struct nlmsghdr *msg, MaNlLink *out);

/* Everything at once, through a socket opened for this call only. */
MaNlDump *ma_netlink_dump (GError **error);
void ma_nl_dump_free (MaNlDump *dump);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaNlDump, ma_nl_dump_free)

const MaNlLink *ma_nl_dump_find_link (MaNlDump *dump, int ifindex);

/* "virtio_net", "e1000"… for an interface: the sysfs driver link under ma_path_sysfs(),
 * else the ETHTOOL_GDRVINFO ioctl. NULL when neither answers (lo, veth without driver). */
char *ma_netlink_get_driver (const char *ifname);

/* Link changes as they happen (RTNLGRP_LINK), on the thread-default main context. */
typedef struct _MaNlMonitor MaNlMonitor;
typedef void (*MaNlLinkFunc) (const MaNlLink *link, gboolean removed, gpointer user_data);

MaNlMonitor *ma_netlink_monitor_new (MaNlLinkFunc func, gpointer user_data, GError **error);
void ma_netlink_monitor_free (MaNlMonitor *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaNlMonitor, ma_netlink_monitor_free)
/* Hand a buffer of netlink messages to the monitor: exactly what the socket watch does with
 * every datagram it reads, so tests can feed crafted messages through the same path. */
void ma_netlink_monitor_feed (MaNlMonitor *self, const void *buf, gsize len);

G_END_DECLS
