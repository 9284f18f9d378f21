/* quiesce.c — the quiesce engine: all-or-nothing quiesce of the plugins in dependency order
 * with a lease, thaw, renew, check, plugins and plugin-test, and the journal for restarts. */
#include "quiesce.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "config.h"
#include "freezeguard.h"
#include "json.h"
#include "plugin-run.h"
#include "plugin.h"
#include "snapshot.h"

typedef struct _MaBatch MaBatch;
typedef struct _MaOperation MaOperation;

/* ---- batches: one phase over a set of plugins, in order, parallel where independent ---- */

typedef enum
{
  ITEM_PENDING,
  ITEM_RUNNING,
  ITEM_OK,
  ITEM_FAILED,
} MaItemState;

typedef struct
{
  MaBatch *batch;
  MaPlugin *plugin;
  MaPluginProcess **session; /* the operation's slot for a session plugin, or NULL */
  MaItemState state;
  MaPhaseResult *result;
} MaBatchItem;

typedef void (*MaBatchFunc) (MaBatch *batch, gpointer user_data);
typedef void (*MaBatchItemFunc) (MaBatch *batch, MaBatchItem *item, gpointer user_data);

struct _MaBatch
{
  MaQuiesce *q;
  MaPluginSet *set; /* for ordering; NULL runs everything at once */
  MaPluginPhase phase;
  gboolean reverse;
  gboolean stop_on_failure;
  gboolean stopped;
  char *operation;
  guint lease_seconds;
  GPtrArray *items; /* MaBatchItem* */
  guint running;
  gint64 started;
  MaBatchFunc done;
  MaBatchItemFunc starting;
  gpointer user_data;
  /* a thaw of named plugins (a retry or a replay), besides the items: */
  GPtrArray *held_back;       /* names present but unable to run their thaw now: still pending */
  GString *held_back_failures; /* "NAME: cannot run now: WHY; …" */
  GPtrArray *dropped;         /* names whose manifest no longer exists: given up */
};

/* Oneshot plugins whose thaw failed: they may still hold their application, so they are
 * thawed again (after a backoff, or at once by `thaw`) until it succeeds; the journal keeps
 * them for a restarted agent meanwhile. */
typedef struct
{
  char *operation;
  GPtrArray *names;  /* plugin names, still to thaw */
  char *failures;    /* why the last attempt failed */
  guint attempts;    /* retries run so far */
  guint timer_id;    /* the next automatic retry, or 0 */
  gint64 due;        /* monotonic µs of that retry */
  MaBatch *batch;    /* the retry running, or NULL */
  char *reason;      /* of the running retry: "retry" (the timer) or "thaw" (the command) */
  GPtrArray *calls;  /* MaCall*: thaw commands waiting for the running retry */
} MaThawRetry;

struct _MaQuiesce
{
  MaAgent *agent;
  MaPluginSet *set;
  GHashTable *last;     /* plugin name → JsonObject {phase → result} */
  MaOperation *op;      /* the operation holding plugins, or NULL */
  GHashTable *history;  /* operation id → JsonObject {"state", "error"} */
  GQueue *history_ids;
  gboolean replaying;
  gboolean testing;
  gboolean shutting_down;
  gboolean holding; /* ma_agent_hold() taken for shutdown */
  guint checks;     /* check batches running */
  MaThawRetry *retry; /* oneshot plugins whose thaw failed, or NULL */
  double retry_delays[MA_QUIESCE_THAW_RETRY_MAX_DELAYS]; /* seconds; the last one repeats */
  guint n_retry_delays;
};

typedef enum
{
  OP_QUIESCING,
  OP_QUIESCED,
  OP_RENEWING, /* quiesced; the plugins' renew phase runs, the lease clock is stopped */
  OP_RELEASING,
} MaOpState;

typedef struct
{
  MaPlugin *plugin;
  MaPluginProcess *session;
  gboolean attempted; /* quiesce started: thaw it on release */
  gboolean quiesced;
} MaOpNode;

struct _MaOperation
{
  MaQuiesce *q;
  char *id;
  MaPluginSet *set;
  GPtrArray *nodes; /* MaOpNode*, quiesce order */
  guint lease_seconds;
  gint64 expires_at; /* monotonic µs */
  guint lease_id;
  MaOpState state;
  GPtrArray *quiesce_calls; /* MaCall* */
  GPtrArray *thaw_calls;    /* MaCall* */
  GPtrArray *renew_calls;   /* MaCall*: the renew waiting for its plugins */
  GPtrArray *journaled;     /* names of oneshot plugins whose quiesce started */
  char *failure;            /* why the quiesce failed */
  gboolean failure_timeout;
  guint renew_lease;        /* the lease the running renew asked for */
  gint64 renew_started;     /* monotonic µs: the new lease counts from here */
  char *renew_failure;      /* why the renew failed: the operation was released for it */
  gboolean renew_failure_timeout;
  gboolean release_requested;
  char *release_reason;
  MaState release_state;
  double quiesce_seconds;
  JsonArray *quiesce_results;
  JsonArray *thaw_results;
  JsonArray *renew_results; /* the last renew's phase results */
  double renew_seconds;
};

static void operation_release (MaOperation *op, const char *reason, MaState state);

/* ---- helpers ---- */

static void
enter_state (MaQuiesce *q, MaState state, const char *operation, const char *reason)
{
  g_autoptr(GError) error = NULL;
  MaLifecycle *lc = ma_agent_get_lifecycle (q->agent);

  if (ma_lifecycle_get_state (lc) == state && state != MA_STATE_QUIESCED)
    return;
  if (!ma_lifecycle_enter (lc, state, operation, reason, &error))
    g_message ("lifecycle: %s", error->message);
}

static void
record_last (MaQuiesce *q, MaPhaseResult *result)
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

static void
emit_plugin_failed (MaQuiesce *q, MaPhaseResult *result, const char *operation)
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
static void
emit_thaw_not_run (MaQuiesce *q, const char *name, const char *operation, const char *detail)
{
  JsonObject *data = json_object_new ();

  json_object_set_string_member (data, "plugin", name);
  json_object_set_string_member (data, "phase", ma_plugin_phase_to_string (MA_PLUGIN_PHASE_THAW));
  json_object_set_string_member (data, "operation", operation);
  json_object_set_string_member (data, "detail", detail);
  json_object_set_boolean_member (data, "timed-out", FALSE);
  ma_agent_emit_event (q->agent, "PLUGIN_FAILED", ma_json_new_object_node (data));
}

static MaPluginSet *
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

static void
remember (MaQuiesce *q, const char *id, const char *state, const char *error)
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

/* ---- journal: which oneshot plugins may be quiesced, for a restarted agent ---- */

static char *
journal_path (MaQuiesce *q)
{
  return g_build_filename (ma_agent_get_state_dir (q->agent), MA_QUIESCE_JOURNAL, NULL);
}

/* thaw_failed: these plugins were released once and their thaw failed (informative only:
 * a restarted agent thaws whatever the journal names either way) */
