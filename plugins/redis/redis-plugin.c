/* redis-plugin.c — the Redis quiesce plugin (oneshot): CLIENT PAUSE WRITE for the lease (the
 * server ends the pause by itself if thaw never comes; renew extends it), SAVE/BGSAVE, UNPAUSE. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "plugin-kit.h"

/* Pause length when the agent gave no lease (a plugin run by hand). */
#define REDIS_DEFAULT_PAUSE_SECONDS 60
#define REDIS_MIN_BUDGET_MS 1000
/* How often BGSAVE's progress is polled. */
#define REDIS_BGSAVE_POLL_US (50 * 1000)

typedef enum
{
  SAVE_NONE,
  SAVE_FOREGROUND,
  SAVE_BACKGROUND,
} SaveMode;

static void
redis_context_free (redisContext *context)
{
  if (context != NULL)
    redisFree (context);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (redisContext, redis_context_free)

static void
redis_reply_free (redisReply *reply)
{
  if (reply != NULL)
    freeReplyObject (reply);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (redisReply, redis_reply_free)

/* Run a command given as argv; NULL (detail set) on a transport or server error. */
static redisReply *
command (redisContext *context, GString *detail, const char *first, ...) G_GNUC_NULL_TERMINATED;

static redisReply *
command (redisContext *context, GString *detail, const char *first, ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GString) shown = g_string_new (NULL);
  g_autoptr(redisReply) reply = NULL;
  va_list args;

  va_start (args, first);
  for (const char *arg = first; arg != NULL; arg = va_arg (args, const char *))
    {
      g_ptr_array_add (argv, (gpointer) arg);
      /* Never show a password in a detail. */
      g_string_append_printf (shown, "%s%s", shown->len > 0 ? " " : "",
                              g_ascii_strcasecmp (first, "AUTH") == 0 && shown->len > 0 ? "***"
                                                                                       : arg);
    }
  va_end (args);
  reply = redisCommandArgv (context, (int) argv->len, (const char **) argv->pdata, NULL);
  if (reply == NULL)
    {
      g_string_append_printf (detail, "%s failed: %s", shown->str, context->errstr);
      return NULL;
    }
  if (reply->type == REDIS_REPLY_ERROR)
    {
      g_string_append_printf (detail, "%s failed: %s", shown->str, reply->str);
      return NULL;
    }
  return g_steal_pointer (&reply);
}

/* REDIS_SOCKET, or REDIS_HOST and REDIS_PORT (default 127.0.0.1:6379);
 * REDIS_USER and REDIS_PASSWORD for AUTH. */
static redisContext *
connect_within (const MaKitRequest *request, GString *detail)
{
  gint64 budget_ms = ma_kit_request_remaining_ms (request, REDIS_MIN_BUDGET_MS);
  struct timeval timeout = { .tv_sec = budget_ms / 1000, .tv_usec = (budget_ms % 1000) * 1000 };
  const char *socket_path = ma_kit_env ("REDIS_SOCKET", NULL);
  const char *password = ma_kit_env ("REDIS_PASSWORD", NULL);
  const char *user = ma_kit_env ("REDIS_USER", NULL);
  g_autoptr(redisContext) context = NULL;
  g_autoptr(redisReply) auth = NULL;
  g_autoptr(GError) error = NULL;
  gint64 port;

  if (socket_path != NULL)
    context = redisConnectUnixWithTimeout (socket_path, timeout);
  else
    {
      if (!ma_kit_env_int ("REDIS_PORT", 6379, &port, &error) || port == 0 || port > G_MAXUINT16)
        {
          g_string_append (detail, error != NULL ? error->message : "REDIS_PORT out of range");
          return NULL;
        }
      context = redisConnectWithTimeout (ma_kit_env ("REDIS_HOST", "127.0.0.1"), (int) port,
                                         timeout);
    }
  if (context == NULL || context->err != 0)
    {
      g_string_append_printf (detail, "cannot connect: %s",
                              context != NULL ? context->errstr : "out of memory");
      return NULL;
    }
  redisSetTimeout (context, timeout);
  if (password != NULL)
    {
      auth = user != NULL ? command (context, detail, "AUTH", user, password, NULL)
                          : command (context, detail, "AUTH", password, NULL);
      if (auth == NULL)
        return NULL;
    }
  return g_steal_pointer (&context);
}

static gboolean
load_save_mode (SaveMode *mode, GString *detail)
{
  const char *value = ma_kit_env ("REDIS_SAVE", "none");

  if (g_strcmp0 (value, "none") == 0)
    *mode = SAVE_NONE;
  else if (g_strcmp0 (value, "save") == 0)
    *mode = SAVE_FOREGROUND;
  else if (g_strcmp0 (value, "bgsave") == 0)
    *mode = SAVE_BACKGROUND;
  else
    {
      g_string_append_printf (detail, "REDIS_SAVE=%s: expected none, save or bgsave", value);
      return FALSE;
    }
  return TRUE;
}

/* One field of INFO's text ("name:value" lines); NULL when absent. */
static char *
info_field (const char *info, const char *name)
{
  g_auto(GStrv) lines = g_strsplit (info, "\n", -1);
  gsize len = strlen (name);

  for (guint i = 0; lines[i] != NULL; i++)
    if (strncmp (lines[i], name, len) == 0 && lines[i][len] == ':')
      return g_strstrip (g_strdup (lines[i] + len + 1));
  return NULL;
}

static char *
info (redisContext *context, const char *section, GString *detail)
{
  g_autoptr(redisReply) reply = command (context, detail, "INFO", section, NULL);

  if (reply == NULL)
    return NULL;
  if (reply->type != REDIS_REPLY_STRING)
    {
      g_string_append_printf (detail, "INFO %s: unexpected reply", section);
      return NULL;
    }
  return g_strndup (reply->str, reply->len);
}

static gboolean
wait_for_bgsave (redisContext *context, const MaKitRequest *request, GString *detail)
{
  for (;;)
    {
      g_autofree char *persistence = info (context, "persistence", detail);
      g_autofree char *in_progress = NULL;
      g_autofree char *status = NULL;

      if (persistence == NULL)
        return FALSE;
      in_progress = info_field (persistence, "rdb_bgsave_in_progress");
      if (g_strcmp0 (in_progress, "0") == 0)
        {
          status = info_field (persistence, "rdb_last_bgsave_status");
          if (g_strcmp0 (status, "ok") != 0)
            {
              g_string_append_printf (detail, "BGSAVE ended with status %s", status);
              return FALSE;
            }
          return TRUE;
        }
      if (ma_kit_request_remaining_ms (request, 0) <= 0)
        {
          g_string_append (detail, "BGSAVE still running at the deadline");
          return FALSE;
        }
      g_usleep (REDIS_BGSAVE_POLL_US);
    }
}

/* CLIENT PAUSE WRITE for the lease (or REDIS_PAUSE_SECONDS) from now. The pause ends by itself
 * when the lease does: nothing stays paused without the agent. While a pause is on, Redis keeps
 * the later of the two ends. The length paused is stored in *seconds. */
static gboolean
pause_writes (redisContext *context, const MaKitRequest *request, gint64 *seconds,
              GString *detail)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(redisReply) paused = NULL;
  g_autofree char *pause_ms = NULL;
  gint64 pause_seconds;

  if (!ma_kit_env_int ("REDIS_PAUSE_SECONDS",
                       request->lease_seconds > 0 ? request->lease_seconds
                                                  : REDIS_DEFAULT_PAUSE_SECONDS,
                       &pause_seconds, &error))
    {
      g_string_append (detail, error->message);
      return FALSE;
    }
  *seconds = MAX (pause_seconds, 1);
  pause_ms = g_strdup_printf ("%" G_GINT64_FORMAT, *seconds * 1000);
  paused = command (context, detail, "CLIENT", "PAUSE", pause_ms, "WRITE", NULL);
  return paused != NULL;
}

