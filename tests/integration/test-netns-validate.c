/* test-netns-validate.c — the real daemon inside a network namespace this test creates (a veth
 * pair, the peer in a second namespace acting as the gateway): snapshot, then break one thing
 * at a time and see exactly that network check fail, then pass again once restored. The live
 * probes too: DNS against a dnsmasq in the gateway namespace (the guest namespace's resolver
 * points at it alone), TCP endpoints (a listener in the gateway namespace, one address that
 * the gateway drops silently) and the IPv6 gateway's neighbour solicitation, also while the
 * guest's IPv6 addresses are still in duplicate address detection (tentative: after a link flap
 * or an address re-added), until it finishes, fails, or outlasts the agent's wait. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "client.h"
#include "daemon-fixture.h"
#include "json.h"
#include "validate-net.h"

#define DEADLINE_SECONDS 20
#define GUEST_ADDR "10.77.0.2"
#define GATEWAY_ADDR "10.77.0.1"
#define EXTRA_ROUTE "10.78.0.0/16"
#define OTHER_MAC "02:00:00:00:77:99"
#define GATEWAY_MAC "02:00:00:00:77:01"
#define GUEST_ADDR6 "fd77::2"
#define GATEWAY_ADDR6 "fd77::1"
#define GATEWAY_LL6 "fe80::77:1"
/* what the gateway's dnsmasq answers for the test name (nothing else) */
#define DNS_NAME "db.migration.test"
#define DNS_ANSWER "10.77.5.5"
#define DNS_TIMEOUT_MS 1500
/* a listener on the gateway; and an address the gateway routes into a blackhole, where SYNs
 * vanish without an answer */
#define TCP_PORT 7707
#define TCP_OPEN GATEWAY_ADDR ":7707"
#define TCP_DROPPED "10.79.0.5:7707"
#define DROPPED_NET "10.79.0.0/24"
#define TCP_TIMEOUT_MS 1500

/* What a fixture sets up besides the IPv4 veth pair. */
typedef struct
{
  gboolean ipv6; /* IPv6 on the pair: static addresses, no DAD, a default route */
  const char *gateway6; /* the IPv6 default gateway: GATEWAY_ADDR6 or a link-local address */
  gboolean dns;  /* dnsmasq on the gateway, the guest's resolv.conf naming it alone */
  gboolean tcp;  /* [validate] tcp-endpoints: TCP_OPEN and TCP_DROPPED */
  gboolean announce_auto; /* [resume] announce=auto (the default) instead of never */
} Variant;


/* How far past its deadline a check may end, and how long a ping on a second connection may
 * take while a validation waits: bounds that say "the deadline is kept" and "the agent is not
 * blocked", not speed; they stretch with MA_TEST_TIMEOUT_SCALE (ASan, valgrind, a loaded
 * machine). */
static double
deadline_slack_s (void)
{
  return ma_test_timeout_ms (1500) / 1000.0;
}

static double
answer_bound_s (void)
{
  return ma_test_timeout_ms (1000) / 1000.0;
}

static const Variant variant_ipv4 = { 0 };
static const Variant variant_announce_auto = { .announce_auto = TRUE };
static const Variant variant_dns = { .dns = TRUE };
static const Variant variant_tcp = { .tcp = TRUE };
static const Variant variant_ipv6 = { .ipv6 = TRUE, .gateway6 = GATEWAY_ADDR6 };
static const Variant variant_ipv6_link_local = { .ipv6 = TRUE, .gateway6 = GATEWAY_LL6 };

typedef struct
{
  char *guest_ns;
  char *gateway_ns;
  char *netns_etc; /* /etc/netns/GUEST_NS: `ip netns exec` bind-mounts its files over /etc */
  char *dir;
  char *socket_uri;
  GSubprocess *daemon;
  GSubprocess *dnsmasq;
  GSocket *listener;
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

  g_autofree char *etc = g_strdup_printf ("rm -rf /etc/netns/%s", f->guest_ns);

  /* deleting the namespaces deletes the veth pair with them */
  run_argv (a, NULL);
  run_argv (b, NULL);
  run_argv (etc, NULL);
}

/* Whether a name is one of this test's namespaces whose run is gone (its pid ended). */
static gboolean
is_stale (const char *name)
{
  const char *dash = name ? strrchr (name, '-') : NULL;
  g_autofree char *proc = NULL;
  guint64 pid;

  if (name == NULL || dash == NULL
      || !(g_str_has_prefix (name, "ma-guest-") || g_str_has_prefix (name, "ma-gw-"))
      || !g_ascii_string_to_unsigned (dash + 1, 10, 1, G_MAXINT, &pid, NULL))
    return FALSE;
  proc = g_strdup_printf ("/proc/%" G_GUINT64_FORMAT, pid);
  return !g_file_test (proc, G_FILE_TEST_EXISTS);
}

/* Namespaces left by a run that aborted (its pid is gone) are removed before a new run, with
 * the processes still inside them (an agent, a dnsmasq) and their /etc/netns files. */
static void
cleanup_stale_namespaces (void)
{
  g_autofree char *out = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(GDir) etc = NULL;
  const char *argv[] = { "ip", "netns", "list", NULL };
  const char *entry;

  if (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL,
                    NULL, NULL))
    lines = g_strsplit (out, "\n", -1);
  for (guint i = 0; lines != NULL && lines[i] != NULL; i++)
    {
      g_auto(GStrv) words = g_strsplit (lines[i], " ", 2);
      const char *pids_argv[] = { "ip", "netns", "pids", words[0], NULL };
      g_autofree char *pids = NULL;
      g_auto(GStrv) pid_lines = NULL;
      g_autofree char *cmd = NULL;

      if (!is_stale (words[0]))
        continue;
      if (g_spawn_sync (NULL, (char **) pids_argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &pids,
                        NULL, NULL, NULL))
        pid_lines = g_strsplit (pids, "\n", -1);
      for (guint j = 0; pid_lines != NULL && pid_lines[j] != NULL; j++)
        {
          guint64 pid;
          if (g_ascii_string_to_unsigned (pid_lines[j], 10, 2, G_MAXINT, &pid, NULL))
            kill ((pid_t) pid, SIGKILL);
        }
      cmd = g_strdup_printf ("ip netns del %s", words[0]);
      run_argv (cmd, NULL);
    }
  etc = g_dir_open ("/etc/netns", 0, NULL);
  while (etc != NULL && (entry = g_dir_read_name (etc)) != NULL)
    {
      g_autofree char *cmd = NULL;

      if (!is_stale (entry))
        continue;
      cmd = g_strdup_printf ("rm -rf /etc/netns/%s", entry);
      run_argv (cmd, NULL);
    }
}

