/* plugin-harness.c — what the shipped-plugin tests share: real database servers started in a
 * temporary directory (killed with the test even when it aborts), and both plugin protocols. */
#include "plugin-harness.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <glib/gstdio.h>

#include "json.h"

HarnessTmpdir *
harness_tmpdir_new (const char *user)
{
  g_autoptr(GError) error = NULL;
  HarnessTmpdir *dir = g_new0 (HarnessTmpdir, 1);

  dir->path = g_dir_make_tmp ("ma-plugin-test-XXXXXX", &error);
  g_assert_no_error (error);
  if (user != NULL)
    {
      struct passwd *pw = getpwnam (user);
      g_assert_nonnull (pw);
      g_assert_cmpint (chown (dir->path, pw->pw_uid, pw->pw_gid), ==, 0);
    }
  /* Servers running as another user must reach their directory. */
  g_assert_cmpint (g_chmod (dir->path, 0755), ==, 0);
  return dir;
}

static gboolean
remove_tree (const char *path)
{
  const char *argv[] = { "rm", "-rf", "--one-file-system", path, NULL };

  return harness_run (argv, NULL, NULL, NULL) == 0;
}

void
harness_tmpdir_free (HarnessTmpdir *dir)
{
  if (dir == NULL)
    return;
  if (dir->keep)
    g_test_message ("kept %s for inspection", dir->path);
  else
    remove_tree (dir->path);
  g_free (dir->path);
  g_free (dir);
}

char *
harness_find_program (const char *name)
{
  const char *extra[] = { "/usr/sbin", "/sbin", "/usr/lib/postgresql/15/bin", NULL };
  char *found;

  if (g_path_is_absolute (name))
    return g_file_test (name, G_FILE_TEST_IS_EXECUTABLE) ? g_strdup (name) : NULL;
  found = g_find_program_in_path (name);
  if (found != NULL)
    return found;
  for (guint i = 0; extra[i] != NULL; i++)
    {
      g_autofree char *path = g_build_filename (extra[i], name, NULL);
      if (g_file_test (path, G_FILE_TEST_IS_EXECUTABLE))
        return g_steal_pointer (&path);
    }
  return NULL;
}

typedef struct
{
  gboolean change_user;
  uid_t uid;
  gid_t gid;
  pid_t parent;
} ChildSetup;

/* Runs between fork and exec: async-signal-safe calls only. */
static void
child_setup (gpointer data)
{
  ChildSetup *setup = data;

  if (setup->change_user)
    {
      if (setgroups (0, NULL) != 0 || setgid (setup->gid) != 0 || setuid (setup->uid) != 0)
        _exit (126);
    }
  /* After the credential change, which clears it: the child dies with this process. */
  prctl (PR_SET_PDEATHSIG, SIGKILL);
  if (getppid () != setup->parent)
    _exit (125);
}

static GSubprocess *
spawn_full (const char *const *argv, const char *const *envp, const char *user, const char *log,
            GSubprocessFlags flags, GError **error)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  ChildSetup *setup = g_new0 (ChildSetup, 1);

  setup->parent = getpid ();
  if (user != NULL)
    {
      struct passwd *pw = getpwnam (user);
      if (pw == NULL)
        {
          g_free (setup);
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no user %s", user);
          return NULL;
        }
      setup->change_user = TRUE;
      setup->uid = pw->pw_uid;
      setup->gid = pw->pw_gid;
    }
  if (log != NULL)
    flags |= G_SUBPROCESS_FLAGS_STDERR_MERGE;
  launcher = g_subprocess_launcher_new (flags);
  if (envp != NULL)
    g_subprocess_launcher_set_environ (launcher, (char **) envp);
  if (log != NULL)
    g_subprocess_launcher_set_stdout_file_path (launcher, log);
  g_subprocess_launcher_set_child_setup (launcher, child_setup, setup, g_free);
  return g_subprocess_launcher_spawnv (launcher, argv, error);
}

GSubprocess *
harness_spawn (const char *const *argv, const char *const *envp, const char *user,
               const char *log, GError **error)
{
  return spawn_full (argv, envp, user, log,
                     log != NULL ? G_SUBPROCESS_FLAGS_NONE : G_SUBPROCESS_FLAGS_STDOUT_SILENCE,
                     error);
}

