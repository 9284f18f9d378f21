/* quiesce.h — the quiesce engine: all-or-nothing quiesce of the plugins in dependency order
 * with a lease, thaw, renew, check, plugins and plugin-test, and the journal for restarts. */
#pragma once

#include "agent.h"

G_BEGIN_DECLS

#define MA_QUIESCE_DEFAULT_LEASE_SECONDS 60
#define MA_QUIESCE_MAX_LEASE_SECONDS 86400
#define MA_QUIESCE_MAX_OPERATION_ID 128
#define MA_QUIESCE_HISTORY 32          /* finished operations remembered for idempotence */
#define MA_QUIESCE_JOURNAL "quiesce.journal"

/* Registers the commands quiesce, thaw, renew, check, plugins and plugin-test, the
 * capability "quiesce", the shutdown hook that releases every plugin, and replays the
 * thaw of oneshot plugins a previous run left quiesced (from its journal). */
void ma_quiesce_register (MaAgent *agent);

G_END_DECLS
