/* test-throttle.c — the real daemon throttling real child processes in real cgroup v2 groups
 * this test creates: freeze stops a busy child, unthrottle / lease expiry / a restart after
 * SIGKILL restore exactly, protected cgroups are refused, cpu.max where the cpu controller
 * exists, and dirty-rate ranks the busy writer first (method as the kernel allows). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "daemon-fixture.h"
#include "error.h"
#include "json.h"

#define CGROUP2_ROOT "/sys/fs/cgroup/unified"
#define WAIT_MS 10000
#define STILL_MS 300

typedef struct
{
  char *root;      /* the cgroup2 root the agent finds by itself */
  char *top_rel;   /* ma-throttle-PID */
  char *top;       /* absolute */
  char *batch;     /* top/batch */
  char *service;   /* top/service */
  volatile guint64 *counters; /* shared with the children: [0] batch, [1] service */
  GPid batch_pid;
  GPid service_pid;
  MaTestDaemon *daemon;
  MaClient *client;
} Fixture;

static const char *skip_reason = NULL;

/* ---- small file helpers ---- */

static char *
read_stripped (const char *dir, const char *file)
{
  g_autofree char *path = g_build_filename (dir, file, NULL);
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  return g_strstrip (text);
}

static gboolean
write_value (const char *dir, const char *file, const char *value)
{
  g_autofree char *path = g_build_filename (dir, file, NULL);
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  gboolean ok;

  if (fd < 0)
    return FALSE;
  ok = write (fd, value, strlen (value)) == (ssize_t) strlen (value);
  close (fd);
  return ok;
}

/* Wait until DIR/FILE contains `line` (a whole line), or fail the test. */
static void
wait_for_line (const char *dir, const char *file, const char *line)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *text = read_stripped (dir, file);
      g_auto(GStrv) lines = text != NULL ? g_strsplit (text, "\n", -1) : NULL;
      if (lines != NULL && g_strv_contains ((const char *const *) lines, line))
        return;
      g_usleep (10 * 1000);
    }
  g_error ("%s/%s never contained '%s'", dir, file, line);
}

static void
assert_file_is (const char *dir, const char *file, const char *expected)
{
  g_autofree char *value = read_stripped (dir, file);

  g_assert_cmpstr (value, ==, expected);
}

/* ---- children ---- */

static void
busy_loop (volatile guint64 *counter)
{
  for (;;)
    (*counter)++;
}

/* Dirties fresh pages all the time: every touch of a new mapping is a minor fault (seen by
 * the proxy) and a soft-dirty page (seen where the kernel tracks it). */
static void
writer_loop (volatile guint64 *counter)
{
  const gsize len = 16 << 20;

  for (;;)
    {
      char *p = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED)
        _exit (3);
      for (gsize off = 0; off < len; off += 4096)
        p[off] = (char) off;
      munmap (p, len);
      (*counter)++;
    }
}

static GPid
spawn_in_cgroup (const char *cgroup, void (*loop) (volatile guint64 *), volatile guint64 *counter)
{
  pid_t pid = fork ();
  g_autofree char *pidstr = NULL;

  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      /* never outlive the test, even when it aborts */
      prctl (PR_SET_PDEATHSIG, SIGKILL);
      if (getppid () == 1)
        _exit (0);
      /* wait to be moved into the cgroup before working */
      while (*counter == G_MAXUINT64)
        ;
      loop (counter);
      _exit (0);
    }
  pidstr = g_strdup_printf ("%d", pid);
  g_assert_true (write_value (cgroup, "cgroup.procs", pidstr));
  *counter = 0;
  return pid;
}

static void
wait_progress (volatile guint64 *counter)
{
  guint64 start = *counter;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (*counter == start)
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("the child made no progress in %d ms", WAIT_MS);
      g_usleep (1000);
    }
}

static void
assert_no_progress (volatile guint64 *counter)
{
  guint64 before = *counter;

  g_usleep (STILL_MS * 1000);
  g_assert_cmpuint (*counter, ==, before);
}

/* ---- fixture ---- */

