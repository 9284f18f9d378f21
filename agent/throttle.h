/* throttle.h — cooperative throttling during a migration: configured classes of cgroups or
 * units slowed with cgroup v2 cpu.max or frozen, leased, journalled, and undone exactly. */
#pragma once

#include <json-glib/json-glib.h>

#include "agent.h"
#include "throttle-cgroup.h"

G_BEGIN_DECLS

#define MA_THROTTLE_DEFAULT_LEASE_SECONDS 120
#define MA_THROTTLE_MAX_LEASE_SECONDS 3600
#define MA_THROTTLE_AUTO_DEFAULT_TOP 3
#define MA_THROTTLE_JOURNAL "throttle.journal"
/* a change that could not be undone is retried this often (and by unthrottle, and at start) */
#define MA_THROTTLE_RETRY_SECONDS 60

typedef struct _MaThrottle MaThrottle;

/* Reads [throttle] and [throttle:CLASS] groups, then replays the journal in the state dir:
 * every change a previous agent left applied is undone (UNTHROTTLED, reason agent-restart). */
MaThrottle *ma_throttle_new (MaAgent *agent, GError **error);
void ma_throttle_free (MaThrottle *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaThrottle, ma_throttle_free)

/* Release every active throttle (restoring the previous values) and emit UNTHROTTLED with
 * this reason ("resumed", "agent-stopping"…); the module's hooks call it. NULL is ignored. */
void ma_throttle_release_all (MaThrottle *self, const char *reason);
guint ma_throttle_active_count (MaThrottle *self);

/* An MaModuleRegisterFunc: the commands `throttle` and `unthrottle`, the capability
 * "throttle", and the hooks that release every throttle when the agent stops and when the
 * guest resumed on the destination. An invalid configuration does not stop the agent: it is
 * logged and both commands answer with it. Never fails. */
gboolean ma_throttle_register (MaAgent *agent, GError **error);

G_END_DECLS