static void
journal_write_names (MaQuiesce *q, const char *operation, GPtrArray *plugin_names,
                     gboolean thaw_failed)
{
  g_autofree char *path = journal_path (q);
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr(JsonNode) node = NULL;
  JsonObject *obj = json_object_new ();
  JsonArray *names = json_array_new ();

  for (guint i = 0; i < plugin_names->len; i++)
    json_array_add_string_element (names, plugin_names->pdata[i]);
  json_object_set_string_member (obj, "operation", operation);
  json_object_set_array_member (obj, "plugins", names);
  if (thaw_failed)
    json_object_set_boolean_member (obj, "thaw-failed", TRUE);
  node = ma_json_new_object_node (obj);
  text = ma_json_to_string (node);
  /* the state dir is under /run: never a filesystem that may be frozen */
  if (!g_file_set_contents_full (path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_warning ("cannot write the quiesce journal: %s", error->message);
}

static void
journal_write (MaOperation *op)
{
  journal_write_names (op->q, op->id, op->journaled, FALSE);
}

static void
journal_remove (MaQuiesce *q)
{
  g_autofree char *path = journal_path (q);

  if (g_unlink (path) < 0 && errno != ENOENT)
    g_warning ("cannot remove %s: %s", path, g_strerror (errno));
}

/* ---- batches ---- */

static void batch_pump (MaBatch *batch);

static MaBatch *
batch_new (MaQuiesce *q, MaPluginSet *set, MaPluginPhase phase, const char *operation,
           guint lease_seconds)
{
  MaBatch *batch = g_new0 (MaBatch, 1);

  batch->q = q;
  batch->set = set != NULL ? ma_plugin_set_ref (set) : NULL;
  batch->phase = phase;
  batch->operation = g_strdup (operation);
  batch->lease_seconds = lease_seconds;
  batch->items = g_ptr_array_new ();
  batch->held_back = g_ptr_array_new_with_free_func (g_free);
  batch->held_back_failures = g_string_new (NULL);
  batch->dropped = g_ptr_array_new_with_free_func (g_free);
  return batch;
}

static void
batch_free (MaBatch *batch)
{
  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      ma_phase_result_free (item->result);
      ma_plugin_unref (item->plugin);
      g_free (item);
    }
  g_ptr_array_unref (batch->items);
  g_ptr_array_unref (batch->held_back);
  g_string_free (batch->held_back_failures, TRUE);
  g_ptr_array_unref (batch->dropped);
  g_clear_pointer (&batch->set, ma_plugin_set_unref);
  g_free (batch->operation);
  g_free (batch);
}

static void
batch_add (MaBatch *batch, MaPlugin *plugin, MaPluginProcess **session)
{
  MaBatchItem *item = g_new0 (MaBatchItem, 1);

  item->batch = batch;
  item->plugin = ma_plugin_ref (plugin);
  item->session = session;
  g_ptr_array_add (batch->items, item);
}

static void
on_item_done (MaPhaseResult *result, gpointer user_data)
{
  MaBatchItem *item = user_data;
  MaBatch *batch = item->batch;

  item->result = result;
  item->state = result->ok ? ITEM_OK : ITEM_FAILED;
  record_last (batch->q, result);
  if (!result->ok)
    {
      if (batch->phase == MA_PLUGIN_PHASE_QUIESCE || batch->phase == MA_PLUGIN_PHASE_THAW
          || batch->phase == MA_PLUGIN_PHASE_RENEW)
        emit_plugin_failed (batch->q, result, batch->operation);
      if (batch->stop_on_failure)
        batch->stopped = TRUE;
    }
  batch->running--;
  batch_pump (batch);
}

static gboolean
item_ready (MaBatch *batch, MaBatchItem *item)
{
  if (batch->set == NULL)
    return TRUE;
  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *other = batch->items->pdata[i];
      gboolean first;

      if (other == item || other->state == ITEM_OK || other->state == ITEM_FAILED)
        continue;
      first = batch->reverse ? ma_plugin_set_precedes (batch->set, item->plugin, other->plugin)
                             : ma_plugin_set_precedes (batch->set, other->plugin, item->plugin);
      if (first)
        return FALSE;
    }
  return TRUE;
}

static void
batch_pump (MaBatch *batch)
{
  for (guint i = 0; i < batch->items->len && !batch->stopped; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      MaRunContext ctx = { batch->operation, batch->lease_seconds,
                           ma_agent_get_state_dir (batch->q->agent) };

      if (item->state != ITEM_PENDING || !item_ready (batch, item))
        continue;
      item->state = ITEM_RUNNING;
      batch->running++;
      if (batch->starting != NULL)
        batch->starting (batch, item, batch->user_data);
      ma_plugin_run_phase (item->plugin, batch->phase, &ctx, item->session, on_item_done, item);
    }
  if (batch->running == 0)
    {
      /* nothing runs and nothing more can start: the batch is over */
      for (guint i = 0; i < batch->items->len && !batch->stopped; i++)
        if (((MaBatchItem *) batch->items->pdata[i])->state == ITEM_PENDING)
          return; /* cannot happen with an acyclic order; kept from finishing twice */
      batch->done (batch, batch->user_data);
    }
}

static void
batch_start (MaBatch *batch, MaBatchFunc done, gpointer user_data)
{
  batch->done = done;
  batch->user_data = user_data;
  batch->started = g_get_monotonic_time ();
  if (batch->items->len == 0)
    {
      done (batch, user_data);
      return;
    }
  batch_pump (batch);
}

static JsonArray *
batch_results (MaBatch *batch)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      if (item->result != NULL)
        json_array_add_object_element (array, ma_phase_result_to_json (item->result));
    }
  return array;
}

/* Why this plugin, named by a journal or a pending retry, cannot run its oneshot thaw now;
 * NULL when it can. */
static char *
thaw_blocker (MaPlugin *p)
{
  if (p->status == MA_PLUGIN_MASKED)
    return g_strdup_printf ("masked (%s)", p->reason ? p->reason : "disabled");
  if (p->status != MA_PLUGIN_USABLE)
    return g_strdup_printf ("refused (%s)", p->reason ? p->reason : "unusable");
  if (!ma_plugin_has_phase (p, MA_PLUGIN_PHASE_THAW))
    return g_strdup ("its manifest no longer declares a thaw phase (Phases=)");
  if (p->protocol != MA_PLUGIN_ONESHOT)
    return g_strdup ("it is now a session plugin (Protocol=session); the thaw it owes is a "
                     "oneshot one");
  return NULL;
}

/* Add the thaw of the plugin NAME, looked up in set as installed now. A plugin whose
 * manifest no longer exists is dropped (said so: never counted as thawed); one present but
 * unable to run its thaw is held back, still pending, and counted as a failure. */
static void
batch_add_named_thaw (MaBatch *batch, MaPluginSet *set, const char *name)
{
  MaPlugin *p = ma_plugin_set_lookup (set, name);
  g_autofree char *why = NULL;
  g_autofree char *detail = NULL;

  if (p == NULL)
    {
      g_warning ("plugin %s (operation %s) owes a thaw but its manifest no longer exists: "
                 "dropped; its application may still be quiesced", name, batch->operation);
      emit_thaw_not_run (batch->q, name, batch->operation,
                         "dropped: plugin removed (its manifest no longer exists); its thaw "
                         "did not run");
      g_ptr_array_add (batch->dropped, g_strdup (name));
      return;
    }
  why = thaw_blocker (p);
  if (why == NULL)
    {
      batch_add (batch, p, NULL);
      return;
    }
  detail = g_strdup_printf ("cannot run now: %s", why);
  g_warning ("plugin %s (operation %s) owes a thaw but %s; it stays pending", name,
             batch->operation, detail);
  emit_thaw_not_run (batch->q, name, batch->operation, detail);
  g_string_append_printf (batch->held_back_failures, "%s%s: %s",
                          batch->held_back_failures->len ? "; " : "", name, detail);
  g_ptr_array_add (batch->held_back, g_strdup (name));
}

