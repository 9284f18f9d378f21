/* validate.c — post-migration validation: compares the guest now with the stored snapshot
 * (network, storage, clock), runs bounded live probes, and reports checks and a verdict. */
#include "validate.h"

#include <math.h>

#include "error.h"
#include "json.h"
#include "snapshot.h"
#include "validate-net.h"
#include "validate-storage.h"

/* While a validation runs, the lifecycle state is mirrored for the worker this often. */
#define MA_VALIDATE_STATE_POLL_MS 100

/* ---- comparison ---- */

static JsonObject *
part (JsonObject *snapshot, const char *name)
{
  JsonObject *obj = NULL;

  if (snapshot == NULL || !ma_json_get_object (snapshot, name, &obj, NULL))
    return NULL;
  return obj;
}

/* A part that could not be collected is one failed check, not a pile of them. */
static gboolean
part_usable (JsonObject *before, JsonObject *now, const char *name, MaReport *report)
{
  const char *err = NULL;
  gint64 started = g_get_monotonic_time ();

  if (before == NULL || now == NULL)
    {
      ma_report_add (report, name, MA_CHECK_FAIL, started, "the %s part is missing",
                     before == NULL ? "snapshot's" : "current");
      return FALSE;
    }
  if (ma_json_get_string (now, "error", &err, NULL) && err != NULL)
    {
      ma_report_add (report, name, MA_CHECK_FAIL, started, "cannot read it now: %s", err);
      return FALSE;
    }
  err = NULL;
  if (ma_json_get_string (before, "error", &err, NULL) && err != NULL)
    {
      ma_report_add (report, name, MA_CHECK_WARN, started,
                     "the snapshot could not record it (%s): nothing to compare", err);
      return FALSE;
    }
  return TRUE;
}

void
ma_validate_clock (JsonObject *before, JsonObject *now, const MaValidateOptions *options,
                   MaReport *report)
{
  gint64 started = g_get_monotonic_time ();
  double off_before = NAN, off_now = NAN;
  gboolean sync_before = FALSE, sync_now = FALSE;
  double max_drift = options != NULL ? options->rtc_max_drift : MA_VALIDATE_RTC_MAX_DRIFT_SECONDS;

  if (before == NULL || now == NULL)
    return;
  ma_json_get_double (before, "rtc-offset", &off_before, NULL);
  ma_json_get_double (now, "rtc-offset", &off_now, NULL);
  if (!isnan (off_now) && !isnan (off_before))
    {
      double drift = off_now - off_before;
      if (ABS (drift) > max_drift)
        ma_report_add (report, "clock:rtc", MA_CHECK_WARN, started,
                       "realtime moved %+.1f s against the RTC since the snapshot "
                       "(offset %+.1f s, was %+.1f s)", drift, off_now, off_before);
      else
        ma_report_add (report, "clock:rtc", MA_CHECK_PASS, started,
                       "realtime is %+.1f s from the RTC (was %+.1f s)", off_now, off_before);
    }
  if (json_object_has_member (now, "synchronized"))
    {
      ma_json_get_bool (before, "synchronized", &sync_before, NULL);
      ma_json_get_bool (now, "synchronized", &sync_now, NULL);
      if (sync_before && !sync_now)
        ma_report_add (report, "clock:sync", MA_CHECK_WARN, started,
                       "the clock was synchronised before and is not now (adjtimex)");
      else
        ma_report_add (report, "clock:sync", MA_CHECK_PASS, started, "%s",
                       sync_now ? "synchronised (adjtimex)"
                                : "not synchronised, as before (adjtimex)");
    }
}

void
ma_validate_diff (JsonObject *before, JsonObject *now, MaReport *report)
{
  JsonObject *net_before = part (before, "network"), *net_now = part (now, "network");
  JsonObject *st_before = part (before, "storage"), *st_now = part (now, "storage");

  if (part_usable (net_before, net_now, "network", report))
    ma_validate_net_diff (net_before, net_now, report);
  if (part_usable (st_before, st_now, "storage", report))
    ma_validate_storage_diff (st_before, st_now, report);
}