static char *
make_config (Fixture *f, const char *extra)
{
  return g_strdup_printf ("[throttle]\n"
                          "protected=%s/service\n"
                          "[throttle:batch]\n"
                          "cgroups=%s/batch\n"
                          "policy=freeze\n"
                          "[throttle:svc]\n"
                          "cgroups=%s/service\n"
                          "policy=freeze\n"
                          "%s",
                          f->top_rel, f->top_rel, f->top_rel, extra != NULL ? extra : "");
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autofree char *config = NULL;

  if (skip_reason != NULL)
    return;
  f->root = g_strdup (CGROUP2_ROOT);
  f->top_rel = g_strdup_printf ("ma-throttle-%d", getpid ());
  f->top = g_build_filename (f->root, f->top_rel, NULL);
  f->batch = g_build_filename (f->top, "batch", NULL);
  f->service = g_build_filename (f->top, "service", NULL);
  g_assert_cmpint (g_mkdir (f->top, 0755), ==, 0);
  g_assert_cmpint (g_mkdir (f->batch, 0755), ==, 0);
  g_assert_cmpint (g_mkdir (f->service, 0755), ==, 0);

  f->counters = mmap (NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  g_assert_true (f->counters != MAP_FAILED);
  f->counters[0] = f->counters[1] = G_MAXUINT64;
  f->batch_pid = spawn_in_cgroup (f->batch, data != NULL ? writer_loop : busy_loop,
                                  &f->counters[0]);
  f->service_pid = spawn_in_cgroup (f->service, busy_loop, &f->counters[1]);
  wait_progress (&f->counters[0]);

  config = make_config (f, NULL);
  f->daemon = ma_test_daemon_new (config);
  ma_test_daemon_start (f->daemon, NULL);
  f->client = ma_test_daemon_connect (f->daemon);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  if (skip_reason != NULL)
    return;
  g_clear_pointer (&f->client, ma_client_free);
  /* a clean stop: under the valgrindagent setup the agent's leaks are checked at its exit */
  if (f->daemon != NULL && f->daemon->running)
    g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  g_clear_pointer (&f->daemon, ma_test_daemon_free);
  /* never leave the children frozen or the cgroups behind */
  write_value (f->batch, "cgroup.freeze", "0");
  write_value (f->service, "cgroup.freeze", "0");
  kill (f->batch_pid, SIGKILL);
  kill (f->service_pid, SIGKILL);
  waitpid (f->batch_pid, NULL, 0);
  waitpid (f->service_pid, NULL, 0);
  g_rmdir (f->batch);
  g_rmdir (f->service);
  {
    g_autofree char *empty = g_build_filename (f->top, "empty", NULL);
    g_rmdir (empty);
  }
  g_rmdir (f->top);
  munmap ((void *) f->counters, 4096);
  g_free (f->root);
  g_free (f->top_rel);
  g_free (f->top);
  g_free (f->batch);
  g_free (f->service);
}

static JsonObject *
object_of (JsonNode *node)
{
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  return json_node_get_object (node);
}

/* The single class report of a throttle reply. */
static JsonObject *
throttled_class (JsonNode *ret)
{
  JsonArray *list = json_object_get_array_member (object_of (ret), "throttled");

  g_assert_cmpuint (json_array_get_length (list), ==, 1);
  return json_array_get_object_element (list, 0);
}

/* Wait for an event NAME whose data.reason is `reason` and data.class is `klass`. */
static void
wait_event (Fixture *f, const char *name, const char *klass, const char *reason)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(JsonNode) ret = ma_test_execute (f->client, "events", "{\"after\": 0}");
      JsonArray *events = json_object_get_array_member (object_of (ret), "events");
      for (guint i = 0; i < json_array_get_length (events); i++)
        {
          JsonObject *e = json_array_get_object_element (events, i);
          JsonObject *d;
          if (g_strcmp0 (json_object_get_string_member (e, "event"), name) != 0)
            continue;
          d = json_object_get_object_member (e, "data");
          if (g_strcmp0 (json_object_get_string_member (d, "class"), klass) == 0
              && (reason == NULL
                  || g_strcmp0 (json_object_get_string_member (d, "reason"), reason) == 0))
            return;
        }
      g_usleep (20 * 1000);
    }
  g_error ("no %s event for class %s with reason %s", name, klass, reason ? reason : "(any)");
}

/* Send a request without waiting for its reply (read it later with read_reply). */
static void
send_request (MaClient *client, const char *command, const char *args_json, const char *id)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *line = g_strdup_printf ("{\"execute\": \"%s\", \"arguments\": %s, "
                                           "\"id\": \"%s\"}\n", command, args_json, id);

  g_assert_true (ma_client_write_raw (client, line, strlen (line), &error));
  g_assert_no_error (error);
}