static char *
join_names (GPtrArray *names)
{
  g_autoptr(GString) text = g_string_new (NULL);

  for (guint i = 0; i < names->len; i++)
    g_string_append_printf (text, "%s%s", i ? ", " : "", (char *) names->pdata[i]);
  return g_string_free (g_steal_pointer (&text), FALSE);
}

static JsonArray *
names_to_json (GPtrArray *names)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < names->len; i++)
    json_array_add_string_element (array, names->pdata[i]);
  return array;
}

static MaBatchItem *
batch_first_failure (MaBatch *batch)
{
  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      if (item->state == ITEM_FAILED)
        return item;
    }
  return NULL;
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

static JsonArray *
op_names (MaOperation *op, gboolean only_quiesced)
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

static double
op_expires_in (MaOperation *op)
{
  if (op->state != OP_QUIESCED && op->state != OP_RENEWING)
    return op->lease_seconds;
  return MAX (0.0, (double) (op->expires_at - g_get_monotonic_time ()) / G_USEC_PER_SEC);
}

static JsonNode *
op_summary (MaOperation *op, gboolean already)
{
  static const char *const state_names[] = { "quiescing", "quiesced", "renewing", "releasing" };
  JsonObject *obj = json_object_new ();

  json_object_set_string_member (obj, "operation", op->id);
  json_object_set_string_member (obj, "state", state_names[op->state]);
  json_object_set_array_member (obj, "plugins", op_names (op, FALSE));
  json_object_set_int_member (obj, "lease_seconds", op->lease_seconds);
  json_object_set_double_member (obj, "expires_in", op_expires_in (op));
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

static gboolean
on_lease_expired (gpointer user_data)
{
  MaOperation *op = user_data;
  MaQuiesce *q = op->q;
  JsonObject *data = json_object_new ();

  op->lease_id = 0;
  g_warning ("quiesce lease of operation %s expired after %u s without renew or thaw: "
             "releasing every plugin", op->id, op->lease_seconds);
  json_object_set_string_member (data, "operation", op->id);
  json_object_set_int_member (data, "lease_seconds", op->lease_seconds);
  json_object_set_array_member (data, "plugins", op_names (op, TRUE));
  ma_agent_emit_event (q->agent, "QUIESCE_EXPIRED", ma_json_new_object_node (data));
  enter_state (q, MA_STATE_EXPIRED, op->id, "the quiesce lease expired");
  operation_release (op, "lease expired", MA_STATE_EXPIRED);
  return G_SOURCE_REMOVE;
}

/* The lease runs op->lease_seconds from since (monotonic µs, at most now). */
static void
lease_start_from (MaOperation *op, gint64 since)
{
  gint64 left_ms;

  g_clear_handle_id (&op->lease_id, g_source_remove);
  op->expires_at = since + (gint64) op->lease_seconds * G_USEC_PER_SEC;
  left_ms = MAX (0, (op->expires_at - g_get_monotonic_time ()) / 1000);
  op->lease_id = g_timeout_add ((guint) MIN (left_ms, (gint64) G_MAXUINT), on_lease_expired, op);
  /* a live lease is an orchestrator at work: the freeze guard waits */
  ma_freeze_guard_note_activity (ma_freeze_guard_from_agent (op->q->agent));
}

static void
lease_start (MaOperation *op)
{
  lease_start_from (op, g_get_monotonic_time ());
}

static void
answer_calls (GPtrArray *calls, JsonNode *ret, const GError *error)
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

static void
shutdown_done (MaQuiesce *q)
{
  if (q->holding && q->op == NULL && !q->replaying && !q->testing
      && (q->retry == NULL || q->retry->batch == NULL))
    {
      q->holding = FALSE;
      ma_agent_release (q->agent);
    }
}

/* ---- thaw retry: oneshot plugins whose thaw failed, thawed again until it succeeds ---- */

static void
thaw_retry_free (MaThawRetry *retry)
{
  g_clear_handle_id (&retry->timer_id, g_source_remove);
  g_ptr_array_unref (retry->names);
  g_ptr_array_unref (retry->calls);
  g_free (retry->operation);
  g_free (retry->failures);
  g_free (retry->reason);
  g_free (retry);
}

static double
thaw_retry_delay (MaQuiesce *q, guint attempts)
{
  return q->retry_delays[MIN (attempts, q->n_retry_delays - 1)];
}

static double
thaw_retry_next_in (MaQuiesce *q)
{
  if (q->retry == NULL || q->retry->timer_id == 0)
    return -1;
  return MAX (0.0, (double) (q->retry->due - g_get_monotonic_time ()) / G_USEC_PER_SEC);
}

static char *
thaw_retry_names (MaThawRetry *retry)
{
  g_autoptr(GString) names = g_string_new (NULL);

  for (guint i = 0; i < retry->names->len; i++)
    g_string_append_printf (names, "%s%s", i ? ", " : "", (char *) retry->names->pdata[i]);
  return g_string_free (g_steal_pointer (&names), FALSE);
}

static void thaw_retry_run (MaQuiesce *q, const char *reason);

static gboolean
on_thaw_retry_due (gpointer user_data)
{
  MaQuiesce *q = user_data;

  q->retry->timer_id = 0;
  thaw_retry_run (q, "retry");
  return G_SOURCE_REMOVE;
}

/* The next automatic retry; none while the agent stops (the journal keeps the plugins). */
static void
thaw_retry_arm (MaQuiesce *q)
{
  MaThawRetry *retry = q->retry;
  double delay = thaw_retry_delay (q, retry->attempts);

  g_clear_handle_id (&retry->timer_id, g_source_remove);
  if (q->shutting_down)
    return;
  retry->due = g_get_monotonic_time () + (gint64) (delay * G_USEC_PER_SEC);
  retry->timer_id = g_timeout_add ((guint) (delay * 1000), on_thaw_retry_due, q);
  g_message ("thaw of %s (operation %s) failed; retrying in %.2f s", retry->failures,
             retry->operation, delay);
}

/* Remember the oneshot plugins (failed: their names) whose thaw failed, journal them and
 * schedule their retry. */
static void
thaw_retry_begin (MaQuiesce *q, const char *operation, GPtrArray *failed, const char *failures)
{
  MaThawRetry *retry = q->retry;

  if (failed->len == 0)
    return;
  if (retry == NULL)
    {
      retry = q->retry = g_new0 (MaThawRetry, 1);
      retry->operation = g_strdup (operation);
      retry->names = g_ptr_array_new_with_free_func (g_free);
      retry->calls = g_ptr_array_new ();
    }
  /* cannot happen (a new quiesce waits for the retry), but never lose a plugin */
  for (guint i = 0; i < failed->len; i++)
    {
      const char *name = failed->pdata[i];
      if (!g_ptr_array_find_with_equal_func (retry->names, name, g_str_equal, NULL))
        g_ptr_array_add (retry->names, g_strdup (name));
    }
  g_free (retry->failures);
  retry->failures = g_strdup (failures);
  journal_write_names (q, retry->operation, retry->names, TRUE);
  thaw_retry_arm (q);
}

static void
on_thaw_retried (MaBatch *batch, gpointer user_data)
{
  MaQuiesce *q = user_data;
  MaThawRetry *retry = q->retry;
  g_autoptr(GString) failures = g_string_new (NULL);
  g_autoptr(GPtrArray) still = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *dropped = join_names (batch->dropped);
  JsonObject *data = json_object_new ();
  JsonObject *obj;
  JsonArray *names = json_array_new ();
  JsonArray *results = batch_results (batch);
  double seconds = (double) (g_get_monotonic_time () - batch->started) / G_USEC_PER_SEC;
  MaLifecycle *lc = ma_agent_get_lifecycle (q->agent);

  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      json_array_add_string_element (names, item->plugin->name);
      if (item->state != ITEM_FAILED)
        continue;
      g_string_append_printf (failures, "%s%s: %s", failures->len ? "; " : "",
                              item->plugin->name, item->result->detail);
      g_ptr_array_add (still, g_strdup (item->plugin->name));
    }
  /* a plugin that could not run its thaw has not thawed: it stays pending */
  for (guint i = 0; i < batch->held_back->len; i++)
    g_ptr_array_add (still, g_strdup (batch->held_back->pdata[i]));
  if (batch->held_back_failures->len > 0)
    g_string_append_printf (failures, "%s%s", failures->len ? "; " : "",
                            batch->held_back_failures->str);
  retry->batch = NULL;
  g_ptr_array_set_size (retry->names, 0);
  g_ptr_array_extend_and_steal (retry->names, g_steal_pointer (&still));
  g_free (retry->failures);
  retry->failures = g_strdup (failures->str);

  if (retry->names->len > 0)
    {
      journal_write_names (q, retry->operation, retry->names, TRUE);
      thaw_retry_arm (q);
      g_set_error (&error, MA_ERROR, MA_ERROR_PLUGIN_FAILED,
                   "thaw retry %u of operation %s failed for %s; %s%s%s%s", retry->attempts,
                   retry->operation, failures->str,
                   retry->timer_id ? "the agent retries it again"
                                   : "the agent is stopping: the next start retries it",
                   batch->dropped->len ? "; dropped (plugin removed, its thaw did not run): "
                                       : "",
                   dropped, batch->dropped->len ? " — its application may still be quiesced"
                                                : "");
    }
  else
    {
      journal_remove (q);
      if (batch->dropped->len > 0)
        g_set_error (&error, MA_ERROR, MA_ERROR_PLUGIN_FAILED,
                     "thaw retry %u of operation %s: plugin %s was removed (its manifest no "
                     "longer exists) before its thaw succeeded; dropped from the retry, its "
                     "thaw did not run and its application may still be quiesced",
                     retry->attempts, retry->operation, dropped);
    }

  json_object_set_string_member (data, "operation", retry->operation);
  json_object_set_string_member (data, "reason", retry->reason);
  json_object_set_array_member (data, "plugins", names);
  json_object_set_double_member (data, "seconds", seconds);
  json_object_set_int_member (data, "retry", retry->attempts);
  if (failures->len > 0)
    json_object_set_string_member (data, "failures", failures->str);
  if (retry->names->len > 0)
    json_object_set_array_member (data, "pending", names_to_json (retry->names));
  if (batch->dropped->len > 0)
    json_object_set_array_member (data, "dropped", names_to_json (batch->dropped));
  if (retry->timer_id != 0)
    json_object_set_double_member (data, "next_retry_seconds", thaw_retry_next_in (q));
  ma_agent_emit_event (q->agent, "THAWED", ma_json_new_object_node (data));

  obj = json_object_new ();
  json_object_set_string_member (obj, "operation", retry->operation);
  json_object_set_string_member (obj, "reason", retry->reason);
  json_object_set_double_member (obj, "seconds", seconds);
  json_object_set_int_member (obj, "retry", retry->attempts);
  json_object_set_array_member (obj, "results", results);
  ret = ma_json_new_object_node (obj);
  answer_calls (retry->calls, ret, error);
  batch_free (batch);

  /* a failure keeps the lifecycle where the failed thaw (or the replay) left it: `failed` */
  if (retry->names->len == 0 && error == NULL)
    {
      g_message ("thaw retry %u of operation %s succeeded", retry->attempts, retry->operation);
      remember (q, retry->operation, "thawed", NULL);
      /* the failed thaw put the lifecycle in `failed`; unless something else happened since */
      if (ma_lifecycle_get_state (lc) == MA_STATE_FAILED
          && g_strcmp0 (ma_lifecycle_get_operation (lc), retry->operation) == 0)
        enter_state (q, MA_STATE_THAWED, retry->operation, "thaw retry succeeded");
      ma_agent_set_last_operation (q->agent, "thaw", retry->operation, "ok");
      g_clear_pointer (&q->retry, thaw_retry_free);
    }
  else if (retry->names->len == 0)
    {
      /* every plugin left was removed: nothing remains to retry, nothing was thawed */
      remember (q, retry->operation, "failed", error->message);
      ma_agent_set_last_operation (q->agent, "thaw", retry->operation, "fail");
      g_clear_pointer (&q->retry, thaw_retry_free);
    }
  else
    remember (q, retry->operation, "failed", error->message);
  shutdown_done (q);
}

