/* test-daemon.c — black-box tests of the real daemon over its UNIX socket: core commands,
 * every kind of bad input, access control, many clients, floods, slow readers, shutdown. */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "daemon-fixture.h"
#include "error.h"
#include "json.h"

typedef struct
{
  MaTestDaemon *daemon;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer config_text)
{
  f->daemon = ma_test_daemon_new (config_text);
  ma_test_daemon_start (f->daemon, NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->daemon, ma_test_daemon_free);
}

static JsonObject *
reply_object (const char *line)
{
  g_autoptr(GError) error = NULL;
  const char *start = line;
  g_autoptr(JsonNode) node = NULL;

  if ((guchar) *start == 0xFF)
    start++;
  node = ma_json_parse (start, strlen (start), &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  return json_object_ref (json_node_get_object (node));
}

/* Send raw bytes, read one reply line, return it as an object. */
static JsonObject *
raw_roundtrip (MaClient *client, const char *bytes, gsize len)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *line = NULL;

  g_assert_true (ma_client_write_raw (client, bytes, len, &error));
  line = ma_client_read_line (client, 30000, &error);
  g_assert_no_error (error);
  return reply_object (line);
}

static void
assert_error_reply (JsonObject *obj, const char *klass, const char *desc_part)
{
  JsonObject *err;

  g_assert_true (json_object_has_member (obj, "error"));
  err = json_object_get_object_member (obj, "error");
  g_assert_cmpstr (json_object_get_string_member (err, "class"), ==, klass);
  if (strstr (json_object_get_string_member (err, "desc"), desc_part) == NULL)
    g_error ("error '%s' does not mention '%s'", json_object_get_string_member (err, "desc"),
             desc_part);
}

static void
assert_ping_works (MaClient *client)
{
  g_autoptr(JsonObject) obj = raw_roundtrip (client, "{\"execute\":\"ping\",\"id\":\"after\"}\n", 31);

  g_assert_true (json_object_has_member (obj, "return"));
  g_assert_cmpstr (json_object_get_string_member (obj, "id"), ==, "after");
}


/* Wait until the writer pid has pushed its flood as far as the agent lets it: it exited (the
 * agent took every byte) or it sits in write(2) or send(2) (x86-64 syscalls 1 and 44,
 * /proc/PID/syscall) for
 * 20 looks 10 ms apart (the agent stopped reading it). Returns the writer's exit status, or
 * -1 when it is held in write. */
static int
wait_flood_delivered (pid_t pid, guint timeout_ms)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/syscall", (int) pid);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  guint in_write = 0;
  int status;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *text = NULL;
      if (waitpid (pid, &status, WNOHANG) == pid)
        return WIFEXITED (status) ? WEXITSTATUS (status) : 128;
      if (g_file_get_contents (path, &text, NULL, NULL)
          && (g_str_has_prefix (text, "1 ") || g_str_has_prefix (text, "44 ")))
        in_write++;
      else
        in_write = 0;
      if (in_write >= 20)
        return -1;
      g_usleep (10 * 1000);
    }
  g_error ("the writer neither finished nor was held back within %u ms", timeout_ms);
  return 128;
}

static void
test_core_commands (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(JsonNode) ping = ma_test_execute (client, "ping", NULL);
  g_autoptr(JsonNode) info = ma_test_execute (client, "info", NULL);
  g_autoptr(JsonNode) status = ma_test_execute (client, "status", NULL);
  g_autoptr(JsonNode) events = ma_test_execute (client, "events", "{\"after\":0}");
  JsonObject *obj;
  JsonArray *list;
  gboolean found = FALSE;

  g_assert_true (JSON_NODE_HOLDS_OBJECT (ping));
  obj = json_node_get_object (info);
  g_assert_cmpint (json_object_get_int_member (obj, "protocol"), ==, 1);
  list = json_object_get_array_member (obj, "commands");
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonObject *c = json_array_get_object_element (list, i);
      if (g_strcmp0 (json_object_get_string_member (c, "name"), "status") == 0)
        found = json_object_get_boolean_member (c, "enabled");
    }
  g_assert_true (found);

  obj = json_node_get_object (status);
  g_assert_cmpstr (json_object_get_string_member (obj, "state"), ==, "idle");
  g_assert_cmpint (json_object_get_int_member (json_object_get_object_member (obj, "clients"),
                                               "unix-clients"), >=, 1);

  obj = json_node_get_object (events);
  list = json_object_get_array_member (obj, "events");
  g_assert_cmpuint (json_array_get_length (list), >=, 1);
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (list, 0),
                                                  "event"), ==, "AGENT_STARTED");
}

