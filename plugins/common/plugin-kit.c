/* plugin-kit.c — what every shipped quiesce plugin shares: the phase names, the
 * configuration read from the environment, and both halves of the plugin protocol. */
#include "plugin-kit.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "json.h"

static const char *const phase_names[] = {
  [MA_KIT_PHASE_INVALID] = NULL,
  [MA_KIT_PHASE_CHECK] = "check",
  [MA_KIT_PHASE_QUIESCE] = "quiesce",
  [MA_KIT_PHASE_THAW] = "thaw",
  [MA_KIT_PHASE_VALIDATE] = "validate",
  [MA_KIT_PHASE_RENEW] = "renew",
};

MaKitPhase
ma_kit_phase_from_string (const char *name)
{
  if (name == NULL)
    return MA_KIT_PHASE_INVALID;
  if (g_strcmp0 (name, "freeze") == 0)
    return MA_KIT_PHASE_QUIESCE;
  for (guint i = 1; i < G_N_ELEMENTS (phase_names); i++)
    if (g_strcmp0 (name, phase_names[i]) == 0)
      return (MaKitPhase) i;
  return MA_KIT_PHASE_INVALID;
}

const char *
ma_kit_phase_to_string (MaKitPhase phase)
{
  if ((guint) phase >= G_N_ELEMENTS (phase_names) || phase_names[phase] == NULL)
    return "invalid";
  return phase_names[phase];
}

const char *
ma_kit_env (const char *key, const char *fallback)
{
  const char *value = g_getenv (key);

  return value != NULL && *value != '\0' ? value : fallback;
}

gboolean
ma_kit_env_int (const char *key, gint64 fallback, gint64 *out, GError **error)
{
  const char *value = ma_kit_env (key, NULL);
  g_autoptr(GError) local_error = NULL;

  if (value == NULL)
    {
      *out = fallback;
      return TRUE;
    }
  if (!g_ascii_string_to_signed (value, 10, 0, G_MAXINT64, out, &local_error))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "%s=%s is not a non-negative number: %s", key, value, local_error->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
ma_kit_env_bool (const char *key, gboolean fallback, gboolean *out, GError **error)
{
  const char *value = ma_kit_env (key, NULL);

  if (value == NULL)
    *out = fallback;
  else if (g_ascii_strcasecmp (value, "true") == 0 || g_ascii_strcasecmp (value, "yes") == 0
           || g_strcmp0 (value, "1") == 0)
    *out = TRUE;
  else if (g_ascii_strcasecmp (value, "false") == 0 || g_ascii_strcasecmp (value, "no") == 0
           || g_strcmp0 (value, "0") == 0)
    *out = FALSE;
  else
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "%s=%s is not a boolean (true/false)", key, value);
      return FALSE;
    }
  return TRUE;
}

char **
ma_kit_env_list (const char *key)
{
  const char *value = ma_kit_env (key, "");
  g_auto(GStrv) parts = g_strsplit_set (value, ";\n", -1);
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  for (guint i = 0; parts[i] != NULL; i++)
    if (*g_strstrip (parts[i]) != '\0')
      g_strv_builder_add (builder, parts[i]);
  return g_strv_builder_end (builder);
}

void
ma_kit_request_free (MaKitRequest *request)
{
  if (request == NULL)
    return;
  g_free (request->operation);
  g_free (request);
}

gint64
ma_kit_request_remaining_ms (const MaKitRequest *request, gint64 min_ms)
{
  gint64 elapsed_ms = (g_get_monotonic_time () - request->started_us) / 1000;
  gint64 left = request->deadline_ms - elapsed_ms - MA_KIT_DEADLINE_MARGIN_MS;

  return MAX (left, min_ms);
}

static MaKitRequest *
request_new (MaKitPhase phase)
{
  MaKitRequest *request = g_new0 (MaKitRequest, 1);

  request->phase = phase;
  request->deadline_ms = MA_KIT_DEFAULT_BUDGET_MS;
  request->started_us = g_get_monotonic_time ();
  return request;
}