/* Thaw again now (reason "retry" from the timer, "thaw" from the command); the plugins are
 * looked up afresh, so a fixed manifest or script is what runs. */
static void
thaw_retry_run (MaQuiesce *q, const char *reason)
{
  MaThawRetry *retry = q->retry;
  MaPluginSet *set = quiesce_reload (q);
  MaBatch *batch;

  g_clear_handle_id (&retry->timer_id, g_source_remove);
  batch = batch_new (q, set, MA_PLUGIN_PHASE_THAW, retry->operation, 0);
  batch->reverse = TRUE;
  for (guint i = 0; i < retry->names->len; i++)
    batch_add_named_thaw (batch, set, retry->names->pdata[i]);
  retry->attempts++;
  g_free (retry->reason);
  retry->reason = g_strdup (reason);
  retry->batch = batch;
  g_message ("thaw retry %u of operation %s (%s): %u plugins (%u cannot run now, %u dropped)",
             retry->attempts, retry->operation, reason, batch->items->len,
             batch->held_back->len, batch->dropped->len);
  batch_start (batch, on_thaw_retried, q);
}

/* The names of the oneshot plugins among the failed items of a thaw batch (not owned), and
 * what failed as "NAME: WHY; …" in failures. */
static GPtrArray *
thaw_failures (MaBatch *batch, GString *failures)
{
  GPtrArray *failed = g_ptr_array_new ();

  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      if (item->state != ITEM_FAILED)
        continue;
      g_string_append_printf (failures, "%s%s: %s", failures->len ? "; " : "",
                              item->plugin->name, item->result->detail);
      /* a session's failed thaw ended it (stdin closed, its group killed at the
       * deadline): it released by contract, there is nothing left to retry */
      if (item->plugin->protocol == MA_PLUGIN_ONESHOT)
        g_ptr_array_add (failed, item->plugin->name);
    }
  return failed;
}