static void
test_bad_input (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  static const struct
  {
    const char *input;
    const char *klass;
    const char *desc;
  } cases[] = {
    { "garbage\n", "GenericError", "QMP input must be a JSON object" },
    { "1[]\n", "GenericError", "QMP input must be a JSON object" },
    { "{\"execute\":\"ping\\u0000\"}\n", "GenericError", "NUL character" },
    { "{\"execute\":\"ping\",\"id\":\"\\uZZZZ\"}\n", "GenericError", "invalid \\u escape" },
    { "{\"execute\":\n", "GenericError", "JSON parse error" },
    { "[1,2,3]\n", "GenericError", "QMP input must be a JSON object" },
    { "\"ping\"\n", "GenericError", "QMP input must be a JSON object" },
    { "{\"arguments\":{}}\n", "GenericError", "QMP input lacks member 'execute'" },
    { "{\"execute\":42}\n", "GenericError", "QMP input member 'execute' must be a string" },
    { "{\"execute\":\"ping\",\"extra\":1}\n", "GenericError", "QMP input member 'extra' is unexpected" },
    { "{\"execute\":\"ping\",\"arguments\":[]}\n", "GenericError", "must be an object" },
    { "{\"execute\":\"ping\",\"arguments\":{\"x\":1}}\n", "GenericError", "Parameter 'x' is unexpected" },
    { "{\"execute\":\"no-such-command\"}\n", "CommandNotFound", "has not been found" },
    { "{\"execute\":\"p\xc3\x28ng\"}\n", "GenericError", "not valid UTF-8" },
    { "{\"execute\":\"events\",\"arguments\":{\"after\":\"x\"}}\n", "GenericError", "expects an integer" },
    { "{\"execute\":\"sync\"}\n", "GenericError", "'id' is missing" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(JsonObject) obj = raw_roundtrip (client, cases[i].input, strlen (cases[i].input));
      assert_error_reply (obj, cases[i].klass, cases[i].desc);
      assert_ping_works (client);
    }
}

static void
test_oversized_and_deep (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(GString) big = g_string_new ("{\"execute\":\"ping\",\"id\":\"");
  g_autoptr(GString) deep = g_string_new ("{\"execute\":\"ping\",\"arguments\":");
  g_autoptr(JsonObject) obj1 = NULL;
  g_autoptr(JsonObject) obj2 = NULL;
  gint64 rss_before = ma_test_daemon_rss_kib (f->daemon);

  while (big->len < 3 * 1024 * 1024)
    g_string_append (big, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
  g_string_append (big, "\"}\n");
  obj1 = raw_roundtrip (client, big->str, big->len);
  assert_error_reply (obj1, "GenericError", "larger than 1048576 bytes");
  assert_ping_works (client);

  for (guint i = 0; i < 200000; i++)
    g_string_append_c (deep, '[');
  g_string_append (deep, "\n");
  obj2 = raw_roundtrip (client, deep->str, deep->len);
  assert_error_reply (obj2, "GenericError", "nesting deeper than 64");
  assert_ping_works (client);

  /* the oversized request was discarded, not buffered (ASan's quarantine and valgrind's
   * allocator hide this) */
  if (ma_test_daemon_rss_meaningful ())
    g_assert_cmpint (ma_test_daemon_rss_kib (f->daemon) - rss_before, <, 8 * 1024);
}

static void
test_reset_byte_and_sync (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  /* half a request, then 0xFF: the half is dropped, the delimited reply starts with 0xFF */
  const char input[] = "{\"execute\":\"in\xff{\"execute\":\"sync-delimited\",\"arguments\":{\"id\":77}}\n";
  g_autoptr(GError) error = NULL;
  g_autofree char *line = NULL;
  g_autoptr(JsonObject) obj = NULL;

  g_assert_true (ma_client_write_raw (client, input, sizeof input - 1, &error));
  line = ma_client_read_line (client, 30000, &error);
  g_assert_no_error (error);
  g_assert_cmpint ((guchar) line[0], ==, 0xFF);
  obj = reply_object (line);
  g_assert_cmpint (json_object_get_int_member (obj, "return"), ==, 77);
}

/* A request that rides on the sync (one round trip): answered after the sync, behind a half
 * request the 0xFF discards, and the next request gets an id of its own. */
static void
test_pipelined_request (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaClient) client = ma_client_connect (f->daemon->socket, ma_test_timeout_ms (30000),
                                                  &error);
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) status = NULL;
  g_autoptr(JsonNode) ping = NULL;
  g_autoptr(JsonNode) again = NULL;
  const char half[] = "{\"execute\":\"in";

  g_assert_no_error (error);
  g_assert_true (ma_client_command_only_reads ("status"));
  g_assert_false (ma_client_command_only_reads ("quiesce"));
  g_assert_false (ma_client_command_only_reads ("throttle"));
  g_assert_true (ma_client_write_raw (client, half, sizeof half - 1, &error));
  ma_client_set_pipelined (client, "status", args);
  g_assert_true (ma_client_sync (client, &error));
  g_assert_no_error (error);
  status = ma_client_execute (client, "status", args, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (status), "state"), ==,
                   "idle");
  ping = ma_client_execute (client, "ping", NULL, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (ping));
  /* taken once: the same request again is sent and answered anew */
  again = ma_client_execute (client, "status", args, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (again));
}