/* dnsmasq on the gateway's address, answering DNS_NAME only: no upstream, no /etc/hosts,
 * nothing read from the host's resolv.conf, so no query ever leaves the namespaces. */
static void
start_dnsmasq (Fixture *f)
{
  g_autoptr(GError) error = NULL;

  g_assert_null (f->dnsmasq);
  f->dnsmasq = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE
                                   | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                                 &error, "ip", "netns", "exec", f->gateway_ns, "dnsmasq",
                                 "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                                 "--no-hosts", "--no-poll", "--bind-interfaces",
                                 "--listen-address=" GATEWAY_ADDR, "--except-interface=lo",
                                 "--pid-file=", "--address=/" DNS_NAME "/" DNS_ANSWER, NULL);
  g_assert_no_error (error);
}

static void
stop_dnsmasq (Fixture *f)
{
  if (f->dnsmasq == NULL)
    return;
  /* SIGCONT too, in case a test left it stopped */
  g_subprocess_send_signal (f->dnsmasq, SIGTERM);
  g_subprocess_send_signal (f->dnsmasq, SIGCONT);
  g_subprocess_wait (f->dnsmasq, NULL, NULL);
  g_clear_object (&f->dnsmasq);
}

typedef struct
{
  const char *ns;
  GSocket *socket;
  GError *error;
} ListenJob;

/* A thread of its own joins the gateway namespace (setns changes the calling thread only), and
 * the socket it creates stays in that namespace. */
static gpointer
listen_in_namespace (gpointer data)
{
  ListenJob *job = data;
  g_autofree char *path = g_strdup_printf ("/run/netns/%s", job->ns);
  g_autoptr(GInetAddress) addr = g_inet_address_new_from_string (GATEWAY_ADDR);
  g_autoptr(GSocketAddress) where = g_inet_socket_address_new (addr, TCP_PORT);
  g_autoptr(GSocket) sock = NULL;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0 || setns (fd, CLONE_NEWNET) < 0)
    {
      g_set_error (&job->error, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s", path,
                   g_strerror (errno));
      if (fd >= 0)
        close (fd);
      return NULL;
    }
  close (fd);
  sock = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                       &job->error);
  if (sock == NULL)
    return NULL;
  /* never accepted: room for every connection the validations of one test make */
  g_socket_set_listen_backlog (sock, 256);
  if (!g_socket_bind (sock, where, TRUE, &job->error) || !g_socket_listen (sock, &job->error))
    return NULL;
  job->socket = g_steal_pointer (&sock);
  return NULL;
}

static void
start_listener (Fixture *f)
{
  ListenJob job = { .ns = f->gateway_ns };

  g_assert_null (f->listener);
  g_thread_join (g_thread_new ("listen-in-netns", listen_in_namespace, &job));
  g_assert_no_error (job.error);
  g_clear_error (&job.error);
  f->listener = job.socket;
}

