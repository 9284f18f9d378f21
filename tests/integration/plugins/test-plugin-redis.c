/* test-plugin-redis.c — the redis plugin against a real redis-server started by this test on a
 * UNIX socket: writes wait while paused (also past a renewed lease) and go through after thaw or
 * when the pause expires. */
#include <signal.h>
#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "json.h"
#include "plugin-harness.h"

static const char *plugin;
static HarnessTmpdir *server_dir;
static GSubprocess *server;
static char *socket_path;
static char *cli;

static char *
redis (const char *first, ...) G_GNUC_NULL_TERMINATED;

static char *
redis (const char *first, ...)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  g_auto(GStrv) argv = NULL;
  va_list args;
  char *out = NULL;

  g_strv_builder_add_many (builder, cli, "-s", socket_path, NULL);
  va_start (args, first);
  for (const char *arg = first; arg != NULL; arg = va_arg (args, const char *))
    g_strv_builder_add (builder, arg);
  va_end (args);
  argv = g_strv_builder_end (builder);
  g_assert_cmpint (harness_run ((const char *const *) argv, NULL, NULL, &out), ==, 0);
  return g_strchomp (out);
}

static GSubprocess *
background_set (const char *key, const char *value)
{
  const char *argv[] = { cli, "-s", socket_path, "SET", key, value, NULL };
  g_autoptr(GError) error = NULL;
  GSubprocess *proc = harness_spawn (argv, NULL, NULL, NULL, &error);

  g_assert_no_error (error);
  return proc;
}

static int
run_phase (const char *phase, const char *lease, const char *extra, char **detail)
{
  g_autofree char *sock = g_strdup_printf ("REDIS_SOCKET=%s", socket_path);
  g_autofree char *lease_var = g_strdup_printf ("MA_LEASE_SECONDS=%s", lease);
  g_auto(GStrv) env = harness_plugin_env ("redis", phase, server_dir->path, sock, extra, NULL);

  /* The lease given by the agent replaces the harness default. */
  for (guint i = 0; env[i] != NULL; i++)
    if (g_str_has_prefix (env[i], "MA_LEASE_SECONDS="))
      {
        g_free (env[i]);
        env[i] = g_strdup (lease_var);
      }
  return harness_oneshot (plugin, phase, (const char *const *) env, detail);
}

static void
assert_completes (GSubprocess *writer)
{
  g_assert_true (harness_wait_exit (writer, HARNESS_EXIT_MS));
  g_assert_true (g_subprocess_get_successful (writer));
}

static void
test_pause_blocks_writes_until_thaw (void)
{
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *thawed = NULL;
  g_autofree char *reads = NULL;
  g_autofree char *after = NULL;

  g_free (redis ("SET", "k", "old", NULL));
  g_assert_cmpint (run_phase ("quiesce", "60", NULL, &detail), ==, 0);
  g_assert_cmpstr (detail, ==, "writes paused for at most 60 s");
  writer = background_set ("k", "new");
  g_assert_false (harness_wait_exit (writer, HARNESS_BLOCKED_MS));
  /* Reads still go through while writes wait. */
  reads = redis ("GET", "k", NULL);
  g_assert_cmpstr (reads, ==, "old");

  g_assert_cmpint (run_phase ("thaw", "60", NULL, &thawed), ==, 0);
  g_assert_cmpstr (thawed, ==, "writes resumed");
  assert_completes (writer);
  after = redis ("GET", "k", NULL);
  g_assert_cmpstr (after, ==, "new");
}

static void
test_pause_expires_with_the_lease (void)
{
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *value = NULL;

  /* No thaw ever comes (the agent is gone): the server resumes writes by itself. */
  g_assert_cmpint (run_phase ("quiesce", "2", NULL, &detail), ==, 0);
  g_assert_cmpstr (detail, ==, "writes paused for at most 2 s");
  writer = background_set ("lease", "expired");
  g_assert_false (harness_wait_exit (writer, HARNESS_BLOCKED_MS));
  assert_completes (writer);
  value = redis ("GET", "lease", NULL);
  g_assert_cmpstr (value, ==, "expired");
}