static void
test_ids_echoed (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  const char *const ids[] = { "1650000000123", "\"abc\"", "{\"a\":[1,2]}", "null", "1.5",
                              "1e+308", "-2.5e-07", "\"tab\\there\\u0001\"", NULL };

  for (guint i = 0; ids[i] != NULL; i++)
    {
      g_autofree char *req = g_strdup_printf ("{\"execute\":\"ping\",\"id\":%s}\n", ids[i]);
      g_autoptr(JsonObject) obj = raw_roundtrip (client, req, strlen (req));
      g_autofree char *echoed = ma_json_to_string (json_object_get_member (obj, "id"));
      g_assert_cmpstr (echoed, ==, ids[i]);
    }
}

static void
test_blocked_command (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = ma_client_execute (client, "status", NULL, &error);
  g_autoptr(JsonNode) info = NULL;
  JsonArray *list;

  g_assert_null (ret);
  g_assert_error (error, MA_ERROR, MA_ERROR_COMMAND_NOT_FOUND);
  g_assert_true (strstr (error->message, "disabled") != NULL);
  g_assert_true (strstr (error->message, "[commands] block") != NULL);
  g_clear_error (&error);

  /* info still lists it, as disabled */
  info = ma_test_execute (client, "info", NULL);
  list = json_object_get_array_member (json_node_get_object (info), "commands");
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonObject *c = json_array_get_object_element (list, i);
      if (g_strcmp0 (json_object_get_string_member (c, "name"), "status") == 0)
        g_assert_false (json_object_get_boolean_member (c, "enabled"));
    }
}

static void
test_allow_list (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ping = ma_test_execute (client, "ping", NULL);
  g_autoptr(JsonNode) ret = ma_client_execute (client, "info", NULL, &error);

  g_assert_null (ret);
  g_assert_error (error, MA_ERROR, MA_ERROR_COMMAND_NOT_FOUND);
  g_assert_true (strstr (error->message, "allow list") != NULL);
}

static void
test_unknown_command_in_config (void)
{
  g_autoptr(MaTestDaemon) d = ma_test_daemon_new ("[commands]\nblock=frobnicate\n");
  const char *argv[] = { g_getenv ("MIGRATION_AGENT"), "--foreground", "--state-dir", d->state_dir,
                         "--config", d->config, "--listen", "unix:/nonexistent/x.sock", NULL };
  g_autofree char *err = NULL;
  int status = 0;

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                               NULL, &err, &status, NULL));
  g_assert_false (g_spawn_check_wait_status (status, NULL));
  g_assert_true (strstr (err, "unknown commands: frobnicate") != NULL);
}

static void
test_socket_mode (Fixture *f, gconstpointer data)
{
  struct stat st;

  g_assert_cmpint (stat (f->daemon->socket, &st), ==, 0);
  g_assert_true (S_ISSOCK (st.st_mode));
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (st.st_uid, ==, geteuid ());
}

/* Connect to the agent's socket as `user` in a child process: 0 when the agent answered
 * PermissionDenied, else the errno of the failed connect (or 256 + a step number). *pid (if
 * given) is the child's, as the agent saw it. */
