/* validate-net.c — the network half of validation: links, MACs, MTUs, addresses and routes
 * against the snapshot, gateway probes (ARP, neighbour solicitation), DNS, TCP; and `announce`. */
#include "validate-net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/if_packet.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gio.h>

#include "error.h"
#include "json.h"
#include "netlink.h"
#include "snapshot.h"

/* Repeat an unanswered ARP request / neighbour solicitation this often within the deadline. */
#define MA_PROBE_RETRY_MS 200
/* While addresses are tentative, look at them again this often (until MA_VALIDATE_DAD_WAIT_MS). */
#define MA_DAD_POLL_MS 50

typedef struct __attribute__ ((packed))
{
  struct arphdr hdr;
  guint8 sha[ETH_ALEN];
  guint8 spa[4];
  guint8 tha[ETH_ALEN];
  guint8 tpa[4];
} MaArpPacket;

/* ---- JSON helpers (snapshots may come from disk: every access is type-checked) ---- */

static JsonObject *
find_by (JsonArray *array, const char *member, const char *value)
{
  for (guint i = 0; i < ma_json_array_length (array); i++)
    {
      JsonObject *obj = ma_json_array_object (array, i);
      if (obj != NULL && g_strcmp0 (ma_json_string_or_null (obj, member), value) == 0)
        return obj;
    }
  return NULL;
}

static gboolean
has_flag (JsonObject *addr, const char *flag)
{
  JsonArray *flags = ma_json_array_or_null (addr, "flags");

  for (guint i = 0; i < ma_json_array_length (flags); i++)
    {
      JsonNode *node = json_array_get_element (flags, i);
      if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING
          && g_strcmp0 (json_node_get_string (node), flag) == 0)
        return TRUE;
    }
  return FALSE;
}

static void
set_cause (MaCheck *check, const char *cause)
{
  g_free (check->caused_by);
  check->caused_by = g_strdup (cause);
}

/* The failed check on an interface that explains a consequence, or NULL. */
static const char *
interface_cause (MaReport *report, const char *ifname)
{
  char name[IFNAMSIZ + 32];
  static const char *const kinds[] = { "link", "addresses", "mac", NULL };

  if (ifname == NULL)
    return NULL;
  for (guint i = 0; kinds[i] != NULL; i++)
    {
      g_snprintf (name, sizeof name, "%s:%s", kinds[i], ifname);
      if (ma_report_failed (report, name))
        return ma_report_find (report, name)->name;
    }
  return NULL;
}

/* ---- links, MACs, MTUs, addresses ---- */

static void
diff_link (JsonObject *b, JsonObject *n, const char *ifname, MaReport *report)
{
  g_autofree char *name = g_strdup_printf ("link:%s", ifname);
  gint64 started = g_get_monotonic_time ();
  const char *op_b = ma_json_string_or_null (b, "operstate"),
             *op_n = ma_json_string_or_null (n, "operstate");

  if (n == NULL)
    ma_report_add (report, name, MA_CHECK_FAIL, started, "the interface is gone");
  else if (ma_json_bool_or (b, "up", FALSE) && !ma_json_bool_or (n, "up", FALSE))
    ma_report_add (report, name, MA_CHECK_FAIL, started,
                   "administratively down (it was up)");
  else if (ma_json_bool_or (b, "carrier", FALSE) && !ma_json_bool_or (n, "carrier", TRUE))
    ma_report_add (report, name, MA_CHECK_FAIL, started, "no carrier (it had one)");
  else if ((g_strcmp0 (op_b, "up") == 0 || g_strcmp0 (op_b, "unknown") == 0)
           && g_strcmp0 (op_n, "up") != 0 && g_strcmp0 (op_n, "unknown") != 0)
    ma_report_add (report, name, MA_CHECK_FAIL, started, "operational state %s (it was %s)",
                   op_n ? op_n : "?", op_b);
  else if (!ma_json_bool_or (b, "up", FALSE))
    ma_report_add (report, name, MA_CHECK_PASS, started, "down, as in the snapshot");
  else
    ma_report_add (report, name, MA_CHECK_PASS, started, "up, carrier, operational state %s",
                   op_n ? op_n : "?");
}

static void
diff_value (JsonObject *b, JsonObject *n, const char *ifname, const char *kind,
            const char *member, MaReport *report)
{
  g_autofree char *name = g_strdup_printf ("%s:%s", kind, ifname);
  g_autofree char *link = g_strdup_printf ("link:%s", ifname);
  gint64 started = g_get_monotonic_time ();
  g_autofree char *vb = NULL, *vn = NULL;
  MaCheck *check;

  if (!json_object_has_member (b, member))
    return;
  if (n == NULL)
    {
      check = ma_report_add (report, name, MA_CHECK_FAIL, started, "the interface is gone");
      set_cause (check, link);
      return;
    }
  vb = ma_json_string_or_null (b, member)
           ? g_strdup (ma_json_string_or_null (b, member))
           : g_strdup_printf ("%" G_GINT64_FORMAT, ma_json_int_or (b, member, -1));
  vn = !json_object_has_member (n, member) ? g_strdup ("none")
       : ma_json_string_or_null (n, member)
           ? g_strdup (ma_json_string_or_null (n, member))
           : g_strdup_printf ("%" G_GINT64_FORMAT, ma_json_int_or (n, member, -1));
  if (g_strcmp0 (vb, vn) != 0)
    ma_report_add (report, name, MA_CHECK_FAIL, started, "%s changed from %s to %s",
                   g_str_equal (kind, "mac") ? "MAC" : "MTU", vb, vn);
  else
    ma_report_add (report, name, MA_CHECK_PASS, started, "%s %s",
                   g_str_equal (kind, "mac") ? "MAC" : "MTU", vn);
}