/* The reply with this id (events before it are skipped): its whole object. */
static JsonNode *
read_reply (MaClient *client, const char *id)
{
  gint64 deadline = g_get_monotonic_time () + 4 * WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *line = ma_client_read_line (client, WAIT_MS, &error);
      g_autoptr(JsonNode) node = NULL;

      g_assert_no_error (error);
      if (line == NULL)
        continue;
      node = json_from_string (line, &error);
      g_assert_no_error (error);
      if (!JSON_NODE_HOLDS_OBJECT (node) || !json_object_has_member (object_of (node), "id"))
        continue; /* an event */
      if (g_strcmp0 (json_object_get_string_member_with_default (object_of (node), "id", ""),
                     id) != 0)
        g_error ("the reply %s came while waiting for %s's", line, id);
      return g_steal_pointer (&node);
    }
  g_error ("no reply with id %s", id);
  return NULL;
}

/* Wait until the agent says (in its log) that a `throttle auto` is measuring. */
static void
wait_measuring (Fixture *f)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *log = NULL;
      if (g_file_get_contents (f->daemon->log_path, &log, NULL, NULL)
          && strstr (log, "throttle auto: measuring") != NULL)
        return;
      g_usleep (10 * 1000);
    }
  g_error ("the agent never started measuring");
}

/* An error reply whose desc contains `words`. */
static void
assert_error_reply (JsonNode *reply, const char *words)
{
  JsonObject *err;

  g_assert_true (json_object_has_member (object_of (reply), "error"));
  err = json_object_get_object_member (object_of (reply), "error");
  g_test_message ("error: %s", json_object_get_string_member (err, "desc"));
  g_assert_nonnull (strstr (json_object_get_string_member (err, "desc"), words));
}

static void
assert_journal_lacks (Fixture *f, const char *klass)
{
  g_autofree char *journal = g_build_filename (f->daemon->state_dir, "throttle.journal", NULL);
  g_autofree char *text = NULL;
  g_autofree char *quoted = g_strdup_printf ("\"%s\"", klass);

  if (g_file_get_contents (journal, &text, NULL, NULL))
    g_assert_null (strstr (text, quoted));
}

/* ---- tests ---- */

static void
test_freeze_and_unthrottle (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonNode) un = NULL;
  JsonObject *klass, *change;
  JsonArray *released;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  assert_file_is (f->batch, "cgroup.freeze", "0");
  ret = ma_test_execute (f->client, "throttle",
                         "{\"class\": \"batch\", \"lease_seconds\": 60, \"operation\": \"op-1\"}");
  klass = throttled_class (ret);
  g_assert_cmpstr (json_object_get_string_member (klass, "class"), ==, "batch");
  g_assert_cmpstr (json_object_get_string_member (klass, "policy"), ==, "freeze");
  g_assert_cmpstr (json_object_get_string_member (klass, "operation"), ==, "op-1");
  g_assert_false (json_object_get_boolean_member (klass, "renewed"));
  change = json_array_get_object_element (json_object_get_array_member (klass, "cgroups"), 0);
  g_assert_cmpstr (json_object_get_string_member (change, "file"), ==, "cgroup.freeze");
  g_assert_cmpstr (json_object_get_string_member (change, "previous"), ==, "0");
  g_assert_cmpstr (json_object_get_string_member (change, "applied"), ==, "1");

  /* the kernel froze it: the busy child's counter stops; the service keeps running */
  wait_for_line (f->batch, "cgroup.events", "frozen 1");
  assert_no_progress (&f->counters[0]);
  wait_progress (&f->counters[1]);
  wait_event (f, "THROTTLED", "batch", NULL);

  /* renewing keeps one throttle */
  {
    g_autoptr(JsonNode) again = ma_test_execute (f->client, "throttle",
                                                 "{\"class\": \"batch\", \"lease_seconds\": 90}");
    g_assert_true (json_object_get_boolean_member (throttled_class (again), "renewed"));
  }

  un = ma_test_execute (f->client, "unthrottle", "{\"class\": \"batch\"}");
  released = json_object_get_array_member (object_of (un), "released");
  g_assert_cmpuint (json_array_get_length (released), ==, 1);
  g_assert_cmpint (json_object_get_int_member (object_of (un), "still-throttled"), ==, 0);
  assert_file_is (f->batch, "cgroup.freeze", "0");
  wait_for_line (f->batch, "cgroup.events", "frozen 0");
  wait_progress (&f->counters[0]);
  wait_event (f, "UNTHROTTLED", "batch", "unthrottle");

  /* a second unthrottle has nothing to do and says so */
  {
    g_autoptr(JsonNode) none = ma_test_execute (f->client, "unthrottle", NULL);
    g_assert_cmpuint (json_array_get_length (json_object_get_array_member (object_of (none),
                                                                           "released")), ==, 0);
  }
}

