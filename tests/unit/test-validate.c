/* test-validate.c — the comparison behind `validate`, on fixtures: a mount table whose ext4 went
 * emergency_ro, a lost route, a changed MAC, a vanished disk, kernel log errors. */
#include <glib/gstdio.h>

#include "json.h"
#include "snapshot.h"
#include "validate.h"

/* A network part as ma_snapshot_collect_network() writes it. */
static const char net_before[] =
  "{\"links\": ["
  " {\"ifindex\": 1, \"name\": \"lo\", \"up\": true, \"loopback\": true, \"operstate\": \"unknown\","
  "  \"mtu\": 65536},"
  " {\"ifindex\": 2, \"name\": \"eth0\", \"driver\": \"virtio_net\", \"mac\": \"52:54:00:12:34:56\","
  "  \"up\": true, \"loopback\": false, \"operstate\": \"up\", \"carrier\": true, \"mtu\": 1500}],"
  " \"addresses\": ["
  " {\"interface\": \"eth0\", \"family\": \"ipv4\", \"address\": \"10.0.0.5\", \"prefixlen\": 24,"
  "  \"flags\": [\"permanent\"]},"
  " {\"interface\": \"eth0\", \"family\": \"ipv6\", \"address\": \"fe80::5054:ff:fe12:3456\","
  "  \"prefixlen\": 64, \"flags\": [\"permanent\"]}],"
  " \"routes\": ["
  " {\"family\": \"ipv4\", \"dst\": \"default\", \"gateway\": \"10.0.0.1\", \"interface\": \"eth0\"},"
  " {\"family\": \"ipv4\", \"dst\": \"10.0.0.0/24\", \"interface\": \"eth0\"},"
  " {\"family\": \"ipv4\", \"dst\": \"172.16.0.0/12\", \"gateway\": \"10.0.0.254\","
  "  \"interface\": \"eth0\"}],"
  " \"gateway-neighbours\": [],"
  " \"resolv-conf-sha256\": \"aa\"}";

static JsonNode *
parse (const char *text)
{
  g_autoptr(GError) error = NULL;
  JsonNode *node = ma_json_parse (text, strlen (text), &error);

  g_assert_no_error (error);
  g_assert_nonnull (node);
  return node;
}

/* {"network": net, "storage": storage, "clock": {}} */
static JsonNode *
snapshot_of (JsonNode *net, JsonNode *storage)
{
  JsonObject *obj = json_object_new ();

  json_object_set_member (obj, "network", net);
  json_object_set_member (obj, "storage", storage);
  json_object_set_object_member (obj, "clock", json_object_new ());
  return ma_json_new_object_node (obj);
}

static JsonNode *
empty_storage (void)
{
  return parse ("{\"mounts\": [], \"devices\": []}");
}

