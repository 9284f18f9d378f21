/* migrate-guard.h — the dead man's switch of `migctl migrate --freeze`: a child process that
 * undoes what migctl holds in libvirt (the held switch-over's limits, a freeze) if migctl dies. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MA_GUARD_THAW_WAIT_S 120 /* the guard tries to thaw the guest for this long */
#define MA_GUARD_COMMAND "migrate-guard"

typedef struct _MigrateGuard MigrateGuard;

/* Start the guard: migctl itself, `migctl migrate-guard SRC-URI DST-URI UUID`, reading what
 * to undo on its standard input. NULL with error set when it cannot be started. */
MigrateGuard *migrate_guard_spawn (const char *src_uri, const char *dst_uri, const char *uuid,
                                   GError **error);

/* What the guard must undo if migctl dies now: the switch-over's limits held (and the values
 * they go back to), a freeze asked for or in place. Any thread. NULL guard: nothing. */
void migrate_guard_limits (MigrateGuard *self, gboolean held, unsigned long long downtime_ms,
                           unsigned long speed_mib);
void migrate_guard_frozen (MigrateGuard *self, gboolean frozen);

/* Nothing is left to undo: the guard exits, and is waited for. */
void migrate_guard_free (MigrateGuard *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MigrateGuard, migrate_guard_free)

/* The child: argv[0] is MA_GUARD_COMMAND; returns its exit status. */
int ma_migrate_guard_main (int argc, char **argv);

G_END_DECLS