static void
test_lease_expiry (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ret = NULL;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  ret = ma_test_execute (f->client, "throttle", "{\"class\": \"batch\", \"lease_seconds\": 1}");
  wait_for_line (f->batch, "cgroup.events", "frozen 1");
  /* nobody unthrottles: the lease does */
  wait_event (f, "UNTHROTTLED", "batch", "lease-expired");
  assert_file_is (f->batch, "cgroup.freeze", "0");
  wait_progress (&f->counters[0]);
}

/* A resume on the destination ends the migration: throttles are released then. */
static void
test_resume_releases (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonNode) resumed = NULL;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  ret = ma_test_execute (f->client, "throttle", "{\"class\": \"batch\", \"lease_seconds\": 600}");
  wait_for_line (f->batch, "cgroup.events", "frozen 1");
  resumed = ma_test_execute (f->client, "resumed", "{\"operation\": \"op-moved\"}");
  wait_event (f, "UNTHROTTLED", "batch", "resumed");
  assert_file_is (f->batch, "cgroup.freeze", "0");
  wait_progress (&f->counters[0]);
}

/* A `throttle auto` still measuring when the resume released every throttle applies nothing:
 * its answer says why, and the cgroup stays as it was. */
static void
test_auto_abandoned_by_resume (Fixture *f, gconstpointer data)
{
  g_autoptr(MaClient) other = NULL;
  g_autoptr(JsonNode) resumed = NULL;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(JsonNode) un = NULL;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  other = ma_test_daemon_connect (f->daemon);
  send_request (f->client, "throttle",
                "{\"class\": \"auto\", \"lease_seconds\": 600, \"seconds\": 4}", "auto-1");
  wait_measuring (f);
  resumed = ma_test_execute (other, "resumed", "{\"operation\": \"op-moved\"}");
  reply = read_reply (f->client, "auto-1");
  assert_error_reply (reply, "resumed");
  assert_file_is (f->batch, "cgroup.freeze", "0");
  wait_progress (&f->counters[0]);
  assert_journal_lacks (f, "batch");
  un = ma_test_execute (other, "unthrottle", NULL);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (object_of (un),
                                                                         "released")), ==, 0);
}

/* SIGTERM while a `throttle auto` measures, with a quiesced plugin holding the stop open:
 * neither that throttle nor a new `throttle` applies anything once the stop's release ran,
 * and the agent exits with the cgroup as it found it. */
static void
test_stop_during_auto (Fixture *f, gconstpointer data)
{
  g_autofree char *config = NULL;
  g_autofree char *plugins = NULL;
  g_autofree char *script = NULL;
  g_autofree char *script_path = NULL;
  g_autofree char *manifest_path = NULL;
  g_autofree char *hold = NULL;
  g_autofree char *thawing = NULL;
  g_autoptr(MaClient) other = NULL;
  g_autoptr(JsonNode) q = NULL;
  g_autoptr(JsonNode) reply = NULL;
  g_autoptr(JsonNode) late = NULL;
  gint64 deadline;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  g_clear_pointer (&f->client, ma_client_free);
  g_clear_pointer (&f->daemon, ma_test_daemon_free);
  f->daemon = ma_test_daemon_new (NULL);
  g_assert_cmpint (chmod (f->daemon->dir, 0755), ==, 0);
  plugins = g_build_filename (f->daemon->dir, "plugins", NULL);
  hold = g_build_filename (f->daemon->dir, "hold", NULL);
  thawing = g_build_filename (f->daemon->dir, "thawing", NULL);
  g_assert_cmpint (g_mkdir (plugins, 0755), ==, 0);
  /* its thaw waits (60 s at most) until the test removes `hold` */
  script = g_strdup_printf ("#!/bin/sh\n"
                            "[ \"$1\" = thaw ] || exit 0\n"
                            ": > '%s'\n"
                            "i=0; while [ -e '%s' ] && [ $i -lt 1200 ]; do "
                            "sleep 0.05; i=$((i+1)); done\n", thawing, hold);
  script_path = g_build_filename (plugins, "holder.sh", NULL);
  manifest_path = g_build_filename (plugins, "holder.plugin", NULL);
  g_assert_true (g_file_set_contents (script_path, script, -1, NULL));
  g_assert_cmpint (chmod (script_path, 0755), ==, 0);
  g_assert_true (g_file_set_contents (manifest_path,
                                      "[Plugin]\nName=holder\nExec=holder.sh\nThawTimeout=90\n",
                                      -1, NULL));
  g_assert_cmpint (chmod (manifest_path, 0644), ==, 0);
  g_assert_true (g_file_set_contents (hold, "", -1, NULL));
  {
    g_autofree char *extra = g_strdup_printf ("[plugins]\ndirs=%s\n", plugins);
    config = make_config (f, extra);
  }
  g_assert_true (g_file_set_contents (f->daemon->config, config, -1, NULL));
  ma_test_daemon_start (f->daemon, NULL);
  f->client = ma_test_daemon_connect (f->daemon);
  other = ma_test_daemon_connect (f->daemon);
  q = ma_test_execute (other, "quiesce", "{\"operation\": \"op-stop\", \"lease_seconds\": 120}");

  send_request (f->client, "throttle",
                "{\"class\": \"auto\", \"lease_seconds\": 600, \"seconds\": 4}", "auto-2");
  wait_measuring (f);
  ma_test_daemon_kill (f->daemon, SIGTERM);
  deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  while (!g_file_test (thawing, G_FILE_TEST_EXISTS))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("the stopping agent never released the plugin");
      g_usleep (10 * 1000);
    }

  /* stopping: a new throttle is refused */
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonObject) args = json_object_new ();
    json_object_set_string_member (args, "class", "batch");
    late = ma_client_execute (other, "throttle", args, &error);
    g_assert_null (late);
    g_assert_error (error, MA_ERROR, MA_ERROR_BUSY);
    g_assert_nonnull (strstr (error->message, "stopping"));
  }
  /* the measurement ends while the agent still stops: nothing applied */
  reply = read_reply (f->client, "auto-2");
  assert_error_reply (reply, "stop");
  assert_file_is (f->batch, "cgroup.freeze", "0");

  g_assert_cmpint (g_unlink (hold), ==, 0);
  g_clear_pointer (&f->client, ma_client_free);
  g_clear_pointer (&other, ma_client_free);
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  assert_file_is (f->batch, "cgroup.freeze", "0");
  wait_progress (&f->counters[0]);
  assert_journal_lacks (f, "batch");
}

