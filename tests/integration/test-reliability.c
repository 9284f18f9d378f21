/* test-reliability.c — fault injection against the real daemon: floods, clients vanishing
 * mid-request, stale bytes, malformed strings, garbage arguments to every command,
 * SIGTERM under load, an address-space limit (ulimit -v), and where the agent writes. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/magic.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "daemon-fixture.h"
#include "error.h"
#include "json.h"
#include "validate-storage.h"

#define REPLY_TIMEOUT_MS 60000
#define FLOOD_REQUESTS 100000
/* RSS growth allowed after 100k requests: buffers may stay allocated, nothing may accumulate */
#define FLOOD_RSS_BOUND_KIB (16 * 1024)

/* ASan keeps freed memory in quarantine and valgrind has its own allocator: RSS says
 * nothing about leaks there (LeakSanitizer and memcheck do that job) */
#define MA_RSS_MEANINGFUL ma_test_daemon_rss_meaningful ()

typedef struct
{
  MaTestDaemon *daemon;
  char *plugin_dir;
} Fixture;

/* The daemon runs in the test's own network namespace (see main): commands such as
 * announce and validate only ever see a loopback interface. */
static gboolean in_private_netns;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *config = NULL;

  f->plugin_dir = g_dir_make_tmp ("ma-reliability-plugins-XXXXXX", &error);
  g_assert_no_error (error);
  /* no plugins, no throttle classes: garbage cannot reach an application */
  config = g_strdup_printf ("[plugins]\ndirs=%s\n", f->plugin_dir);
  f->daemon = ma_test_daemon_new (config);
  ma_test_daemon_start (f->daemon, NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->daemon, ma_test_daemon_free);
  g_rmdir (f->plugin_dir);
  g_free (f->plugin_dir);
}

static JsonObject *
parse_reply (const char *line)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;
  const char *start = line;

  if ((guchar) *start == 0xFF)
    start++;
  node = ma_json_parse (start, strlen (start), &error);
  if (node == NULL)
    g_error ("reply is not JSON (%s): %s", error->message, line);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  return json_object_ref (json_node_get_object (node));
}

static char *
read_reply_line (MaClient *client)
{
  g_autoptr(GError) error = NULL;
  char *line;

  /* skip events */
  while ((line = ma_client_read_line (client, REPLY_TIMEOUT_MS, &error)) != NULL
         && g_str_has_prefix (line, "{\"event\""))
    g_free (line);
  g_assert_no_error (error);
  return line;
}

static void
assert_alive (MaClient *client, guint id)
{
  g_autofree char *req = g_strdup_printf ("{\"execute\":\"sync\",\"arguments\":{\"id\":%u}}\n", id);
  g_autofree char *line = NULL;
  g_autoptr(JsonObject) obj = NULL;

  g_assert_true (ma_client_write_raw (client, req, strlen (req), NULL));
  line = read_reply_line (client);
  obj = parse_reply (line);
  g_assert_cmpint (json_object_get_int_member (obj, "return"), ==, id);
}

static gint64
unix_clients (MaClient *client)
{
  g_autoptr(JsonNode) status = ma_test_execute (client, "status", NULL);

  return json_object_get_int_member (
    json_object_get_object_member (json_node_get_object (status), "clients"), "unix-clients");
}

static void
wait_unix_clients (MaClient *client, gint64 expected)
{
  gint64 deadline = g_get_monotonic_time () + REPLY_TIMEOUT_MS * 1000;

  while (unix_clients (client) != expected)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10 * 1000);
    }
}

/* 100,000 requests as fast as one connection can carry them: all answered, in order,
 * correctly; afterwards the agent's memory is back within a bound. */
static void
test_flood_100k (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(GString) batch = g_string_new (NULL);
  gint64 rss_before, rss_peak = 0, rss_after, start;
  pid_t pid;
  int status;

  /* warm up: first-use allocations are not growth */
  for (guint i = 0; i < 1000; i++)
    assert_alive (client, i);
  rss_before = ma_test_daemon_rss_kib (f->daemon);

  /* alternate ping and sync so that a reply carries its own check */
  for (guint i = 0; i < FLOOD_REQUESTS; i++)
    {
      if (i % 2 == 0)
        g_string_append_printf (batch, "{\"execute\":\"ping\",\"id\":%u}\n", i);
      else
        g_string_append_printf (batch, "{\"execute\":\"sync\",\"arguments\":{\"id\":%u},\"id\":%u}\n",
                                i * 3, i);
    }
  start = g_get_monotonic_time ();
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    _exit (ma_client_write_raw (client, batch->str, batch->len, NULL) ? 0 : 1);
  for (guint i = 0; i < FLOOD_REQUESTS; i++)
    {
      g_autofree char *line = read_reply_line (client);
      g_autoptr(JsonObject) obj = parse_reply (line);

      if (json_object_get_int_member (obj, "id") != i)
        g_error ("reply %u carries id %" G_GINT64_FORMAT ": %s", i,
                 json_object_get_int_member (obj, "id"), line);
      if (i % 2 == 0)
        g_assert_true (JSON_NODE_HOLDS_OBJECT (json_object_get_member (obj, "return")));
      else
        g_assert_cmpint (json_object_get_int_member (obj, "return"), ==, (gint64) i * 3);
      if (i % 10000 == 0)
        rss_peak = MAX (rss_peak, ma_test_daemon_rss_kib (f->daemon));
    }
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  g_test_message ("%d requests answered in order in %.2f s",
                  FLOOD_REQUESTS, (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC);

  assert_alive (client, 424242);
  rss_after = ma_test_daemon_rss_kib (f->daemon);
  g_test_message ("RSS before %" G_GINT64_FORMAT " KiB, peak seen %" G_GINT64_FORMAT
                  " KiB, after %" G_GINT64_FORMAT " KiB", rss_before, rss_peak, rss_after);
  if (MA_RSS_MEANINGFUL)
    g_assert_cmpint (rss_after - rss_before, <, FLOOD_RSS_BOUND_KIB);
}

/* Clients that vanish half-way through a request, or before reading their reply, while
 * another client keeps working. */
static void
test_disconnect_mid_request (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) worker = ma_test_daemon_connect (f->daemon);
  static const char *const partial[] = {
    "{\"execute\":\"in",
    "{\"execute\":\"info\",\"arguments\":{",
    "{\"execute\":\"sync\",\"arguments\":{\"id\":\"unterminated",
    "{\"execute\":\"info\"}\n", /* complete: the reply goes to a closed socket */
    "{\"execute\":\"blockers\"}\n", /* a command that works in a thread */
    "{\"execute\":\"events\",\"arguments\":{\"after\":0}}\n{\"execute\":\"info\"}\n",
  };

  for (guint round = 0; round < 300; round++)
    {
      const char *bytes = partial[round % G_N_ELEMENTS (partial)];
      g_autoptr(GError) error = NULL;
      g_autoptr(MaClient) leaver = ma_client_connect (f->daemon->socket, 10000, &error);

      g_assert_no_error (error);
      g_assert_true (ma_client_write_raw (leaver, bytes, strlen (bytes), NULL));
      g_clear_pointer (&leaver, ma_client_free);
      assert_alive (worker, round);
    }
  /* every leaver is forgotten; the worker is still served */
  wait_unix_clients (worker, 1);
  assert_alive (worker, 99999);
}

