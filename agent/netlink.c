/* netlink.c — a plain NETLINK_ROUTE socket: dumps of links, addresses, routes and neighbours
 * into plain structs, and a link monitor whose messages all pass through one parser. */
#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>

#include "error.h"
#include "paths.h"

#define MA_NETLINK_BUFFER_BYTES (64 * 1024)

/* ---- attribute helpers ---- */

static char *
format_lladdr (const void *data, gsize len)
{
  const guint8 *bytes = data;
  GString *out;
  gboolean all_zero = TRUE;

  if (len == 0)
    return NULL;
  out = g_string_new (NULL);
  for (gsize i = 0; i < len; i++)
    {
      g_string_append_printf (out, "%s%02x", i ? ":" : "", bytes[i]);
      if (bytes[i] != 0)
        all_zero = FALSE;
    }
  if (all_zero && len == 6)
    {
      /* lo and tunnels: an all-zero address is no address */
      g_string_free (out, TRUE);
      return NULL;
    }
  return g_string_free (out, FALSE);
}

static char *
format_ip (int family, const void *data, gsize len)
{
  char text[INET6_ADDRSTRLEN];

  if ((family == AF_INET && len != 4) || (family == AF_INET6 && len != 16))
    return NULL;
  if (inet_ntop (family, data, text, sizeof text) == NULL)
    return NULL;
  return g_strdup (text);
}

static char *
attr_string (const struct rtattr *rta)
{
  gsize len = RTA_PAYLOAD (rta);

  return g_strndup (RTA_DATA (rta), len);
}

static gboolean
attr_u32 (const struct rtattr *rta, guint32 *out)
{
  if (RTA_PAYLOAD (rta) < sizeof (guint32))
    return FALSE;
  memcpy (out, RTA_DATA (rta), sizeof (guint32));
  return TRUE;
}

/* ---- links ---- */

void
ma_nl_link_clear (MaNlLink *link)
{
  g_clear_pointer (&link->name, g_free);
  g_clear_pointer (&link->kind, g_free);
  g_clear_pointer (&link->slave_kind, g_free);
  g_clear_pointer (&link->mac, g_free);
  g_clear_pointer (&link->perm_mac, g_free);
  memset (link, 0, sizeof *link);
}

void
ma_nl_link_free (MaNlLink *link)
{
  if (link == NULL)
    return;
  ma_nl_link_clear (link);
  g_free (link);
}

static void
parse_linkinfo (const struct rtattr *nest, MaNlLink *out)
{
  int len = (int) RTA_PAYLOAD (nest);

  for (const struct rtattr *rta = RTA_DATA (nest); RTA_OK (rta, len); rta = RTA_NEXT (rta, len))
    {
      if (rta->rta_type == IFLA_INFO_KIND && out->kind == NULL)
        out->kind = attr_string (rta);
      else if (rta->rta_type == IFLA_INFO_SLAVE_KIND && out->slave_kind == NULL)
        out->slave_kind = attr_string (rta);
    }
}

