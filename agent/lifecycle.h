/* lifecycle.h — the migration state machine: which state the guest is in
 * (idle → prepared → quiesced → thawed → resumed → validated, failed/expired branches). */
#pragma once

#include "events.h"

G_BEGIN_DECLS

typedef enum
{
  MA_STATE_IDLE,
  MA_STATE_PREPARED,
  MA_STATE_QUIESCED,
  MA_STATE_THAWED,
  MA_STATE_RESUMED,
  MA_STATE_VALIDATED,
  MA_STATE_FAILED,
  MA_STATE_EXPIRED,
} MaState;

typedef struct _MaLifecycle MaLifecycle;

MaLifecycle *ma_lifecycle_new (MaEvents *events);
void ma_lifecycle_free (MaLifecycle *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaLifecycle, ma_lifecycle_free)

const char *ma_state_to_string (MaState state);
MaState ma_lifecycle_get_state (MaLifecycle *self);
const char *ma_lifecycle_get_operation (MaLifecycle *self);
gint64 ma_lifecycle_get_changed_at (MaLifecycle *self); /* realtime µs */

/* Whether from → to is a transition of the state machine. */
gboolean ma_lifecycle_allows (MaState from, MaState to);

/* Move to a new state: emits STATE_CHANGED {from, to, reason, operation} and logs
 * it. Fails with MA_ERROR_BUSY naming both states when the move is not allowed.
 * operation may be NULL to keep the current one. */
gboolean ma_lifecycle_enter (MaLifecycle *self, MaState to, const char *operation,
                             const char *reason, GError **error);

/* {"state", "operation", "since"} for status replies. */
JsonNode *ma_lifecycle_to_json (MaLifecycle *self);

G_END_DECLS
