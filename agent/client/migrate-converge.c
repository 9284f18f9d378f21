/* migrate-converge.c — the convergence controller's actions in `migctl migrate`: the guest's
 * own dirty-rate at the start, the agent's throttle of its allowed classes, escalations. */
#include "migrate-private.h"

#include <libvirt/virterror.h>

#include "json.h"

/* ---------------------------------------------------------------- convergence */

static gboolean
throttled_contains (Migration *m, const char *klass)
{
  for (guint i = 0; i < m->throttled->len; i++)
    if (g_strcmp0 (g_ptr_array_index (m->throttled, i), klass) == 0)
      return TRUE;
  return FALSE;
}
/* Ask the agent to throttle the classes of its top writers; TRUE when a new class was. */
static gboolean
converge_throttle (Migration *m, const char *why)
{
  g_autoptr(JsonObject) args = migrate_args_operation (m);
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;
  JsonArray *throttled = NULL, *skipped = NULL;
  gboolean added = FALSE;

  json_object_set_string_member (args, "class", "auto");
  json_object_set_int_member (args, "lease_seconds", m->opt.lease_s);
  migrate_progress_end ();
  migrate_say (m, "not converging (%s): asking the guest to throttle its top writers", why);
  ret = migrate_agent_call (m, "throttle", args, MA_MIGRATE_AGENT_TIMEOUT_S, &error);
  if (ret == NULL || !JSON_NODE_HOLDS_OBJECT (ret))
    {
      migrate_say (m, "  the agent throttled nothing: %s", error != NULL ? error->message : "bad answer");
      migrate_step (m, "host", "throttle refused", error != NULL ? error->message : NULL);
      return FALSE;
    }
  if (ma_json_get_array (json_node_get_object (ret), "throttled", &throttled, NULL) && throttled)
    for (guint i = 0; i < json_array_get_length (throttled); i++)
      {
        JsonNode *c = json_array_get_element (throttled, i);
        const char *klass = NULL, *policy = NULL;
        g_autofree char *detail = NULL;
        if (!JSON_NODE_HOLDS_OBJECT (c)
            || !ma_json_get_string (json_node_get_object (c), "class", &klass, NULL) || !klass)
          continue;
        ma_json_get_string (json_node_get_object (c), "policy", &policy, NULL);
        detail = g_strdup_printf ("class %s (%s): %s", klass, policy != NULL ? policy : "?", why);
        migrate_say (m, "  throttled class %s (%s)", klass, policy != NULL ? policy : "?");
        migrate_step (m, "guest", "throttled", detail);
        if (!throttled_contains (m, klass))
          {
            g_ptr_array_add (m->throttled, g_strdup (klass));
            added = TRUE;
          }
      }
  if (ma_json_get_array (json_node_get_object (ret), "skipped", &skipped, NULL) && skipped
      && json_array_get_length (skipped) > 0)
    {
      g_autoptr(JsonNode) node = ma_json_new_array_node (json_array_ref (skipped));
      g_autofree char *text = ma_json_to_string (node);
      migrate_say (m, "  left alone (outside every throttle class the guest allows): %s", text);
    }
  return added;
}
void
migrate_converge_renew (Migration *m)
{
  for (guint i = 0; i < m->throttled->len; i++)
    {
      g_autoptr(JsonObject) args = migrate_args_operation (m);
      g_autoptr(JsonNode) ret = NULL;
      json_object_set_string_member (args, "class", g_ptr_array_index (m->throttled, i));
      json_object_set_int_member (args, "lease_seconds", m->opt.lease_s);
      ret = migrate_agent_call (m, "throttle", args, MA_MIGRATE_AGENT_TIMEOUT_S, NULL);
    }
}
/* Release every throttle of this migration where the guest runs now (its lease is the net). */
void
migrate_converge_release (Migration *m, const char *where)
{
  g_autoptr(JsonObject) args = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;

  if (m->throttled == NULL || m->throttled->len == 0 || m->agent == NULL)
    return;
  args = migrate_args_operation (m);
  ret = migrate_agent_call (m, "unthrottle", args, MA_MIGRATE_AGENT_TIMEOUT_S, &error);
  if (ret == NULL)
    {
      migrate_say (m, "migctl: warning: unthrottling on the %s failed: %s; the throttle's %d s lease "
           "ends it", where, error->message, m->opt.lease_s);
      return;
    }
  migrate_say (m, "unthrottled %u class(es) on the %s", m->throttled->len, where);
  migrate_step (m, "host", "unthrottled", where);
  g_ptr_array_set_size (m->throttled, 0);
}
/* The guest knows who dirties its memory before the hypervisor has measured a pass: when what
 * it dirties is already 70% of a capped bandwidth, the first step is taken at once. */