gboolean
ma_netlink_parse_link (const struct nlmsghdr *msg, MaNlLink *out)
{
  const struct ifinfomsg *ifi;
  int len;

  memset (out, 0, sizeof *out);
  out->carrier = -1;
  out->event = -1;
  if (msg->nlmsg_type != RTM_NEWLINK && msg->nlmsg_type != RTM_DELLINK)
    return FALSE;
  if (msg->nlmsg_len < NLMSG_LENGTH (sizeof *ifi))
    return FALSE;
  ifi = NLMSG_DATA (msg);
  out->ifindex = ifi->ifi_index;
  out->flags = ifi->ifi_flags;
  out->type = ifi->ifi_type;
  len = (int) (msg->nlmsg_len - NLMSG_LENGTH (sizeof *ifi));
  for (const struct rtattr *rta = IFLA_RTA (ifi); RTA_OK (rta, len); rta = RTA_NEXT (rta, len))
    {
      guint32 value;

      switch (rta->rta_type)
        {
        case IFLA_IFNAME:
          g_free (out->name);
          out->name = attr_string (rta);
          break;
        case IFLA_ADDRESS:
          g_free (out->mac);
          out->mac = format_lladdr (RTA_DATA (rta), RTA_PAYLOAD (rta));
          break;
        case IFLA_PERM_ADDRESS:
          g_free (out->perm_mac);
          out->perm_mac = format_lladdr (RTA_DATA (rta), RTA_PAYLOAD (rta));
          break;
        case IFLA_MTU:
          if (attr_u32 (rta, &value))
            out->mtu = value;
          break;
        case IFLA_MASTER:
          if (attr_u32 (rta, &value))
            out->master = (int) value;
          break;
        case IFLA_EVENT:
          if (attr_u32 (rta, &value))
            out->event = (int) value;
          break;
        case IFLA_OPERSTATE:
          if (RTA_PAYLOAD (rta) >= 1)
            out->operstate = *(const guint8 *) RTA_DATA (rta);
          break;
        case IFLA_CARRIER:
          if (RTA_PAYLOAD (rta) >= 1)
            out->carrier = *(const guint8 *) RTA_DATA (rta) ? 1 : 0;
          break;
        case IFLA_LINKINFO:
          parse_linkinfo (rta, out);
          break;
        default:
          break;
        }
    }
  if (out->name == NULL)
    {
      ma_nl_link_clear (out);
      return FALSE;
    }
  return TRUE;
}

/* ---- addresses, routes, neighbours ---- */

static void
nl_address_free (MaNlAddress *addr)
{
  g_free (addr->address);
  g_free (addr);
}

static MaNlAddress *
parse_address (const struct nlmsghdr *msg)
{
  const struct ifaddrmsg *ifa = NLMSG_DATA (msg);
  g_autofree char *local = NULL, *address = NULL;
  MaNlAddress *out;
  guint32 flags;
  int len;

  if (msg->nlmsg_len < NLMSG_LENGTH (sizeof *ifa))
    return NULL;
  flags = ifa->ifa_flags;
  len = (int) (msg->nlmsg_len - NLMSG_LENGTH (sizeof *ifa));
  for (const struct rtattr *rta = IFA_RTA (ifa); RTA_OK (rta, len); rta = RTA_NEXT (rta, len))
    {
      if (rta->rta_type == IFA_LOCAL && local == NULL)
        local = format_ip (ifa->ifa_family, RTA_DATA (rta), RTA_PAYLOAD (rta));
      else if (rta->rta_type == IFA_ADDRESS && address == NULL)
        address = format_ip (ifa->ifa_family, RTA_DATA (rta), RTA_PAYLOAD (rta));
      else if (rta->rta_type == IFA_FLAGS)
        attr_u32 (rta, &flags);
    }
  if (local == NULL && address == NULL)
    return NULL;
  out = g_new0 (MaNlAddress, 1);
  out->ifindex = (int) ifa->ifa_index;
  out->family = ifa->ifa_family;
  /* on point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours */
  out->address = local != NULL ? g_steal_pointer (&local) : g_steal_pointer (&address);
  out->prefixlen = ifa->ifa_prefixlen;
  out->flags = flags;
  out->scope = ifa->ifa_scope;
  return out;
}

static void
nl_route_free (MaNlRoute *route)
{
  g_free (route->dst);
  g_free (route->gateway);
  g_free (route->prefsrc);
  g_free (route);
}