static int
connect_as (const struct passwd *user, const char *socket_path, pid_t *pid_out)
{
  int status = 0;
  pid_t pid = fork ();

  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      struct sockaddr_un addr = { .sun_family = AF_UNIX };
      char buf[512] = { 0 };
      int fd;
      if (setgid (user->pw_gid) < 0 || setuid (user->pw_uid) < 0)
        _exit (250);
      g_strlcpy (addr.sun_path, socket_path, sizeof addr.sun_path);
      fd = socket (AF_UNIX, SOCK_STREAM, 0);
      if (connect (fd, (struct sockaddr *) &addr, sizeof addr) < 0)
        _exit (errno < 250 ? errno : 249);
      if (read (fd, buf, sizeof buf - 1) <= 0)
        _exit (251);
      _exit (strstr (buf, "PermissionDenied") != NULL ? 0 : 252);
    }
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  g_assert_true (WIFEXITED (status));
  if (pid_out != NULL)
    *pid_out = pid;
  return WEXITSTATUS (status);
}

/* A real unprivileged process cannot even connect: the socket is 0600 root. */
static void
test_unprivileged_refused (Fixture *f, gconstpointer data)
{
  struct passwd *nobody = getpwnam ("nobody");

  if (geteuid () != 0 || nobody == NULL)
    {
      g_test_skip ("needs root and a 'nobody' user");
      return;
    }
  /* the temp dir must be traversable so that the failure comes from the socket's mode */
  g_assert_cmpint (chmod (f->daemon->dir, 0755), ==, 0);
  g_assert_cmpint (connect_as (nobody, f->daemon->socket, NULL), ==, EACCES);
}

/* A UNIX client whose uid is not allowed gets PermissionDenied, and the agent says so in its
 * journal: ACCESS_DENIED with the uid, the pid and the reason. The socket is opened to
 * everyone for the test so that the refusal comes from the peer check, not from the mode. */
static void
test_access_denied_event (Fixture *f, gconstpointer data)
{
  struct passwd *nobody = getpwnam ("nobody");
  g_autoptr(MaClient) client = NULL;
  g_autoptr(JsonNode) ret = NULL;
  JsonArray *events;
  gboolean found = FALSE;
  pid_t pid = 0;

  if (geteuid () != 0 || nobody == NULL)
    {
      g_test_skip ("needs root and a 'nobody' user");
      return;
    }
  g_assert_cmpint (chmod (f->daemon->dir, 0755), ==, 0);
  g_assert_cmpint (chmod (f->daemon->socket, 0666), ==, 0);
  g_assert_cmpint (connect_as (nobody, f->daemon->socket, &pid), ==, 0);

  client = ma_test_daemon_connect (f->daemon);
  ret = ma_test_execute (client, "events", "{\"after\": 0}");
  events = json_object_get_array_member (json_node_get_object (ret), "events");
  for (guint i = 0; i < json_array_get_length (events); i++)
    {
      JsonObject *ev = json_array_get_object_element (events, i);
      JsonObject *d;
      if (g_strcmp0 (json_object_get_string_member (ev, "event"), "ACCESS_DENIED") != 0)
        continue;
      d = json_object_get_object_member (ev, "data");
      g_assert_cmpint (json_object_get_int_member (d, "uid"), ==, nobody->pw_uid);
      g_assert_cmpint (json_object_get_int_member (d, "pid"), ==, pid);
      g_assert_cmpstr (json_object_get_string_member (d, "reason"), ==, "uid not allowed");
      found = TRUE;
    }
  g_assert_true (found);
}

/* The peer-credential check: with only uid 4242 allowed, root's connection is refused
 * with PermissionDenied and closed. */
static void
test_peer_credentials (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaClient) client = ma_client_connect (f->daemon->socket, 10000, &error);
  g_autofree char *line = NULL;
  g_autoptr(JsonObject) obj = NULL;

  g_assert_no_error (error);
  line = ma_client_read_line (client, 10000, &error);
  g_assert_no_error (error);
  obj = reply_object (line);
  assert_error_reply (obj, "PermissionDenied", "allowed-uids");
  /* and the agent closed the connection */
  g_assert_null (ma_client_read_line (client, 10000, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
}

static void
test_many_clients (Fixture *f, gconstpointer data)
{
  g_autoptr(GPtrArray) clients = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_client_free);
  g_autoptr(JsonNode) status = NULL;
  const guint n = 64;

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (clients, ma_test_daemon_connect (f->daemon));
  /* interleave: every client sends, then every client reads its own answer */
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *req = g_strdup_printf ("{\"execute\":\"sync\",\"arguments\":{\"id\":%u},\"id\":%u}\n", i, i);
      g_assert_true (ma_client_write_raw (clients->pdata[i], req, strlen (req), NULL));
    }
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *line = ma_client_read_line (clients->pdata[i], 30000, NULL);
      g_autoptr(JsonObject) obj = reply_object (line);
      g_assert_cmpint (json_object_get_int_member (obj, "return"), ==, i);
    }
  status = ma_test_execute (clients->pdata[0], "status", NULL);
  g_assert_cmpint (json_object_get_int_member (
                     json_object_get_object_member (json_node_get_object (status), "clients"),
                     "unix-clients"), ==, n);
}

