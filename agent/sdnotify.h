/* sdnotify.h — the systemd notification protocol (READY=1, STOPPING=1, WATCHDOG=1)
 * spoken directly over $NOTIFY_SOCKET, without linking libsystemd. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Send one message; a no-op (TRUE) when not started by systemd. */
gboolean ma_sd_notify (const char *message);
/* Ping the watchdog at half of $WATCHDOG_USEC; 0 when no watchdog is set. */
guint ma_sd_watchdog_start (void);

G_END_DECLS