static void
test_save_while_paused (void)
{
  g_autofree char *dump = g_build_filename (server_dir->path, "dump.rdb", NULL);
  g_autofree char *detail = NULL;
  g_autofree char *bg_detail = NULL;
  g_autofree char *thawed = NULL;

  g_free (redis ("SET", "saved", "yes", NULL));
  g_remove (dump);
  g_assert_cmpint (run_phase ("quiesce", "60", "REDIS_SAVE=save", &detail), ==, 0);
  g_assert_cmpstr (detail, ==, "writes paused for at most 60 s, dataset saved");
  g_assert_true (g_file_test (dump, G_FILE_TEST_IS_REGULAR));
  g_assert_cmpint (run_phase ("thaw", "60", NULL, &thawed), ==, 0);

  g_remove (dump);
  g_assert_cmpint (run_phase ("quiesce", "60", "REDIS_SAVE=bgsave", &bg_detail), ==, 0);
  g_assert_cmpstr (bg_detail, ==, "writes paused for at most 60 s, dataset saved in the background");
  /* The plugin waited for the child to finish: the file is there when it answers. */
  g_assert_true (g_file_test (dump, G_FILE_TEST_IS_REGULAR));
  g_clear_pointer (&thawed, g_free);
  g_assert_cmpint (run_phase ("thaw", "60", NULL, &thawed), ==, 0);
}

static void
test_check_validate (void)
{
  g_autofree char *check = NULL;
  g_autofree char *validate = NULL;

  g_assert_cmpint (run_phase ("check", "60", NULL, &check), ==, 0);
  g_assert_true (g_str_has_prefix (check, "redis 7"));
  g_assert_nonnull (strstr (check, "role master"));
  g_assert_cmpint (run_phase ("validate", "60", NULL, &validate), ==, 0);
}

static void
test_errors (void)
{
  g_autofree char *bad_save = NULL;
  g_autofree char *unreachable = NULL;
  g_autofree char *bad_phase = NULL;
  g_autoptr(GSubprocess) writer = NULL;
  g_auto(GStrv) env = harness_plugin_env ("redis", "quiesce", server_dir->path,
                                          "REDIS_SOCKET=/nonexistent/redis.sock", NULL);

  g_assert_cmpint (run_phase ("quiesce", "60", "REDIS_SAVE=sometimes", &bad_save), ==, 1);
  g_assert_nonnull (strstr (bad_save, "REDIS_SAVE=sometimes"));
  /* Refused before pausing: writes are not held. */
  writer = background_set ("free", "yes");
  assert_completes (writer);
  g_assert_cmpint (harness_oneshot (plugin, "quiesce", (const char *const *) env, &unreachable),
                   ==, 1);
  g_assert_true (g_str_has_prefix (unreachable, "cannot connect"));
  g_assert_cmpint (run_phase ("sideways", "60", NULL, &bad_phase), ==, 1);
  g_assert_nonnull (strstr (bad_phase, "unknown phase"));
}

static void
test_through_agent (void)
{
  g_autofree char *env = g_strdup_printf ("REDIS_SOCKET=%s\n", socket_path);
  g_autoptr(HarnessAgent) agent = harness_agent_start ("redis", plugin, "oneshot", env);
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *value = NULL;

  g_assert_true (harness_agent_quiesce (agent, "op-redis", 60, NULL));
  writer = background_set ("agent", "thawed");
  g_assert_false (harness_wait_exit (writer, HARNESS_BLOCKED_MS));
  harness_agent_thaw (agent, "op-redis");
  assert_completes (writer);
  value = redis ("GET", "agent", NULL);
  g_assert_cmpstr (value, ==, "thawed");
}

static void
test_renew_extends_pause (void)
{
  g_autoptr(GSubprocess) writer = NULL;
  g_autofree char *paused = NULL;
  g_autofree char *renewed = NULL;
  g_autofree char *thawed = NULL;
  g_autofree char *value = NULL;
  gint64 first_end;

  g_free (redis ("SET", "renewed", "before", NULL));
  g_assert_cmpint (run_phase ("quiesce", "2", NULL, &paused), ==, 0);
  first_end = g_get_monotonic_time () + 2 * G_USEC_PER_SEC;
  g_assert_cmpint (run_phase ("renew", "30", NULL, &renewed), ==, 0);
  g_assert_cmpstr (renewed, ==, "writes paused for at most 30 s from now");
  writer = background_set ("renewed", "after");
  /* past the first pause's end the write still waits */
  g_assert_false (harness_wait_exit (writer, (guint) ((first_end - g_get_monotonic_time ())
                                                      / 1000) + HARNESS_BLOCKED_MS));
  g_assert_cmpint (g_get_monotonic_time (), >, first_end);
  value = redis ("GET", "renewed", NULL);
  g_assert_cmpstr (value, ==, "before");
  g_assert_cmpint (run_phase ("thaw", "30", NULL, &thawed), ==, 0);
  assert_completes (writer);
  g_clear_pointer (&value, g_free);
  value = redis ("GET", "renewed", NULL);
  g_assert_cmpstr (value, ==, "after");
}