/* Pipelined requests on one connection are answered in order. */
static void
test_flood_in_order (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(GString) batch = g_string_new (NULL);
  const guint n = 20000;

  for (guint i = 0; i < n; i++)
    g_string_append_printf (batch, "{\"execute\":\"ping\",\"id\":%u}\n", i);
  /* a child process writes while we read: the agent's backpressure may stop reading
   * from us until we read its answers */
  {
    pid_t pid = fork ();
    g_assert_cmpint (pid, >=, 0);
    if (pid == 0)
      {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        /* the child shares the socket and writes the whole batch */
        _exit (ma_client_write_raw (client, batch->str, batch->len, NULL) ? 0 : 1);
      }
    for (guint i = 0; i < n; i++)
      {
        g_autoptr(GError) error = NULL;
        g_autofree char *line = ma_client_read_line (client, 30000, &error);
        g_autoptr(JsonObject) obj = NULL;
        g_assert_no_error (error);
        obj = reply_object (line);
        g_assert_cmpint (json_object_get_int_member (obj, "id"), ==, i);
      }
    g_assert_cmpint (waitpid (pid, NULL, 0), ==, pid);
  }
}

/* A client that writes but never reads cannot grow the agent's memory without bound. */
static void
test_slow_reader_bounded (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(MaClient) other = ma_test_daemon_connect (f->daemon);
  g_autoptr(GString) batch = g_string_new (NULL);
  g_autoptr(JsonNode) ping = NULL;
  gint64 rss_before = ma_test_daemon_rss_kib (f->daemon);
  guint n = 0, received = 0;
  pid_t pid;
  int writer;
  int status;

  /* "info" answers are large: ~40 MiB of answers if all were buffered */
  while (batch->len < 1024 * 1024)
    {
      g_string_append_printf (batch, "{\"execute\":\"info\",\"id\":%u}\n", n);
      n++;
    }
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      prctl (PR_SET_PDEATHSIG, SIGKILL);
      _exit (ma_client_write_raw (client, batch->str, batch->len, NULL) ? 0 : 1);
    }

  /* the flood is in: the writer finished or the agent holds it back; either way the answers
   * of a megabyte of requests are due, and the RSS bound below is what backpressure keeps */
  writer = wait_flood_delivered (pid, ma_test_timeout_ms (30000));
  g_assert_cmpint (writer, <=, 0);
  g_test_message ("the writer %s", writer == 0 ? "delivered its megabyte" : "was held back");
  /* while that client does not read, another is served promptly */
  ping = ma_test_execute (other, "ping", NULL);
  if (!ma_test_daemon_rss_meaningful ())
    /* ASan's quarantine keeps freed memory resident, valgrind has its own allocator: RSS
     * says nothing about growth here */
    g_test_message ("RSS bound not checked under ASan or valgrind (%" G_GINT64_FORMAT
                    " KiB grown)", ma_test_daemon_rss_kib (f->daemon) - rss_before);
  else
    g_assert_cmpint (ma_test_daemon_rss_kib (f->daemon) - rss_before, <, 24 * 1024);

  /* now read everything: every answer arrives, in order */
  for (received = 0; received < n; received++)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *line = ma_client_read_line (client, 60000, &error);
      g_autoptr(JsonObject) obj = NULL;
      g_assert_no_error (error);
      obj = reply_object (line);
      g_assert_cmpint (json_object_get_int_member (obj, "id"), ==, received);
    }
  if (writer < 0)
    g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
}

