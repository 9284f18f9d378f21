/* test-quiesce.c — the quiesce engine against the real daemon with real shell plugins written
 * into a temporary plugin directory: order, parallelism, rollback, deadlines, leases, sessions,
 * restart replay, shutdown, refusal of insecure files, the scrubbed environment, bounded output,
 * and the retry of a oneshot plugin's failed thaw. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "daemon-fixture.h"
#include "error.h"
#include "json.h"

#define WAIT_MS 15000

typedef struct
{
  MaTestDaemon *daemon;
  char *plugins; /* the plugin directory */
  char *log;     /* every test plugin appends "NAME PHASE" here */
  MaClient *client;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autofree char *config = NULL;

  f->daemon = ma_test_daemon_new (NULL);
  f->plugins = g_build_filename (f->daemon->dir, "plugins", NULL);
  f->log = g_build_filename (f->daemon->dir, "plugin.log", NULL);
  g_assert_cmpint (g_mkdir (f->plugins, 0755), ==, 0);
  /* the temporary directory itself must not be writable by others for the test to mean much */
  g_assert_cmpint (chmod (f->daemon->dir, 0755), ==, 0);
  config = g_strdup_printf ("[plugins]\ndirs=%s\n", f->plugins);
  g_assert_true (g_file_set_contents (f->daemon->config, config, -1, NULL));
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->client, ma_client_free);
  if (g_test_failed () && f->daemon != NULL)
    ma_test_daemon_dump_log (f->daemon);
  g_clear_pointer (&f->daemon, ma_test_daemon_free);
  g_free (f->plugins);
  g_free (f->log);
}

static void
start (Fixture *f)
{
  ma_test_daemon_start (f->daemon, NULL);
  g_clear_pointer (&f->client, ma_client_free);
  f->client = ma_test_daemon_connect (f->daemon);
}

/* NAME.sh (mode 0755) running `body` with LOG and DIR set, and NAME.plugin with Exec=NAME.sh. */
static void
write_plugin (Fixture *f, const char *name, const char *manifest_extra, const char *body)
{
  g_autofree char *script_path = g_strdup_printf ("%s/%s.sh", f->plugins, name);
  g_autofree char *manifest_path = g_strdup_printf ("%s/%s.plugin", f->plugins, name);
  g_autofree char *script = g_strdup_printf ("#!/bin/sh\nLOG='%s'\nDIR='%s'\n%s\n", f->log,
                                             f->daemon->dir, body);
  g_autofree char *manifest = g_strdup_printf ("[Plugin]\nName=%s\nExec=%s.sh\n%s\n", name, name,
                                               manifest_extra ? manifest_extra : "");

  g_assert_true (g_file_set_contents (script_path, script, -1, NULL));
  g_assert_cmpint (chmod (script_path, 0755), ==, 0);
  g_assert_true (g_file_set_contents (manifest_path, manifest, -1, NULL));
  g_assert_cmpint (chmod (manifest_path, 0644), ==, 0);
}

/* A plugin that logs each phase and succeeds. */
static void
write_logging_plugin (Fixture *f, const char *name, const char *manifest_extra)
{
  write_plugin (f, name, manifest_extra, "echo \"$MA_PLUGIN $1\" >> \"$LOG\"");
}

static char *
read_log (Fixture *f)
{
  char *text = NULL;

  if (!g_file_get_contents (f->log, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

static void
assert_log (Fixture *f, const char *expected)
{
  g_autofree char *text = read_log (f);

  g_assert_cmpstr (text, ==, expected);
}

/* Wait until the log contains needle. */
static void
wait_log (Fixture *f, const char *needle)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *text = read_log (f);
      if (strstr (text, needle) != NULL)
        return;
      g_usleep (10 * 1000);
    }
  {
    g_autofree char *text = read_log (f);
    g_error ("plugin log never showed '%s'; it holds:\n%s", needle, text);
  }
}

static GError *
execute_error (Fixture *f, const char *command, const char *args_json)
{
  g_autoptr(JsonNode) args = NULL;
  g_autoptr(JsonNode) ret = NULL;
  GError *error = NULL;

  if (args_json != NULL)
    args = ma_json_parse (args_json, strlen (args_json), NULL);
  ret = ma_client_execute (f->client, command, args ? json_node_get_object (args) : NULL, &error);
  g_assert_null (ret);
  g_assert_nonnull (error);
  return error;
}

static const char *
string_of (JsonNode *node, const char *member)
{
  const char *value = NULL;

  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  g_assert_true (ma_json_get_string (json_node_get_object (node), member, &value, NULL));
  g_assert_nonnull (value);
  return value;
}

static char *
lifecycle_state (Fixture *f)
{
  g_autoptr(JsonNode) status = ma_test_execute (f->client, "status", NULL);

  return g_strdup (string_of (status, "state"));
}

/* The next event with this name, skipping others. */
static JsonNode *
wait_event (Fixture *f, const char *name)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) event = ma_client_next_event (f->client, 500, &error);
      g_assert_no_error (error);
      if (event != NULL && g_strcmp0 (string_of (event, "event"), name) == 0)
        return g_steal_pointer (&event);
    }
  g_error ("no %s event within %d ms", name, WAIT_MS);
  return NULL;
}

/* The first event NAME in the agent's buffer (`events` after 0): unlike wait_event it also
 * finds an event emitted before this client connected, such as one from the agent's start. */
static JsonNode *
wait_buffered_event (Fixture *f, const char *name)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(JsonNode) ret = ma_test_execute (f->client, "events", "{\"after\": 0}");
      JsonArray *events = NULL;

      g_assert_true (ma_json_get_array (json_node_get_object (ret), "events", &events, NULL));
      g_assert_nonnull (events);
      for (guint i = 0; i < json_array_get_length (events); i++)
        {
          JsonNode *event = json_array_get_element (events, i);
          if (g_strcmp0 (string_of (event, "event"), name) == 0)
            return json_node_copy (event);
        }
      g_usleep (20 * 1000);
    }
  g_error ("no %s event in the agent's buffer within %d ms", name, WAIT_MS);
  return NULL;
}

static JsonObject *
find_plugin (JsonNode *plugins_ret, const char *name)
{
  JsonArray *list = NULL;

  g_assert_true (ma_json_get_array (json_node_get_object (plugins_ret), "plugins", &list, NULL));
  g_assert_nonnull (list);
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonObject *p = json_array_get_object_element (list, i);
      const char *pname = NULL;
      ma_json_get_string (p, "name", &pname, NULL);
      if (g_strcmp0 (pname, name) == 0)
        return p;
    }
  g_error ("plugin %s not listed", name);
  return NULL;
}

static gboolean
pid_alive (pid_t pid)
{
  g_autofree char *stat_path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *stat = NULL;
  const char *paren;

  if (!g_file_get_contents (stat_path, &stat, NULL, NULL))
    return FALSE;
  paren = strrchr (stat, ')');
  /* a zombie is dead; it only waits for its reaper */
  return paren != NULL && paren[1] == ' ' && paren[2] != 'Z';
}

static void
wait_pid_gone (pid_t pid)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      if (!pid_alive (pid))
        return;
      g_usleep (10 * 1000);
    }
  g_error ("process %d still alive", (int) pid);
}

static void
wait_file_gone (const char *path)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      if (!g_file_test (path, G_FILE_TEST_EXISTS))
        return;
      g_usleep (10 * 1000);
    }
  g_error ("%s still exists", path);
}

/* Send a request on a connection without waiting for its answer (read_answer reads it):
 * the client library waits for every answer, and these tests need a call in flight. */
static void
send_request (MaClient *client, const char *command, const char *args_json, const char *id)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *line = g_strdup_printf ("{\"execute\": \"%s\", \"arguments\": %s, \"id\": \"%s\"}\n",
                                           command, args_json ? args_json : "{}", id);

  g_assert_true (ma_client_write_raw (client, line, strlen (line), &error));
  g_assert_no_error (error);
}

static gboolean
reply_has_id (JsonNode *node, const char *id)
{
  const char *got = NULL;

  return JSON_NODE_HOLDS_OBJECT (node)
         && ma_json_get_string (json_node_get_object (node), "id", &got, NULL)
         && g_strcmp0 (got, id) == 0;
}

/* The reply to request id on this connection (other lines are skipped): the whole reply. */
static JsonNode *
read_answer (MaClient *client, const char *id)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) ma_test_timeout_ms (WAIT_MS) * 1000;

  for (;;)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *line = NULL;
      g_autoptr(JsonNode) node = NULL;
      gint64 left_ms = MAX ((deadline - g_get_monotonic_time ()) / 1000, 1);

      line = ma_client_read_line (client, (int) left_ms, &error);
      g_assert_no_error (error);
      node = ma_json_parse (line, strlen (line), &error);
      g_assert_no_error (error);
      if (reply_has_id (node, id))
        return g_steal_pointer (&node);
    }
}

/* Every answer this connection will get for id has come: a ping sent now is answered after
 * anything still owed to earlier requests (replies keep the order of the requests), and no
 * second answer to id may come before it. */
static void
assert_answered_once (MaClient *client, const char *id)
{
  g_autofree char *fence = g_strdup_printf ("%s-fence", id);

  send_request (client, "ping", NULL, fence);
  for (;;)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *line = ma_client_read_line (client, (int) ma_test_timeout_ms (WAIT_MS),
                                                   &error);
      g_autoptr(JsonNode) node = NULL;

      g_assert_no_error (error);
      node = ma_json_parse (line, strlen (line), &error);
      g_assert_no_error (error);
      g_assert_false (reply_has_id (node, id));
      if (reply_has_id (node, fence))
        return;
    }
}

/* The error class of a reply, or NULL for a return. */
static const char *
reply_error_class (JsonNode *reply, const char **desc)
{
  JsonObject *err = NULL;
  const char *klass = NULL;

  g_assert_true (JSON_NODE_HOLDS_OBJECT (reply));
  if (!ma_json_get_object (json_node_get_object (reply), "error", &err, NULL) || err == NULL)
    {
      g_assert_true (json_object_has_member (json_node_get_object (reply), "return"));
      return NULL;
    }
  g_assert_true (ma_json_get_string (err, "class", &klass, NULL));
  if (desc != NULL)
    g_assert_true (ma_json_get_string (err, "desc", desc, NULL));
  return klass;
}

static JsonObject *
reply_return (JsonNode *reply)
{
  g_assert_null (reply_error_class (reply, NULL));
  return json_object_get_object_member (json_node_get_object (reply), "return");
}

static char *
agent_log (Fixture *f)
{
  char *text = NULL;

  if (!g_file_get_contents (f->daemon->log_path, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

/* Wait until the agent's own log contains needle. */
static void
wait_agent_log (Fixture *f, const char *needle)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) ma_test_timeout_ms (WAIT_MS) * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *text = agent_log (f);
      if (strstr (text, needle) != NULL)
        return;
      g_usleep (10 * 1000);
    }
  g_error ("the agent log never showed '%s'", needle);
}

/* No call was dropped unanswered and nothing critical was logged. */
static void
assert_agent_log_clean (Fixture *f)
{
  g_autofree char *text = agent_log (f);

  g_assert_null (strstr (text, "dropped without an answer"));
  g_assert_null (strstr (text, "CRITICAL"));
}

static gint64
guard_last_renewal (Fixture *f)
{
  g_autoptr(JsonNode) status = ma_test_execute (f->client, "freeze-guard", NULL);
  gint64 last = 0;

  g_assert_true (ma_json_get_int (json_node_get_object (status), "last-renewal", &last, NULL));
  g_assert_cmpint (last, >, 0);
  return last;
}

/* ---- tests ---- */

static void
test_order (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) plugins = NULL;
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autofree char *state = NULL;
  JsonArray *order = NULL;

  write_logging_plugin (f, "db", "Order=10");
  write_logging_plugin (f, "app", "");
  write_logging_plugin (f, "cache", "After=app");
  start (f);

  plugins = ma_test_execute (f->client, "plugins", NULL);
  g_assert_true (ma_json_get_array (json_node_get_object (plugins), "order", &order, NULL));
  g_assert_cmpuint (json_array_get_length (order), ==, 3);
  g_assert_cmpstr (json_array_get_string_element (order, 0), ==, "db");
  g_assert_cmpstr (json_array_get_string_element (order, 1), ==, "app");
  g_assert_cmpstr (json_array_get_string_element (order, 2), ==, "cache");

  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-order\", \"lease_seconds\": 60}");
  g_assert_cmpstr (string_of (q, "state"), ==, "quiesced");
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "quiesced");
  assert_log (f, "db quiesce\napp quiesce\ncache quiesce\n");
  g_clear_pointer (&plugins, json_node_unref);
  plugins = ma_test_execute (f->client, "plugins", NULL);
  g_assert_cmpstr (json_object_get_string_member (find_plugin (plugins, "cache"), "state"), ==,
                   "quiesced");

  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-order\"}");
  assert_log (f, "db quiesce\napp quiesce\ncache quiesce\ncache thaw\napp thaw\ndb thaw\n");
  g_free (state);
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "thawed");
}

/* Two independent plugins that each wait for the other to have started: only parallel
 * execution lets both succeed (run one after the other, the first would time out). */
static void
test_parallel (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  const char *body =
    "if [ \"$1\" = quiesce ]; then\n"
    "  touch \"$DIR/started-$MA_PLUGIN\"\n"
    "  i=0; while [ ! -e \"$DIR/started-$OTHER\" ]; do\n"
    "    i=$((i+1)); [ $i -lt 500 ] || exit 1; sleep 0.01; done\n"
    "fi\n"
    "echo \"$MA_PLUGIN $1\" >> \"$LOG\"";
  g_autofree char *left = g_strdup_printf ("OTHER=right\n%s", body);
  g_autofree char *right = g_strdup_printf ("OTHER=left\n%s", body);

  write_plugin (f, "left", "", left);
  write_plugin (f, "right", "", right);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-par\"}");
  g_assert_cmpstr (string_of (q, "state"), ==, "quiesced");
  t = ma_test_execute (f->client, "thaw", NULL);
}

