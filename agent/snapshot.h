/* snapshot.h — what the guest looked like before a migration: network (rtnetlink), storage
 * (libmount, libudev, the kernel log position) and clock, as JSON kept in the state dir. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MA_SNAPSHOT_FILE "snapshot.json"
#define MA_SNAPSHOT_VERSION 1

/* Each part on its own (blocking: call from a worker thread). Paths come from paths.h. */
JsonNode *ma_snapshot_collect_network (GError **error);
JsonNode *ma_snapshot_collect_storage (GError **error);
JsonNode *ma_snapshot_collect_clock (void);

/* Everything: {"version", "taken-at", "reason", "operation"?, "network", "storage", "clock"}.
 * A part that cannot be read is replaced by {"error": "..."} and the snapshot is still taken. */
JsonNode *ma_snapshot_collect (const char *reason, const char *operation);

/* The same in a worker thread. */
void ma_snapshot_collect_async (const char *reason, const char *operation,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);
JsonNode *ma_snapshot_collect_finish (GAsyncResult *result, GError **error);

/* STATE_DIR/snapshot.json, written atomically (the state dir lives under /run). */
gboolean ma_snapshot_save (JsonNode *snapshot, const char *state_dir, GError **error);
/* Loads and checks the shape: an object with object members network, storage, clock.
 * MA_ERROR_NOT_FOUND when there is none. */
JsonNode *ma_snapshot_load (const char *state_dir, GError **error);
/* Checks the shape of a snapshot from any source (a file, a test fixture). */
gboolean ma_snapshot_check (JsonNode *snapshot, GError **error);

/* The kernel log (ma_path_devdir()/kmsg, read without blocking): the highest sequence number
 * seen, and the messages after `after` that report I/O or filesystem errors (when errors is
 * not NULL, as "[seq] text" strings). Returns FALSE when the log cannot be read. */
gboolean ma_snapshot_scan_kmsg (gint64 after, gint64 *last_seq, GPtrArray *errors,
                                GError **error);
/* Whether a kernel message reports a storage error. */
gboolean ma_snapshot_kmsg_is_storage_error (const char *message);

G_END_DECLS
