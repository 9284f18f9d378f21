/* quiesce.c — the quiesce engine: operations (all-or-nothing quiesce in dependency order,
 * thaw, renew), their commands and the module; its other parts are in quiesce-private.h. */
#include "quiesce.h"

#include <errno.h>
#include <string.h>

#include "config.h"
#include "freezeguard.h"
#include "json.h"
#include "quiesce-private.h"
#include "snapshot.h"

/* ---- helpers ---- */

void
quiesce_enter_state (MaQuiesce *q, MaState state, const char *operation, const char *reason)
{
  g_autoptr(GError) error = NULL;
  MaLifecycle *lc = ma_agent_get_lifecycle (q->agent);

  if (ma_lifecycle_get_state (lc) == state && state != MA_STATE_QUIESCED)
    return;
  if (!ma_lifecycle_enter (lc, state, operation, reason, &error))
    g_message ("lifecycle: %s", error->message);
}

void
quiesce_record_last (MaQuiesce *q, MaPhaseResult *result)
{
  JsonObject *phases = g_hash_table_lookup (q->last, result->plugin->name);
  JsonObject *entry = ma_phase_result_to_json (result);

  if (phases == NULL)
    {
      phases = json_object_new ();
      g_hash_table_insert (q->last, g_strdup (result->plugin->name), phases);
    }
  json_object_remove_member (entry, "plugin");
  json_object_remove_member (entry, "phase");
  json_object_set_int_member (entry, "at", g_get_real_time () / G_USEC_PER_SEC);
  json_object_set_object_member (phases, ma_plugin_phase_to_string (result->phase), entry);
}

void
quiesce_emit_plugin_failed (MaQuiesce *q, MaPhaseResult *result, const char *operation)
{
  JsonObject *data = json_object_new ();

  json_object_set_string_member (data, "plugin", result->plugin->name);
  json_object_set_string_member (data, "phase", ma_plugin_phase_to_string (result->phase));
  if (operation != NULL)
    json_object_set_string_member (data, "operation", operation);
  json_object_set_string_member (data, "detail", result->detail ? result->detail : "failed");
  json_object_set_boolean_member (data, "timed-out", result->timed_out);
  ma_agent_emit_event (q->agent, "PLUGIN_FAILED", ma_json_new_object_node (data));
}

/* PLUGIN_FAILED for a thaw that did not run at all (no phase result) */
void
quiesce_emit_thaw_not_run (MaQuiesce *q, const char *name, const char *operation,
                           const char *detail)
{
  JsonObject *data = json_object_new ();

  json_object_set_string_member (data, "plugin", name);
  json_object_set_string_member (data, "phase", ma_plugin_phase_to_string (MA_PLUGIN_PHASE_THAW));
  json_object_set_string_member (data, "operation", operation);
  json_object_set_string_member (data, "detail", detail);
  json_object_set_boolean_member (data, "timed-out", FALSE);
  ma_agent_emit_event (q->agent, "PLUGIN_FAILED", ma_json_new_object_node (data));
}

static void
on_batch_item_done (MaBatch *batch, MaPhaseResult *result, gpointer user_data)
{
  MaQuiesce *q = user_data;

  quiesce_record_last (q, result);
  if (!result->ok
      && (batch->phase == MA_PLUGIN_PHASE_QUIESCE || batch->phase == MA_PLUGIN_PHASE_THAW
          || batch->phase == MA_PLUGIN_PHASE_RENEW))
    quiesce_emit_plugin_failed (q, result, batch->operation);
}

static void
on_batch_thaw_not_run (MaBatch *batch, const char *name, const char *detail, gpointer user_data)
{
  quiesce_emit_thaw_not_run (user_data, name, batch->operation, detail);
}

/* Every batch of the engine records its results and reports failures as PLUGIN_FAILED. */
MaBatch *
quiesce_batch_new (MaQuiesce *q, MaPluginSet *set, MaPluginPhase phase, const char *operation,
                   guint lease_seconds)
{
  static const MaBatchObserver observer = {
    .item_done = on_batch_item_done,
    .thaw_not_run = on_batch_thaw_not_run,
  };

  return ma_batch_new (set, phase, operation, lease_seconds, ma_agent_get_state_dir (q->agent),
                       &observer, q);
}

MaPluginSet *
quiesce_reload (MaQuiesce *q)
{
  /* while plugins are held, the set they were quiesced with stays */
  if (q->op == NULL)
    {
      g_auto(GStrv) dirs = ma_plugin_search_path (ma_agent_get_config (q->agent));
      g_clear_pointer (&q->set, ma_plugin_set_unref);
      q->set = ma_plugin_set_load ((const char *const *) dirs);
    }
  return q->set;
}

