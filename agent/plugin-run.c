/* plugin-run.c — running one phase of one plugin: the oneshot and session protocols,
 * a scrubbed environment (plugin-spawn starts it), deadlines, process-group kill, bounded capture. */
#include "plugin-run.h"

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>

#include "error.h"
#include "json.h"
#include "plugin-reply.h"
#include "plugin-spawn.h"

#define READ_CHUNK 4096
/* Chunks read per wake-up (a pipe's default buffer): a plugin, or a child it left behind, that
 * writes without pause cannot keep the main loop here, where its deadline could never fire. */
#define READ_CHUNKS_PER_DISPATCH 16

typedef struct
{
  GString *line;        /* the line being read */
  gboolean line_cut;    /* the current line passed MA_PLUGIN_LINE_MAX */
  gsize logged;         /* bytes logged so far */
  guint64 dropped;      /* bytes not logged (over MA_PLUGIN_OUTPUT_MAX) */
  char *last_line;      /* the last complete line */
  GSource *source;
  GInputStream *stream;
} MaCapture;

struct _MaPluginProcess
{
  gint refcount;
  MaPlugin *plugin;
  pid_t pgid;            /* the process's id and its group's */
  int wait_status;       /* once exited */
  GOutputStream *stdin_pipe; /* NULL once closed */
  MaCapture out, err;
  gboolean session;
  gboolean exited;
  MaPluginPhase current_phase; /* for log lines */

  /* the phase in progress (result != NULL) */
  MaPhaseResult *result;
  MaPhaseDoneFunc done;
  gpointer done_data;
  gint64 started;
  gboolean awaiting_reply; /* session: its JSON answer has not come yet */
  gboolean replied;
  guint deadline_id;
  guint kill_id;
  guint abandon_timeout_ms;
};

static void process_finish_phase (MaPluginProcess *self);

/* g_strv_builder_take() is newer than the GLib we require */
static void
builder_take (GStrvBuilder *builder, char *value)
{
  g_strv_builder_add (builder, value);
  g_free (value);
}

void
ma_phase_result_free (MaPhaseResult *result)
{
  if (result == NULL)
    return;
  g_clear_pointer (&result->plugin, ma_plugin_unref);
  g_free (result->detail);
  g_free (result);
}

JsonObject *
ma_phase_result_to_json (MaPhaseResult *result)
{
  JsonObject *obj = json_object_new ();

  json_object_set_string_member (obj, "plugin", result->plugin->name);
  json_object_set_string_member (obj, "phase", ma_plugin_phase_to_string (result->phase));
  json_object_set_string_member (obj, "status", result->skipped ? "skipped"
                                                : result->ok     ? "ok"
                                                                 : "fail");
  if (result->timed_out)
    json_object_set_boolean_member (obj, "timed-out", TRUE);
  if (result->detail != NULL)
    json_object_set_string_member (obj, "detail", result->detail);
  json_object_set_double_member (obj, "seconds", result->seconds);
  return obj;
}

static MaPhaseResult *
result_new (MaPlugin *plugin, MaPluginPhase phase)
{
  MaPhaseResult *result = g_new0 (MaPhaseResult, 1);

  result->plugin = ma_plugin_ref (plugin);
  result->phase = phase;
  return result;
}

static void
capture_clear (MaCapture *capture)
{
  if (capture->source != NULL)
    {
      g_source_destroy (capture->source);
      g_clear_pointer (&capture->source, g_source_unref);
    }
}

static void
capture_free (MaCapture *capture)
{
  capture_clear (capture);
  if (capture->line != NULL)
    g_string_free (capture->line, TRUE);
  capture->line = NULL;
  g_clear_pointer (&capture->last_line, g_free);
}

static MaPluginProcess *
process_ref (MaPluginProcess *self)
{
  self->refcount++;
  return self;
}

static void
process_unref (MaPluginProcess *self)
{
  if (self == NULL || --self->refcount > 0)
    return;
  g_clear_handle_id (&self->deadline_id, g_source_remove);
  g_clear_handle_id (&self->kill_id, g_source_remove);
  capture_free (&self->out);
  capture_free (&self->err);
  g_clear_object (&self->stdin_pipe);
  g_clear_object (&self->out.stream);
  g_clear_object (&self->err.stream);
  g_clear_pointer (&self->result, ma_phase_result_free);
  ma_plugin_unref (self->plugin);
  g_free (self);
}

