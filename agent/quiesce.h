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

/* A oneshot plugin whose thaw failed is tried again after these delays, then every
 * MA_QUIESCE_THAW_RETRY_EVERY_SECONDS until it succeeds (one timer, one attempt at a time);
 * [quiesce] thaw-retry-seconds overrides the list (its last entry repeats). */
#define MA_QUIESCE_THAW_RETRY_FIRST_SECONDS 5
#define MA_QUIESCE_THAW_RETRY_SECOND_SECONDS 15
#define MA_QUIESCE_THAW_RETRY_EVERY_SECONDS 60
#define MA_QUIESCE_THAW_RETRY_MAX_DELAYS 8      /* entries thaw-retry-seconds may list */
#define MA_QUIESCE_THAW_RETRY_MIN_SECONDS 0.01
#define MA_QUIESCE_THAW_RETRY_MAX_SECONDS 3600.0

typedef struct _MaQuiesce MaQuiesce;

/* An MaModuleRegisterFunc: the commands quiesce, thaw, renew, check, plugins and
 * plugin-test, the capability "quiesce", the shutdown hook that releases every plugin, and
 * the replay of the thaw of oneshot plugins a previous run left quiesced (from its journal).
 * Oneshot plugins whose thaw failed stay in that journal and are retried until their thaw
 * succeeds. Never fails. */
gboolean ma_quiesce_register (MaAgent *agent, GError **error);

/* The quiesce engine of this agent, or NULL when it is not registered. */
MaQuiesce *ma_quiesce_from_agent (MaAgent *agent);

/* Every plugin's check phase, all at once, as `check` without arguments: report is its
 * answer ({"ready", "phase", "seconds", "plugins"}), or NULL and error. */
typedef void (*MaQuiesceCheckFunc) (JsonNode *report, const GError *error, gpointer user_data);
void ma_quiesce_check_async (MaQuiesce *self, MaQuiesceCheckFunc func, gpointer user_data);

G_END_DECLS