void
quiesce_remember (MaQuiesce *q, const char *id, const char *state, const char *error)
{
  JsonObject *obj = json_object_new ();

  json_object_set_string_member (obj, "state", state);
  if (error != NULL)
    json_object_set_string_member (obj, "error", error);
  if (!g_hash_table_contains (q->history, id))
    g_queue_push_tail (q->history_ids, g_strdup (id));
  g_hash_table_replace (q->history, g_strdup (id), obj);
  while (g_queue_get_length (q->history_ids) > MA_QUIESCE_HISTORY)
    {
      g_autofree char *old = g_queue_pop_head (q->history_ids);
      g_hash_table_remove (q->history, old);
    }
}

/* ---- operations ---- */

static void
op_node_free (MaOpNode *node)
{
  if (node->session != NULL)
    ma_plugin_process_abandon (g_steal_pointer (&node->session));
  ma_plugin_unref (node->plugin);
  g_free (node);
}

static void
operation_free (MaOperation *op)
{
  g_clear_handle_id (&op->lease_id, g_source_remove);
  g_ptr_array_unref (op->nodes);
  g_ptr_array_unref (op->quiesce_calls);
  g_ptr_array_unref (op->thaw_calls);
  g_ptr_array_unref (op->renew_calls);
  g_ptr_array_unref (op->journaled);
  g_clear_pointer (&op->quiesce_results, json_array_unref);
  g_clear_pointer (&op->thaw_results, json_array_unref);
  g_clear_pointer (&op->renew_results, json_array_unref);
  ma_plugin_set_unref (op->set);
  g_free (op->id);
  g_free (op->failure);
  g_free (op->renew_failure);
  g_free (op->release_reason);
  g_free (op);
}

JsonArray *
quiesce_op_names (MaOperation *op, gboolean only_quiesced)
{
  JsonArray *names = json_array_new ();

  for (guint i = 0; i < op->nodes->len; i++)
    {
      MaOpNode *node = op->nodes->pdata[i];
      if (!only_quiesced || node->quiesced)
        json_array_add_string_element (names, node->plugin->name);
    }
  return names;
}

JsonNode *
quiesce_op_summary (MaOperation *op, gboolean already)
{
  static const char *const state_names[] = { "quiescing", "quiesced", "renewing", "releasing" };
  JsonObject *obj = json_object_new ();

  json_object_set_string_member (obj, "operation", op->id);
  json_object_set_string_member (obj, "state", state_names[op->state]);
  json_object_set_array_member (obj, "plugins", quiesce_op_names (op, FALSE));
  json_object_set_int_member (obj, "lease_seconds", op->lease_seconds);
  json_object_set_double_member (obj, "expires_in", quiesce_op_expires_in (op));
  json_object_set_double_member (obj, "seconds", op->quiesce_seconds);
  if (op->quiesce_results != NULL)
    json_object_set_array_member (obj, "results", json_array_ref (op->quiesce_results));
  if (op->renew_results != NULL)
    {
      json_object_set_array_member (obj, "renew_results", json_array_ref (op->renew_results));
      json_object_set_double_member (obj, "renew_seconds", op->renew_seconds);
    }
  if (already)
    json_object_set_boolean_member (obj, "already", TRUE);
  return ma_json_new_object_node (obj);
}

void
quiesce_answer_calls (GPtrArray *calls, JsonNode *ret, const GError *error)
{
  for (guint i = 0; i < calls->len; i++)
    {
      MaCall *call = calls->pdata[i];
      if (error != NULL)
        ma_call_return_error (call, g_error_copy (error));
      else
        ma_call_return (call, json_node_copy (ret));
      ma_call_unref (call);
    }
  g_ptr_array_set_size (calls, 0);
}

void
quiesce_shutdown_done (MaQuiesce *q)
{
  if (q->holding && q->op == NULL && !q->replaying && !q->testing
      && (q->retry == NULL || q->retry->batch == NULL))
    {
      q->holding = FALSE;
      ma_agent_release (q->agent);
    }
}