/* Bytes left over from an earlier conversation (a host that reconnected): 0xFF and
 * sync-delimited resynchronise whatever came before. */
static void
test_stale_bytes_recover (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  static const struct
  {
    const char *bytes;
    gsize len;
  } stale[] = {
    { "{\"execute\":\"pi", 14 },
    { "{\"execute\":\"sync\",\"arguments\":{\"id\":\"open string", 47 },
    { "\x01\x02\x03\x80\x81\xfe\xc3", 7 },
    { "[[[[[[[[[[[[[[[[[[[[", 20 },
    { "}}}}]]]\"\"\"", 10 },
    { "\0\0\0\0", 4 },
    { "{\"execute\":\"ping\"}{\"execute\":", 29 }, /* one whole request, then half */
  };

  for (guint i = 0; i < G_N_ELEMENTS (stale); i++)
    {
      g_autofree char *resync = g_strdup_printf (
        "\xff{\"execute\":\"sync-delimited\",\"arguments\":{\"id\":%u}}\n", 1000 + i);
      gboolean found = FALSE;

      g_assert_true (ma_client_write_raw (client, stale[i].bytes, stale[i].len, NULL));
      g_assert_true (ma_client_write_raw (client, resync, strlen (resync), NULL));
      /* replies to complete stale requests may come first; then the delimited one */
      for (guint lines = 0; lines < 4 && !found; lines++)
        {
          g_autofree char *line = read_reply_line (client);
          g_autoptr(JsonObject) obj = parse_reply (line);
          if ((guchar) line[0] == 0xFF)
            {
              g_assert_cmpint (json_object_get_int_member (obj, "return"), ==, 1000 + i);
              found = TRUE;
            }
        }
      if (!found)
        g_error ("stale bytes %u: no sync-delimited reply", i);
      assert_alive (client, i);
    }
}

enum
{
  ANSWERED,     /* an error or a result: both are fine */
  REFUSED,      /* must be an error */
};

/* Malformed text inside strings: every case gets exactly one reply (an error, or a result
 * for valid escapes) and the stream goes on. */
static void
test_invalid_utf8_and_nul (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  static const struct
  {
    const char *bytes;
    gsize len;
    int expect;
  } cases[] = {
#define CASE(s, expect) { s, sizeof s - 1, expect }
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\xc3\x28\"}}\n", REFUSED),
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\xe2\x82\"}}\n", REFUSED),
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\xf0\x28\x8c\xbc\"}}\n", REFUSED),
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\xc0\xaf\"}}\n", REFUSED), /* overlong '/' */
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\xed\xa0\x80\"}}\n", REFUSED), /* surrogate */
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\xf4\x90\x80\x80\"}}\n", REFUSED), /* > U+10FFFF */
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"i\xc3\x28\":1}}\n", REFUSED),
    CASE ("{\"execute\":\"ping\",\"id\":\"\xc3\x28\"}\n", REFUSED),
    CASE ("{\"execute\":\"\xe2\x82\xac\"}\n", REFUSED), /* valid UTF-8, unknown command */
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"a\0b\"}}\n", REFUSED), /* raw NUL */
    CASE ("{\"execute\":\"pi\0ng\"}\n", REFUSED),
    CASE ("{\"exe\0cute\":\"ping\"}\n", REFUSED),
    /* an escaped NUL is valid JSON, but the agent's strings are C strings: the id would
     * come back cut ("a"); refusing it is the only lossless answer */
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"a\\u0000b\"}}\n", REFUSED),
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\\ud800\"}}\n", ANSWERED), /* lone surrogate escape */
    CASE ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\\uZZZZ\"}}\n", REFUSED),
    CASE ("{\"execute\":\"ping\\u0000\"}\n", REFUSED), /* runs "ping" today */
    CASE ("{\"execute\":\"freeze-guard\",\"arguments\":{\"renew\":\"\xc3\x28\"}}\n", REFUSED),
