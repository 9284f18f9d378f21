/* test-plugin-mariadb.c — the mariadb session plugin against a real MariaDB server started by
 * this test (as user mysql, UNIX socket only): the read lock blocks writers until thaw, its
 * session outlives the server's wait_timeout for the lease (renew keeps it longer), long
 * statements are refused or killed, and the lock goes when the plugin's parent is killed. */
#include <pwd.h>
#include <signal.h>
#include <string.h>

#include <glib.h>

#include "json.h"
#include "plugin-harness.h"

#define DB_USER "mysql"
/* The server's idle timeout the session must outlive, and how far past it a write must still
 * wait; each case waits for that condition, which is no speed goal. */
#define SHORT_WAIT_TIMEOUT_S 2
#define PAST_WAIT_TIMEOUT_MS (2 * SHORT_WAIT_TIMEOUT_S * 1000)
/* Margin given to the plugin in the cases that need the session's own timeout to be short. */
#define TEST_IDLE_MARGIN "MARIADB_IDLE_MARGIN_SECONDS=1"

static const char *plugin;
static const char *self_exe;
static HarnessTmpdir *server_dir;
static GSubprocess *server;
static char *socket_path;

static char **
client_argv (const char *sql)
{
  g_autofree char *client = harness_find_program ("mariadb");
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  g_strv_builder_add_many (builder, client, "--no-defaults", "-S", socket_path, "-uroot", "-N",
                           "-B", "test", "-e", sql, NULL);
  return g_strv_builder_end (builder);
}

static char *
sql_query (const char *sql)
{
  g_auto(GStrv) argv = client_argv (sql);
  char *out = NULL;

  g_assert_cmpint (harness_run ((const char *const *) argv, NULL, NULL, &out), ==, 0);
  return g_strchomp (out);
}

/* A client running sql in the background. */
static GSubprocess *
sql_background (const char *sql)
{
  g_auto(GStrv) argv = client_argv (sql);
  g_autoptr(GError) error = NULL;
  GSubprocess *proc = harness_spawn ((const char *const *) argv, NULL, NULL, NULL, &error);

  g_assert_no_error (error);
  return proc;
}

static char **
plugin_env (const char *extra)
{
  g_autofree char *sock = g_strdup_printf ("MARIADB_SOCKET=%s", socket_path);

  return harness_plugin_env ("mariadb", "session", server_dir->path, sock, "MARIADB_USER=root",
                             extra, NULL);
}

static HarnessSession *
start_session (const char *extra)
{
  g_auto(GStrv) env = plugin_env (extra);

  return harness_session_start (plugin, (const char *const *) env);
}

static gint64
row_count (void)
{
  g_autofree char *count = sql_query ("SELECT COUNT(*) FROM t");

  return g_ascii_strtoll (count, NULL, 10);
}

static void
assert_blocked (GSubprocess *writer)
{
  /* Still waiting after a while, and nothing written: the lock holds it. */
  g_assert_false (harness_wait_exit (writer, HARNESS_BLOCKED_MS));
}