static void
test_renew_through_agent (void)
{
  g_autofree char *env = g_strdup_printf ("REDIS_SOCKET=%s\n", socket_path);
  g_autoptr(HarnessAgent) agent = harness_agent_start ("redis", plugin, "oneshot", env);
  g_autoptr(GSubprocess) writer = NULL;
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *value = NULL;
  JsonArray *renewed = NULL;
  JsonObject *result;
  const char *status = NULL, *detail = NULL;
  gint64 first_end;

  harness_agent_declare_shipped_phases (agent, "redis");
  g_free (redis ("SET", "agent-renew", "before", NULL));
  g_assert_true (harness_agent_quiesce (agent, "op-redis-renew", 2, NULL));
  first_end = g_get_monotonic_time () + 2 * G_USEC_PER_SEC;
  json_object_set_string_member (args, "operation", "op-redis-renew");
  json_object_set_int_member (args, "lease_seconds", 30);
  ret = ma_client_execute (agent->client, "renew", args, &error);
  g_assert_no_error (error);
  g_assert_true (ma_json_get_array (json_node_get_object (ret), "renew_results", &renewed, NULL));
  g_assert_nonnull (renewed);
  g_assert_cmpuint (json_array_get_length (renewed), ==, 1);
  result = json_array_get_object_element (renewed, 0);
  g_assert_true (ma_json_get_string (result, "status", &status, NULL));
  g_assert_cmpstr (status, ==, "ok");
  g_assert_true (ma_json_get_string (result, "detail", &detail, NULL));
  g_assert_cmpstr (detail, ==, "writes paused for at most 30 s from now");

  /* from another client, past the first lease's end: still held */
  writer = background_set ("agent-renew", "after");
  g_assert_false (harness_wait_exit (writer, (guint) ((first_end - g_get_monotonic_time ())
                                                      / 1000) + HARNESS_BLOCKED_MS));
  g_assert_cmpint (g_get_monotonic_time (), >, first_end);
  value = redis ("GET", "agent-renew", NULL);
  g_assert_cmpstr (value, ==, "before");
  harness_agent_thaw (agent, "op-redis-renew");
  assert_completes (writer);
  g_clear_pointer (&value, g_free);
  value = redis ("GET", "agent-renew", NULL);
  g_assert_cmpstr (value, ==, "after");
}

static gboolean
server_ready (gpointer data)
{
  const char *argv[] = { cli, "-s", socket_path, "PING", NULL };
  g_autofree char *out = NULL;

  if (!g_file_test (socket_path, G_FILE_TEST_EXISTS))
    return FALSE;
  return harness_run (argv, NULL, NULL, &out) == 0 && g_str_has_prefix (out, "PONG");
}

static const char *
start_server (void)
{
  g_autofree char *server_exe = harness_find_program ("redis-server");
  g_autofree char *log = NULL;
  g_autoptr(GError) error = NULL;

  cli = harness_find_program ("redis-cli");
  if (server_exe == NULL || cli == NULL)
    return "Redis not installed (redis-server, redis-tools)";
  server_dir = harness_tmpdir_new (NULL);
  socket_path = g_build_filename (server_dir->path, "redis.sock", NULL);
  log = g_build_filename (server_dir->path, "server.log", NULL);
  {
    const char *argv[] = { server_exe, "--port", "0", "--unixsocket", socket_path,
                           "--dir", server_dir->path, "--save", "", "--appendonly", "no",
                           "--daemonize", "no", NULL };
    server = harness_spawn (argv, NULL, NULL, log, &error);
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
  g_clear_pointer (&socket_path, g_free);
  g_clear_pointer (&cli, g_free);
}

int
main (int argc, char **argv)
{
  const char *skip = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);
  plugin = harness_plugin_path ("MA_PLUGIN_REDIS");
  if (plugin == NULL)
    skip = "the redis plugin was not built (libhiredis-dev missing or -Dredis=disabled)";
  else
    skip = start_server ();
  if (skip != NULL)
    {
      g_print ("1..0 # SKIP %s\n", skip);
      return 0;
    }

  g_test_add_func ("/plugins/redis/quiesce/blocks-writes-until-thaw",
                   test_pause_blocks_writes_until_thaw);
  g_test_add_func ("/plugins/redis/quiesce/expires-with-lease", test_pause_expires_with_the_lease);
  g_test_add_func ("/plugins/redis/quiesce/save", test_save_while_paused);
  g_test_add_func ("/plugins/redis/check-validate", test_check_validate);
  g_test_add_func ("/plugins/redis/errors", test_errors);
  g_test_add_func ("/plugins/redis/renew/extends-pause", test_renew_extends_pause);
  g_test_add_func ("/plugins/redis/agent/quiesce-thaw", test_through_agent);
  g_test_add_func ("/plugins/redis/agent/renew-holds-past-first-lease", test_renew_through_agent);
  status = g_test_run ();
  stop_server ();
  return status;
}
