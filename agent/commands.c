/* commands.c — the command table (name → handler), allow/block configuration, and
 * MaCall: one request in flight, answered exactly once, possibly from a later main-loop turn. */
#include "commands.h"

#include <string.h>

#include "heaptrim.h"
#include "json.h"

struct _MaCall
{
  gint refcount;
  MaAgent *agent;
  MaRequest *request;
  MaCallReplyFunc reply_func;
  gpointer user_data;
  GDestroyNotify notify;
  gint64 peer_uid;
  char *peer;
  gboolean delimited;
  gboolean done;
};

typedef struct
{
  char *name;
  char *summary;
  MaCommandFunc func;
  gpointer user_data;
  gboolean enabled;
  char *disabled_reason;
} MaCommand;

struct _MaCommands
{
  GHashTable *table; /* name → MaCommand */
};

/* Commands a client needs to resynchronise; never disabled. */
static const char *const always_enabled[] = {
  "sync", "sync-delimited", "guest-sync", "guest-sync-delimited", NULL,
};

MaCall *
ma_call_new (MaAgent *agent, MaRequest *request, MaCallReplyFunc reply_func, gpointer user_data,
             GDestroyNotify notify)
{
  MaCall *call = g_new0 (MaCall, 1);

  call->refcount = 1;
  call->agent = agent;
  call->request = request;
  call->reply_func = reply_func;
  call->user_data = user_data;
  call->notify = notify;
  call->peer_uid = -1;
  return call;
}

MaCall *
ma_call_ref (MaCall *call)
{
  g_atomic_int_inc (&call->refcount);
  return call;
}

void
ma_call_unref (MaCall *call)
{
  if (call == NULL || !g_atomic_int_dec_and_test (&call->refcount))
    return;
  if (!call->done)
    g_warning ("command '%s' was dropped without an answer", call->request->execute);
  if (call->notify != NULL)
    call->notify (call->user_data);
  ma_request_free (call->request);
  g_free (call->peer);
  g_free (call);
}

const char *
ma_call_get_name (MaCall *call)
{
  return call->request->execute;
}

JsonObject *
ma_call_get_arguments (MaCall *call)
{
  return call->request->arguments;
}

JsonNode *
ma_call_get_id (MaCall *call)
{
  return call->request->id;
}

MaAgent *
ma_call_get_agent (MaCall *call)
{
  return call->agent;
}

gint64
ma_call_get_peer_uid (MaCall *call)
{
  return call->peer_uid;
}

void
ma_call_set_peer_uid (MaCall *call, gint64 uid)
{
  call->peer_uid = uid;
}

const char *
ma_call_get_peer (MaCall *call)
{
  return call->peer != NULL ? call->peer : "unknown";
}

void
ma_call_set_peer (MaCall *call, const char *peer)
{
  g_free (call->peer);
  call->peer = g_strdup (peer);
}

void
ma_call_set_delimited (MaCall *call, gboolean delimited)
{
  call->delimited = delimited;
}

gboolean
ma_call_is_done (MaCall *call)
{
  return call->done;
}

static void
call_reply (MaCall *call, char *line /* transfer full */)
{
  g_autofree char *owned = line;

  g_return_if_fail (!call->done);
  call->done = TRUE;
  if (call->delimited)
    {
      char *delimited = g_strdup_printf ("%c%s", MA_PROTOCOL_RESET_BYTE, owned);
      g_free (owned);
      owned = delimited;
    }
  if (call->reply_func != NULL)
    call->reply_func (call, owned, call->user_data);
  ma_heap_trim_schedule ();
}

void
ma_call_return (MaCall *call, JsonNode *ret)
{
  g_autoptr(JsonNode) owned = ret;
  char *line = ma_reply_return (call->request->id, owned);
  gsize len = strlen (line);

  if (len > MA_PROTOCOL_MAX_REPLY_BYTES)
    {
      /* the last guard: no command's answer may pass what a client can read */
      g_autofree char *desc = g_strdup_printf (
        "the reply to '%s' would be %" G_GSIZE_FORMAT " bytes, over the protocol's limit of %d",
        call->request->execute, len, MA_PROTOCOL_MAX_REPLY_BYTES);
      g_warning ("%s", desc);
      g_free (line);
      line = ma_reply_error_class (call->request->id, "GenericError", desc);
    }
  call_reply (call, line);
}

void
ma_call_return_error (MaCall *call, GError *error)
{
  g_autoptr(GError) owned = error;

  g_debug ("command '%s' failed: %s", call->request->execute, owned->message);
  call_reply (call, ma_reply_error (call->request->id, owned));
}

void
ma_call_return_new_error (MaCall *call, MaError code, const char *format, ...)
{
  va_list args;
  GError *error;

  va_start (args, format);
  error = g_error_new_valist (MA_ERROR, code, format, args);
  va_end (args);
  ma_call_return_error (call, error);
}

gboolean
ma_call_check_arguments (MaCall *call, const char *const *allowed)
{
  GError *error = NULL;

  if (ma_json_check_members (call->request->arguments, allowed, &error))
    return TRUE;
  ma_call_return_error (call, error);
  return FALSE;
}