static void
assert_completes (GSubprocess *writer)
{
  g_assert_true (harness_wait_exit (writer, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (writer));
}

/* The writer still waits at until (monotonic µs): the lock held at least that long. */
static void
assert_blocked_until (GSubprocess *writer, gint64 until)
{
  gint64 left_ms = MAX ((until - g_get_monotonic_time ()) / 1000, 0) + 1;

  g_assert_false (harness_wait_exit (writer, (guint) left_ms));
  g_assert_cmpint (g_get_monotonic_time (), >=, until);
}

static void
set_global_wait_timeout (const char *seconds)
{
  g_autofree char *sql = g_strdup_printf ("SET GLOBAL wait_timeout = %s", seconds);

  g_free (sql_query (sql));
}

static void
test_session_outlives_wait_timeout (void)
{
  g_autofree char *saved = sql_query ("SELECT @@GLOBAL.wait_timeout");
  g_autoptr(HarnessSession) session = NULL;
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *thawed = NULL;
  gint64 before = row_count ();
  gint64 quiesced_at;

  /* A DBA's short wait_timeout: the plugin's session starts with it (the command-line client
   * used for the checks is interactive and keeps interactive_timeout). */
  set_global_wait_timeout (G_STRINGIFY (SHORT_WAIT_TIMEOUT_S));
  session = start_session (NULL);
  g_assert_true (harness_session_phase (session, "quiesce", 10000, 10, &detail));
  quiesced_at = g_get_monotonic_time ();
  g_assert_true (g_str_has_prefix (detail, "read lock held"));
  g_assert_nonnull (strstr (detail, "session kept for 610 s idle"));

  /* Well past the server's idle timeout: the session, and so the lock, is still there. */
  writer = sql_background ("INSERT INTO t VALUES (20)");
  assert_blocked_until (writer, quiesced_at + PAST_WAIT_TIMEOUT_MS * 1000);
  g_assert_cmpint (row_count (), ==, before);

  g_assert_true (harness_session_phase (session, "thaw", 10000, 10, &thawed));
  g_assert_cmpstr (thawed, ==, "read lock released");
  assert_completes (writer);
  g_assert_cmpint (row_count (), ==, before + 1);
  g_assert_cmpint (harness_session_close (session), ==, 0);
  set_global_wait_timeout (saved);
}

static void
test_renew_keeps_session (void)
{
  g_autoptr(HarnessSession) session = start_session (TEST_IDLE_MARGIN);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *renewed = NULL;
  g_autofree char *thawed = NULL;
  gint64 renewed_at;

  /* lease 2 + margin 1: the server would end the session 3 s after its last statement */
  g_assert_true (harness_session_phase (session, "quiesce", 10000, 2, &detail));
  g_assert_nonnull (strstr (detail, "session kept for 3 s idle"));
  g_assert_true (harness_session_phase (session, "renew", 10000, 8, &renewed));
  renewed_at = g_get_monotonic_time ();
  g_assert_cmpstr (renewed, ==, "read lock held, session kept for 9 s idle from now");

  /* Any statement restarts the idle clock; only the renewed timeout keeps the session past
   * 3 s after the renew. */
  writer = sql_background ("INSERT INTO t VALUES (21)");
  assert_blocked_until (writer, renewed_at + 3 * G_USEC_PER_SEC + PAST_WAIT_TIMEOUT_MS * 1000 / 2);
  g_assert_true (harness_session_phase (session, "thaw", 10000, 8, &thawed));
  g_assert_cmpstr (thawed, ==, "read lock released");
  assert_completes (writer);
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_session_ends_after_lease (void)
{
  g_autoptr(HarnessSession) session = start_session (TEST_IDLE_MARGIN);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *renewed = NULL;
  g_autofree char *thawed = NULL;

  /* No renew and no thaw (an agent that hangs): the server ends the session 4 s after the
   * lock, so the lock never outlasts the lease by more than the margin. */
  g_assert_true (harness_session_phase (session, "quiesce", 10000, 3, &detail));
  g_assert_nonnull (strstr (detail, "session kept for 4 s idle"));
  writer = sql_background ("INSERT INTO t VALUES (22)");
  assert_blocked (writer);
  assert_completes (writer);

  /* A renew now finds the session gone and says so; the agent then thaws, which succeeds. */
  g_assert_false (harness_session_phase (session, "renew", 10000, 60, &renewed));
  g_assert_true (g_str_has_prefix (renewed, "SET SESSION wait_timeout = 61 failed"));
  g_assert_nonnull (strstr (renewed, "the session ended, and the read lock with it"));
  g_assert_true (harness_session_phase (session, "thaw", 10000, 60, &thawed));
  g_assert_nonnull (strstr (thawed, "session closed, which releases the lock"));
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_no_silent_reconnect (void)
{
  g_autofree char *options = g_build_filename (server_dir->path, "client.cnf", NULL);
  g_autofree char *options_text = g_strdup_printf ("[client]\nsocket=%s\nuser=root\n"
                                                   "reconnect=1\n", socket_path);
  g_autofree char *defaults = g_strdup_printf ("MARIADB_DEFAULTS_FILE=%s", options);
  g_auto(GStrv) env = NULL;
  g_autoptr(HarnessSession) session = NULL;
  g_autoptr(GSubprocess) writer = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *renewed = NULL;

  /* An option file asking the client library to reconnect: once the server ends the session,
   * a renew would run in a new session holding no lock, and say ok. */
  g_assert_true (g_file_set_contents_full (options, options_text, -1, G_FILE_SET_CONTENTS_NONE,
                                           0600, &error));
  g_assert_no_error (error);
  env = harness_plugin_env ("mariadb", "session", server_dir->path, defaults, TEST_IDLE_MARGIN,
                            NULL);
  session = harness_session_start (plugin, (const char *const *) env);
  g_assert_true (harness_session_phase (session, "quiesce", 10000, 1, &detail));
  g_assert_nonnull (strstr (detail, "session kept for 2 s idle"));
  writer = sql_background ("INSERT INTO t VALUES (24)");
  assert_completes (writer);

  g_assert_false (harness_session_phase (session, "renew", 10000, 60, &renewed));
  g_assert_nonnull (strstr (renewed, "the session ended, and the read lock with it"));
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_renew_without_lock (void)
{
  g_autoptr(HarnessSession) session = start_session (NULL);
  g_autofree char *renewed = NULL;

  g_assert_false (harness_session_phase (session, "renew", 10000, 60, &renewed));
  g_assert_cmpstr (renewed, ==, "no lock held: nothing to renew");
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_lock_blocks_writes_until_thaw (void)
{
  g_autoptr(HarnessSession) session = start_session (NULL);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  gint64 before = row_count ();

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  g_assert_true (g_str_has_prefix (detail, "read lock held"));
  writer = sql_background ("INSERT INTO t VALUES (1)");
  assert_blocked (writer);
  g_assert_cmpint (row_count (), ==, before);

  g_clear_pointer (&detail, g_free);
  g_assert_true (harness_session_phase (session, "thaw", 10000, 60, &detail));
  g_assert_cmpstr (detail, ==, "read lock released");
  assert_completes (writer);
  g_assert_cmpint (row_count (), ==, before + 1);

  g_clear_pointer (&detail, g_free);
  g_assert_true (harness_session_phase (session, "validate", 10000, 60, &detail));
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_quiesce_is_idempotent (void)
{
  g_autoptr(HarnessSession) session = start_session (NULL);
  g_autofree char *first = NULL;
  g_autofree char *second = NULL;
  g_autofree char *thawed = NULL;
  g_autofree char *again = NULL;

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &first));
  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &second));
  g_assert_cmpstr (second, ==, "read lock already held");
  g_assert_true (harness_session_phase (session, "thaw", 10000, 60, &thawed));
  g_assert_true (harness_session_phase (session, "thaw", 10000, 60, &again));
  g_assert_cmpstr (again, ==, "no lock held");
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_eof_releases (void)
{
  g_autoptr(HarnessSession) session = start_session (NULL);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  writer = sql_background ("INSERT INTO t VALUES (2)");
  assert_blocked (writer);
  g_assert_cmpint (harness_session_close (session), ==, 0);
  assert_completes (writer);
}

static gboolean
plugin_exited (gpointer pid)
{
  return harness_pid_exited (GPOINTER_TO_INT (pid));
}

static void
test_parent_killed_releases_within_a_second (void)
{
  g_autofree char *pidfile = g_build_filename (server_dir->path, "relay.pid", NULL);
  g_auto(GStrv) env = plugin_env (NULL);
  GPid plugin_pid = 0;
  g_autoptr(HarnessSession) session =
    harness_session_start_relayed (self_exe, plugin, (const char *const *) env, pidfile,
                                   &plugin_pid);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  gint64 killed_at;

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  writer = sql_background ("INSERT INTO t VALUES (3)");
  assert_blocked (writer);

  /* The agent stand-in dies without a word: only the end of the plugin's stdin remains. */
  killed_at = g_get_monotonic_time ();
  g_subprocess_send_signal (session->proc, SIGKILL);
  g_assert_true (harness_wait_exit (writer, 1000));
  g_test_message ("lock released %" G_GINT64_FORMAT " ms after SIGKILL of the parent",
                  (g_get_monotonic_time () - killed_at) / 1000);
  g_assert_true (g_subprocess_get_successful (writer));
  g_assert_true (harness_wait_for (plugin_exited, GINT_TO_POINTER (plugin_pid), HARNESS_EXIT_MS));
}

static gboolean
statement_running (gpointer data)
{
  g_autofree char *sql = g_strdup_printf (
    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%s'", (char *) data);
  g_autofree char *count = sql_query (sql);

  return g_strcmp0 (count, "1") == 0;
}

/* A long write: FLUSH TABLES WITH READ LOCK must wait for it (and every writer behind). */
static GSubprocess *
start_long_statement (const char *tag)
{
  g_autofree char *sql = g_strdup_printf ("UPDATE slow SET v = v + SLEEP(300) WHERE '%s' <> ''",
                                          tag);
  g_autofree char *pattern = g_strdup_printf ("UPDATE slow SET v = v + SLEEP(300) WHERE ''%s''%%",
                                              tag);
  GSubprocess *sleeper = sql_background (sql);

  g_assert_true (harness_wait_for (statement_running, pattern, HARNESS_EXIT_MS));
  return sleeper;
}

static void
stop_statement (const char *tag)
{
  g_autofree char *sql = g_strdup_printf (
    "SELECT GROUP_CONCAT(CONCAT('KILL QUERY ', ID, ';') SEPARATOR ' ') FROM "
    "information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE slow SET v = v + SLEEP(300) WHERE ''%s''%%'",
    tag);
  g_autofree char *kills = sql_query (sql);

  if (*kills != '\0' && g_strcmp0 (kills, "NULL") != 0)
    g_free (sql_query (kills));
}

static void
test_long_statement_refused (void)
{
  g_autoptr(GSubprocess) sleeper = start_long_statement ("refuse");
  g_autoptr(HarnessSession) session = start_session ("MARIADB_LONG_QUERY_SECONDS=0");
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *check = NULL;

  g_assert_false (harness_session_phase (session, "check", 10000, 60, &check));
  g_assert_nonnull (strstr (check, "would stall the read lock"));
  g_assert_false (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  g_assert_nonnull (strstr (detail, "1 statement(s) running"));
  g_assert_nonnull (strstr (detail, "UPDATE slow SET"));
  /* Refused means nothing is locked: a write goes through at once. */
  writer = sql_background ("INSERT INTO t VALUES (4)");
  assert_completes (writer);
  g_assert_cmpint (harness_session_close (session), ==, 0);

  stop_statement ("refuse");
  g_assert_true (harness_wait_exit (sleeper, HARNESS_EXIT_MS));
}

static void
test_long_statement_killed (void)
{
  g_autoptr(GSubprocess) sleeper = start_long_statement ("kill");
  g_autofree char *sock = g_strdup_printf ("MARIADB_SOCKET=%s", socket_path);
  g_auto(GStrv) env = harness_plugin_env ("mariadb", "session", server_dir->path, sock,
                                          "MARIADB_USER=root", "MARIADB_LONG_QUERY_SECONDS=0",
                                          "MARIADB_LONG_QUERY_ACTION=kill", NULL);
  g_autoptr(HarnessSession) session = harness_session_start (plugin, (const char *const *) env);
  g_autofree char *detail = NULL;
  g_autofree char *thawed = NULL;

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  g_assert_nonnull (strstr (detail, "killed 1 statement(s)"));
  g_assert_nonnull (strstr (detail, "read lock held"));
  /* The killed statement's client gets its error and exits. */
  g_assert_true (harness_wait_exit (sleeper, HARNESS_EXIT_MS));
  g_assert_true (harness_session_phase (session, "thaw", 10000, 60, &thawed));
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_lock_wait_bounded_by_deadline (void)
{
  /* Not long enough to be refused, yet FLUSH TABLES must wait behind it: the
   * lock_wait_timeout derived from the deadline gives up instead of stalling. */
  g_autoptr(GSubprocess) sleeper = start_long_statement ("wait");
  g_autoptr(HarnessSession) session = start_session ("MARIADB_LONG_QUERY_SECONDS=3600");
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;

  g_assert_false (harness_session_phase (session, "quiesce", 2500, 60, &detail));
  g_assert_nonnull (strstr (detail, "FLUSH TABLES WITH READ LOCK failed"));
  writer = sql_background ("INSERT INTO t VALUES (5)");
  assert_completes (writer);
  g_assert_cmpint (harness_session_close (session), ==, 0);

  stop_statement ("wait");
  g_assert_true (harness_wait_exit (sleeper, HARNESS_EXIT_MS));
}

static void
test_check_and_validate_alone (void)
{
  g_autoptr(HarnessSession) check = start_session (NULL);
  g_autoptr(HarnessSession) validate = start_session (NULL);
  g_autofree char *check_detail = NULL;
  g_autofree char *validate_detail = NULL;

  g_assert_true (harness_session_phase (check, "check", 10000, 60, &check_detail));
  g_assert_nonnull (strstr (check_detail, "no statement in the way"));
  g_assert_cmpint (harness_session_close (check), ==, 0);
  g_assert_true (harness_session_phase (validate, "validate", 10000, 60, &validate_detail));
  g_assert_nonnull (strstr (validate_detail, "answers"));
  g_assert_cmpint (harness_session_close (validate), ==, 0);
}

static void
test_bad_requests (void)
{
  g_autoptr(HarnessSession) session = start_session (NULL);
  g_autoptr(HarnessSession) unreachable = NULL;
  g_autofree char *bad = NULL;
  g_autofree char *ok = NULL;
  g_autofree char *refused = NULL;
  g_autofree char *garbage = NULL;
  g_autofree char *no_phase = NULL;

  g_assert_false (harness_session_raw (session, "this is not json\n", &garbage));
  g_assert_nonnull (strstr (garbage, "JSON"));
  g_assert_false (harness_session_raw (session, "{\"deadline_ms\": \"soon\"}\n", &no_phase));
  g_assert_nonnull (strstr (no_phase, "phase"));
  g_assert_false (harness_session_phase (session, "sideways", 10000, 60, &bad));
  g_assert_nonnull (strstr (bad, "unknown phase 'sideways'"));
  /* Every bad line got its own answer; the session still works afterwards. */
  g_assert_true (harness_session_phase (session, "check", 10000, 60, &ok));
  g_assert_cmpint (harness_session_close (session), ==, 0);

  {
    g_auto(GStrv) env = harness_plugin_env ("mariadb", "session", server_dir->path,
                                            "MARIADB_SOCKET=/nonexistent/sock", NULL);
    unreachable = harness_session_start (plugin, (const char *const *) env);
  }
  g_assert_false (harness_session_phase (unreachable, "quiesce", 3000, 60, &refused));
  g_assert_true (g_str_has_prefix (refused, "cannot connect"));
  g_assert_cmpint (harness_session_close (unreachable), ==, 0);
}

static void
test_through_agent (void)
{
  g_autofree char *env = g_strdup_printf ("MARIADB_SOCKET=%s\nMARIADB_USER=root\n", socket_path);
  g_autoptr(HarnessAgent) agent = harness_agent_start ("mariadb", plugin, "session", env);
  g_autoptr(GSubprocess) writer = NULL;
  g_autoptr(GSubprocess) second = NULL;
  gint64 killed_at;

  g_assert_true (harness_agent_quiesce (agent, "op-mariadb", 60, NULL));
  writer = sql_background ("INSERT INTO t VALUES (10)");
  assert_blocked (writer);
  harness_agent_thaw (agent, "op-mariadb");
  assert_completes (writer);

  /* kill -9 of the agent while quiesced: the plugin's stdin closes and the lock goes. */
  g_assert_true (harness_agent_quiesce (agent, "op-mariadb-killed", 60, NULL));
  second = sql_background ("INSERT INTO t VALUES (11)");
  assert_blocked (second);
  killed_at = g_get_monotonic_time ();
  ma_test_daemon_kill (agent->daemon, SIGKILL);
  g_assert_true (harness_wait_exit (second, 1000));
  g_test_message ("lock released %" G_GINT64_FORMAT " ms after SIGKILL of the agent",
                  (g_get_monotonic_time () - killed_at) / 1000);
  g_assert_true (g_subprocess_get_successful (second));
}

static void
test_renew_through_agent (void)
{
  g_autofree char *env = g_strdup_printf ("MARIADB_SOCKET=%s\nMARIADB_USER=root\n%s\n",
                                          socket_path, TEST_IDLE_MARGIN);
  g_autoptr(HarnessAgent) agent = harness_agent_start ("mariadb", plugin, "session", env);
  g_autoptr(GSubprocess) writer = NULL;
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  JsonArray *renewed = NULL;
  JsonObject *result;
  const char *status = NULL, *detail = NULL;
  gint64 renewed_at;

  harness_agent_declare_shipped_phases (agent, "mariadb");
  /* lease 2 + margin 1: without the renew reaching the plugin its session ends 3 s idle */
  g_assert_true (harness_agent_quiesce (agent, "op-mariadb-renew", 2, NULL));
  json_object_set_string_member (args, "operation", "op-mariadb-renew");
  json_object_set_int_member (args, "lease_seconds", 30);
  ret = ma_client_execute (agent->client, "renew", args, &error);
  g_assert_no_error (error);
  renewed_at = g_get_monotonic_time ();
  g_assert_true (ma_json_get_array (json_node_get_object (ret), "renew_results", &renewed, NULL));
  g_assert_nonnull (renewed);
  g_assert_cmpuint (json_array_get_length (renewed), ==, 1);
  result = json_array_get_object_element (renewed, 0);
  g_assert_true (ma_json_get_string (result, "status", &status, NULL));
  g_assert_cmpstr (status, ==, "ok");
  g_assert_true (ma_json_get_string (result, "detail", &detail, NULL));
  g_assert_cmpstr (detail, ==, "read lock held, session kept for 31 s idle from now");

  writer = sql_background ("INSERT INTO t VALUES (23)");
  assert_blocked_until (writer, renewed_at + 3 * G_USEC_PER_SEC + PAST_WAIT_TIMEOUT_MS * 1000 / 2);
  harness_agent_thaw (agent, "op-mariadb-renew");
  assert_completes (writer);
}

static gboolean
server_ready (gpointer data)
{
  g_autofree char *admin = harness_find_program ("mariadb-admin");
  const char *argv[] = { admin, "--no-defaults", "-S", socket_path, "-uroot", "ping", NULL };

  if (!g_file_test (socket_path, G_FILE_TEST_EXISTS))
    return FALSE;
  return harness_run (argv, NULL, NULL, NULL) == 0;
}

static const char *
start_server (void)
{
  g_autofree char *install_db = harness_find_program ("mariadb-install-db");
  g_autofree char *mariadbd = harness_find_program ("mariadbd");
  g_autofree char *data = NULL;
  g_autofree char *log = NULL;
  g_autoptr(GError) error = NULL;

  if (install_db == NULL || mariadbd == NULL || harness_find_program ("mariadb") == NULL
      || harness_find_program ("mariadb-admin") == NULL)
    return "MariaDB server not installed (mariadb-server)";
  if (getpwnam (DB_USER) == NULL)
    return "no user " DB_USER " to run the server as";

  server_dir = harness_tmpdir_new (DB_USER);
  data = g_build_filename (server_dir->path, "data", NULL);
  log = g_build_filename (server_dir->path, "server.log", NULL);
  socket_path = g_build_filename (server_dir->path, "mysqld.sock", NULL);
  {
    g_autofree char *datadir = g_strdup_printf ("--datadir=%s", data);
    const char *argv[] = { install_db, "--no-defaults", datadir,
                           "--auth-root-authentication-method=normal", "--skip-test-db", NULL };
    g_autofree char *out = NULL;
    g_assert_cmpint (harness_run (argv, NULL, DB_USER, &out), ==, 0);
  }
  {
    g_autofree char *datadir = g_strdup_printf ("--datadir=%s", data);
    g_autofree char *sock = g_strdup_printf ("--socket=%s", socket_path);
    g_autofree char *pid = g_strdup_printf ("--pid-file=%s/mysqld.pid", server_dir->path);
    const char *argv[] = { mariadbd, "--no-defaults", datadir, sock, pid, "--skip-networking",
                           "--innodb-flush-log-at-trx-commit=2", NULL };
    server = harness_spawn (argv, NULL, DB_USER, log, &error);
    g_assert_no_error (error);
  }
  g_assert_true (harness_wait_for (server_ready, NULL, HARNESS_SERVER_START_MS));
  {
    g_autofree char *client = harness_find_program ("mariadb");
    const char *argv[] = { client, "--no-defaults", "-S", socket_path, "-uroot", "-e",
                           "CREATE DATABASE test; CREATE TABLE test.t (v INT) ENGINE=InnoDB;"
                           "INSERT INTO test.t VALUES (0);"
                           "CREATE TABLE test.slow (v INT) ENGINE=InnoDB; INSERT INTO test.slow VALUES (0)", NULL };
    g_assert_cmpint (harness_run (argv, NULL, NULL, NULL), ==, 0);
  }
  return NULL;
}

static void
stop_server (void)
{
  if (server != NULL)
    {
      g_subprocess_send_signal (server, SIGTERM);
      if (!harness_wait_exit (server, HARNESS_EXIT_MS))
        harness_kill (server);
      g_clear_object (&server);
    }
  g_clear_pointer (&server_dir, harness_tmpdir_free);
  g_clear_pointer (&socket_path, g_free);
}

int
main (int argc, char **argv)
{
  const char *skip = NULL;
  int relay = harness_relay_main (argc, argv);
  int status;

  if (relay >= 0)
    return relay;
  g_test_init (&argc, &argv, NULL);
  self_exe = argv[0];
  plugin = harness_plugin_path ("MA_PLUGIN_MARIADB");
  if (plugin == NULL)
    skip = "the mariadb plugin was not built (libmariadb-dev missing or -Dmariadb=disabled)";
  else
    skip = start_server ();
  if (skip != NULL)
    {
      g_print ("1..0 # SKIP %s\n", skip);
      return 0;
    }

  g_test_add_func ("/plugins/mariadb/quiesce/blocks-writes-until-thaw",
                   test_lock_blocks_writes_until_thaw);
  g_test_add_func ("/plugins/mariadb/quiesce/idempotent", test_quiesce_is_idempotent);
  g_test_add_func ("/plugins/mariadb/session/outlives-wait-timeout",
                   test_session_outlives_wait_timeout);
  g_test_add_func ("/plugins/mariadb/session/ends-after-lease", test_session_ends_after_lease);
  g_test_add_func ("/plugins/mariadb/session/no-silent-reconnect", test_no_silent_reconnect);
  g_test_add_func ("/plugins/mariadb/renew/keeps-session", test_renew_keeps_session);
  g_test_add_func ("/plugins/mariadb/renew/without-lock", test_renew_without_lock);
  g_test_add_func ("/plugins/mariadb/release/stdin-eof", test_eof_releases);
  g_test_add_func ("/plugins/mariadb/release/parent-killed",
                   test_parent_killed_releases_within_a_second);
  g_test_add_func ("/plugins/mariadb/long-statement/refused", test_long_statement_refused);
  g_test_add_func ("/plugins/mariadb/long-statement/killed", test_long_statement_killed);
  g_test_add_func ("/plugins/mariadb/long-statement/lock-wait-bounded",
                   test_lock_wait_bounded_by_deadline);
  g_test_add_func ("/plugins/mariadb/check-and-validate-alone", test_check_and_validate_alone);
  g_test_add_func ("/plugins/mariadb/errors/bad-requests", test_bad_requests);
  g_test_add_func ("/plugins/mariadb/agent/quiesce-thaw-and-kill", test_through_agent);
  g_test_add_func ("/plugins/mariadb/agent/renew-keeps-session", test_renew_through_agent);
  status = g_test_run ();
  stop_server ();
  return status;
}