static void
stop_listener (Fixture *f)
{
  if (f->listener != NULL)
    g_socket_close (f->listener, NULL);
  g_clear_object (&f->listener);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  const Variant *variant = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) conf_text = g_string_new ("[validate]\n");
  g_autoptr(GSubprocessLauncher) launcher = NULL;
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
  if (variant->ipv6)
    {
      /* IPv6 without duplicate address detection (link-local addresses included), so that
       * every address is usable at once and "restored" is not a moving target */
      const char *const namespaces[] = { f->guest_ns, f->gateway_ns, NULL };
      for (guint i = 0; namespaces[i] != NULL; i++)
        {
          must ("ip netns exec %s sysctl -q -w net.ipv6.conf.all.accept_dad=0", namespaces[i]);
          must ("ip netns exec %s sysctl -q -w net.ipv6.conf.default.accept_dad=0",
                namespaces[i]);
          must ("ip netns exec %s sysctl -q -w net.ipv6.conf.default.accept_ra=0",
                namespaces[i]);
        }
    }
  else
    {
      /* IPv4 only: IPv6 duplicate address detection would make "restored" a moving target */
      must ("ip netns exec %s sysctl -q -w net.ipv6.conf.all.disable_ipv6=1", f->guest_ns);
      must ("ip netns exec %s sysctl -q -w net.ipv6.conf.default.disable_ipv6=1", f->guest_ns);
      must ("ip netns exec %s sysctl -q -w net.ipv6.conf.default.disable_ipv6=1", f->gateway_ns);
    }
  must ("ip -n %s link add veth0 type veth peer name veth1 netns %s", f->guest_ns, f->gateway_ns);
  must ("ip -n %s link set lo up", f->guest_ns);
  must ("ip -n %s addr add " GUEST_ADDR "/24 dev veth0", f->guest_ns);
  must ("ip -n %s link set veth0 up", f->guest_ns);
  must ("ip -n %s link set veth1 address " GATEWAY_MAC, f->gateway_ns);
  must ("ip -n %s addr add " GATEWAY_ADDR "/24 dev veth1", f->gateway_ns);
  must ("ip -n %s link set veth1 up", f->gateway_ns);
  must ("ip -n %s route add default via " GATEWAY_ADDR, f->guest_ns);
  must ("ip -n %s route add " EXTRA_ROUTE " via " GATEWAY_ADDR, f->guest_ns);
  if (variant->ipv6)
    {
      must ("ip -n %s addr add " GUEST_ADDR6 "/64 dev veth0 nodad", f->guest_ns);
      must ("ip -n %s addr add " GATEWAY_ADDR6 "/64 dev veth1 nodad", f->gateway_ns);
      if (g_str_has_prefix (variant->gateway6, "fe80:"))
        must ("ip -n %s addr add %s/64 dev veth1 nodad", f->gateway_ns, variant->gateway6);
      must ("ip -n %s -6 route add default via %s dev veth0", f->guest_ns, variant->gateway6);
    }
  if (variant->dns)
    {
      g_autofree char *resolv = NULL;
      g_autofree char *hosts = NULL;

      /* nsswitch asks files before dns: the name must not be in /etc/hosts */
      if (g_file_get_contents ("/etc/hosts", &hosts, NULL, NULL))
        g_assert_null (strstr (hosts, DNS_NAME));
      /* the guest's resolver knows the gateway's dnsmasq and nothing else */
      f->netns_etc = g_build_filename ("/etc/netns", f->guest_ns, NULL);
      resolv = g_build_filename (f->netns_etc, "resolv.conf", NULL);
      g_assert_cmpint (g_mkdir_with_parents (f->netns_etc, 0755), ==, 0);
      g_file_set_contents (resolv, "nameserver " GATEWAY_ADDR "\n", -1, &error);
      g_assert_no_error (error);
      start_dnsmasq (f);
      g_string_append_printf (conf_text, "dns-names=%s\ndns-timeout-ms=%d\n", DNS_NAME,
                              DNS_TIMEOUT_MS);
    }
  if (variant->tcp)
    {
      /* the gateway forwards, and drops whatever is bound for DROPPED_NET without a word
       * (a blackhole route answers no ICMP) */
      must ("ip netns exec %s sysctl -q -w net.ipv4.ip_forward=1", f->gateway_ns);
      must ("ip -n %s route add blackhole " DROPPED_NET, f->gateway_ns);
      start_listener (f);
      g_string_append_printf (conf_text, "tcp-endpoints=%s;%s\ntcp-timeout-ms=%d\n", TCP_OPEN,
                              TCP_DROPPED, TCP_TIMEOUT_MS);
    }

  f->dir = g_dir_make_tmp ("test-netns-validate-XXXXXX", &error);
  g_assert_no_error (error);
  conf = g_build_filename (f->dir, "agent.conf", NULL);
  state = g_build_filename (f->dir, "state", NULL);
  sock = g_build_filename (f->dir, "control.sock", NULL);
  f->socket_uri = g_strdup_printf ("unix:%s", sock);
  /* the host's own storage is not what this test is about: no write probes on it */
  g_string_append_printf (conf_text, "write-probe=false\n[resume]\nannounce=%s\n",
                          variant->announce_auto ? "auto" : "never");
  g_file_set_contents (conf, conf_text->str, -1, &error);
  g_assert_no_error (error);
  g_assert_nonnull (agent);
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  if (variant->tcp)
    {
      /* a proxy in the environment (inside the namespaces, and nothing listens there) must not
       * stand in for the endpoints: a TCP check connects to the endpoint itself */
      g_subprocess_launcher_setenv (launcher, "http_proxy", "http://" GATEWAY_ADDR ":3128", TRUE);
      g_subprocess_launcher_setenv (launcher, "https_proxy", "http://" GATEWAY_ADDR ":3128", TRUE);
      g_subprocess_launcher_setenv (launcher, "all_proxy", "socks5://" GATEWAY_ADDR ":1080", TRUE);
      g_subprocess_launcher_unsetenv (launcher, "no_proxy");
    }
  f->daemon = g_subprocess_launcher_spawn (launcher, &error, "ip", "netns", "exec", f->guest_ns,
                                           agent, "--foreground", "--no-virtio", "--config", conf,
                                           "--state-dir", state, "--listen", f->socket_uri, NULL);
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
  stop_dnsmasq (f);
  stop_listener (f);
  cleanup_namespaces (f);
  if (f->dir != NULL)
    run_argv (rm, NULL);
  g_free (f->guest_ns);
  g_free (f->gateway_ns);
  g_free (f->netns_etc);
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

/* One check of a fresh validation: FALSE when the report has none of that name. */
static gboolean
validate_check (Fixture *f, const char *name, char **status, char **detail, double *duration)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = ma_client_execute (f->client, "validate", NULL, &error);
  JsonArray *checks = NULL;

  g_assert_no_error (error);
  g_assert_true (ma_json_get_array (json_node_get_object (ret), "checks", &checks, NULL));
  for (guint i = 0; i < json_array_get_length (checks); i++)
    {
      JsonObject *c = json_node_get_object (json_array_get_element (checks, i));
      const char *n = NULL, *s = NULL, *d = NULL;
      double seconds = -1;

      ma_json_get_string (c, "name", &n, NULL);
      if (g_strcmp0 (n, name) != 0)
        continue;
      ma_json_get_string (c, "status", &s, NULL);
      ma_json_get_string (c, "detail", &d, NULL);
      ma_json_get_double (c, "duration", &seconds, NULL);
      *status = g_strdup (s);
      *detail = g_strdup (d);
      *duration = seconds;
      return TRUE;
    }
  {
    g_autofree char *text = json_to_string (ret, FALSE);
    g_test_message ("no %s in %s", name, text);
  }
  return FALSE;
}

/* Validate until the check `name` has `status` or the deadline passes; its detail and
 * duration (seconds) as that last validation reported them. */