static void
on_released (MaBatch *batch, gpointer user_data)
{
  MaOperation *op = user_data;
  MaQuiesce *q = op->q;
  g_autoptr(GString) failures = g_string_new (NULL);
  g_autoptr(GPtrArray) failed = quiesce_thaw_failures (batch, failures);
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *data = json_object_new ();
  JsonObject *obj;
  double seconds = (double) (g_get_monotonic_time () - batch->started) / G_USEC_PER_SEC;

  op->thaw_results = ma_batch_results (batch);
  /* a oneshot plugin whose thaw failed may still hold its application: it stays in the
   * journal and is thawed again until that succeeds */
  if (failed->len > 0)
    quiesce_thaw_retry_begin (q, op->id, failed, failures->str);
  else
    quiesce_journal_remove (q);

  json_object_set_string_member (data, "operation", op->id);
  json_object_set_string_member (data, "reason", op->release_reason);
  json_object_set_array_member (data, "plugins", quiesce_op_names (op, FALSE));
  json_object_set_double_member (data, "seconds", seconds);
  if (failures->len > 0)
    json_object_set_string_member (data, "failures", failures->str);
  if (failed->len > 0 && q->retry->timer_id != 0)
    json_object_set_double_member (data, "next_retry_seconds", quiesce_thaw_retry_next_in (q));
  ma_agent_emit_event (q->agent, "THAWED", ma_json_new_object_node (data));

  obj = json_object_new ();
  json_object_set_string_member (obj, "operation", op->id);
  json_object_set_string_member (obj, "reason", op->release_reason);
  json_object_set_double_member (obj, "seconds", seconds);
  json_object_set_array_member (obj, "results", json_array_ref (op->thaw_results));
  ret = ma_json_new_object_node (obj);

  if (failures->len > 0)
    {
      g_autofree char *retried = failed->len > 0 ? quiesce_thaw_retry_names (q->retry) : NULL;
      g_set_error (&error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "thaw failed for %s%s%s%s",
                   failures->str, retried ? "; the agent retries the thaw of " : "",
                   retried ? retried : "",
                   retried == NULL            ? ""
                   : q->retry->timer_id != 0 ? " (`thaw` retries at once)"
                                             : " at its next start");
      quiesce_enter_state (q, MA_STATE_FAILED, op->id, error->message);
    }
  else if (op->release_state == MA_STATE_THAWED)
    quiesce_enter_state (q, MA_STATE_THAWED, op->id, op->release_reason);

  if (op->failure != NULL)
    {
      /* a failed quiesce, now rolled back */
      g_autoptr(GError) qerror = NULL;
      g_autoptr(GString) rolled = g_string_new (NULL);
      for (guint i = 0; i < batch->items->len; i++)
        {
          MaBatchItem *item = batch->items->pdata[i];
          g_string_append_printf (rolled, "%s%s", rolled->len ? ", " : "", item->plugin->name);
        }
      g_set_error (&qerror, MA_ERROR, op->failure_timeout ? MA_ERROR_TIMEOUT : MA_ERROR_PLUGIN_FAILED,
                   "quiesce of operation %s failed: %s; rolled back in reverse order: %s%s%s",
                   op->id, op->failure, rolled->len ? rolled->str : "nothing to roll back",
                   failures->len ? "; rollback failures: " : "", failures->str);
      quiesce_enter_state (q, MA_STATE_FAILED, op->id, qerror->message);
      quiesce_remember (q, op->id, "failed", qerror->message);
      quiesce_answer_calls (op->quiesce_calls, NULL, qerror);
    }
  else if (op->renew_failure != NULL)
    {
      /* a failed renew: the plugins could not promise the new lease, so none is held */
      g_autoptr(GError) rerror = NULL;
      g_set_error (&rerror, MA_ERROR,
                   op->renew_failure_timeout ? MA_ERROR_TIMEOUT : MA_ERROR_PLUGIN_FAILED,
                   "renew of operation %s failed: %s; the lease was not extended and every "
                   "plugin was released (thawed in reverse order)%s%s", op->id,
                   op->renew_failure, failures->len ? "; thaw failures: " : "", failures->str);
      quiesce_enter_state (q, MA_STATE_FAILED, op->id, rerror->message);
      quiesce_remember (q, op->id, "failed", rerror->message);
      quiesce_answer_calls (op->renew_calls, NULL, rerror);
    }
  else
    {
      /* a thaw being retried is not over: the same id again repeats its failure */
      quiesce_remember (q, op->id,
                failed->len > 0                          ? "failed"
                : op->release_state == MA_STATE_EXPIRED ? "expired"
                                                         : "thawed",
                error ? error->message : NULL);
      /* only a quiesce that a thaw (or a stop) released before it answered waits here: it
       * answers like the release, never "quiesced" */
      quiesce_answer_calls (op->quiesce_calls, ret, error);
    }
  quiesce_answer_calls (op->thaw_calls, ret, error);
  ma_agent_set_last_operation (q->agent, "thaw", op->id, error ? "fail" : "ok");

  ma_batch_free (batch);
  q->op = NULL;
  operation_free (op);
  quiesce_shutdown_done (q);
}