GSubprocess *
harness_spawn_piped (const char *const *argv, const char *const *envp, GError **error)
{
  return spawn_full (argv, envp, NULL, NULL,
                     G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE, error);
}

int
harness_run (const char *const *argv, const char *const *envp, const char *user, char **out)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocess) proc = spawn_full (argv, envp, user, NULL,
                                            G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
  g_autofree char *stdout_text = NULL;

  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (proc, NULL, NULL, &stdout_text, NULL, &error);
  g_assert_no_error (error);
  if (out != NULL)
    *out = g_steal_pointer (&stdout_text);
  if (!g_subprocess_get_if_exited (proc))
    return -1;
  return g_subprocess_get_exit_status (proc);
}

static void
on_exit_waited (GObject *source, GAsyncResult *result, gpointer data)
{
  gboolean *done = data;

  g_subprocess_wait_finish (G_SUBPROCESS (source), result, NULL);
  *done = TRUE;
}

static gboolean
on_timeout (gpointer data)
{
  gboolean *timed_out = data;

  *timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

gboolean
harness_wait_exit (GSubprocess *proc, guint timeout_ms)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GSource) timeout = g_timeout_source_new (timeout_ms);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  gboolean done = FALSE;
  gboolean timed_out = FALSE;

  g_main_context_push_thread_default (context);
  g_source_set_callback (timeout, on_timeout, &timed_out, NULL);
  g_source_attach (timeout, context);
  g_subprocess_wait_async (proc, cancellable, on_exit_waited, &done);
  while (!done && !timed_out)
    g_main_context_iteration (context, TRUE);
  if (!done)
    {
      g_cancellable_cancel (cancellable);
      while (!done)
        g_main_context_iteration (context, TRUE);
    }
  g_source_destroy (timeout);
  g_main_context_pop_thread_default (context);
  return g_subprocess_get_identifier (proc) == NULL;
}

void
harness_kill (GSubprocess *proc)
{
  if (proc == NULL || g_subprocess_get_identifier (proc) == NULL)
    return;
  g_subprocess_force_exit (proc);
  g_subprocess_wait (proc, NULL, NULL);
}

gboolean
harness_wait_for (gboolean (*cond) (gpointer data), gpointer data, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  for (;;)
    {
      if (cond (data))
        return TRUE;
      if (g_get_monotonic_time () >= deadline)
        return FALSE;
      g_usleep (20 * 1000);
    }
}

static char *
detail_of_line (const char *line, const char **status)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = ma_json_parse (line, strlen (line), &error);
  const char *detail = NULL;

  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  g_assert_true (ma_json_require_string (json_node_get_object (node), "detail", &detail, &error));
  g_assert_no_error (error);
  if (status != NULL)
    {
      const char *value = NULL;
      g_assert_true (ma_json_require_string (json_node_get_object (node), "status", &value,
                                             &error));
      g_assert_no_error (error);
      g_assert_true (g_strcmp0 (value, "ok") == 0 || g_strcmp0 (value, "fail") == 0);
      *status = g_intern_string (value);
    }
  return g_strdup (detail);
}

int
harness_oneshot (const char *exe, const char *phase, const char *const *envp, char **detail)
{
  const char *argv[] = { exe, phase, NULL };
  g_autofree char *out = NULL;
  g_auto(GStrv) lines = NULL;
  guint n;
  int status = harness_run (argv, envp, NULL, &out);

  g_test_message ("%s %s -> %d: %s", exe, phase, status, out);
  lines = g_strsplit (g_strchomp (out), "\n", -1);
  n = g_strv_length (lines);
  g_assert_cmpuint (n, >, 0);
  if (detail != NULL)
    *detail = detail_of_line (lines[n - 1], NULL);
  return status;
}