/* The address of `now` on ifname that is `address`, or NULL. */
static JsonObject *
find_address (JsonArray *now, const char *ifname, const char *address)
{
  for (guint j = 0; j < ma_json_array_length (now); j++)
    {
      JsonObject *c = ma_json_array_object (now, j);
      if (c != NULL && g_strcmp0 (ma_json_string_or_null (c, "interface"), ifname) == 0
          && g_strcmp0 (ma_json_string_or_null (c, "address"), address) == 0)
        return c;
    }
  return NULL;
}

/* TRUE when every address of `family` that the snapshot had on ifname is there in `now`, not
 * tentative and not DAD-failed: a failed addresses check on ifname is then about the other
 * family alone (IPv6 in duplicate address detection says nothing about IPv4). */
static gboolean
family_addresses_usable (JsonArray *before, JsonArray *now, const char *ifname,
                         const char *family)
{
  for (guint i = 0; i < ma_json_array_length (before); i++)
    {
      JsonObject *b = ma_json_array_object (before, i);
      JsonObject *n;
      const char *address = ma_json_string_or_null (b, "address");

      if (b == NULL || address == NULL || has_flag (b, "dadfailed")
          || g_strcmp0 (ma_json_string_or_null (b, "interface"), ifname) != 0
          || g_strcmp0 (ma_json_string_or_null (b, "family"), family) != 0)
        continue;
      n = find_address (now, ifname, address);
      if (n == NULL || has_flag (n, "dadfailed") || has_flag (n, "tentative"))
        return FALSE;
    }
  return TRUE;
}

/* waited_since is 0 in the pure comparison, where a tentative address is a warning (nothing
 * waited for it yet); in a live validation it is when the wait for duplicate address detection
 * began, and an address still tentative then is a failure: the kernel neither sends from it nor
 * accepts traffic for it. */
static void
diff_addresses (JsonArray *before, JsonArray *now, const char *ifname, gboolean link_gone,
                gint64 waited_since, MaReport *report)
{
  g_autofree char *name = g_strdup_printf ("addresses:%s", ifname);
  g_autoptr(GString) missing = g_string_new (NULL);
  g_autoptr(GString) dadfailed = g_string_new (NULL);
  g_autoptr(GString) tentative = g_string_new (NULL);
  gint64 started = waited_since != 0 ? waited_since : g_get_monotonic_time ();
  double waited = waited_since != 0
                    ? (double) (g_get_monotonic_time () - waited_since) / G_USEC_PER_SEC
                    : 0;
  gboolean only_link_local = TRUE;
  guint count = 0;
  MaCheck *check;

  for (guint i = 0; i < ma_json_array_length (before); i++)
    {
      JsonObject *b = ma_json_array_object (before, i);
      const char *address = ma_json_string_or_null (b, "address");
      JsonObject *n = NULL;

      if (b == NULL || g_strcmp0 (ma_json_string_or_null (b, "interface"), ifname) != 0
          || address == NULL || has_flag (b, "dadfailed"))
        continue;
      count++;
      n = find_address (now, ifname, address);
      if (n == NULL)
        {
          g_string_append_printf (missing, "%s%s/%" G_GINT64_FORMAT, missing->len ? ", " : "",
                                  address, ma_json_int_or (b, "prefixlen", 0));
          if (!g_str_has_prefix (address, "fe80:"))
            only_link_local = FALSE;
        }
      else if (has_flag (n, "dadfailed"))
        g_string_append_printf (dadfailed, "%s%s", dadfailed->len ? ", " : "", address);
      else if (has_flag (n, "tentative"))
        g_string_append_printf (tentative, "%s%s", tentative->len ? ", " : "", address);
    }
  if (count == 0)
    return;
  if (missing->len > 0 || dadfailed->len > 0)
    {
      g_autofree char *mac = g_strdup_printf ("mac:%s", ifname);
      g_autofree char *link = g_strdup_printf ("link:%s", ifname);
      check = ma_report_add (report, name, MA_CHECK_FAIL, started, "%s%s%s%s%s",
                             missing->len ? "missing: " : "", missing->str,
                             missing->len && dadfailed->len ? "; " : "",
                             dadfailed->len ? "duplicate address detection failed: " : "",
                             dadfailed->str);
      if (link_gone || ma_report_failed (report, link))
        set_cause (check, link);
      else if (dadfailed->len == 0 && only_link_local && ma_report_failed (report, mac))
        set_cause (check, mac); /* link-local addresses follow the MAC */
    }
  else if (tentative->len > 0 && waited_since != 0)
    ma_report_add (report, name, MA_CHECK_FAIL, started,
                   "still tentative (duplicate address detection unfinished after %.1f s): %s",
                   waited, tentative->str);
  else if (tentative->len > 0)
    ma_report_add (report, name, MA_CHECK_WARN, started,
                   "still in duplicate address detection: %s", tentative->str);
  else if (waited_since != 0)
    ma_report_add (report, name, MA_CHECK_PASS, started,
                   "%u address%s present (duplicate address detection finished after %.1f s)",
                   count, count == 1 ? "" : "es", waited);
  else
    ma_report_add (report, name, MA_CHECK_PASS, started, "%u address%s present", count,
                   count == 1 ? "" : "es");
}

/* Interfaces (names, no repeats) with an address of the snapshot that is tentative in `now`,
 * whose link and addresses checks did not fail (without a carrier DAD does not progress; an
 * address already missing or DAD-failed decides the verdict, so no waiting for the rest). */