MaKitRequest *
ma_kit_oneshot_request (int argc, char **argv, GError **error)
{
  g_autoptr(MaKitRequest) request = NULL;
  MaKitPhase phase;

  if (argc != 2)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "usage: %s check|quiesce|thaw|validate|renew", argc > 0 ? argv[0] : "plugin");
      return NULL;
    }
  phase = ma_kit_phase_from_string (argv[1]);
  if (phase == MA_KIT_PHASE_INVALID)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "unknown phase '%s' (expected check, quiesce, thaw, validate or renew)", argv[1]);
      return NULL;
    }
  request = request_new (phase);
  request->operation = g_strdup (ma_kit_env ("MA_OPERATION", ""));
  if (!ma_kit_env_int ("MA_DEADLINE_MS", MA_KIT_DEFAULT_BUDGET_MS, &request->deadline_ms, error)
      || !ma_kit_env_int ("MA_LEASE_SECONDS", 0, &request->lease_seconds, error))
    return NULL;
  return g_steal_pointer (&request);
}

static char *
detail_line (const char *key, const char *value, gboolean ok)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (builder);
  if (key != NULL)
    {
      json_builder_set_member_name (builder, key);
      json_builder_add_string_value (builder, ok ? "ok" : "fail");
    }
  json_builder_set_member_name (builder, "detail");
  json_builder_add_string_value (builder, value != NULL ? value : "");
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  return ma_json_to_string (root);
}

int
ma_kit_oneshot_finish (gboolean ok, const char *detail)
{
  g_autofree char *line = detail_line (NULL, detail, ok);

  if (!ok)
    ma_kit_log ("failed: %s", detail != NULL ? detail : "");
  printf ("%s\n", line);
  fflush (stdout);
  return ok ? 0 : 1;
}

static volatile sig_atomic_t terminated = 0;

static void
on_termination_signal (int signum)
{
  terminated = signum;
}

void
ma_kit_session_init (void)
{
  struct sigaction action = { 0 };

  /* No SA_RESTART: a read blocked on stdin returns EINTR and the plugin releases. */
  action.sa_handler = on_termination_signal;
  sigemptyset (&action.sa_mask);
  sigaction (SIGTERM, &action, NULL);
  sigaction (SIGINT, &action, NULL);
  sigaction (SIGHUP, &action, NULL);
  /* A vanished agent must not kill us before we release: writes then fail with EPIPE. */
  signal (SIGPIPE, SIG_IGN);
}

gboolean
ma_kit_session_terminated (void)
{
  return terminated != 0;
}

static GString *pending_input = NULL;
static gboolean input_closed = FALSE;

/* One line from stdin without its newline, NULL at EOF or on a termination signal. */
static char *
read_line (GError **error)
{
  if (pending_input == NULL)
    pending_input = g_string_new (NULL);

  for (;;)
    {
      char buffer[4096];
      const char *newline = memchr (pending_input->str, '\n', pending_input->len);
      gssize got;

      if (newline != NULL)
        {
          gsize len = (gsize) (newline - pending_input->str);
          char *line = g_strndup (pending_input->str, len);
          g_string_erase (pending_input, 0, (gssize) len + 1);
          return line;
        }
      if (pending_input->len > MA_KIT_MAX_LINE)
        {
          g_string_truncate (pending_input, 0);
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "request line longer than %d bytes", MA_KIT_MAX_LINE);
          return NULL;
        }
      if (input_closed || terminated)
        return NULL;
      got = read (STDIN_FILENO, buffer, sizeof buffer);
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        {
          input_closed = TRUE;
          /* A last line without a newline still counts. */
          if (pending_input->len > 0)
            {
              char *line = g_strndup (pending_input->str, pending_input->len);
              g_string_truncate (pending_input, 0);
              return line;
            }
          return NULL;
        }
      g_string_append_len (pending_input, buffer, got);
    }
}

static gboolean
get_integer_member (JsonObject *obj, const char *member, gint64 *out, GError **error)
{
  return ma_json_get_int (obj, member, out, error);
}