static void
assert_check (Fixture *f, const char *name, const char *status, char **detail, double *duration)
{
  gint64 deadline = g_get_monotonic_time () + DEADLINE_SECONDS * G_USEC_PER_SEC;
  g_autofree char *s = NULL;
  g_autofree char *d = NULL;
  double seconds = -1;

  for (;;)
    {
      g_clear_pointer (&s, g_free);
      g_clear_pointer (&d, g_free);
      if (!validate_check (f, name, &s, &d, &seconds))
        {
          g_test_fail_printf ("the validation has no check %s", name);
          if (detail != NULL)
            *detail = g_strdup ("");
          return;
        }
      if (g_str_equal (s, status) || g_get_monotonic_time () >= deadline)
        break;
      g_usleep (100000);
    }
  g_test_message ("%s: %s (%s) in %.3f s", name, s, d ? d : "", seconds);
  g_assert_cmpstr (s, ==, status);
  g_assert_nonnull (d);
  if (detail != NULL)
    *detail = g_steal_pointer (&d);
  if (duration != NULL)
    *duration = seconds;
}

/* The snapshot the validations compare with, taken now. */
static JsonNode *
take_snapshot (Fixture *f)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) take = json_object_new ();
  g_autoptr(JsonNode) snapshot = NULL;

  json_object_set_boolean_member (take, "take", TRUE);
  snapshot = ma_client_execute (f->client, "snapshot", take, &error);
  g_assert_no_error (error);
  g_assert_nonnull (snapshot);
  return g_steal_pointer (&snapshot);
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

/* Until the gateway's neighbour entry for the guest no longer holds OTHER_MAC (an announce
 * overrode the stale entry), or the deadline. */
static void
assert_gateway_entry_overridden (Fixture *f, gint64 deadline)
{
  g_autofree char *out = NULL;

  for (;;)
    {
      g_autofree char *cmd = g_strdup_printf ("ip -n %s neigh show " GUEST_ADDR " dev veth1",
                                              f->gateway_ns);
      g_auto(GStrv) argv = NULL;
      g_clear_pointer (&out, g_free);
      g_assert_true (g_shell_parse_argv (cmd, NULL, &argv, NULL));
      g_assert_true (g_spawn_sync (NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL,
                                   NULL, NULL));
      if (strstr (out, OTHER_MAC) == NULL || g_get_monotonic_time () >= deadline)
        break;
      g_usleep (50000);
    }
  g_assert_null (strstr (out, OTHER_MAC));
}

static void
test_announce (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = NULL;
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
  assert_gateway_entry_overridden (f, deadline);
}

/* [resume] announce=auto: a resume that QEMU did not announce (here a commanded one: no
 * NOTIFY_PEERS on the interface) makes the agent announce by itself after 2 s, emit
 * ANNOUNCED with what it sent, and the gateway's stale entry for the guest is overridden. */
static void
test_announce_automatic (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;
  gint64 deadline = g_get_monotonic_time () + DEADLINE_SECONDS * G_USEC_PER_SEC;
  JsonObject *announced = NULL;

  must ("ip -n %s neigh replace " GUEST_ADDR " lladdr " OTHER_MAC " dev veth1 nud stale",
        f->gateway_ns);
  json_object_set_string_member (args, "operation", "auto-1");
  ret = ma_client_execute (f->client, "resumed", args, &error);
  g_assert_no_error (error);
  while (announced == NULL)
    {
      g_autoptr(JsonNode) ev = ma_client_next_event (f->client, 1000, NULL);
      if (ev != NULL && g_strcmp0 (json_object_get_string_member (json_node_get_object (ev),
                                                                  "event"), "ANNOUNCED") == 0)
        announced = json_object_ref (json_object_get_object_member (json_node_get_object (ev),
                                                                    "data"));
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
    }
  g_test_message ("ANNOUNCED %s", json_object_get_string_member (announced, "reason"));
  g_assert_true (json_object_has_member (announced, "resume"));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (announced, "sent")),
                    >=, 1);
  json_object_unref (announced);
  assert_gateway_entry_overridden (f, deadline);
}

/* dns:NAME against a real dnsmasq: resolves; no answer at all (the server stopped with
 * SIGSTOP) fails at the configured deadline; a refusing port (the server gone) fails at once
 * with the resolver's reason; each time the server is back, the check passes again. */
static void
test_dns (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) snapshot = take_snapshot (f);
  g_autofree char *detail = NULL;
  double seconds = 0;
  gint64 started;

  assert_check (f, "dns:" DNS_NAME, "pass", &detail, NULL);
  g_assert_nonnull (strstr (detail, DNS_ANSWER));
  assert_roots (f, "");

  /* a server that holds the query and never answers: the agent's deadline, not glibc's 5 s */
  g_subprocess_send_signal (f->dnsmasq, SIGSTOP);
  started = g_get_monotonic_time ();
  g_clear_pointer (&detail, g_free);
  assert_check (f, "dns:" DNS_NAME, "fail", &detail, &seconds);
  g_assert_nonnull (strstr (detail, "no answer within 1500 ms"));
  g_assert_cmpfloat (seconds, >=, DNS_TIMEOUT_MS / 1000.0 * 0.9);
  g_assert_cmpfloat (seconds, <, DNS_TIMEOUT_MS / 1000.0 + deadline_slack_s ());
  /* the whole validation is bounded by that deadline too */
  g_assert_cmpint (g_get_monotonic_time () - started, <, (DNS_TIMEOUT_MS + 3000) * 1000);
  assert_roots (f, "dns:" DNS_NAME);
  g_subprocess_send_signal (f->dnsmasq, SIGCONT);
  g_clear_pointer (&detail, g_free);
  assert_check (f, "dns:" DNS_NAME, "pass", &detail, NULL);
  g_assert_nonnull (strstr (detail, DNS_ANSWER));

  /* no server at all: the gateway answers port unreachable, and the resolver gives up early */
  stop_dnsmasq (f);
  g_clear_pointer (&detail, g_free);
  assert_check (f, "dns:" DNS_NAME, "fail", &detail, &seconds);
  g_assert_nonnull (strstr (detail, DNS_NAME));
  g_assert_null (strstr (detail, "no answer within"));
  g_assert_cmpfloat (seconds, <, DNS_TIMEOUT_MS / 1000.0);
  assert_roots (f, "dns:" DNS_NAME);

  start_dnsmasq (f);
  g_clear_pointer (&detail, g_free);
  assert_check (f, "dns:" DNS_NAME, "pass", &detail, NULL);
  g_assert_nonnull (strstr (detail, DNS_ANSWER));
  assert_roots (f, "");
}

