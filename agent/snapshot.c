/* snapshot.c — what the guest looked like before a migration: network (rtnetlink), storage
 * (libmount, libudev, the kernel log position) and clock, as JSON kept in the state dir. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/timex.h>
#include <unistd.h>

#include "cleanup.h"
#include "error.h"
#include "json.h"
#include "netlink.h"
#include "paths.h"

#define MA_KMSG_RECORD_BYTES 8192
/* A kernel log holds at most a few MiB: stop after this much in any case. */
#define MA_KMSG_MAX_BYTES (64 * 1024 * 1024)

/* ---- network ---- */

static const char *
operstate_name (guint state)
{
  static const char *const names[] = { "unknown", "notpresent", "down", "lowerlayerdown",
                                       "testing", "dormant", "up" };

  return state < G_N_ELEMENTS (names) ? names[state] : "unknown";
}

static const char *
family_name (int family)
{
  return family == AF_INET6 ? "ipv6" : "ipv4";
}

static const char *
link_name (MaNlDump *dump, int ifindex)
{
  const MaNlLink *link = ma_nl_dump_find_link (dump, ifindex);

  return link != NULL ? link->name : NULL;
}

static JsonNode *
addr_flags_to_json (guint flags)
{
  static const struct
  {
    guint flag;
    const char *name;
  } names[] = {
    { IFA_F_PERMANENT, "permanent" }, { IFA_F_TENTATIVE, "tentative" },
    { IFA_F_DADFAILED, "dadfailed" }, { IFA_F_DEPRECATED, "deprecated" },
    { IFA_F_NODAD, "nodad" },         { IFA_F_SECONDARY, "secondary" },
  };
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (flags & names[i].flag)
      json_array_add_string_element (array, names[i].name);
  return ma_json_new_array_node (array);
}

static const char *
nud_name (guint state)
{
  if (state & NUD_INCOMPLETE)
    return "incomplete";
  if (state & NUD_REACHABLE)
    return "reachable";
  if (state & NUD_STALE)
    return "stale";
  if (state & NUD_DELAY)
    return "delay";
  if (state & NUD_PROBE)
    return "probe";
  if (state & NUD_FAILED)
    return "failed";
  if (state & NUD_NOARP)
    return "noarp";
  if (state & NUD_PERMANENT)
    return "permanent";
  return "none";
}

static char *
hash_resolv_conf (void)
{
  g_autofree char *path = ma_path_build (ma_path_etcdir (), "resolv.conf", NULL);
  g_autofree char *contents = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &contents, &len, NULL))
    return NULL;
  return g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) contents, len);
}

static gboolean
is_gateway (MaNlDump *dump, const MaNlNeighbour *neigh)
{
  for (guint i = 0; i < dump->routes->len; i++)
    {
      const MaNlRoute *route = dump->routes->pdata[i];
      if (route->gateway != NULL && route->family == neigh->family
          && route->oif == neigh->ifindex && g_strcmp0 (route->gateway, neigh->address) == 0)
        return TRUE;
    }
  return FALSE;
}