/* The one released class of an unthrottle reply, its `failed` and `gone` lists. */
static JsonObject *
released_class (JsonNode *ret, gint64 still)
{
  JsonArray *released = json_object_get_array_member (object_of (ret), "released");

  g_assert_cmpint (json_object_get_int_member (object_of (ret), "still-throttled"), ==, still);
  g_assert_cmpuint (json_array_get_length (released), ==, 1);
  return json_array_get_object_element (released, 0);
}

/* A restore the kernel refuses is reported (reply and event), stays throttled, journalled
 * and tracked, and a later unthrottle undoes it; a cgroup removed meanwhile is `gone`. The
 * refusal is real: a read-only bind mount over cgroup.freeze (EROFS), in a mount namespace of
 * this test's own, so nothing outlives it. */
static void
test_restore_fails (Fixture *f, gconstpointer data)
{
  g_autofree char *config = NULL;
  g_autofree char *extra = NULL;
  g_autofree char *empty = NULL;
  g_autofree char *freeze = NULL;
  g_autofree char *stand_in = NULL;
  g_autofree char *journal = NULL;
  g_autofree char *text = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonNode) un = NULL;
  g_autoptr(JsonNode) again = NULL;
  g_autoptr(JsonNode) gone_un = NULL;
  JsonObject *klass, *failure;
  JsonArray *failed;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  if (unshare (CLONE_NEWNS) != 0 || mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    {
      g_test_skip ("cannot make a private mount namespace");
      return;
    }
  /* the agent must live in this namespace: start a new one, with a class on an empty cgroup */
  g_clear_pointer (&f->client, ma_client_free);
  g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  g_clear_pointer (&f->daemon, ma_test_daemon_free);
  empty = g_build_filename (f->top, "empty", NULL);
  g_assert_cmpint (g_mkdir (empty, 0755), ==, 0);
  extra = g_strdup_printf ("[throttle:empty]\ncgroups=%s/empty\npolicy=freeze\n", f->top_rel);
  config = make_config (f, extra);
  f->daemon = ma_test_daemon_new (config);
  ma_test_daemon_start (f->daemon, NULL);
  f->client = ma_test_daemon_connect (f->daemon);
  journal = g_build_filename (f->daemon->state_dir, "throttle.journal", NULL);

  ret = ma_test_execute (f->client, "throttle", "{\"class\": \"batch\", \"lease_seconds\": 600}");
  wait_for_line (f->batch, "cgroup.events", "frozen 1");
  freeze = g_build_filename (f->batch, "cgroup.freeze", NULL);
  stand_in = g_build_filename (f->daemon->dir, "frozen", NULL);
  g_assert_true (g_file_set_contents (stand_in, "1\n", -1, NULL));
  g_assert_cmpint (mount (stand_in, freeze, NULL, MS_BIND, NULL), ==, 0);
  g_assert_cmpint (mount (NULL, freeze, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL), ==, 0);

  un = ma_test_execute (f->client, "unthrottle", "{\"class\": \"batch\"}");
  klass = released_class (un, 1);
  failed = json_object_get_array_member (klass, "failed");
  g_assert_cmpuint (json_array_get_length (failed), ==, 1);
  failure = json_array_get_object_element (failed, 0);
  g_assert_cmpstr (json_object_get_string_member (failure, "file"), ==, "cgroup.freeze");
  g_assert_nonnull (strstr (json_object_get_string_member (failure, "cgroup"), "/batch"));
  g_test_message ("failed: %s", json_object_get_string_member (failure, "error"));
  g_assert_nonnull (strstr (json_object_get_string_member (failure, "error"), "Read-only"));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (klass, "gone")), ==, 0);
  wait_event (f, "UNTHROTTLED", "batch", "unthrottle");
  /* still frozen, still journalled, still tracked: a new throttle of it is refused */
  g_assert_true (g_file_get_contents (journal, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"batch\""));
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonObject) args = json_object_new ();
    json_object_set_string_member (args, "class", "batch");
    g_assert_null (ma_client_execute (f->client, "throttle", args, &error));
    g_assert_error (error, MA_ERROR, MA_ERROR_BUSY);
  }

  /* the obstacle goes: the next unthrottle undoes it */
  g_assert_cmpint (umount2 (freeze, 0), ==, 0);
  assert_file_is (f->batch, "cgroup.freeze", "1");
  assert_no_progress (&f->counters[0]);
  again = ma_test_execute (f->client, "unthrottle", "{\"class\": \"batch\"}");
  klass = released_class (again, 0);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (klass, "failed")), ==, 0);
  assert_file_is (f->batch, "cgroup.freeze", "0");
  wait_progress (&f->counters[0]);
  assert_journal_lacks (f, "batch");

  /* a cgroup removed while throttled is reported gone, and forgotten */
  {
    g_autoptr(JsonNode) t = ma_test_execute (f->client, "throttle",
                                             "{\"class\": \"empty\", \"lease_seconds\": 600}");
  }
  g_assert_cmpint (g_rmdir (empty), ==, 0);
  gone_un = ma_test_execute (f->client, "unthrottle", "{\"class\": \"empty\"}");
  klass = released_class (gone_un, 0);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (klass, "failed")), ==, 0);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (klass, "gone")), ==, 1);
  assert_journal_lacks (f, "empty");
}