/* tcp:HOST:PORT: a listening endpoint passes; once it is closed the connection is refused, at
 * once; an endpoint whose SYNs vanish fails when tcp-timeout-ms has passed, not later. */
static void
test_tcp (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) snapshot = take_snapshot (f);
  g_autofree char *detail = NULL;
  double seconds = 0;

  assert_check (f, "tcp:" TCP_OPEN, "pass", NULL, NULL);
  assert_check (f, "tcp:" TCP_DROPPED, "fail", &detail, &seconds);
  g_assert_nonnull (strstr (detail, "timed out"));
  g_assert_cmpfloat (seconds, >=, TCP_TIMEOUT_MS / 1000.0 * 0.9);
  g_assert_cmpfloat (seconds, <, TCP_TIMEOUT_MS / 1000.0 + deadline_slack_s ());
  assert_roots (f, "tcp:" TCP_DROPPED);

  stop_listener (f);
  g_clear_pointer (&detail, g_free);
  assert_check (f, "tcp:" TCP_OPEN, "fail", &detail, &seconds);
  g_assert_nonnull (strstr (detail, "refused"));
  g_assert_cmpfloat (seconds, <, TCP_TIMEOUT_MS / 1000.0);
  assert_roots (f, "tcp:" TCP_OPEN ",tcp:" TCP_DROPPED);

  start_listener (f);
  assert_check (f, "tcp:" TCP_OPEN, "pass", NULL, NULL);
  assert_roots (f, "tcp:" TCP_DROPPED);
}

/* The IPv6 default gateway (a global or a link-local address, as routers often announce): in
 * the snapshot, answering the agent's neighbour solicitation with its MAC; silent once its
 * address is gone (and only that check fails); back when the address is. */
static void
test_ipv6_gateway (Fixture *f, gconstpointer data)
{
  const Variant *variant = data;
  g_autoptr(JsonNode) snapshot = take_snapshot (f);
  g_autofree char *detail = NULL;
  g_autofree char *check = g_strdup_printf ("gateway:%s", variant->gateway6);
  JsonObject *net = NULL;
  JsonArray *routes = NULL;
  gboolean found = FALSE;
  double seconds = 0;

  g_assert_true (ma_json_get_object (json_node_get_object (snapshot), "network", &net, NULL));
  g_assert_true (ma_json_get_array (net, "routes", &routes, NULL));
  for (guint i = 0; i < json_array_get_length (routes); i++)
    {
      JsonObject *r = json_node_get_object (json_array_get_element (routes, i));
      const char *family = NULL, *dst = NULL, *gateway = NULL, *ifname = NULL;
      ma_json_get_string (r, "family", &family, NULL);
      ma_json_get_string (r, "dst", &dst, NULL);
      ma_json_get_string (r, "gateway", &gateway, NULL);
      ma_json_get_string (r, "interface", &ifname, NULL);
      if (g_strcmp0 (family, "ipv6") == 0 && g_strcmp0 (dst, "default") == 0
          && g_strcmp0 (gateway, variant->gateway6) == 0 && g_strcmp0 (ifname, "veth0") == 0)
        found = TRUE;
    }
  g_assert_true (found);

  assert_roots (f, "");
  assert_check (f, "default-route:ipv6", "pass", NULL, NULL);
  assert_check (f, check, "pass", &detail, NULL);
  g_assert_nonnull (strstr (detail, GATEWAY_MAC));

  must ("ip -n %s addr del %s/64 dev veth1", f->gateway_ns, variant->gateway6);
  g_clear_pointer (&detail, g_free);
  assert_check (f, check, "fail", &detail, &seconds);
  g_assert_nonnull (strstr (detail, "no neighbour advertisement"));
  g_assert_cmpfloat (seconds, <, 1.0 + deadline_slack_s ()); /* gateway-timeout-ms, 1000 */
  assert_roots (f, check);
  assert_check (f, "gateway:" GATEWAY_ADDR, "pass", NULL, NULL);

  must ("ip -n %s addr add %s/64 dev veth1 nodad", f->gateway_ns, variant->gateway6);
  g_clear_pointer (&detail, g_free);
  assert_check (f, check, "pass", &detail, NULL);
  g_assert_nonnull (strstr (detail, GATEWAY_MAC));
  assert_roots (f, "");
}

/* ---- IPv6 addresses in duplicate address detection ---- */

/* Duplicate address detection on the guest's veth0 (the fixture turned it off): `transmits`
 * solicitations `retrans_ms` apart, without the random initial delay, so it lasts about
 * transmits × retrans_ms; addresses stay across a link flap and go through DAD again. */
static void
set_dad (Fixture *f, guint transmits, guint retrans_ms)
{
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.veth0.accept_dad=1", f->guest_ns);
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.veth0.keep_addr_on_down=1", f->guest_ns);
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.veth0.router_solicitation_delay=0",
        f->guest_ns);
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.veth0.dad_transmits=%u", f->guest_ns,
        transmits);
  must ("ip netns exec %s sysctl -q -w net.ipv6.neigh.veth0.retrans_time_ms=%u", f->guest_ns,
        retrans_ms);
}

/* The guest's IPv6 addresses on veth0 with `state` ("tentative", "dadfailed"), as "a,b". */
static char *
addresses_in_state (Fixture *f, const char *state)
{
  const char *argv[] = { "ip", "-n", f->guest_ns, "-6", "-o", "addr", "show", "dev", "veth0",
                         state, NULL };
  g_autofree char *out = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func (g_free);

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                               NULL, NULL, NULL));
  lines = g_strsplit (out, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *inet6 = strstr (lines[i], "inet6 ");
      if (inet6 != NULL)
        g_ptr_array_add (found, g_strndup (inet6 + 6, strcspn (inet6 + 6, "/ ")));
    }
  g_ptr_array_sort (found, (GCompareFunc) g_strcmp0);
  g_ptr_array_add (found, NULL);
  return g_strjoinv (",", (char **) found->pdata);
}