static void
on_released (MaBatch *batch, gpointer user_data)
{
  MaOperation *op = user_data;
  MaQuiesce *q = op->q;
  g_autoptr(GString) failures = g_string_new (NULL);
  g_autoptr(GPtrArray) failed = thaw_failures (batch, failures);
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  JsonObject *data = json_object_new ();
  JsonObject *obj;
  double seconds = (double) (g_get_monotonic_time () - batch->started) / G_USEC_PER_SEC;

  op->thaw_results = batch_results (batch);
  /* a oneshot plugin whose thaw failed may still hold its application: it stays in the
   * journal and is thawed again until that succeeds */
  if (failed->len > 0)
    thaw_retry_begin (q, op->id, failed, failures->str);
  else
    journal_remove (q);

  json_object_set_string_member (data, "operation", op->id);
  json_object_set_string_member (data, "reason", op->release_reason);
  json_object_set_array_member (data, "plugins", op_names (op, FALSE));
  json_object_set_double_member (data, "seconds", seconds);
  if (failures->len > 0)
    json_object_set_string_member (data, "failures", failures->str);
  if (failed->len > 0 && q->retry->timer_id != 0)
    json_object_set_double_member (data, "next_retry_seconds", thaw_retry_next_in (q));
  ma_agent_emit_event (q->agent, "THAWED", ma_json_new_object_node (data));

  obj = json_object_new ();
  json_object_set_string_member (obj, "operation", op->id);
  json_object_set_string_member (obj, "reason", op->release_reason);
  json_object_set_double_member (obj, "seconds", seconds);
  json_object_set_array_member (obj, "results", json_array_ref (op->thaw_results));
  ret = ma_json_new_object_node (obj);

  if (failures->len > 0)
    {
      g_autofree char *retried = failed->len > 0 ? thaw_retry_names (q->retry) : NULL;
      g_set_error (&error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "thaw failed for %s%s%s%s",
                   failures->str, retried ? "; the agent retries the thaw of " : "",
                   retried ? retried : "",
                   retried == NULL            ? ""
                   : q->retry->timer_id != 0 ? " (`thaw` retries at once)"
                                             : " at its next start");
      enter_state (q, MA_STATE_FAILED, op->id, error->message);
    }
  else if (op->release_state == MA_STATE_THAWED)
    enter_state (q, MA_STATE_THAWED, op->id, op->release_reason);

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
      enter_state (q, MA_STATE_FAILED, op->id, qerror->message);
      remember (q, op->id, "failed", qerror->message);
      answer_calls (op->quiesce_calls, NULL, qerror);
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
      enter_state (q, MA_STATE_FAILED, op->id, rerror->message);
      remember (q, op->id, "failed", rerror->message);
      answer_calls (op->renew_calls, NULL, rerror);
    }
  else
    {
      /* a thaw being retried is not over: the same id again repeats its failure */
      remember (q, op->id,
                failed->len > 0                          ? "failed"
                : op->release_state == MA_STATE_EXPIRED ? "expired"
                                                         : "thawed",
                error ? error->message : NULL);
      /* only a quiesce that a thaw (or a stop) released before it answered waits here: it
       * answers like the release, never "quiesced" */
      answer_calls (op->quiesce_calls, ret, error);
    }
  answer_calls (op->thaw_calls, ret, error);
  ma_agent_set_last_operation (q->agent, "thaw", op->id, error ? "fail" : "ok");

  batch_free (batch);
  q->op = NULL;
  operation_free (op);
  shutdown_done (q);
}

static void
operation_release (MaOperation *op, const char *reason, MaState state)
{
  MaBatch *batch;

  g_clear_handle_id (&op->lease_id, g_source_remove);
  op->state = OP_RELEASING;
  op->release_reason = g_strdup (reason);
  op->release_state = state;
  batch = batch_new (op->q, op->set, MA_PLUGIN_PHASE_THAW, op->id, op->lease_seconds);
  batch->reverse = TRUE;
  for (guint i = 0; i < op->nodes->len; i++)
    {
      MaOpNode *node = op->nodes->pdata[i];
      if (node->attempted)
        batch_add (batch, node->plugin, &node->session);
    }
  g_message ("releasing operation %s (%s): %u plugins", op->id, reason, batch->items->len);
  batch_start (batch, on_released, op);
}

static void
on_quiesce_starting (MaBatch *batch, MaBatchItem *item, gpointer user_data)
{
  MaOperation *op = user_data;

  for (guint i = 0; i < op->nodes->len; i++)
    {
      MaOpNode *node = op->nodes->pdata[i];
      if (node->plugin == item->plugin)
        node->attempted = TRUE;
    }
  /* before it runs: an agent that dies from here on thaws it at its next start */
  if (item->plugin->protocol == MA_PLUGIN_ONESHOT)
    {
      g_ptr_array_add (op->journaled, g_strdup (item->plugin->name));
      journal_write (op);
    }
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
  MaBatchItem *failed = batch_first_failure (batch);
  g_autoptr(JsonNode) ret = NULL;

  op->quiesce_seconds = (double) (g_get_monotonic_time () - batch->started) / G_USEC_PER_SEC;
  op->quiesce_results = batch_results (batch);
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
      batch_free (batch);
      operation_release (op, "rollback", MA_STATE_FAILED);
      return;
    }
  batch_free (batch);
  if (op->release_requested || q->shutting_down)
    {
      operation_release (op, q->shutting_down ? "agent stopping" : "thaw", MA_STATE_THAWED);
      return;
    }

  op->state = OP_QUIESCED;
  lease_start (op);
  enter_state (q, MA_STATE_QUIESCED, op->id, "plugins quiesced");
  {
    JsonObject *data = json_object_new ();
    json_object_set_string_member (data, "operation", op->id);
    json_object_set_array_member (data, "plugins", op_names (op, TRUE));
    json_object_set_int_member (data, "lease_seconds", op->lease_seconds);
    json_object_set_double_member (data, "seconds", op->quiesce_seconds);
    ma_agent_emit_event (q->agent, "QUIESCED", ma_json_new_object_node (data));
  }
  ma_agent_set_last_operation (q->agent, "quiesce", op->id, "ok");
  ret = op_summary (op, FALSE);
  answer_calls (op->quiesce_calls, ret, NULL);
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