static void
test_restart_after_sigkill (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ret = NULL;
  g_autofree char *journal = NULL;
  g_autofree char *text = NULL;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  ret = ma_test_execute (f->client, "throttle", "{\"class\": \"batch\", \"lease_seconds\": 600}");
  wait_for_line (f->batch, "cgroup.events", "frozen 1");
  journal = g_build_filename (f->daemon->state_dir, "throttle.journal", NULL);
  g_assert_true (g_file_get_contents (journal, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"batch\""));

  /* the agent dies without undoing anything: the kernel keeps the cgroup frozen */
  g_clear_pointer (&f->client, ma_client_free);
  ma_test_daemon_kill (f->daemon, SIGKILL);
  assert_file_is (f->batch, "cgroup.freeze", "1");
  assert_no_progress (&f->counters[0]);

  /* the next agent replays the journal before it answers */
  ma_test_daemon_start (f->daemon, NULL);
  f->client = ma_test_daemon_connect (f->daemon);
  assert_file_is (f->batch, "cgroup.freeze", "0");
  wait_progress (&f->counters[0]);
  wait_event (f, "UNTHROTTLED", "batch", "agent-restart");
  g_clear_pointer (&text, g_free);
  g_assert_true (g_file_get_contents (journal, &text, NULL, NULL));
  g_assert_null (strstr (text, "\"batch\""));
}

static void
test_protected_refused (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonObject) args = json_object_new ();

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  json_object_set_string_member (args, "class", "svc");
  ret = ma_client_execute (f->client, "throttle", args, &error);
  g_assert_null (ret);
  g_assert_error (error, MA_ERROR, MA_ERROR_PERMISSION);
  g_assert_nonnull (strstr (error->message, "protected"));
  assert_file_is (f->service, "cgroup.freeze", "0");
  wait_progress (&f->counters[1]);

  g_clear_error (&error);
  json_object_set_string_member (args, "class", "nonesuch");
  ret = ma_client_execute (f->client, "throttle", args, &error);
  g_assert_error (error, MA_ERROR, MA_ERROR_NOT_FOUND);
}

