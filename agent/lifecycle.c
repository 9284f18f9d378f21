/* lifecycle.c — the migration state machine: which state the guest is in
 * (idle → prepared → quiesced → thawed → resumed → validated, failed/expired branches). */
#include "lifecycle.h"

#include "error.h"
#include "json.h"

struct _MaLifecycle
{
  MaEvents *events; /* not owned */
  MaState state;
  char *operation;
  gint64 changed_at;
};

static const char *const state_names[] = {
  [MA_STATE_IDLE] = "idle",           [MA_STATE_PREPARED] = "prepared",
  [MA_STATE_QUIESCED] = "quiesced",   [MA_STATE_THAWED] = "thawed",
  [MA_STATE_RESUMED] = "resumed",     [MA_STATE_VALIDATED] = "validated",
  [MA_STATE_FAILED] = "failed",       [MA_STATE_EXPIRED] = "expired",
};

/* allowed[from] is a bit set of the states reachable from `from`. Every state
 * may go back to idle/prepared (a new operation) and to failed. A resume may be
 * detected in any state, because the guest can be moved without being prepared. */
#define S(x) (1u << (x))
#define ANY_START (S (MA_STATE_IDLE) | S (MA_STATE_PREPARED) | S (MA_STATE_QUIESCED) \
                   | S (MA_STATE_FAILED) | S (MA_STATE_RESUMED))
static const guint allowed[] = {
  [MA_STATE_IDLE] = ANY_START,
  [MA_STATE_PREPARED] = ANY_START,
  [MA_STATE_QUIESCED] = S (MA_STATE_THAWED) | S (MA_STATE_EXPIRED) | S (MA_STATE_FAILED)
                        | S (MA_STATE_RESUMED),
  [MA_STATE_THAWED] = ANY_START | S (MA_STATE_VALIDATED),
  [MA_STATE_RESUMED] = ANY_START | S (MA_STATE_THAWED) | S (MA_STATE_VALIDATED)
                       | S (MA_STATE_EXPIRED),
  [MA_STATE_VALIDATED] = ANY_START | S (MA_STATE_VALIDATED),
  [MA_STATE_FAILED] = ANY_START | S (MA_STATE_THAWED) | S (MA_STATE_VALIDATED),
  [MA_STATE_EXPIRED] = ANY_START | S (MA_STATE_THAWED) | S (MA_STATE_VALIDATED),
};
#undef S
#undef ANY_START

const char *
ma_state_to_string (MaState state)
{
  if ((guint) state >= G_N_ELEMENTS (state_names))
    return "unknown";
  return state_names[state];
}

gboolean
ma_lifecycle_allows (MaState from, MaState to)
{
  if ((guint) from >= G_N_ELEMENTS (allowed) || (guint) to >= G_N_ELEMENTS (state_names))
    return FALSE;
  return (allowed[from] & (1u << to)) != 0;
}

MaLifecycle *
ma_lifecycle_new (MaEvents *events)
{
  MaLifecycle *self = g_new0 (MaLifecycle, 1);

  self->events = events;
  self->state = MA_STATE_IDLE;
  self->changed_at = g_get_real_time ();
  return self;
}

void
ma_lifecycle_free (MaLifecycle *self)
{
  if (self == NULL)
    return;
  g_free (self->operation);
  g_free (self);
}

MaState
ma_lifecycle_get_state (MaLifecycle *self)
{
  return self->state;
}

const char *
ma_lifecycle_get_operation (MaLifecycle *self)
{
  return self->operation;
}

gint64
ma_lifecycle_get_changed_at (MaLifecycle *self)
{
  return self->changed_at;
}

gboolean
ma_lifecycle_enter (MaLifecycle *self, MaState to, const char *operation, const char *reason,
                    GError **error)
{
  MaState from = self->state;
  JsonObject *data;

  if (!ma_lifecycle_allows (from, to))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_BUSY, "cannot go from state '%s' to '%s'",
                   ma_state_to_string (from), ma_state_to_string (to));
      return FALSE;
    }
  if (operation != NULL && g_strcmp0 (operation, self->operation) != 0)
    {
      g_free (self->operation);
      self->operation = g_strdup (operation);
    }
  self->state = to;
  self->changed_at = g_get_real_time ();
  g_message ("state %s -> %s (%s%s%s)", ma_state_to_string (from), ma_state_to_string (to),
             reason != NULL ? reason : "no reason given", self->operation ? ", operation " : "",
             self->operation ? self->operation : "");

  if (self->events != NULL)
    {
      data = json_object_new ();
      json_object_set_string_member (data, "from", ma_state_to_string (from));
      json_object_set_string_member (data, "to", ma_state_to_string (to));
      if (reason != NULL)
        json_object_set_string_member (data, "reason", reason);
      if (self->operation != NULL)
        json_object_set_string_member (data, "operation", self->operation);
      ma_events_emit (self->events, "STATE_CHANGED", ma_json_new_object_node (data));
    }
  return TRUE;
}

JsonNode *
ma_lifecycle_to_json (MaLifecycle *self)
{
  JsonObject *obj = json_object_new ();

  json_object_set_string_member (obj, "state", ma_state_to_string (self->state));
  if (self->operation != NULL)
    json_object_set_string_member (obj, "operation", self->operation);
  else
    json_object_set_null_member (obj, "operation");
  json_object_set_int_member (obj, "since", self->changed_at / G_USEC_PER_SEC);
  return ma_json_new_object_node (obj);
}