JsonNode *
ma_snapshot_collect_network (GError **error)
{
  g_autoptr(MaNlDump) dump = ma_netlink_dump (error);
  JsonObject *net;
  JsonArray *links, *addrs, *routes, *neighs;
  g_autofree char *resolv = NULL;

  if (dump == NULL)
    return NULL;
  net = json_object_new ();
  links = json_array_new ();
  for (guint i = 0; i < dump->links->len; i++)
    {
      const MaNlLink *link = dump->links->pdata[i];
      g_autofree char *driver = ma_netlink_get_driver (link->name);
      JsonObject *obj = json_object_new ();

      json_object_set_int_member (obj, "ifindex", link->ifindex);
      json_object_set_string_member (obj, "name", link->name);
      if (link->kind != NULL)
        json_object_set_string_member (obj, "kind", link->kind);
      if (driver != NULL)
        json_object_set_string_member (obj, "driver", driver);
      if (link->mac != NULL)
        json_object_set_string_member (obj, "mac", link->mac);
      if (link->perm_mac != NULL)
        json_object_set_string_member (obj, "permanent-mac", link->perm_mac);
      json_object_set_boolean_member (obj, "up", (link->flags & IFF_UP) != 0);
      json_object_set_boolean_member (obj, "loopback", (link->flags & IFF_LOOPBACK) != 0);
      json_object_set_string_member (obj, "operstate", operstate_name (link->operstate));
      if (link->carrier >= 0)
        json_object_set_boolean_member (obj, "carrier", link->carrier == 1);
      json_object_set_int_member (obj, "mtu", link->mtu);
      if (link->master != 0 && link_name (dump, link->master) != NULL)
        json_object_set_string_member (obj, "master", link_name (dump, link->master));
      json_array_add_object_element (links, obj);
    }
  json_object_set_array_member (net, "links", links);

  addrs = json_array_new ();
  for (guint i = 0; i < dump->addresses->len; i++)
    {
      const MaNlAddress *addr = dump->addresses->pdata[i];
      JsonObject *obj = json_object_new ();

      json_object_set_string_member (obj, "interface", link_name (dump, addr->ifindex));
      json_object_set_string_member (obj, "family", family_name (addr->family));
      json_object_set_string_member (obj, "address", addr->address);
      json_object_set_int_member (obj, "prefixlen", addr->prefixlen);
      json_object_set_member (obj, "flags", addr_flags_to_json (addr->flags));
      json_array_add_object_element (addrs, obj);
    }
  json_object_set_array_member (net, "addresses", addrs);

  routes = json_array_new ();
  for (guint i = 0; i < dump->routes->len; i++)
    {
      const MaNlRoute *route = dump->routes->pdata[i];
      JsonObject *obj = json_object_new ();
      g_autofree char *dst = route->dst != NULL ? g_strdup_printf ("%s/%u", route->dst,
                                                                   route->dst_len)
                                                : g_strdup ("default");

      json_object_set_string_member (obj, "family", family_name (route->family));
      json_object_set_string_member (obj, "dst", dst);
      if (route->gateway != NULL)
        json_object_set_string_member (obj, "gateway", route->gateway);
      if (route->oif != 0 && link_name (dump, route->oif) != NULL)
        json_object_set_string_member (obj, "interface", link_name (dump, route->oif));
      if (route->prefsrc != NULL)
        json_object_set_string_member (obj, "prefsrc", route->prefsrc);
      json_object_set_int_member (obj, "metric", route->priority);
      json_object_set_int_member (obj, "protocol", route->protocol);
      json_array_add_object_element (routes, obj);
    }
  json_object_set_array_member (net, "routes", routes);

  /* only the gateways' entries: the rest of the cache is noise */
  neighs = json_array_new ();
  for (guint i = 0; i < dump->neighbours->len; i++)
    {
      const MaNlNeighbour *neigh = dump->neighbours->pdata[i];
      JsonObject *obj;

      if (!is_gateway (dump, neigh))
        continue;
      obj = json_object_new ();
      json_object_set_string_member (obj, "interface", link_name (dump, neigh->ifindex));
      json_object_set_string_member (obj, "address", neigh->address);
      if (neigh->lladdr != NULL)
        json_object_set_string_member (obj, "lladdr", neigh->lladdr);
      json_object_set_string_member (obj, "state", nud_name (neigh->state));
      json_array_add_object_element (neighs, obj);
    }
  json_object_set_array_member (net, "gateway-neighbours", neighs);

  resolv = hash_resolv_conf ();
  if (resolv != NULL)
    json_object_set_string_member (net, "resolv-conf-sha256", resolv);
  return ma_json_new_object_node (net);
}

/* ---- storage ---- */

static JsonNode *
collect_mounts (GError **error)
{
  g_autofree char *path = ma_path_build (ma_path_procfs (), "self", "mountinfo", NULL);
  g_autoptr(MaMntTable) table = mnt_new_table ();
  g_autoptr(MaMntIter) iter = mnt_new_iter (MNT_ITER_FORWARD);
  JsonArray *mounts;
  struct libmnt_fs *fs;
  int rc;

  rc = mnt_table_parse_file (table, path);
  if (rc != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (rc < 0 ? -rc : EINVAL),
                   "cannot read the mount table %s: %s", path, g_strerror (rc < 0 ? -rc : EINVAL));
      return NULL;
    }
  mounts = json_array_new ();
  while (mnt_table_next_fs (table, iter, &fs) == 0)
    {
      JsonObject *obj = json_object_new ();
      dev_t devno = mnt_fs_get_devno (fs);
      g_autofree char *devtext = g_strdup_printf ("%u:%u", major (devno), minor (devno));

      json_object_set_int_member (obj, "id", mnt_fs_get_id (fs));
      json_object_set_string_member (obj, "target", mnt_fs_get_target (fs));
      json_object_set_string_member (obj, "source",
                                     mnt_fs_get_source (fs) ? mnt_fs_get_source (fs) : "none");
      json_object_set_string_member (obj, "fstype",
                                     mnt_fs_get_fstype (fs) ? mnt_fs_get_fstype (fs) : "");
      json_object_set_string_member (obj, "devno", devtext);
      json_object_set_string_member (obj, "options",
                                     mnt_fs_get_vfs_options (fs) ? mnt_fs_get_vfs_options (fs)
                                                                 : "");
      json_object_set_string_member (obj, "super-options",
                                     mnt_fs_get_fs_options (fs) ? mnt_fs_get_fs_options (fs) : "");
      json_array_add_object_element (mounts, obj);
    }
  return ma_json_new_array_node (mounts);
}