static void
plugin_log (MaPlugin *plugin, GLogLevelFlags level, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
plugin_log (MaPlugin *plugin, GLogLevelFlags level, const char *format, ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_log_structured (G_LOG_DOMAIN, level, "MA_PLUGIN", plugin->name, "MESSAGE", "plugin %s: %s",
                    plugin->name, message);
}

static void
kill_group (MaPluginProcess *self, int sig)
{
  if (self->pgid > 0 && kill (-self->pgid, sig) < 0 && errno != ESRCH)
    plugin_log (self->plugin, G_LOG_LEVEL_WARNING, "cannot signal process group %d: %s",
                (int) self->pgid, g_strerror (errno));
}

static void
close_stdin (MaPluginProcess *self)
{
  if (self->stdin_pipe == NULL)
    return;
  /* a pipe closes at once; while a write is in flight the close is refused and
   * on_written closes the stream instead */
  g_output_stream_close (self->stdin_pipe, NULL, NULL);
  g_clear_object (&self->stdin_pipe);
}

static gboolean
on_kill_grace (gpointer user_data)
{
  MaPluginProcess *self = user_data;

  self->kill_id = 0;
  plugin_log (self->plugin, G_LOG_LEVEL_WARNING, "still running %d ms after SIGTERM: SIGKILL",
              MA_PLUGIN_KILL_GRACE_MS);
  kill_group (self, SIGKILL);
  return G_SOURCE_REMOVE;
}

static void
terminate (MaPluginProcess *self)
{
  close_stdin (self);
  kill_group (self, SIGTERM);
  if (self->kill_id == 0)
    self->kill_id = g_timeout_add (MA_PLUGIN_KILL_GRACE_MS, on_kill_grace, self);
}

static gboolean
on_deadline (gpointer user_data)
{
  MaPluginProcess *self = user_data;
  double limit = self->plugin->timeout_ms[self->result->phase] / 1000.0;

  self->deadline_id = 0;
  if (self->replied)
    {
      /* a session answered but did not exit once its stdin closed */
      g_autofree char *old = g_steal_pointer (&self->result->detail);
      self->result->detail = g_strdup_printf ("%s%sdid not exit within %.1f s after its stdin "
                                              "closed: killed", old ? old : "", old ? "; " : "",
                                              limit);
    }
  else
    {
      self->result->ok = FALSE;
      self->result->timed_out = TRUE;
      /* a session's answer from now on comes too late: its stdin is closed and it is told to
       * stop, so it is releasing whatever it says; the phase stays failed */
      self->awaiting_reply = FALSE;
      g_free (self->result->detail);
      self->result->detail = g_strdup_printf ("timed out after %.1f s; its process group was "
                                              "killed", limit);
    }
  plugin_log (self->plugin, G_LOG_LEVEL_WARNING, "%s: %s",
              ma_plugin_phase_to_string (self->result->phase), self->result->detail);
  terminate (self);
  return G_SOURCE_REMOVE;
}

static void
handle_reply (MaPluginProcess *self, const char *line)
{
  g_autoptr(MaPluginReply) reply = ma_plugin_reply_parse (line, strlen (line), NULL);

  if (reply == NULL)
    {
      plugin_log (self->plugin, G_LOG_LEVEL_MESSAGE, "%s: %s",
                  ma_plugin_phase_to_string (self->current_phase), line);
      return;
    }
  self->awaiting_reply = FALSE;
  self->replied = TRUE;
  self->result->ok = reply->ok;
  if (reply->detail != NULL)
    self->result->detail = g_steal_pointer (&reply->detail);
  else if (!self->result->ok)
    self->result->detail = g_strdup_printf ("answered status \"%s\"", reply->status);

  if ((self->result->phase == MA_PLUGIN_PHASE_QUIESCE && self->result->ok)
      || self->result->phase == MA_PLUGIN_PHASE_RENEW)
    {
      /* keeps its application quiesced until thaw (or its stdin closes); after a failed
       * renew too: the caller releases the operation, and that thaw goes through here */
      process_finish_phase (self);
      return;
    }
  /* every other answer ends the session: it must release on EOF; the phase is over
   * when the process has exited (or been killed at the deadline) */
  close_stdin (self);
}

static void
capture_line (MaPluginProcess *self, MaCapture *capture, gboolean is_stdout)
{
  const char *line = capture->line->str;

  g_free (capture->last_line);
  capture->last_line = g_strdup (line);
  if (is_stdout && self->session && self->awaiting_reply)
    {
      handle_reply (self, line);
      return;
    }
  if (capture->logged + capture->line->len + 1 > MA_PLUGIN_OUTPUT_MAX)
    {
      capture->dropped += capture->line->len + 1;
      return;
    }
  capture->logged += capture->line->len + 1;
  plugin_log (self->plugin, G_LOG_LEVEL_MESSAGE, "%s %s: %s%s",
              ma_plugin_phase_to_string (self->current_phase), is_stdout ? "stdout" : "stderr",
              line, capture->line_cut ? " [line cut]" : "");
}

static void
capture_feed (MaPluginProcess *self, MaCapture *capture, const char *data, gsize len,
              gboolean is_stdout)
{
  for (gsize i = 0; i < len; i++)
    {
      if (data[i] == '\n')
        {
          capture_line (self, capture, is_stdout);
          g_string_truncate (capture->line, 0);
          capture->line_cut = FALSE;
          continue;
        }
      if (capture->line->len >= MA_PLUGIN_LINE_MAX)
        {
          capture->line_cut = TRUE;
          capture->dropped++;
          continue;
        }
      g_string_append_c (capture->line, data[i]);
    }
}

/* Read what is there now, at most READ_CHUNKS_PER_DISPATCH chunks; FALSE at EOF or on error. */
static gboolean
capture_read (MaPluginProcess *self, MaCapture *capture, gboolean is_stdout)
{
  char buf[READ_CHUNK];

  for (guint chunks = 0; chunks < READ_CHUNKS_PER_DISPATCH; chunks++)
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_pollable_input_stream_read_nonblocking (
        G_POLLABLE_INPUT_STREAM (capture->stream), buf, sizeof buf, NULL, &error);
      if (n > 0)
        {
          capture_feed (self, capture, buf, (gsize) n, is_stdout);
          continue;
        }
      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return TRUE;
      if (capture->line->len > 0)
        {
          capture_line (self, capture, is_stdout);
          g_string_truncate (capture->line, 0);
        }
      return FALSE;
    }
  return TRUE; /* the rest at the next wake-up */
}

