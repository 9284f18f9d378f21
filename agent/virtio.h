/* virtio.h — the served virtio-serial port: found by name, followed through hotplug (udev,
 * or the kernel's uevents without udevd), a host connecting noticed by SIGIO, one session. */
#pragma once

#include "session.h"

G_BEGIN_DECLS

typedef struct _MaVirtio MaVirtio;
typedef void (*MaVirtioHostFunc) (MaVirtio *virtio, gpointer user_data);

/* Serve the port with this name (or a device path) now, or when it appears. Requests go
 * through commands; host_connected is called each time a host opens the port. SIGIO must be
 * blocked in every thread (main() blocks it before any thread starts). */
MaVirtio *ma_virtio_new (MaAgent *agent, MaCommands *commands, const char *name,
                         MaVirtioHostFunc host_connected, gpointer user_data, GError **error);
void ma_virtio_free (MaVirtio *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaVirtio, ma_virtio_free)

const char *ma_virtio_get_name (MaVirtio *self);
/* The session serving the port, or NULL while the port is absent. */
MaSession *ma_virtio_get_session (MaVirtio *self);

G_END_DECLS