static void
test_rollback (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) event = NULL;
  g_autofree char *state = NULL;

  write_logging_plugin (f, "first", "Order=10");
  write_logging_plugin (f, "second", "Order=20");
  write_plugin (f, "broken", "Order=30",
                "echo \"$MA_PLUGIN $1\" >> \"$LOG\"\n"
                "[ \"$1\" = quiesce ] || exit 0\n"
                "echo 'cannot lock the tables' >&2\nexit 3");
  write_logging_plugin (f, "never", "Order=40");
  start (f);

  error = execute_error (f, "quiesce", "{\"operation\": \"op-fail\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (error->message, "plugin broken, phase quiesce"));
  g_assert_nonnull (strstr (error->message, "exited with status 3: cannot lock the tables"));
  g_assert_nonnull (strstr (error->message, "rolled back"));
  /* the failed one is released too; the one after it never ran */
  assert_log (f, "first quiesce\nsecond quiesce\nbroken quiesce\nbroken thaw\nsecond thaw\n"
                 "first thaw\n");
  event = wait_event (f, "PLUGIN_FAILED");
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (event), "data"),
                              "plugin"), ==, "broken");
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");

  /* idempotent: the same operation answers the same failure without running anything */
  g_clear_error (&error);
  error = execute_error (f, "quiesce", "{\"operation\": \"op-fail\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  assert_log (f, "first quiesce\nsecond quiesce\nbroken quiesce\nbroken thaw\nsecond thaw\n"
                 "first thaw\n");
}

static void
test_timeout (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *pid_path = g_build_filename (f->daemon->dir, "child.pid", NULL);
  g_autofree char *pid_text = NULL;
  guint64 child;
  gint64 started;

  write_logging_plugin (f, "quick", "Order=10");
  /* ignores SIGTERM, with a child in its process group that would outlive it */
  write_plugin (f, "hang", "Order=20\nQuiesceTimeout=0.5",
                "echo \"$MA_PLUGIN $1\" >> \"$LOG\"\n"
                "[ \"$1\" = quiesce ] || exit 0\n"
                "trap '' TERM\n"
                "sleep 300 &\necho $! > \"$DIR/child.pid\"\n"
                "while :; do sleep 1; done");
  start (f);
  started = g_get_monotonic_time ();
  error = execute_error (f, "quiesce", "{\"operation\": \"op-hang\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (error->message, "plugin hang, phase quiesce: timed out after 0.5 s"));
  /* deadline plus the SIGTERM grace, not the plugin's 300 s */
  g_assert_cmpint (g_get_monotonic_time () - started, <, 10 * G_USEC_PER_SEC);
  assert_log (f, "quick quiesce\nhang quiesce\nhang thaw\nquick thaw\n");
  g_assert_true (g_file_get_contents (pid_path, &pid_text, NULL, NULL));
  g_assert_true (g_ascii_string_to_unsigned (g_strstrip (pid_text), 10, 1, G_MAXINT, &child, NULL));
  wait_pid_gone ((pid_t) child);
}

/* A plugin that writes without pause on both streams: reading it cannot hold the agent's main
 * loop, so its deadline still fires, its group is killed and the agent goes on serving. */
static void
test_endless_output (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) pong = NULL;

  write_plugin (f, "flood", "QuiesceTimeout=1",
                "[ \"$1\" = quiesce ] || exit 0\n"
                "yes flood >&2 &\n"
                "exec yes flood");
  start (f);
  error = execute_error (f, "quiesce", "{\"operation\": \"op-flood\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (error->message, "plugin flood, phase quiesce: timed out after 1.0 s"));
  pong = ma_test_execute (f->client, "ping", NULL);
  g_assert_nonnull (pong);
}

static void
test_lease_expiry (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) event = NULL;
  g_autoptr(JsonNode) thawed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autofree char *state = NULL;

  write_logging_plugin (f, "db", "");
  write_plugin (f, "sess", "Protocol=session",
                "while read -r line; do\n"
                "  case \"$line\" in\n"
                "    *'\"quiesce\"'*) echo 'sess quiesce' >> \"$LOG\" ;;\n"
                "    *'\"thaw\"'*) echo 'sess thaw' >> \"$LOG\" ;;\n"
                "  esac\n"
                "  echo '{\"status\": \"ok\"}'\n"
                "done");
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-lease\", \"lease_seconds\": 1}");
  event = wait_event (f, "QUIESCE_EXPIRED");
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (event), "data"),
                              "operation"), ==, "op-lease");
  thawed = wait_event (f, "THAWED");
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (thawed), "data"),
                              "reason"), ==, "lease expired");
  wait_log (f, "db thaw");
  wait_log (f, "sess thaw");
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "expired");
  /* a late thaw from the orchestrator is harmless */
  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-lease\"}");
}

static void
test_renew (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) r = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *state = NULL;
  double expires = 0;

  write_logging_plugin (f, "db", "");
  start (f);
  error = execute_error (f, "renew", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_NOT_FOUND);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-renew\", \"lease_seconds\": 2}");
  r = ma_test_execute (f->client, "renew", "{\"operation\": \"op-renew\", \"lease_seconds\": 60}");
  g_assert_true (ma_json_get_double (json_node_get_object (r), "expires_in", &expires, NULL));
  g_assert_cmpfloat (expires, >, 50);
  /* past the original lease: still quiesced */
  g_usleep (3 * G_USEC_PER_SEC);
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "quiesced");
  assert_log (f, "db quiesce\n");
  t = ma_test_execute (f->client, "thaw", NULL);
  assert_log (f, "db quiesce\ndb thaw\n");
}

/* A session plugin that logs "NAME PHASE LEASE PID" for every request line and answers ok;
 * renew fails when $DIR/refuse-renew exists. */
static const char renew_session_body[] =
  "while read -r line; do\n"
  "  phase=$(printf '%s' \"$line\" | sed -n 's/.*\"phase\" *: *\"\\([a-z]*\\)\".*/\\1/p')\n"
  "  lease=$(printf '%s' \"$line\" | sed -n 's/.*\"lease_seconds\" *: *\\([0-9]*\\).*/\\1/p')\n"
  "  echo \"$MA_PLUGIN $phase $lease $$\" >> \"$LOG\"\n"
  "  case \"$phase\" in\n"
  "    quiesce) touch \"$DIR/held\"; echo '{\"status\": \"ok\", \"detail\": \"held\"}' ;;\n"
  "    thaw) rm -f \"$DIR/held\"; echo '{\"status\": \"ok\"}' ;;\n"
  "    renew) echo '{\"status\": \"ok\", \"detail\": \"extended\"}' ;;\n"
  "    *) echo '{\"status\": \"ok\"}' ;;\n"
  "  esac\n"
  "done\n"
  "rm -f \"$DIR/held\"";

static JsonObject *
result_of (JsonArray *results, const char *plugin)
{
  for (guint i = 0; results != NULL && i < json_array_get_length (results); i++)
    {
      JsonObject *r = json_array_get_object_element (results, i);
      const char *name = NULL;
      if (ma_json_get_string (r, "plugin", &name, NULL) && g_strcmp0 (name, plugin) == 0)
        return r;
    }
  g_error ("no result for plugin %s", plugin);
  return NULL;
}

static void
test_renew_reaches_plugins (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) list = NULL;
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) r = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(JsonNode) pt = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *log = NULL;
  g_autofree char *expected = NULL;
  g_auto(GStrv) lines = NULL;
  JsonObject *db, *plain, *timeouts = NULL;
  JsonArray *phases = NULL, *renewed = NULL;
  const char *pid = NULL, *status = NULL, *detail = NULL;
  double renew_timeout = 0;
  gint64 lease = 0;

  write_plugin (f, "db", "Order=10\nPhases=check;quiesce;thaw;validate;renew\nRenewTimeout=7",
                "echo \"$MA_PLUGIN $1 $MA_LEASE_SECONDS\" >> \"$LOG\"\n"
                "[ \"$1\" = renew ] && echo \"{\\\"detail\\\": \\\"held for $MA_LEASE_SECONDS s\\\"}\"\n"
                "exit 0");
  write_plugin (f, "sess", "Order=20\nProtocol=session\nPhases=quiesce;thaw;renew",
                renew_session_body);
  write_plugin (f, "plain", "Order=30", "echo \"$MA_PLUGIN $1 $MA_LEASE_SECONDS\" >> \"$LOG\"");
  start (f);

  /* renew is opt-in: only declared, with its own timeout key */
  list = ma_test_execute (f->client, "plugins", NULL);
  db = find_plugin (list, "db");
  g_assert_true (ma_json_get_array (db, "phases", &phases, NULL));
  g_assert_cmpuint (json_array_get_length (phases), ==, 5);
  g_assert_cmpstr (json_array_get_string_element (phases, 4), ==, "renew");
  g_assert_true (ma_json_get_object (db, "timeouts", &timeouts, NULL));
  g_assert_true (ma_json_get_double (timeouts, "renew", &renew_timeout, NULL));
  g_assert_cmpfloat (renew_timeout, ==, 7.0);
  plain = find_plugin (list, "plain");
  g_assert_true (ma_json_get_array (plain, "phases", &phases, NULL));
  g_assert_cmpuint (json_array_get_length (phases), ==, 4);
  for (guint i = 0; i < json_array_get_length (phases); i++)
    g_assert_cmpstr (json_array_get_string_element (phases, i), !=, "renew");

  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-rr\", \"lease_seconds\": 2}");
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  r = ma_test_execute (f->client, "renew", "{\"operation\": \"op-rr\", \"lease_seconds\": 45}");
  g_assert_cmpstr (string_of (r, "state"), ==, "quiesced");
  g_assert_true (ma_json_get_int (json_node_get_object (r), "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 45);
  g_assert_true (ma_json_get_array (json_node_get_object (r), "renew_results", &renewed, NULL));
  g_assert_nonnull (renewed);
  g_assert_cmpuint (json_array_get_length (renewed), ==, 2); /* not plain */
  g_assert_true (ma_json_get_string (result_of (renewed, "db"), "status", &status, NULL));
  g_assert_cmpstr (status, ==, "ok");
  g_assert_true (ma_json_get_string (result_of (renewed, "db"), "detail", &detail, NULL));
  g_assert_cmpstr (detail, ==, "held for 45 s");
  g_assert_true (ma_json_get_string (result_of (renewed, "sess"), "detail", &detail, NULL));
  g_assert_cmpstr (detail, ==, "extended");

  /* the renew ran with the new lease, in the session that holds the application */
  log = read_log (f);
  lines = g_strsplit (log, "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, 6); /* five lines and the empty tail */
  g_assert_cmpstr (lines[0], ==, "db quiesce 2");
  g_assert_true (g_str_has_prefix (lines[1], "sess quiesce 2 "));
  pid = lines[1] + strlen ("sess quiesce 2 ");
  g_assert_cmpstr (lines[2], ==, "plain quiesce 2");
  /* the two renews run at once: either order */
  expected = g_strdup_printf ("sess renew 45 %s", pid);
  g_assert_true ((g_strcmp0 (lines[3], "db renew 45") == 0 && g_strcmp0 (lines[4], expected) == 0)
                 || (g_strcmp0 (lines[4], "db renew 45") == 0
                     && g_strcmp0 (lines[3], expected) == 0));
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));

  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-rr\"}");
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  g_clear_pointer (&log, g_free);
  log = read_log (f);
  g_clear_pointer (&expected, g_free);
  expected = g_strdup_printf ("plain thaw 45\nsess thaw 45 %s\ndb thaw 45\n", pid);
  g_assert_true (g_str_has_suffix (log, expected));

  /* plugin-test runs renew between quiesce and thaw for a plugin that declares it */
  pt = ma_test_execute (f->client, "plugin-test", "{\"name\": \"db\", \"lease_seconds\": 9}");
  g_assert_true (ma_json_get_array (json_node_get_object (pt), "phases", &phases, NULL));
  g_assert_cmpuint (json_array_get_length (phases), ==, 5);
  g_assert_true (ma_json_get_string (json_array_get_object_element (phases, 2), "phase", &status,
                                     NULL));
  g_assert_cmpstr (status, ==, "renew");
  g_clear_pointer (&log, g_free);
  log = read_log (f);
  g_assert_true (g_str_has_suffix (log, "db check 9\ndb quiesce 9\ndb renew 9\ndb thaw 9\n"
                                        "db validate 9\n"));
}

static void
test_renew_failure_releases (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) failed = NULL;
  g_autoptr(JsonNode) thawed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) gone = NULL;
  g_autofree char *state = NULL;
  JsonNode *event_data;

  write_plugin (f, "first", "Order=10", "echo \"$MA_PLUGIN $1\" >> \"$LOG\"");
  write_plugin (f, "flaky", "Order=20\nPhases=quiesce;thaw;renew",
                "echo \"$MA_PLUGIN $1\" >> \"$LOG\"\n"
                "[ \"$1\" = renew ] || exit 0\n"
                "echo '{\"detail\": \"cannot extend the hold\"}'\nexit 1");
  write_plugin (f, "last", "Order=30", "echo \"$MA_PLUGIN $1\" >> \"$LOG\"");
  start (f);

  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-rf\", \"lease_seconds\": 60}");
  error = execute_error (f, "renew", "{\"operation\": \"op-rf\", \"lease_seconds\": 120}");
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (error->message, "renew of operation op-rf failed"));
  g_assert_nonnull (strstr (error->message, "plugin flaky, phase renew: cannot extend the hold"));
  g_assert_nonnull (strstr (error->message, "every plugin was released"));
  /* answered after the release: everything was thawed in reverse order */
  assert_log (f, "first quiesce\nflaky quiesce\nlast quiesce\nflaky renew\n"
                 "last thaw\nflaky thaw\nfirst thaw\n");
  failed = wait_event (f, "PLUGIN_FAILED");
  event_data = json_object_get_member (json_node_get_object (failed), "data");
  g_assert_cmpstr (string_of (event_data, "plugin"), ==, "flaky");
  g_assert_cmpstr (string_of (event_data, "phase"), ==, "renew");
  thawed = wait_event (f, "THAWED");
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (thawed), "data"),
                              "reason"), ==, "renew failed");
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");

  /* nothing is held any more: a second renew finds nothing, a late thaw is harmless */
  gone = execute_error (f, "renew", "{\"operation\": \"op-rf\"}");
  g_assert_error (gone, MA_ERROR, MA_ERROR_NOT_FOUND);
  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-rf\"}");
  assert_log (f, "first quiesce\nflaky quiesce\nlast quiesce\nflaky renew\n"
                 "last thaw\nflaky thaw\nfirst thaw\n");
}