static gboolean
on_stdout (GObject *stream, gpointer user_data)
{
  MaPluginProcess *self = user_data;

  if (capture_read (self, &self->out, TRUE))
    return G_SOURCE_CONTINUE;
  g_clear_pointer (&self->out.source, g_source_unref);
  return G_SOURCE_REMOVE;
}

static gboolean
on_stderr (GObject *stream, gpointer user_data)
{
  MaPluginProcess *self = user_data;

  if (capture_read (self, &self->err, FALSE))
    return G_SOURCE_CONTINUE;
  g_clear_pointer (&self->err.source, g_source_unref);
  return G_SOURCE_REMOVE;
}

static void
capture_start (MaPluginProcess *self, MaCapture *capture, GInputStream *stream, gboolean is_stdout)
{
  capture->line = g_string_new (NULL);
  capture->stream = stream;
  capture->source = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (stream), NULL);
  g_source_set_callback (capture->source,
                         (GSourceFunc) (void (*) (void)) (is_stdout ? on_stdout : on_stderr), self,
                         NULL);
  g_source_attach (capture->source, NULL);
}

static char *
describe_exit (int status)
{
  if (WIFSIGNALED (status))
    return g_strdup_printf ("killed by signal %d (%s)", WTERMSIG (status),
                            g_strsignal (WTERMSIG (status)));
  return g_strdup_printf ("exited with status %d", WEXITSTATUS (status));
}

/* oneshot: the last stdout line may be {"detail": "..."} */
static char *
oneshot_detail (MaPluginProcess *self)
{
  const char *last = self->out.last_line;

  if (last == NULL)
    return NULL;
  return ma_plugin_reply_parse_detail (last, strlen (last), NULL);
}