void
quiesce_operation_release (MaOperation *op, const char *reason, MaState state)
{
  MaBatch *batch;

  g_clear_handle_id (&op->lease_id, g_source_remove);
  op->state = OP_RELEASING;
  op->release_reason = g_strdup (reason);
  op->release_state = state;
  batch = quiesce_batch_new (op->q, op->set, MA_PLUGIN_PHASE_THAW, op->id, op->lease_seconds);
  batch->reverse = TRUE;
  for (guint i = 0; i < op->nodes->len; i++)
    {
      MaOpNode *node = op->nodes->pdata[i];
      if (node->attempted)
        ma_batch_add (batch, node->plugin, &node->session);
    }
  g_message ("releasing operation %s (%s): %u plugins", op->id, reason, batch->items->len);
  ma_batch_start (batch, on_released, op);
}

static void
on_quiesce_starting (MaBatch *batch, GPtrArray *items, gpointer user_data)
{
  MaOperation *op = user_data;
  gboolean journal = FALSE;

  for (guint w = 0; w < items->len; w++)
    {
      MaBatchItem *item = items->pdata[w];
      for (guint i = 0; i < op->nodes->len; i++)
        {
          MaOpNode *node = op->nodes->pdata[i];
          if (node->plugin == item->plugin)
            node->attempted = TRUE;
        }
      if (item->plugin->protocol == MA_PLUGIN_ONESHOT)
        {
          g_ptr_array_add (op->journaled, g_strdup (item->plugin->name));
          journal = TRUE;
        }
    }
  /* before any of them runs: an agent that dies from here on thaws them at its next start */
  if (journal)
    quiesce_journal_write (op);
}

static void
on_snapshot_taken (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MaAgent *agent = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) snapshot = ma_snapshot_collect_finish (result, &error);

  if (snapshot == NULL || !ma_snapshot_save (snapshot, ma_agent_get_state_dir (agent), &error))
    g_warning ("no snapshot after quiesce: %s", error->message);
  ma_agent_release (agent);
}

static void
on_quiesced (MaBatch *batch, gpointer user_data)
{
  MaOperation *op = user_data;
  MaQuiesce *q = op->q;
  MaBatchItem *failed = ma_batch_first_failure (batch);
  g_autoptr(JsonNode) ret = NULL;

  op->quiesce_seconds = (double) (g_get_monotonic_time () - batch->started) / G_USEC_PER_SEC;
  op->quiesce_results = ma_batch_results (batch);
  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      MaOpNode *node = op->nodes->pdata[i];
      node->quiesced = item->state == ITEM_OK;
    }

  if (failed != NULL)
    {
      op->failure = g_strdup_printf ("plugin %s, phase quiesce: %s", failed->plugin->name,
                                     failed->result->detail ? failed->result->detail : "failed");
      op->failure_timeout = failed->result->timed_out;
      ma_batch_free (batch);
      quiesce_operation_release (op, "rollback", MA_STATE_FAILED);
      return;
    }
  ma_batch_free (batch);
  if (op->release_requested || q->shutting_down)
    {
      quiesce_operation_release (op, q->shutting_down ? "agent stopping" : "thaw", MA_STATE_THAWED);
      return;
    }

  op->state = OP_QUIESCED;
  quiesce_lease_start (op);
  quiesce_enter_state (q, MA_STATE_QUIESCED, op->id, "plugins quiesced");
  {
    JsonObject *data = json_object_new ();
    json_object_set_string_member (data, "operation", op->id);
    json_object_set_array_member (data, "plugins", quiesce_op_names (op, TRUE));
    json_object_set_int_member (data, "lease_seconds", op->lease_seconds);
    json_object_set_double_member (data, "seconds", op->quiesce_seconds);
    ma_agent_emit_event (q->agent, "QUIESCED", ma_json_new_object_node (data));
  }
  ma_agent_set_last_operation (q->agent, "quiesce", op->id, "ok");
  ret = quiesce_op_summary (op, FALSE);
  quiesce_answer_calls (op->quiesce_calls, ret, NULL);
  /* the state just before the freeze is what validation should compare with (as
   * `snapshot take=true` would store it, unless configuration blocks that command) */
  if (ma_commands_is_enabled (ma_agent_get_commands (q->agent), "snapshot"))
    {
      ma_agent_hold (q->agent);
      ma_snapshot_collect_async ("command", NULL, NULL, on_snapshot_taken, q->agent);
    }
}

/* ---- argument helpers ---- */