static GPtrArray *
tentative_interfaces (JsonArray *before, JsonArray *now, MaReport *report)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < ma_json_array_length (before); i++)
    {
      JsonObject *b = ma_json_array_object (before, i);
      const char *ifname = ma_json_string_or_null (b, "interface");
      const char *address = ma_json_string_or_null (b, "address");
      g_autofree char *link = NULL;
      g_autofree char *addresses = NULL;
      JsonObject *n;

      if (b == NULL || ifname == NULL || address == NULL || has_flag (b, "dadfailed")
          || g_ptr_array_find_with_equal_func (out, ifname, g_str_equal, NULL))
        continue;
      link = g_strdup_printf ("link:%s", ifname);
      addresses = g_strdup_printf ("addresses:%s", ifname);
      n = find_address (now, ifname, address);
      if (n != NULL && has_flag (n, "tentative") && !has_flag (n, "dadfailed")
          && !ma_report_failed (report, link) && !ma_report_failed (report, addresses))
        g_ptr_array_add (out, g_strdup (ifname));
    }
  return out;
}

static gboolean
any_of (GPtrArray *names, GPtrArray *among)
{
  for (guint i = 0; i < names->len; i++)
    if (g_ptr_array_find_with_equal_func (among, names->pdata[i], g_str_equal, NULL))
      return TRUE;
  return FALSE;
}

/* The check added last, a second judgement, takes the place of the earlier one of its name. */
static void
replace_check (MaReport *report, const char *name)
{
  GPtrArray *checks = ma_report_get_checks (report);
  guint last;

  if (checks->len < 2)
    return;
  last = checks->len - 1;
  for (guint i = 0; i < last; i++)
    {
      MaCheck *check = checks->pdata[i];
      if (g_strcmp0 (check->name, name) != 0)
        continue;
      checks->pdata[i] = checks->pdata[last];
      checks->pdata[last] = check;
      g_ptr_array_remove_index (checks, last);
      return;
    }
}

/* After a resume (a link that flapped, an address re-added) IPv6 addresses can be tentative:
 * not a failure yet, nor a pass. Wait, on the validation's worker thread and at most
 * MA_VALIDATE_DAD_WAIT_MS, until duplicate address detection has settled on every interface
 * that has such an address, then judge those interfaces' addresses again: present, DAD failed,
 * or still tentative at the deadline. */
static void
settle_dad (JsonObject *before, JsonObject *now, MaReport *report)
{
  JsonArray *addrs_b = ma_json_array_or_null (before, "addresses");
  g_autoptr(GPtrArray) waiting = tentative_interfaces (addrs_b,
                                                       ma_json_array_or_null (now, "addresses"),
                                                       report);
  gint64 since = g_get_monotonic_time ();
  gint64 deadline = since + (gint64) MA_VALIDATE_DAD_WAIT_MS * 1000;
  g_autoptr(JsonNode) fresh = NULL;
  JsonArray *addrs_n;

  if (waiting->len == 0)
    return;
  for (;;)
    {
      g_autoptr(GPtrArray) still = NULL;
      g_autoptr(JsonNode) net = NULL;
      gint64 left = deadline - g_get_monotonic_time ();

      g_usleep ((gulong) CLAMP (left, 0, MA_DAD_POLL_MS * 1000));
      net = ma_snapshot_collect_network (NULL);
      if (net != NULL)
        {
          g_clear_pointer (&fresh, json_node_unref);
          fresh = g_steal_pointer (&net);
          still = tentative_interfaces (addrs_b,
                                        ma_json_array_or_null (json_node_get_object (fresh),
                                                               "addresses"),
                                        report);
        }
      if (still != NULL && !any_of (waiting, still))
        break;
      if (g_get_monotonic_time () >= deadline)
        break;
    }
  if (fresh == NULL)
    return; /* no netlink answer at all: the first judgement stands */
  addrs_n = ma_json_array_or_null (json_node_get_object (fresh), "addresses");
  for (guint i = 0; i < waiting->len; i++)
    {
      g_autofree char *name = g_strdup_printf ("addresses:%s", (char *) waiting->pdata[i]);
      guint len = ma_report_get_checks (report)->len;

      diff_addresses (addrs_b, addrs_n, waiting->pdata[i], FALSE, since, report);
      if (ma_report_get_checks (report)->len > len)
        replace_check (report, name);
    }
}

/* ---- routes ---- */

static gboolean
same_route (JsonObject *a, JsonObject *b)
{
  return g_strcmp0 (ma_json_string_or_null (a, "family"), ma_json_string_or_null (b, "family")) == 0
         && g_strcmp0 (ma_json_string_or_null (a, "dst"), ma_json_string_or_null (b, "dst")) == 0
         && g_strcmp0 (ma_json_string_or_null (a, "gateway"), ma_json_string_or_null (b, "gateway"))
                == 0
         && g_strcmp0 (ma_json_string_or_null (a, "interface"),
                       ma_json_string_or_null (b, "interface"))
                == 0;
}

static JsonObject *
find_default (JsonArray *routes, const char *family, JsonObject *like)
{
  JsonObject *any = NULL;

  for (guint i = 0; i < ma_json_array_length (routes); i++)
    {
      JsonObject *r = ma_json_array_object (routes, i);
      if (r == NULL || g_strcmp0 (ma_json_string_or_null (r, "dst"), "default") != 0
          || g_strcmp0 (ma_json_string_or_null (r, "family"), family) != 0)
        continue;
      if (like != NULL && same_route (r, like))
        return r;
      if (any == NULL)
        any = r;
    }
  return any;
}

