/* prepare.c — the pre-migration snapshot: the commands prepare (snapshot, blockers and the
 * plugins' check: is the guest ready?) and snapshot, and the baseline taken at start. */
#include "prepare.h"

#include "blockers.h"
#include "json.h"
#include "quiesce.h"
#include "snapshot.h"

struct _MaPrepare
{
  MaAgent *agent;
};

static JsonNode *
snapshot_summary (JsonNode *snapshot)
{
  JsonObject *obj = json_node_get_object (snapshot), *summary = json_object_new ();
  static const struct
  {
    const char *part, *member;
  } counts[] = { { "network", "links" }, { "network", "addresses" }, { "network", "routes" },
                 { "storage", "mounts" }, { "storage", "devices" } };
  JsonArray *errors = json_array_new ();
  gint64 taken_at = 0;

  ma_json_get_int (obj, "taken-at", &taken_at, NULL);
  json_object_set_int_member (summary, "taken-at", taken_at);
  for (guint i = 0; i < G_N_ELEMENTS (counts); i++)
    {
      JsonObject *part = NULL;
      JsonArray *array = NULL;
      const char *err = NULL;
      if (!ma_json_get_object (obj, counts[i].part, &part, NULL) || part == NULL)
        continue;
      if (ma_json_get_string (part, "error", &err, NULL) && err != NULL && i % 3 == 0)
        json_array_add_string_element (errors, err);
      if (ma_json_get_array (part, counts[i].member, &array, NULL) && array != NULL)
        json_object_set_int_member (summary, counts[i].member, json_array_get_length (array));
    }
  json_object_set_array_member (summary, "errors", errors);
  return ma_json_new_object_node (summary);
}

static gboolean
snapshot_complete (JsonNode *snapshot)
{
  static const char *const parts[] = { "network", "storage", NULL };

  for (guint i = 0; parts[i] != NULL; i++)
    {
      JsonObject *part = NULL;
      if (!ma_json_get_object (json_node_get_object (snapshot), parts[i], &part, NULL)
          || part == NULL || json_object_has_member (part, "error"))
        return FALSE;
    }
  return TRUE;
}

/* snapshot + blockers, in one worker */
typedef struct
{
  char *reason;
  char *operation;
  gboolean blockers;
  JsonNode *snapshot;
  JsonNode *blockers_report; /* a raw node: the report as blockers wrote it */
  char *blockers_verdict;
  char *blockers_error;
} PrepareData;

static void
prepare_data_free (PrepareData *data)
{
  g_free (data->reason);
  g_free (data->operation);
  g_clear_pointer (&data->snapshot, json_node_unref);
  g_clear_pointer (&data->blockers_report, json_node_unref);
  g_free (data->blockers_verdict);
  g_free (data->blockers_error);
  g_free (data);
}

/* The "verdict" member of a blockers report, from its text. */
static char *
blockers_verdict (const char *text, GError **error)
{
  static const char *const names[] = { "verdict", NULL };
  MaJsonSpan span[1];
  const char *value;

  if (!ma_json_find_members (text, strlen (text), names, span, error))
    return NULL;
  value = text + span[0].offset;
  if (span[0].len < 2 || value[0] != '"' || value[span[0].len - 1] != '"')
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_GENERIC,
                           "the blockers report has no verdict");
      return NULL;
    }
  return g_strndup (value + 1, span[0].len - 2);
}

static void
prepare_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  PrepareData *data = task_data;

  data->snapshot = ma_snapshot_collect (data->reason, data->operation);
  if (data->blockers)
    {
      g_autoptr(GError) error = NULL;
      char *text = ma_blockers_collect_text (NULL, cancellable, &error);

      /* The report goes into the answer as written, and only its verdict is read: a tree of
       * it (up to a MiB of text) would cost many times that in small blocks. */
      if (text != NULL)
        data->blockers_verdict = blockers_verdict (text, &error);
      if (data->blockers_verdict == NULL)
        {
          data->blockers_error = g_strdup (error->message);
          g_free (text);
        }
      else
        data->blockers_report = ma_json_new_raw_node (text);
    }
  g_task_return_boolean (task, TRUE);
}