static gboolean
run_quiesce (redisContext *context, const MaKitRequest *request, GString *detail)
{
  g_autoptr(redisReply) saved = NULL;
  gint64 pause_seconds;
  SaveMode save;

  if (!load_save_mode (&save, detail))
    return FALSE;
  if (!pause_writes (context, request, &pause_seconds, detail))
    return FALSE;

  if (save == SAVE_FOREGROUND)
    saved = command (context, detail, "SAVE", NULL);
  else if (save == SAVE_BACKGROUND)
    saved = command (context, detail, "BGSAVE", NULL);
  if (save != SAVE_NONE
      && (saved == NULL || (save == SAVE_BACKGROUND && !wait_for_bgsave (context, request, detail))))
    {
      /* All or nothing: no pause stays behind a failed quiesce. */
      g_autoptr(GString) ignored = g_string_new (NULL);
      redis_reply_free (command (context, ignored, "CLIENT", "UNPAUSE", NULL));
      return FALSE;
    }
  g_string_append_printf (detail, "writes paused for at most %" G_GINT64_FORMAT " s%s",
                          pause_seconds,
                          save == SAVE_FOREGROUND   ? ", dataset saved"
                          : save == SAVE_BACKGROUND ? ", dataset saved in the background"
                                                    : "");
  return TRUE;
}

