/* quiesce-batch.c — one phase over a set of plugins: in dependency order (or its reverse),
 * in parallel where independent, stopping at the first failure when asked; the results. */
#include "quiesce-batch.h"

#include "json.h"

static void batch_pump (MaBatch *batch);

static void
batch_thaw_not_run (MaBatch *batch, const char *name, const char *detail)
{
  if (batch->observer != NULL && batch->observer->thaw_not_run != NULL)
    batch->observer->thaw_not_run (batch, name, detail, batch->observer_data);
}

MaBatch *
ma_batch_new (MaPluginSet *set, MaPluginPhase phase, const char *operation,
              guint lease_seconds, const char *state_dir, const MaBatchObserver *observer,
              gpointer observer_data)
{
  MaBatch *batch = g_new0 (MaBatch, 1);

  batch->state_dir = g_strdup (state_dir);
  batch->observer = observer;
  batch->observer_data = observer_data;
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

void
ma_batch_free (MaBatch *batch)
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
  g_free (batch->state_dir);
  g_free (batch);
}

void
ma_batch_add (MaBatch *batch, MaPlugin *plugin, MaPluginProcess **session)
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
  if (batch->observer != NULL && batch->observer->item_done != NULL)
    batch->observer->item_done (batch, result, batch->observer_data);
  if (!result->ok && batch->stop_on_failure)
    batch->stopped = TRUE;
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
  g_autoptr(GPtrArray) wave = g_ptr_array_new ();
  MaRunContext ctx = { batch->operation, batch->lease_seconds, batch->state_dir };

  /* everything ready now starts together: the owner hears of the wave once, before any of it
   * runs (the quiesce journal is written once a wave, not once a plugin) */
  for (guint i = 0; i < batch->items->len && !batch->stopped; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      if (item->state == ITEM_PENDING && item_ready (batch, item))
        g_ptr_array_add (wave, item);
    }
  for (guint i = 0; i < wave->len; i++)
    ((MaBatchItem *) wave->pdata[i])->state = ITEM_RUNNING;
  batch->running += wave->len;
  if (wave->len > 0 && batch->starting != NULL)
    batch->starting (batch, wave, batch->user_data);
  /* results come on later main-loop turns (ma_plugin_run_phase never answers at once), so
   * nothing below changes under this loop */
  for (guint i = 0; i < wave->len; i++)
    {
      MaBatchItem *item = wave->pdata[i];
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

void
ma_batch_start (MaBatch *batch, MaBatchFunc done, gpointer user_data)
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

JsonArray *
ma_batch_results (MaBatch *batch)
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
void
ma_batch_add_named_thaw (MaBatch *batch, MaPluginSet *set, const char *name)
{
  MaPlugin *p = ma_plugin_set_lookup (set, name);
  g_autofree char *why = NULL;
  g_autofree char *detail = NULL;

  if (p == NULL)
    {
      g_warning ("plugin %s (operation %s) owes a thaw but its manifest no longer exists: "
                 "dropped; its application may still be quiesced", name, batch->operation);
      batch_thaw_not_run (batch, name,
                          "dropped: plugin removed (its manifest no longer exists); its thaw "
                          "did not run");
      g_ptr_array_add (batch->dropped, g_strdup (name));
      return;
    }
  why = thaw_blocker (p);
  if (why == NULL)
    {
      ma_batch_add (batch, p, NULL);
      return;
    }
  detail = g_strdup_printf ("cannot run now: %s", why);
  g_warning ("plugin %s (operation %s) owes a thaw but %s; it stays pending", name,
             batch->operation, detail);
  batch_thaw_not_run (batch, name, detail);
  g_string_append_printf (batch->held_back_failures, "%s%s: %s",
                          batch->held_back_failures->len ? "; " : "", name, detail);
  g_ptr_array_add (batch->held_back, g_strdup (name));
}

char *
ma_quiesce_join_names (GPtrArray *names)
{
  g_autoptr(GString) text = g_string_new (NULL);

  for (guint i = 0; i < names->len; i++)
    g_string_append_printf (text, "%s%s", i ? ", " : "", (char *) names->pdata[i]);
  return g_string_free (g_steal_pointer (&text), FALSE);
}

JsonArray *
ma_quiesce_names_to_json (GPtrArray *names)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < names->len; i++)
    json_array_add_string_element (array, names->pdata[i]);
  return array;
}

MaBatchItem *
ma_batch_first_failure (MaBatch *batch)
{
  for (guint i = 0; i < batch->items->len; i++)
    {
      MaBatchItem *item = batch->items->pdata[i];
      if (item->state == ITEM_FAILED)
        return item;
    }
  return NULL;
}