static gboolean
get_lease (JsonObject *args, gint64 *out, GError **error)
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
static GPtrArray *
select_plugins (MaPluginSet *set, char **names, GError **error)
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
  if (!get_operation_id (args, &id, &error) || !get_lease (args, &lease, &error)
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
        ma_call_return (call, op_summary (q->op, TRUE));
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
      g_autofree char *pending = thaw_retry_names (q->retry);
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
  plugins = select_plugins (q->set, names, &error);
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

  batch = batch_new (q, op->set, MA_PLUGIN_PHASE_QUIESCE, op->id, op->lease_seconds);
  batch->stop_on_failure = TRUE;
  batch->starting = on_quiesce_starting;
  for (guint i = 0; i < plugins->len; i++)
    {
      MaOpNode *node = g_new0 (MaOpNode, 1);
      node->plugin = ma_plugin_ref (plugins->pdata[i]);
      g_ptr_array_add (op->nodes, node);
      batch_add (batch, node->plugin, &node->session);
    }
  g_message ("quiesce operation %s: %u plugins, lease %u s", op->id, plugins->len,
             op->lease_seconds);
  batch_start (batch, on_quiesced, op);
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
        thaw_retry_run (q, "thaw");
      return;
    }
  if (op == NULL && q->retry != NULL && id != NULL
      && !g_hash_table_contains (q->history, id))
    {
      g_autofree char *pending = thaw_retry_names (q->retry);
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
    operation_release (op, "thaw", MA_STATE_THAWED);
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
  op->renew_results = batch_results (batch);
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
  batch_free (batch);

  if (failures->len > 0)
    {
      /* keeping the old lease would leave applications whose own hold may end before it
       * (or was never extended) reported as quiesced: release everything, say so */
      g_warning ("renew of operation %s failed (%s): releasing every plugin", op->id,
                 failures->str);
      op->renew_failure = g_strdup (failures->str);
      op->renew_failure_timeout = timed_out;
      operation_release (op, "renew failed", MA_STATE_FAILED);
      return;
    }

  op->lease_seconds = op->renew_lease;
  op->state = OP_QUIESCED;
  /* counted from when the renew was accepted: the agent's lease never outlasts what the
   * plugins were just given */
  lease_start_from (op, op->renew_started);
  g_message ("operation %s renewed: lease %u s (plugins renewed in %.3f s)", op->id,
             op->lease_seconds, op->renew_seconds);
  ret = op_summary (op, FALSE);
  answer_calls (op->renew_calls, ret, NULL);
  if (op->release_requested || q->shutting_down)
    operation_release (op, q->shutting_down ? "agent stopping" : "thaw", MA_STATE_THAWED);
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
  if (!get_lease (args, &lease, &error))
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
  batch = batch_new (q, NULL, MA_PLUGIN_PHASE_RENEW, op->id, op->renew_lease);
  for (guint i = 0; i < op->nodes->len; i++)
    {
      MaOpNode *node = op->nodes->pdata[i];
      if (node->quiesced && ma_plugin_has_phase (node->plugin, MA_PLUGIN_PHASE_RENEW))
        batch_add (batch, node->plugin, &node->session);
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
  batch_start (batch, on_renewed, op);
}

typedef struct
{
  MaQuiesce *q;
  MaCall *call;              /* the `check` command's, or NULL */
  MaQuiesceCheckFunc func;   /* else this is told */
  gpointer user_data;
} MaCheckCall;

static void
on_checked (MaBatch *batch, gpointer user_data)
{
  MaCheckCall *cc = user_data;
  JsonObject *obj = json_object_new ();
  g_autoptr(JsonNode) report = NULL;

  json_object_set_boolean_member (obj, "ready", batch_first_failure (batch) == NULL);
  json_object_set_string_member (obj, "phase", ma_plugin_phase_to_string (batch->phase));
  json_object_set_double_member (obj, "seconds",
                                 (double) (g_get_monotonic_time () - batch->started)
                                   / G_USEC_PER_SEC);
  json_object_set_array_member (obj, "plugins", batch_results (batch));
  report = ma_json_new_object_node (obj);
  if (cc->call != NULL)
    {
      ma_call_return (cc->call, g_steal_pointer (&report));
      ma_call_unref (cc->call);
    }
  else
    cc->func (report, NULL, cc->user_data);
  cc->q->checks--;
  batch_free (batch);
  g_free (cc);
}

/* names: NULL for every plugin. FALSE when a name is unknown (cc is the caller's then). */
static gboolean
check_start (MaCheckCall *cc, char **names, MaPluginPhase phase, GError **error)
{
  MaQuiesce *q = cc->q;
  g_autoptr(GPtrArray) plugins = NULL;
  MaBatch *batch;

  quiesce_reload (q);
  plugins = select_plugins (q->set, names, error);
  if (plugins == NULL)
    return FALSE;
  /* checks only look: all of them run at once */
  batch = batch_new (q, NULL, phase, q->op ? q->op->id : "check", MA_QUIESCE_DEFAULT_LEASE_SECONDS);
  for (guint i = 0; i < plugins->len; i++)
    batch_add (batch, plugins->pdata[i], NULL);
  q->checks++;
  batch_start (batch, on_checked, cc);
  return TRUE;
}

static void
cmd_check (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "plugins", "phase", NULL };
  MaQuiesce *q = user_data;
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  g_auto(GStrv) names = NULL;
  const char *phase_name = "check";
  MaPluginPhase phase;
  MaCheckCall *cc;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!ma_json_get_strv (args, "plugins", &names, &error)
      || !ma_json_get_string (args, "phase", &phase_name, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (!ma_plugin_phase_from_string (phase_name, &phase)
      || (phase != MA_PLUGIN_PHASE_CHECK && phase != MA_PLUGIN_PHASE_VALIDATE))
    {
      ma_call_return_new_error (call, MA_ERROR_INVALID_ARGUMENT,
                                "Parameter 'phase' must be \"check\" or \"validate\"");
      return;
    }
  cc = g_new0 (MaCheckCall, 1);
  cc->q = q;
  cc->call = ma_call_ref (call);
  if (!check_start (cc, names, phase, &error))
    {
      ma_call_return_error (call, error);
      ma_call_unref (cc->call);
      g_free (cc);
    }
}

void
ma_quiesce_check_async (MaQuiesce *q, MaQuiesceCheckFunc func, gpointer user_data)
{
  MaCheckCall *cc = g_new0 (MaCheckCall, 1);
  g_autoptr(GError) error = NULL;

  cc->q = q;
  cc->func = func;
  cc->user_data = user_data;
  if (!check_start (cc, NULL, MA_PLUGIN_PHASE_CHECK, &error))
    {
      func (NULL, error, user_data);
      g_free (cc);
    }
}

static const char *
plugin_state (MaQuiesce *q, MaPlugin *plugin)
{
  static const char *const status_names[] = { "ready", "masked", "refused" };

  if (q->op != NULL)
    for (guint i = 0; i < q->op->nodes->len; i++)
      {
        MaOpNode *node = q->op->nodes->pdata[i];
        if (g_strcmp0 (node->plugin->name, plugin->name) != 0)
          continue;
        if (q->op->state == OP_RELEASING)
          return "thawing";
        if (q->op->state == OP_QUIESCING)
          return node->attempted ? "quiescing" : "waiting";
        return node->quiesced ? "quiesced" : "ready";
      }
  if (q->retry != NULL
      && g_ptr_array_find_with_equal_func (q->retry->names, plugin->name, g_str_equal, NULL))
    return q->retry->batch != NULL ? "thawing" : "thaw-failed";
  return status_names[plugin->status];
}

static void
cmd_plugins (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { NULL };
  MaQuiesce *q = user_data;
  JsonObject *obj;
  JsonArray *list, *dirs, *order;
  MaPluginSet *set;
  const char *const *d;

  if (!ma_call_check_arguments (call, allowed))
    return;
  set = quiesce_reload (q);
  obj = json_object_new ();
  dirs = json_array_new ();
  for (d = ma_plugin_set_get_dirs (set); d != NULL && *d != NULL; d++)
    json_array_add_string_element (dirs, *d);
  json_object_set_array_member (obj, "dirs", dirs);
  list = json_array_new ();
  for (guint i = 0; i < ma_plugin_set_get_all (set)->len; i++)
    {
      MaPlugin *p = ma_plugin_set_get_all (set)->pdata[i];
      JsonObject *entry = ma_plugin_to_json (p);
      JsonObject *last = g_hash_table_lookup (q->last, p->name);
      json_object_set_string_member (entry, "state", plugin_state (q, p));
      if (last != NULL)
        json_object_set_object_member (entry, "last", json_object_ref (last));
      json_array_add_object_element (list, entry);
    }
  json_object_set_array_member (obj, "plugins", list);
  order = json_array_new ();
  for (guint i = 0; i < ma_plugin_set_get_ordered (set)->len; i++)
    json_array_add_string_element (order,
                                   ((MaPlugin *) ma_plugin_set_get_ordered (set)->pdata[i])->name);
  json_object_set_array_member (obj, "order", order);
  if (q->op != NULL)
    json_object_set_member (obj, "operation", op_summary (q->op, FALSE));
  else
    json_object_set_null_member (obj, "operation");
  if (q->retry != NULL)
    {
      JsonObject *retry = json_object_new ();
      JsonArray *names = json_array_new ();
      for (guint i = 0; i < q->retry->names->len; i++)
        json_array_add_string_element (names, q->retry->names->pdata[i]);
      json_object_set_string_member (retry, "operation", q->retry->operation);
      json_object_set_array_member (retry, "plugins", names);
      json_object_set_int_member (retry, "retries", q->retry->attempts);
      json_object_set_string_member (retry, "failures", q->retry->failures);
      json_object_set_boolean_member (retry, "running", q->retry->batch != NULL);
      if (q->retry->timer_id != 0)
        json_object_set_double_member (retry, "next_retry_seconds", thaw_retry_next_in (q));
      else
        json_object_set_null_member (retry, "next_retry_seconds");
      json_object_set_object_member (obj, "thaw_retry", retry);
    }
  else
    json_object_set_null_member (obj, "thaw_retry");
  ma_call_return (call, ma_json_new_object_node (obj));
}

/* ---- plugin-test: every phase of one plugin, one after the other ---- */

typedef struct
{
  MaQuiesce *q;
  MaCall *call;
  MaPlugin *plugin;
  MaPluginProcess *session;
  char *operation;
  guint lease_seconds;
  guint next; /* index into test_phases */
  JsonArray *results;
  gboolean ok;
  gboolean quiesce_failed; /* then there is no hold to renew */
} MaPluginTest;

static void plugin_test_next (MaPluginTest *t);

/* the order an operation runs them in; renew only for plugins that declare it and hold the
 * application (a failed quiesce leaves nothing to renew, as in an operation) */
static const MaPluginPhase test_phases[] = {
  MA_PLUGIN_PHASE_CHECK, MA_PLUGIN_PHASE_QUIESCE, MA_PLUGIN_PHASE_RENEW,
  MA_PLUGIN_PHASE_THAW,  MA_PLUGIN_PHASE_VALIDATE,
};

static void
on_test_phase (MaPhaseResult *result, gpointer user_data)
{
  MaPluginTest *t = user_data;

  record_last (t->q, result);
  if (!result->ok)
    t->ok = FALSE;
  if (!result->ok && result->phase == MA_PLUGIN_PHASE_QUIESCE)
    t->quiesce_failed = TRUE;
  json_array_add_object_element (t->results, ma_phase_result_to_json (result));
  ma_phase_result_free (result);
  t->next++;
  plugin_test_next (t);
}

static void
plugin_test_next (MaPluginTest *t)
{
  MaRunContext ctx = { t->operation, t->lease_seconds, ma_agent_get_state_dir (t->q->agent) };
  JsonObject *obj;

  while (t->next < G_N_ELEMENTS (test_phases) && test_phases[t->next] == MA_PLUGIN_PHASE_RENEW
         && (t->quiesce_failed || !ma_plugin_has_phase (t->plugin, MA_PLUGIN_PHASE_RENEW)))
    t->next++;
  if (t->next < G_N_ELEMENTS (test_phases))
    {
      ma_plugin_run_phase (t->plugin, test_phases[t->next], &ctx, &t->session, on_test_phase, t);
      return;
    }
  obj = json_object_new ();
  json_object_set_string_member (obj, "plugin", t->plugin->name);
  json_object_set_string_member (obj, "operation", t->operation);
  json_object_set_boolean_member (obj, "ok", t->ok);
  json_object_set_array_member (obj, "phases", t->results);
  ma_call_return (t->call, ma_json_new_object_node (obj));
  ma_call_unref (t->call);
  if (t->session != NULL)
    ma_plugin_process_abandon (g_steal_pointer (&t->session));
  t->q->testing = FALSE;
  shutdown_done (t->q);
  ma_plugin_unref (t->plugin);
  g_free (t->operation);
  g_free (t);
}

static void
cmd_plugin_test (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "name", "lease_seconds", NULL };
  MaQuiesce *q = user_data;
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  const char *name = NULL;
  gint64 lease = MA_QUIESCE_DEFAULT_LEASE_SECONDS;
  MaPlugin *plugin;
  MaPluginTest *t;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!ma_json_require_string (args, "name", &name, &error) || !get_lease (args, &lease, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (q->op != NULL || q->testing || q->replaying || q->shutting_down || q->retry != NULL)
    {
      ma_call_return_new_error (call, MA_ERROR_BUSY,
                                "plugins are in use (%s); plugin-test quiesces the application "
                                "itself", q->op      ? q->op->id
                                          : q->retry ? "a failed thaw is being retried"
                                                     : "another test or a release");
      return;
    }
  plugin = ma_plugin_set_lookup (quiesce_reload (q), name);
  if (plugin == NULL || plugin->status != MA_PLUGIN_USABLE)
    {
      ma_call_return_new_error (call, plugin == NULL ? MA_ERROR_NOT_FOUND : MA_ERROR_PLUGIN_FAILED,
                                plugin == NULL ? "no plugin named '%s'%s" : "plugin '%s' cannot run: %s",
                                name, plugin == NULL ? "" : plugin->reason);
      return;
    }
  t = g_new0 (MaPluginTest, 1);
  t->q = q;
  t->call = ma_call_ref (call);
  t->plugin = ma_plugin_ref (plugin);
  t->operation = g_strdup_printf ("plugin-test-%" G_GINT64_FORMAT, g_get_real_time ());
  t->lease_seconds = (guint) lease;
  t->results = json_array_new ();
  t->ok = TRUE;
  t->next = 0;
  q->testing = TRUE;
  plugin_test_next (t);
}

/* ---- restart: thaw what the previous run left quiesced ---- */

static void
on_replayed (MaBatch *batch, gpointer user_data)
{
  MaQuiesce *q = user_data;
  JsonObject *data = json_object_new ();
  g_autoptr(GString) failures = g_string_new (NULL);
  g_autoptr(GPtrArray) failed = thaw_failures (batch, failures);
  g_autofree char *dropped = join_names (batch->dropped);
  g_autofree char *message = NULL;
  JsonArray *names = json_array_new ();

  for (guint i = 0; i < batch->items->len; i++)
    json_array_add_string_element (names, ((MaBatchItem *) batch->items->pdata[i])->plugin->name);
  /* a plugin that could not run its thaw now has not thawed: it is retried like a failure */
  for (guint i = 0; i < batch->held_back->len; i++)
    g_ptr_array_add (failed, batch->held_back->pdata[i]);
  if (batch->held_back_failures->len > 0)
    g_string_append_printf (failures, "%s%s", failures->len ? "; " : "",
                            batch->held_back_failures->str);
  /* what still fails to thaw stays journaled and is retried like any failed thaw */
  if (failed->len > 0)
    thaw_retry_begin (q, batch->operation, failed, failures->str);
  else
    journal_remove (q);
  json_object_set_string_member (data, "operation", batch->operation);
  json_object_set_string_member (data, "reason", "agent restarted while quiesced");
  json_object_set_array_member (data, "plugins", names);
  json_object_set_boolean_member (data, "replayed", TRUE);
  if (failures->len > 0)
    json_object_set_string_member (data, "failures", failures->str);
  if (failed->len > 0)
    json_object_set_array_member (data, "pending", names_to_json (q->retry->names));
  if (batch->dropped->len > 0)
    json_object_set_array_member (data, "dropped", names_to_json (batch->dropped));
  if (failed->len > 0 && q->retry->timer_id != 0)
    json_object_set_double_member (data, "next_retry_seconds", thaw_retry_next_in (q));
  ma_agent_emit_event (q->agent, "THAWED", ma_json_new_object_node (data));
  g_message ("thawed %u plugins left quiesced by the previous run (operation %s)%s",
             batch->items->len, batch->operation,
             failed->len || batch->dropped->len ? "; some did not thaw" : "");

  if (failures->len > 0 || batch->dropped->len > 0)
    {
      g_autofree char *retried = failed->len > 0 ? thaw_retry_names (q->retry) : NULL;
      g_autoptr(GString) text = g_string_new (NULL);
      g_string_append_printf (text, "thaw of operation %s, left quiesced by the previous run, "
                              "failed", batch->operation);
      if (failures->len > 0)
        g_string_append_printf (text, " for %s", failures->str);
      if (retried != NULL)
        g_string_append_printf (text, "; the agent retries the thaw of %s%s", retried,
                                q->retry->timer_id != 0 ? " (`thaw` retries at once)"
                                                        : " at its next start");
      if (batch->dropped->len > 0)
        g_string_append_printf (text, "; dropped (plugin removed, its thaw did not run): %s",
                                dropped);
      message = g_string_free (g_steal_pointer (&text), FALSE);
      /* like a failed thaw while running: the retry's success moves it to `thawed` */
      enter_state (q, MA_STATE_FAILED, batch->operation, message);
      remember (q, batch->operation, "failed", message);
      ma_agent_set_last_operation (q->agent, "thaw", batch->operation, "fail");
    }
  else
    remember (q, batch->operation, "thawed", NULL);
  q->replaying = FALSE;
  batch_free (batch);
  shutdown_done (q);
}

static gboolean
replay_journal (gpointer user_data)
{
  MaQuiesce *q = user_data;
  g_autofree char *path = journal_path (q);
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_auto(GStrv) names = NULL;
  const char *operation = "unknown";
  MaPluginSet *set;
  MaBatch *batch;

  if (!g_file_get_contents (path, &text, NULL, &error))
    {
      q->replaying = FALSE;
      return G_SOURCE_REMOVE;
    }
  node = ma_json_parse (text, strlen (text), &error);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node)
      || !ma_json_get_string (json_node_get_object (node), "operation", &operation, &error)
      || !ma_json_get_strv (json_node_get_object (node), "plugins", &names, &error))
    {
      g_warning ("quiesce journal %s is unreadable (%s); cannot replay its thaw", path,
                 error ? error->message : "not an object");
      journal_remove (q);
      q->replaying = FALSE;
      return G_SOURCE_REMOVE;
    }
  set = quiesce_reload (q);
  batch = batch_new (q, set, MA_PLUGIN_PHASE_THAW, operation, 0);
  batch->reverse = TRUE;
  for (guint i = 0; names != NULL && names[i] != NULL; i++)
    batch_add_named_thaw (batch, set, names[i]);
  g_message ("the previous run left operation %s quiesced: thawing %u plugins", operation,
             batch->items->len);
  batch_start (batch, on_replayed, q);
  return G_SOURCE_REMOVE;
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
      operation_release (q->op, "agent stopping", MA_STATE_THAWED);
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
      g_clear_pointer (&q->retry, thaw_retry_free);
    }
  g_clear_pointer (&q->set, ma_plugin_set_unref);
  g_hash_table_unref (q->last);
  g_hash_table_unref (q->history);
  g_queue_free_full (q->history_ids, g_free);
  g_free (q);
}

