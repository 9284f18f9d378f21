/* test-plugin-postgresql.c — the postgresql plugin against a real PostgreSQL server started
 * by this test (as user postgres, UNIX socket only): check, CHECKPOINT observed, probe. */
#include <pwd.h>
#include <signal.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "plugin-harness.h"

#define PG_USER "postgres"

static const char *plugin;
static HarnessTmpdir *server_dir;
static GSubprocess *server;

static char *
psql (const char *sql)
{
  g_autofree char *psql_exe = harness_find_program ("psql");
  const char *argv[] = { psql_exe, "-h", server_dir->path, "-U", PG_USER, "-d", "postgres",
                         "-XAtqc", sql, NULL };
  char *out = NULL;

  g_assert_cmpint (harness_run (argv, NULL, NULL, &out), ==, 0);
  return g_strchomp (out);
}

static char **
plugin_env (const char *phase, const char *extra)
{
  g_autofree char *host = g_strdup_printf ("PGHOST=%s", server_dir->path);

  return harness_plugin_env ("postgresql", phase, server_dir->path, host, "PGUSER=" PG_USER,
                             "PGDATABASE=postgres", extra, NULL);
}

static int
run_phase (const char *phase, const char *extra, char **detail)
{
  g_auto(GStrv) env = plugin_env (phase, extra);

  return harness_oneshot (plugin, phase, (const char *const *) env, detail);
}

static gint64
checkpoints_requested (void)
{
  g_autofree char *value = psql ("SELECT checkpoints_req FROM pg_stat_bgwriter");

  return g_ascii_strtoll (value, NULL, 10);
}

typedef struct
{
  gint64 before;
} CheckpointWait;

static gboolean
checkpoint_counted (gpointer data)
{
  CheckpointWait *wait = data;

  return checkpoints_requested () > wait->before;
}

static void
test_quiesce_checkpoints (void)
{
  g_autofree char *detail = NULL;
  CheckpointWait wait = { .before = checkpoints_requested () };

  g_assert_cmpint (run_phase ("quiesce", NULL, &detail), ==, 0);
  g_assert_true (g_str_has_prefix (detail, "checkpoint done"));
  /* The server itself counts the checkpoint the plugin requested. */
  g_assert_true (harness_wait_for (checkpoint_counted, &wait, 10000));
}

static void
test_freeze_alias (void)
{
  g_autofree char *detail = NULL;
  CheckpointWait wait = { .before = checkpoints_requested () };

  g_assert_cmpint (run_phase ("freeze", NULL, &detail), ==, 0);
  g_assert_true (harness_wait_for (checkpoint_counted, &wait, 10000));
}

static void
test_check_clean (void)
{
  g_autofree char *detail = NULL;

  g_assert_cmpint (run_phase ("check", NULL, &detail), ==, 0);
  g_assert_nonnull (strstr (detail, "no transaction open"));
  g_assert_nonnull (strstr (detail, "primary, 0 standby(s)"));
}

static gboolean
holder_in_transaction (gpointer data)
{
  g_autofree char *count = psql ("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE application_name = 'holder' AND xact_start IS NOT NULL");

  return g_strcmp0 (count, "1") == 0;
}