static MaNlRoute *
parse_route (const struct nlmsghdr *msg)
{
  const struct rtmsg *rtm = NLMSG_DATA (msg);
  MaNlRoute *out;
  int len;

  if (msg->nlmsg_len < NLMSG_LENGTH (sizeof *rtm))
    return NULL;
  out = g_new0 (MaNlRoute, 1);
  out->family = rtm->rtm_family;
  out->table = rtm->rtm_table;
  out->dst_len = rtm->rtm_dst_len;
  out->protocol = rtm->rtm_protocol;
  out->type = rtm->rtm_type;
  len = (int) (msg->nlmsg_len - NLMSG_LENGTH (sizeof *rtm));
  for (const struct rtattr *rta = RTM_RTA (rtm); RTA_OK (rta, len); rta = RTA_NEXT (rta, len))
    {
      guint32 value;

      switch (rta->rta_type)
        {
        case RTA_TABLE:
          if (attr_u32 (rta, &value))
            out->table = value;
          break;
        case RTA_DST:
          g_free (out->dst);
          out->dst = format_ip (rtm->rtm_family, RTA_DATA (rta), RTA_PAYLOAD (rta));
          break;
        case RTA_GATEWAY:
          g_free (out->gateway);
          out->gateway = format_ip (rtm->rtm_family, RTA_DATA (rta), RTA_PAYLOAD (rta));
          break;
        case RTA_PREFSRC:
          g_free (out->prefsrc);
          out->prefsrc = format_ip (rtm->rtm_family, RTA_DATA (rta), RTA_PAYLOAD (rta));
          break;
        case RTA_OIF:
          if (attr_u32 (rta, &value))
            out->oif = (int) value;
          break;
        case RTA_PRIORITY:
          if (attr_u32 (rta, &value))
            out->priority = value;
          break;
        default:
          break;
        }
    }
  if (out->dst_len == 0)
    g_clear_pointer (&out->dst, g_free);
  return out;
}

static void
nl_neighbour_free (MaNlNeighbour *neigh)
{
  g_free (neigh->address);
  g_free (neigh->lladdr);
  g_free (neigh);
}

static MaNlNeighbour *
parse_neighbour (const struct nlmsghdr *msg)
{
  const struct ndmsg *ndm = NLMSG_DATA (msg);
  g_autoptr(GError) error = NULL;
  MaNlNeighbour *out;
  int len;

  if (msg->nlmsg_len < NLMSG_LENGTH (sizeof *ndm))
    return NULL;
  out = g_new0 (MaNlNeighbour, 1);
  out->ifindex = ndm->ndm_ifindex;
  out->family = ndm->ndm_family;
  out->state = ndm->ndm_state;
  len = (int) (msg->nlmsg_len - NLMSG_LENGTH (sizeof *ndm));
  for (const struct rtattr *rta = RTM_RTA (ndm); RTA_OK (rta, len); rta = RTA_NEXT (rta, len))
    {
      if (rta->rta_type == NDA_DST && out->address == NULL)
        out->address = format_ip (ndm->ndm_family, RTA_DATA (rta), RTA_PAYLOAD (rta));
      else if (rta->rta_type == NDA_LLADDR && out->lladdr == NULL)
        out->lladdr = format_lladdr (RTA_DATA (rta), RTA_PAYLOAD (rta));
    }
  if (out->address == NULL)
    {
      nl_neighbour_free (out);
      return NULL;
    }
  return out;
}

/* ---- dumps ---- */

static int
nl_open (guint32 groups, GError **error)
{
  struct sockaddr_nl addr = { .nl_family = AF_NETLINK, .nl_groups = groups };
  int fd = socket (AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

  if (fd < 0 || bind (fd, (struct sockaddr *) &addr, sizeof addr) < 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "netlink socket: %s",
                   g_strerror (saved));
      if (fd >= 0)
        close (fd);
      return -1;
    }
  return fd;
}

typedef gboolean (*MaNlMessageFunc) (const struct nlmsghdr *msg, gpointer user_data);

static gboolean
nl_dump (int fd, guint16 type, guint8 family, guint32 seq, MaNlMessageFunc func,
         gpointer user_data, GError **error)
{
  struct
  {
    struct nlmsghdr hdr;
    struct rtgenmsg gen;
    char pad[16];
  } req = { 0 };
  g_autofree char *buf = g_malloc (MA_NETLINK_BUFFER_BYTES);

  req.hdr.nlmsg_len = NLMSG_LENGTH (sizeof (struct rtgenmsg));
  req.hdr.nlmsg_type = type;
  req.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.hdr.nlmsg_seq = seq;
  req.gen.rtgen_family = family;
  if (send (fd, &req, req.hdr.nlmsg_len, 0) < 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "netlink request: %s",
                   g_strerror (saved));
      return FALSE;
    }
  for (;;)
    {
      ssize_t n = recv (fd, buf, MA_NETLINK_BUFFER_BYTES, 0);
      int len;

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved = n < 0 ? errno : EPIPE;
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "netlink dump: %s",
                       saved == EAGAIN ? "no answer in time" : g_strerror (saved));
          return FALSE;
        }
      len = (int) n;
      for (const struct nlmsghdr *msg = (const struct nlmsghdr *) buf; NLMSG_OK (msg, (guint) len);
           msg = NLMSG_NEXT (msg, len))
        {
          if (msg->nlmsg_seq != seq)
            continue;
          if (msg->nlmsg_type == NLMSG_DONE)
            return TRUE;
          if (msg->nlmsg_type == NLMSG_ERROR)
            {
              const struct nlmsgerr *err = NLMSG_DATA (msg);
              g_set_error (error, G_IO_ERROR, g_io_error_from_errno (-err->error),
                           "netlink dump: %s", g_strerror (-err->error));
              return FALSE;
            }
          func (msg, user_data);
        }
    }
}