static void
diff_routes (JsonArray *before, JsonArray *now, MaReport *report)
{
  static const char *const families[] = { "ipv4", "ipv6", NULL };
  g_autoptr(GString) missing = g_string_new (NULL);
  const char *cause = NULL;
  gboolean all_explained = TRUE;
  gint64 started;
  guint count = 0;

  for (guint f = 0; families[f] != NULL; f++)
    {
      g_autofree char *name = g_strdup_printf ("default-route:%s", families[f]);
      JsonObject *b = find_default (before, families[f], NULL);
      JsonObject *n;

      started = g_get_monotonic_time ();
      if (b == NULL)
        continue;
      n = find_default (now, families[f], b);
      if (n == NULL)
        {
          MaCheck *check = ma_report_add (report, name, MA_CHECK_FAIL, started,
                                          "no default route (it was via %s dev %s)",
                                          ma_json_string_or_null (b, "gateway") ?: "-",
                                          ma_json_string_or_null (b, "interface") ?: "-");
          set_cause (check, interface_cause (report, ma_json_string_or_null (b, "interface")));
        }
      else if (!same_route (b, n))
        ma_report_add (report, name, MA_CHECK_WARN, started,
                       "now via %s dev %s (it was via %s dev %s)",
                       ma_json_string_or_null (n, "gateway") ?: "-",
                       ma_json_string_or_null (n, "interface") ?: "-",
                       ma_json_string_or_null (b, "gateway") ?: "-",
                       ma_json_string_or_null (b, "interface") ?: "-");
      else
        ma_report_add (report, name, MA_CHECK_PASS, started, "via %s dev %s",
                       ma_json_string_or_null (n, "gateway") ?: "-",
                       ma_json_string_or_null (n, "interface") ?: "-");
    }

  started = g_get_monotonic_time ();
  for (guint i = 0; i < ma_json_array_length (before); i++)
    {
      JsonObject *b = ma_json_array_object (before, i);
      gboolean found = FALSE;

      if (b == NULL || g_strcmp0 (ma_json_string_or_null (b, "dst"), "default") == 0)
        continue;
      count++;
      for (guint j = 0; j < ma_json_array_length (now) && !found; j++)
        found = ma_json_array_object (now, j) != NULL
                && same_route (b, ma_json_array_object (now, j));
      if (!found)
        {
          const char *why = interface_cause (report, ma_json_string_or_null (b, "interface"));
          g_string_append_printf (missing, "%s%s%s%s dev %s", missing->len ? ", " : "",
                                  ma_json_string_or_null (b, "dst") ?: "?",
                                  ma_json_string_or_null (b, "gateway") ? " via " : "",
                                  ma_json_string_or_null (b, "gateway") ?: "",
                                  ma_json_string_or_null (b, "interface") ?: "-");
          if (why == NULL)
            all_explained = FALSE;
          else if (cause == NULL)
            cause = why;
        }
    }
  if (missing->len > 0)
    {
      MaCheck *check = ma_report_add (report, "routes", MA_CHECK_FAIL, started, "missing: %s",
                                      missing->str);
      if (all_explained)
        set_cause (check, cause);
    }
  else if (count > 0)
    ma_report_add (report, "routes", MA_CHECK_PASS, started, "%u route%s present", count,
                   count == 1 ? "" : "s");
}

void
ma_validate_net_diff (JsonObject *before, JsonObject *now, MaReport *report)
{
  JsonArray *links_b = ma_json_array_or_null (before, "links"),
            *links_n = ma_json_array_or_null (now, "links");
  JsonArray *addrs_b = ma_json_array_or_null (before, "addresses"),
            *addrs_n = ma_json_array_or_null (now, "addresses");
  const char *resolv_b = ma_json_string_or_null (before, "resolv-conf-sha256");
  const char *resolv_n = ma_json_string_or_null (now, "resolv-conf-sha256");
  gint64 started;

  for (guint i = 0; i < ma_json_array_length (links_b); i++)
    {
      JsonObject *b = ma_json_array_object (links_b, i);
      const char *ifname = ma_json_string_or_null (b, "name");
      JsonObject *n;

      if (b == NULL || ifname == NULL || ma_json_bool_or (b, "loopback", FALSE))
        continue;
      n = find_by (links_n, "name", ifname);
      diff_link (b, n, ifname, report);
      diff_value (b, n, ifname, "mac", "mac", report);
      diff_value (b, n, ifname, "mtu", "mtu", report);
    }
  /* addresses after every link, so that their causes are known */
  for (guint i = 0; i < ma_json_array_length (links_b); i++)
    {
      JsonObject *b = ma_json_array_object (links_b, i);
      const char *ifname = ma_json_string_or_null (b, "name");

      if (b == NULL || ifname == NULL || ma_json_bool_or (b, "loopback", FALSE))
        continue;
      diff_addresses (addrs_b, addrs_n, ifname, find_by (links_n, "name", ifname) == NULL, 0,
                      report);
    }
  diff_routes (ma_json_array_or_null (before, "routes"), ma_json_array_or_null (now, "routes"),
               report);

  started = g_get_monotonic_time ();
  if (resolv_b != NULL && resolv_n == NULL)
    ma_report_add (report, "dns:resolv-conf", MA_CHECK_WARN, started,
                   "resolv.conf is gone or unreadable");
  else if (resolv_b != NULL && g_strcmp0 (resolv_b, resolv_n) != 0)
    ma_report_add (report, "dns:resolv-conf", MA_CHECK_WARN, started,
                   "resolv.conf changed since the snapshot");
  else if (resolv_b != NULL)
    ma_report_add (report, "dns:resolv-conf", MA_CHECK_PASS, started, "unchanged");
}

/* ---- gateway probes ---- */

static gboolean
parse_mac (const char *text, guint8 mac[ETH_ALEN])
{
  unsigned int b[ETH_ALEN];

  if (text == NULL
      || sscanf (text, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6
      || strlen (text) != 17)
    return FALSE;
  for (guint i = 0; i < ETH_ALEN; i++)
    mac[i] = (guint8) b[i];
  return TRUE;
}

static char *
format_mac (const guint8 *mac)
{
  return g_strdup_printf ("%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                          mac[4], mac[5]);
}

static gboolean
set_errno_error (GError **error, int saved, const char *what)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", what,
               g_strerror (saved));
  return FALSE;
}