/* A session that holds at quiesce and never answers renew. */
static const char silent_renew_body[] =
  "while read -r line; do\n"
  "  case \"$line\" in\n"
  "    *'\"quiesce\"'*) echo $$ > \"$DIR/session.pid\"; echo '{\"status\": \"ok\"}' ;;\n"
  "    *'\"renew\"'*) ;;\n"
  "    *) echo '{\"status\": \"ok\"}' ;;\n"
  "  esac\n"
  "done";

static void
test_renew_timeout_releases (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *pid_path = g_build_filename (f->daemon->dir, "session.pid", NULL);
  g_autofree char *pid_text = NULL;
  g_autofree char *state = NULL;
  gint64 started;

  write_plugin (f, "db", "Order=10", "echo \"$MA_PLUGIN $1\" >> \"$LOG\"");
  write_plugin (f, "stuck", "Order=20\nProtocol=session\nPhases=quiesce;thaw;renew\n"
                "RenewTimeout=1", silent_renew_body);
  start (f);

  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-rt\", \"lease_seconds\": 60}");
  g_assert_true (g_file_get_contents (pid_path, &pid_text, NULL, NULL));
  started = g_get_monotonic_time ();
  error = execute_error (f, "renew", "{\"operation\": \"op-rt\", \"lease_seconds\": 60}");
  g_assert_error (error, MA_ERROR, MA_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (error->message, "plugin stuck, phase renew: timed out after 1.0 s"));
  g_assert_nonnull (strstr (error->message, "every plugin was released"));
  /* bounded by RenewTimeout (and the kill grace), not by the lease */
  g_assert_cmpint (g_get_monotonic_time () - started, <, 30 * G_USEC_PER_SEC);
  assert_log (f, "db quiesce\ndb thaw\n");
  wait_pid_gone ((pid_t) g_ascii_strtoll (pid_text, NULL, 10));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");
}

static gpointer
renew_in_thread (gpointer data)
{
  MaClient *client = data;

  return ma_test_execute (client, "renew", "{\"operation\": \"op-busy\", \"lease_seconds\": 50}");
}

/* While the plugins renew the operation says so, another renew is refused, and the renew
 * answers only once its plugins are done. */
static void
test_renew_in_progress (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) list = NULL;
  g_autoptr(JsonNode) renewed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) busy = NULL;
  g_autoptr(MaClient) other = NULL;
  g_autofree char *go = g_build_filename (f->daemon->dir, "go", NULL);
  JsonObject *op = NULL;
  GThread *thread;
  gint64 lease = 0;

  write_plugin (f, "slow", "Phases=quiesce;thaw;renew\nRenewTimeout=60",
                "echo \"$MA_PLUGIN $1\" >> \"$LOG\"\n"
                "[ \"$1\" = renew ] || exit 0\n"
                "i=0; while [ ! -e \"$DIR/go\" ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done");
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-busy\", \"lease_seconds\": 30}");
  other = ma_test_daemon_connect (f->daemon);
  thread = g_thread_new ("renew", renew_in_thread, other);
  wait_log (f, "slow renew");

  list = ma_test_execute (f->client, "plugins", NULL);
  g_assert_true (ma_json_get_object (json_node_get_object (list), "operation", &op, NULL));
  g_assert_nonnull (op);
  g_assert_true (ma_json_get_int (op, "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 30); /* not extended before the plugins are */
  {
    const char *state = NULL;
    g_assert_true (ma_json_get_string (op, "state", &state, NULL));
    g_assert_cmpstr (state, ==, "renewing");
  }
  busy = execute_error (f, "renew", "{\"operation\": \"op-busy\", \"lease_seconds\": 40}");
  g_assert_error (busy, MA_ERROR, MA_ERROR_BUSY);
  g_assert_nonnull (strstr (busy->message, "renewing"));

  g_assert_true (g_file_set_contents (go, "", 0, NULL));
  renewed = g_thread_join (thread);
  g_assert_true (ma_json_get_int (json_node_get_object (renewed), "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 50);
  g_assert_cmpstr (string_of (renewed, "state"), ==, "quiesced");
  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-busy\"}");
  assert_log (f, "slow quiesce\nslow renew\nslow thaw\n");
}

/* A oneshot plugin that logs "NAME PHASE LEASE"; its renew holds on while $DIR/block exists
 * and fails while $DIR/refuse exists. */
static const char blocking_renew_body[] =
  "echo \"$MA_PLUGIN $1 $MA_LEASE_SECONDS\" >> \"$LOG\"\n"
  "[ \"$1\" = renew ] || exit 0\n"
  "i=0; while [ -e \"$DIR/block\" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done\n"
  "[ ! -e \"$DIR/refuse\" ] || { echo '{\"detail\": \"cannot extend the hold\"}'; exit 1; }";

static void
create_file (Fixture *f, const char *name)
{
  g_autofree char *path = g_build_filename (f->daemon->dir, name, NULL);

  g_assert_true (g_file_set_contents (path, "", 0, NULL));
}

static void
remove_file (Fixture *f, const char *name)
{
  g_autofree char *path = g_build_filename (f->daemon->dir, name, NULL);

  g_assert_cmpint (g_unlink (path), ==, 0);
}

static const char *
operation_state (Fixture *f, JsonNode **keep)
{
  JsonObject *op = NULL;
  const char *state = NULL;

  *keep = ma_test_execute (f->client, "plugins", NULL);
  g_assert_true (ma_json_get_object (json_node_get_object (*keep), "operation", &op, NULL));
  g_assert_nonnull (op);
  g_assert_true (ma_json_get_string (op, "state", &state, NULL));
  return state;
}

/* The old lease runs out while the plugins renew: nothing expires (the lease clock is
 * stopped), and the new lease counts from when the renew was accepted. */
static void
test_renew_lease_stopped (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) answer = NULL;
  g_autoptr(JsonNode) expired = NULL;
  g_autoptr(JsonNode) list = NULL;
  g_autoptr(MaClient) renewer = NULL;
  gint64 sent, old_end;
  double expires = -1;
  gint64 lease = 0;

  write_plugin (f, "slow", "Phases=quiesce;thaw;renew\nRenewTimeout=120", blocking_renew_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-ls\", \"lease_seconds\": 1}");
  old_end = g_get_monotonic_time () + G_USEC_PER_SEC;
  create_file (f, "block");
  renewer = ma_test_daemon_connect (f->daemon);
  sent = g_get_monotonic_time ();
  send_request (renewer, "renew", "{\"operation\": \"op-ls\", \"lease_seconds\": 4}", "r1");
  wait_log (f, "slow renew 4");
  /* two seconds past the old lease's end: no expiry while the plugin renews */
  while (g_get_monotonic_time () < old_end + 2 * G_USEC_PER_SEC)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) event = ma_client_next_event (f->client, 100, &error);
      g_assert_no_error (error);
      if (event != NULL)
        {
          g_assert_cmpstr (string_of (event, "event"), !=, "QUIESCE_EXPIRED");
          g_assert_cmpstr (string_of (event, "event"), !=, "THAWED");
        }
    }
  g_assert_cmpstr (operation_state (f, &list), ==, "renewing");
  assert_log (f, "slow quiesce 1\nslow renew 4\n");

  remove_file (f, "block");
  answer = read_answer (renewer, "r1");
  g_assert_true (ma_json_get_int (reply_return (answer), "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 4);
  g_assert_true (ma_json_get_double (reply_return (answer), "expires_in", &expires, NULL));
  /* counted from the acceptance, at least two seconds ago */
  g_assert_cmpfloat (expires, <=, 4.0 - (double) (old_end + 2 * G_USEC_PER_SEC - sent)
                                          / G_USEC_PER_SEC + 0.001);
  assert_answered_once (renewer, "r1");

  /* the new lease still runs out by itself, never before four seconds after the renew */
  expired = wait_event (f, "QUIESCE_EXPIRED");
  g_assert_cmpint (g_get_monotonic_time () - sent, >=, 4 * G_USEC_PER_SEC);
  wait_log (f, "slow thaw 4");
  assert_agent_log_clean (f);
}

/* A thaw that arrives while the plugins renew waits for the renew, which answers first
 * (renewed), then releases; each call is answered once. */
static void
test_renew_thaw_during_renew (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) renewed = NULL;
  g_autoptr(JsonNode) thawed = NULL;
  g_autoptr(JsonNode) list = NULL;
  g_autoptr(JsonNode) event = NULL;
  g_autoptr(MaClient) renewer = NULL;
  g_autoptr(MaClient) thawer = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *log = NULL;
  g_autofree char *state = NULL;
  const char *reason = NULL;
  gint64 lease = 0;

  write_plugin (f, "slow", "Order=10\nPhases=quiesce;thaw;renew\nRenewTimeout=120",
                blocking_renew_body);
  write_plugin (f, "sess", "Order=20\nProtocol=session\nPhases=quiesce;thaw;renew",
                renew_session_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-td\", \"lease_seconds\": 30}");
  create_file (f, "block");
  renewer = ma_test_daemon_connect (f->daemon);
  thawer = ma_test_daemon_connect (f->daemon);
  send_request (renewer, "renew", "{\"operation\": \"op-td\", \"lease_seconds\": 45}", "r1");
  wait_log (f, "slow renew 45");
  send_request (thawer, "thaw", "{\"operation\": \"op-td\"}", "t1");
  wait_agent_log (f, "thaw of operation op-td waits for its renew to end");
  /* queued: nothing released yet */
  g_assert_cmpstr (operation_state (f, &list), ==, "renewing");
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  log = read_log (f);
  g_assert_null (strstr (log, "thaw"));

  remove_file (f, "block");
  renewed = read_answer (renewer, "r1");
  g_assert_true (ma_json_get_int (reply_return (renewed), "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 45);
  thawed = read_answer (thawer, "t1");
  g_assert_true (ma_json_get_string (reply_return (thawed), "reason", &reason, NULL));
  g_assert_cmpstr (reason, ==, "thaw");
  assert_answered_once (renewer, "r1");
  assert_answered_once (thawer, "t1");
  /* the renew ran to its end before anything was thawed, in reverse order */
  g_clear_pointer (&log, g_free);
  log = read_log (f);
  g_assert_true (g_str_has_suffix (log, "slow thaw 45\n"));
  g_assert_nonnull (strstr (log, "sess thaw 45"));
  g_assert_cmpint (strstr (log, "sess thaw") - log, >, strstr (log, "slow renew") - log);
  g_assert_cmpint (strstr (log, "sess thaw") - log, >, strstr (log, "sess renew") - log);
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  event = wait_event (f, "THAWED");
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (event), "data"),
                              "reason"), ==, "thaw");
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "thawed");
  assert_agent_log_clean (f);
}

/* A session that, once its stdin closes and it gets SIGTERM, still writes an "ok" answer
 * before exiting: the answer to a phase whose deadline has passed. PHASE is the phase it
 * stalls in. */
#define LATE_SESSION_BODY(PHASE) \
  "while read -r line; do\n" \
  "  case \"$line\" in\n" \
  "    *'\"" PHASE "\"'*)\n" \
  "      echo \"$MA_PLUGIN " PHASE "\" >> \"$LOG\"; touch \"$DIR/held\"; echo $$ > \"$DIR/session.pid\"\n" \
  "      trap 'echo \"{\\\"status\\\": \\\"ok\\\"}\"; rm -f \"$DIR/held\"; exit 0' TERM\n" \
  "      while :; do sleep 0.05; done ;;\n" \
  "    *'\"quiesce\"'*) touch \"$DIR/held\"; echo \"$MA_PLUGIN quiesce\" >> \"$LOG\"; echo '{\"status\": \"ok\"}' ;;\n" \
  "    *'\"thaw\"'*) rm -f \"$DIR/held\"; echo \"$MA_PLUGIN thaw\" >> \"$LOG\"; echo '{\"status\": \"ok\"}' ;;\n" \
  "    *) echo '{\"status\": \"ok\"}' ;;\n" \
  "  esac\n" \
  "done\n" \
  "rm -f \"$DIR/held\""

/* After a renew failed: THAWED with reason "renew failed", the lifecycle failed, no warning or
 * critical in the agent's log. */
static void
assert_released_by_failed_renew (Fixture *f)
{
  g_autoptr(JsonNode) event = wait_event (f, "THAWED");
  g_autofree char *state = NULL;

  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (event), "data"),
                              "reason"), ==, "renew failed");
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");
  assert_agent_log_clean (f);
}

/* A renew that times out while a thaw waits for it: the session's late "ok" (written after
 * its deadline, once its stdin was closed and it was told to stop) is no renewal; the renew
 * answers Timeout, everything is released, and the waiting thaw is answered once. */
static void
test_renew_timeout_thaw_queued (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) renewed = NULL;
  g_autoptr(JsonNode) thawed = NULL;
  g_autoptr(MaClient) renewer = NULL;
  g_autoptr(MaClient) thawer = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *pid_path = g_build_filename (f->daemon->dir, "session.pid", NULL);
  g_autofree char *pid_text = NULL;
  const char *desc = NULL, *reason = NULL;

  write_plugin (f, "db", "Order=10", "echo \"$MA_PLUGIN $1\" >> \"$LOG\"");
  write_plugin (f, "late", "Order=20\nProtocol=session\nPhases=quiesce;thaw;renew\n"
                "RenewTimeout=8", LATE_SESSION_BODY ("renew"));
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-tq\", \"lease_seconds\": 60}");
  renewer = ma_test_daemon_connect (f->daemon);
  thawer = ma_test_daemon_connect (f->daemon);
  send_request (renewer, "renew", "{\"operation\": \"op-tq\", \"lease_seconds\": 60}", "r1");
  wait_log (f, "late renew");
  send_request (thawer, "thaw", "{\"operation\": \"op-tq\"}", "t1");
  /* queued before the renew's deadline (eight seconds): the renew has not answered yet */
  wait_agent_log (f, "thaw of operation op-tq waits for its renew to end");

  renewed = read_answer (renewer, "r1");
  g_assert_cmpstr (reply_error_class (renewed, &desc), ==, "Timeout");
  g_assert_nonnull (strstr (desc, "plugin late, phase renew: timed out after 8.0 s"));
  g_assert_nonnull (strstr (desc, "every plugin was released"));
  thawed = read_answer (thawer, "t1");
  g_assert_true (ma_json_get_string (reply_return (thawed), "reason", &reason, NULL));
  g_assert_cmpstr (reason, ==, "renew failed");
  assert_answered_once (renewer, "r1");
  assert_answered_once (thawer, "t1");
  assert_log (f, "db quiesce\nlate quiesce\nlate renew\ndb thaw\n");
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_get_contents (pid_path, &pid_text, NULL, NULL));
  wait_pid_gone ((pid_t) g_ascii_strtoll (pid_text, NULL, 10));
  assert_released_by_failed_renew (f);
}

