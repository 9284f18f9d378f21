/* test-plugin-mariadb.c — the mariadb session plugin against a real MariaDB server started by
 * this test (as user mysql, UNIX socket only): the read lock blocks writers until thaw, long
 * statements are refused or killed, and the lock goes when the plugin's parent is killed. */
#include <pwd.h>
#include <signal.h>
#include <string.h>

#include <glib.h>

#include "plugin-harness.h"

#define DB_USER "mysql"

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
  status = g_test_run ();
  stop_server ();
  return status;
}