MaReport *
ma_validate_run (JsonObject *before, const MaValidateOptions *options)
{
  g_autoptr(MaReport) report = ma_report_new ();
  g_autoptr(JsonNode) now_node = ma_snapshot_collect ("validation", NULL);
  JsonObject *now = json_node_get_object (now_node);

  ma_validate_diff (before, now, report);
  ma_validate_clock (part (before, "clock"), part (now, "clock"), options, report);
  if (part (now, "network") != NULL && !json_object_has_member (part (now, "network"), "error"))
    ma_validate_net_probe (part (before, "network"), part (now, "network"), options, report);
  if (part (now, "storage") != NULL && !json_object_has_member (part (now, "storage"), "error"))
    ma_validate_storage_probe (part (before, "storage"), part (now, "storage"), options, report);
  return g_steal_pointer (&report);
}

/* ---- the agent's validator ---- */

typedef struct
{
  MaValidationDoneFunc func;
  gpointer user_data;
  GDestroyNotify notify;
} Waiter;

struct _MaValidator
{
  MaAgent *agent;
  gboolean running;
  GArray *waiters; /* Waiter */
  MaValidateOptions *options; /* of the running validation, owned by its task */
  guint state_poll;
  char *trigger;
  char *operation;
  guint64 resume;
  guint64 runs;
  gint64 started;
};

MaValidator *
ma_validator_new (MaAgent *agent)
{
  MaValidator *self = g_new0 (MaValidator, 1);

  self->agent = agent;
  self->waiters = g_array_new (FALSE, FALSE, sizeof (Waiter));
  return self;
}

void
ma_validator_free (MaValidator *self)
{
  if (self == NULL)
    return;
  g_clear_handle_id (&self->state_poll, g_source_remove);
  for (guint i = 0; i < self->waiters->len; i++)
    {
      Waiter *w = &g_array_index (self->waiters, Waiter, i);
      if (w->notify != NULL)
        w->notify (w->user_data);
    }
  g_array_unref (self->waiters);
  g_free (self->trigger);
  g_free (self->operation);
  g_free (self);
}

gboolean
ma_validator_is_running (MaValidator *self)
{
  return self->running;
}

static gboolean
mirror_quiesced (gpointer user_data)
{
  MaValidator *self = user_data;
  MaState state = ma_lifecycle_get_state (ma_agent_get_lifecycle (self->agent));

  if (self->options != NULL)
    g_atomic_int_set (self->options->quiesced, state == MA_STATE_QUIESCED);
  return G_SOURCE_CONTINUE;
}

typedef struct
{
  JsonNode *before; /* NULL when there is no snapshot */
  char *load_error;
  MaValidateOptions *options;
} RunData;

static void
run_data_free (RunData *data)
{
  g_clear_pointer (&data->options, ma_validate_options_free);
  g_clear_pointer (&data->before, json_node_unref);
  g_free (data->load_error);
  g_free (data);
}

static void
validation_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  RunData *data = task_data;
  g_autoptr(MaReport) report = NULL;

  if (data->before == NULL)
    {
      report = ma_report_new ();
      ma_report_add (report, "snapshot", MA_CHECK_FAIL, g_get_monotonic_time (),
                     "no snapshot to compare with: %s", data->load_error);
    }
  else
    report = ma_validate_run (json_node_get_object (data->before), data->options);
  g_task_return_pointer (task, g_steal_pointer (&report), (GDestroyNotify) ma_report_free);
}