static gboolean
interface_mac (int fd, const char *ifname, int *ifindex, guint8 mac[ETH_ALEN], GError **error)
{
  struct ifreq ifr = { 0 };

  g_strlcpy (ifr.ifr_name, ifname, sizeof ifr.ifr_name);
  if (ioctl (fd, SIOCGIFINDEX, &ifr) < 0)
    return set_errno_error (error, errno, ifname);
  *ifindex = ifr.ifr_ifindex;
  if (ioctl (fd, SIOCGIFHWADDR, &ifr) < 0)
    return set_errno_error (error, errno, ifname);
  if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_UNSUPPORTED, "%s is not an Ethernet interface",
                   ifname);
      return FALSE;
    }
  memcpy (mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
  return TRUE;
}

/* An IPv4 address of the interface (any will do as the ARP sender), or 0.0.0.0: an ARP probe. */
static struct in_addr
interface_ipv4 (int fd, const char *ifname)
{
  struct ifreq ifr = { 0 };
  struct in_addr addr = { 0 };

  g_strlcpy (ifr.ifr_name, ifname, sizeof ifr.ifr_name);
  if (ioctl (fd, SIOCGIFADDR, &ifr) == 0 && ifr.ifr_addr.sa_family == AF_INET)
    addr = ((struct sockaddr_in *) &ifr.ifr_addr)->sin_addr;
  return addr;
}

static int
open_packet_socket (int ifindex, GError **error)
{
  struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons (ETH_P_ARP),
                             .sll_ifindex = ifindex };
  int fd = socket (AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons (ETH_P_ARP));

  if (fd < 0)
    {
      set_errno_error (error, errno, "AF_PACKET socket");
      return -1;
    }
  if (bind (fd, (struct sockaddr *) &sll, sizeof sll) < 0)
    {
      set_errno_error (error, errno, "AF_PACKET bind");
      close (fd);
      return -1;
    }
  return fd;
}

static gboolean
send_arp (int fd, int ifindex, guint16 op, const guint8 mac[ETH_ALEN], struct in_addr sender,
          struct in_addr target, GError **error)
{
  MaArpPacket pkt = { 0 };
  struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons (ETH_P_ARP),
                            .sll_ifindex = ifindex, .sll_halen = ETH_ALEN };

  memset (to.sll_addr, 0xff, ETH_ALEN);
  pkt.hdr.ar_hrd = htons (ARPHRD_ETHER);
  pkt.hdr.ar_pro = htons (ETH_P_IP);
  pkt.hdr.ar_hln = ETH_ALEN;
  pkt.hdr.ar_pln = 4;
  pkt.hdr.ar_op = htons (op);
  memcpy (pkt.sha, mac, ETH_ALEN);
  memcpy (pkt.spa, &sender, 4);
  memcpy (pkt.tpa, &target, 4);
  if (sendto (fd, &pkt, sizeof pkt, 0, (struct sockaddr *) &to, sizeof to) < 0)
    return set_errno_error (error, errno, "sending ARP");
  return TRUE;
}

static gboolean
probe_arp (const char *ifname, struct in_addr gateway, guint timeout_ms, char **lladdr,
           GError **error)
{
  guint8 mac[ETH_ALEN];
  int ifindex = 0, fd, ctl;
  struct in_addr source;
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gint64 next_send = 0;

  ctl = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ctl < 0)
    return set_errno_error (error, errno, "socket");
  if (!interface_mac (ctl, ifname, &ifindex, mac, error))
    {
      close (ctl);
      return FALSE;
    }
  source = interface_ipv4 (ctl, ifname);
  close (ctl);
  fd = open_packet_socket (ifindex, error);
  if (fd < 0)
    return FALSE;
  for (;;)
    {
      gint64 now = g_get_monotonic_time ();
      struct pollfd pfd = { .fd = fd, .events = POLLIN };
      MaArpPacket reply;
      int wait_ms;

      if (now >= deadline)
        break;
      if (now >= next_send)
        {
          if (!send_arp (fd, ifindex, ARPOP_REQUEST, mac, source, gateway, error))
            {
              close (fd);
              return FALSE;
            }
          next_send = now + MA_PROBE_RETRY_MS * 1000;
        }
      wait_ms = (int) ((MIN (deadline, next_send) - now + 999) / 1000);
      if (poll (&pfd, 1, wait_ms) <= 0)
        continue;
      if (recv (fd, &reply, sizeof reply, MSG_DONTWAIT) < (ssize_t) sizeof reply)
        continue;
      if (ntohs (reply.hdr.ar_op) == ARPOP_REPLY && memcmp (reply.spa, &gateway, 4) == 0)
        {
          *lladdr = format_mac (reply.sha);
          close (fd);
          return TRUE;
        }
    }
  close (fd);
  g_set_error (error, MA_ERROR, MA_ERROR_TIMEOUT, "no ARP reply from %s on %s within %u ms",
               inet_ntoa (gateway), ifname, timeout_ms);
  return FALSE;
}

static int
open_icmp6_socket (const char *ifname, int type, GError **error)
{
  struct icmp6_filter filter;
  int hops = 255;
  int fd = socket (AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);

  if (fd < 0)
    {
      set_errno_error (error, errno, "ICMPv6 socket");
      return -1;
    }
  ICMP6_FILTER_SETBLOCKALL (&filter);
  if (type != 0)
    ICMP6_FILTER_SETPASS (type, &filter);
  if (setsockopt (fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t) strlen (ifname)) < 0
      || setsockopt (fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) < 0
      || setsockopt (fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) < 0
      || setsockopt (fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops) < 0)
    {
      set_errno_error (error, errno, "ICMPv6 socket options");
      close (fd);
      return -1;
    }
  return fd;
}

/* The source of our neighbour solicitations: an IPv6 address of the interface that has passed
 * duplicate address detection, link-local first. A tentative (or optimistic) or DAD-failed
 * address must not be one (RFC 4861, 4862, 4429), and when the kernel is left to choose among
 * only those it refuses with EADDRNOTAVAIL: that is a fact about our addresses, never about the
 * gateway, and the error says which addresses are not usable yet. */
