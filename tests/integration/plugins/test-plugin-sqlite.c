/* test-plugin-sqlite.c — the sqlite session plugin on real database files: while quiesced a
 * writer cannot commit (busy at once, or waits and completes after thaw), EOF releases. */
#include <signal.h>
#include <string.h>

#include <glib.h>

#include "plugin-harness.h"

static const char *plugin;
static char *sqlite3_exe;

typedef struct
{
  HarnessTmpdir *dir;
  char *first;
  char *second;
} Fixture;

static char *
sql (const char *db, const char *statement)
{
  const char *argv[] = { sqlite3_exe, "-batch", db, statement, NULL };
  char *out = NULL;

  g_assert_cmpint (harness_run (argv, NULL, NULL, &out), ==, 0);
  return g_strchomp (out);
}

/* A writer that waits up to a minute for the lock (sqlite3's .timeout). */
static GSubprocess *
patient_writer (const char *db, const char *statement)
{
  const char *argv[] = { sqlite3_exe, "-batch", "-cmd", ".timeout 60000", db, statement, NULL };
  g_autoptr(GError) error = NULL;
  GSubprocess *proc = harness_spawn (argv, NULL, NULL, NULL, &error);

  g_assert_no_error (error);
  return proc;
}

static void
fixture_setup (Fixture *f, gconstpointer wal)
{
  f->dir = harness_tmpdir_new (NULL);
  f->first = g_build_filename (f->dir->path, "first.db", NULL);
  f->second = g_build_filename (f->dir->path, "second db.sqlite", NULL);
  g_free (sql (f->first, wal != NULL ? "PRAGMA journal_mode=WAL; CREATE TABLE t (v INTEGER)"
                                     : "CREATE TABLE t (v INTEGER)"));
  g_free (sql (f->second, "CREATE TABLE t (v INTEGER)"));
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_free (f->first);
  g_free (f->second);
  harness_tmpdir_free (f->dir);
}

static HarnessSession *
start_session (Fixture *f, const char *databases)
{
  g_autofree char *list = databases != NULL
                            ? g_strdup_printf ("SQLITE_DATABASES=%s", databases)
                            : g_strdup_printf ("SQLITE_DATABASES=%s;%s", f->first, f->second);
  g_auto(GStrv) env = harness_plugin_env ("sqlite", "session", f->dir->path, list, NULL);

  return harness_session_start (plugin, (const char *const *) env);
}

static void
assert_busy_now (const char *db)
{
  const char *argv[] = { sqlite3_exe, "-batch", db, "INSERT INTO t VALUES (99)", NULL };

  /* No busy timeout: the write is refused at once with "database is locked". */
  g_assert_cmpint (harness_run (argv, NULL, NULL, NULL), !=, 0);
}