static char **
names_with_status (MaReport *report, MaCheckStatus status, gboolean root_only)
{
  GPtrArray *checks = ma_report_get_checks (report);
  GPtrArray *out = g_ptr_array_new ();

  for (guint i = 0; i < checks->len; i++)
    {
      const MaCheck *check = checks->pdata[i];
      if (check->status == status && (!root_only || check->caused_by == NULL))
        g_ptr_array_add (out, g_strdup (check->name));
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

/* The failures that are not explained by another failure, as "a,b". */
static char *
root_failures (MaReport *report)
{
  g_auto(GStrv) names = names_with_status (report, MA_CHECK_FAIL, TRUE);

  return g_strjoinv (",", names);
}

static MaReport *
diff_net (const char *now_text)
{
  g_autoptr(JsonNode) before = snapshot_of (parse (net_before), empty_storage ());
  g_autoptr(JsonNode) now = snapshot_of (parse (now_text), empty_storage ());
  MaReport *report = ma_report_new ();

  ma_validate_diff (json_node_get_object (before), json_node_get_object (now), report);
  return report;
}

static char *
replace (const char *text, const char *from, const char *to)
{
  g_auto(GStrv) parts = g_strsplit (text, from, -1);

  g_assert_cmpuint (g_strv_length (parts), >=, 2);
  return g_strjoinv (to, parts);
}

static void
test_unchanged (void)
{
  g_autoptr(MaReport) report = diff_net (net_before);
  g_autofree char *roots = root_failures (report);

  g_assert_cmpstr (roots, ==, "");
  g_assert_cmpint (ma_report_verdict (report), ==, MA_CHECK_PASS);
  g_assert_nonnull (ma_report_find (report, "link:eth0"));
  g_assert_nonnull (ma_report_find (report, "routes"));
  g_assert_nonnull (ma_report_find (report, "default-route:ipv4"));
  g_assert_null (ma_report_find (report, "link:lo")); /* loopback is not checked */
}

static void
test_lost_route (void)
{
  g_autofree char *now = replace (net_before,
                                  ", {\"family\": \"ipv4\", \"dst\": \"172.16.0.0/12\", "
                                  "\"gateway\": \"10.0.0.254\",  \"interface\": \"eth0\"}",
                                  "");
  g_autoptr(MaReport) report = diff_net (now);
  g_autofree char *roots = root_failures (report);
  const MaCheck *routes = ma_report_find (report, "routes");

  g_assert_cmpstr (roots, ==, "routes");
  g_assert_nonnull (strstr (routes->detail, "172.16.0.0/12 via 10.0.0.254 dev eth0"));
  g_assert_cmpint (ma_report_find (report, "default-route:ipv4")->status, ==, MA_CHECK_PASS);
}

static void
test_lost_default_route (void)
{
  g_autofree char *now = replace (net_before,
                                  " {\"family\": \"ipv4\", \"dst\": \"default\", \"gateway\": "
                                  "\"10.0.0.1\", \"interface\": \"eth0\"},",
                                  "");
  g_autoptr(MaReport) report = diff_net (now);
  g_autofree char *roots = root_failures (report);

  g_assert_cmpstr (roots, ==, "default-route:ipv4");
}

static void
test_changed_mac (void)
{
  /* the kernel derives the link-local address from the MAC: it changes with it */
  g_autofree char *step = replace (net_before, "\"mac\": \"52:54:00:12:34:56\"",
                                   "\"mac\": \"52:54:00:ab:cd:ef\"");
  g_autofree char *now = replace (step, "fe80::5054:ff:fe12:3456", "fe80::5054:ff:feab:cdef");
  g_autoptr(MaReport) report = diff_net (now);
  g_autofree char *roots = root_failures (report);
  const MaCheck *addresses = ma_report_find (report, "addresses:eth0");
  const MaCheck *mac = ma_report_find (report, "mac:eth0");

  g_assert_cmpstr (roots, ==, "mac:eth0");
  g_assert_nonnull (strstr (mac->detail, "52:54:00:12:34:56 to 52:54:00:ab:cd:ef"));
  g_assert_cmpint (addresses->status, ==, MA_CHECK_FAIL);
  g_assert_cmpstr (addresses->caused_by, ==, "mac:eth0");
  g_assert_cmpint (ma_report_find (report, "link:eth0")->status, ==, MA_CHECK_PASS);
}

static void
test_link_down_explains (void)
{
  /* link down: the kernel drops its routes; those failures point at the link */
  g_autofree char *step = replace (net_before, "\"up\": true, \"loopback\": false",
                                   "\"up\": false, \"loopback\": false");
  g_autofree char *now = replace (step,
                                  "\"routes\": [ {\"family\": \"ipv4\", \"dst\": \"default\", "
                                  "\"gateway\": \"10.0.0.1\", \"interface\": \"eth0\"}, "
                                  "{\"family\": \"ipv4\", \"dst\": \"10.0.0.0/24\", "
                                  "\"interface\": \"eth0\"}, {\"family\": \"ipv4\", \"dst\": "
                                  "\"172.16.0.0/12\", \"gateway\": \"10.0.0.254\",  "
                                  "\"interface\": \"eth0\"}]",
                                  "\"routes\": []");
  g_autoptr(MaReport) report = diff_net (now);
  g_autofree char *roots = root_failures (report);

  g_assert_cmpstr (roots, ==, "link:eth0");
  g_assert_cmpstr (ma_report_find (report, "default-route:ipv4")->caused_by, ==, "link:eth0");
  g_assert_cmpstr (ma_report_find (report, "routes")->caused_by, ==, "link:eth0");
}

static void
test_dad_failed (void)
{
  g_autofree char *now = replace (net_before, "\"prefixlen\": 24,  \"flags\": [\"permanent\"]",
                                  "\"prefixlen\": 24,  \"flags\": [\"permanent\", \"dadfailed\"]");
  g_autoptr(MaReport) report = diff_net (now);
  g_autofree char *roots = root_failures (report);

  g_assert_cmpstr (roots, ==, "addresses:eth0");
  g_assert_nonnull (strstr (ma_report_find (report, "addresses:eth0")->detail, "10.0.0.5"));
}

/* ---- storage ---- */

typedef struct
{
  char *root;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *self_dir = NULL;

  f->root = g_dir_make_tmp ("test-validate-XXXXXX", &error);
  g_assert_no_error (error);
  self_dir = g_build_filename (f->root, "proc", "self", NULL);
  g_assert_cmpint (g_mkdir_with_parents (self_dir, 0700), ==, 0);
  {
    g_autofree char *proc = g_build_filename (f->root, "proc", NULL);
    g_setenv ("MA_PROCFS", proc, TRUE);
  }
  g_setenv ("MA_DEVDIR", f->root, TRUE);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->root);

  g_assert_cmpint (system (cmd), ==, 0);
  g_unsetenv ("MA_PROCFS");
  g_unsetenv ("MA_DEVDIR");
  g_free (f->root);
}

static void
write_fixture (Fixture *f, const char *relative, const char *contents)
{
  g_autofree char *path = g_build_filename (f->root, relative, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, contents, -1, &error);
  g_assert_no_error (error);
}

#define MOUNTINFO_HEAD                                                                   \
  "21 26 0:20 / /proc rw,relatime - proc proc rw\n"                                       \
  "26 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw,errors=remount-ro\n"

static MaReport *
diff_storage_with (Fixture *f, const char *mountinfo_before, const char *mountinfo_now)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) st_before = NULL;
  g_autoptr(JsonNode) st_now = NULL;
  g_autoptr(JsonNode) before = NULL;
  g_autoptr(JsonNode) now = NULL;
  MaReport *report = ma_report_new ();

  write_fixture (f, "kmsg", "6,1,100,-;boot\n");
  write_fixture (f, "proc/self/mountinfo", mountinfo_before);
  st_before = ma_snapshot_collect_storage (&error);
  g_assert_no_error (error);
  write_fixture (f, "proc/self/mountinfo", mountinfo_now);
  st_now = ma_snapshot_collect_storage (&error);
  g_assert_no_error (error);
  before = snapshot_of (parse (net_before), g_steal_pointer (&st_before));
  now = snapshot_of (parse (net_before), g_steal_pointer (&st_now));
  ma_validate_diff (json_node_get_object (before), json_node_get_object (now), report);
  return report;
}