static void
test_cpu_max (Fixture *f, gconstpointer data)
{
  g_autofree char *controllers = NULL;
  g_auto(GStrv) words = NULL;
  g_autofree char *config = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonNode) un = NULL;
  g_autofree char *reason = NULL;
  JsonObject *change;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  controllers = read_stripped (f->root, "cgroup.controllers");
  words = g_strsplit (controllers != NULL ? controllers : "", " ", -1);
  if (!g_strv_contains ((const char *const *) words, "cpu"))
    {
      reason = g_strdup_printf ("the cpu controller is not available in %s/cgroup.controllers "
                                "('%s'): cpu.max is proven in the VM guest", f->root,
                                controllers != NULL ? controllers : "");
      g_test_message ("%s", reason);
      g_test_skip (reason);
      return;
    }
  g_assert_true (write_value (f->root, "cgroup.subtree_control", "+cpu"));
  g_assert_true (write_value (f->top, "cgroup.subtree_control", "+cpu"));
  /* a non-default previous value, restored exactly */
  g_assert_true (write_value (f->batch, "cpu.max", "50000 100000"));
  ma_test_daemon_stop (f->daemon);
  ma_test_daemon_free (f->daemon);
  g_clear_pointer (&f->client, ma_client_free);
  config = make_config (f, "[throttle:cpu]\ncgroups=");
  {
    g_autofree char *full = g_strdup_printf ("%s%s/batch\npolicy=cpu.max 10000 100000\n", config,
                                             f->top_rel);
    f->daemon = ma_test_daemon_new (full);
  }
  ma_test_daemon_start (f->daemon, NULL);
  f->client = ma_test_daemon_connect (f->daemon);
  ret = ma_test_execute (f->client, "throttle", "{\"class\": \"cpu\", \"lease_seconds\": 60}");
  change = json_array_get_object_element (
    json_object_get_array_member (throttled_class (ret), "cgroups"), 0);
  g_assert_cmpstr (json_object_get_string_member (change, "previous"), ==, "50000 100000");
  assert_file_is (f->batch, "cpu.max", "10000 100000");
  un = ma_test_execute (f->client, "unthrottle", "{\"class\": \"cpu\"}");
  assert_file_is (f->batch, "cpu.max", "50000 100000");
}

/* The test's own soft-dirty check, independent of the agent's. */
static gboolean
kernel_has_soft_dirty (void)
{
  long ps = sysconf (_SC_PAGESIZE);
  volatile char *page = mmap (NULL, (size_t) ps, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  guint64 entry = 0;
  int fd;
  gboolean dirty;

  page[0] = 1;
  fd = open ("/proc/self/clear_refs", O_WRONLY);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, "4", 1), ==, 1);
  close (fd);
  page[0] = 2;
  fd = open ("/proc/self/pagemap", O_RDONLY);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pread (fd, &entry, sizeof entry, (off_t) ((guintptr) page / (guintptr) ps) * 8),
                   ==, sizeof entry);
  close (fd);
  dirty = (entry >> 55) & 1;
  munmap ((void *) page, (size_t) ps);
  return dirty;
}