#undef CASE
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *line = NULL;
      g_autoptr(JsonObject) obj = NULL;

      g_assert_true (ma_client_write_raw (client, cases[i].bytes, cases[i].len, NULL));
      line = read_reply_line (client);
      obj = parse_reply (line);
      if (cases[i].expect == REFUSED && !json_object_has_member (obj, "error"))
        g_error ("case %u was accepted: %s", i, line);
      if (!json_object_has_member (obj, "error") && !json_object_has_member (obj, "return"))
        g_error ("case %u: neither error nor return: %s", i, line);
      g_test_message ("case %u: %s", i, line);
      /* exactly one reply: the next one is ours */
      assert_alive (client, 5000 + i);
    }
}

/* Garbage of every JSON type for every command `info` lists (this grows with the agent). */
static const char *const garbage_values[] = {
  "null", "true", "false", "0", "-1", "1.5", "-0.25", "9223372036854775807",
  "18446744073709551616", "\"\"", "\"garbage\"", "\"../../etc/passwd\"", "[]", "[1,\"a\",null]",
  "{}", "{\"a\":{\"b\":[]}}",
};

/* Member names the commands take (or might): wrong types must be refused, not crash. */
static const char *const garbage_members[] = {
  "id", "after", "limit", "operation", "lease", "lease-seconds", "lease_seconds", "plugin",
  "plugins", "name", "mount", "mounts", "path", "pid", "renew", "seconds", "interval",
  "timeout", "phase", "take", "class", "classes", "top", "force", "all", "interfaces",
  "expected", "checks", "verbose",
};

static void
execute_garbage (MaClient *client, const char *command, const char *arguments, guint *n)
{
  g_autofree char *req = NULL;
  g_autofree char *line = NULL;
  g_autoptr(JsonObject) obj = NULL;
  gint64 started = g_get_monotonic_time ();

  if (arguments != NULL)
    req = g_strdup_printf ("{\"execute\":\"%s\",\"arguments\":%s,\"id\":%u}\n", command, arguments, *n);
  else
    req = g_strdup_printf ("{\"execute\":\"%s\",\"id\":%u}\n", command, *n);
  g_assert_true (ma_client_write_raw (client, req, strlen (req), NULL));
  line = read_reply_line (client);
  obj = parse_reply (line);
  if (!json_object_has_member (obj, "error") && !json_object_has_member (obj, "return"))
    g_error ("%s: neither error nor return: %s", req, line);
  if (json_object_get_int_member (obj, "id") != *n)
    g_error ("%s: answered with another id: %s", req, line);
  if (g_get_monotonic_time () - started > 5 * G_USEC_PER_SEC)
    g_test_message ("slow: %s took %.1f s", req,
                    (double) (g_get_monotonic_time () - started) / G_USEC_PER_SEC);
  (*n)++;
}

static void
test_every_command_garbage (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(JsonNode) info = NULL;
  JsonArray *commands;
  guint n = 0, n_commands;

  if (!in_private_netns)
    {
      g_test_skip ("needs a private network namespace (root): some commands send on every interface");
      return;
    }
  info = ma_test_execute (client, "info", NULL);
  commands = json_object_get_array_member (json_node_get_object (info), "commands");
  n_commands = json_array_get_length (commands);
  g_assert_cmpuint (n_commands, >=, 8);
  for (guint c = 0; c < n_commands; c++)
    {
      const char *name = json_object_get_string_member (json_array_get_object_element (commands, c),
                                                        "name");

      execute_garbage (client, name, NULL, &n);
      execute_garbage (client, name, "{}", &n);
      /* arguments that are not an object */
      for (guint v = 0; v < G_N_ELEMENTS (garbage_values); v++)
        if (garbage_values[v][0] != '{')
          execute_garbage (client, name, garbage_values[v], &n);
      /* every member name with every type */
      for (guint m = 0; m < G_N_ELEMENTS (garbage_members); m++)
        for (guint v = 0; v < G_N_ELEMENTS (garbage_values); v++)
          {
            g_autofree char *args = g_strdup_printf ("{\"%s\":%s}", garbage_members[m],
                                                     garbage_values[v]);
            execute_garbage (client, name, args, &n);
          }
      /* stop whatever a lucky combination started (a quiesce, a throttle) */
      assert_alive (client, c);
    }
  g_test_message ("%u commands, %u garbage requests, every one answered", n_commands, n);
  /* the agent survived all of it */
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
}

/* Numbers the agent echoes (ids, sync arguments) must come back as valid JSON. */
static void
test_echoed_numbers_valid (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  static const char *const numbers[] = { "1e308", "-1e-300", "1E5", "2.5e-3", "123456789.125",
                                         "-0", "9223372036854775807", "-9223372036854775808" };
  guint broken = 0;

  for (guint i = 0; i < G_N_ELEMENTS (numbers); i++)
    {
      g_autofree char *req = g_strdup_printf (
        "{\"execute\":\"sync\",\"arguments\":{\"id\":%s},\"id\":%s}\n", numbers[i], numbers[i]);
      g_autofree char *line = NULL;
      g_autoptr(JsonNode) node = NULL;

      g_assert_true (ma_client_write_raw (client, req, strlen (req), NULL));
      line = read_reply_line (client);
      node = ma_json_parse (line, strlen (line), NULL);
      if (node == NULL)
        {
          g_test_message ("%s came back as invalid JSON: %s", numbers[i], line);
          broken++;
        }
      assert_alive (client, i);
    }
  /* each came back as valid JSON (tests/RELIABILITY.md: numbers are echoed exactly) */
  g_assert_cmpuint (broken, ==, 0);
}