static void
on_process_exit (GPid pid, gint status, gpointer user_data)
{
  MaPluginProcess *self = user_data;
  gboolean clean;

  self->exited = TRUE;
  self->wait_status = status;
  clean = WIFEXITED (status) && WEXITSTATUS (status) == 0;
  /* drain what the process wrote before it exited, then stop reading: a background
   * child may keep the pipes open */
  if (self->out.source != NULL)
    capture_read (self, &self->out, TRUE);
  if (self->err.source != NULL)
    capture_read (self, &self->err, FALSE);
  capture_clear (&self->out);
  capture_clear (&self->err);
  g_clear_handle_id (&self->kill_id, g_source_remove);
  g_clear_object (&self->stdin_pipe);
  /* whatever it left behind in its group goes too when it was killed */
  if (self->result != NULL && self->result->timed_out)
    kill_group (self, SIGKILL);

  if (self->out.dropped + self->err.dropped > 0)
    plugin_log (self->plugin, G_LOG_LEVEL_WARNING,
                "output over %d bytes per stream not logged: %" G_GUINT64_FORMAT " bytes dropped",
                MA_PLUGIN_OUTPUT_MAX, self->out.dropped + self->err.dropped);

  if (self->result != NULL)
    {
      MaPhaseResult *r = self->result;
      if (!self->session && !r->timed_out)
        {
          g_autofree char *detail = oneshot_detail (self);
          r->ok = clean;
          if (detail != NULL)
            r->detail = g_steal_pointer (&detail);
          else if (!clean)
            {
              g_autofree char *how = describe_exit (self->wait_status);
              const char *why = self->err.last_line != NULL ? self->err.last_line : NULL;
              r->detail = why != NULL ? g_strdup_printf ("%s: %s", how, why) : g_steal_pointer (&how);
            }
        }
      else if (self->session && self->awaiting_reply && !r->timed_out)
        {
          g_autofree char *how = describe_exit (self->wait_status);
          r->ok = FALSE;
          r->detail = g_strdup_printf ("%s before answering", how);
        }
      process_finish_phase (self);
    }
  else if (self->session && self->abandon_timeout_ms == 0)
    {
      g_autofree char *how = describe_exit (self->wait_status);
      plugin_log (self->plugin, G_LOG_LEVEL_WARNING, "session %s while quiesced", how);
    }
  process_unref (self); /* the wait's reference */
}

static void
process_finish_phase (MaPluginProcess *self)
{
  MaPhaseResult *result = g_steal_pointer (&self->result);
  MaPhaseDoneFunc done = self->done;
  gpointer data = self->done_data;

  g_clear_handle_id (&self->deadline_id, g_source_remove);
  result->seconds = (double) (g_get_monotonic_time () - self->started) / G_USEC_PER_SEC;
  self->done = NULL;
  self->done_data = NULL;
  plugin_log (self->plugin, result->ok ? G_LOG_LEVEL_INFO : G_LOG_LEVEL_WARNING,
              "%s %s in %.3f s%s%s", ma_plugin_phase_to_string (result->phase),
              result->ok ? "ok" : "FAILED", result->seconds, result->detail ? ": " : "",
              result->detail ? result->detail : "");
  done (result, data);
}

static char **
build_environment (MaPlugin *plugin, MaPluginPhase phase, const MaRunContext *ctx,
                   const char *state_dir)
{
  g_autoptr(GStrvBuilder) env = g_strv_builder_new ();

  builder_take (env, g_strdup ("PATH=" MA_PLUGIN_PATH));
  builder_take (env, g_strdup ("LANG=C.UTF-8"));
  builder_take (env, g_strdup_printf ("MA_PLUGIN=%s", plugin->name));
  builder_take (env, g_strdup_printf ("MA_PHASE=%s", ma_plugin_phase_to_string (phase)));
  builder_take (env, g_strdup_printf ("MA_OPERATION=%s", ctx->operation ? ctx->operation : ""));
  builder_take (env, g_strdup_printf ("MA_LEASE_SECONDS=%u", ctx->lease_seconds));
  builder_take (env, g_strdup_printf ("MA_DEADLINE_MS=%u", plugin->timeout_ms[phase]));
  builder_take (env, g_strdup_printf ("MA_STATE_DIR=%s", state_dir));
  for (guint i = 0; plugin->environment != NULL && plugin->environment[i] != NULL; i++)
    g_strv_builder_add (env, plugin->environment[i]);
  return g_strv_builder_end (env);
}