HarnessSession *
harness_session_start (const char *exe, const char *const *envp)
{
  const char *argv[] = { exe, NULL };
  g_autoptr(GError) error = NULL;
  HarnessSession *session = g_new0 (HarnessSession, 1);

  session->proc = harness_spawn_piped (argv, envp, &error);
  g_assert_no_error (error);
  session->stdin_fd =
    g_unix_output_stream_get_fd (G_UNIX_OUTPUT_STREAM (g_subprocess_get_stdin_pipe (session->proc)));
  session->stdout_fd =
    g_unix_input_stream_get_fd (G_UNIX_INPUT_STREAM (g_subprocess_get_stdout_pipe (session->proc)));
  session->pending = g_string_new (NULL);
  return session;
}

static char *
session_read_line (HarnessSession *session, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  for (;;)
    {
      const char *newline = memchr (session->pending->str, '\n', session->pending->len);
      struct pollfd pfd = { .fd = session->stdout_fd, .events = POLLIN };
      gint64 left_ms;
      char buffer[4096];
      gssize got;

      if (newline != NULL)
        {
          gsize len = (gsize) (newline - session->pending->str);
          char *line = g_strndup (session->pending->str, len);
          g_string_erase (session->pending, 0, (gssize) len + 1);
          return line;
        }
      left_ms = (deadline - g_get_monotonic_time ()) / 1000;
      if (left_ms <= 0)
        return NULL;
      if (poll (&pfd, 1, (int) left_ms) <= 0)
        continue;
      got = read (session->stdout_fd, buffer, sizeof buffer);
      if (got <= 0)
        return NULL;
      g_string_append_len (session->pending, buffer, got);
    }
}

gboolean
harness_session_raw (HarnessSession *session, const char *line, char **detail)
{
  g_autofree char *reply = NULL;
  const char *status = NULL;
  g_autofree char *text = NULL;
  g_autofree char *shown = g_strchomp (g_strdup (line));

  g_assert_cmpint (write (session->stdin_fd, line, strlen (line)), ==, (gssize) strlen (line));
  reply = session_read_line (session, HARNESS_REPLY_MS);
  g_assert_nonnull (reply);
  text = detail_of_line (reply, &status);
  g_test_message ("session %s -> %s: %s", shown, status, text);
  if (detail != NULL)
    *detail = g_steal_pointer (&text);
  return g_strcmp0 (status, "ok") == 0;
}

gboolean
harness_session_phase (HarnessSession *session, const char *phase, gint64 deadline_ms,
                       gint64 lease_seconds, char **detail)
{
  g_autofree char *request = g_strdup_printf (
    "{\"phase\": \"%s\", \"operation\": \"test-op\", \"deadline_ms\": %" G_GINT64_FORMAT
    ", \"lease_seconds\": %" G_GINT64_FORMAT "}\n", phase, deadline_ms, lease_seconds);

  return harness_session_raw (session, request, detail);
}

int
harness_session_close (HarnessSession *session)
{
  if (session->stdin_fd >= 0)
    {
      /* The pipe's write end belongs to the stream: closing it is the EOF. */
      g_output_stream_close (g_subprocess_get_stdin_pipe (session->proc), NULL, NULL);
      session->stdin_fd = -1;
    }
  g_assert_true (harness_wait_exit (session->proc, HARNESS_EXIT_MS));
  return g_subprocess_get_if_exited (session->proc) ? g_subprocess_get_exit_status (session->proc)
                                                    : -1;
}

void
harness_session_free (HarnessSession *session)
{
  if (session == NULL)
    return;
  harness_kill (session->proc);
  g_clear_object (&session->proc);
  g_string_free (session->pending, TRUE);
  g_free (session);
}

char **
harness_plugin_env (const char *plugin, const char *phase, const char *state_dir,
                    const char *first_extra, ...)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  va_list args;

  g_autofree char *plugin_var = g_strdup_printf ("MA_PLUGIN=%s", plugin);
  g_autofree char *phase_var = g_strdup_printf ("MA_PHASE=%s", phase);
  g_autofree char *state_var = g_strdup_printf ("MA_STATE_DIR=%s", state_dir);

  g_strv_builder_add (builder, plugin_var);
  g_strv_builder_add (builder, phase_var);
  g_strv_builder_add (builder, "MA_OPERATION=test-op");
  g_strv_builder_add (builder, "MA_LEASE_SECONDS=60");
  g_strv_builder_add (builder, "MA_DEADLINE_MS=30000");
  g_strv_builder_add (builder, state_var);
  va_start (args, first_extra);
  for (const char *extra = first_extra; extra != NULL; extra = va_arg (args, const char *))
    g_strv_builder_add (builder, extra);
  va_end (args);
  return g_strv_builder_end (builder);
}