static void
run_prepare (MaCall *call, const char *reason, const char *operation, gboolean blockers,
             GAsyncReadyCallback done)
{
  g_autoptr(GTask) task = g_task_new (NULL, NULL, done, ma_call_ref (call));
  PrepareData *data = g_new0 (PrepareData, 1);

  data->reason = g_strdup (reason);
  data->operation = g_strdup (operation);
  data->blockers = blockers;
  g_task_set_task_data (task, data, (GDestroyNotify) prepare_data_free);
  g_task_run_in_thread (task, prepare_thread);
}

static gboolean
save_snapshot (MaCall *call, JsonNode *snapshot)
{
  MaAgent *agent = ma_call_get_agent (call);
  g_autoptr(GError) error = NULL;

  if (!ma_snapshot_save (snapshot, ma_agent_get_state_dir (agent), &error))
    {
      g_prefix_error (&error, "cannot keep the snapshot: ");
      ma_call_return_error (call, g_steal_pointer (&error));
      return FALSE;
    }
  return TRUE;
}

typedef struct
{
  MaCall *call;
  JsonObject *obj;
  GPtrArray *not_ready;
  char *operation;
} PrepareAnswer;

static void
prepare_answer (PrepareAnswer *answer)
{
  MaAgent *agent = ma_call_get_agent (answer->call);
  JsonArray *reasons = json_array_new ();

  for (guint i = 0; i < answer->not_ready->len; i++)
    json_array_add_string_element (reasons, answer->not_ready->pdata[i]);
  json_object_set_boolean_member (answer->obj, "ready", answer->not_ready->len == 0);
  json_object_set_array_member (answer->obj, "not-ready", reasons);
  ma_agent_set_last_operation (agent, "prepare", answer->operation,
                               answer->not_ready->len == 0 ? "ready" : "not ready");
  ma_call_return (answer->call, ma_json_new_object_node (answer->obj));
  ma_call_unref (answer->call);
  g_ptr_array_unref (answer->not_ready);
  g_free (answer->operation);
  g_free (answer);
}

static void
prepare_plugins_checked (JsonNode *ret, const GError *error, gpointer user_data)
{
  PrepareAnswer *answer = user_data;
  gboolean ready = TRUE;

  if (ret != NULL && JSON_NODE_HOLDS_OBJECT (ret))
    {
      ma_json_get_bool (json_node_get_object (ret), "ready", &ready, NULL);
      if (!ready)
        g_ptr_array_add (answer->not_ready,
                         g_strdup ("plugins: a check failed (see plugins.plugins)"));
      json_object_set_member (answer->obj, "plugins", json_node_copy (ret));
    }
  else
    {
      g_ptr_array_add (answer->not_ready, g_strdup_printf ("plugins: check could not run: %s",
                                                           error != NULL ? error->message
                                                                         : "no answer"));
      json_object_set_null_member (answer->obj, "plugins");
    }
  prepare_answer (answer);
}