/* The agent renewed its lease: pause again from now for the new lease, so the server does not
 * resume writes at the first lease's end. Nothing is saved again. A server that is not paused
 * any more (restarted, or someone ran CLIENT UNPAUSE) is paused again: the writes it took in
 * between cannot be undone, but none follow. */
static gboolean
run_renew (redisContext *context, const MaKitRequest *request, GString *detail)
{
  gint64 pause_seconds;

  if (!pause_writes (context, request, &pause_seconds, detail))
    return FALSE;
  g_string_append_printf (detail, "writes paused for at most %" G_GINT64_FORMAT " s from now",
                          pause_seconds);
  return TRUE;
}

static gboolean
run_thaw (redisContext *context, GString *detail)
{
  g_autoptr(redisReply) reply = command (context, detail, "CLIENT", "UNPAUSE", NULL);

  if (reply == NULL)
    return FALSE;
  g_string_append (detail, "writes resumed");
  return TRUE;
}

/* check and validate: the server answers, is not loading, and says what it is. */
static gboolean
run_status (redisContext *context, GString *detail)
{
  g_autoptr(redisReply) pong = command (context, detail, "PING", NULL);
  g_autofree char *server = NULL;
  g_autofree char *replication = NULL;
  g_autofree char *persistence = NULL;
  g_autofree char *version = NULL;
  g_autofree char *role = NULL;
  g_autofree char *loading = NULL;
  g_autofree char *last_bgsave = NULL;

  if (pong == NULL || (server = info (context, "server", detail)) == NULL
      || (replication = info (context, "replication", detail)) == NULL
      || (persistence = info (context, "persistence", detail)) == NULL)
    return FALSE;
  version = info_field (server, "redis_version");
  role = info_field (replication, "role");
  loading = info_field (persistence, "loading");
  last_bgsave = info_field (persistence, "rdb_last_bgsave_status");
  g_string_append_printf (detail, "redis %s, role %s, last background save %s",
                          version != NULL ? version : "?", role != NULL ? role : "?",
                          last_bgsave != NULL ? last_bgsave : "?");
  if (g_strcmp0 (loading, "1") == 0)
    {
      g_string_append (detail, "; still loading its dataset");
      return FALSE;
    }
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaKitRequest) request = NULL;
  g_autoptr(GString) detail = g_string_new (NULL);
  g_autoptr(redisContext) context = NULL;
  gboolean ok = FALSE;

  g_set_prgname ("redis");
  request = ma_kit_oneshot_request (argc, argv, &error);
  if (request == NULL)
    return ma_kit_oneshot_finish (FALSE, error->message);
  context = connect_within (request, detail);
  if (context == NULL)
    return ma_kit_oneshot_finish (FALSE, detail->str);

  switch (request->phase)
    {
    case MA_KIT_PHASE_CHECK:
    case MA_KIT_PHASE_VALIDATE:
      ok = run_status (context, detail);
      break;
    case MA_KIT_PHASE_QUIESCE:
      ok = run_quiesce (context, request, detail);
      break;
    case MA_KIT_PHASE_THAW:
      ok = run_thaw (context, detail);
      break;
    case MA_KIT_PHASE_RENEW:
      ok = run_renew (context, request, detail);
      break;
    case MA_KIT_PHASE_INVALID:
    default:
      g_string_append (detail, "unexpected phase");
      break;
    }
  return ma_kit_oneshot_finish (ok, detail->str);
}
