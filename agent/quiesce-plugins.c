/* quiesce-plugins.c — the commands that run plugins without holding them: check (and
 * ma_quiesce_check_async), plugins, plugin-test. */
#include "quiesce-private.h"

#include "json.h"

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

  json_object_set_boolean_member (obj, "ready", ma_batch_first_failure (batch) == NULL);
  json_object_set_string_member (obj, "phase", ma_plugin_phase_to_string (batch->phase));
  json_object_set_double_member (obj, "seconds",
                                 (double) (g_get_monotonic_time () - batch->started)
                                   / G_USEC_PER_SEC);
  json_object_set_array_member (obj, "plugins", ma_batch_results (batch));
  report = ma_json_new_object_node (obj);
  if (cc->call != NULL)
    {
      ma_call_return (cc->call, g_steal_pointer (&report));
      ma_call_unref (cc->call);
    }
  else
    cc->func (report, NULL, cc->user_data);
  cc->q->checks--;
  ma_batch_free (batch);
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
  plugins = quiesce_select_plugins (q->set, names, error);
  if (plugins == NULL)
    return FALSE;
  /* checks only look: all of them run at once */
  batch = quiesce_batch_new (q, NULL, phase, q->op ? q->op->id : "check",
                             MA_QUIESCE_DEFAULT_LEASE_SECONDS);
  for (guint i = 0; i < plugins->len; i++)
    ma_batch_add (batch, plugins->pdata[i], NULL);
  q->checks++;
  ma_batch_start (batch, on_checked, cc);
  return TRUE;
}

void
quiesce_cmd_check (MaCall *call, gpointer user_data)
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

void
quiesce_cmd_plugins (MaCall *call, gpointer user_data)
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
    json_object_set_member (obj, "operation", quiesce_op_summary (q->op, FALSE));
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
        json_object_set_double_member (retry, "next_retry_seconds", quiesce_thaw_retry_next_in (q));
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

/* the order an operation runs them in; renew only for plugins that declare it and hold the
 * application (a failed quiesce leaves nothing to renew, as in an operation) */
static const MaPluginPhase test_phases[] = {
  MA_PLUGIN_PHASE_CHECK, MA_PLUGIN_PHASE_QUIESCE, MA_PLUGIN_PHASE_RENEW,
  MA_PLUGIN_PHASE_THAW,  MA_PLUGIN_PHASE_VALIDATE,
};

static void plugin_test_next (MaPluginTest *t);

static void
on_test_phase (MaPhaseResult *result, gpointer user_data)
{
  MaPluginTest *t = user_data;

  quiesce_record_last (t->q, result);
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
  quiesce_shutdown_done (t->q);
  ma_plugin_unref (t->plugin);
  g_free (t->operation);
  g_free (t);
}

void
quiesce_cmd_plugin_test (MaCall *call, gpointer user_data)
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
  if (!ma_json_require_string (args, "name", &name, &error)
      || !quiesce_get_lease (args, &lease, &error))
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