static gboolean
nd_source (const char *ifname, int ifindex, struct sockaddr_in6 *source, GError **error)
{
  g_autoptr(MaNlDump) dump = ma_netlink_dump (error);
  g_autoptr(GString) unusable = g_string_new (NULL);
  const MaNlAddress *best = NULL;

  if (dump == NULL)
    return FALSE;
  for (guint i = 0; i < dump->addresses->len; i++)
    {
      const MaNlAddress *a = dump->addresses->pdata[i];

      if (a->family != AF_INET6 || a->ifindex != ifindex || a->address == NULL)
        continue;
      if (a->flags & (IFA_F_TENTATIVE | IFA_F_OPTIMISTIC | IFA_F_DADFAILED))
        {
          g_string_append_printf (unusable, "%s%s (%s)", unusable->len ? ", " : "", a->address,
                                  (a->flags & IFA_F_DADFAILED) ? "DAD failed" : "tentative");
          continue;
        }
      if (best == NULL || (a->scope == RT_SCOPE_LINK && best->scope != RT_SCOPE_LINK))
        best = a;
    }
  if (best == NULL || inet_pton (AF_INET6, best->address, &source->sin6_addr) != 1)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_GENERIC,
                   "no neighbour solicitation sent: %s has no IPv6 address that passed duplicate "
                   "address detection%s%s",
                   ifname, unusable->len ? ": " : "", unusable->str);
      return FALSE;
    }
  source->sin6_family = AF_INET6;
  source->sin6_scope_id = best->scope == RT_SCOPE_LINK ? (guint32) ifindex : 0;
  return TRUE;
}

static gboolean
probe_nd (const char *ifname, const struct in6_addr *gateway, guint timeout_ms, char **lladdr,
          GError **error)
{
  struct
  {
    struct nd_neighbor_solicit ns;
    struct nd_opt_hdr opt;
    guint8 mac[ETH_ALEN];
  } __attribute__ ((packed)) pkt = { 0 };
  struct sockaddr_in6 to = { .sin6_family = AF_INET6 };
  struct sockaddr_in6 from = { .sin6_family = AF_INET6 };
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gint64 next_send = 0;
  guint8 mac[ETH_ALEN];
  char text[INET6_ADDRSTRLEN];
  int ifindex = 0, fd, ctl;

  ctl = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ctl < 0)
    return set_errno_error (error, errno, "socket");
  if (!interface_mac (ctl, ifname, &ifindex, mac, error))
    {
      close (ctl);
      return FALSE;
    }
  close (ctl);
  if (!nd_source (ifname, ifindex, &from, error))
    return FALSE;
  fd = open_icmp6_socket (ifname, ND_NEIGHBOR_ADVERT, error);
  if (fd < 0)
    return FALSE;
  if (bind (fd, (struct sockaddr *) &from, sizeof from) < 0)
    {
      /* it went tentative (or away) since nd_source looked */
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "no neighbour solicitation sent: its source %s on %s: %s",
                   inet_ntop (AF_INET6, &from.sin6_addr, text, sizeof text), ifname,
                   g_strerror (saved));
      close (fd);
      return FALSE;
    }
  /* solicited-node multicast: ff02::1:ffXX:XXXX */
  inet_pton (AF_INET6, "ff02::1:ff00:0", &to.sin6_addr);
  memcpy (&to.sin6_addr.s6_addr[13], &gateway->s6_addr[13], 3);
  to.sin6_scope_id = (guint32) ifindex;
  pkt.ns.nd_ns_type = ND_NEIGHBOR_SOLICIT;
  pkt.ns.nd_ns_target = *gateway;
  pkt.opt.nd_opt_type = ND_OPT_SOURCE_LINKADDR;
  pkt.opt.nd_opt_len = 1;
  memcpy (pkt.mac, mac, ETH_ALEN);
  for (;;)
    {
      gint64 now = g_get_monotonic_time ();
      struct pollfd pfd = { .fd = fd, .events = POLLIN };
      guint8 buf[1500];
      const struct nd_neighbor_advert *na = (const void *) buf;
      ssize_t n;
      int wait_ms;

      if (now >= deadline)
        break;
      if (now >= next_send)
        {
          if (sendto (fd, &pkt, sizeof pkt, 0, (struct sockaddr *) &to, sizeof to) < 0)
            {
              set_errno_error (error, errno, "sending a neighbour solicitation");
              close (fd);
              return FALSE;
            }
          next_send = now + MA_PROBE_RETRY_MS * 1000;
        }
      wait_ms = (int) ((MIN (deadline, next_send) - now + 999) / 1000);
      if (poll (&pfd, 1, wait_ms) <= 0)
        continue;
      n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < (ssize_t) sizeof *na || na->nd_na_type != ND_NEIGHBOR_ADVERT
          || memcmp (&na->nd_na_target, gateway, sizeof *gateway) != 0)
        continue;
      /* the target link-layer address option, when present */
      for (gsize off = sizeof *na; off + 8 <= (gsize) n;)
        {
          const struct nd_opt_hdr *opt = (const void *) (buf + off);
          if (opt->nd_opt_len == 0)
            break;
          if (opt->nd_opt_type == ND_OPT_TARGET_LINKADDR && off + 8 <= (gsize) n)
            {
              *lladdr = format_mac (buf + off + 2);
              break;
            }
          off += (gsize) opt->nd_opt_len * 8;
        }
      if (*lladdr == NULL)
        *lladdr = g_strdup ("(no link-layer address given)");
      close (fd);
      return TRUE;
    }
  close (fd);
  g_set_error (error, MA_ERROR, MA_ERROR_TIMEOUT,
               "no neighbour advertisement from %s on %s within %u ms",
               inet_ntop (AF_INET6, gateway, text, sizeof text), ifname, timeout_ms);
  return FALSE;
}

