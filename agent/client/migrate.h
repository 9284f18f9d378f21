/* migrate.h — `migctl migrate`: the whole live migration of a libvirt domain as one state
 * machine (preflight, quiesce under a renewed lease, late freeze, migrate, thaw, validation),
 * where every way out runs the undo of what was done. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Deadlines and periods, named (seconds unless said otherwise). */
#define MA_MIGRATE_AGENT_TIMEOUT_S 20      /* the agent's answer to one command */
#define MA_MIGRATE_PREPARE_TIMEOUT_S 120   /* prepare runs blockers and plugin checks */
#define MA_MIGRATE_TICK_MS 200             /* job statistics are read, the lease renewed */
#define MA_MIGRATE_STATS_POLL_MS 50        /* the stats thread looks for work */
#define MA_MIGRATE_FREEZE_LEAD_MS 1500     /* freeze when the first pass has this long left */
#define MA_MIGRATE_RESUMED_WAIT_S 10       /* the agent's own RESUMED before `resumed` is sent */
#define MA_MIGRATE_ABORT_WAIT_S 120        /* an aborted job must end within this */
#define MA_MIGRATE_QGA_TIMEOUT_S 30
#define MA_MIGRATE_QEMU_DEFAULT_DOWNTIME_MS 300ULL /* what the switch-over returns to */
#define MA_MIGRATE_DIRTY_RATE_SECONDS 1.0  /* the guest's own measurement at the start */

/* argv[0] is "migrate"; uri is the source's libvirt URI (NULL: libvirt's default). */
int ma_migrate_main (const char *uri, int argc, char **argv);

G_END_DECLS