/* Send `count` copies of line (with a sync every 1000 so the agent is known to have read
 * them) and return the agent's RSS growth in KiB. */
static gint64
rss_growth_after (Fixture *f, MaClient *client, const char *line, guint count)
{
  g_autoptr(GString) batch = g_string_new (NULL);
  gint64 before;

  for (guint i = 0; i < 1000; i++)
    g_string_append (batch, line);
  /* warm up with the same input */
  g_assert_true (ma_client_write_raw (client, batch->str, batch->len, NULL));
  for (guint i = 0; i < 1000; i++)
    g_free (read_reply_line (client));
  before = ma_test_daemon_rss_kib (f->daemon);
  for (guint round = 0; round < count / 1000; round++)
    {
      g_assert_true (ma_client_write_raw (client, batch->str, batch->len, NULL));
      for (guint i = 0; i < 1000; i++)
        g_free (read_reply_line (client));
    }
  assert_alive (client, count);
  return ma_test_daemon_rss_kib (f->daemon) - before;
}

/* Garbage answered with errors must not cost memory: 200,000 bad requests of each kind.
 * Where RSS means nothing (ASan, an agent under valgrind) 2,000 of each run the same paths
 * and the leak checker judges them at the agent's exit. */
static void
test_garbage_does_not_leak (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  static const char *const clean[] = {
    "garbage\n", "[1,2,3]\n", "{\"execute\":42}\n", "{\"execute\":\"nope\",\"id\":[1,{}]}\n",
    "{\"execute\":\"ping\",\"arguments\":{\"x\":[1,2]}}\n", "{\"execute\":\"p\xc3\x28\"}\n",
    /* json-glib took these leniently (and leaked on the first) */
    "{\"execute\":\"ping\"/g\"/}\n", "{'execute':'ping'}\n",
    /* a scalar followed by more JSON: json-glib 1.6 dropped its first node on this error */
    "1[]\n",
  };
  guint count = MA_RSS_MEANINGFUL ? 200000 : 2000;

  for (guint i = 0; i < G_N_ELEMENTS (clean); i++)
    {
      g_autofree char *line = g_strchomp (g_strdup (clean[i]));
      g_autofree char *shown = g_strescape (line, NULL);
      gint64 growth = rss_growth_after (f, client, clean[i], count);
      g_test_message ("%s: RSS %+" G_GINT64_FORMAT " KiB after %u", shown, growth, count);
      if (MA_RSS_MEANINGFUL)
        g_assert_cmpint (growth, <, 2048);
    }
}

/* SIGTERM while a client floods: a clean exit, socket removed. */
static void
test_sigterm_during_flood (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(GString) batch = g_string_new (NULL);
  pid_t pid;

  for (guint i = 0; i < 200000; i++)
    g_string_append_printf (batch, "{\"execute\":\"ping\",\"id\":%u}\n", i);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    _exit (ma_client_write_raw (client, batch->str, batch->len, NULL) ? 0 : 1);
  /* the agent is busy answering */
  for (guint i = 0; i < 1000; i++)
    g_free (read_reply_line (client));
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  g_assert_false (g_file_test (f->daemon->socket, G_FILE_TEST_EXISTS));
  g_assert_cmpint (waitpid (pid, NULL, 0), ==, pid);
}

/* ---- the agent under an address-space limit (ulimit -v) ---- */

/* Headroom above the agent's size after start: a quarter of one 64 MiB line below, enough
 * for four clients at the request-size limit at once and a thread's stack. */
#define AS_HEADROOM_KIB (32 * 1024)
#define AS_REQUEST_BYTES (MA_TEST_MAX_REQUEST_BYTES - 8 * 1024)
#define MA_TEST_MAX_REQUEST_BYTES (1024 * 1024) /* agent/protocol.h, checked against `info` */

static gint64
proc_status_kib (pid_t pid, const char *field)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", (int) pid);
  g_autofree char *text = NULL;
  g_autofree char *key = g_strdup_printf ("\n%s:", field);
  const char *line;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  line = strstr (text, key);
  g_assert_nonnull (line);
  return g_ascii_strtoll (line + strlen (key), NULL, 10);
}

/* Lower the running agent's RLIMIT_AS (and RLIMIT_CORE: an abort leaves no core file) and
 * check that the kernel reports the new limit for it. */
static void
limit_address_space (MaTestDaemon *d, gint64 limit_kib)
{
  struct rlimit as = { (rlim_t) limit_kib * 1024, (rlim_t) limit_kib * 1024 };
  struct rlimit core = { 0, 0 };
  g_autofree char *path = g_strdup_printf ("/proc/%d/limits", (int) d->pid);
  g_autofree char *limits = NULL;
  g_autofree char *expected = g_strdup_printf ("%" G_GINT64_FORMAT, limit_kib * 1024);
  const char *line;

  g_assert_cmpint (prlimit (d->pid, RLIMIT_CORE, &core, NULL), ==, 0);
  g_assert_cmpint (prlimit (d->pid, RLIMIT_AS, &as, NULL), ==, 0);
  g_assert_true (g_file_get_contents (path, &limits, NULL, NULL));
  line = strstr (limits, "Max address space");
  g_assert_nonnull (line);
  g_assert_nonnull (strstr (line, expected));
}

