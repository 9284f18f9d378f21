/* test-netns-validate.c — the real daemon inside a network namespace this test creates (a veth
 * pair, the peer in a second namespace acting as the gateway): snapshot, then break one thing
 * at a time and see exactly that network check fail, then pass again once restored. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "client.h"
#include "json.h"

#define DEADLINE_SECONDS 20
#define GUEST_ADDR "10.77.0.2"
#define GATEWAY_ADDR "10.77.0.1"
#define EXTRA_ROUTE "10.78.0.0/16"
#define OTHER_MAC "02:00:00:00:77:99"

typedef struct
{
  char *guest_ns;
  char *gateway_ns;
  char *dir;
  char *socket_uri;
  GSubprocess *daemon;
  MaClient *client;
} Fixture;

static gboolean
run_argv (const char *command, GError **error)
{
  g_auto(GStrv) argv = NULL;
  int status = 0;

  if (!g_shell_parse_argv (command, NULL, &argv, error)
      || !g_spawn_sync (NULL, argv, NULL,
                        G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL
                          | G_SPAWN_STDERR_TO_DEV_NULL,
                        NULL, NULL, NULL, NULL, &status, error))
    return FALSE;
  return g_spawn_check_wait_status (status, error);
}

static void must (const char *format, ...) G_GNUC_PRINTF (1, 2);

static void
must (const char *format, ...)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  va_list args;

  va_start (args, format);
  command = g_strdup_vprintf (format, args);
  va_end (args);
  if (!run_argv (command, &error))
    g_error ("%s: %s", command, error->message);
}

static void
cleanup_namespaces (Fixture *f)
{
  g_autofree char *a = g_strdup_printf ("ip netns del %s", f->guest_ns);
  g_autofree char *b = g_strdup_printf ("ip netns del %s", f->gateway_ns);

  /* deleting the namespaces deletes the veth pair with them */
  run_argv (a, NULL);
  run_argv (b, NULL);
}

/* Namespaces left by a run that aborted (its pid is gone) are removed before a new run. */
static void
cleanup_stale_namespaces (void)
{
  g_autofree char *out = NULL;
  g_auto(GStrv) lines = NULL;
  const char *argv[] = { "ip", "netns", "list", NULL };

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL,
                     NULL, NULL))
    return;
  lines = g_strsplit (out, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_auto(GStrv) words = g_strsplit (lines[i], " ", 2);
      const char *name = words[0];
      const char *dash = name ? strrchr (name, '-') : NULL;
      guint64 pid;
      g_autofree char *proc = NULL;
      g_autofree char *cmd = NULL;

      if (name == NULL || dash == NULL
          || !(g_str_has_prefix (name, "ma-guest-") || g_str_has_prefix (name, "ma-gw-"))
          || !g_ascii_string_to_unsigned (dash + 1, 10, 1, G_MAXINT, &pid, NULL))
        continue;
      proc = g_strdup_printf ("/proc/%" G_GUINT64_FORMAT, pid);
      if (g_file_test (proc, G_FILE_TEST_EXISTS))
        continue;
      cmd = g_strdup_printf ("ip netns del %s", name);
      run_argv (cmd, NULL);
    }
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *conf = NULL;
  g_autofree char *state = NULL;
  g_autofree char *sock = NULL;
  const char *agent = g_getenv ("MIGRATION_AGENT");
  gint64 deadline;

  f->guest_ns = g_strdup_printf ("ma-guest-%d", getpid ());
  f->gateway_ns = g_strdup_printf ("ma-gw-%d", getpid ());
  cleanup_stale_namespaces ();
  cleanup_namespaces (f);
  must ("ip netns add %s", f->guest_ns);
  must ("ip netns add %s", f->gateway_ns);
  /* IPv4 only: IPv6 duplicate address detection would make "restored" a moving target */
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.all.disable_ipv6=1", f->guest_ns);
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.default.disable_ipv6=1", f->guest_ns);
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.default.disable_ipv6=1", f->gateway_ns);
  must ("ip -n %s link add veth0 type veth peer name veth1 netns %s", f->guest_ns, f->gateway_ns);
  must ("ip -n %s link set lo up", f->guest_ns);
  must ("ip -n %s addr add " GUEST_ADDR "/24 dev veth0", f->guest_ns);
  must ("ip -n %s link set veth0 up", f->guest_ns);
  must ("ip -n %s addr add " GATEWAY_ADDR "/24 dev veth1", f->gateway_ns);
  must ("ip -n %s link set veth1 up", f->gateway_ns);
  must ("ip -n %s route add default via " GATEWAY_ADDR, f->guest_ns);
  must ("ip -n %s route add " EXTRA_ROUTE " via " GATEWAY_ADDR, f->guest_ns);

  f->dir = g_dir_make_tmp ("test-netns-validate-XXXXXX", &error);
  g_assert_no_error (error);
  conf = g_build_filename (f->dir, "agent.conf", NULL);
  state = g_build_filename (f->dir, "state", NULL);
  sock = g_build_filename (f->dir, "control.sock", NULL);
  f->socket_uri = g_strdup_printf ("unix:%s", sock);
  /* the host's own storage is not what this test is about: no write probes on it */
  g_file_set_contents (conf, "[validate]\nwrite-probe=false\n[resume]\nannounce=never\n", -1,
                       &error);
  g_assert_no_error (error);
  g_assert_nonnull (agent);
  f->daemon = g_subprocess_new (G_SUBPROCESS_FLAGS_NONE, &error, "ip", "netns", "exec",
                                f->guest_ns, agent, "--foreground", "--no-virtio", "--config",
                                conf, "--state-dir", state, "--listen", f->socket_uri, NULL);
  g_assert_no_error (error);
  deadline = g_get_monotonic_time () + DEADLINE_SECONDS * G_USEC_PER_SEC;
  while (f->client == NULL && g_get_monotonic_time () < deadline)
    {
      f->client = ma_client_connect (f->socket_uri, 30000, NULL);
      if (f->client == NULL)
        g_usleep (20000);
    }
  g_assert_nonnull (f->client);
  g_assert_true (ma_client_sync (f->client, &error));
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *rm = g_strdup_printf ("rm -rf %s", f->dir);

  g_clear_pointer (&f->client, ma_client_free);
  if (f->daemon != NULL)
    {
      g_subprocess_send_signal (f->daemon, SIGTERM);
      g_subprocess_wait (f->daemon, NULL, NULL);
      g_clear_object (&f->daemon);
    }
  cleanup_namespaces (f);
  if (f->dir != NULL)
    run_argv (rm, NULL);
  g_free (f->guest_ns);
  g_free (f->gateway_ns);
  g_free (f->dir);
  g_free (f->socket_uri);
}