static gboolean
collect_link (const struct nlmsghdr *msg, gpointer user_data)
{
  MaNlDump *dump = user_data;
  g_autoptr(MaNlLink) link = g_new0 (MaNlLink, 1);

  if (ma_netlink_parse_link (msg, link))
    g_ptr_array_add (dump->links, g_steal_pointer (&link));
  return TRUE;
}

static gboolean
collect_address (const struct nlmsghdr *msg, gpointer user_data)
{
  MaNlDump *dump = user_data;
  MaNlAddress *addr;

  if (msg->nlmsg_type == RTM_NEWADDR && (addr = parse_address (msg)) != NULL)
    g_ptr_array_add (dump->addresses, addr);
  return TRUE;
}

static gboolean
collect_route (const struct nlmsghdr *msg, gpointer user_data)
{
  MaNlDump *dump = user_data;
  MaNlRoute *route;

  if (msg->nlmsg_type != RTM_NEWROUTE || (route = parse_route (msg)) == NULL)
    return TRUE;
  if (route->table != RT_TABLE_MAIN || route->type != RTN_UNICAST)
    {
      nl_route_free (route);
      return TRUE;
    }
  g_ptr_array_add (dump->routes, route);
  return TRUE;
}

static gboolean
collect_neighbour (const struct nlmsghdr *msg, gpointer user_data)
{
  MaNlDump *dump = user_data;
  MaNlNeighbour *neigh;

  if (msg->nlmsg_type == RTM_NEWNEIGH && (neigh = parse_neighbour (msg)) != NULL)
    g_ptr_array_add (dump->neighbours, neigh);
  return TRUE;
}

MaNlDump *
ma_netlink_dump (GError **error)
{
  g_autoptr(MaNlDump) dump = g_new0 (MaNlDump, 1);
  struct timeval timeout = { .tv_sec = MA_NETLINK_DUMP_TIMEOUT_SECONDS };
  int fd;
  gboolean ok;

  dump->links = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_nl_link_free);
  dump->addresses = g_ptr_array_new_with_free_func ((GDestroyNotify) nl_address_free);
  dump->routes = g_ptr_array_new_with_free_func ((GDestroyNotify) nl_route_free);
  dump->neighbours = g_ptr_array_new_with_free_func ((GDestroyNotify) nl_neighbour_free);
  fd = nl_open (0, error);
  if (fd < 0)
    return NULL;
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ok = nl_dump (fd, RTM_GETLINK, AF_UNSPEC, 1, collect_link, dump, error)
       && nl_dump (fd, RTM_GETADDR, AF_UNSPEC, 2, collect_address, dump, error)
       && nl_dump (fd, RTM_GETROUTE, AF_UNSPEC, 3, collect_route, dump, error)
       && nl_dump (fd, RTM_GETNEIGH, AF_UNSPEC, 4, collect_neighbour, dump, error);
  close (fd);
  if (!ok)
    return NULL;
  return g_steal_pointer (&dump);
}

void
ma_nl_dump_free (MaNlDump *dump)
{
  if (dump == NULL)
    return;
  g_clear_pointer (&dump->links, g_ptr_array_unref);
  g_clear_pointer (&dump->addresses, g_ptr_array_unref);
  g_clear_pointer (&dump->routes, g_ptr_array_unref);
  g_clear_pointer (&dump->neighbours, g_ptr_array_unref);
  g_free (dump);
}