/* The same late answer to a quiesce: a timed-out quiesce stays a failure and is rolled back. */
static void
test_quiesce_late_answer (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *state = NULL;

  write_plugin (f, "db", "Order=10", "echo \"$MA_PLUGIN $1\" >> \"$LOG\"");
  write_plugin (f, "late", "Order=20\nProtocol=session\nQuiesceTimeout=1",
                LATE_SESSION_BODY ("quiesce"));
  start (f);
  error = execute_error (f, "quiesce", "{\"operation\": \"op-lq\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (error->message, "plugin late, phase quiesce: timed out after 1.0 s"));
  assert_log (f, "db quiesce\nlate quiesce\ndb thaw\n");
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");
  assert_agent_log_clean (f);
}

/* SIGTERM while the plugins renew: the agent lets the renew end, then releases every plugin
 * before it exits; the journal is gone and a restarted agent has nothing to replay. */
static void
test_renew_sigterm (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) renewed = NULL;
  g_autoptr(MaClient) renewer = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *log = NULL;
  g_autofree char *after_restart = NULL;
  g_autofree char *state = NULL;

  write_plugin (f, "slow", "Order=10\nPhases=quiesce;thaw;renew\nRenewTimeout=120",
                blocking_renew_body);
  write_plugin (f, "sess", "Order=20\nProtocol=session\nPhases=quiesce;thaw;renew",
                renew_session_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-st\", \"lease_seconds\": 60}");
  g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));
  create_file (f, "block");
  renewer = ma_test_daemon_connect (f->daemon);
  send_request (renewer, "renew", "{\"operation\": \"op-st\", \"lease_seconds\": 45}", "r1");
  wait_log (f, "slow renew 45");
  ma_test_daemon_kill (f->daemon, SIGTERM);
  wait_agent_log (f, "shutting down");
  /* it waits for the renew: nothing released, the agent still there */
  g_assert_true (pid_alive (f->daemon->pid));
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  log = read_log (f);
  g_assert_null (strstr (log, "thaw"));

  remove_file (f, "block");
  renewed = read_answer (renewer, "r1");
  g_assert_nonnull (renewed);
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  /* released before it exited, in reverse order, not by the EOF safety net afterwards */
  g_clear_pointer (&log, g_free);
  log = read_log (f);
  g_assert_true (g_str_has_suffix (log, "slow thaw 45\n"));
  g_assert_nonnull (strstr (log, "sess thaw 45"));
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
  assert_agent_log_clean (f);

  /* nothing left for the next run to replay */
  start (f);
  state = lifecycle_state (f);
  g_assert_cmpstr (state, !=, "quiesced");
  after_restart = read_log (f);
  g_assert_cmpstr (after_restart, ==, log);
}

/* A session plugin that dies instead of answering renew: the renew fails, naming it, and
 * the others are released. */
static void
test_renew_session_dies (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(GError) error = NULL;

  write_plugin (f, "db", "Order=10", "echo \"$MA_PLUGIN $1\" >> \"$LOG\"");
  write_plugin (f, "sess", "Order=20\nProtocol=session\nPhases=quiesce;thaw;renew",
                "while read -r line; do\n"
                "  case \"$line\" in\n"
                "    *'\"renew\"'*) echo \"$MA_PLUGIN renew\" >> \"$LOG\"; exit 3 ;;\n"
                "    *'\"quiesce\"'*) echo \"$MA_PLUGIN quiesce\" >> \"$LOG\" ;;\n"
                "    *'\"thaw\"'*) echo \"$MA_PLUGIN thaw\" >> \"$LOG\" ;;\n"
                "  esac\n"
                "  echo '{\"status\": \"ok\"}'\n"
                "done");
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-sd\", \"lease_seconds\": 60}");
  error = execute_error (f, "renew", "{\"operation\": \"op-sd\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (error->message,
                            "plugin sess, phase renew: exited with status 3 before answering"));
  assert_log (f, "db quiesce\nsess quiesce\nsess renew\ndb thaw\n");
  assert_released_by_failed_renew (f);
}

/* Renew again and again with the same operation id, and quiesce by that id while renewing. */
static void
test_renew_repeated (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) r1 = NULL;
  g_autoptr(JsonNode) r2 = NULL;
  g_autoptr(JsonNode) again = NULL;
  g_autoptr(JsonNode) r3 = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) busy_quiesce = NULL;
  g_autoptr(GError) busy_renew = NULL;
  g_autoptr(GError) other = NULL;
  g_autoptr(GError) gone = NULL;
  g_autoptr(GError) over = NULL;
  g_autoptr(MaClient) renewer = NULL;
  gboolean already = FALSE;
  gint64 lease = 0;

  write_plugin (f, "slow", "Phases=quiesce;thaw;renew\nRenewTimeout=120", blocking_renew_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-rep\", \"lease_seconds\": 30}");
  r1 = ma_test_execute (f->client, "renew", "{\"operation\": \"op-rep\", \"lease_seconds\": 31}");
  r2 = ma_test_execute (f->client, "renew", "{\"operation\": \"op-rep\", \"lease_seconds\": 32}");
  g_assert_true (ma_json_get_int (json_node_get_object (r2), "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 32);
  assert_log (f, "slow quiesce 30\nslow renew 31\nslow renew 32\n");

  create_file (f, "block");
  renewer = ma_test_daemon_connect (f->daemon);
  send_request (renewer, "renew", "{\"operation\": \"op-rep\", \"lease_seconds\": 33}", "r3");
  wait_log (f, "slow renew 33");
  /* quiesce by the same id while renewing: the operation as it is, nothing run */
  again = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-rep\", \"lease_seconds\": 99}");
  g_assert_true (ma_json_get_bool (json_node_get_object (again), "already", &already, NULL));
  g_assert_true (already);
  g_assert_cmpstr (string_of (again, "state"), ==, "renewing");
  g_assert_true (ma_json_get_int (json_node_get_object (again), "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 32);
  busy_quiesce = execute_error (f, "quiesce", "{\"operation\": \"op-new\"}");
  g_assert_error (busy_quiesce, MA_ERROR, MA_ERROR_BUSY);
  busy_renew = execute_error (f, "renew", "{\"operation\": \"op-rep\", \"lease_seconds\": 34}");
  g_assert_error (busy_renew, MA_ERROR, MA_ERROR_BUSY);
  other = execute_error (f, "renew", "{\"operation\": \"op-new\"}");
  g_assert_error (other, MA_ERROR, MA_ERROR_NOT_FOUND);
  remove_file (f, "block");
  r3 = read_answer (renewer, "r3");
  g_assert_true (ma_json_get_int (reply_return (r3), "lease_seconds", &lease, NULL));
  g_assert_cmpint (lease, ==, 33);
  assert_answered_once (renewer, "r3");
  assert_log (f, "slow quiesce 30\nslow renew 31\nslow renew 32\nslow renew 33\n");

  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-rep\"}");
  gone = execute_error (f, "renew", "{\"operation\": \"op-rep\"}");
  g_assert_error (gone, MA_ERROR, MA_ERROR_NOT_FOUND);
  over = execute_error (f, "quiesce", "{\"operation\": \"op-rep\"}");
  g_assert_error (over, MA_ERROR, MA_ERROR_BUSY);
  assert_log (f, "slow quiesce 30\nslow renew 31\nslow renew 32\nslow renew 33\nslow thaw 33\n");
  assert_agent_log_clean (f);
}

/* The freeze guard's clock (its last-renewal) moves for a renew the plugins accepted, not
 * for a refused one (unknown operation, bad lease, Busy while renewing) nor a failed one. */
static void
test_renew_guard_clock (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) ok = NULL;
  g_autoptr(GError) unknown = NULL;
  g_autoptr(GError) bad = NULL;
  g_autoptr(GError) busy = NULL;
  g_autoptr(GError) failed = NULL;
  g_autoptr(MaClient) renewer = NULL;
  g_autofree char *config = NULL;
  gint64 quiesced_at, renewed_at;

  /* a guard that can never see a freeze here: only its clock matters */
  config = g_strdup_printf ("[plugins]\ndirs=%s\n[freeze-guard]\nqga-state-dir=%s\n"
                            "poll-seconds=0\n", f->plugins, f->daemon->dir);
  g_assert_true (g_file_set_contents (f->daemon->config, config, -1, NULL));
  write_plugin (f, "slow", "Phases=quiesce;thaw;renew\nRenewTimeout=120", blocking_renew_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-gc\", \"lease_seconds\": 60}");
  quiesced_at = guard_last_renewal (f);
  /* last-renewal has whole seconds: let the clock pass into the next one */
  while (g_get_real_time () / G_USEC_PER_SEC <= quiesced_at)
    g_usleep (20 * 1000);

  unknown = execute_error (f, "renew", "{\"operation\": \"op-other\"}");
  g_assert_error (unknown, MA_ERROR, MA_ERROR_NOT_FOUND);
  bad = execute_error (f, "renew", "{\"operation\": \"op-gc\", \"lease_seconds\": 0}");
  g_assert_error (bad, MA_ERROR, MA_ERROR_GENERIC); /* GenericError on the wire */
  create_file (f, "block");
  renewer = ma_test_daemon_connect (f->daemon);
  send_request (renewer, "renew", "{\"operation\": \"op-gc\", \"lease_seconds\": 50}", "r1");
  wait_log (f, "slow renew 50");
  busy = execute_error (f, "renew", "{\"operation\": \"op-gc\"}");
  g_assert_error (busy, MA_ERROR, MA_ERROR_BUSY);
  g_assert_cmpint (guard_last_renewal (f), ==, quiesced_at);

  remove_file (f, "block");
  ok = read_answer (renewer, "r1");
  g_assert_null (reply_error_class (ok, NULL));
  renewed_at = guard_last_renewal (f);
  g_assert_cmpint (renewed_at, >, quiesced_at);

  /* a renew the plugin refuses releases the operation and leaves the clock alone */
  while (g_get_real_time () / G_USEC_PER_SEC <= renewed_at)
    g_usleep (20 * 1000);
  create_file (f, "refuse");
  failed = execute_error (f, "renew", "{\"operation\": \"op-gc\"}");
  g_assert_error (failed, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_cmpint (guard_last_renewal (f), ==, renewed_at);
  assert_agent_log_clean (f);
}

/* A thaw that arrives while the plugins quiesce: the quiesce finishes, is released, and
 * both calls are answered once — the quiesce like the thaw, with no claim of "quiesced". */
static void
test_thaw_during_quiesce (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) quiesced = NULL;
  g_autoptr(JsonNode) thawed = NULL;
  g_autoptr(MaClient) quiescer = NULL;
  g_autoptr(MaClient) thawer = NULL;
  g_autofree char *state = NULL;
  const char *reason = NULL;
  JsonObject *ret;

  write_plugin (f, "slow", "",
                "echo \"$MA_PLUGIN $1\" >> \"$LOG\"\n"
                "[ \"$1\" = quiesce ] || exit 0\n"
                "i=0; while [ -e \"$DIR/block\" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done");
  start (f);
  create_file (f, "block");
  quiescer = ma_test_daemon_connect (f->daemon);
  thawer = ma_test_daemon_connect (f->daemon);
  send_request (quiescer, "quiesce", "{\"operation\": \"op-tdq\"}", "q1");
  wait_log (f, "slow quiesce");
  send_request (thawer, "thaw", "{\"operation\": \"op-tdq\"}", "t1");
  wait_agent_log (f, "thaw of operation op-tdq waits for its quiesce to end");
  remove_file (f, "block");

  quiesced = read_answer (quiescer, "q1");
  ret = reply_return (quiesced);
  g_assert_false (json_object_has_member (ret, "state"));
  g_assert_true (ma_json_get_string (ret, "reason", &reason, NULL));
  g_assert_cmpstr (reason, ==, "thaw");
  thawed = read_answer (thawer, "t1");
  g_assert_true (ma_json_get_string (reply_return (thawed), "reason", &reason, NULL));
  g_assert_cmpstr (reason, ==, "thaw");
  assert_answered_once (quiescer, "q1");
  assert_answered_once (thawer, "t1");
  assert_log (f, "slow quiesce\nslow thaw\n");
  /* never reported quiesced, so the lifecycle did not move */
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "idle");
  assert_agent_log_clean (f);
}

static void
test_idempotent (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q1 = NULL;
  g_autoptr(JsonNode) q2 = NULL;
  g_autoptr(JsonNode) t1 = NULL;
  g_autoptr(JsonNode) t2 = NULL;
  g_autoptr(GError) busy = NULL;
  g_autoptr(GError) over = NULL;
  gboolean already = FALSE;

  write_logging_plugin (f, "db", "");
  start (f);
  q1 = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-same\"}");
  q2 = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-same\"}");
  g_assert_true (ma_json_get_bool (json_node_get_object (q2), "already", &already, NULL));
  g_assert_true (already);
  busy = execute_error (f, "quiesce", "{\"operation\": \"op-other\"}");
  g_assert_error (busy, MA_ERROR, MA_ERROR_BUSY);
  assert_log (f, "db quiesce\n");
  t1 = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-same\"}");
  t2 = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-same\"}");
  already = FALSE;
  g_assert_true (ma_json_get_bool (json_node_get_object (t2), "already", &already, NULL));
  g_assert_true (already);
  over = execute_error (f, "quiesce", "{\"operation\": \"op-same\"}");
  g_assert_error (over, MA_ERROR, MA_ERROR_BUSY);
  assert_log (f, "db quiesce\ndb thaw\n");
}

/* The session keeps a "lock" (a file) while quiesced and drops it at stdin EOF only. */
static const char session_body[] =
  "while read -r line; do\n"
  "  case \"$line\" in\n"
  "    *'\"quiesce\"'*) touch \"$DIR/held\"; echo progress; echo '{\"status\": \"ok\", \"detail\": \"held\"}' ;;\n"
  "    *'\"thaw\"'*) rm -f \"$DIR/held\"; echo '{\"status\": \"ok\"}' ;;\n"
  "    *) echo '{\"status\": \"ok\"}' ;;\n"
  "  esac\n"
  "done\n"
  "rm -f \"$DIR/held\"";