static void
wait_until_settled (Fixture *f)
{
  gint64 deadline = g_get_monotonic_time () + DEADLINE_SECONDS * G_USEC_PER_SEC;
  g_autofree char *tentative = NULL;

  for (;;)
    {
      g_free (tentative);
      tentative = addresses_in_state (f, "tentative");
      if (*tentative == '\0' || g_get_monotonic_time () >= deadline)
        break;
      g_usleep (50000);
    }
  g_assert_cmpstr (tentative, ==, "");
}

/* Down and up: every address of veth0 not marked nodad (the link-local one too) is tentative
 * again; the routes the kernel dropped with the link come back. */
static void
flap_link (Fixture *f)
{
  must ("ip -n %s link set veth0 down", f->guest_ns);
  must ("ip -n %s link set veth0 up", f->guest_ns);
  restore_routes (f);
  must ("ip -n %s -6 route replace default via " GATEWAY_ADDR6 " dev veth0", f->guest_ns);
}

/* Send `validate` and, while it runs, a `ping` on a second connection: the agent's main loop
 * answers at once, whatever the validation waits for. Then, when gateway_takes is an address,
 * the gateway adds it too (without DAD of its own). The validation's report. */
static JsonNode *
validate_while_pinging (Fixture *f, double *ping_seconds, const char *gateway_takes)
{
  static const char request[] = "{\"execute\": \"validate\", \"id\": \"dad\"}\n";
  g_autoptr(GError) error = NULL;
  g_autoptr(MaClient) second = ma_client_connect (f->socket_uri, 30000, &error);
  g_autoptr(JsonNode) pong = NULL;
  gint64 started;

  g_assert_no_error (error);
  g_assert_true (ma_client_write_raw (f->client, request, strlen (request), &error));
  g_assert_no_error (error);
  started = g_get_monotonic_time ();
  pong = ma_client_execute (second, "ping", NULL, &error);
  g_assert_no_error (error);
  *ping_seconds = (double) (g_get_monotonic_time () - started) / G_USEC_PER_SEC;
  if (gateway_takes != NULL)
    must ("ip -n %s addr add %s/64 dev veth1 nodad", f->gateway_ns, gateway_takes);
  for (;;)
    {
      g_autofree char *line = ma_client_read_line (f->client, 30000, &error);
      g_autoptr(JsonNode) node = NULL;
      JsonObject *ret = NULL;
      const char *id = NULL;

      g_assert_no_error (error);
      g_assert_nonnull (line);
      node = json_from_string (line, &error);
      g_assert_no_error (error);
      g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
      if (!ma_json_get_string (json_node_get_object (node), "id", &id, NULL)
          || g_strcmp0 (id, "dad") != 0)
        continue; /* an event */
      g_assert_true (ma_json_get_object (json_node_get_object (node), "return", &ret, NULL));
      return json_node_copy (json_object_get_member (json_node_get_object (node), "return"));
    }
}

/* One check of a report: its status, detail, duration and caused-by ("" when none). */
static void
report_check (JsonNode *report, const char *name, const char **status, const char **detail,
              double *duration, const char **cause)
{
  JsonArray *checks = NULL;

  g_assert_true (ma_json_get_array (json_node_get_object (report), "checks", &checks, NULL));
  for (guint i = 0; i < json_array_get_length (checks); i++)
    {
      JsonObject *c = json_node_get_object (json_array_get_element (checks, i));
      const char *n = NULL;

      ma_json_get_string (c, "name", &n, NULL);
      if (g_strcmp0 (n, name) != 0)
        continue;
      g_assert_true (ma_json_get_string (c, "status", status, NULL));
      g_assert_true (ma_json_get_string (c, "detail", detail, NULL));
      g_assert_true (ma_json_get_double (c, "duration", duration, NULL));
      *cause = "";
      ma_json_get_string (c, "caused-by", cause, NULL);
      g_test_message ("%s: %s (%s) in %.3f s%s%s", name, *status, *detail, *duration,
                      **cause ? ", caused by " : "", *cause);
      return;
    }
  {
    g_autofree char *text = json_to_string (report, FALSE);
    g_error ("no check %s in %s", name, text);
  }
}

/* The guest's addresses pass DAD (with DAD on) before the snapshot, which then passes. */
static void
snapshot_with_dad (Fixture *f, JsonNode **snapshot)
{
  set_dad (f, 1, 100);
  must ("ip -n %s addr del " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s addr add " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s -6 route replace default via " GATEWAY_ADDR6 " dev veth0", f->guest_ns);
  wait_until_settled (f);
  *snapshot = take_snapshot (f);
  assert_roots (f, "");
}

/* Tentative addresses that pass DAD within the agent's wait: the validation waits for them and
 * judges them then (a pass, after about the DAD's time), and the IPv6 gateway is probed from an
 * address that passed DAD. (a) only the global address re-added; (b) the link flapped: the
 * link-local address is tentative too, and with nothing to send from the kernel refused the
 * neighbour solicitation (EADDRNOTAVAIL), which failed the gateway before. */