static MaPluginProcess *
process_spawn (MaPlugin *plugin, MaPluginPhase phase, const MaRunContext *ctx, GError **error)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *state_dir = g_build_filename (ctx->state_dir, "plugins", plugin->name, NULL);
  g_auto(GStrv) env = NULL;
  MaSpawned spawned;
  MaPluginProcess *self;

  if (g_mkdir_with_parents (state_dir, 0700) < 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "cannot create %s: %s", state_dir,
                   g_strerror (errno));
      return NULL;
    }
  if (plugin->user != NULL)
    {
      struct passwd *pw = getpwnam (plugin->user);
      if (pw == NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "User=%s: no such user",
                       plugin->user);
          return NULL;
        }
      if (chown (state_dir, pw->pw_uid, pw->pw_gid) < 0)
        g_warning ("cannot give %s to %s: %s", state_dir, plugin->user, g_strerror (errno));
    }

  for (guint i = 0; plugin->argv[i] != NULL; i++)
    g_ptr_array_add (argv, plugin->argv[i]);
  if (plugin->protocol == MA_PLUGIN_ONESHOT)
    g_ptr_array_add (argv, (gpointer) ma_plugin_phase_argument (plugin, phase));
  g_ptr_array_add (argv, NULL);

  env = build_environment (plugin, phase, ctx, state_dir);
  if (!ma_plugin_spawn ((const char *const *) argv->pdata, (const char *const *) env,
                        plugin->user, &spawned, error))
    return NULL;

  self = g_new0 (MaPluginProcess, 1);
  self->refcount = 1;
  self->plugin = ma_plugin_ref (plugin);
  self->pgid = spawned.pid;
  self->session = plugin->protocol == MA_PLUGIN_SESSION;
  self->current_phase = phase;
  self->stdin_pipe = g_unix_output_stream_new (spawned.stdin_fd, TRUE);
  if (!self->session)
    close_stdin (self);
  capture_start (self, &self->out, g_unix_input_stream_new (spawned.stdout_fd, TRUE), TRUE);
  capture_start (self, &self->err, g_unix_input_stream_new (spawned.stderr_fd, TRUE), FALSE);
  g_child_watch_add (spawned.pid, on_process_exit, process_ref (self));
  plugin_log (plugin, G_LOG_LEVEL_DEBUG, "%s: started pid %d", ma_plugin_phase_to_string (phase),
              (int) self->pgid);
  return self;
}

typedef struct
{
  MaPluginProcess *process;
  GBytes *line;
} MaSessionWrite;

static void
on_written (GObject *source, GAsyncResult *res, gpointer user_data)
{
  g_autoptr(GError) error = NULL;
  MaSessionWrite *write = user_data;

  /* a session that died is reported by its exit */
  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, &error))
    g_debug ("could not write to a session plugin: %s", error->message);
  /* its stdin was let go while this write was pending (a reply read before this
   * callback ran): close it now, or the session waits for EOF until its deadline */
  if (write->process->stdin_pipe != G_OUTPUT_STREAM (source))
    g_output_stream_close (G_OUTPUT_STREAM (source), NULL, NULL);
  process_unref (write->process);
  g_bytes_unref (write->line);
  g_free (write);
}

static void
session_send (MaPluginProcess *self, MaPluginPhase phase, const MaRunContext *ctx)
{
  g_autoptr(JsonObject) obj = json_object_new ();
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *text = NULL;
  char *line;
  GBytes *bytes;
  MaSessionWrite *write;

  json_object_set_string_member (obj, "phase", ma_plugin_phase_to_string (phase));
  json_object_set_string_member (obj, "operation", ctx->operation ? ctx->operation : "");
  json_object_set_int_member (obj, "deadline_ms", self->plugin->timeout_ms[phase]);
  json_object_set_int_member (obj, "lease_seconds", ctx->lease_seconds);
  node = ma_json_new_object_node (json_object_ref (obj));
  text = ma_json_to_string (node);
  line = g_strconcat (text, "\n", NULL);
  bytes = g_bytes_new_take (line, strlen (line));
  self->awaiting_reply = TRUE;
  self->replied = FALSE;
  if (self->stdin_pipe == NULL)
    {
      g_bytes_unref (bytes);
      return;
    }
  write = g_new0 (MaSessionWrite, 1);
  write->process = process_ref (self);
  write->line = bytes;
  g_output_stream_write_all_async (self->stdin_pipe, g_bytes_get_data (bytes, NULL),
                                   g_bytes_get_size (bytes), G_PRIORITY_DEFAULT, NULL, on_written,
                                   write);
}

static void
process_begin_phase (MaPluginProcess *self, MaPluginPhase phase, const MaRunContext *ctx,
                     MaPhaseDoneFunc done, gpointer user_data)
{
  self->result = result_new (self->plugin, phase);
  self->current_phase = phase;
  self->done = done;
  self->done_data = user_data;
  self->started = g_get_monotonic_time ();
  self->deadline_id = g_timeout_add (self->plugin->timeout_ms[phase], on_deadline, self);
  if (self->session)
    session_send (self, phase, ctx);
}

typedef struct
{
  MaPhaseResult *result;
  MaPhaseDoneFunc done;
  gpointer user_data;
} MaDeferred;