static void
test_session_agent_killed (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);

  write_plugin (f, "sess", "Protocol=session", session_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-sess\"}");
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  ma_test_daemon_kill (f->daemon, SIGKILL);
  /* no agent left to thaw: the plugin's stdin reached EOF and it released */
  wait_file_gone (held);
}

static void
test_session_thaw (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(JsonNode) c = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  gboolean ready = FALSE;

  write_plugin (f, "sess", "Protocol=session", session_body);
  start (f);
  c = ma_test_execute (f->client, "check", NULL);
  g_assert_true (ma_json_get_bool (json_node_get_object (c), "ready", &ready, NULL));
  g_assert_true (ready);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-sess\"}");
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  t = ma_test_execute (f->client, "thaw", NULL);
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
}

static void
test_journal_replay (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) event = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *state = NULL;
  gboolean replayed = FALSE;

  write_logging_plugin (f, "first", "Order=10");
  write_logging_plugin (f, "second", "Order=20");
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-crash\"}");
  g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));
  ma_test_daemon_kill (f->daemon, SIGKILL);
  assert_log (f, "first quiesce\nsecond quiesce\n");

  start (f);
  wait_log (f, "first thaw");
  assert_log (f, "first quiesce\nsecond quiesce\nsecond thaw\nfirst thaw\n");
  /* the replay runs as the agent starts: its THAWED may precede this client's connection */
  event = wait_buffered_event (f, "THAWED");
  g_assert_true (ma_json_get_bool (json_node_get_object (json_object_get_member (
                                     json_node_get_object (event), "data")),
                                   "replayed", &replayed, NULL));
  g_assert_true (replayed);
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, !=, "quiesced");
}

static void
test_sigterm_releases (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);

  write_logging_plugin (f, "db", "");
  write_plugin (f, "sess", "Protocol=session", session_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-term\"}");
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  /* released before the agent exited, not by the EOF safety net afterwards */
  assert_log (f, "db quiesce\ndb thaw\n");
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
}

static void
test_insecure_refused (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) plugins = NULL;
  g_autoptr(JsonNode) q = NULL;
  g_autofree char *writable = g_build_filename (f->plugins, "writable.plugin", NULL);
  g_autofree char *foreign = g_build_filename (f->plugins, "foreign.sh", NULL);
  JsonObject *p;

  write_logging_plugin (f, "good", "");
  write_logging_plugin (f, "writable", "");
  g_assert_cmpint (chmod (writable, 0666), ==, 0);
  write_logging_plugin (f, "foreign", "");
  if (geteuid () == 0)
    g_assert_cmpint (chown (foreign, 65534, 65534), ==, 0);
  else
    g_assert_cmpint (chmod (foreign, 0775), ==, 0);
  write_logging_plugin (f, "masked", "Enabled=false");
  write_logging_plugin (f, "cyc1", "After=cyc2");
  write_logging_plugin (f, "cyc2", "After=cyc1");
  start (f);

  plugins = ma_test_execute (f->client, "plugins", NULL);
  p = find_plugin (plugins, "writable");
  g_assert_cmpstr (json_object_get_string_member (p, "state"), ==, "refused");
  g_assert_nonnull (strstr (json_object_get_string_member (p, "reason"), "writable by everyone"));
  p = find_plugin (plugins, "foreign");
  g_assert_cmpstr (json_object_get_string_member (p, "state"), ==, "refused");
  g_assert_nonnull (strstr (json_object_get_string_member (p, "reason"), "Exec refused"));
  p = find_plugin (plugins, "masked");
  g_assert_cmpstr (json_object_get_string_member (p, "state"), ==, "masked");
  p = find_plugin (plugins, "cyc1");
  g_assert_cmpstr (json_object_get_string_member (p, "state"), ==, "refused");
  g_assert_nonnull (strstr (json_object_get_string_member (p, "reason"), "ordering cycle"));
  g_assert_cmpstr (json_object_get_string_member (find_plugin (plugins, "good"), "state"), ==,
                   "ready");

  q = ma_test_execute (f->client, "quiesce", NULL);
  g_assert_true (ma_client_execute (f->client, "thaw", NULL, NULL) != NULL);
  assert_log (f, "good quiesce\ngood thaw\n");
}

static gint
compare_strings (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const char *const *) a, *(const char *const *) b);
}

static void
test_environment (Fixture *f, gconstpointer data)
{
  g_autofree char *env_path = g_build_filename (f->daemon->dir, "plugin.env", NULL);
  g_autofree char *dump_path = g_build_filename (f->daemon->dir, "env.dump", NULL);
  g_autofree char *extra = g_strdup_printf ("EnvironmentFile=%s", env_path);
  g_autofree char *dump = NULL;
  g_autoptr(JsonNode) c = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *joined = NULL;
  g_autofree char *plugin_state = g_build_filename (f->daemon->state_dir, "plugins", "envdump",
                                                    NULL);

  g_assert_true (g_file_set_contents (env_path, "# database\nDB_SOCKET=\"/run/db.sock\"\n", -1,
                                      NULL));
  g_assert_cmpint (chmod (env_path, 0600), ==, 0);
  write_plugin (f, "envdump", extra, "env > \"$DIR/env.dump\"");
  g_setenv ("MA_TEST_SECRET", "leak", TRUE); /* the agent inherits it; plugins must not */
  start (f);
  g_unsetenv ("MA_TEST_SECRET");
  c = ma_test_execute (f->client, "check", NULL);
  g_assert_true (g_file_get_contents (dump_path, &dump, NULL, NULL));
  lines = g_strsplit (dump, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      /* the shell adds PWD, SHLVL and _ itself */
      if (*lines[i] == '\0' || g_str_has_prefix (lines[i], "PWD=")
          || g_str_has_prefix (lines[i], "SHLVL=") || g_str_has_prefix (lines[i], "_="))
        continue;
      g_ptr_array_add (names, g_strdup (lines[i]));
    }
  g_ptr_array_sort (names, compare_strings);
  {
    g_autofree char *expected = NULL;
    g_ptr_array_add (names, NULL);
    joined = g_strjoinv ("\n", (char **) names->pdata);
    expected = g_strdup_printf ("DB_SOCKET=/run/db.sock\nLANG=C.UTF-8\nMA_DEADLINE_MS=30000\n"
                                "MA_LEASE_SECONDS=60\nMA_OPERATION=check\nMA_PHASE=check\n"
                                "MA_PLUGIN=envdump\nMA_STATE_DIR=%s\n"
                                "PATH=/usr/sbin:/usr/bin:/sbin:/bin", plugin_state);
    g_assert_cmpstr (joined, ==, expected);
  }
  g_assert_true (g_file_test (plugin_state, G_FILE_TEST_IS_DIR));
}

/* What a plugin process starts with (plugin-spawn): its own process group, cwd /, no blocked
 * and no ignored signal (the agent blocks SIGIO and ignores SIGPIPE; glibc's posix_spawn
 * leaves its two reserved signals, 32 and 33, ignored, as for every program it starts), and
 * none of the agent's descriptors besides its three pipes. */
static void
test_process_setup (Fixture *f, gconstpointer data)
{
  g_autofree char *dump_path = g_build_filename (f->daemon->dir, "setup.dump", NULL);
  g_autofree char *fds_path = g_build_filename (f->daemon->dir, "setup.fds", NULL);
  g_autofree char *dump = NULL;
  g_autofree char *fds = NULL;
  g_autoptr(JsonNode) c = NULL;
  g_auto(GStrv) lines = NULL;
  g_auto(GStrv) fd_lines = NULL;
  guint64 ignored;

  /* the fds first, by one command (writing its file itself) while the shell holds nothing of
   * its own but the script; the masks read by the shell itself (a builtin loop): while it
   * waits for a child, dash blocks every signal, and a grep of its status would see that */
  write_plugin (f, "setup", NULL,
                "find /proc/$$/fd -mindepth 1 -fprintf \"$DIR/setup.fds\" '%f %l\\n'\n"
                "{ echo \"pid $$\"; echo \"pgid $(cut -d' ' -f5 /proc/$$/stat)\"; echo \"cwd $(pwd)\";\n"
                "  while IFS= read -r l; do case \"$l\" in SigBlk:*|SigIgn:*) echo \"$l\";; esac;\n"
                "  done < /proc/$$/status; } > \"$DIR/setup.dump\"");
  start (f);
  c = ma_test_execute (f->client, "check", NULL);
  g_assert_true (g_file_get_contents (dump_path, &dump, NULL, NULL));
  g_assert_true (g_file_get_contents (fds_path, &fds, NULL, NULL));
  g_test_message ("%s%s", dump, fds);
  lines = g_strsplit (dump, "\n", -1);
  g_assert_true (g_str_has_prefix (lines[0], "pid "));
  g_assert_cmpstr (lines[1] + strlen ("pgid "), ==, lines[0] + strlen ("pid "));
  g_assert_cmpstr (lines[2], ==, "cwd /");
  g_assert_cmpstr (lines[3], ==, "SigBlk:\t0000000000000000");
  g_assert_true (g_str_has_prefix (lines[4], "SigIgn:\t"));
  ignored = g_ascii_strtoull (lines[4] + strlen ("SigIgn:\t"), NULL, 16);
  g_assert_cmphex (ignored & ~G_GUINT64_CONSTANT (0x180000000), ==, 0);
  fd_lines = g_strsplit (fds, "\n", -1);
  for (guint i = 0; fd_lines[i] != NULL && *fd_lines[i] != '\0'; i++)
    {
      g_auto(GStrv) words = g_strsplit (fd_lines[i], " ", 2);
      guint64 fd = g_ascii_strtoull (words[0], NULL, 10);
      if (fd <= 2)
        g_assert_true (g_str_has_prefix (words[1], "pipe:"));
      else if (!g_str_has_suffix (words[1], "setup.sh") && !g_str_has_prefix (words[1], "/proc/"))
        g_error ("the plugin inherited fd %s -> %s", words[0], words[1]);
    }
}

static void
test_output_bounded (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autofree char *agent_log = NULL;
  gsize len = 0;

  /* 4 MiB on stdout and on stderr, in lines of 1 KiB, then a JSON detail */
  write_plugin (f, "chatty", "",
                "line=$(head -c 1023 /dev/zero | tr '\\0' x)\n"
                "i=0; while [ $i -lt 4096 ]; do echo \"$line\"; echo \"$line\" >&2; i=$((i+1)); done\n"
                "echo '{\"detail\": \"said a lot\"}'");
  start (f);
  q = ma_test_execute (f->client, "quiesce", NULL);
  {
    JsonArray *results = NULL;
    JsonObject *r;
    g_assert_true (ma_json_get_array (json_node_get_object (q), "results", &results, NULL));
    r = json_array_get_object_element (results, 0);
    g_assert_cmpstr (json_object_get_string_member (r, "detail"), ==, "said a lot");
  }
  t = ma_test_execute (f->client, "thaw", NULL);
  g_assert_true (g_file_get_contents (f->daemon->log_path, &agent_log, &len, NULL));
  /* 2 phases × 2 streams × 64 KiB plus log decoration, far below the 16 MiB written */
  g_assert_cmpuint (len, <, 1024 * 1024);
  g_assert_nonnull (strstr (agent_log, "bytes dropped"));
}

static void
test_plugin_test (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  JsonArray *phases = NULL;
  gboolean ok = FALSE;

  write_logging_plugin (f, "db", "");
  start (f);
  ret = ma_test_execute (f->client, "plugin-test", "{\"name\": \"db\"}");
  g_assert_true (ma_json_get_bool (json_node_get_object (ret), "ok", &ok, NULL));
  g_assert_true (ok);
  g_assert_true (ma_json_get_array (json_node_get_object (ret), "phases", &phases, NULL));
  g_assert_cmpuint (json_array_get_length (phases), ==, 4);
  assert_log (f, "db check\ndb quiesce\ndb thaw\ndb validate\n");
  error = execute_error (f, "plugin-test", "{\"name\": \"nope\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_NOT_FOUND);
}

/* plugin-test does not renew a hold its quiesce failed to take: the renew would ask the
 * application to extend something that does not exist (an operation never renews it either) */
static void
test_plugin_test_failed_quiesce (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ret = NULL;
  JsonArray *phases = NULL;
  gboolean ok = TRUE;
  const char *phase = NULL;

  write_plugin (f, "db", "Phases=check;quiesce;thaw;renew;validate",
                "echo \"$MA_PLUGIN $1\" >> \"$LOG\"\n"
                "[ \"$1\" = quiesce ] || exit 0\n"
                "echo '{\"detail\": \"cannot pause\"}'\nexit 1");
  start (f);
  ret = ma_test_execute (f->client, "plugin-test", "{\"name\": \"db\"}");
  g_assert_true (ma_json_get_bool (json_node_get_object (ret), "ok", &ok, NULL));
  g_assert_false (ok);
  g_assert_true (ma_json_get_array (json_node_get_object (ret), "phases", &phases, NULL));
  g_assert_cmpuint (json_array_get_length (phases), ==, 4);
  for (guint i = 0; i < json_array_get_length (phases); i++)
    {
      g_assert_true (ma_json_get_string (json_array_get_object_element (phases, i), "phase",
                                         &phase, NULL));
      g_assert_cmpstr (phase, !=, "renew");
    }
  /* thaw still runs after the failed quiesce, as documented */
  assert_log (f, "db check\ndb quiesce\ndb thaw\ndb validate\n");
}

/* prepare runs every plugin's check; a failing one makes the guest not ready. A quiesce
 * takes a fresh snapshot for validation after the move. */
/* Whether one of prepare's not-ready reasons mentions `what`. */
static gboolean
not_ready_names (JsonObject *prepared, const char *what)
{
  JsonArray *reasons = NULL;

  g_assert_true (ma_json_get_array (prepared, "not-ready", &reasons, NULL));
  g_assert_nonnull (reasons);
  for (guint i = 0; i < json_array_get_length (reasons); i++)
    {
      JsonNode *reason = json_array_get_element (reasons, i);
      if (JSON_NODE_HOLDS_VALUE (reason) && json_node_get_value_type (reason) == G_TYPE_STRING
          && strstr (json_node_get_string (reason), what) != NULL)
        return TRUE;
    }
  return FALSE;
}

static void
test_prepare_runs_checks (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ok = NULL;
  g_autoptr(JsonNode) bad = NULL;
  g_autoptr(JsonNode) before = NULL;
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  JsonObject *obj;
  gint64 taken_before;
  g_autofree char *longtx = NULL;

  write_logging_plugin (f, "db", "");
  start (f);
  ok = ma_test_execute (f->client, "prepare", "{\"operation\": \"op-prep\"}");
  obj = json_node_get_object (ok);
  g_assert_true (json_object_has_member (obj, "plugins"));
  g_assert_true (json_object_get_boolean_member (json_object_get_object_member (obj, "plugins"),
                                                 "ready"));
  wait_log (f, "db check");
  /* the verdict prepare reads from the blockers report's text is the one the answer carries:
   * "blocked" exactly when a not-ready reason names the blockers */
  g_assert_cmpint (g_strcmp0 (json_object_get_string_member (
                                json_object_get_object_member (obj, "blockers"), "verdict"),
                              "blocked") == 0,
                   ==, not_ready_names (obj, "blockers: "));

  /* a check that fails: prepare answers (it is a report), not ready, naming the plugins */
  write_plugin (f, "longtx", "", "[ \"$1\" = check ] && { echo '{\"detail\": \"a long transaction\"}'; exit 1; }; exit 0");
  bad = ma_test_execute (f->client, "prepare", "{\"operation\": \"op-prep-2\"}");
  obj = json_node_get_object (bad);
  g_assert_false (json_object_get_boolean_member (obj, "ready"));
  /* other reasons may stand beside it (the blockers verdict sees the whole machine) */
  g_assert_true (not_ready_names (obj, "plugins"));
  g_assert_nonnull (json_object_get_string_member (json_object_get_object_member (obj, "blockers"),
                                                   "verdict"));
  g_assert_false (not_ready_names (obj, "blockers could not be collected"));

  /* quiesce refreshes the snapshot */
  before = ma_test_execute (f->client, "snapshot", NULL);
  taken_before = json_object_get_int_member (json_node_get_object (before), "taken-at");
  g_usleep (1100 * 1000); /* taken-at has a resolution of one second */
  longtx = g_strdup_printf ("%s/longtx.plugin", f->plugins);
  g_assert_cmpint (unlink (longtx), ==, 0);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-snap\", \"lease_seconds\": 60}");
  for (guint i = 0; i < 200; i++)
    {
      g_autoptr(JsonNode) now = ma_test_execute (f->client, "snapshot", NULL);
      if (json_object_get_int_member (json_node_get_object (now), "taken-at") > taken_before)
        break;
      g_assert_cmpuint (i, <, 199);
      g_usleep (50 * 1000);
    }
  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-snap\"}");
}