const MaNlLink *
ma_nl_dump_find_link (MaNlDump *dump, int ifindex)
{
  for (guint i = 0; i < dump->links->len; i++)
    {
      const MaNlLink *link = dump->links->pdata[i];
      if (link->ifindex == ifindex)
        return link;
    }
  return NULL;
}

/* ---- drivers ---- */

char *
ma_netlink_get_driver (const char *ifname)
{
  g_autofree char *path = NULL;
  g_autofree char *target = NULL;
  struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
  struct ifreq ifr = { 0 };
  int fd;

  if (ifname == NULL || strchr (ifname, '/') != NULL || strlen (ifname) >= IFNAMSIZ)
    return NULL;
  path = ma_path_build (ma_path_sysfs (), "class", "net", ifname, "device", "driver", NULL);
  target = g_file_read_link (path, NULL);
  if (target != NULL)
    return g_path_get_basename (target);

  fd = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return NULL;
  g_strlcpy (ifr.ifr_name, ifname, sizeof ifr.ifr_name);
  ifr.ifr_data = (void *) &info;
  if (ioctl (fd, SIOCETHTOOL, &ifr) < 0 || info.driver[0] == '\0')
    {
      close (fd);
      return NULL;
    }
  close (fd);
  return g_strndup (info.driver, sizeof info.driver);
}

/* ---- monitor ---- */

struct _MaNlMonitor
{
  int fd;
  GSource *source;
  MaNlLinkFunc func;
  gpointer user_data;
  char *buf;
};

void
ma_netlink_monitor_feed (MaNlMonitor *self, const void *buf, gsize len)
{
  int remaining = (int) MIN (len, (gsize) G_MAXINT);

  for (const struct nlmsghdr *msg = buf; NLMSG_OK (msg, (guint) remaining);
       msg = NLMSG_NEXT (msg, remaining))
    {
      MaNlLink link;

      if (!ma_netlink_parse_link (msg, &link))
        continue;
      self->func (&link, msg->nlmsg_type == RTM_DELLINK, self->user_data);
      ma_nl_link_clear (&link);
    }
}

static gboolean
monitor_on_readable (int fd, GIOCondition cond, gpointer user_data)
{
  MaNlMonitor *self = user_data;

  for (;;)
    {
      ssize_t n = recv (fd, self->buf, MA_NETLINK_BUFFER_BYTES, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && errno == ENOBUFS)
        {
          /* the kernel dropped messages: an announce burst repeats, so keep listening */
          g_warning ("netlink monitor: messages were lost (receive buffer overrun)");
          continue;
        }
      if (n <= 0)
        break;
      ma_netlink_monitor_feed (self, self->buf, (gsize) n);
    }
  return G_SOURCE_CONTINUE;
}

MaNlMonitor *
ma_netlink_monitor_new (MaNlLinkFunc func, gpointer user_data, GError **error)
{
  g_autoptr(MaNlMonitor) self = g_new0 (MaNlMonitor, 1);

  self->fd = -1;
  self->func = func;
  self->user_data = user_data;
  self->buf = g_malloc (MA_NETLINK_BUFFER_BYTES);
  self->fd = nl_open (1u << (RTNLGRP_LINK - 1), error);
  if (self->fd < 0)
    return NULL;
  self->source = g_unix_fd_source_new (self->fd, G_IO_IN);
  g_source_set_callback (self->source, G_SOURCE_FUNC (monitor_on_readable), self, NULL);
  g_source_set_name (self->source, "netlink link monitor");
  g_source_attach (self->source, g_main_context_get_thread_default ());
  return g_steal_pointer (&self);
}

void
ma_netlink_monitor_free (MaNlMonitor *self)
{
  if (self == NULL)
    return;
  if (self->source != NULL)
    {
      g_source_destroy (self->source);
      g_source_unref (self->source);
    }
  if (self->fd >= 0)
    close (self->fd);
  g_free (self->buf);
  g_free (self);
}