static void
test_check_long_transaction (void)
{
  g_autofree char *psql_exe = harness_find_program ("psql");
  g_autofree char *host = g_strdup_printf ("PGHOST=%s", server_dir->path);
  const char *env[] = { host, "PGUSER=" PG_USER, "PGDATABASE=postgres",
                        "PGAPPNAME=holder", NULL };
  const char *argv[] = { psql_exe, "-XAtq", NULL };
  const char *begin = "BEGIN; SELECT txid_current();\n";
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocess) holder = harness_spawn_piped (argv, env, &error);
  g_autofree char *detail = NULL;
  g_autofree char *relaxed = NULL;

  g_assert_no_error (error);
  g_assert_true (g_output_stream_write_all (g_subprocess_get_stdin_pipe (holder), begin,
                                            strlen (begin), NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (harness_wait_for (holder_in_transaction, NULL, 30000));

  g_assert_cmpint (run_phase ("check", "PG_LONG_TRANSACTION_SECONDS=0", &detail), ==, 1);
  g_assert_nonnull (strstr (detail, "1 transaction(s) open"));
  g_assert_nonnull (strstr (detail, "txid_current"));
  /* The same transaction is not long by the default threshold. */
  g_assert_cmpint (run_phase ("check", NULL, &relaxed), ==, 0);

  g_output_stream_close (g_subprocess_get_stdin_pipe (holder), NULL, NULL);
  g_assert_true (harness_wait_exit (holder, HARNESS_EXIT_MS));
}

static gboolean
setting_is (gpointer data)
{
  g_autofree char *value = psql ("SHOW synchronous_standby_names");

  return g_strcmp0 (value, data) == 0;
}

static void
test_check_missing_synchronous_standby (void)
{
  g_autofree char *detail = NULL;

  g_free (psql ("ALTER SYSTEM SET synchronous_standby_names = 'standby1'"));
  g_free (psql ("SELECT pg_reload_conf()"));
  g_assert_true (harness_wait_for (setting_is, (gpointer) "standby1", 10000));

  g_assert_cmpint (run_phase ("check", NULL, &detail), ==, 1);
  g_assert_nonnull (strstr (detail, "no synchronous standby is streaming"));

  g_free (psql ("ALTER SYSTEM RESET synchronous_standby_names"));
  g_free (psql ("SELECT pg_reload_conf()"));
  g_assert_true (harness_wait_for (setting_is, (gpointer) "", 10000));
}

static void
test_validate_probe (void)
{
  g_autofree char *detail = NULL;
  g_autofree char *tables = NULL;

  g_assert_cmpint (run_phase ("validate", NULL, &detail), ==, 0);
  g_assert_cmpstr (detail, ==, "probe row written and read back");
  /* The probe table was temporary: nothing is left in the database. */
  tables = psql ("SELECT count(*) FROM pg_class WHERE relname = 'migration_agent_probe'");
  g_assert_cmpstr (tables, ==, "0");
}

static void
test_thaw_is_noop (void)
{
  g_autofree char *detail = NULL;

  g_assert_cmpint (run_phase ("thaw", NULL, &detail), ==, 0);
}

static void
test_unreachable_server_fails (void)
{
  g_autofree char *detail = NULL;
  g_auto(GStrv) env = harness_plugin_env ("postgresql", "quiesce", server_dir->path,
                                          "PGHOST=/nonexistent", "PGUSER=" PG_USER,
                                          "PGCONNECT_TIMEOUT=2", NULL);

  g_assert_cmpint (harness_oneshot (plugin, "quiesce", (const char *const *) env, &detail), ==, 1);
  g_assert_true (g_str_has_prefix (detail, "connect failed"));
}

static void
test_bad_phase_and_config (void)
{
  g_autofree char *detail = NULL;
  g_autofree char *bad = NULL;

  g_assert_cmpint (run_phase ("sideways", NULL, &detail), ==, 1);
  g_assert_nonnull (strstr (detail, "unknown phase 'sideways'"));
  g_assert_cmpint (run_phase ("check", "PG_LONG_TRANSACTION_SECONDS=soon", &bad), ==, 1);
  g_assert_nonnull (strstr (bad, "PG_LONG_TRANSACTION_SECONDS=soon"));
}

static void
test_through_agent (void)
{
  g_autofree char *env = g_strdup_printf ("PGHOST=%s\nPGUSER=" PG_USER "\nPGDATABASE=postgres\n",
                                          server_dir->path);
  g_autoptr(HarnessAgent) agent = harness_agent_start ("postgresql", plugin, "oneshot", env);
  CheckpointWait wait = { .before = checkpoints_requested () };

  g_assert_true (harness_agent_quiesce (agent, "op-postgresql", 60, NULL));
  g_assert_true (harness_wait_for (checkpoint_counted, &wait, 10000));
  harness_agent_thaw (agent, "op-postgresql");
}

static gboolean
server_ready (gpointer data)
{
  g_autofree char *ready = harness_find_program ("pg_isready");
  const char *argv[] = { ready, "-q", "-h", server_dir->path, "-U", PG_USER, NULL };

  return harness_run (argv, NULL, NULL, NULL) == 0;
}

static const char *
start_server (void)
{
  g_autofree char *initdb = harness_find_program ("initdb");
  g_autofree char *postgres = harness_find_program ("postgres");
  g_autofree char *data = NULL;
  g_autofree char *log = NULL;
  g_autoptr(GError) error = NULL;

  if (initdb == NULL || postgres == NULL || harness_find_program ("psql") == NULL)
    return "PostgreSQL server not installed (postgresql-15)";
  if (getpwnam (PG_USER) == NULL)
    return "no user " PG_USER " to run the server as";

  server_dir = harness_tmpdir_new (PG_USER);
  data = g_build_filename (server_dir->path, "data", NULL);
  log = g_build_filename (server_dir->path, "server.log", NULL);
  {
    const char *argv[] = { initdb, "-D", data, "-A", "trust", "-U", PG_USER, "--no-sync",
                           "-E", "UTF8", "--locale=C", NULL };
    g_autofree char *out = NULL;
    g_assert_cmpint (harness_run (argv, NULL, PG_USER, &out), ==, 0);
  }
  {
    g_autofree char *sockdir = g_strdup_printf ("unix_socket_directories=%s", server_dir->path);
    const char *argv[] = { postgres, "-D", data, "-c", "listen_addresses=", "-c", sockdir,
                           "-c", "fsync=off", NULL };
    server = harness_spawn (argv, NULL, PG_USER, log, &error);
    g_assert_no_error (error);
  }
  g_assert_true (harness_wait_for (server_ready, NULL, HARNESS_SERVER_START_MS));
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
}

int
main (int argc, char **argv)
{
  const char *skip = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);
  plugin = harness_plugin_path ("MA_PLUGIN_POSTGRESQL");
  if (plugin == NULL)
    skip = "the postgresql plugin was not built (libpq missing or -Dpostgresql=disabled)";
  else
    skip = start_server ();
  if (skip != NULL)
    {
      /* Report the whole program as skipped, with the reason. */
      g_print ("1..0 # SKIP %s\n", skip);
      return 0;
    }

  g_test_add_func ("/plugins/postgresql/check/clean", test_check_clean);
  g_test_add_func ("/plugins/postgresql/check/long-transaction", test_check_long_transaction);
  g_test_add_func ("/plugins/postgresql/check/missing-synchronous-standby",
                   test_check_missing_synchronous_standby);
  g_test_add_func ("/plugins/postgresql/quiesce/checkpoint", test_quiesce_checkpoints);
  g_test_add_func ("/plugins/postgresql/quiesce/freeze-alias", test_freeze_alias);
  g_test_add_func ("/plugins/postgresql/thaw/noop", test_thaw_is_noop);
  g_test_add_func ("/plugins/postgresql/validate/probe", test_validate_probe);
  g_test_add_func ("/plugins/postgresql/errors/unreachable", test_unreachable_server_fails);
  g_test_add_func ("/plugins/postgresql/errors/bad-input", test_bad_phase_and_config);
  g_test_add_func ("/plugins/postgresql/agent/quiesce-thaw", test_through_agent);
  status = g_test_run ();
  stop_server ();
  return status;
}
