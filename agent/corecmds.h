/* corecmds.h — the core commands every agent has: ping, sync, sync-delimited,
 * info, status and events. */
#pragma once

#include "agent.h"

G_BEGIN_DECLS

/* An MaModuleRegisterFunc: the core commands, stateless; never fails. */
gboolean ma_core_commands_register (MaAgent *agent, GError **error);

G_END_DECLS