static void
test_ipv6_tentative_settles (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) snapshot = NULL;
  const char *status, *detail, *cause;
  double seconds, ping;

  snapshot_with_dad (f, &snapshot);
  /* three solicitations 500 ms apart: about 1.5 s, within the wait */
  set_dad (f, 3, 500);
  G_STATIC_ASSERT (MA_VALIDATE_DAD_WAIT_MS >= 2500);

  /* (a) */
  must ("ip -n %s addr del " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s addr add " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s -6 route replace default via " GATEWAY_ADDR6 " dev veth0", f->guest_ns);
  {
    g_autofree char *tentative = addresses_in_state (f, "tentative");
    g_autoptr(JsonNode) report = NULL;
    g_autofree char *after = NULL;

    g_assert_cmpstr (tentative, ==, GUEST_ADDR6);
    report = validate_while_pinging (f, &ping, NULL);
    after = addresses_in_state (f, "tentative");
    g_assert_cmpstr (after, ==, "");
    report_check (report, "addresses:veth0", &status, &detail, &seconds, &cause);
    g_assert_cmpstr (status, ==, "pass");
    g_assert_nonnull (strstr (detail, "duplicate address detection finished after"));
    g_assert_cmpfloat (seconds, >, 0.5);
    g_assert_cmpfloat (seconds, <, MA_VALIDATE_DAD_WAIT_MS / 1000.0);
    report_check (report, "gateway:" GATEWAY_ADDR6, &status, &detail, &seconds, &cause);
    g_assert_cmpstr (status, ==, "pass");
    g_assert_nonnull (strstr (detail, GATEWAY_MAC));
    g_assert_cmpfloat (ping, <, answer_bound_s ());
  }

  /* (b) */
  flap_link (f);
  {
    g_autofree char *tentative = addresses_in_state (f, "tentative");
    g_autoptr(JsonNode) report = NULL;
    g_autofree char *after = NULL;

    g_assert_nonnull (strstr (tentative, GUEST_ADDR6));
    g_assert_nonnull (strstr (tentative, "fe80:"));
    report = validate_while_pinging (f, &ping, NULL);
    after = addresses_in_state (f, "tentative");
    g_assert_cmpstr (after, ==, "");
    report_check (report, "addresses:veth0", &status, &detail, &seconds, &cause);
    g_assert_cmpstr (status, ==, "pass");
    g_assert_nonnull (strstr (detail, "duplicate address detection finished after"));
    report_check (report, "gateway:" GATEWAY_ADDR6, &status, &detail, &seconds, &cause);
    g_assert_cmpstr (status, ==, "pass");
    g_assert_nonnull (strstr (detail, GATEWAY_MAC));
    g_assert_cmpfloat (ping, <, answer_bound_s ());
  }
  assert_roots (f, "");
}

/* Addresses still tentative when the wait ends: the validation ends at its deadline with a
 * failure of addresses:veth0 that names them; the gateway is not probed (and not blamed). */
static void
test_ipv6_tentative_deadline (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) snapshot = NULL;
  g_autoptr(JsonNode) report = NULL;
  g_autofree char *tentative = NULL;
  const char *status, *detail, *cause;
  double seconds, ping;
  gint64 started;

  snapshot_with_dad (f, &snapshot);
  /* a hundred solicitations a second apart: DAD outlasts the wait by far */
  set_dad (f, 100, 1000);
  flap_link (f);
  tentative = addresses_in_state (f, "tentative");
  g_assert_nonnull (strstr (tentative, GUEST_ADDR6));
  g_assert_nonnull (strstr (tentative, "fe80:"));

  started = g_get_monotonic_time ();
  report = validate_while_pinging (f, &ping, NULL);
  g_assert_cmpfloat (ping, <, answer_bound_s ());
  /* bounded: the wait, then probes that are not sent */
  g_assert_cmpint (g_get_monotonic_time () - started, <, (MA_VALIDATE_DAD_WAIT_MS + 2000) * 1000);
  report_check (report, "addresses:veth0", &status, &detail, &seconds, &cause);
  g_assert_cmpstr (status, ==, "fail");
  g_assert_nonnull (strstr (detail, "still tentative"));
  g_assert_nonnull (strstr (detail, GUEST_ADDR6));
  g_assert_nonnull (strstr (detail, "fe80:"));
  g_assert_cmpfloat (seconds, >=, MA_VALIDATE_DAD_WAIT_MS / 1000.0 * 0.95);
  g_assert_cmpfloat (seconds, <, MA_VALIDATE_DAD_WAIT_MS / 1000.0 + deadline_slack_s ());
  report_check (report, "gateway:" GATEWAY_ADDR6, &status, &detail, &seconds, &cause);
  g_assert_cmpstr (status, ==, "fail");
  g_assert_cmpstr (cause, ==, "addresses:veth0");
  g_assert_null (strstr (detail, "Cannot assign"));
  /* IPv4 on the same interface is not held up by IPv6's DAD: its gateway is probed and answers */
  report_check (report, "gateway:" GATEWAY_ADDR, &status, &detail, &seconds, &cause);
  g_assert_cmpstr (status, ==, "pass");
  g_assert_cmpstr (cause, ==, "");

  /* DAD off and the link flapped again: the addresses are usable at once, all passes */
  must ("ip netns exec %s sysctl -q -w net.ipv6.conf.veth0.accept_dad=0", f->guest_ns);
  flap_link (f);
  wait_until_settled (f);
  assert_roots (f, "");
}

/* The gateway takes the guest's address while the guest's DAD for it runs (and the validation
 * waits): duplicate address detection failed, naming the address; the gateway is not probed. */
static void
test_ipv6_dad_failed (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) snapshot = NULL;
  g_autoptr(JsonNode) report = NULL;
  g_autofree char *tentative = NULL;
  g_autofree char *failed = NULL;
  const char *status, *detail, *cause;
  double seconds, ping;

  snapshot_with_dad (f, &snapshot);
  set_dad (f, 100, 1000);
  must ("ip -n %s addr del " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s addr add " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s -6 route replace default via " GATEWAY_ADDR6 " dev veth0", f->guest_ns);
  tentative = addresses_in_state (f, "tentative");
  g_assert_cmpstr (tentative, ==, GUEST_ADDR6);
  /* the duplicate appears on the gateway once the validation is under way (the guest's next
   * solicitation, within 1 s, finds it); the verdict is the same if it were seen at once */
  report = validate_while_pinging (f, &ping, GUEST_ADDR6);
  g_assert_cmpfloat (ping, <, answer_bound_s ());
  failed = addresses_in_state (f, "dadfailed");
  g_assert_cmpstr (failed, ==, GUEST_ADDR6);
  report_check (report, "addresses:veth0", &status, &detail, &seconds, &cause);
  g_assert_cmpstr (status, ==, "fail");
  g_assert_nonnull (strstr (detail, "duplicate address detection failed: " GUEST_ADDR6));
  g_assert_cmpfloat (seconds, <, MA_VALIDATE_DAD_WAIT_MS / 1000.0);
  report_check (report, "gateway:" GATEWAY_ADDR6, &status, &detail, &seconds, &cause);
  g_assert_cmpstr (status, ==, "fail");
  g_assert_cmpstr (cause, ==, "addresses:veth0");

  /* the gateway gives the address back; the guest's is added again without DAD */
  must ("ip -n %s addr del " GUEST_ADDR6 "/64 dev veth1", f->gateway_ns);
  must ("ip -n %s addr del " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s addr add " GUEST_ADDR6 "/64 dev veth0 nodad", f->guest_ns);
  must ("ip -n %s -6 route replace default via " GATEWAY_ADDR6 " dev veth0", f->guest_ns);
  assert_roots (f, "");
}