static gboolean
skip_unless_plain_agent (void)
{
  if (!MA_RSS_MEANINGFUL)
    {
      /* ASan reserves terabytes of shadow memory and memcheck runs the agent inside its
       * own address space: an RLIMIT_AS says nothing about the agent there */
      g_test_skip ("an address-space limit means nothing under ASan or valgrind");
      return TRUE;
    }
  return FALSE;
}

static char *
sync_request (char fill, gsize total)
{
  GString *req = g_string_new ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"");

  while (req->len < total - 4)
    g_string_append_c (req, fill);
  g_string_append (req, "\"}}\n");
  return g_string_free (req, FALSE);
}

/* One round of everything that could make the agent allocate: lines far beyond the request
 * limit, four clients each holding a request just under it at once and then getting it
 * echoed, a pipelined flood, a threaded command. */
static void
address_space_round (Fixture *f, MaClient *client, guint round)
{
  g_autoptr(GString) huge = g_string_new ("{\"execute\":\"ping\",\"id\":\"");
  g_autoptr(GString) batch = g_string_new (NULL);
  MaClient *near[4] = { NULL };
  g_autofree char *reqs[G_N_ELEMENTS (near)] = { NULL };
  g_autoptr(JsonNode) blockers = NULL;

  /* two lines of 64 MiB each, twice the headroom: refused without being buffered */
  while (huge->len < 64 * 1024 * 1024)
    g_string_append (huge, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  g_string_append (huge, "\"}\n");
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *line = NULL;
      g_autoptr(JsonObject) obj = NULL;
      JsonObject *err;

      g_assert_true (ma_client_write_raw (client, huge->str, huge->len, NULL));
      line = read_reply_line (client);
      obj = parse_reply (line);
      g_assert_true (json_object_has_member (obj, "error"));
      err = json_object_get_object_member (obj, "error");
      g_assert_cmpstr (json_object_get_string_member (err, "class"), ==, "GenericError");
      g_assert_nonnull (strstr (json_object_get_string_member (err, "desc"),
                                "larger than 1048576 bytes"));
      assert_alive (client, round * 10 + i);
    }

  /* four clients, each with all but the end of a request just under the limit… */
  for (guint i = 0; i < G_N_ELEMENTS (near); i++)
    {
      near[i] = ma_test_daemon_connect (f->daemon);
      reqs[i] = sync_request ('a' + (char) i, AS_REQUEST_BYTES);
      g_assert_true (ma_client_write_raw (near[i], reqs[i], strlen (reqs[i]) - 8, NULL));
    }
  /* …the agent has read them all (a sync on another connection is answered after), then
   * each is completed and echoed */
  assert_alive (client, round * 10 + 5);
  for (guint i = 0; i < G_N_ELEMENTS (near); i++)
    {
      gsize len = strlen (reqs[i]);
      g_assert_true (ma_client_write_raw (near[i], reqs[i] + len - 8, 8, NULL));
    }
  for (guint i = 0; i < G_N_ELEMENTS (near); i++)
    {
      g_autofree char *line = read_reply_line (near[i]);
      g_autoptr(JsonObject) obj = parse_reply (line);
      const char *id = json_object_get_string_member (obj, "return");

      g_assert_cmpuint (strlen (id), ==,
                        AS_REQUEST_BYTES - strlen ("{\"execute\":\"sync\",\"arguments\":{\"id\":\"\"}}\n"));
      g_assert_true (id[0] == 'a' + (char) i && id[strlen (id) - 1] == 'a' + (char) i);
      ma_client_free (near[i]);
    }

  /* 20,000 pipelined requests, in batches of 1,000 */
  for (guint i = 0; i < 1000; i++)
    g_string_append_printf (batch, "{\"execute\":\"ping\",\"id\":%u}\n", i);
  for (guint b = 0; b < 20; b++)
    {
      g_assert_true (ma_client_write_raw (client, batch->str, batch->len, NULL));
      for (guint i = 0; i < 1000; i++)
        {
          g_autofree char *line = read_reply_line (client);
          g_autoptr(JsonObject) obj = parse_reply (line);
          g_assert_cmpint (json_object_get_int_member (obj, "id"), ==, i);
        }
    }

  /* a command that works in a thread */
  blockers = ma_test_execute (client, "blockers", NULL);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (blockers));
}

/* ulimit -v: with its address space capped at its size after start plus 32 MiB, the agent
 * still refuses every oversized request with its error, serves four clients at the request
 * limit at once, a flood and a threaded command, and does not grow from one round to the
 * next (four more after two warm-up rounds). The request limit is what keeps a 64 MiB line
 * (twice the headroom) harmless. */