/* [quiesce] thaw-retry-seconds: the delays before each retry of a failed thaw, the last one
 * repeating. A malformed list is refused with a warning and the built-in one is kept. */
static void
thaw_retry_configure (MaQuiesce *q)
{
  static const double defaults[] = { MA_QUIESCE_THAW_RETRY_FIRST_SECONDS,
                                     MA_QUIESCE_THAW_RETRY_SECOND_SECONDS,
                                     MA_QUIESCE_THAW_RETRY_EVERY_SECONDS };
  g_auto(GStrv) delays = ma_config_get_strv (ma_agent_get_config (q->agent), "quiesce",
                                             "thaw-retry-seconds");
  guint n = delays != NULL ? g_strv_length (delays) : 0;

  q->n_retry_delays = G_N_ELEMENTS (defaults);
  memcpy (q->retry_delays, defaults, sizeof defaults);
  if (n == 0)
    return;
  if (n > MA_QUIESCE_THAW_RETRY_MAX_DELAYS)
    {
      g_warning ("[quiesce] thaw-retry-seconds lists %u delays, at most %d are allowed: "
                 "using 5;15;60", n, MA_QUIESCE_THAW_RETRY_MAX_DELAYS);
      return;
    }
  for (guint i = 0; i < n; i++)
    {
      const char *text = g_strstrip (delays[i]);
      char *end = NULL;
      double value = g_ascii_strtod (text, &end);
      if (end == text || *end != '\0' || !(value >= MA_QUIESCE_THAW_RETRY_MIN_SECONDS)
          || value > MA_QUIESCE_THAW_RETRY_MAX_SECONDS)
        {
          g_warning ("[quiesce] thaw-retry-seconds: '%s' is not a number of seconds from "
                     "%.2f to %.0f: using 5;15;60", text, MA_QUIESCE_THAW_RETRY_MIN_SECONDS,
                     MA_QUIESCE_THAW_RETRY_MAX_SECONDS);
          q->n_retry_delays = G_N_ELEMENTS (defaults);
          memcpy (q->retry_delays, defaults, sizeof defaults);
          return;
        }
      q->retry_delays[i] = value;
    }
  q->n_retry_delays = n;
}

static const MaCommandSpec quiesce_commands[] = {
  { "quiesce", cmd_quiesce,
    "quiesce the applications through their plugins, all or nothing, with a lease" },
  { "thaw", cmd_thaw, "release every quiesced plugin in reverse order" },
  { "renew", cmd_renew, "extend the lease of the quiesced operation" },
  { "check", cmd_check,
    "run every plugin's check (or validate) phase: can the applications quiesce?" },
  { "plugins", cmd_plugins, "the quiesce plugins found, their state and last timings" },
  { "plugin-test", cmd_plugin_test,
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
  thaw_retry_configure (q);
  ma_agent_add_module (agent, &quiesce_module, q);

  journal = journal_path (q);
  if (g_file_test (journal, G_FILE_TEST_EXISTS))
    {
      q->replaying = TRUE;
      g_idle_add (replay_journal, q);
    }
  return TRUE;
}