MaKitRequest *
ma_kit_session_read (GError **error)
{
  for (;;)
    {
      g_autoptr(GError) local_error = NULL;
      g_autofree char *line = read_line (&local_error);
      g_autoptr(JsonNode) node = NULL;
      g_autoptr(MaKitRequest) request = NULL;
      JsonObject *obj;
      JsonNode *operation;
      const char *phase = NULL;

      if (line == NULL)
        {
          if (local_error != NULL)
            g_propagate_error (error, g_steal_pointer (&local_error));
          return NULL;
        }
      g_strstrip (line);
      if (*line == '\0')
        continue;

      node = ma_json_parse (line, strlen (line), error);
      if (node == NULL)
        return NULL;
      if (!JSON_NODE_HOLDS_OBJECT (node))
        {
          g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                               "a request must be a JSON object");
          return NULL;
        }
      obj = json_node_get_object (node);
      if (!ma_json_require_string (obj, "phase", &phase, error))
        return NULL;
      request = request_new (ma_kit_phase_from_string (phase));
      if (request->phase == MA_KIT_PHASE_INVALID)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "unknown phase '%s' (expected check, quiesce, thaw, validate or renew)", phase);
          return NULL;
        }
      if (!get_integer_member (obj, "deadline_ms", &request->deadline_ms, error)
          || !get_integer_member (obj, "lease_seconds", &request->lease_seconds, error))
        return NULL;
      if (request->deadline_ms <= 0)
        request->deadline_ms = MA_KIT_DEFAULT_BUDGET_MS;
      /* The operation id is opaque: a string or a number. */
      operation = json_object_get_member (obj, "operation");
      if (operation != NULL && JSON_NODE_HOLDS_VALUE (operation))
        {
          if (json_node_get_value_type (operation) == G_TYPE_STRING)
            request->operation = g_strdup (json_node_get_string (operation));
          else if (json_node_get_value_type (operation) == G_TYPE_INT64)
            request->operation = g_strdup_printf ("%" G_GINT64_FORMAT, json_node_get_int (operation));
        }
      if (request->operation == NULL)
        request->operation = g_strdup ("");
      return g_steal_pointer (&request);
    }
}

gboolean
ma_kit_session_reply (gboolean ok, const char *detail)
{
  g_autofree char *line = detail_line ("status", detail, ok);
  g_autofree char *framed = g_strconcat (line, "\n", NULL);
  gsize len = strlen (framed);
  gsize done = 0;

  if (!ok)
    ma_kit_log ("failed: %s", detail != NULL ? detail : "");
  while (done < len)
    {
      gssize wrote = write (STDOUT_FILENO, framed + done, len - done);
      if (wrote < 0 && errno == EINTR)
        continue;
      if (wrote <= 0)
        return FALSE;
      done += (gsize) wrote;
    }
  return TRUE;
}

static MaKitPhaseFunc
session_phase (const MaKitSession *session, MaKitPhase phase)
{
  switch (phase)
    {
    case MA_KIT_PHASE_CHECK:
      return session->check;
    case MA_KIT_PHASE_QUIESCE:
      return session->quiesce;
    case MA_KIT_PHASE_THAW:
      return session->thaw;
    case MA_KIT_PHASE_VALIDATE:
      return session->validate;
    case MA_KIT_PHASE_RENEW:
      return session->renew;
    case MA_KIT_PHASE_INVALID:
    default:
      return NULL;
    }
}

void
ma_kit_session_run (const MaKitSession *session, gpointer self)
{
  for (;;)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(MaKitRequest) request = ma_kit_session_read (&error);
      g_autoptr(GString) detail = g_string_new (NULL);
      MaKitPhaseFunc phase;
      gboolean ok = FALSE;

      if (request == NULL && error != NULL)
        {
          if (!ma_kit_session_reply (FALSE, error->message))
            break;
          continue;
        }
      if (request == NULL)
        break;
      if (session->configure != NULL && !session->configure (self, detail))
        {
          if (!ma_kit_session_reply (FALSE, detail->str))
            break;
          continue;
        }
      phase = session_phase (session, request->phase);
      if (phase != NULL)
        ok = phase (self, request, detail);
      else
        g_string_append (detail, "unexpected phase");
      if (!ma_kit_session_reply (ok, detail->str))
        break;
    }
}

void
ma_kit_log (const char *format, ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  fprintf (stderr, "%s: %s\n", g_get_prgname () != NULL ? g_get_prgname () : "plugin", message);
  fflush (stderr);
}
