/* corecmds.c — the core commands every agent has: ping, sync, sync-delimited,
 * info, status and events. */
#include "corecmds.h"

#include "buildconfig.h"

#include "json.h"
#include "protocol.h"

#define MA_EVENTS_MAX_PER_REPLY 1000

static void
cmd_ping (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { NULL };

  if (!ma_call_check_arguments (call, allowed))
    return;
  ma_call_return (call, ma_json_new_empty_object ());
}

/* sync echoes its id argument, as guest-sync does; -delimited prefixes 0xFF. */
static void
sync_answer (MaCall *call, gboolean delimited)
{
  static const char *const allowed[] = { "id", NULL };
  JsonObject *args = ma_call_get_arguments (call);

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!json_object_has_member (args, "id"))
    {
      ma_call_return_new_error (call, MA_ERROR_INVALID_ARGUMENT, "Parameter 'id' is missing");
      return;
    }
  ma_call_set_delimited (call, delimited);
  ma_call_return (call, json_node_copy (json_object_get_member (args, "id")));
}

static void
cmd_sync (MaCall *call, gpointer user_data)
{
  sync_answer (call, FALSE);
}

static void
cmd_sync_delimited (MaCall *call, gpointer user_data)
{
  sync_answer (call, TRUE);
}

static void
cmd_info (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { NULL };
  MaAgent *agent = ma_call_get_agent (call);
  JsonObject *obj;

  if (!ma_call_check_arguments (call, allowed))
    return;
  obj = json_object_new ();
  json_object_set_string_member (obj, "version", MA_VERSION);
  json_object_set_int_member (obj, "protocol", MA_PROTOCOL_VERSION);
  json_object_set_member (obj, "commands", ma_commands_to_json (ma_agent_get_commands (agent)));
  json_object_set_member (obj, "capabilities", ma_agent_capabilities_to_json (agent));
  json_object_set_int_member (obj, "max-request-bytes", MA_PROTOCOL_MAX_REQUEST_BYTES);
  json_object_set_int_member (obj, "max-reply-bytes", MA_PROTOCOL_MAX_REPLY_BYTES);
  ma_call_return (call, ma_json_new_object_node (obj));
}

static void
cmd_status (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { NULL };
  MaAgent *agent = ma_call_get_agent (call);
  MaLifecycle *lc = ma_agent_get_lifecycle (agent);
  JsonObject *obj;

  if (!ma_call_check_arguments (call, allowed))
    return;
  obj = json_object_new ();
  json_object_set_string_member (obj, "state", ma_state_to_string (ma_lifecycle_get_state (lc)));
  if (ma_lifecycle_get_operation (lc) != NULL)
    json_object_set_string_member (obj, "operation", ma_lifecycle_get_operation (lc));
  json_object_set_int_member (obj, "state-since", ma_lifecycle_get_changed_at (lc) / G_USEC_PER_SEC);
  json_object_set_double_member (obj, "uptime", ma_agent_get_uptime (agent));
  json_object_set_member (obj, "clients", ma_agent_clients_to_json (agent));
  json_object_set_member (obj, "last-operation", ma_agent_last_operation_to_json (agent));
  json_object_set_int_member (obj, "last-event-seq",
                              (gint64) ma_events_last_seq (ma_agent_get_events (agent)));
  ma_call_return (call, ma_json_new_object_node (obj));
}

static void
cmd_events (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "after", "limit", NULL };
  MaAgent *agent = ma_call_get_agent (call);
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  gint64 after = 0, limit = MA_EVENTS_MAX_PER_REPLY;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!ma_json_get_int (args, "after", &after, &error)
      || !ma_json_get_int (args, "limit", &limit, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (after < 0 || limit < 1 || limit > MA_EVENTS_MAX_PER_REPLY)
    {
      ma_call_return_new_error (call, MA_ERROR_INVALID_ARGUMENT,
                                "Parameter 'after' must be >= 0 and 'limit' from 1 to %d",
                                MA_EVENTS_MAX_PER_REPLY);
      return;
    }
  /* written from the ring's texts: no tree for a thousand events */
  ma_call_return (call, ma_json_new_raw_node (ma_events_since_text (ma_agent_get_events (agent),
                                                                    (guint64) after, (guint) limit)));
}

static const MaCommandSpec core_commands[] = {
  { "ping", cmd_ping, "answers {} — the agent is alive" },
  { "sync", cmd_sync, "echoes its 'id' argument, to resynchronise a stream" },
  { "sync-delimited", cmd_sync_delimited, "like sync, with a 0xFF byte before the reply" },
  { "guest-sync", cmd_sync, "alias of sync, for qemu-ga clients" },
  { "guest-sync-delimited", cmd_sync_delimited, "alias of sync-delimited, for qemu-ga clients" },
  { "info", cmd_info, "versions, commands and capabilities of this agent" },
  { "status", cmd_status, "lifecycle state, uptime, clients and the last operation" },
  { "events", cmd_events, "buffered events after a sequence number" },
  { NULL }
};

static const MaModuleClass core_module = {
  .name = "core",
  .commands = core_commands,
};

gboolean
ma_core_commands_register (MaAgent *agent, GError **error)
{
  ma_agent_add_module (agent, &core_module, NULL);
  return TRUE;
}