/* ---- a failed thaw of a oneshot plugin is retried ---- */

/* The agent's configuration: the plugin directory and `[quiesce] thaw-retry-seconds`. */
static void
set_thaw_retry (Fixture *f, const char *delays)
{
  g_autofree char *config = g_strdup_printf ("[plugins]\ndirs=%s\n[quiesce]\nthaw-retry-seconds=%s\n",
                                             f->plugins, delays);

  g_assert_true (g_file_set_contents (f->daemon->config, config, -1, NULL));
}

/* Fails its thaw (exit 4, as a resume command refused by a restarting service) until
 * $DIR/thaw-ok exists; logs every phase, and "overlap" when two thaws run at once. */
static const char *const flaky_thaw_body =
  "[ \"$1\" = thaw ] || { echo \"$MA_PLUGIN $1\" >> \"$LOG\"; exit 0; }\n"
  "mkdir \"$DIR/thaw-running\" 2>/dev/null || echo overlap >> \"$LOG\"\n"
  "echo \"$MA_PLUGIN thaw\" >> \"$LOG\"\n"
  "[ -e \"$DIR/thaw-ok\" ] && { rmdir \"$DIR/thaw-running\"; exit 0; }\n"
  "[ -e \"$DIR/thaw-ok-next\" ] && mv \"$DIR/thaw-ok-next\" \"$DIR/thaw-ok\"\n"
  "rmdir \"$DIR/thaw-running\"\n"
  "echo 'resume refused: service restarting' >&2\n"
  "exit 4";

/* A session whose thaw fails while it still holds: the agent closes its stdin (and kills its
 * group at the thaw deadline), so it releases at EOF by contract. */
static const char failing_thaw_session_body[] =
  "while read -r line; do\n"
  "  case \"$line\" in\n"
  "    *'\"quiesce\"'*) touch \"$DIR/held\"; echo \"$MA_PLUGIN quiesce\" >> \"$LOG\";"
  " echo '{\"status\": \"ok\"}' ;;\n"
  "    *'\"thaw\"'*) echo \"$MA_PLUGIN thaw\" >> \"$LOG\";"
  " echo '{\"status\": \"fail\", \"detail\": \"resume refused\"}' ;;\n"
  "  esac\n"
  "done\n"
  "rm -f \"$DIR/held\"";

static JsonObject *
event_data (JsonNode *event)
{
  JsonObject *data = NULL;

  g_assert_true (ma_json_get_object (json_node_get_object (event), "data", &data, NULL));
  g_assert_nonnull (data);
  return data;
}

static gint64
int_of (JsonObject *obj, const char *member)
{
  gint64 value = -1;

  /* the accessor leaves an absent member's default: absent is a failure here */
  g_assert_true (json_object_has_member (obj, member));
  g_assert_true (ma_json_get_int (obj, member, &value, NULL));
  return value;
}

static double
double_of (JsonObject *obj, const char *member)
{
  double value = -1;

  g_assert_true (json_object_has_member (obj, member));
  g_assert_true (ma_json_get_double (obj, member, &value, NULL));
  return value;
}

/* The next THAWED event that reports retry number `retry` (earlier THAWED events are
 * skipped: a retry number never comes twice). */
static JsonNode *
wait_thaw_retry (Fixture *f, gint64 retry)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) ma_test_timeout_ms (WAIT_MS) * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(JsonNode) event = wait_event (f, "THAWED");
      JsonObject *data = event_data (event);
      if (json_object_has_member (data, "retry") && int_of (data, "retry") == retry)
        return g_steal_pointer (&event);
    }
  g_error ("no THAWED event with retry %" G_GINT64_FORMAT " within %d ms", retry, WAIT_MS);
  return NULL;
}

/* The first thaw fails: the thaw call says so and that the agent retries; the first
 * THAWED names the failure and when the retry comes (the built-in backoff: 5 s); the agent
 * then thaws again by itself, says so in a THAWED with "retry": 1 and no failures, and
 * forgets the journal. */
static void
test_thaw_retry_automatic (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) failed = NULL;
  g_autoptr(JsonNode) retried = NULL;
  g_autoptr(JsonNode) again = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *journal_text = NULL;
  g_autofree char *state = NULL;
  JsonObject *d;
  const char *failures = NULL;

  write_plugin (f, "flaky", "", flaky_thaw_body);
  create_file (f, "thaw-ok-next"); /* the second thaw succeeds */
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-retry\"}");
  error = execute_error (f, "thaw", "{\"operation\": \"op-retry\"}");
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (error->message, "flaky: exited with status 4: resume refused"));
  g_assert_nonnull (strstr (error->message, "the agent retries the thaw of flaky"));

  failed = wait_event (f, "THAWED");
  d = event_data (failed);
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (failed), "data"),
                              "reason"), ==, "thaw");
  g_assert_true (ma_json_get_string (d, "failures", &failures, NULL));
  g_assert_nonnull (strstr (failures, "flaky: exited with status 4"));
  g_assert_false (json_object_has_member (d, "retry"));
  g_assert_cmpfloat (double_of (d, "next_retry_seconds"), >, 4.0);
  g_assert_cmpfloat (double_of (d, "next_retry_seconds"), <=, 5.0);

  retried = wait_thaw_retry (f, 1);
  d = event_data (retried);
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (retried), "data"),
                              "reason"), ==, "retry");
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (retried), "data"),
                              "operation"), ==, "op-retry");
  g_assert_false (json_object_has_member (d, "failures"));
  g_assert_false (json_object_has_member (d, "next_retry_seconds"));
  assert_log (f, "flaky quiesce\nflaky thaw\nflaky thaw\n");
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "thawed");

  /* nothing pending any more: a new operation quiesces and thaws normally */
  again = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-after\"}");
  g_assert_true (g_file_get_contents (journal, &journal_text, NULL, NULL));
  g_assert_null (strstr (journal_text, "thaw-failed"));
  t = ma_test_execute (f->client, "thaw", NULL);
  assert_log (f, "flaky quiesce\nflaky thaw\nflaky thaw\nflaky quiesce\nflaky thaw\n");
  assert_agent_log_clean (f);
}

/* An explicit thaw (no operation argument) retries at once, long before the backoff. A
 * session plugin whose thaw failed in the same release is not retried: its session ended
 * (stdin EOF) and it released by contract. */
static void
test_thaw_retry_explicit (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) failed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(JsonNode) retried = NULL;
  g_autoptr(JsonNode) plugins = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *journal_text = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_auto(GStrv) retried_names = NULL;
  JsonObject *ret, *pending = NULL;

  set_thaw_retry (f, "600");
  write_plugin (f, "flaky", "Order=10", flaky_thaw_body);
  write_plugin (f, "sess", "Order=20\nProtocol=session", failing_thaw_session_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-explicit\"}");
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (error->message, "sess: resume refused"));
  g_assert_nonnull (strstr (error->message, "the agent retries the thaw of flaky ("));
  /* the session ended with the failed thaw and released */
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  failed = wait_event (f, "THAWED");
  g_assert_cmpfloat (double_of (event_data (failed), "next_retry_seconds"), >, 500.0);
  /* kept for a restarted agent, marked as a thaw that failed */
  g_assert_true (g_file_get_contents (journal, &journal_text, NULL, NULL));
  g_assert_nonnull (strstr (journal_text, "\"flaky\""));
  g_assert_nonnull (strstr (journal_text, "\"thaw-failed\":true"));
  g_assert_null (strstr (journal_text, "sess"));
  plugins = ma_test_execute (f->client, "plugins", NULL);
  g_assert_cmpstr (json_object_get_string_member (find_plugin (plugins, "flaky"), "state"), ==,
                   "thaw-failed");
  g_assert_true (ma_json_get_object (json_node_get_object (plugins), "thaw_retry", &pending,
                                     NULL));
  g_assert_nonnull (pending);
  g_assert_cmpint (int_of (pending, "retries"), ==, 0);
  g_assert_true (ma_json_get_strv (pending, "plugins", &retried_names, NULL));
  g_assert_nonnull (retried_names);
  g_assert_cmpuint (g_strv_length (retried_names), ==, 1);
  g_assert_cmpstr (retried_names[0], ==, "flaky");
  /* migctl plugins says it too */
  {
    g_autofree char *connect = g_strdup_printf ("unix:%s", f->daemon->socket);
    g_autofree char *out = NULL;
    const char *argv[] = { g_getenv ("MIGCTL"), "--connect", connect, "--no-color", "plugins",
                           NULL };
    int status = -1;

    g_assert_nonnull (argv[0]);
    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                                 NULL, &out, NULL, &status, NULL));
    g_assert_cmpint (status, ==, 0);
    g_assert_nonnull (strstr (out, "thaw of operation op-explicit failed for flaky: 0 retries "
                                   "so far, next attempt in "));
    g_assert_nonnull (strstr (out, "thaw-failed"));
  }

  create_file (f, "thaw-ok");
  t = ma_test_execute (f->client, "thaw", NULL);
  ret = json_node_get_object (t);
  g_assert_cmpstr (string_of (t, "operation"), ==, "op-explicit");
  g_assert_cmpstr (string_of (t, "reason"), ==, "thaw");
  g_assert_cmpint (int_of (ret, "retry"), ==, 1);
  g_assert_false (json_object_has_member (ret, "already"));
  assert_log (f, "flaky quiesce\nsess quiesce\nsess thaw\nflaky thaw\nflaky thaw\n");
  retried = wait_thaw_retry (f, 1);
  g_assert_false (json_object_has_member (event_data (retried), "failures"));
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
  g_clear_pointer (&plugins, json_node_unref);
  plugins = ma_test_execute (f->client, "plugins", NULL);
  g_assert_cmpstr (json_object_get_string_member (find_plugin (plugins, "flaky"), "state"), ==,
                   "ready");
  g_assert_true (json_object_has_member (json_node_get_object (plugins), "thaw_retry"));
  g_assert_true (JSON_NODE_HOLDS_NULL (json_object_get_member (json_node_get_object (plugins),
                                                               "thaw_retry")));
}

/* While a thaw is being retried the application may still be quiesced: quiesce (any
 * operation) and plugin-test answer Busy naming the plugin; an explicit thaw that fails
 * again says so and keeps it pending; one with the operation's id that succeeds ends it. */
static void
test_thaw_retry_busy (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) failed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(JsonNode) q2 = NULL;
  g_autoptr(JsonNode) t2 = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) busy = NULL;
  g_autoptr(GError) test_busy = NULL;
  g_autoptr(GError) again = NULL;
  JsonObject *d;

  set_thaw_retry (f, "600");
  write_logging_plugin (f, "db", "Order=10");
  write_plugin (f, "flaky", "Order=20", flaky_thaw_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-busy\"}");
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  failed = wait_event (f, "THAWED");
  d = event_data (failed);
  g_assert_cmpfloat (double_of (d, "next_retry_seconds"), >, 500.0);

  busy = execute_error (f, "quiesce", "{\"operation\": \"op-next\"}");
  g_assert_error (busy, MA_ERROR, MA_ERROR_BUSY);
  g_assert_nonnull (strstr (busy->message, "the thaw of plugin flaky (operation op-busy) failed"));
  g_assert_nonnull (strstr (busy->message, "may still be quiesced"));
  test_busy = execute_error (f, "plugin-test", "{\"name\": \"db\"}");
  g_assert_error (test_busy, MA_ERROR, MA_ERROR_BUSY);

  /* an explicit retry that fails again: PluginFailed, still pending, still Busy */
  again = execute_error (f, "thaw", "{\"operation\": \"op-busy\"}");
  g_assert_error (again, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (again->message, "thaw retry"));
  g_assert_nonnull (strstr (again->message, "flaky: exited with status 4"));
  g_clear_error (&busy);
  busy = execute_error (f, "quiesce", "{\"operation\": \"op-next\"}");
  g_assert_error (busy, MA_ERROR, MA_ERROR_BUSY);

  create_file (f, "thaw-ok");
  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-busy\"}");
  g_assert_cmpstr (string_of (t, "operation"), ==, "op-busy");
  q2 = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-next\"}");
  g_assert_cmpstr (string_of (q2, "state"), ==, "quiesced");
  t2 = ma_test_execute (f->client, "thaw", NULL);
  /* only the plugin whose thaw failed is thawed again; never two thaws at once */
  {
    g_autofree char *log = read_log (f);
    g_assert_null (strstr (log, "overlap"));
    g_assert_true (g_str_has_prefix (log, "db quiesce\nflaky quiesce\nflaky thaw\ndb thaw\n"));
  }
}

