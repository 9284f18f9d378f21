/* freezeguard.h — the freeze watchdog: notices filesystems left frozen past a limit with no
 * sign of life from the orchestrator, and thaws them (FITHAW, reverse freeze order). */
#pragma once

#include "agent.h"
#include "mounts.h"

G_BEGIN_DECLS

#define MA_FREEZE_GUARD_DEFAULT_LIMIT_SECONDS 600
#define MA_FREEZE_GUARD_MIN_LIMIT_SECONDS 1
#define MA_FREEZE_GUARD_MAX_LIMIT_SECONDS 86400
#define MA_FREEZE_GUARD_DEFAULT_POLL_SECONDS 60
#define MA_FREEZE_GUARD_MAX_POLL_SECONDS 86400
/* How long the thaw worker may take before the guard reports the mounts it has not
 * reached as timed out (a thaw can block behind a sync holding the superblock). */
#define MA_FREEZE_GUARD_THAW_DEADLINE_SECONDS 30
/* qemu-ga keeps this file in its state directory (LOCALSTATEDIR/run, i.e. /run) while it
 * holds the guest's filesystems frozen (qga/main.c: "%s/qga.state.isfrozen"). */
#define MA_FREEZE_GUARD_QGA_MARKER "qga.state.isfrozen"
/* The kernel function a task sleeps in when it writes to a frozen filesystem
 * (sb_start_write → percpu_down_read), as /proc/PID/task/TID/wchan names it. */
#define MA_FREEZE_GUARD_FROZEN_WCHAN "percpu_rwsem_wait"

typedef struct _MaFreezeGuard MaFreezeGuard;

/* Reads [freeze-guard] enabled= (default true), limit-seconds= (default 600),
 * poll-seconds= (default 60; 0 = look for blocked writers only while qemu-ga's marker
 * exists), mounts= (default: every freezable filesystem), qga-state-dir= (default the
 * run dir of paths.h); registers the command freeze-guard and the capability
 * "freeze-guard", and starts watching. FALSE with a message naming the key when the
 * configuration is malformed. */
gboolean ma_freeze_guard_register (MaAgent *agent, GError **error);

/* The guard of this agent, or NULL when none is registered (or it has shut down).
 * Look it up each time rather than keeping the pointer. */
MaFreezeGuard *ma_freeze_guard_from_agent (MaAgent *agent);

/* A sign of life from the orchestrator (a quiesce lease renewal, an explicit renew):
 * restarts the clock of the current freeze. NULL is accepted and ignored, so callers
 * can write ma_freeze_guard_note_activity (ma_freeze_guard_from_agent (agent)). */
void ma_freeze_guard_note_activity (MaFreezeGuard *self);

/* The order the guard thaws in: every freezable superblock of the table, the reverse of
 * its freeze order (outer filesystems before the loop/dm filesystems stacked on them,
 * parents before the filesystems mounted below them). Borrowed MaSuperblock pointers. */
GPtrArray *ma_freeze_guard_thaw_order (MaMountTable *table);

G_END_DECLS
