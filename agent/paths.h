/* paths.h — every filesystem location the agent reads or writes, each overridable
 * through an environment variable so tests can point the agent at fixtures. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* MA_PROCFS (default /proc), MA_SYSFS (/sys), MA_RUNDIR (/run: qemu-ga's state lives
 * under it), MA_ETCDIR (/etc: resolv.conf), MA_CGROUPFS (/sys/fs/cgroup), MA_DEVDIR (/dev),
 * MA_UDEVDIR (/run/udev: its control socket says udevd runs). */
const char *ma_path_procfs (void);
const char *ma_path_sysfs (void);
const char *ma_path_rundir (void);
const char *ma_path_etcdir (void);
const char *ma_path_cgroupfs (void);
const char *ma_path_devdir (void);
const char *ma_path_udevdir (void);

/* g_build_filename (root, ...) for one of the roots above. */
char *ma_path_build (const char *root, const char *first, ...) G_GNUC_NULL_TERMINATED;

G_END_DECLS