static void
test_write_blocks_until_thaw (Fixture *f, gconstpointer data)
{
  g_autoptr(HarnessSession) session = start_session (f, NULL);
  g_autoptr(GSubprocess) first_writer = NULL;
  g_autoptr(GSubprocess) second_writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *thawed = NULL;
  g_autofree char *validated = NULL;
  g_autofree char *count = NULL;
  g_autofree char *count_second = NULL;

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  g_assert_true (g_str_has_prefix (detail, "write lock held on 2 database(s)"));
  assert_busy_now (f->first);
  assert_busy_now (f->second);
  first_writer = patient_writer (f->first, "INSERT INTO t VALUES (1)");
  second_writer = patient_writer (f->second, "INSERT INTO t VALUES (2)");
  g_assert_false (harness_wait_exit (first_writer, HARNESS_BLOCKED_MS));
  g_assert_false (harness_wait_exit (second_writer, 1));

  g_assert_true (harness_session_phase (session, "thaw", 10000, 60, &thawed));
  g_assert_cmpstr (thawed, ==, "released 2 database(s)");
  g_assert_true (harness_wait_exit (first_writer, HARNESS_EXIT_MS));
  g_assert_true (harness_wait_exit (second_writer, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (first_writer));
  g_assert_true (g_subprocess_get_successful (second_writer));
  count = sql (f->first, "SELECT count(*) FROM t");
  count_second = sql (f->second, "SELECT count(*) FROM t");
  g_assert_cmpstr (count, ==, "1");
  g_assert_cmpstr (count_second, ==, "1");

  g_assert_true (harness_session_phase (session, "validate", 10000, 60, &validated));
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_eof_releases (Fixture *f, gconstpointer data)
{
  g_autoptr(HarnessSession) session = start_session (f, NULL);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  writer = patient_writer (f->first, "INSERT INTO t VALUES (3)");
  g_assert_false (harness_wait_exit (writer, HARNESS_BLOCKED_MS));
  g_assert_cmpint (harness_session_close (session), ==, 0);
  g_assert_true (harness_wait_exit (writer, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (writer));
}

static void
test_sigterm_releases (Fixture *f, gconstpointer data)
{
  g_autoptr(HarnessSession) session = start_session (f, NULL);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;

  g_assert_true (harness_session_phase (session, "quiesce", 10000, 60, &detail));
  writer = patient_writer (f->second, "INSERT INTO t VALUES (4)");
  g_assert_false (harness_wait_exit (writer, HARNESS_BLOCKED_MS));
  g_subprocess_send_signal (session->proc, SIGTERM);
  g_assert_true (harness_wait_exit (session->proc, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_if_exited (session->proc));
  g_assert_cmpint (g_subprocess_get_exit_status (session->proc), ==, 0);
  g_assert_true (harness_wait_exit (writer, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (writer));
}

static void
test_busy_database_fails_all_or_nothing (Fixture *f, gconstpointer data)
{
  /* Someone else holds the second file's write lock: quiesce fails within its deadline
   * and gives the first file back. */
  const char *argv[] = { sqlite3_exe, "-batch", f->second, NULL };
  const char *hold = "BEGIN IMMEDIATE; INSERT INTO t VALUES (5);\n";
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocess) holder = harness_spawn_piped (argv, NULL, &error);
  g_autoptr(HarnessSession) session = NULL;
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *check = NULL;
  g_autofree char *count = NULL;

  g_assert_no_error (error);
  g_assert_true (g_output_stream_write_all (g_subprocess_get_stdin_pipe (holder), hold,
                                            strlen (hold), NULL, NULL, &error));
  g_assert_no_error (error);
  /* The holder's transaction is in place once a plain write is refused. */
  for (gint64 deadline = g_get_monotonic_time () + HARNESS_EXIT_MS * 1000;;)
    {
      const char *probe[] = { sqlite3_exe, "-batch", f->second, "BEGIN IMMEDIATE; ROLLBACK", NULL };
      if (harness_run (probe, NULL, NULL, NULL) != 0)
        break;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20000);
    }

  session = start_session (f, NULL);
  g_assert_false (harness_session_phase (session, "check", 1500, 60, &check));
  g_assert_nonnull (strstr (check, "database is locked"));
  g_assert_false (harness_session_phase (session, "quiesce", 1500, 60, &detail));
  g_assert_nonnull (strstr (detail, "second db.sqlite"));
  g_assert_nonnull (strstr (detail, "database is locked"));
  /* The first database is not left held. */
  writer = patient_writer (f->first, "INSERT INTO t VALUES (6)");
  g_assert_true (harness_wait_exit (writer, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (writer));
  count = sql (f->first, "SELECT count(*) FROM t");
  g_assert_cmpstr (count, ==, "1");

  g_output_stream_close (g_subprocess_get_stdin_pipe (holder), NULL, NULL);
  g_assert_true (harness_wait_exit (holder, HARNESS_EXIT_MS));
  g_assert_cmpint (harness_session_close (session), ==, 0);
}

static void
test_configuration_errors (Fixture *f, gconstpointer data)
{
  g_autofree char *missing_path = g_build_filename (f->dir->path, "missing.db", NULL);
  g_autoptr(HarnessSession) none = start_session (f, "");
  g_autoptr(HarnessSession) missing = start_session (f, missing_path);
  g_autoptr(HarnessSession) relative = start_session (f, "relative.db");
  g_autofree char *none_detail = NULL;
  g_autofree char *missing_detail = NULL;
  g_autofree char *relative_detail = NULL;

  g_assert_false (harness_session_phase (none, "quiesce", 5000, 60, &none_detail));
  g_assert_nonnull (strstr (none_detail, "SQLITE_DATABASES lists no database"));
  g_assert_false (harness_session_phase (missing, "quiesce", 5000, 60, &missing_detail));
  g_assert_nonnull (strstr (missing_detail, "cannot open"));
  /* Never created behind the owner's back. */
  g_assert_false (g_file_test (missing_path, G_FILE_TEST_EXISTS));
  g_assert_false (harness_session_phase (relative, "check", 5000, 60, &relative_detail));
  g_assert_nonnull (strstr (relative_detail, "not an absolute path"));
  g_assert_cmpint (harness_session_close (none), ==, 0);
  g_assert_cmpint (harness_session_close (missing), ==, 0);
  g_assert_cmpint (harness_session_close (relative), ==, 0);
}

static void
test_through_agent (Fixture *f, gconstpointer data)
{
  g_autofree char *env = g_strdup_printf ("SQLITE_DATABASES=%s;%s\n", f->first, f->second);
  g_autoptr(HarnessAgent) agent = harness_agent_start ("sqlite", plugin, "session", env);
  g_autoptr(GSubprocess) writer = NULL;
  g_autoptr(GSubprocess) second = NULL;

  g_assert_true (harness_agent_quiesce (agent, "op-sqlite", 60, NULL));
  assert_busy_now (f->second);
  writer = patient_writer (f->first, "INSERT INTO t VALUES (7)");
  g_assert_false (harness_wait_exit (writer, HARNESS_BLOCKED_MS));
  harness_agent_thaw (agent, "op-sqlite");
  g_assert_true (harness_wait_exit (writer, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (writer));

  g_assert_true (harness_agent_quiesce (agent, "op-sqlite-killed", 60, NULL));
  second = patient_writer (f->second, "INSERT INTO t VALUES (8)");
  g_assert_false (harness_wait_exit (second, HARNESS_BLOCKED_MS));
  ma_test_daemon_kill (agent->daemon, SIGKILL);
  g_assert_true (harness_wait_exit (second, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (second));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  plugin = harness_plugin_path ("MA_PLUGIN_SQLITE");
  sqlite3_exe = harness_find_program ("sqlite3");
  if (plugin == NULL || sqlite3_exe == NULL)
    {
      g_print ("1..0 # SKIP %s\n", plugin == NULL
                                     ? "the sqlite plugin was not built (libsqlite3-dev missing)"
                                     : "the sqlite3 command is not installed (sqlite3)");
      return 0;
    }

  g_test_add ("/plugins/sqlite/quiesce/blocks-writes-until-thaw", Fixture, NULL, fixture_setup,
              test_write_blocks_until_thaw, fixture_teardown);
  g_test_add ("/plugins/sqlite/quiesce/blocks-writes-wal", Fixture, "wal", fixture_setup,
              test_write_blocks_until_thaw, fixture_teardown);
  g_test_add ("/plugins/sqlite/release/stdin-eof", Fixture, NULL, fixture_setup,
              test_eof_releases, fixture_teardown);
  g_test_add ("/plugins/sqlite/release/sigterm", Fixture, NULL, fixture_setup,
              test_sigterm_releases, fixture_teardown);
  g_test_add ("/plugins/sqlite/quiesce/busy-all-or-nothing", Fixture, NULL, fixture_setup,
              test_busy_database_fails_all_or_nothing, fixture_teardown);
  g_test_add ("/plugins/sqlite/errors/configuration", Fixture, NULL, fixture_setup,
              test_configuration_errors, fixture_teardown);
  g_test_add ("/plugins/sqlite/agent/quiesce-thaw-and-kill", Fixture, NULL, fixture_setup,
              test_through_agent, fixture_teardown);
  return g_test_run ();
}