static void
test_emergency_ro (Fixture *f, gconstpointer data)
{
  /* ext4 after an error on 6.x: the super options say emergency_ro, the mount still rw */
  g_autoptr(MaReport) report = diff_storage_with (
    f, MOUNTINFO_HEAD "30 26 254:16 / /data rw,noatime - ext4 /dev/vdb rw\n",
    MOUNTINFO_HEAD "30 26 254:16 / /data rw,noatime - ext4 /dev/vdb rw,emergency_ro\n");
  g_autofree char *roots = root_failures (report);
  const MaCheck *data_mount = ma_report_find (report, "mount:/data");

  g_assert_cmpstr (roots, ==, "mount:/data");
  g_assert_nonnull (strstr (data_mount->detail, "emergency_ro"));
  g_assert_cmpint (ma_report_find (report, "mount:/")->status, ==, MA_CHECK_PASS);
  g_assert_null (ma_report_find (report, "mount:/proc")); /* no storage behind it */
}

static void
test_went_read_only (Fixture *f, gconstpointer data)
{
  g_autoptr(MaReport) report = diff_storage_with (
    f, MOUNTINFO_HEAD "30 26 254:16 / /data rw,noatime - ext4 /dev/vdb rw\n",
    MOUNTINFO_HEAD "30 26 254:16 / /data ro,noatime - ext4 /dev/vdb ro\n");
  g_autofree char *roots = root_failures (report);

  g_assert_cmpstr (roots, ==, "mount:/data");
  g_assert_nonnull (strstr (ma_report_find (report, "mount:/data")->detail, "read-only"));
}