gboolean
ma_net_probe_gateway (const char *ifname, const char *gateway, guint timeout_ms, char **lladdr,
                      GError **error)
{
  struct in_addr v4;
  struct in6_addr v6;

  *lladdr = NULL;
  if (ifname == NULL || strlen (ifname) >= IFNAMSIZ)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "bad interface name");
      return FALSE;
    }
  if (inet_pton (AF_INET, gateway, &v4) == 1)
    return probe_arp (ifname, v4, timeout_ms, lladdr, error);
  if (inet_pton (AF_INET6, gateway, &v6) == 1)
    return probe_nd (ifname, &v6, timeout_ms, lladdr, error);
  g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "'%s' is not an IP address", gateway);
  return FALSE;
}

/* ---- DNS and TCP ---- */

typedef void (*DeadlineStartFunc) (GCancellable *cancellable, GAsyncReadyCallback done,
                                   gpointer done_data, gpointer user_data);

static void
deadline_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GAsyncResult **out = user_data;

  *out = g_object_ref (result);
}

static gboolean
deadline_passed (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

/* One asynchronous GIO call, run to its end on a private main context of this (worker)
 * thread, cancelled at the deadline: GResolver has no timeout of its own, and GSocketClient's
 * counts whole seconds. Returns the call's result, to give to its _finish. */
static GAsyncResult *
run_with_deadline (guint timeout_ms, DeadlineStartFunc start, gpointer user_data)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GSource) timeout = g_timeout_source_new (timeout_ms);
  GAsyncResult *result = NULL;

  g_main_context_push_thread_default (context);
  g_source_set_callback (timeout, deadline_passed, cancellable, NULL);
  g_source_attach (timeout, context);
  start (cancellable, deadline_done, &result, user_data);
  while (result == NULL)
    g_main_context_iteration (context, TRUE);
  g_source_destroy (timeout);
  /* let cancelled attempts finish on this context before it goes */
  while (g_main_context_pending (context))
    g_main_context_iteration (context, FALSE);
  g_main_context_pop_thread_default (context);
  return result;
}

typedef struct
{
  GResolver *resolver;
  const char *host;
} Lookup;

static void
lookup_start (GCancellable *cancellable, GAsyncReadyCallback done, gpointer done_data,
              gpointer user_data)
{
  Lookup *lookup = user_data;

  g_resolver_lookup_by_name_async (lookup->resolver, lookup->host, cancellable, done, done_data);
}

static void
check_dns (const char *host, guint timeout_ms, MaReport *report)
{
  g_autofree char *name = g_strdup_printf ("dns:%s", host);
  g_autoptr(GResolver) resolver = g_resolver_get_default ();
  gint64 started = g_get_monotonic_time ();
  Lookup lookup = { resolver, host };
  g_autoptr(GAsyncResult) result = run_with_deadline (timeout_ms, lookup_start, &lookup);
  g_autoptr(GError) error = NULL;
  GList *addresses = g_resolver_lookup_by_name_finish (resolver, result, &error);

  if (addresses != NULL)
    {
      g_autofree char *first = g_inet_address_to_string (addresses->data);
      ma_report_add (report, name, MA_CHECK_PASS, started, "resolves to %s%s", first,
                     addresses->next ? " and more" : "");
      g_resolver_free_addresses (addresses);
    }
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    ma_report_add (report, name, MA_CHECK_FAIL, started, "no answer within %u ms", timeout_ms);
  else
    ma_report_add (report, name, MA_CHECK_FAIL, started, "%s",
                   error ? error->message : "no address");
}

typedef struct
{
  GSocketClient *client;
  const char *endpoint;
} Connect;

static void
connect_start (GCancellable *cancellable, GAsyncReadyCallback done, gpointer done_data,
               gpointer user_data)
{
  Connect *connect = user_data;

  g_socket_client_connect_to_host_async (connect->client, connect->endpoint, 0, cancellable,
                                         done, done_data);
}

static void
check_tcp (const char *endpoint, guint timeout_ms, MaReport *report)
{
  g_autofree char *name = g_strdup_printf ("tcp:%s", endpoint);
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  gint64 started = g_get_monotonic_time ();
  Connect connect = { client, endpoint };
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GError) error = NULL;

  /* whether the endpoint itself accepts: never a proxy's answer */
  g_socket_client_set_enable_proxy (client, FALSE);
  result = run_with_deadline (timeout_ms, connect_start, &connect);
  connection = g_socket_client_connect_to_host_finish (client, result, &error);
  if (connection != NULL)
    ma_report_add (report, name, MA_CHECK_PASS, started, "accepts connections");
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    ma_report_add (report, name, MA_CHECK_FAIL, started,
                   "timed out: no connection within %u ms", timeout_ms);
  else
    ma_report_add (report, name, MA_CHECK_FAIL, started, "%s",
                   error ? error->message : "no connection");
}