static gboolean
get_operation_id (JsonObject *args, const char **out, GError **error)
{
  const char *id = NULL;

  if (!ma_json_get_string (args, "operation", &id, error))
    return FALSE;
  if (id != NULL)
    {
      gsize len = strlen (id);
      if (len == 0 || len > MA_QUIESCE_MAX_OPERATION_ID)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "Parameter 'operation' must have 1 to %d characters",
                       MA_QUIESCE_MAX_OPERATION_ID);
          return FALSE;
        }
      for (const char *p = id; *p != '\0'; p++)
        if (g_ascii_iscntrl (*p))
          {
            g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                                 "Parameter 'operation' must not contain control characters");
            return FALSE;
          }
    }
  *out = id;
  return TRUE;
}

gboolean
quiesce_get_lease (JsonObject *args, gint64 *out, GError **error)
{
  if (!ma_json_get_int (args, "lease_seconds", out, error))
    return FALSE;
  if (*out < 1 || *out > MA_QUIESCE_MAX_LEASE_SECONDS)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "Parameter 'lease_seconds' must be from 1 to %d", MA_QUIESCE_MAX_LEASE_SECONDS);
      return FALSE;
    }
  return TRUE;
}

/* The usable plugins named (all when names is NULL), in quiesce order. */
GPtrArray *
quiesce_select_plugins (MaPluginSet *set, char **names, GError **error)
{
  GPtrArray *ordered = ma_plugin_set_get_ordered (set);
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_plugin_unref);

  for (guint i = 0; names != NULL && names[i] != NULL; i++)
    {
      MaPlugin *p = ma_plugin_set_lookup (set, names[i]);
      if (p == NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_NOT_FOUND, "no plugin named '%s'", names[i]);
          return NULL;
        }
      if (p->status != MA_PLUGIN_USABLE)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "plugin '%s' cannot run: %s",
                       names[i], p->reason);
          return NULL;
        }
    }
  for (guint i = 0; i < ordered->len; i++)
    {
      MaPlugin *p = ordered->pdata[i];
      if (names == NULL || g_strv_contains ((const char *const *) names, p->name))
        g_ptr_array_add (out, ma_plugin_ref (p));
    }
  return g_steal_pointer (&out);
}

/* ---- commands ---- */

static void
cmd_quiesce (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "operation", "lease_seconds", "plugins", NULL };
  MaQuiesce *q = user_data;
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  const char *id = NULL;
  gint64 lease = MA_QUIESCE_DEFAULT_LEASE_SECONDS;
  g_auto(GStrv) names = NULL;
  g_autofree char *generated = NULL;
  g_autoptr(GPtrArray) plugins = NULL;
  MaLifecycle *lc = ma_agent_get_lifecycle (q->agent);
  MaOperation *op;
  MaBatch *batch;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!get_operation_id (args, &id, &error) || !quiesce_get_lease (args, &lease, &error)
      || !ma_json_get_strv (args, "plugins", &names, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (q->op != NULL && g_strcmp0 (q->op->id, id) == 0)
    {
      /* idempotent: the same operation again joins or repeats its answer */
      if (q->op->state == OP_QUIESCING)
        g_ptr_array_add (q->op->quiesce_calls, ma_call_ref (call));
      else if (q->op->state == OP_QUIESCED || q->op->state == OP_RENEWING)
        ma_call_return (call, quiesce_op_summary (q->op, TRUE));
      else
        ma_call_return_new_error (call, MA_ERROR_BUSY, "operation %s is being released (%s)",
                                  id, q->op->release_reason);
      return;
    }
  if (id != NULL && g_hash_table_contains (q->history, id))
    {
      JsonObject *past = g_hash_table_lookup (q->history, id);
      const char *state = NULL, *message = NULL;
      ma_json_get_string (past, "state", &state, NULL);
      ma_json_get_string (past, "error", &message, NULL);
      if (g_strcmp0 (state, "failed") == 0 && message != NULL)
        ma_call_return_new_error (call, MA_ERROR_PLUGIN_FAILED, "%s", message);
      else
        ma_call_return_new_error (call, MA_ERROR_BUSY,
                                  "operation %s is over (%s); quiesce again with a new "
                                  "operation id", id, state);
      return;
    }
  if (q->op != NULL)
    {
      ma_call_return_new_error (call, MA_ERROR_BUSY,
                                "operation %s holds the plugins (%s); thaw it first", q->op->id,
                                q->op->state == OP_RELEASING ? "releasing" : "quiesced");
      return;
    }
  if (q->replaying || q->testing || q->shutting_down)
    {
      ma_call_return_new_error (call, MA_ERROR_BUSY, "%s",
                                q->replaying ? "releasing plugins left quiesced by the previous "
                                               "run of the agent"
                                : q->testing ? "a plugin-test is running"
                                             : "the agent is shutting down");
      return;
    }
  if (q->retry != NULL)
    {
      g_autofree char *pending = quiesce_thaw_retry_names (q->retry);
      ma_call_return_new_error (call, MA_ERROR_BUSY,
                                "the thaw of plugin %s (operation %s) failed and is being "
                                "retried (%u retries so far): its application may still be "
                                "quiesced; `thaw` retries it at once", pending,
                                q->retry->operation, q->retry->attempts);
      return;
    }
  if (!ma_lifecycle_allows (ma_lifecycle_get_state (lc), MA_STATE_QUIESCED))
    {
      ma_call_return_new_error (call, MA_ERROR_BUSY, "cannot quiesce in state '%s'",
                                ma_state_to_string (ma_lifecycle_get_state (lc)));
      return;
    }
  quiesce_reload (q);
  plugins = quiesce_select_plugins (q->set, names, &error);
  if (plugins == NULL)
    {
      ma_call_return_error (call, error);
      return;
    }
  if (id == NULL)
    id = generated = g_strdup_printf ("quiesce-%" G_GINT64_FORMAT, g_get_real_time ());

  op = g_new0 (MaOperation, 1);
  op->q = q;
  op->id = g_strdup (id);
  op->set = ma_plugin_set_ref (q->set);
  op->lease_seconds = (guint) lease;
  op->state = OP_QUIESCING;
  op->nodes = g_ptr_array_new_with_free_func ((GDestroyNotify) op_node_free);
  op->quiesce_calls = g_ptr_array_new ();
  op->thaw_calls = g_ptr_array_new ();
  op->renew_calls = g_ptr_array_new ();
  op->journaled = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (op->quiesce_calls, ma_call_ref (call));
  q->op = op;

  batch = quiesce_batch_new (q, op->set, MA_PLUGIN_PHASE_QUIESCE, op->id, op->lease_seconds);
  batch->stop_on_failure = TRUE;
  batch->starting = on_quiesce_starting;
  for (guint i = 0; i < plugins->len; i++)
    {
      MaOpNode *node = g_new0 (MaOpNode, 1);
      node->plugin = ma_plugin_ref (plugins->pdata[i]);
      g_ptr_array_add (op->nodes, node);
      ma_batch_add (batch, node->plugin, &node->session);
    }
  g_message ("quiesce operation %s: %u plugins, lease %u s", op->id, plugins->len,
             op->lease_seconds);
  ma_batch_start (batch, on_quiesced, op);
}