/* SIGTERM with a retry pending: the agent exits without waiting for the backoff (600 s
 * here; the fixture gives up long before) and leaves the plugin in the journal; the next
 * start replays its thaw. */
static void
test_thaw_retry_sigterm (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) failed = NULL;
  g_autoptr(JsonNode) replayed_event = NULL;
  g_autoptr(JsonNode) q2 = NULL;
  g_autoptr(JsonNode) t2 = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *journal_text = NULL;
  gboolean replayed = FALSE;
  JsonObject *d;

  set_thaw_retry (f, "600");
  write_plugin (f, "flaky", "", flaky_thaw_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-term-retry\"}");
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  failed = wait_event (f, "THAWED");
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  assert_log (f, "flaky quiesce\nflaky thaw\n");
  g_assert_true (g_file_get_contents (journal, &journal_text, NULL, NULL));
  g_assert_nonnull (strstr (journal_text, "\"op-term-retry\""));
  g_assert_nonnull (strstr (journal_text, "\"flaky\""));
  assert_agent_log_clean (f);

  create_file (f, "thaw-ok");
  start (f);
  wait_file_gone (journal);
  assert_log (f, "flaky quiesce\nflaky thaw\nflaky thaw\n");
  replayed_event = wait_buffered_event (f, "THAWED");
  d = event_data (replayed_event);
  g_assert_true (ma_json_get_bool (d, "replayed", &replayed, NULL));
  g_assert_true (replayed);
  g_assert_false (json_object_has_member (d, "failures"));
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (replayed_event),
                                                      "data"), "operation"), ==, "op-term-retry");
  q2 = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-after-restart\"}");
  t2 = ma_test_execute (f->client, "thaw", NULL);
}

/* A thaw that never succeeds: retried on the backoff's last delay for ever, one attempt at
 * a time, numbered, never faster than that delay; it stays pending (journal, Busy) and a
 * SIGTERM still stops the agent at once, keeping it for the next start. */
static void
test_thaw_retry_bounded (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) plugins = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) busy = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  gint64 last_at = 0;
  const gint64 retries = 6;
  JsonObject *pending = NULL;

  set_thaw_retry (f, "0.05;0.1");
  write_plugin (f, "flaky", "", flaky_thaw_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-never\"}");
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  for (gint64 n = 1; n <= retries; n++)
    {
      g_autoptr(JsonNode) event = wait_thaw_retry (f, n);
      JsonObject *d = event_data (event);
      JsonObject *ts = NULL;
      gint64 at;

      g_assert_true (json_object_has_member (d, "failures"));
      /* after retry 1 the last delay (0.1 s) repeats */
      g_assert_cmpfloat (double_of (d, "next_retry_seconds"), <=, 0.1);
      g_assert_cmpfloat (double_of (d, "next_retry_seconds"), >, 0.0);
      g_assert_true (ma_json_get_object (json_node_get_object (event), "timestamp", &ts, NULL));
      at = int_of (ts, "seconds") * G_USEC_PER_SEC + int_of (ts, "microseconds");
      /* each attempt starts a full delay after the previous one ended and emitted its
       * event (a millisecond of slack for the timer's rounding) */
      if (n >= 2)
        g_assert_cmpint (at - last_at, >=, 99 * 1000);
      last_at = at;
    }
  busy = execute_error (f, "quiesce", "{\"operation\": \"op-other\"}");
  g_assert_error (busy, MA_ERROR, MA_ERROR_BUSY);
  plugins = ma_test_execute (f->client, "plugins", NULL);
  g_assert_true (ma_json_get_object (json_node_get_object (plugins), "thaw_retry", &pending,
                                     NULL));
  g_assert_nonnull (pending);
  g_assert_cmpint (int_of (pending, "retries"), >=, retries);
  g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));

  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  {
    g_autofree char *log = read_log (f);
    g_auto(GStrv) lines = g_strsplit (log, "\n", -1);
    guint thaws = 0;
    g_assert_null (strstr (log, "overlap"));
    for (guint i = 0; lines[i] != NULL; i++)
      thaws += g_strcmp0 (lines[i], "flaky thaw") == 0;
    /* the failed thaw and one per retry: every attempt was reported */
    g_assert_cmpuint (thaws, >=, 1 + retries);
  }
  g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));
  assert_agent_log_clean (f);
}

/* A malformed backoff is refused with a warning naming the key, and the built-in one (5 s
 * first) is kept: never a retry storm from a 0, never no retry at all. */
static void
test_thaw_retry_config_refused (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) failed = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *d;

  set_thaw_retry (f, "0;abc");
  write_plugin (f, "flaky", "", flaky_thaw_body);
  start (f);
  wait_agent_log (f, "[quiesce] thaw-retry-seconds: '0' is not a number of seconds");
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-conf\"}");
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  failed = wait_event (f, "THAWED");
  d = event_data (failed);
  g_assert_cmpfloat (double_of (d, "next_retry_seconds"), >, 4.0);
  g_assert_cmpfloat (double_of (d, "next_retry_seconds"), <=, 5.0);
}

/* Holds its application ($DIR/held) from quiesce until a thaw that succeeds, which needs
 * $DIR/thaw-ok; logs every phase. */
static const char *const holder_body =
  "case \"$1\" in\n"
  "  quiesce) touch \"$DIR/held\"; echo \"$MA_PLUGIN quiesce\" >> \"$LOG\" ;;\n"
  "  thaw) echo \"$MA_PLUGIN thaw\" >> \"$LOG\";"
  " [ -e \"$DIR/thaw-ok\" ] || { echo 'resume refused' >&2; exit 4; }; rm -f \"$DIR/held\" ;;\n"
  "esac\n"
  "exit 0";

/* The names in `plugins`.thaw_retry.plugins joined by ",", or NULL when none is pending. */
static char *
pending_retry (Fixture *f)
{
  g_autoptr(JsonNode) plugins = ma_test_execute (f->client, "plugins", NULL);
  JsonNode *retry = json_object_get_member (json_node_get_object (plugins), "thaw_retry");
  g_auto(GStrv) names = NULL;

  g_assert_nonnull (retry);
  if (JSON_NODE_HOLDS_NULL (retry))
    return NULL;
  g_assert_true (ma_json_get_strv (json_node_get_object (retry), "plugins", &names, NULL));
  g_assert_nonnull (names);
  return g_strjoinv (",", names);
}

/* The next PLUGIN_FAILED whose detail starts with prefix (earlier ones are skipped). */
static JsonNode *
wait_plugin_failed (Fixture *f, const char *prefix)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) ma_test_timeout_ms (WAIT_MS) * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(JsonNode) event = wait_event (f, "PLUGIN_FAILED");
      const char *detail = NULL;
      g_assert_true (ma_json_get_string (event_data (event), "detail", &detail, NULL));
      if (detail != NULL && g_str_has_prefix (detail, prefix))
        return g_steal_pointer (&event);
    }
  g_error ("no PLUGIN_FAILED with a detail starting '%s' within %d ms", prefix, WAIT_MS);
  return NULL;
}

/* A thaw retry that cannot run the plugin's thaw (refused, masked, no thaw phase, now a
 * session) keeps it pending: PluginFailed "cannot run now", the journal kept, the lifecycle
 * failed, the application still held; once the manifest is right again the thaw runs and
 * only then is it over. */
static void
test_thaw_retry_unusable_stays_pending (Fixture *f, gconstpointer data)
{
  static const struct
  {
    const char *manifest;
    const char *says;
  } broken[] = {
    { "Timout=5", "holder: cannot run now: refused (" },      /* an admin's typo */
    { "Enabled=false", "holder: cannot run now: masked (" },
    { "Phases=check;quiesce", "holder: cannot run now: its manifest no longer declares a "
                              "thaw phase" },
    { "Protocol=session", "holder: cannot run now: it is now a session plugin" },
  };
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *state = NULL;
  g_autofree char *pending = NULL;

  set_thaw_retry (f, "600");
  write_plugin (f, "holder", "", holder_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-keep\"}");
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  create_file (f, "thaw-ok"); /* the application would resume now: only the manifest is wrong */

  for (guint i = 0; i < G_N_ELEMENTS (broken); i++)
    {
      g_autoptr(GError) again = NULL;
      g_autoptr(JsonNode) event = NULL;
      g_autofree char *now = NULL;
      g_autofree char *still = NULL;
      const char *detail = NULL;

      g_test_message ("manifest with %s", broken[i].manifest);
      write_plugin (f, "holder", broken[i].manifest, holder_body);
      again = execute_error (f, "thaw", NULL);
      g_assert_error (again, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
      g_assert_nonnull (strstr (again->message, broken[i].says));
      g_assert_nonnull (strstr (again->message, "the agent retries it again"));
      event = wait_plugin_failed (f, "cannot run now: ");
      g_assert_true (ma_json_get_string (event_data (event), "detail", &detail, NULL));
      g_assert_nonnull (strstr (again->message, detail)); /* the event says what thaw said */
      g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));
      g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
      now = lifecycle_state (f);
      g_assert_cmpstr (now, ==, "failed");
      still = pending_retry (f);
      g_assert_cmpstr (still, ==, "holder");
    }
  /* the thaw never ran while the manifest was wrong */
  assert_log (f, "holder quiesce\nholder thaw\n");

  write_plugin (f, "holder", "", holder_body);
  t = ma_test_execute (f->client, "thaw", NULL);
  g_assert_cmpint (int_of (json_node_get_object (t), "retry"), ==,
                   (gint64) G_N_ELEMENTS (broken) + 1);
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "thawed");
  pending = pending_retry (f);
  g_assert_null (pending);
  assert_log (f, "holder quiesce\nholder thaw\nholder thaw\n");
}

/* A plugin whose manifest was deleted while its thaw was pending is given up on, said so:
 * PluginFailed "was removed … its thaw did not run", PLUGIN_FAILED "dropped: plugin removed",
 * THAWED with "dropped"; the lifecycle stays failed and the operation is remembered as
 * failed, never as thawed. Nothing is pending afterwards. */
static void
test_thaw_retry_plugin_removed (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) event = NULL;
  g_autoptr(JsonNode) thawed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) dropped = NULL;
  g_autoptr(GError) reuse = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *manifest = g_build_filename (f->plugins, "holder.plugin", NULL);
  g_autofree char *state = NULL;
  g_autofree char *pending = NULL;
  g_auto(GStrv) dropped_names = NULL;
  const char *detail = NULL;

  set_thaw_retry (f, "600");
  write_plugin (f, "holder", "", holder_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-gone\"}");
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_cmpint (g_unlink (manifest), ==, 0);

  dropped = execute_error (f, "thaw", NULL);
  g_assert_error (dropped, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (dropped->message, "plugin holder was removed"));
  g_assert_nonnull (strstr (dropped->message, "its thaw did not run"));
  event = wait_plugin_failed (f, "dropped: plugin removed");
  g_assert_true (ma_json_get_string (event_data (event), "detail", &detail, NULL));
  g_assert_nonnull (strstr (detail, "its thaw did not run"));
  thawed = wait_thaw_retry (f, 1);
  g_assert_true (ma_json_get_strv (event_data (thawed), "dropped", &dropped_names, NULL));
  g_assert_nonnull (dropped_names);
  g_assert_cmpstr (dropped_names[0], ==, "holder");
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");
  pending = pending_retry (f);
  g_assert_null (pending);
  /* the operation is remembered as failed: quiescing with its id repeats why */
  reuse = execute_error (f, "quiesce", "{\"operation\": \"op-gone\"}");
  g_assert_error (reuse, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (reuse->message, "was removed"));
  t = ma_test_execute (f->client, "thaw", NULL);
  g_assert_true (json_object_has_member (json_node_get_object (t), "already"));
  assert_log (f, "holder quiesce\nholder thaw\n");
}

/* While a retry is pending, a thaw naming an operation that is neither current nor recent
 * is NotFound naming the operation being retried: never "already", which would tell the
 * caller a thaw happened. */
static void
test_thaw_retry_wrong_operation (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) typo = NULL;
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *pending = NULL;

  set_thaw_retry (f, "600");
  write_plugin (f, "holder", "", holder_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-a\"}");
  error = execute_error (f, "thaw", NULL);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  typo = execute_error (f, "thaw", "{\"operation\": \"op-typo\"}");
  g_assert_error (typo, MA_ERROR, MA_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (typo->message, "operation op-typo is neither current nor recent"));
  g_assert_nonnull (strstr (typo->message, "the thaw of plugin holder (operation op-a) failed"));
  pending = pending_retry (f);
  g_assert_cmpstr (pending, ==, "holder");
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  assert_log (f, "holder quiesce\nholder thaw\n");

  create_file (f, "thaw-ok");
  t = ma_test_execute (f->client, "thaw", "{\"operation\": \"op-a\"}");
  g_assert_cmpint (int_of (json_node_get_object (t), "retry"), ==, 1);
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
}

/* A restart's replay whose thaw fails again: the lifecycle is failed with the reason (as for
 * a failed thaw while running), the operation is remembered as failed and being retried (a
 * quiesce reusing its id says so), and the retry's success makes it thawed. */
static void
test_thaw_retry_replay_fails (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) replayed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autoptr(GError) reuse = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *state = NULL;
  g_autofree char *after = NULL;
  g_autofree char *pending = NULL;
  const char *failures = NULL;

  set_thaw_retry (f, "600");
  write_plugin (f, "holder", "", holder_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-rp\"}");
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0); /* its thaw fails */
  g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));
  start (f);
  replayed = wait_buffered_event (f, "THAWED");
  g_assert_true (ma_json_get_string (event_data (replayed), "failures", &failures, NULL));
  g_assert_nonnull (failures);
  g_assert_nonnull (strstr (failures, "holder: exited with status 4"));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");
  pending = pending_retry (f);
  g_assert_cmpstr (pending, ==, "holder");
  reuse = execute_error (f, "quiesce", "{\"operation\": \"op-rp\"}");
  g_assert_error (reuse, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (reuse->message, "the agent retries the thaw of holder"));
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));

  create_file (f, "thaw-ok");
  t = ma_test_execute (f->client, "thaw", NULL);
  g_assert_cmpint (int_of (json_node_get_object (t), "retry"), ==, 1);
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
  after = lifecycle_state (f);
  g_assert_cmpstr (after, ==, "thawed");
}

