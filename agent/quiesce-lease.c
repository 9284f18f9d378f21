/* quiesce-lease.c — the timers that release applications when nobody else does: the
 * operation's lease and the retries of oneshot thaws that failed. */
#include "quiesce-private.h"

#include <string.h>

#include "config.h"
#include "error.h"
#include "freezeguard.h"
#include "json.h"

double
quiesce_op_expires_in (MaOperation *op)
{
  if (op->state != OP_QUIESCED && op->state != OP_RENEWING)
    return op->lease_seconds;
  return MAX (0.0, (double) (op->expires_at - g_get_monotonic_time ()) / G_USEC_PER_SEC);
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
  json_object_set_array_member (data, "plugins", quiesce_op_names (op, TRUE));
  ma_agent_emit_event (q->agent, "QUIESCE_EXPIRED", ma_json_new_object_node (data));
  quiesce_enter_state (q, MA_STATE_EXPIRED, op->id, "the quiesce lease expired");
  quiesce_operation_release (op, "lease expired", MA_STATE_EXPIRED);
  return G_SOURCE_REMOVE;
}

/* The lease runs op->lease_seconds from since (monotonic µs, at most now). */
void
quiesce_lease_start_from (MaOperation *op, gint64 since)
{
  gint64 left_ms;

  g_clear_handle_id (&op->lease_id, g_source_remove);
  op->expires_at = since + (gint64) op->lease_seconds * G_USEC_PER_SEC;
  left_ms = MAX (0, (op->expires_at - g_get_monotonic_time ()) / 1000);
  op->lease_id = g_timeout_add ((guint) MIN (left_ms, (gint64) G_MAXUINT), on_lease_expired, op);
  /* a live lease is an orchestrator at work: the freeze guard waits */
  ma_freeze_guard_note_activity (ma_freeze_guard_from_agent (op->q->agent));
}

void
quiesce_lease_start (MaOperation *op)
{
  quiesce_lease_start_from (op, g_get_monotonic_time ());
}

void
quiesce_thaw_retry_free (MaThawRetry *retry)
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
  return ma_quiesce_retry_delay (q->retry_delays, q->n_retry_delays, attempts);
}

double
quiesce_thaw_retry_next_in (MaQuiesce *q)
{
  if (q->retry == NULL || q->retry->timer_id == 0)
    return -1;
  return MAX (0.0, (double) (q->retry->due - g_get_monotonic_time ()) / G_USEC_PER_SEC);
}

char *
quiesce_thaw_retry_names (MaThawRetry *retry)
{
  g_autoptr(GString) names = g_string_new (NULL);

  for (guint i = 0; i < retry->names->len; i++)
    g_string_append_printf (names, "%s%s", i ? ", " : "", (char *) retry->names->pdata[i]);
  return g_string_free (g_steal_pointer (&names), FALSE);
}

static gboolean
on_thaw_retry_due (gpointer user_data)
{
  MaQuiesce *q = user_data;

  q->retry->timer_id = 0;
  quiesce_thaw_retry_run (q, "retry");
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
void
quiesce_thaw_retry_begin (MaQuiesce *q, const char *operation, GPtrArray *failed,
                          const char *failures)
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
  quiesce_journal_write_names (q, retry->operation, retry->names, TRUE);
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
  g_autofree char *dropped = ma_quiesce_join_names (batch->dropped);
  JsonObject *data = json_object_new ();
  JsonObject *obj;
  JsonArray *names = json_array_new ();
  JsonArray *results = ma_batch_results (batch);
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
      quiesce_journal_write_names (q, retry->operation, retry->names, TRUE);
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
      quiesce_journal_remove (q);
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
    json_object_set_array_member (data, "pending", ma_quiesce_names_to_json (retry->names));
  if (batch->dropped->len > 0)
    json_object_set_array_member (data, "dropped", ma_quiesce_names_to_json (batch->dropped));
  if (retry->timer_id != 0)
    json_object_set_double_member (data, "next_retry_seconds", quiesce_thaw_retry_next_in (q));
  ma_agent_emit_event (q->agent, "THAWED", ma_json_new_object_node (data));

  obj = json_object_new ();
  json_object_set_string_member (obj, "operation", retry->operation);
  json_object_set_string_member (obj, "reason", retry->reason);
  json_object_set_double_member (obj, "seconds", seconds);
  json_object_set_int_member (obj, "retry", retry->attempts);
  json_object_set_array_member (obj, "results", results);
  ret = ma_json_new_object_node (obj);
  quiesce_answer_calls (retry->calls, ret, error);
  ma_batch_free (batch);

  /* a failure keeps the lifecycle where the failed thaw (or the replay) left it: `failed` */
  if (retry->names->len == 0 && error == NULL)
    {
      g_message ("thaw retry %u of operation %s succeeded", retry->attempts, retry->operation);
      quiesce_remember (q, retry->operation, "thawed", NULL);
      /* the failed thaw put the lifecycle in `failed`; unless something else happened since */
      if (ma_lifecycle_get_state (lc) == MA_STATE_FAILED
          && g_strcmp0 (ma_lifecycle_get_operation (lc), retry->operation) == 0)
        quiesce_enter_state (q, MA_STATE_THAWED, retry->operation, "thaw retry succeeded");
      ma_agent_set_last_operation (q->agent, "thaw", retry->operation, "ok");
      g_clear_pointer (&q->retry, quiesce_thaw_retry_free);
    }
  else if (retry->names->len == 0)
    {
      /* every plugin left was removed: nothing remains to retry, nothing was thawed */
      quiesce_remember (q, retry->operation, "failed", error->message);
      ma_agent_set_last_operation (q->agent, "thaw", retry->operation, "fail");
      g_clear_pointer (&q->retry, quiesce_thaw_retry_free);
    }
  else
    quiesce_remember (q, retry->operation, "failed", error->message);
  quiesce_shutdown_done (q);
}

