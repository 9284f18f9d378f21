/* corecmds.h — the core commands every agent has: ping, sync, sync-delimited,
 * info, status and events. */
#pragma once

#include "agent.h"

G_BEGIN_DECLS

void ma_core_commands_register (MaAgent *agent);

G_END_DECLS