static const char *
udev_value (struct udev_device *dev, const char *property, const char *sysattr)
{
  const char *value = udev_device_get_property_value (dev, property);

  if (value == NULL && sysattr != NULL)
    value = udev_device_get_sysattr_value (dev, sysattr);
  return value;
}

static JsonNode *
collect_devices (GError **error)
{
  g_autoptr(MaUdev) udev = udev_new ();
  g_autoptr(MaUdevEnumerate) enumerate = NULL;
  struct udev_list_entry *entry;
  JsonArray *devices;

  if (udev == NULL)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_UNSUPPORTED, "libudev is not usable");
      return NULL;
    }
  enumerate = udev_enumerate_new (udev);
  udev_enumerate_add_match_subsystem (enumerate, "block");
  if (udev_enumerate_scan_devices (enumerate) < 0)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_UNSUPPORTED, "cannot list block devices");
      return NULL;
    }
  devices = json_array_new ();
  udev_list_entry_foreach (entry, udev_enumerate_get_list_entry (enumerate))
    {
      g_autoptr(MaUdevDevice) dev = udev_device_new_from_syspath (
        udev, udev_list_entry_get_name (entry));
      const char *value;
      guint64 sectors = 0;
      JsonObject *obj;
      JsonArray *by_id;
      struct udev_list_entry *link;
      dev_t devno;
      g_autofree char *devtext = NULL;

      if (dev == NULL)
        continue;
      value = udev_device_get_sysattr_value (dev, "size");
      if (value != NULL)
        g_ascii_string_to_unsigned (value, 10, 0, G_MAXUINT64 / 512, &sectors, NULL);
      /* empty loop/zram/ram slots are no disks */
      if (sectors == 0)
        continue;
      devno = udev_device_get_devnum (dev);
      devtext = g_strdup_printf ("%u:%u", major (devno), minor (devno));
      obj = json_object_new ();
      json_object_set_string_member (obj, "name", udev_device_get_sysname (dev));
      json_object_set_string_member (obj, "devno", devtext);
      json_object_set_string_member (obj, "type", udev_device_get_devtype (dev) ?: "disk");
      if (udev_device_get_devnode (dev) != NULL)
        json_object_set_string_member (obj, "devnode", udev_device_get_devnode (dev));
      json_object_set_int_member (obj, "size", (gint64) (sectors * 512));
      if ((value = udev_value (dev, "ID_SERIAL", "serial")) != NULL && value[0] != '\0')
        {
          g_autofree char *serial = g_strstrip (g_strdup (value));
          json_object_set_string_member (obj, "serial", serial);
        }
      if ((value = udev_value (dev, "ID_WWN", "wwid")) != NULL && value[0] != '\0')
        json_object_set_string_member (obj, "wwn", value);
      if ((value = udev_value (dev, "ID_PATH", NULL)) != NULL)
        json_object_set_string_member (obj, "path", value);
      by_id = json_array_new ();
      udev_list_entry_foreach (link, udev_device_get_devlinks_list_entry (dev))
        {
          const char *name = udev_list_entry_get_name (link);
          if (strstr (name, "/by-id/") != NULL)
            json_array_add_string_element (by_id, name);
        }
      json_object_set_array_member (obj, "by-id", by_id);
      json_array_add_object_element (devices, obj);
    }
  return ma_json_new_array_node (devices);
}

JsonNode *
ma_snapshot_collect_storage (GError **error)
{
  g_autoptr(JsonNode) mounts = NULL;
  g_autoptr(JsonNode) devices = NULL;
  g_autoptr(GError) kmsg_error = NULL;
  JsonObject *obj;
  gint64 seq = -1;

  mounts = collect_mounts (error);
  if (mounts == NULL)
    return NULL;
  devices = collect_devices (error);
  if (devices == NULL)
    return NULL;
  obj = json_object_new ();
  json_object_set_member (obj, "mounts", g_steal_pointer (&mounts));
  json_object_set_member (obj, "devices", g_steal_pointer (&devices));
  if (ma_snapshot_scan_kmsg (-1, &seq, NULL, &kmsg_error))
    json_object_set_int_member (obj, "kmsg-seq", seq);
  else
    json_object_set_string_member (obj, "kmsg-error", kmsg_error->message);
  return ma_json_new_object_node (obj);
}