static void
test_connect_disconnect_churn (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) survivor = ma_test_daemon_connect (f->daemon);
  g_autoptr(JsonNode) status = NULL;

  for (guint i = 0; i < 1000; i++)
    {
      g_autoptr(MaClient) c = ma_client_connect (f->daemon->socket, 10000, NULL);
      g_assert_nonnull (c);
      if (i % 2 == 0) /* half of them leave in the middle of a request */
        ma_client_write_raw (c, "{\"execute\":\"pi", 14, NULL);
    }
  status = ma_test_execute (survivor, "status", NULL);
  /* the agent notices every departure (give its main loop a moment to run the idle cleanups) */
  for (guint tries = 0; tries < 200; tries++)
    {
      g_autoptr(JsonNode) s = ma_test_execute (survivor, "status", NULL);
      if (json_object_get_int_member (json_object_get_object_member (json_node_get_object (s),
                                                                     "clients"),
                                      "unix-clients") == 1)
        return;
      g_usleep (10 * 1000);
    }
  g_error ("the agent still counts departed clients");
}

static void
test_sigterm_clean_exit (Fixture *f, gconstpointer data)
{
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  g_assert_false (g_file_test (f->daemon->socket, G_FILE_TEST_EXISTS));
}

static int
run_migctl (const char *const *args, char **out)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  int status = 0;

  g_ptr_array_add (argv, (gpointer) g_getenv ("MIGCTL"));
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) args[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_STDERR_TO_DEV_NULL,
                               NULL, NULL, out, NULL, &status, NULL));
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
test_migctl_exit_codes (Fixture *f, gconstpointer data)
{
  g_autofree char *connect = g_strdup_printf ("unix:%s", f->daemon->socket);
  g_autofree char *out1 = NULL, *out2 = NULL, *out3 = NULL, *out4 = NULL, *out5 = NULL;
  const char *ping[] = { "--connect", connect, "ping", NULL };
  const char *json[] = { "--connect", connect, "--json", "sync", "id=5", NULL };
  const char *unknown[] = { "--connect", connect, "frobnicate", NULL };
  const char *noconn[] = { "--connect", "unix:/nonexistent/agent.sock", "ping", NULL };
  const char *usage[] = { "--connect", connect, "events", "not-a-pair", NULL };

  g_assert_cmpint (run_migctl (ping, &out1), ==, 0);
  g_assert_true (strstr (out1, "ok") != NULL);
  g_assert_cmpint (run_migctl (json, &out2), ==, 0);
  g_assert_cmpstr (out2, ==, "5\n");
  g_assert_cmpint (run_migctl (unknown, &out3), ==, 1);
  g_assert_cmpint (run_migctl (noconn, &out4), ==, 2);
  g_assert_cmpint (run_migctl (usage, &out5), ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, func, config) \
  g_test_add (path, Fixture, config, fixture_setup, func, fixture_teardown)
  ADD ("/daemon/core-commands", test_core_commands, NULL);
  ADD ("/daemon/bad-input", test_bad_input, NULL);
  ADD ("/daemon/oversized-and-deep", test_oversized_and_deep, NULL);
  ADD ("/daemon/reset-byte-and-sync", test_reset_byte_and_sync, NULL);
  ADD ("/daemon/ids-echoed", test_ids_echoed, NULL);
  ADD ("/daemon/pipelined-request", test_pipelined_request, NULL);
  ADD ("/daemon/blocked-command", test_blocked_command, "[commands]\nblock=status\n");
  ADD ("/daemon/allow-list", test_allow_list, "[commands]\nallow=ping\n");
  g_test_add_func ("/daemon/unknown-command-in-config", test_unknown_command_in_config);
  ADD ("/daemon/socket-mode", test_socket_mode, NULL);
  ADD ("/daemon/unprivileged-refused", test_unprivileged_refused, NULL);
  ADD ("/daemon/peer-credentials", test_peer_credentials, "[access]\nallowed-uids=4242\n");
  ADD ("/daemon/access-denied-event", test_access_denied_event, NULL);
  ADD ("/daemon/many-clients", test_many_clients, NULL);
  ADD ("/daemon/flood-in-order", test_flood_in_order, NULL);
  ADD ("/daemon/slow-reader-bounded", test_slow_reader_bounded, NULL);
  ADD ("/daemon/connect-disconnect-churn", test_connect_disconnect_churn, NULL);
  ADD ("/daemon/sigterm-clean-exit", test_sigterm_clean_exit, NULL);
  ADD ("/daemon/migctl-exit-codes", test_migctl_exit_codes, NULL);
#undef ADD
  return g_test_run ();
}
