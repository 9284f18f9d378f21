/* channel.h — byte transports: a non-blocking connected fd with a bounded output queue
 * (UNIX socket client or virtio-serial port), the UNIX listener with peer checks, and the
 * virtio port found by name through libudev. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define MA_CHANNEL_READ_CHUNK 65536

typedef enum
{
  MA_CHANNEL_SOCKET, /* EOF = the peer is gone for good */
  MA_CHANNEL_VIRTIO, /* EOF/HUP = no host connected now; SIGIO says when one connects */
} MaChannelKind;

typedef struct _MaChannel MaChannel;

typedef struct
{
  void (*data) (MaChannel *channel, const char *data, gsize len, gpointer user_data);
  /* Socket: peer closed; the channel is dead. Virtio: the host disconnected. */
  void (*hangup) (MaChannel *channel, gpointer user_data);
  /* Virtio only: a host (re)connected. */
  void (*connected) (MaChannel *channel, gpointer user_data);
  /* Virtio only: the host left and a host is back by the time the agent looked; what was
   * read meanwhile may be either's, so nothing is dropped (the new host's 0xFF and sync
   * sort it out). */
  void (*reconnected) (MaChannel *channel, gpointer user_data);
  /* All queued output has been written. */
  void (*drained) (MaChannel *channel, gpointer user_data);
} MaChannelCallbacks;

/* Takes ownership of fd (made non-blocking). */
MaChannel *ma_channel_new (int fd, MaChannelKind kind, const char *name,
                           const MaChannelCallbacks *callbacks, gpointer user_data);
void ma_channel_free (MaChannel *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaChannel, ma_channel_free)

const char *ma_channel_get_name (MaChannel *self);
MaChannelKind ma_channel_get_kind (MaChannel *self);
int ma_channel_get_fd (MaChannel *self);
/* Backpressure: stop or resume reading. */
void ma_channel_set_reading (MaChannel *self, gboolean reading);
/* Queue bytes; they are written as the peer accepts them. FALSE if the channel is dead. */
gboolean ma_channel_write (MaChannel *self, const char *data, gsize len);
gsize ma_channel_get_pending_output (MaChannel *self);
gboolean ma_channel_is_connected (MaChannel *self);
/* Virtio: re-check the host connection (after SIGIO). */
void ma_channel_check_host (MaChannel *self);

/* ---- UNIX listener ---- */

typedef void (*MaListenerAcceptFunc) (int fd, gint64 uid, gint64 pid, gpointer user_data);

typedef struct _MaListener MaListener;

/* Binds a SOCK_STREAM socket at path with mode 0600 (a stale socket file is replaced). */
MaListener *ma_listener_new (const char *path, MaListenerAcceptFunc func, gpointer user_data,
                             GError **error);
void ma_listener_free (MaListener *self);
const char *ma_listener_get_path (MaListener *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaListener, ma_listener_free)

/* ---- virtio port lookup ---- */

/* The device node of the virtio-serial port with this name, or NULL. A name starting
 * with '/' is taken as a path as it is. */
char *ma_virtio_port_find (const char *name);
/* Open the port non-blocking, with O_ASYNC so the kernel sends SIGIO on host connect. */
int ma_virtio_port_open (const char *devnode, GError **error);

G_END_DECLS