/* No IPv6 address of veth0 can send a neighbour solicitation (no link-local one, the only other
 * one tentative and not in the snapshot, so nothing waits for it): the gateway check says so and
 * names the address, rather than blaming the gateway with the kernel's EADDRNOTAVAIL. Once the
 * address is usable, the solicitation goes from it (a global source: there is no link-local). */
static void
test_ipv6_no_usable_source (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) snapshot = NULL;
  g_autofree char *detail = NULL;

  /* routes on veth0 and no IPv6 address at all, in the snapshot too */
  must ("ip -n %s link set veth0 addrgenmode none", f->guest_ns);
  must ("ip -n %s -6 addr flush dev veth0", f->guest_ns);
  must ("ip -n %s -6 route replace fd77::/64 dev veth0", f->guest_ns);
  must ("ip -n %s -6 route replace default via " GATEWAY_ADDR6 " dev veth0", f->guest_ns);
  snapshot = take_snapshot (f);
  assert_check (f, "gateway:" GATEWAY_ADDR6, "fail", &detail, NULL);
  g_assert_nonnull (strstr (detail, "no IPv6 address that passed duplicate address detection"));
  g_assert_null (strstr (detail, "Cannot assign"));

  set_dad (f, 100, 1000);
  must ("ip -n %s addr add " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  g_clear_pointer (&detail, g_free);
  assert_check (f, "gateway:" GATEWAY_ADDR6, "fail", &detail, NULL);
  g_assert_nonnull (strstr (detail, GUEST_ADDR6 " (tentative)"));
  g_assert_null (strstr (detail, "Cannot assign"));
  assert_roots (f, "gateway:" GATEWAY_ADDR6);

  must ("ip -n %s addr del " GUEST_ADDR6 "/64 dev veth0", f->guest_ns);
  must ("ip -n %s addr add " GUEST_ADDR6 "/64 dev veth0 nodad", f->guest_ns);
  must ("ip -n %s -6 route replace default via " GATEWAY_ADDR6 " dev veth0", f->guest_ns);
  g_clear_pointer (&detail, g_free);
  assert_check (f, "gateway:" GATEWAY_ADDR6, "pass", &detail, NULL);
  g_assert_nonnull (strstr (detail, GATEWAY_MAC));
  assert_roots (f, "");
}

static void
skip_without_dnsmasq (void)
{
  g_test_skip ("dnsmasq is not installed (tests/integration/PACKAGES)");
}

int
main (int argc, char **argv)
{
  g_autofree char *ip = g_find_program_in_path ("ip");
  g_autofree char *dnsmasq = g_find_program_in_path ("dnsmasq");

  g_test_init (&argc, &argv, NULL);
  if (getuid () != 0 || ip == NULL)
    {
      printf ("1..0 # SKIP needs root and iproute2 to create network namespaces\n");
      return 0;
    }
  /* a failed assertion still reaches the teardown, which removes the namespaces */
  g_test_set_nonfatal_assertions ();
  g_test_add ("/netns-validate/break-one-at-a-time", Fixture, &variant_ipv4, fixture_setup,
              test_break_one_at_a_time, fixture_teardown);
  g_test_add ("/netns-validate/announce-automatic", Fixture, &variant_announce_auto, fixture_setup,
              test_announce_automatic, fixture_teardown);
  g_test_add ("/netns-validate/announce", Fixture, &variant_ipv4, fixture_setup, test_announce,
              fixture_teardown);
  g_test_add ("/netns-validate/tcp", Fixture, &variant_tcp, fixture_setup, test_tcp,
              fixture_teardown);
  g_test_add ("/netns-validate/ipv6-gateway", Fixture, &variant_ipv6, fixture_setup,
              test_ipv6_gateway, fixture_teardown);
  g_test_add ("/netns-validate/ipv6-gateway-link-local", Fixture, &variant_ipv6_link_local,
              fixture_setup, test_ipv6_gateway, fixture_teardown);
  g_test_add ("/netns-validate/ipv6-tentative-settles", Fixture, &variant_ipv6, fixture_setup,
              test_ipv6_tentative_settles, fixture_teardown);
  g_test_add ("/netns-validate/ipv6-tentative-deadline", Fixture, &variant_ipv6, fixture_setup,
              test_ipv6_tentative_deadline, fixture_teardown);
  g_test_add ("/netns-validate/ipv6-dad-failed", Fixture, &variant_ipv6, fixture_setup,
              test_ipv6_dad_failed, fixture_teardown);
  g_test_add ("/netns-validate/ipv6-no-usable-source", Fixture, &variant_ipv6, fixture_setup,
              test_ipv6_no_usable_source, fixture_teardown);
  if (dnsmasq != NULL)
    g_test_add ("/netns-validate/dns", Fixture, &variant_dns, fixture_setup, test_dns,
                fixture_teardown);
  else
    g_test_add_func ("/netns-validate/dns", skip_without_dnsmasq);
  return g_test_run ();
}
