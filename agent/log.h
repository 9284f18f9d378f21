/* log.h — the daemon's structured log writer: journald's native protocol or stderr, and never
 * blocking — a record that cannot be written at once is dropped, counted and reported later. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MA_LOG_IDENTIFIER "migration-agent"
#define MA_LOG_MESSAGE_MAX 8192 /* longer values are truncated */
#define MA_LOG_EXIT_FLUSH_MS 1000 /* how long the daemon waits for queued records at exit */

typedef enum
{
  MA_LOG_MODE_STREAM,  /* GLib's text lines: info/debug to out_fd, the rest to err_fd */
  MA_LOG_MODE_JOURNAL, /* datagrams to MA_JOURNAL_SOCKET (default /run/systemd/journal/socket) */
} MaLogMode;

/* Chooses the mode as GLib's default writer would (journal when stderr is journald's stream),
 * takes the fatal levels set so far (G_DEBUG=fatal-criticals) and installs ma_log_writer.
 * Call once, early in main, before any thread exists. */
void ma_log_install (void);

/* Points the writer at a target without installing it (tests). The fds are not owned. */
void ma_log_configure (MaLogMode mode, int out_fd, int err_fd);

/* A GLogWriterFunc: respects G_MESSAGES_DEBUG like GLib's default writer, never blocks. */
GLogWriterOutput ma_log_writer (GLogLevelFlags log_level, const GLogField *fields, gsize n_fields,
                                gpointer user_data);

/* Waits at most timeout_ms until the records queued for a regular file are written (a file
 * on a frozen filesystem may never take them); TRUE when nothing is left. Call before exit. */
gboolean ma_log_flush (guint timeout_ms);

/* Records dropped and not yet reported by a "dropped" notice; and since configuration. */
guint64 ma_log_dropped_pending (void);
guint64 ma_log_dropped_total (void);

G_END_DECLS