void
migrate_converge_from_the_guest (Migration *m)
{
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;
  g_autofree char *why = NULL;
  double rate = 0;

  if (m->converge == NULL || m->agent == NULL || m->opt.bandwidth_mib <= 0
      || g_strcmp0 (m->opt.converge, "agent") != 0)
    return;
  json_object_set_double_member (args, "seconds", MA_MIGRATE_DIRTY_RATE_SECONDS);
  json_object_set_int_member (args, "top", 3);
  ret = migrate_agent_call (m, "dirty-rate", args, MA_MIGRATE_AGENT_TIMEOUT_S, NULL);
  if (ret == NULL || !JSON_NODE_HOLDS_OBJECT (ret)
      || !ma_json_get_double (json_node_get_object (ret), "guest-total-mib-per-s", &rate, NULL))
    return;
  why = g_strdup_printf ("the guest dirties %.1f MiB/s (its dirty-rate), %.0f%% of the %d MiB/s "
                         "bandwidth", rate, 100.0 * rate / m->opt.bandwidth_mib,
                         m->opt.bandwidth_mib);
  migrate_step (m, "guest", "dirty-rate", why);
  if (rate < MA_CONVERGE_RATE_FRACTION * m->opt.bandwidth_mib)
    return;
  ma_converge_took_step (m->converge, (double) g_get_monotonic_time () / G_USEC_PER_SEC);
  if (!converge_throttle (m, why))
    ma_converge_throttle_exhausted (m->converge);
}
void
migrate_converge_tick (Migration *m, const JobSample *s)
{
  g_autofree char *why = NULL;
  MaConvergeAction action;

  if (m->converge == NULL || !s->valid)
    return;
  action = ma_converge_observe (m->converge, (double) g_get_monotonic_time () / G_USEC_PER_SEC,
                                s->iteration, s->remaining, s->rate, s->bps, &why);
  switch (action)
    {
    case MA_CONVERGE_THROTTLE:
      if (m->agent == NULL || !converge_throttle (m, why))
        ma_converge_throttle_exhausted (m->converge);
      break;
    case MA_CONVERGE_POSTCOPY:
      migrate_progress_end ();
      migrate_say (m, "switching to post-copy: %s", why);
      migrate_step (m, "host", "post-copy", why);
      if (virDomainMigrateStartPostCopy (m->dom, 0) < 0)
        migrate_say (m, "  refused: %s", virGetLastErrorMessage ());
      break;
    case MA_CONVERGE_SUSPEND:
      migrate_progress_end ();
      migrate_say (m, "pausing the guest: %s", why);
      migrate_step (m, "host", "suspend", why);
      if (virDomainSuspend (m->dom) < 0)
        migrate_say (m, "  refused: %s", virGetLastErrorMessage ());
      else
        m->suspended = TRUE;
      break;
    case MA_CONVERGE_ABORT:
      m->converge_aborted = TRUE;
      migrate_abort_job (m, why);
      break;
    case MA_CONVERGE_NOTHING:
    default:
      break;
    }
}