static void
test_unmounted (Fixture *f, gconstpointer data)
{
  g_autoptr(MaReport) report = diff_storage_with (
    f, MOUNTINFO_HEAD "30 26 254:16 / /data rw,noatime - ext4 /dev/vdb rw\n", MOUNTINFO_HEAD);
  g_autofree char *roots = root_failures (report);

  g_assert_cmpstr (roots, ==, "mount:/data");
}

static void
test_vanished_disk (void)
{
  g_autoptr(JsonNode) st_before = parse (
    "{\"mounts\": [{\"target\": \"/data\", \"source\": \"/dev/vdb\", \"fstype\": \"ext4\","
    " \"devno\": \"254:16\", \"options\": \"rw\", \"super-options\": \"rw\"}],"
    " \"devices\": [{\"name\": \"vda\", \"devno\": \"254:0\", \"serial\": \"root\", \"size\": 1024},"
    " {\"name\": \"vdb\", \"devno\": \"254:16\", \"serial\": \"data-1\", \"size\": 4096}]}");
  g_autoptr(JsonNode) st_now = parse (
    "{\"mounts\": [],"
    " \"devices\": [{\"name\": \"vda\", \"devno\": \"254:0\", \"serial\": \"root\", \"size\": 1024}]}");
  g_autoptr(JsonNode) before = snapshot_of (parse (net_before), g_steal_pointer (&st_before));
  g_autoptr(JsonNode) now = snapshot_of (parse (net_before), g_steal_pointer (&st_now));
  g_autoptr(MaReport) report = ma_report_new ();
  g_autofree char *roots = NULL;

  ma_validate_diff (json_node_get_object (before), json_node_get_object (now), report);
  roots = root_failures (report);
  g_assert_cmpstr (roots, ==, "device:vdb");
  g_assert_cmpstr (ma_report_find (report, "mount:/data")->caused_by, ==, "device:vdb");
  g_assert_cmpint (ma_report_find (report, "device:vda")->status, ==, MA_CHECK_PASS);
}

static void
test_swapped_disk (void)
{
  g_autoptr(JsonNode) st_before = parse (
    "{\"mounts\": [], \"devices\": [{\"name\": \"vdb\", \"serial\": \"data-1\", \"size\": 4096}]}");
  g_autoptr(JsonNode) st_now = parse (
    "{\"mounts\": [], \"devices\": [{\"name\": \"vdb\", \"serial\": \"data-2\", \"size\": 4096}]}");
  g_autoptr(JsonNode) before = snapshot_of (parse (net_before), g_steal_pointer (&st_before));
  g_autoptr(JsonNode) now = snapshot_of (parse (net_before), g_steal_pointer (&st_now));
  g_autoptr(MaReport) report = ma_report_new ();
  g_autofree char *roots = NULL;

  ma_validate_diff (json_node_get_object (before), json_node_get_object (now), report);
  roots = root_failures (report);
  g_assert_cmpstr (roots, ==, "device:vdb");
  g_assert_nonnull (strstr (ma_report_find (report, "device:vdb")->detail, "another disk"));
}