const char *
harness_plugin_path (const char *var)
{
  const char *path = g_getenv (var);

  return path != NULL && *path != '\0' ? path : NULL;
}

int
harness_relay_main (int argc, char **argv)
{
  const char *child_argv[2] = { NULL, NULL };
  g_autoptr(GError) error = NULL;
  g_autofree char *pid_text = NULL;
  GPid pid;
  int child_stdin;

  if (argc != 4 || g_strcmp0 (argv[1], "--relay") != 0)
    return -1;
  child_argv[0] = argv[3];
  /* No PDEATHSIG and no reaping: the plugin must notice the end of its input by itself. */
  if (!g_spawn_async_with_pipes (NULL, (char **) child_argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                 NULL, NULL, &pid, &child_stdin, NULL, NULL, &error))
    {
      g_printerr ("relay: %s\n", error->message);
      return 1;
    }
  pid_text = g_strdup_printf ("%d", pid);
  if (!g_file_set_contents (argv[2], pid_text, -1, &error))
    {
      g_printerr ("relay: %s\n", error->message);
      return 1;
    }
  for (;;)
    {
      char buffer[4096];
      gssize got = read (STDIN_FILENO, buffer, sizeof buffer);
      if (got <= 0)
        break;
      if (write (child_stdin, buffer, (gsize) got) != got)
        break;
    }
  close (child_stdin);
  return 0;
}

static gboolean
pidfile_written (gpointer data)
{
  return g_file_test (data, G_FILE_TEST_EXISTS);
}

HarnessSession *
harness_session_start_relayed (const char *self_exe, const char *exe, const char *const *envp,
                               const char *pidfile, GPid *plugin_pid)
{
  const char *argv[] = { self_exe, "--relay", pidfile, exe, NULL };
  g_autoptr(GError) error = NULL;
  g_autofree char *pid_text = NULL;
  HarnessSession *session = g_new0 (HarnessSession, 1);

  session->proc = harness_spawn_piped (argv, envp, &error);
  g_assert_no_error (error);
  session->stdin_fd =
    g_unix_output_stream_get_fd (G_UNIX_OUTPUT_STREAM (g_subprocess_get_stdin_pipe (session->proc)));
  session->stdout_fd =
    g_unix_input_stream_get_fd (G_UNIX_INPUT_STREAM (g_subprocess_get_stdout_pipe (session->proc)));
  session->pending = g_string_new (NULL);
  g_assert_true (harness_wait_for (pidfile_written, (gpointer) pidfile, HARNESS_EXIT_MS));
  g_assert_true (g_file_get_contents (pidfile, &pid_text, NULL, &error));
  *plugin_pid = (GPid) g_ascii_strtoll (pid_text, NULL, 10);
  g_assert_cmpint (*plugin_pid, >, 0);
  return session;
}

gboolean
harness_pid_exited (GPid pid)
{
  g_autofree char *stat_path = g_strdup_printf ("/proc/%d/stat", pid);
  g_autofree char *stat = NULL;
  const char *end;

  if (!g_file_get_contents (stat_path, &stat, NULL, NULL))
    return TRUE;
  end = strrchr (stat, ')');
  return end != NULL && end[1] == ' ' && end[2] == 'Z';
}