/* ---- kernel log ---- */

gboolean
ma_snapshot_kmsg_is_storage_error (const char *message)
{
  static const char *const patterns[] = {
    "I/O error",
    "EXT4-fs error",
    "EXT4-fs (", /* followed by "Remounting filesystem read-only" and the like */
    "XFS (",
    "BTRFS error",
    "BTRFS critical",
    "remounting filesystem read-only",
    "Remounting filesystem read-only",
    "critical medium error",
    "blk_update_request",
    "Aborting journal",
    NULL,
  };

  for (guint i = 0; patterns[i] != NULL; i++)
    if (strstr (message, patterns[i]) != NULL)
      {
        /* "EXT4-fs (vda1): mounted filesystem" and XFS mount notices are not errors */
        if ((g_str_equal (patterns[i], "EXT4-fs (") || g_str_equal (patterns[i], "XFS ("))
            && strstr (message, "error") == NULL && strstr (message, "read-only") == NULL
            && strstr (message, "shutdown") == NULL)
          continue;
        return TRUE;
      }
  return FALSE;
}

/* One record: "PRIO,SEQ,USEC,FLAGS;text"; continuation lines start with a space. */
static void
kmsg_line (const char *line, gint64 after, gint64 *last_seq, GPtrArray *errors)
{
  const char *semi = strchr (line, ';');
  g_auto(GStrv) fields = NULL;
  gint64 seq;

  if (line[0] == ' ' || semi == NULL)
    return;
  {
    g_autofree char *prefix = g_strndup (line, (gsize) (semi - line));
    fields = g_strsplit (prefix, ",", 4);
  }
  if (g_strv_length (fields) < 2
      || !g_ascii_string_to_signed (fields[1], 10, 0, G_MAXINT64, &seq, NULL))
    return;
  if (seq > *last_seq)
    *last_seq = seq;
  if (errors != NULL && seq > after && ma_snapshot_kmsg_is_storage_error (semi + 1))
    g_ptr_array_add (errors, g_strdup_printf ("[%" G_GINT64_FORMAT "] %s", seq, semi + 1));
}

gboolean
ma_snapshot_scan_kmsg (gint64 after, gint64 *last_seq, GPtrArray *errors, GError **error)
{
  g_autofree char *path = ma_path_build (ma_path_devdir (), "kmsg", NULL);
  g_autofree char *buf = g_malloc (MA_KMSG_RECORD_BYTES + 1);
  g_autoptr(GString) pending = g_string_new (NULL);
  gsize total = 0;
  int fd;

  *last_seq = -1;
  fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", path,
                   g_strerror (saved));
      return FALSE;
    }
  while (total < MA_KMSG_MAX_BYTES)
    {
      ssize_t n = read (fd, buf, MA_KMSG_RECORD_BYTES);
      char *nl;

      if (n < 0 && (errno == EINTR || errno == EPIPE))
        continue; /* EPIPE: records were overwritten while we read; go on */
      if (n <= 0)
        break;    /* EAGAIN: the end of the log (or of a fixture file) */
      total += (gsize) n;
      g_string_append_len (pending, buf, n);
      while ((nl = memchr (pending->str, '\n', pending->len)) != NULL)
        {
          *nl = '\0';
          kmsg_line (pending->str, after, last_seq, errors);
          g_string_erase (pending, 0, (nl - pending->str) + 1);
        }
    }
  if (pending->len > 0)
    kmsg_line (pending->str, after, last_seq, errors);
  close (fd);
  return TRUE;
}

/* ---- clock ---- */