/* Thaw again now (reason "retry" from the timer, "thaw" from the command); the plugins are
 * looked up afresh, so a fixed manifest or script is what runs. */
void
quiesce_thaw_retry_run (MaQuiesce *q, const char *reason)
{
  MaThawRetry *retry = q->retry;
  MaPluginSet *set = quiesce_reload (q);
  MaBatch *batch;

  g_clear_handle_id (&retry->timer_id, g_source_remove);
  batch = quiesce_batch_new (q, set, MA_PLUGIN_PHASE_THAW, retry->operation, 0);
  batch->reverse = TRUE;
  for (guint i = 0; i < retry->names->len; i++)
    ma_batch_add_named_thaw (batch, set, retry->names->pdata[i]);
  retry->attempts++;
  g_free (retry->reason);
  retry->reason = g_strdup (reason);
  retry->batch = batch;
  g_message ("thaw retry %u of operation %s (%s): %u plugins (%u cannot run now, %u dropped)",
             retry->attempts, retry->operation, reason, batch->items->len,
             batch->held_back->len, batch->dropped->len);
  ma_batch_start (batch, on_thaw_retried, q);
}

/* The names of the oneshot plugins among the failed items of a thaw batch (not owned), and
 * what failed as "NAME: WHY; …" in failures. */
GPtrArray *
quiesce_thaw_failures (MaBatch *batch, GString *failures)
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

/* [quiesce] thaw-retry-seconds: the delays before each retry of a failed thaw, the last one
 * repeating. A malformed list is refused with a warning and the built-in one is kept. */
guint
ma_quiesce_retry_delays_parse (char **text, double *delays, GError **error)
{
  guint n = text != NULL ? g_strv_length (text) : 0;

  if (n > MA_QUIESCE_THAW_RETRY_MAX_DELAYS)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "[quiesce] thaw-retry-seconds lists %u delays, at most %d are allowed", n,
                   MA_QUIESCE_THAW_RETRY_MAX_DELAYS);
      return 0;
    }
  for (guint i = 0; i < n; i++)
    {
      const char *value_text = g_strstrip (text[i]);
      char *end = NULL;
      double value = g_ascii_strtod (value_text, &end);
      if (end == value_text || *end != '\0' || !(value >= MA_QUIESCE_THAW_RETRY_MIN_SECONDS)
          || value > MA_QUIESCE_THAW_RETRY_MAX_SECONDS)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "[quiesce] thaw-retry-seconds: '%s' is not a number of seconds from "
                       "%.2f to %.0f", value_text, MA_QUIESCE_THAW_RETRY_MIN_SECONDS,
                       MA_QUIESCE_THAW_RETRY_MAX_SECONDS);
          return 0;
        }
      delays[i] = value;
    }
  return n;
}

double
ma_quiesce_retry_delay (const double *delays, guint n_delays, guint attempts)
{
  return delays[MIN (attempts, n_delays - 1)];
}

void
quiesce_thaw_retry_configure (MaQuiesce *q)
{
  static const double defaults[] = { MA_QUIESCE_THAW_RETRY_FIRST_SECONDS,
                                     MA_QUIESCE_THAW_RETRY_SECOND_SECONDS,
                                     MA_QUIESCE_THAW_RETRY_EVERY_SECONDS };
  g_auto(GStrv) text = ma_config_get_strv (ma_agent_get_config (q->agent), "quiesce",
                                           "thaw-retry-seconds");
  double delays[MA_QUIESCE_THAW_RETRY_MAX_DELAYS];
  g_autoptr(GError) error = NULL;
  guint n = ma_quiesce_retry_delays_parse (text, delays, &error);

  if (error != NULL)
    g_warning ("%s: using 5;15;60", error->message);
  if (n == 0)
    {
      q->n_retry_delays = G_N_ELEMENTS (defaults);
      memcpy (q->retry_delays, defaults, sizeof defaults);
      return;
    }
  q->n_retry_delays = n;
  memcpy (q->retry_delays, delays, n * sizeof (double));
}