/* The network checks that failed on their own (not explained by another), as "a,b". */
static char *
validate_roots (Fixture *f, char **verdict)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = ma_client_execute (f->client, "validate", NULL, &error);
  g_autoptr(GPtrArray) roots = g_ptr_array_new ();
  JsonArray *checks = NULL;
  const char *v = NULL;

  g_assert_no_error (error);
  g_assert_true (ma_json_get_array (json_node_get_object (ret), "checks", &checks, NULL));
  ma_json_get_string (json_node_get_object (ret), "verdict", &v, NULL);
  if (verdict != NULL)
    *verdict = g_strdup (v);
  for (guint i = 0; i < json_array_get_length (checks); i++)
    {
      JsonObject *c = json_node_get_object (json_array_get_element (checks, i));
      const char *name = NULL, *status = NULL, *cause = NULL;
      ma_json_get_string (c, "name", &name, NULL);
      ma_json_get_string (c, "status", &status, NULL);
      ma_json_get_string (c, "caused-by", &cause, NULL);
      /* storage and clock are the host's: this test judges the network only */
      if (g_strcmp0 (status, "fail") != 0 || cause != NULL || g_str_has_prefix (name, "mount:")
          || g_str_has_prefix (name, "device:") || g_str_has_prefix (name, "write")
          || g_str_has_prefix (name, "clock:") || g_str_equal (name, "kmsg")
          || g_str_equal (name, "freeze-waiters"))
        continue;
      g_ptr_array_add (roots, (gpointer) name);
    }
  g_ptr_array_add (roots, NULL);
  return g_strjoinv (",", (char **) roots->pdata);
}

/* Validate until the root failures are `expected` or the deadline passes (the kernel applies
 * some changes, such as carrier and operational state, asynchronously). */
static void
assert_roots (Fixture *f, const char *expected)
{
  gint64 deadline = g_get_monotonic_time () + DEADLINE_SECONDS * G_USEC_PER_SEC;
  g_autofree char *roots = NULL;

  for (;;)
    {
      g_free (roots);
      roots = validate_roots (f, NULL);
      if (g_str_equal (roots, expected) || g_get_monotonic_time () >= deadline)
        break;
      g_usleep (100000);
    }
  g_assert_cmpstr (roots, ==, expected);
}

static void
restore_routes (Fixture *f)
{
  must ("ip -n %s route replace default via " GATEWAY_ADDR, f->guest_ns);
  must ("ip -n %s route replace " EXTRA_ROUTE " via " GATEWAY_ADDR, f->guest_ns);
}