static void
cmd_thaw (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "operation", NULL };
  MaQuiesce *q = user_data;
  GError *error = NULL;
  const char *id = NULL;
  MaOperation *op = q->op;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!get_operation_id (ma_call_get_arguments (call), &id, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (op == NULL && q->retry != NULL && (id == NULL || g_strcmp0 (id, q->retry->operation) == 0))
    {
      /* plugins whose thaw failed: try again now (or join the attempt running) */
      if (q->shutting_down && q->retry->batch == NULL)
        {
          ma_call_return_new_error (call, MA_ERROR_BUSY,
                                    "the agent is stopping; the failed thaw of operation %s "
                                    "stays in its journal and its next start retries it",
                                    q->retry->operation);
          return;
        }
      g_ptr_array_add (q->retry->calls, ma_call_ref (call));
      if (q->retry->batch == NULL)
        quiesce_thaw_retry_run (q, "thaw");
      return;
    }
  if (op == NULL && q->retry != NULL && id != NULL
      && !g_hash_table_contains (q->history, id))
    {
      g_autofree char *pending = quiesce_thaw_retry_names (q->retry);
      ma_call_return_new_error (call, MA_ERROR_NOT_FOUND,
                                "operation %s is neither current nor recent; the thaw of plugin "
                                "%s (operation %s) failed and is being retried: `thaw` without "
                                "an operation (or with %s) retries it at once",
                                id, pending, q->retry->operation, q->retry->operation);
      return;
    }
  if (op == NULL || (id != NULL && g_strcmp0 (id, op->id) != 0))
    {
      JsonObject *obj;
      if (id != NULL && op != NULL && !g_hash_table_contains (q->history, id))
        {
          ma_call_return_new_error (call, MA_ERROR_NOT_FOUND,
                                    "operation %s is not the one holding the plugins (%s is)",
                                    id, op->id);
          return;
        }
      /* nothing held: a thaw is always safe to repeat (qemu-ga calls it after every freeze) */
      obj = json_object_new ();
      if (id != NULL)
        json_object_set_string_member (obj, "operation", id);
      json_object_set_array_member (obj, "results", json_array_new ());
      json_object_set_boolean_member (obj, "already", TRUE);
      ma_call_return (call, ma_json_new_object_node (obj));
      return;
    }
  g_ptr_array_add (op->thaw_calls, ma_call_ref (call));
  if (op->state == OP_QUIESCED)
    quiesce_operation_release (op, "thaw", MA_STATE_THAWED);
  else if (op->state == OP_QUIESCING || op->state == OP_RENEWING)
    {
      /* once the quiesce or the renew has answered */
      op->release_requested = TRUE;
      g_message ("thaw of operation %s waits for its %s to end", op->id,
                 op->state == OP_QUIESCING ? "quiesce" : "renew");
    }
}