JsonNode *
ma_snapshot_collect_clock (void)
{
  g_autofree char *rtc_path = ma_path_build (ma_path_sysfs (), "class", "rtc", "rtc0",
                                             "since_epoch", NULL);
  g_autofree char *rtc_text = NULL;
  JsonObject *obj = json_object_new ();
  struct timex tx = { 0 };
  int state;
  gint64 now = g_get_real_time ();
  guint64 rtc;

  json_object_set_double_member (obj, "realtime", (double) now / G_USEC_PER_SEC);
  if (g_file_get_contents (rtc_path, &rtc_text, NULL, NULL)
      && g_ascii_string_to_unsigned (g_strstrip (rtc_text), 10, 0, G_MAXINT64, &rtc, NULL))
    {
      json_object_set_int_member (obj, "rtc", (gint64) rtc);
      json_object_set_double_member (obj, "rtc-offset",
                                     (double) now / G_USEC_PER_SEC - (double) rtc);
    }
  state = adjtimex (&tx);
  if (state >= 0)
    {
      json_object_set_boolean_member (obj, "synchronized",
                                      state != TIME_ERROR && !(tx.status & STA_UNSYNC));
      json_object_set_int_member (obj, "adjtimex-status", tx.status);
      json_object_set_int_member (obj, "maxerror-us", tx.maxerror);
      json_object_set_int_member (obj, "esterror-us", tx.esterror);
    }
  return ma_json_new_object_node (obj);
}

/* ---- all of it ---- */

static JsonNode *
part_or_error (JsonNode *part, GError *error)
{
  JsonObject *obj;

  if (part != NULL)
    return part;
  obj = json_object_new ();
  json_object_set_string_member (obj, "error", error != NULL ? error->message : "unknown error");
  return ma_json_new_object_node (obj);
}

JsonNode *
ma_snapshot_collect (const char *reason, const char *operation)
{
  g_autoptr(GError) net_error = NULL;
  g_autoptr(GError) storage_error = NULL;
  JsonObject *obj = json_object_new ();
  JsonNode *net = ma_snapshot_collect_network (&net_error);
  JsonNode *storage = ma_snapshot_collect_storage (&storage_error);

  json_object_set_int_member (obj, "version", MA_SNAPSHOT_VERSION);
  json_object_set_int_member (obj, "taken-at", g_get_real_time () / G_USEC_PER_SEC);
  json_object_set_string_member (obj, "reason", reason);
  if (operation != NULL)
    json_object_set_string_member (obj, "operation", operation);
  json_object_set_member (obj, "network", part_or_error (net, net_error));
  json_object_set_member (obj, "storage", part_or_error (storage, storage_error));
  json_object_set_member (obj, "clock", ma_snapshot_collect_clock ());
  return ma_json_new_object_node (obj);
}

typedef struct
{
  char *reason;
  char *operation;
} CollectData;

static void
collect_data_free (CollectData *data)
{
  g_free (data->reason);
  g_free (data->operation);
  g_free (data);
}

static void
collect_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  CollectData *data = task_data;

  g_task_return_pointer (task, ma_snapshot_collect (data->reason, data->operation),
                         (GDestroyNotify) json_node_unref);
}

void
ma_snapshot_collect_async (const char *reason, const char *operation,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  CollectData *data = g_new0 (CollectData, 1);

  data->reason = g_strdup (reason);
  data->operation = g_strdup (operation);
  g_task_set_task_data (task, data, (GDestroyNotify) collect_data_free);
  g_task_set_source_tag (task, ma_snapshot_collect_async);
  g_task_run_in_thread (task, collect_thread);
}

JsonNode *
ma_snapshot_collect_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

gboolean
ma_snapshot_check (JsonNode *snapshot, GError **error)
{
  static const char *const parts[] = { "network", "storage", "clock", NULL };
  JsonObject *obj;

  if (snapshot == NULL || !JSON_NODE_HOLDS_OBJECT (snapshot))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "a snapshot must be a JSON object");
      return FALSE;
    }
  obj = json_node_get_object (snapshot);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      JsonObject *part = NULL;
      if (!ma_json_get_object (obj, parts[i], &part, error))
        return FALSE;
      if (part == NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "the snapshot has no '%s' part", parts[i]);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
ma_snapshot_save (JsonNode *snapshot, const char *state_dir, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, MA_SNAPSHOT_FILE, NULL);
  g_autofree char *text = ma_json_to_string (snapshot);

  return g_file_set_contents_full (path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}

JsonNode *
ma_snapshot_load (const char *state_dir, GError **error)
{
  g_autofree char *path = g_build_filename (state_dir, MA_SNAPSHOT_FILE, NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) local_error = NULL;
  g_autoptr(JsonNode) node = NULL;
  gsize len;

  if (!g_file_get_contents (path, &text, &len, &local_error))
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_set_error (error, MA_ERROR, MA_ERROR_NOT_FOUND, "no snapshot has been taken");
      else
        g_propagate_error (error, g_steal_pointer (&local_error));
      return NULL;
    }
  node = ma_json_parse (text, len, error);
  if (node == NULL)
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  if (!ma_snapshot_check (node, error))
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  return g_steal_pointer (&node);
}
