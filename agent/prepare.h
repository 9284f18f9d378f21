/* prepare.h — the pre-migration snapshot: the commands prepare (snapshot, blockers and the
 * plugins' check: is the guest ready?) and snapshot, and the baseline taken at start. */
#pragma once

#include "agent.h"

G_BEGIN_DECLS

typedef struct _MaPrepare MaPrepare;

/* An MaModuleRegisterFunc: the commands prepare and snapshot, and the baseline snapshot
 * (unless one is stored: a restarted agent keeps its prepare's). Never fails. */
gboolean ma_prepare_register (MaAgent *agent, GError **error);

G_END_DECLS