HarnessAgent *
harness_agent_start (const char *name, const char *exe, const char *protocol,
                     const char *env_lines)
{
  HarnessAgent *agent = g_new0 (HarnessAgent, 1);
  g_autofree char *plugins = NULL;
  g_autofree char *config = NULL;
  g_autofree char *env_path = NULL;
  g_autofree char *manifest_path = NULL;
  g_autofree char *manifest = NULL;
  g_autoptr(GError) error = NULL;

  agent->daemon = ma_test_daemon_new (NULL);
  g_assert_cmpint (g_chmod (agent->daemon->dir, 0755), ==, 0);
  plugins = g_build_filename (agent->daemon->dir, "plugins", NULL);
  g_assert_cmpint (g_mkdir (plugins, 0755), ==, 0);
  env_path = g_build_filename (agent->daemon->dir, "plugin.env", NULL);
  g_assert_true (g_file_set_contents_full (env_path, env_lines, -1, G_FILE_SET_CONTENTS_NONE,
                                           0600, &error));
  g_assert_no_error (error);
  manifest = g_strdup_printf ("[Plugin]\nName=%s\nExec=%s\nProtocol=%s\nTimeout=20\n"
                              "EnvironmentFile=%s\n", name, exe, protocol, env_path);
  manifest_path = g_strdup_printf ("%s/%s.plugin", plugins, name);
  g_assert_true (g_file_set_contents_full (manifest_path, manifest, -1,
                                           G_FILE_SET_CONTENTS_NONE, 0644, &error));
  g_assert_no_error (error);
  config = g_strdup_printf ("[plugins]\ndirs=%s\n", plugins);
  g_assert_true (g_file_set_contents (agent->daemon->config, config, -1, NULL));
  ma_test_daemon_start (agent->daemon, NULL);
  agent->client = ma_test_daemon_connect (agent->daemon);
  return agent;
}

void
harness_agent_free (HarnessAgent *agent)
{
  if (agent == NULL)
    return;
  g_clear_pointer (&agent->client, ma_client_free);
  if (g_test_failed ())
    ma_test_daemon_dump_log (agent->daemon);
  g_clear_pointer (&agent->daemon, ma_test_daemon_free);
  g_free (agent);
}

gboolean
harness_agent_quiesce (HarnessAgent *agent, const char *operation, guint lease_seconds,
                       char **error_desc)
{
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = NULL;

  json_object_set_string_member (args, "operation", operation);
  json_object_set_int_member (args, "lease_seconds", lease_seconds);
  ret = ma_client_execute (agent->client, "quiesce", args, &error);
  if (ret == NULL)
    {
      g_assert_nonnull (error);
      g_test_message ("agent quiesce %s: %s", operation, error->message);
      if (error_desc != NULL)
        *error_desc = g_strdup (error->message);
      return FALSE;
    }
  return TRUE;
}

void
harness_agent_thaw (HarnessAgent *agent, const char *operation)
{
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = NULL;

  json_object_set_string_member (args, "operation", operation);
  ret = ma_client_execute (agent->client, "thaw", args, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ret);
}

void
harness_agent_declare_shipped_phases (HarnessAgent *agent, const char *name)
{
  g_autofree char *shipped_name = g_strdup_printf ("%s.plugin.in", name);
  g_autofree char *manifest_name = g_strdup_printf ("%s.plugin", name);
  g_autofree char *shipped = g_build_filename (g_getenv ("MA_PLUGINS_SRCDIR"), name,
                                               shipped_name, NULL);
  g_autofree char *manifest = g_build_filename (agent->daemon->dir, "plugins", manifest_name,
                                                NULL);
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *phases = NULL;
  g_autofree char *renew_timeout = NULL;
  g_autofree char *text = NULL;
  g_autofree char *extended = NULL;

  g_assert_true (g_key_file_load_from_file (kf, shipped, G_KEY_FILE_NONE, &error));
  g_assert_no_error (error);
  phases = g_key_file_get_string (kf, "Plugin", "Phases", &error);
  g_assert_no_error (error);
  g_assert_nonnull (strstr (phases, "renew"));
  renew_timeout = g_key_file_get_string (kf, "Plugin", "RenewTimeout", &error);
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (manifest, &text, NULL, &error));
  extended = g_strdup_printf ("%sPhases=%s\nRenewTimeout=%s\n", text, phases, renew_timeout);
  g_assert_true (g_file_set_contents_full (manifest, extended, -1, G_FILE_SET_CONTENTS_NONE, 0644,
                                           &error));
  g_assert_no_error (error);
}