void
ma_validate_net_probe (JsonObject *before, JsonObject *now, const MaValidateOptions *options,
                       MaReport *report)
{
  static const char *const families[] = { "ipv4", "ipv6", NULL };
  JsonArray *routes = ma_json_array_or_null (before, "routes");
  JsonArray *neighs = ma_json_array_or_null (before, "gateway-neighbours");
  guint timeout = options ? options->gateway_timeout_ms : MA_VALIDATE_GATEWAY_TIMEOUT_MS;

  /* before any probe: a gateway probe from an interface whose addresses are still in
   * duplicate address detection would judge the gateway by our own unready addresses */
  settle_dad (before, now, report);
  for (guint i = 0; i < ma_json_array_length (routes); i++)
    {
      JsonObject *r = ma_json_array_object (routes, i);
      const char *gateway = ma_json_string_or_null (r, "gateway");
      const char *ifname = ma_json_string_or_null (r, "interface");
      const char *family = ma_json_string_or_null (r, "family");
      g_autofree char *name = NULL, *route_check = NULL, *lladdr = NULL;
      g_autoptr(GError) error = NULL;
      gint64 started = g_get_monotonic_time ();
      JsonObject *neigh;
      const char *cause;

      if (r == NULL || gateway == NULL || ifname == NULL
          || g_strcmp0 (ma_json_string_or_null (r, "dst"), "default") != 0 || family == NULL
          || !g_strv_contains (families, family))
        continue;
      name = g_strdup_printf ("gateway:%s", gateway);
      if (ma_report_find (report, name) != NULL)
        continue;
      route_check = g_strdup_printf ("default-route:%s", family);
      cause = interface_cause (report, ifname);
      if (cause != NULL && g_str_has_prefix (cause, "addresses:")
          && family_addresses_usable (ma_json_array_or_null (before, "addresses"),
                                      ma_json_array_or_null (now, "addresses"), ifname, family))
        cause = NULL; /* the failure is the other family's: this gateway can still be probed */
      if (cause == NULL && ma_report_failed (report, route_check))
        cause = route_check;
      if (cause != NULL)
        {
          MaCheck *check = ma_report_add (report, name, MA_CHECK_FAIL, started,
                                          "not probed: %s failed", cause);
          set_cause (check, cause);
          continue;
        }
      if (!ma_net_probe_gateway (ifname, gateway, timeout, &lladdr, &error))
        {
          ma_report_add (report, name, MA_CHECK_FAIL, started, "%s", error->message);
          continue;
        }
      neigh = find_by (neighs, "address", gateway);
      if (neigh != NULL && ma_json_string_or_null (neigh, "lladdr") != NULL
          && g_strcmp0 (ma_json_string_or_null (neigh, "lladdr"), lladdr) != 0)
        ma_report_add (report, name, MA_CHECK_PASS, started,
                       "answers from %s on %s (it was %s before: the host side moved)", lladdr,
                       ifname, ma_json_string_or_null (neigh, "lladdr"));
      else
        ma_report_add (report, name, MA_CHECK_PASS, started, "answers from %s on %s", lladdr,
                       ifname);
    }
  for (guint i = 0; options != NULL && options->dns_names && options->dns_names[i]; i++)
    check_dns (options->dns_names[i], options->dns_timeout_ms, report);
  for (guint i = 0; options != NULL && options->tcp_endpoints && options->tcp_endpoints[i]; i++)
    check_tcp (options->tcp_endpoints[i], options->tcp_timeout_ms, report);
}

/* ---- announce ---- */

static gboolean
send_unsolicited_na (const char *ifname, int ifindex, const guint8 mac[ETH_ALEN],
                     const struct in6_addr *target, GError **error)
{
  struct
  {
    struct nd_neighbor_advert na;
    struct nd_opt_hdr opt;
    guint8 mac[ETH_ALEN];
  } __attribute__ ((packed)) pkt = { 0 };
  struct sockaddr_in6 to = { .sin6_family = AF_INET6, .sin6_scope_id = (guint32) ifindex };
  int fd = open_icmp6_socket (ifname, 0, error);
  gboolean ok;

  if (fd < 0)
    return FALSE;
  inet_pton (AF_INET6, "ff02::1", &to.sin6_addr);
  pkt.na.nd_na_type = ND_NEIGHBOR_ADVERT;
  pkt.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
  pkt.na.nd_na_target = *target;
  pkt.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
  pkt.opt.nd_opt_len = 1;
  memcpy (pkt.mac, mac, ETH_ALEN);
  ok = sendto (fd, &pkt, sizeof pkt, 0, (struct sockaddr *) &to, sizeof to) >= 0;
  if (!ok)
    set_errno_error (error, errno, "sending a neighbour advertisement");
  close (fd);
  return ok;
}

JsonNode *
ma_net_announce (GError **error)
{
  g_autoptr(GError) local_error = NULL;
  g_autoptr(JsonNode) net = NULL;
  JsonArray *links, *addrs, *out;

  /* the current state, through the same collector as snapshots */
  net = ma_snapshot_collect_network (error);
  if (net == NULL)
    return NULL;
  links = ma_json_array_or_null (json_node_get_object (net), "links");
  addrs = ma_json_array_or_null (json_node_get_object (net), "addresses");
  out = json_array_new ();
  for (guint i = 0; i < ma_json_array_length (addrs); i++)
    {
      JsonObject *a = ma_json_array_object (addrs, i);
      const char *ifname = ma_json_string_or_null (a, "interface");
      const char *address = ma_json_string_or_null (a, "address");
      JsonObject *link = find_by (links, "name", ifname);
      JsonObject *entry;
      g_autoptr(GError) send_error = NULL;
      guint8 mac[ETH_ALEN];
      int ifindex = (int)ma_json_int_or (link, "ifindex", 0);
      struct in_addr v4;
      struct in6_addr v6;
      gboolean sent = FALSE;

      if (link == NULL || address == NULL || ma_json_bool_or (link, "loopback", FALSE)
          || !ma_json_bool_or (link, "up", FALSE)
          || !parse_mac (ma_json_string_or_null (link, "mac"), mac) || has_flag (a, "tentative")
          || has_flag (a, "dadfailed"))
        continue;
      if (inet_pton (AF_INET, address, &v4) == 1)
        {
          int fd = open_packet_socket (ifindex, &send_error);
          if (fd >= 0)
            {
              sent = send_arp (fd, ifindex, ARPOP_REQUEST, mac, v4, v4, &send_error);
              close (fd);
            }
        }
      else if (inet_pton (AF_INET6, address, &v6) == 1)
        sent = send_unsolicited_na (ifname, ifindex, mac, &v6, &send_error);
      else
        continue;
      entry = json_object_new ();
      json_object_set_string_member (entry, "interface", ifname);
      json_object_set_string_member (entry, "address", address);
      json_object_set_boolean_member (entry, "sent", sent);
      if (!sent)
        json_object_set_string_member (entry, "error", send_error->message);
      json_array_add_object_element (out, entry);
    }
  return ma_json_new_array_node (out);
}