static void
validation_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MaValidator *self = user_data;
  RunData *data = g_task_get_task_data (G_TASK (result));
  g_autoptr(MaReport) report = g_task_propagate_pointer (G_TASK (result), NULL);
  g_autoptr(JsonNode) node = ma_report_to_json (report);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) waiters = NULL;
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  JsonObject *obj = json_node_get_object (node);
  JsonObject *event;
  MaLifecycle *lc = ma_agent_get_lifecycle (self->agent);
  MaCheckStatus verdict = ma_report_verdict (report);
  JsonObject *before = data->before != NULL ? json_node_get_object (data->before) : NULL;
  gint64 taken_at = 0;
  const char *reason = NULL;

  g_clear_handle_id (&self->state_poll, g_source_remove);
  json_object_set_int_member (obj, "run", (gint64) self->runs);
  json_object_set_string_member (obj, "trigger", self->trigger);
  if (self->resume > 0)
    json_object_set_int_member (obj, "resume", (gint64) self->resume);
  if (self->operation != NULL)
    json_object_set_string_member (obj, "operation", self->operation);
  json_object_set_int_member (obj, "started-at", self->started / G_USEC_PER_SEC);
  json_object_set_double_member (obj, "duration",
                                 (double) (g_get_real_time () - self->started) / G_USEC_PER_SEC);
  if (before != NULL)
    {
      JsonObject *snap = json_object_new ();
      ma_json_get_int (before, "taken-at", &taken_at, NULL);
      ma_json_get_string (before, "reason", &reason, NULL);
      json_object_set_int_member (snap, "taken-at", taken_at);
      json_object_set_string_member (snap, "reason", reason != NULL ? reason : "unknown");
      json_object_set_object_member (obj, "snapshot", snap);
    }

  path = g_build_filename (ma_agent_get_state_dir (self->agent), MA_VALIDATION_FILE, NULL);
  text = ma_json_to_string (node);
  if (!g_file_set_contents_full (path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_warning ("cannot keep the validation report: %s", error->message);

  event = json_object_new ();
  json_object_set_string_member (event, "verdict", ma_check_status_to_string (verdict));
  json_object_set_member (event, "failed",
                          json_node_copy (json_object_get_member (obj, "failed")));
  json_object_set_member (event, "warned",
                          json_node_copy (json_object_get_member (obj, "warned")));
  json_object_set_int_member (event, "checks", ma_report_get_checks (report)->len);
  json_object_set_int_member (event, "run", (gint64) self->runs);
  json_object_set_string_member (event, "trigger", self->trigger);
  if (self->resume > 0)
    json_object_set_int_member (event, "resume", (gint64) self->resume);
  if (self->operation != NULL)
    json_object_set_string_member (event, "operation", self->operation);
  json_object_set_double_member (event, "duration",
                                 (double) (g_get_real_time () - self->started) / G_USEC_PER_SEC);
  ma_agent_emit_event (self->agent, "VALIDATION_COMPLETED", ma_json_new_object_node (event));
  ma_agent_set_last_operation (self->agent, "validate", self->operation,
                               ma_check_status_to_string (verdict));

  /* a validation after a resume closes it in the lifecycle */
  if (ma_lifecycle_get_state (lc) == MA_STATE_RESUMED)
    {
      g_autoptr(GError) lc_error = NULL;
      if (!ma_lifecycle_enter (lc, verdict == MA_CHECK_FAIL ? MA_STATE_FAILED
                                                             : MA_STATE_VALIDATED,
                               NULL, "validation completed", &lc_error))
        g_debug ("lifecycle: %s", lc_error->message);
    }

  self->running = FALSE;
  self->options = NULL;
  waiters = g_steal_pointer (&self->waiters);
  self->waiters = g_array_new (FALSE, FALSE, sizeof (Waiter));
  for (guint i = 0; i < waiters->len; i++)
    {
      Waiter *w = &g_array_index (waiters, Waiter, i);
      if (w->func != NULL)
        w->func (node, w->user_data);
      if (w->notify != NULL)
        w->notify (w->user_data);
    }
  ma_agent_release (self->agent);
}

void
ma_validator_start (MaValidator *self, const char *trigger, guint64 resume,
                    const char *operation, MaValidationDoneFunc done, gpointer user_data,
                    GDestroyNotify notify)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  RunData *data;
  Waiter waiter = { done, user_data, notify };

  g_array_append_val (self->waiters, waiter);
  if (self->running)
    return;

  data = g_new0 (RunData, 1);
  data->before = ma_snapshot_load (ma_agent_get_state_dir (self->agent), &error);
  if (data->before == NULL)
    data->load_error = g_strdup (error->message);
  g_clear_error (&error);
  data->options = ma_validate_options_new (ma_agent_get_config (self->agent), &error);
  if (data->options == NULL)
    {
      g_warning ("[validate] configuration: %s; using the defaults", error->message);
      data->options = ma_validate_options_new (NULL, NULL);
    }
  /* RunData owns the options; the validator mirrors the lifecycle into them meanwhile */
  self->options = data->options;
  self->state_poll = g_timeout_add (MA_VALIDATE_STATE_POLL_MS, mirror_quiesced, self);
  self->running = TRUE;
  self->runs++;
  self->resume = resume;
  self->started = g_get_real_time ();
  g_free (self->trigger);
  self->trigger = g_strdup (trigger);
  g_free (self->operation);
  self->operation = g_strdup (operation);
  g_atomic_int_set (data->options->quiesced,
                    ma_lifecycle_get_state (ma_agent_get_lifecycle (self->agent))
                      == MA_STATE_QUIESCED);

  task = g_task_new (NULL, NULL, validation_done, self);
  g_task_set_task_data (task, data, (GDestroyNotify) run_data_free);
  g_task_set_source_tag (task, ma_validator_start);
  ma_agent_hold (self->agent);
  g_task_run_in_thread (task, validation_thread);
}