/* A restart finds the journaled plugin present but refused (a typo in its manifest): its
 * thaw cannot run, so it stays pending (journal, lifecycle failed) instead of being counted
 * as thawed; once the manifest is fixed, thaw runs it. */
static void
test_thaw_retry_replay_unusable (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) replayed = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *held = g_build_filename (f->daemon->dir, "held", NULL);
  g_autofree char *state = NULL;
  g_autofree char *pending = NULL;
  const char *failures = NULL;

  set_thaw_retry (f, "600");
  write_plugin (f, "holder", "", holder_body);
  start (f);
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-rpu\"}");
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));
  write_plugin (f, "holder", "Timout=5", holder_body);
  create_file (f, "thaw-ok");
  start (f);
  replayed = wait_buffered_event (f, "THAWED");
  g_assert_true (ma_json_get_string (event_data (replayed), "failures", &failures, NULL));
  g_assert_nonnull (failures);
  g_assert_nonnull (strstr (failures, "holder: cannot run now: refused ("));
  g_assert_true (g_file_test (journal, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (held, G_FILE_TEST_EXISTS));
  state = lifecycle_state (f);
  g_assert_cmpstr (state, ==, "failed");
  pending = pending_retry (f);
  g_assert_cmpstr (pending, ==, "holder");

  write_plugin (f, "holder", "", holder_body);
  t = ma_test_execute (f->client, "thaw", NULL);
  g_assert_cmpint (int_of (json_node_get_object (t), "retry"), ==, 1);
  g_assert_false (g_file_test (held, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));
}

/* ---- SIGTERM while a thaw retry attempt runs ---- */

/* The ThawTimeout of slow_thaw_body's plugin: the bound on how long a stop may wait for it. */
#define SLOW_THAW_TIMEOUT_SECONDS 10

/* Fails its thaw (exit 4) until $DIR/thaw-ok exists; while $DIR/thaw-slow exists its thaw
 * first logs "NAME thaw-slow", takes 2 s (well under its ThawTimeout), then logs "NAME
 * thaw-slow-done": a retry attempt that is still running when SIGTERM comes. */
static const char *const slow_thaw_body =
  "[ \"$1\" = thaw ] || { echo \"$MA_PLUGIN $1\" >> \"$LOG\"; exit 0; }\n"
  "echo \"$MA_PLUGIN thaw\" >> \"$LOG\"\n"
  "if [ -e \"$DIR/thaw-slow\" ]; then\n"
  "  echo \"$MA_PLUGIN thaw-slow\" >> \"$LOG\"\n"
  "  sleep 2\n"
  "  echo \"$MA_PLUGIN thaw-slow-done\" >> \"$LOG\"\n"
  "fi\n"
  "[ -e \"$DIR/thaw-ok\" ] && exit 0\n"
  "echo 'resume refused: service restarting' >&2\n"
  "exit 4";

/* Wait until the plugin log, from byte `from` on, contains needle. */
static void
wait_log_from (Fixture *f, gsize from, const char *needle)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) ma_test_timeout_ms (WAIT_MS) * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *text = read_log (f);
      if (strlen (text) >= from && strstr (text + from, needle) != NULL)
        return;
      g_usleep (10 * 1000);
    }
  {
    g_autofree char *text = read_log (f);
    g_error ("plugin log never showed '%s' after byte %" G_GSIZE_FORMAT "; it holds:\n%s",
             needle, from, text);
  }
}

/* With the running agent: quiesce operation `id` (plugin "slow"), let its thaw fail, start
 * a retry attempt with a `thaw` on a second connection and make that attempt slow (its thaw
 * succeeds when `succeeds`), then SIGTERM the agent once the plugin log shows the attempt
 * running. The stop lets the attempt finish (its thaw runs to its end, not killed), takes
 * less than the plugin's ThawTimeout + 3 s, and exits 0. Returns the waiting thaw's reply,
 * read after the agent exited. */
static JsonNode *
sigterm_mid_attempt (Fixture *f, const char *id, gboolean succeeds)
{
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) failed = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(MaClient) waiter = NULL;
  g_autofree char *args = g_strdup_printf ("{\"operation\": \"%s\"}", id);
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  g_autofree char *agent_text = NULL;
  JsonNode *reply;
  gint64 started, stop_ms;

  q = ma_test_execute (f->client, "quiesce", args);
  error = execute_error (f, "thaw", args);
  g_assert_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED);
  g_assert_nonnull (strstr (error->message, "slow: exited with status 4"));
  /* skip a THAWED still queued on this connection from an earlier replay */
  do
    {
      g_clear_pointer (&failed, json_node_unref);
      failed = wait_event (f, "THAWED");
    }
  while (g_strcmp0 (string_of (json_object_get_member (json_node_get_object (failed), "data"),
                               "operation"), id) != 0);
  g_assert_cmpfloat (double_of (event_data (failed), "next_retry_seconds"), >, 500.0);

  create_file (f, "thaw-slow");
  if (succeeds)
    create_file (f, "thaw-ok");
  before = read_log (f);
  waiter = ma_test_daemon_connect (f->daemon);
  send_request (waiter, "thaw", args, "thaw-mid-attempt");
  wait_log_from (f, strlen (before), "slow thaw-slow\n");

  started = g_get_monotonic_time ();
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  stop_ms = (g_get_monotonic_time () - started) / 1000;
  g_test_message ("stop with a retry attempt running took %" G_GINT64_FORMAT " ms", stop_ms);
  g_assert_cmpint (stop_ms, <,
                   (gint64) ma_test_timeout_ms ((SLOW_THAW_TIMEOUT_SECONDS + 3) * 1000));
  /* the attempt ran to its end: the stop waited for it instead of killing it */
  after = read_log (f);
  g_assert_cmpstr (after + strlen (before), ==,
                   "slow thaw\nslow thaw-slow\nslow thaw-slow-done\n");
  /* answered before the agent exited, never dropped */
  reply = read_answer (waiter, "thaw-mid-attempt");
  assert_agent_log_clean (f);
  agent_text = agent_log (f);
  g_assert_null (strstr (agent_text, "exiting anyway"));
  remove_file (f, "thaw-slow");
  return reply;
}

/* SIGTERM while a retry attempt's thaw is running: the agent waits for that attempt (bounded
 * by the plugin's ThawTimeout) and exits 0. An attempt that fails keeps the plugin in the
 * journal ("thaw-failed": true), the waiting thaw says the agent is stopping and the next
 * start's replay thaws it; one that succeeds removes the journal, the waiting thaw succeeds
 * and the next start replays nothing. */
static void
test_thaw_retry_sigterm_mid_attempt (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) failed_reply = NULL;
  g_autoptr(JsonNode) ok_reply = NULL;
  g_autoptr(JsonNode) replayed = NULL;
  g_autoptr(JsonNode) events = NULL;
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) t = NULL;
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "quiesce.journal", NULL);
  g_autofree char *journal_text = NULL;
  g_autofree char *pending = NULL;
  g_autofree char *pending_after = NULL;
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  JsonArray *list = NULL;
  JsonObject *ret;
  const char *desc = NULL;
  gboolean was_replayed = FALSE;

  set_thaw_retry (f, "600");
  write_plugin (f, "slow", "ThawTimeout=" G_STRINGIFY (SLOW_THAW_TIMEOUT_SECONDS),
                slow_thaw_body);
  start (f);

  /* the attempt fails: kept for the next start, which thaws it */
  failed_reply = sigterm_mid_attempt (f, "op-mid-fail", FALSE);
  g_assert_cmpstr (reply_error_class (failed_reply, &desc), ==, "PluginFailed");
  g_assert_nonnull (strstr (desc, "thaw retry 1 of operation op-mid-fail failed for slow: "
                                  "exited with status 4"));
  g_assert_nonnull (strstr (desc, "the agent is stopping: the next start retries it"));
  g_assert_true (g_file_get_contents (journal, &journal_text, NULL, NULL));
  g_assert_nonnull (strstr (journal_text, "\"op-mid-fail\""));
  g_assert_nonnull (strstr (journal_text, "\"slow\""));
  g_assert_nonnull (strstr (journal_text, "\"thaw-failed\":true"));

  create_file (f, "thaw-ok");
  before = read_log (f);
  start (f);
  wait_file_gone (journal);
  wait_log_from (f, strlen (before), "slow thaw\n");
  replayed = wait_buffered_event (f, "THAWED");
  g_assert_true (ma_json_get_bool (event_data (replayed), "replayed", &was_replayed, NULL));
  g_assert_true (was_replayed);
  g_assert_false (json_object_has_member (event_data (replayed), "failures"));
  g_assert_cmpstr (string_of (json_object_get_member (json_node_get_object (replayed), "data"),
                              "operation"), ==, "op-mid-fail");
  pending = pending_retry (f);
  g_assert_null (pending);

  /* the attempt succeeds: the journal is gone and the next start replays nothing */
  remove_file (f, "thaw-ok");
  ok_reply = sigterm_mid_attempt (f, "op-mid-ok", TRUE);
  ret = reply_return (ok_reply);
  g_assert_cmpstr (json_object_get_string_member (ret, "operation"), ==, "op-mid-ok");
  g_assert_cmpint (int_of (ret, "retry"), ==, 1);
  g_assert_false (g_file_test (journal, G_FILE_TEST_EXISTS));

  g_clear_pointer (&before, g_free);
  before = read_log (f);
  start (f);
  pending_after = pending_retry (f);
  g_assert_null (pending_after);
  events = ma_test_execute (f->client, "events", "{\"after\": 0}");
  g_assert_true (ma_json_get_array (json_node_get_object (events), "events", &list, NULL));
  g_assert_nonnull (list);
  for (guint i = 0; i < json_array_get_length (list); i++)
    g_assert_cmpstr (string_of (json_array_get_element (list, i), "event"), !=, "THAWED");
  /* nothing pending: a new operation quiesces and thaws normally, and no thaw ran before it */
  q = ma_test_execute (f->client, "quiesce", "{\"operation\": \"op-mid-after\"}");
  t = ma_test_execute (f->client, "thaw", NULL);
  after = read_log (f);
  g_assert_cmpstr (after + strlen (before), ==, "slow quiesce\nslow thaw\n");
  assert_agent_log_clean (f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
#define ADD(path, func) \
  g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("/quiesce/order", test_order);
  ADD ("/quiesce/parallel", test_parallel);
  ADD ("/quiesce/rollback", test_rollback);
  ADD ("/quiesce/timeout-kills-group", test_timeout);
  ADD ("/quiesce/lease-expiry", test_lease_expiry);
  ADD ("/quiesce/renew", test_renew);
  ADD ("/quiesce/renew-reaches-plugins", test_renew_reaches_plugins);
  ADD ("/quiesce/renew-failure-releases", test_renew_failure_releases);
  ADD ("/quiesce/renew-timeout-releases", test_renew_timeout_releases);
  ADD ("/quiesce/renew-in-progress", test_renew_in_progress);
  ADD ("/quiesce/renew-lease-stopped", test_renew_lease_stopped);
  ADD ("/quiesce/renew-thaw-during-renew", test_renew_thaw_during_renew);
  ADD ("/quiesce/renew-timeout-thaw-queued", test_renew_timeout_thaw_queued);
  ADD ("/quiesce/quiesce-late-answer", test_quiesce_late_answer);
  ADD ("/quiesce/renew-sigterm", test_renew_sigterm);
  ADD ("/quiesce/renew-session-dies", test_renew_session_dies);
  ADD ("/quiesce/renew-repeated", test_renew_repeated);
  ADD ("/quiesce/renew-guard-clock", test_renew_guard_clock);
  ADD ("/quiesce/thaw-during-quiesce", test_thaw_during_quiesce);
  ADD ("/quiesce/idempotent", test_idempotent);
  ADD ("/quiesce/session-thaw", test_session_thaw);
  ADD ("/quiesce/session-agent-killed", test_session_agent_killed);
  ADD ("/quiesce/journal-replay", test_journal_replay);
  ADD ("/quiesce/sigterm-releases", test_sigterm_releases);
  ADD ("/quiesce/insecure-refused", test_insecure_refused);
  ADD ("/quiesce/environment", test_environment);
  ADD ("/quiesce/process-setup", test_process_setup);
  ADD ("/quiesce/output-bounded", test_output_bounded);
  ADD ("/quiesce/endless-output", test_endless_output);
  ADD ("/quiesce/plugin-test", test_plugin_test);
  ADD ("/quiesce/plugin-test-failed-quiesce", test_plugin_test_failed_quiesce);
  ADD ("/quiesce/prepare-runs-checks", test_prepare_runs_checks);
  ADD ("/quiesce/thaw-retry-automatic", test_thaw_retry_automatic);
  ADD ("/quiesce/thaw-retry-explicit", test_thaw_retry_explicit);
  ADD ("/quiesce/thaw-retry-busy", test_thaw_retry_busy);
  ADD ("/quiesce/thaw-retry-sigterm", test_thaw_retry_sigterm);
  ADD ("/quiesce/thaw-retry-bounded", test_thaw_retry_bounded);
  ADD ("/quiesce/thaw-retry-config-refused", test_thaw_retry_config_refused);
  ADD ("/quiesce/thaw-retry-unusable-stays-pending", test_thaw_retry_unusable_stays_pending);
  ADD ("/quiesce/thaw-retry-plugin-removed", test_thaw_retry_plugin_removed);
  ADD ("/quiesce/thaw-retry-wrong-operation", test_thaw_retry_wrong_operation);
  ADD ("/quiesce/thaw-retry-replay-fails", test_thaw_retry_replay_fails);
  ADD ("/quiesce/thaw-retry-replay-unusable", test_thaw_retry_replay_unusable);
  ADD ("/quiesce/thaw-retry-sigterm-mid-attempt", test_thaw_retry_sigterm_mid_attempt);
#undef ADD
  return g_test_run ();
}