static void
test_dirty_rate_and_auto (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonNode) autoret = NULL;
  JsonObject *obj, *first;
  JsonArray *procs, *throttled;
  const char *expected;

  if (skip_reason != NULL)
    {
      g_test_skip (skip_reason);
      return;
    }
  expected = kernel_has_soft_dirty () ? "soft-dirty" : "proxy";
  ret = ma_test_execute (f->client, "dirty-rate", "{\"seconds\": 1, \"top\": 5}");
  obj = object_of (ret);
  g_assert_cmpstr (json_object_get_string_member (obj, "method"), ==, expected);
  g_test_message ("method %s: %s", expected, json_object_get_string_member (obj, "method-note"));
  procs = json_object_get_array_member (obj, "processes");
  g_assert_cmpuint (json_array_get_length (procs), >=, 1);
  g_assert_cmpuint (json_array_get_length (procs), <=, 5);
  /* the busy writer is ranked first; only the writers of other runs of this very test
   * (their own ma-throttle-PID cgroups) may rank with it */
  first = NULL;
  for (guint i = 0; i < json_array_get_length (procs) && first == NULL; i++)
    {
      JsonObject *p = json_array_get_object_element (procs, i);
      const char *cg = json_object_has_member (p, "cgroup")
                         ? json_object_get_string_member (p, "cgroup") : "";
      if (json_object_get_int_member (p, "pid") == f->batch_pid)
        first = p;
      else if (strstr (cg, "/ma-throttle-") == NULL)
        g_error ("pid %" G_GINT64_FORMAT " (%s, cgroup %s) ranks above the busy writer %d",
                 json_object_get_int_member (p, "pid"), json_object_get_string_member (p, "comm"),
                 cg, f->batch_pid);
    }
  g_assert_nonnull (first);
  g_assert_nonnull (strstr (json_object_get_string_member (first, "cgroup"), "/batch"));
  g_assert_cmpfloat (json_object_get_double_member (first, "dirty-mib-per-s"), >, 10.0);
  g_assert_cmpint (json_object_get_int_member (first, "rss-bytes"), >, 0);
  g_assert_cmpfloat (json_object_get_double_member (obj, "guest-total-mib-per-s"), >=,
                     json_object_get_double_member (first, "dirty-mib-per-s"));
  g_assert_cmpint (json_object_get_int_member (obj, "kernel-threads-skipped"), >, 0);

  /* bad arguments: clear errors */
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonObject) args = json_object_new ();
    json_object_set_double_member (args, "seconds", 0);
    g_assert_null (ma_client_execute (f->client, "dirty-rate", args, &error));
    g_assert_error (error, MA_ERROR, MA_ERROR_GENERIC); /* class GenericError */
    g_assert_nonnull (strstr (error->message, "'seconds'"));
  }

  /* auto: the top writer is in the batch class, which gets throttled; svc is never touched */
  autoret = ma_test_execute (f->client, "throttle",
                             "{\"class\": \"auto\", \"lease_seconds\": 60, \"seconds\": 0.5}");
  throttled = json_object_get_array_member (object_of (autoret), "throttled");
  g_assert_cmpuint (json_array_get_length (throttled), ==, 1);
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (throttled, 0),
                                                  "class"), ==, "batch");
  wait_for_line (f->batch, "cgroup.events", "frozen 1");
  assert_file_is (f->service, "cgroup.freeze", "0");
  {
    g_autoptr(JsonNode) un = ma_test_execute (f->client, "unthrottle", "{\"class\": \"all\"}");
    assert_file_is (f->batch, "cgroup.freeze", "0");
  }
}

int
main (int argc, char **argv)
{
  g_autofree char *probe = g_strdup_printf ("%s/ma-throttle-probe-%d", CGROUP2_ROOT, getpid ());
  g_autofree char *freeze = g_build_filename (probe, "cgroup.freeze", NULL);

  g_test_init (&argc, &argv, NULL);
  if (geteuid () != 0)
    skip_reason = "needs root to create cgroups";
  else if (g_mkdir (probe, 0755) != 0)
    skip_reason = "cannot create a cgroup under " CGROUP2_ROOT " (no cgroup2 hierarchy there)";
  else
    {
      if (!g_file_test (freeze, G_FILE_TEST_EXISTS))
        skip_reason = "the cgroup2 hierarchy at " CGROUP2_ROOT " has no cgroup.freeze";
      g_rmdir (probe);
    }
  g_test_add ("/throttle/freeze-and-unthrottle", Fixture, NULL, fixture_setup,
              test_freeze_and_unthrottle, fixture_teardown);
  g_test_add ("/throttle/lease-expiry", Fixture, NULL, fixture_setup, test_lease_expiry,
              fixture_teardown);
  g_test_add ("/throttle/resume-releases", Fixture, NULL, fixture_setup, test_resume_releases,
              fixture_teardown);
  g_test_add ("/throttle/auto-abandoned-by-resume", Fixture, "writer", fixture_setup,
              test_auto_abandoned_by_resume, fixture_teardown);
  g_test_add ("/throttle/stop-during-auto", Fixture, "writer", fixture_setup,
              test_stop_during_auto, fixture_teardown);
  g_test_add ("/throttle/restore-fails", Fixture, NULL, fixture_setup, test_restore_fails,
              fixture_teardown);
  g_test_add ("/throttle/restart-after-sigkill", Fixture, NULL, fixture_setup,
              test_restart_after_sigkill, fixture_teardown);
  g_test_add ("/throttle/protected-refused", Fixture, NULL, fixture_setup, test_protected_refused,
              fixture_teardown);
  g_test_add ("/throttle/cpu-max", Fixture, NULL, fixture_setup, test_cpu_max, fixture_teardown);
  g_test_add ("/throttle/dirty-rate-and-auto", Fixture, "writer", fixture_setup,
              test_dirty_rate_and_auto, fixture_teardown);
  return g_test_run ();
}
