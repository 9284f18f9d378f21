/* migrate.h — `migctl migrate`: the whole live migration of a libvirt domain as one state
 * machine (preflight, quiesce under a renewed lease, late freeze, migrate, thaw, validation),
 * where every way out runs the undo of what was done. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* argv[0] is "migrate"; uri is the source's libvirt URI (NULL: libvirt's default). */
int ma_migrate_main (const char *uri, int argc, char **argv);

G_END_DECLS