static void
prepare_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr(MaCall) call = user_data;
  PrepareData *data = g_task_get_task_data (G_TASK (result));
  MaAgent *agent = ma_call_get_agent (call);
  MaLifecycle *lc = ma_agent_get_lifecycle (agent);
  g_autoptr(GError) error = NULL;
  JsonObject *obj = json_object_new ();
  g_autoptr(GPtrArray) not_ready = g_ptr_array_new_with_free_func (g_free);
  PrepareAnswer *answer;
  MaQuiesce *quiesce;

  if (!save_snapshot (call, data->snapshot))
    {
      json_object_unref (obj);
      return;
    }
  if (!snapshot_complete (data->snapshot))
    g_ptr_array_add (not_ready, g_strdup ("the snapshot is incomplete"));
  if (data->blockers_report != NULL)
    {
      if (g_strcmp0 (data->blockers_verdict, "blocked") == 0)
        g_ptr_array_add (not_ready, g_strdup ("blockers: a filesystem freeze would block"));
      json_object_set_member (obj, "blockers", g_steal_pointer (&data->blockers_report));
    }
  else
    {
      if (data->blockers_error != NULL)
        g_ptr_array_add (not_ready, g_strdup_printf ("blockers could not be collected: %s",
                                                     data->blockers_error));
      json_object_set_null_member (obj, "blockers");
    }
  if (ma_lifecycle_allows (ma_lifecycle_get_state (lc), MA_STATE_PREPARED)
      && !ma_lifecycle_enter (lc, MA_STATE_PREPARED, data->operation, "prepare", &error))
    g_debug ("lifecycle: %s", error->message);
  json_object_set_string_member (obj, "operation", data->operation);
  json_object_set_member (obj, "snapshot", snapshot_summary (data->snapshot));

  answer = g_new0 (PrepareAnswer, 1);
  answer->call = g_steal_pointer (&call);
  answer->obj = obj;
  answer->not_ready = g_steal_pointer (&not_ready);
  answer->operation = g_strdup (data->operation);
  /* the plugins' check phase, when the quiesce engine is there and its check allowed */
  quiesce = ma_quiesce_from_agent (agent);
  if (quiesce != NULL && ma_commands_is_enabled (ma_agent_get_commands (agent), "check"))
    ma_quiesce_check_async (quiesce, prepare_plugins_checked, answer);
  else
    {
      json_object_set_null_member (obj, "plugins");
      prepare_answer (answer);
    }
}

static void
cmd_prepare (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "operation", NULL };
  const char *operation = NULL;

  if (!ma_call_check_arguments (call, allowed) || !ma_call_get_operation (call, TRUE, &operation))
    return;
  run_prepare (call, "prepare", operation, TRUE, prepare_done);
}

static void
snapshot_taken (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr(MaCall) call = user_data;
  PrepareData *data = g_task_get_task_data (G_TASK (result));

  if (save_snapshot (call, data->snapshot))
    ma_call_return (call, json_node_copy (data->snapshot));
}

static void
cmd_snapshot (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "take", NULL };
  JsonObject *args = ma_call_get_arguments (call);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) stored = NULL;
  gboolean take = FALSE;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!ma_json_get_bool (args, "take", &take, &error))
    {
      ma_call_return_error (call, g_steal_pointer (&error));
      return;
    }
  if (take)
    {
      run_prepare (call, "command", NULL, FALSE, snapshot_taken);
      return;
    }
  stored = ma_snapshot_load (ma_agent_get_state_dir (ma_call_get_agent (call)), &error);
  if (stored == NULL)
    ma_call_return_error (call, g_steal_pointer (&error));
  else
    ma_call_return (call, g_steal_pointer (&stored));
}


static void
baseline_taken (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MaPrepare *self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) snapshot = ma_snapshot_collect_finish (result, &error);
  g_autoptr(JsonNode) existing = ma_snapshot_load (ma_agent_get_state_dir (self->agent), NULL);

  /* a prepare that raced the baseline wins */
  if (existing == NULL && snapshot != NULL
      && !ma_snapshot_save (snapshot, ma_agent_get_state_dir (self->agent), &error))
    g_warning ("cannot keep the baseline snapshot: %s", error->message);
  ma_agent_release (self->agent);
}

static const MaCommandSpec prepare_commands[] = {
  { "prepare", cmd_prepare, "take the pre-migration snapshot and say whether the guest is ready" },
  { "snapshot", cmd_snapshot, "the stored snapshot (take=true takes a new one)" },
  { NULL }
};

static const MaModuleClass prepare_module = {
  .name = "prepare",
  .commands = prepare_commands,
  .free = g_free,
};

gboolean
ma_prepare_register (MaAgent *agent, GError **error)
{
  g_autoptr(JsonNode) existing = NULL;
  MaPrepare *self = g_new0 (MaPrepare, 1);

  self->agent = agent;
  ma_agent_add_module (agent, &prepare_module, self);

  /* the baseline, unless this agent restarted after a prepare (then that one counts) */
  existing = ma_snapshot_load (ma_agent_get_state_dir (agent), NULL);
  if (existing == NULL)
    {
      ma_agent_hold (agent);
      ma_snapshot_collect_async ("baseline", NULL, NULL, baseline_taken, self);
    }
  return TRUE;
}