static void
test_kmsg (Fixture *f, gconstpointer data)
{
  g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  gint64 last = 0;

  write_fixture (f, "kmsg",
                 "6,10,100,-;EXT4-fs (vdb): mounted filesystem with ordered data mode\n"
                 "3,11,200,-;blk_update_request: I/O error, dev vdb, sector 2048\n"
                 " SUBSYSTEM=block\n"
                 "6,12,300,-;virtio_net virtio0 eth0: link up\n"
                 "2,13,400,-;EXT4-fs error (device vdb): ext4_journal_check_start:83: comm x: "
                 "Detected aborted journal\n"
                 "6,14,500,-;EXT4-fs (vdb): Remounting filesystem read-only\n");
  g_assert_true (ma_snapshot_scan_kmsg (11, &last, errors, &error));
  g_assert_no_error (error);
  g_assert_cmpint (last, ==, 14);
  /* seq 11 is not after the snapshot; 10 and 12 are no errors */
  g_assert_cmpuint (errors->len, ==, 2);
  g_assert_true (g_str_has_prefix (errors->pdata[0], "[13] EXT4-fs error"));
  g_assert_true (g_str_has_prefix (errors->pdata[1], "[14] EXT4-fs (vdb): Remounting"));
}

static void
test_report_order (void)
{
  g_autoptr(MaReport) report = ma_report_new ();
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *text = NULL;
  MaCheck *explained;

  ma_report_add (report, "a", MA_CHECK_PASS, g_get_monotonic_time (), "fine");
  explained = ma_report_add (report, "b", MA_CHECK_FAIL, g_get_monotonic_time (), "because");
  explained->caused_by = g_strdup ("c");
  ma_report_add (report, "c", MA_CHECK_FAIL, g_get_monotonic_time (), "the cause");
  ma_report_add (report, "d", MA_CHECK_WARN, g_get_monotonic_time (), "hm");
  g_assert_cmpint (ma_report_verdict (report), ==, MA_CHECK_FAIL);
  node = ma_report_to_json (report);
  text = ma_json_to_string (node);
  /* the cause first, then what it explains, then warnings, then passes */
  g_assert_true (strstr (text, "\"name\":\"c\"") < strstr (text, "\"name\":\"b\""));
  g_assert_true (strstr (text, "\"name\":\"b\"") < strstr (text, "\"name\":\"d\""));
  g_assert_true (strstr (text, "\"name\":\"d\"") < strstr (text, "\"name\":\"a\""));
  g_assert_nonnull (strstr (text, "\"verdict\":\"fail\""));
  g_assert_nonnull (strstr (text, "\"failed\":[\"c\",\"b\"]"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/validate/net/unchanged", test_unchanged);
  g_test_add_func ("/validate/net/lost-route", test_lost_route);
  g_test_add_func ("/validate/net/lost-default-route", test_lost_default_route);
  g_test_add_func ("/validate/net/changed-mac", test_changed_mac);
  g_test_add_func ("/validate/net/link-down-explains", test_link_down_explains);
  g_test_add_func ("/validate/net/dad-failed", test_dad_failed);
  g_test_add ("/validate/storage/emergency-ro", Fixture, NULL, fixture_setup, test_emergency_ro,
              fixture_teardown);
  g_test_add ("/validate/storage/went-read-only", Fixture, NULL, fixture_setup,
              test_went_read_only, fixture_teardown);
  g_test_add ("/validate/storage/unmounted", Fixture, NULL, fixture_setup, test_unmounted,
              fixture_teardown);
  g_test_add_func ("/validate/storage/vanished-disk", test_vanished_disk);
  g_test_add_func ("/validate/storage/swapped-disk", test_swapped_disk);
  g_test_add ("/validate/storage/kmsg", Fixture, NULL, fixture_setup, test_kmsg,
              fixture_teardown);
  g_test_add_func ("/validate/report/order", test_report_order);
  return g_test_run ();
}