gboolean
ma_call_get_operation (MaCall *call, gboolean required, const char **operation)
{
  g_autoptr(GError) error = NULL;
  JsonObject *args = ma_call_get_arguments (call);

  if (!(required ? ma_json_require_string (args, "operation", operation, &error)
                 : ma_json_get_string (args, "operation", operation, &error)))
    {
      ma_call_return_error (call, g_steal_pointer (&error));
      return FALSE;
    }
  if (*operation != NULL
      && ((*operation)[0] == '\0' || strlen (*operation) > MA_OPERATION_ID_MAX))
    {
      ma_call_return_new_error (call, MA_ERROR_INVALID_ARGUMENT,
                                "Parameter 'operation' must be 1 to %d characters",
                                MA_OPERATION_ID_MAX);
      return FALSE;
    }
  return TRUE;
}


static void
command_free (MaCommand *cmd)
{
  g_free (cmd->name);
  g_free (cmd->summary);
  g_free (cmd->disabled_reason);
  g_free (cmd);
}

MaCommands *
ma_commands_new (void)
{
  MaCommands *self = g_new0 (MaCommands, 1);

  self->table = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) command_free);
  return self;
}

void
ma_commands_free (MaCommands *self)
{
  if (self == NULL)
    return;
  g_hash_table_unref (self->table);
  g_free (self);
}

void
ma_commands_add (MaCommands *self, const char *name, MaCommandFunc func, gpointer user_data,
                 const char *summary)
{
  MaCommand *cmd = g_new0 (MaCommand, 1);

  g_return_if_fail (!g_hash_table_contains (self->table, name));
  cmd->name = g_strdup (name);
  cmd->summary = g_strdup (summary);
  cmd->func = func;
  cmd->user_data = user_data;
  cmd->enabled = TRUE;
  g_hash_table_insert (self->table, cmd->name, cmd);
}

gboolean
ma_commands_configure (MaCommands *self, const char *const *allow, const char *const *block,
                       GError **error)
{
  GHashTableIter iter;
  MaCommand *cmd;
  g_autoptr(GString) unknown = g_string_new (NULL);
  gboolean have_allow = allow != NULL && allow[0] != NULL;

  for (guint pass = 0; pass < 2; pass++)
    {
      const char *const *list = pass == 0 ? allow : block;
      for (guint i = 0; list != NULL && list[i] != NULL; i++)
        if (!g_hash_table_contains (self->table, list[i]))
          g_string_append_printf (unknown, "%s%s", unknown->len ? ", " : "", list[i]);
    }
  if (unknown->len > 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "configuration [commands] names unknown commands: %s", unknown->str);
      return FALSE;
    }

  g_hash_table_iter_init (&iter, self->table);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &cmd))
    {
      g_clear_pointer (&cmd->disabled_reason, g_free);
      cmd->enabled = TRUE;
      if (g_strv_contains (always_enabled, cmd->name))
        continue;
      if (block != NULL && g_strv_contains (block, cmd->name))
        {
          cmd->enabled = FALSE;
          cmd->disabled_reason = g_strdup ("blocked by configuration ([commands] block)");
        }
      else if (have_allow && !g_strv_contains (allow, cmd->name))
        {
          cmd->enabled = FALSE;
          cmd->disabled_reason = g_strdup ("not in the configuration's allow list ([commands] allow)");
        }
    }
  return TRUE;
}

gboolean
ma_commands_is_enabled (MaCommands *self, const char *name)
{
  MaCommand *cmd = g_hash_table_lookup (self->table, name);

  return cmd != NULL && cmd->enabled;
}

void
ma_commands_dispatch (MaCommands *self, MaCall *call)
{
  g_autoptr(MaCall) hold = ma_call_ref (call);
  MaCommand *cmd = g_hash_table_lookup (self->table, ma_call_get_name (call));

  if (cmd == NULL)
    {
      ma_call_return_new_error (call, MA_ERROR_COMMAND_NOT_FOUND,
                                "The command %s has not been found", ma_call_get_name (call));
      return;
    }
  if (!cmd->enabled)
    {
      ma_call_return_new_error (call, MA_ERROR_COMMAND_NOT_FOUND,
                                "The command %s has been disabled for this instance: %s",
                                cmd->name, cmd->disabled_reason);
      return;
    }
  cmd->func (call, cmd->user_data);
}

static gint
compare_commands (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (((const MaCommand *) a)->name, ((const MaCommand *) b)->name);
}

JsonNode *
ma_commands_to_json (MaCommands *self)
{
  g_autoptr(GList) values = g_list_sort (g_hash_table_get_values (self->table), compare_commands);
  JsonArray *array = json_array_new ();

  for (GList *l = values; l != NULL; l = l->next)
    {
      MaCommand *cmd = l->data;
      JsonObject *obj = json_object_new ();
      json_object_set_string_member (obj, "name", cmd->name);
      json_object_set_boolean_member (obj, "enabled", cmd->enabled);
      if (cmd->summary != NULL)
        json_object_set_string_member (obj, "summary", cmd->summary);
      if (cmd->disabled_reason != NULL)
        json_object_set_string_member (obj, "disabled-reason", cmd->disabled_reason);
      json_array_add_object_element (array, obj);
    }
  return ma_json_new_array_node (array);
}