static gboolean
deliver_deferred (gpointer user_data)
{
  MaDeferred *d = user_data;

  d->done (d->result, d->user_data);
  g_free (d);
  return G_SOURCE_REMOVE;
}

static void
answer_later (MaPhaseResult *result, MaPhaseDoneFunc done, gpointer user_data)
{
  MaDeferred *d = g_new0 (MaDeferred, 1);

  d->result = result;
  d->done = done;
  d->user_data = user_data;
  g_idle_add (deliver_deferred, d);
}

void
ma_plugin_run_phase (MaPlugin *plugin, MaPluginPhase phase, const MaRunContext *ctx,
                     MaPluginProcess **session, MaPhaseDoneFunc done, gpointer user_data)
{
  g_autoptr(GError) error = NULL;
  MaPluginProcess *process;
  MaPhaseResult *result;

  if (!ma_plugin_has_phase (plugin, phase))
    {
      result = result_new (plugin, phase);
      result->ok = TRUE;
      result->skipped = TRUE;
      /* a session still ends at thaw even when it has nothing to say then */
      if (phase == MA_PLUGIN_PHASE_THAW && session != NULL && *session != NULL)
        ma_plugin_process_abandon (g_steal_pointer (session));
      answer_later (result, done, user_data);
      return;
    }

  if (plugin->protocol == MA_PLUGIN_SESSION && phase == MA_PLUGIN_PHASE_RENEW)
    {
      /* one more line to the session holding the application; it stays in *session */
      process = session != NULL ? *session : NULL;
      if (process == NULL || process->exited || process->stdin_pipe == NULL
          || process->result != NULL)
        {
          result = result_new (plugin, phase);
          result->detail = g_strdup (process == NULL          ? "no session is running"
                                     : process->result != NULL ? "the session is busy with "
                                                                 "another phase"
                                                               : "the session has ended");
          answer_later (result, done, user_data);
          return;
        }
      process_begin_phase (process, phase, ctx, done, user_data);
      return;
    }

  if (plugin->protocol == MA_PLUGIN_SESSION && phase == MA_PLUGIN_PHASE_THAW)
    {
      process = session != NULL ? g_steal_pointer (session) : NULL;
      if (process == NULL || process->exited || process->stdin_pipe == NULL)
        {
          result = result_new (plugin, phase);
          result->ok = TRUE;
          result->detail = g_strdup (process == NULL ? "no session was running"
                                                     : "the session had already ended");
          if (process != NULL)
            process_unref (process);
          answer_later (result, done, user_data);
          return;
        }
      process_begin_phase (process, phase, ctx, done, user_data);
      process_unref (process); /* its wait keeps it until it exits */
      return;
    }

  process = process_spawn (plugin, phase, ctx, &error);
  if (process == NULL)
    {
      result = result_new (plugin, phase);
      result->detail = g_strdup_printf ("cannot start: %s", error->message);
      answer_later (result, done, user_data);
      return;
    }
  process_begin_phase (process, phase, ctx, done, user_data);
  if (plugin->protocol == MA_PLUGIN_SESSION && phase == MA_PLUGIN_PHASE_QUIESCE && session != NULL)
    {
      if (*session != NULL)
        ma_plugin_process_abandon (*session);
      *session = process; /* the caller's reference */
      return;
    }
  process_unref (process);
}

static gboolean
on_abandon_deadline (gpointer user_data)
{
  MaPluginProcess *self = user_data;

  self->deadline_id = 0;
  plugin_log (self->plugin, G_LOG_LEVEL_WARNING, "session did not exit after its stdin closed");
  terminate (self);
  return G_SOURCE_REMOVE;
}

void
ma_plugin_process_abandon (MaPluginProcess *process)
{
  if (process == NULL)
    return;
  if (!process->exited && process->result == NULL)
    {
      process->abandon_timeout_ms = process->plugin->timeout_ms[MA_PLUGIN_PHASE_THAW];
      close_stdin (process);
      g_clear_handle_id (&process->deadline_id, g_source_remove);
      process->deadline_id = g_timeout_add (process->abandon_timeout_ms, on_abandon_deadline,
                                            process);
    }
  process_unref (process);
}

gboolean
ma_plugin_process_is_alive (MaPluginProcess *process)
{
  return process != NULL && !process->exited;
}

void
ma_plugin_process_kill (MaPluginProcess *process)
{
  if (process != NULL && !process->exited)
    {
      close_stdin (process);
      kill_group (process, SIGKILL);
    }
}