static void
on_renewed (MaBatch *batch, gpointer user_data)
{
  MaOperation *op = user_data;
  MaQuiesce *q = op->q;
  g_autoptr(GString) failures = g_string_new (NULL);
  g_autoptr(JsonNode) ret = NULL;
  gboolean timed_out = FALSE;

  g_clear_pointer (&op->renew_results, json_array_unref);
  op->renew_results = ma_batch_results (batch);
  op->renew_seconds = (double) (g_get_monotonic_time () - batch->started) / G_USEC_PER_SEC;
  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      if (item->state != ITEM_FAILED)
        continue;
      g_string_append_printf (failures, "%splugin %s, phase renew: %s", failures->len ? "; " : "",
                              item->plugin->name,
                              item->result->detail ? item->result->detail : "failed");
      timed_out = timed_out || item->result->timed_out;
    }
  ma_batch_free (batch);

  if (failures->len > 0)
    {
      /* keeping the old lease would leave applications whose own hold may end before it
       * (or was never extended) reported as quiesced: release everything, say so */
      g_warning ("renew of operation %s failed (%s): releasing every plugin", op->id,
                 failures->str);
      op->renew_failure = g_strdup (failures->str);
      op->renew_failure_timeout = timed_out;
      quiesce_operation_release (op, "renew failed", MA_STATE_FAILED);
      return;
    }

  op->lease_seconds = op->renew_lease;
  op->state = OP_QUIESCED;
  /* counted from when the renew was accepted: the agent's lease never outlasts what the
   * plugins were just given */
  quiesce_lease_start_from (op, op->renew_started);
  g_message ("operation %s renewed: lease %u s (plugins renewed in %.3f s)", op->id,
             op->lease_seconds, op->renew_seconds);
  ret = quiesce_op_summary (op, FALSE);
  quiesce_answer_calls (op->renew_calls, ret, NULL);
  if (op->release_requested || q->shutting_down)
    quiesce_operation_release (op, q->shutting_down ? "agent stopping" : "thaw", MA_STATE_THAWED);
}