static void
test_address_space_limit (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(JsonNode) info = NULL;
  g_autoptr(JsonNode) warm = NULL;
  gint64 vm_start, limit_kib, rss_first, rss_second, vm_after;

  if (skip_unless_plain_agent ())
    return;
  info = ma_test_execute (client, "info", NULL);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (info), "max-request-bytes"),
                   ==, MA_TEST_MAX_REQUEST_BYTES);
  /* its size once everything it starts with exists (a worker thread included) */
  warm = ma_test_execute (client, "blockers", NULL);
  assert_alive (client, 1);
  vm_start = proc_status_kib (f->daemon->pid, "VmSize");
  limit_kib = vm_start + AS_HEADROOM_KIB;
  limit_address_space (f->daemon, limit_kib);

  /* the first two rounds warm the allocator up (its arenas keep pages they touched) */
  address_space_round (f, client, 1);
  address_space_round (f, client, 2);
  rss_first = ma_test_daemon_rss_kib (f->daemon);
  for (guint round = 3; round <= 6; round++)
    address_space_round (f, client, round);
  rss_second = ma_test_daemon_rss_kib (f->daemon);
  vm_after = proc_status_kib (f->daemon->pid, "VmSize");
  g_test_message ("VmSize %" G_GINT64_FORMAT " KiB at start, limit %" G_GINT64_FORMAT
                  " KiB, VmSize %" G_GINT64_FORMAT " KiB after six rounds; RSS %" G_GINT64_FORMAT
                  " KiB after the second, %" G_GINT64_FORMAT " KiB after the sixth", vm_start,
                  limit_kib, vm_after, rss_first, rss_second);
  /* a round moves 4 MiB of near-limit requests and 4 MiB of replies: keeping either would
   * add 16 MiB over four rounds; the allocator's page-level noise (up to 5 MiB seen when a
   * freed megabyte buffer stays in the heap) stays under 8 MiB */
  g_assert_cmpint (rss_second - rss_first, <, 8192);
  assert_alive (client, 424242);
  /* and it still stops cleanly */
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
}

/* A real out-of-memory: the limit at the agent's current size, then a request that needs
 * a buffer of a megabyte. GLib's allocator stops the process by design (g_malloc never
 * returns NULL; g_error: SIGTRAP on x86, else SIGABRT): the agent must die that way with
 * GLib's message, not crash on a NULL pointer or hang. Under
 * systemd, Restart=on-failure starts it again (packaging/migration-agent.service.in); a
 * session plugin releases on its stdin's EOF and oneshot plugins are thawed from the journal
 * at the next start (test-quiesce.c /quiesce/session-agent-killed, /quiesce/journal-replay). */
static void
test_address_space_exhausted (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autofree char *req = NULL;
  g_autofree char *log = NULL;
  gint64 deadline;
  int status = 0;
  pid_t rc = 0;

  if (skip_unless_plain_agent ())
    return;
  assert_alive (client, 1);
  limit_address_space (f->daemon, proc_status_kib (f->daemon->pid, "VmSize"));
  req = sync_request ('z', AS_REQUEST_BYTES);
  /* the agent may die while we write: a failed write is fine */
  ma_client_write_raw (client, req, strlen (req), NULL);
  deadline = g_get_monotonic_time () + (gint64) ma_test_timeout_ms (REPLY_TIMEOUT_MS) * 1000;
  while (g_get_monotonic_time () < deadline
         && (rc = waitpid (f->daemon->pid, &status, WNOHANG)) == 0)
    g_usleep (20 * 1000);
  g_assert_cmpint (rc, ==, f->daemon->pid);
  f->daemon->running = FALSE;
  g_assert_true (g_file_get_contents (f->daemon->log_path, &log, NULL, NULL));
  /* g_error () ends in G_BREAKPOINT (): SIGTRAP on x86, SIGABRT where GLib aborts instead */
  if (!WIFSIGNALED (status) || (WTERMSIG (status) != SIGTRAP && WTERMSIG (status) != SIGABRT))
    g_error ("the agent did not stop on GLib's fatal error (status 0x%x); its log:\n%s",
             (unsigned) status, log);
  g_test_message ("the agent died by %s", g_strsignal (WTERMSIG (status)));
  g_assert_nonnull (strstr (log, "GLib-ERROR"));
  g_assert_nonnull (strstr (log, "failed to allocate"));
}

/* ---- the agent writes nothing outside its state directory ---- */

static gboolean
on_memory_fs (const char *path)
{
  g_autofree char *dir = g_strdup (path);
  struct statfs st;

  /* the closest existing ancestor (a file may have been removed since) */
  while (statfs (dir, &st) < 0)
    {
      char *parent = g_path_get_dirname (dir);
      if (g_strcmp0 (parent, dir) == 0)
        {
          g_free (parent);
          return FALSE;
        }
      g_free (dir);
      dir = parent;
    }
  switch ((unsigned long) st.f_type)
    {
    case TMPFS_MAGIC:
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case DEVPTS_SUPER_MAGIC:
    case RAMFS_MAGIC:
      return TRUE;
    default:
      return FALSE;
    }
}