static void
test_break_one_at_a_time (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) take = json_object_new ();
  g_autoptr(JsonNode) snapshot = NULL;
  g_autofree char *mac = NULL;
  g_autofree char *verdict = NULL;
  g_autofree char *roots = NULL;
  JsonObject *net = NULL;
  JsonArray *links = NULL;

  json_object_set_boolean_member (take, "take", TRUE);
  snapshot = ma_client_execute (f->client, "snapshot", take, &error);
  g_assert_no_error (error);
  g_assert_true (ma_json_get_object (json_node_get_object (snapshot), "network", &net, NULL));
  g_assert_true (ma_json_get_array (net, "links", &links, NULL));
  for (guint i = 0; i < json_array_get_length (links); i++)
    {
      JsonObject *l = json_node_get_object (json_array_get_element (links, i));
      const char *name = NULL, *m = NULL;
      ma_json_get_string (l, "name", &name, NULL);
      ma_json_get_string (l, "mac", &m, NULL);
      if (g_strcmp0 (name, "veth0") == 0)
        mac = g_strdup (m);
    }
  g_assert_nonnull (mac);

  /* the baseline passes, and the gateway really answered an ARP probe */
  roots = validate_roots (f, &verdict);
  g_assert_cmpstr (roots, ==, "");
  assert_roots (f, "");

  must ("ip -n %s link set veth0 down", f->guest_ns);
  assert_roots (f, "link:veth0");
  must ("ip -n %s link set veth0 up", f->guest_ns);
  restore_routes (f);
  assert_roots (f, "");

  must ("ip -n %s link set veth0 address " OTHER_MAC, f->guest_ns);
  assert_roots (f, "mac:veth0");
  must ("ip -n %s link set veth0 address %s", f->guest_ns, mac);
  assert_roots (f, "");

  must ("ip -n %s route del " EXTRA_ROUTE, f->guest_ns);
  assert_roots (f, "routes");
  restore_routes (f);
  assert_roots (f, "");

  must ("ip -n %s addr del " GUEST_ADDR "/24 dev veth0", f->guest_ns);
  assert_roots (f, "addresses:veth0");
  must ("ip -n %s addr add " GUEST_ADDR "/24 dev veth0", f->guest_ns);
  restore_routes (f);
  assert_roots (f, "");

  /* the neighbour unreachable: the gateway no longer answers for its address */
  must ("ip -n %s addr del " GATEWAY_ADDR "/24 dev veth1", f->gateway_ns);
  assert_roots (f, "gateway:" GATEWAY_ADDR);
  must ("ip -n %s addr add " GATEWAY_ADDR "/24 dev veth1", f->gateway_ns);
  assert_roots (f, "");
}

static void
test_announce (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autofree char *out = NULL;
  gint64 deadline;
  JsonArray *sent = NULL;

  /* the gateway holds a stale entry for the guest, as after a move */
  must ("ip -n %s neigh replace " GUEST_ADDR " lladdr " OTHER_MAC " dev veth1 nud stale",
        f->gateway_ns);
  ret = ma_client_execute (f->client, "announce", NULL, &error);
  g_assert_no_error (error);
  g_assert_true (ma_json_get_array (json_node_get_object (ret), "sent", &sent, NULL));
  g_assert_cmpuint (json_array_get_length (sent), >=, 1);
  /* the gratuitous ARP overrides the stale entry */
  deadline = g_get_monotonic_time () + DEADLINE_SECONDS * G_USEC_PER_SEC;
  for (;;)
    {
      g_autofree char *cmd = g_strdup_printf ("ip -n %s neigh show " GUEST_ADDR " dev veth1",
                                              f->gateway_ns);
      g_auto(GStrv) argv = NULL;
      g_free (out);
      out = NULL;
      g_assert_true (g_shell_parse_argv (cmd, NULL, &argv, NULL));
      g_assert_true (g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL,
                                   NULL, NULL));
      if (strstr (out, OTHER_MAC) == NULL || g_get_monotonic_time () >= deadline)
        break;
      g_usleep (50000);
    }
  g_assert_null (strstr (out, OTHER_MAC));
}

int
main (int argc, char **argv)
{
  g_autofree char *ip = g_find_program_in_path ("ip");

  g_test_init (&argc, &argv, NULL);
  if (getuid () != 0 || ip == NULL)
    {
      printf ("1..0 # SKIP needs root and iproute2 to create network namespaces\n");
      return 0;
    }
  /* a failed assertion still reaches the teardown, which removes the namespaces */
  g_test_set_nonfatal_assertions ();
  g_test_add ("/netns-validate/break-one-at-a-time", Fixture, NULL, fixture_setup,
              test_break_one_at_a_time, fixture_teardown);
  g_test_add ("/netns-validate/announce", Fixture, NULL, fixture_setup, test_announce,
              fixture_teardown);
  return g_test_run ();
}