static void
cmd_renew (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "operation", "lease_seconds", NULL };
  MaQuiesce *q = user_data;
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  const char *id = NULL;
  gint64 lease;
  MaOperation *op = q->op;
  MaBatch *batch;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!get_operation_id (args, &id, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (op == NULL || op->state == OP_RELEASING || (id != NULL && g_strcmp0 (id, op->id) != 0))
    {
      ma_call_return_new_error (call, MA_ERROR_NOT_FOUND, "no quiesced operation%s%s to renew",
                                id ? " " : "", id ? id : "");
      return;
    }
  lease = op->lease_seconds;
  if (!quiesce_get_lease (args, &lease, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (op->state != OP_QUIESCED)
    {
      /* quiescing: the plugins are being given the first lease right now */
      ma_call_return_new_error (call, MA_ERROR_BUSY, "operation %s is %s; renew once it has "
                                "answered", op->id,
                                op->state == OP_QUIESCING ? "still quiescing"
                                                          : "already renewing its plugins");
      return;
    }

  op->renew_lease = (guint) lease;
  op->renew_started = g_get_monotonic_time ();
  batch = quiesce_batch_new (q, NULL, MA_PLUGIN_PHASE_RENEW, op->id, op->renew_lease);
  for (guint i = 0; i < op->nodes->len; i++)
    {
      MaOpNode *node = op->nodes->pdata[i];
      if (node->quiesced && ma_plugin_has_phase (node->plugin, MA_PLUGIN_PHASE_RENEW))
        ma_batch_add (batch, node->plugin, &node->session);
    }
  /* while the plugins renew (each within its RenewTimeout) the old lease does not run
   * out under them; a failed renew releases at once */
  g_clear_handle_id (&op->lease_id, g_source_remove);
  op->state = OP_RENEWING;
  g_ptr_array_add (op->renew_calls, ma_call_ref (call));
  if (batch->items->len > 0)
    g_message ("renew operation %s: lease %u s, %u plugins", op->id, op->renew_lease,
               batch->items->len);
  /* renew holds nothing new: every plugin renews at once */
  ma_batch_start (batch, on_renewed, op);
}

/* ---- shutdown ---- */

static void
on_shutdown (MaAgent *agent, gpointer user_data)
{
  MaQuiesce *q = user_data;

  q->shutting_down = TRUE;
  if (q->retry != NULL && q->retry->timer_id != 0)
    {
      /* never wait for the backoff: the journal keeps them for the next start */
      g_clear_handle_id (&q->retry->timer_id, g_source_remove);
      g_message ("stopping with the thaw of %s (operation %s) still failing: the next start "
                 "retries it", q->retry->failures, q->retry->operation);
    }
  if (q->op == NULL && !q->replaying && !q->testing
      && (q->retry == NULL || q->retry->batch == NULL))
    return;
  q->holding = TRUE;
  ma_agent_hold (agent);
  if (q->op != NULL && q->op->state == OP_QUIESCED)
    {
      g_message ("stopping while operation %s is quiesced: releasing every plugin first",
                 q->op->id);
      quiesce_operation_release (q->op, "agent stopping", MA_STATE_THAWED);
    }
  /* quiescing/renewing: released when that ends; releasing/replaying/testing/retrying a
   * thaw: finishing (within the plugins' thaw timeouts) */
}

static void
quiesce_free (gpointer data)
{
  MaQuiesce *q = data;

  if (q->op != NULL)
    {
      /* the shutdown deadline passed with plugins still held: sessions get EOF */
      g_ptr_array_foreach (q->op->quiesce_calls, (GFunc) (void (*) (void)) ma_call_unref, NULL);
      g_ptr_array_foreach (q->op->thaw_calls, (GFunc) (void (*) (void)) ma_call_unref, NULL);
      g_ptr_array_foreach (q->op->renew_calls, (GFunc) (void (*) (void)) ma_call_unref, NULL);
      g_ptr_array_set_size (q->op->quiesce_calls, 0);
      g_ptr_array_set_size (q->op->thaw_calls, 0);
      g_ptr_array_set_size (q->op->renew_calls, 0);
      operation_free (g_steal_pointer (&q->op));
    }
  if (q->retry != NULL)
    {
      g_ptr_array_foreach (q->retry->calls, (GFunc) (void (*) (void)) ma_call_unref, NULL);
      g_ptr_array_set_size (q->retry->calls, 0);
      g_clear_pointer (&q->retry, quiesce_thaw_retry_free);
    }
  g_clear_pointer (&q->set, ma_plugin_set_unref);
  g_hash_table_unref (q->last);
  g_hash_table_unref (q->history);
  g_queue_free_full (q->history_ids, g_free);
  g_free (q);
}

static const MaCommandSpec quiesce_commands[] = {
  { "quiesce", cmd_quiesce,
    "quiesce the applications through their plugins, all or nothing, with a lease" },
  { "thaw", cmd_thaw, "release every quiesced plugin in reverse order" },
  { "renew", cmd_renew, "extend the lease of the quiesced operation" },
  { "check", quiesce_cmd_check,
    "run every plugin's check (or validate) phase: can the applications quiesce?" },
  { "plugins", quiesce_cmd_plugins, "the quiesce plugins found, their state and last timings" },
  { "plugin-test", quiesce_cmd_plugin_test,
    "run every phase of one plugin against the live application, with timings" },
  { NULL }
};

static const char *const quiesce_capabilities[] = { "quiesce", NULL };

static const MaModuleClass quiesce_module = {
  .name = "quiesce",
  .commands = quiesce_commands,
  .capabilities = quiesce_capabilities,
  .shutdown = on_shutdown,
  .free = quiesce_free,
};

MaQuiesce *
ma_quiesce_from_agent (MaAgent *agent)
{
  return ma_agent_get_module (agent, &quiesce_module);
}

gboolean
ma_quiesce_register (MaAgent *agent, GError **error)
{
  MaQuiesce *q = g_new0 (MaQuiesce, 1);
  g_autofree char *journal = NULL;

  q->agent = agent;
  q->last = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                   (GDestroyNotify) json_object_unref);
  q->history = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify) json_object_unref);
  q->history_ids = g_queue_new ();
  quiesce_thaw_retry_configure (q);
  ma_agent_add_module (agent, &quiesce_module, q);

  journal = quiesce_journal_path (q);
  if (g_file_test (journal, G_FILE_TEST_EXISTS))
    {
      q->replaying = TRUE;
      g_idle_add (quiesce_replay_journal, q);
    }
  return TRUE;
}