static gboolean
is_under (const char *path, const char *dir)
{
  gsize n = strlen (dir);

  return strncmp (path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The paths a rename/link line names beyond the first (its destination). */
static void
add_second_paths (const char *line, GPtrArray *out)
{
  g_auto(GStrv) parts = g_strsplit (line, "\"", -1);

  /* parts[1] is the first quoted string, parts[3] the second, … */
  for (guint i = 3; parts[0] != NULL && i < g_strv_length (parts); i += 2)
    g_ptr_array_add (out, g_strdup (parts[i]));
}

/* One strace line → the path it writes, or NULL. Needs -y (fd paths) so that *at()
 * calls relative to a directory fd can be resolved. */
static char *
written_path (const char *line)
{
  static GRegex *call_re, *bind_re;
  g_autoptr(GMatchInfo) match = NULL;
  g_autofree char *syscall = NULL, *dirfd = NULL, *path = NULL, *rest = NULL;

  if (call_re == NULL)
    {
      call_re = g_regex_new ("^\\d+\\s+(\\w+)\\((?:(AT_FDCWD|-?\\d+<[^>]*>), )?\"([^\"]*)\"(.*)$",
                             G_REGEX_OPTIMIZE, 0, NULL);
      bind_re = g_regex_new ("^\\d+\\s+bind\\(.*sun_path=\"([^\"]*)\".*= 0$", 0, 0, NULL);
    }
  if (g_regex_match (bind_re, line, 0, &match))
    return g_match_info_fetch (match, 1);
  g_clear_pointer (&match, g_match_info_free);
  if (!g_regex_match (call_re, line, 0, &match))
    return NULL;
  syscall = g_match_info_fetch (match, 1);
  dirfd = g_match_info_fetch (match, 2);
  path = g_match_info_fetch (match, 3);
  rest = g_match_info_fetch (match, 4);
  if (strstr (rest, "= -1 ") != NULL || strstr (rest, "<unfinished") != NULL)
    return NULL; /* failed: nothing was written */
  if (g_str_equal (syscall, "openat") || g_str_equal (syscall, "open"))
    {
      if (strstr (rest, "O_WRONLY") == NULL && strstr (rest, "O_RDWR") == NULL
          && strstr (rest, "O_CREAT") == NULL && strstr (rest, "O_TRUNC") == NULL)
        return NULL;
    }
  else if (g_str_equal (syscall, "execve") || g_str_equal (syscall, "newfstatat")
           || g_str_equal (syscall, "statx"))
    return NULL;
  if (path[0] != '/' && dirfd != NULL && dirfd[0] != '\0' && !g_str_equal (dirfd, "AT_FDCWD"))
    {
      const char *lt = strchr (dirfd, '<');
      g_autofree char *dir = g_strndup (lt + 1, strlen (lt + 1) - 1);
      return g_build_filename (dir, path, NULL);
    }
  return g_steal_pointer (&path);
}

static void
test_writes_only_state_dir (void)
{
  g_autoptr(MaTestDaemon) d = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *strace = g_find_program_in_path ("strace");
  g_autofree char *trace_path = NULL, *listen = NULL, *trace = NULL, *children = NULL;
  g_autofree char *plugin_dir = NULL, *config = NULL, *cwd = g_get_current_dir ();
  g_autofree char *children_path = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(MaClient) client = NULL;
  g_autoptr(JsonNode) info = NULL;
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GHashTable) probes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  JsonArray *commands;
  GPid strace_pid;
  pid_t agent_pid = 0;
  guint n = 0, bad = 0;
  gint64 deadline;
  int status;

  if (strace == NULL)
    {
      g_test_skip ("strace is not installed");
      return;
    }
  if (!in_private_netns)
    {
      g_test_skip ("needs a private network namespace (root)");
      return;
    }
  plugin_dir = g_dir_make_tmp ("ma-reliability-plugins-XXXXXX", &error);
  g_assert_no_error (error);
  config = g_strdup_printf ("[plugins]\ndirs=%s\n", plugin_dir);
  d = ma_test_daemon_new (config);
  trace_path = g_build_filename (d->dir, "trace", NULL);
  listen = g_strdup_printf ("unix:%s", d->socket);
  {
    const char *argv[] = { strace, "-f", "-qq", "-y", "-o", trace_path, "-e",
                           "trace=open,openat,openat2,creat,rename,renameat,renameat2,mkdir,"
                           "mkdirat,unlink,unlinkat,rmdir,link,linkat,symlink,symlinkat,truncate,"
                           "chmod,fchmodat,chown,fchownat,mknod,mknodat,utimensat,bind",
                           g_getenv ("MIGRATION_AGENT"), "--foreground", "--verbose", "--listen",
                           listen, "--state-dir", d->state_dir, "--config", d->config, NULL };
    g_assert_true (g_spawn_async (NULL, (char **) argv, NULL,
                                  G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL
                                    | G_SPAWN_STDERR_TO_DEV_NULL,
                                  NULL, NULL, &strace_pid, &error));
    g_assert_no_error (error);
  }
  deadline = g_get_monotonic_time () + MA_TEST_START_TIMEOUT_MS * 1000;
  while ((client = ma_client_connect (d->socket, 2000, NULL)) == NULL
         || !ma_client_sync (client, NULL))
    {
      g_clear_pointer (&client, ma_client_free);
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20 * 1000);
    }

  /* exercise every command, with arguments and without */
  info = ma_test_execute (client, "info", NULL);
  commands = json_object_get_array_member (json_node_get_object (info), "commands");
  for (guint c = 0; c < json_array_get_length (commands); c++)
    {
      const char *name = json_object_get_string_member (json_array_get_object_element (commands, c),
                                                        "name");
      execute_garbage (client, name, NULL, &n);
      execute_garbage (client, name, "{\"take\":true}", &n);
      execute_garbage (client, name, "{\"renew\":true}", &n);
      execute_garbage (client, name, "{\"after\":0}", &n);
    }
  g_clear_pointer (&client, ma_client_free);

  /* stop the agent itself (strace follows it out) */
  children_path = g_strdup_printf ("/proc/%d/task/%d/children", strace_pid, strace_pid);
  g_assert_true (g_file_get_contents (children_path, &children, NULL, NULL));
  agent_pid = (pid_t) g_ascii_strtoll (children, NULL, 10);
  g_assert_cmpint (agent_pid, >, 0);
  g_assert_cmpint (kill (agent_pid, SIGTERM), ==, 0);
  g_assert_cmpint (waitpid (strace_pid, &status, 0), ==, strace_pid);

  g_assert_true (g_file_get_contents (trace_path, &trace, NULL, NULL));
  lines = g_strsplit (trace, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
      char *first = written_path (lines[i]);

      if (first == NULL)
        continue;
      g_ptr_array_add (paths, first);
      if (strstr (lines[i], "rename") != NULL || strstr (lines[i], "link") != NULL)
        add_second_paths (lines[i], paths);
      for (guint p = 0; p < paths->len; p++)
        {
          const char *path = paths->pdata[p];
          g_autofree char *absolute = path[0] == '/' ? g_strdup (path)
                                                     : g_build_filename (cwd, path, NULL);
          if (g_hash_table_contains (seen, absolute))
            continue;
          g_autofree char *base = g_path_get_basename (absolute);
          if (is_under (absolute, d->state_dir) || g_str_equal (absolute, d->socket)
              || on_memory_fs (absolute))
            g_test_message ("allowed write: %s", absolute);
          else if (g_str_has_prefix (base, MA_WRITE_PROBE_PREFIX))
            {
              /* validate's write probe: created and removed again on purpose (after a resume,
               * to prove each filesystem takes writes) */
              g_test_message ("validation write probe: %s", absolute);
              g_hash_table_insert (probes, g_strdup (absolute), GINT_TO_POINTER (
                                     GPOINTER_TO_INT (g_hash_table_lookup (probes, absolute))
                                     | (strstr (lines[i], "unlink") ? 2 : 1)));
              continue;
            }
          else
            {
              g_test_message ("WRITE OUTSIDE THE STATE DIRECTORY: %s (%s)", absolute, lines[i]);
              bad++;
            }
          g_hash_table_add (seen, g_steal_pointer (&absolute));
        }
    }
  g_test_message ("%u requests, %u distinct paths written", n, g_hash_table_size (seen));
  /* every probe that was created was removed */
  {
    GHashTableIter iter;
    gpointer key, value;
    g_hash_table_iter_init (&iter, probes);
    while (g_hash_table_iter_next (&iter, &key, &value))
      if ((GPOINTER_TO_INT (value) & 2) == 0)
        g_error ("write probe %s was never removed", (const char *) key);
  }
  g_assert_cmpuint (g_hash_table_size (seen), >, 0); /* the trace did see the socket */
  g_assert_cmpuint (bad, ==, 0);
  g_rmdir (plugin_dir);
}

