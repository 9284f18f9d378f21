/* validate-storage.h — the storage half of validation: mounts (source, options, emergency_ro),
 * block devices (serial, WWN, size), kernel I/O errors, tasks stuck in a freeze, write probes. */
#pragma once

#include <json-glib/json-glib.h>

#include "validate-report.h"

G_BEGIN_DECLS

#define MA_FROZEN_MARKER "qga.state.isfrozen" /* qemu-ga's, under ma_path_rundir() */
#define MA_WRITE_PROBE_PREFIX ".migration-agent-probe-"

/* Compare the "storage" parts of two snapshots. */
void ma_validate_storage_diff (JsonObject *before, JsonObject *now, MaReport *report);
/* Live checks (blocking: a worker thread): new kernel storage errors since the snapshot,
 * tasks waiting in percpu_rwsem_wait, and a write probe per writable mount, each in its own
 * thread with a deadline so that a frozen filesystem cannot stall the caller. */
void ma_validate_storage_probe (JsonObject *before, JsonObject *now,
                                const MaValidateOptions *options, MaReport *report);

/* Whether qemu-ga says the filesystems are frozen, or the options say quiesced. */
gboolean ma_validate_storage_frozen (const MaValidateOptions *options, const char **why);

G_END_DECLS