/* No shell anywhere: nothing in the agent or the shipped plugins can hand a string to a
 * shell. A source-level check, so that a regression fails here before it ships. */
static void
scan_for_shell (const char *dir, guint *files, GString *found)
{
  static const char *const forbidden[] = {
    "system (", "system(", "popen", "g_spawn_command_line", "\"/bin/sh\"", "\"sh\", \"-c\"",
    "execl (\"/bin/sh", "wordexp", NULL,
  };
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_autofree char *text = NULL;

      if (g_file_test (path, G_FILE_TEST_IS_DIR))
        {
          scan_for_shell (path, files, found);
          continue;
        }
      if (!g_str_has_suffix (name, ".c") && !g_str_has_suffix (name, ".h"))
        continue;
      g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
      (*files)++;
      for (guint i = 0; forbidden[i] != NULL; i++)
        for (const char *hit = strstr (text, forbidden[i]); hit != NULL;
             hit = strstr (hit + 1, forbidden[i]))
          {
            /* a whole identifier: "filesystem (" is not "system (" */
            if (hit > text && (g_ascii_isalnum (hit[-1]) || hit[-1] == '_'))
              continue;
            g_string_append_printf (found, "%s uses %s\n", path, forbidden[i]);
            break;
          }
    }
}

static void
test_no_shell (void)
{
  const char *root = g_getenv ("MA_SOURCE_ROOT");
  g_autofree char *agent = NULL, *plugins = NULL;
  g_autoptr(GString) found = g_string_new (NULL);
  guint files = 0;

  if (root == NULL)
    {
      g_test_skip ("MA_SOURCE_ROOT is not set");
      return;
    }
  agent = g_build_filename (root, "agent", NULL);
  plugins = g_build_filename (root, "plugins", NULL);
  scan_for_shell (agent, &files, found);
  scan_for_shell (plugins, &files, found);
  g_test_message ("%u source files scanned", files);
  g_assert_cmpuint (files, >, 20);
  if (found->len > 0)
    g_error ("a shell can be reached:\n%s", found->str);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* Our own network namespace (only a loopback device): whatever a command sends on
   * "every interface" stays inside it. The UNIX socket is a path: unaffected. */
  in_private_netns = geteuid () == 0 && unshare (CLONE_NEWNET) == 0;
  if (!in_private_netns)
    g_test_message ("no private network namespace (%s): some tests skip", g_strerror (errno));
#define ADD(path, func) \
  g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("/reliability/flood-100k", test_flood_100k);
  ADD ("/reliability/disconnect-mid-request", test_disconnect_mid_request);
  ADD ("/reliability/stale-bytes-recover", test_stale_bytes_recover);
  ADD ("/reliability/invalid-utf8-and-nul", test_invalid_utf8_and_nul);
  ADD ("/reliability/echoed-numbers-valid", test_echoed_numbers_valid);
  ADD ("/reliability/garbage-does-not-leak", test_garbage_does_not_leak);
  ADD ("/reliability/every-command-garbage", test_every_command_garbage);
  ADD ("/reliability/sigterm-during-flood", test_sigterm_during_flood);
  ADD ("/reliability/address-space-limit", test_address_space_limit);
  ADD ("/reliability/address-space-exhausted", test_address_space_exhausted);
  g_test_add_func ("/reliability/writes-only-state-dir", test_writes_only_state_dir);
  g_test_add_func ("/reliability/no-shell", test_no_shell);
#undef ADD
  return g_test_run ();
}
