/* channel.c — byte transports: a non-blocking connected fd with a bounded output queue
 * (UNIX socket client or virtio-serial port), the UNIX listener with peer checks, and the
 * virtio port found by name through libudev. */
#include "channel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

#include "cleanup.h"
#include "error.h"

struct _MaChannel
{
  int fd;
  MaChannelKind kind;
  char *name;
  MaChannelCallbacks callbacks;
  gpointer user_data;
  guint watch_id;
  GIOCondition watch_cond;
  GByteArray *out;
  gsize out_offset;
  gboolean reading;
  gboolean connected; /* socket: alive; virtio: host connected */
  gboolean dead;
};

static void channel_update_watch (MaChannel *self);

static void
channel_drop_output (MaChannel *self)
{
  g_byte_array_set_size (self->out, 0);
  self->out_offset = 0;
}

static void
channel_hangup (MaChannel *self)
{
  self->connected = FALSE;
  channel_drop_output (self);
  if (self->kind == MA_CHANNEL_SOCKET)
    self->dead = TRUE;
  channel_update_watch (self);
  if (self->callbacks.hangup != NULL)
    self->callbacks.hangup (self, self->user_data);
  /* The HUP that brought us here was seen by an earlier poll: the host may have
   * reconnected since, and coalesced the SIGIO of its connect with the one of its
   * disconnect. Ask the port now, or a request sent on the new connection would go
   * unread until the host connects again. */
  if (self->kind == MA_CHANNEL_VIRTIO)
    ma_channel_check_host (self);
}

/* virtio_console reports POLLHUP exactly while no host is connected (and POLLIN along with
 * it, data or not). */
static gboolean
channel_host_present (MaChannel *self)
{
  struct pollfd pfd = { .fd = self->fd, .events = POLLIN };

  return poll (&pfd, 1, 0) >= 0 && (pfd.revents & POLLHUP) == 0;
}

/* A HUP or ERR from the watch's poll, acted on once nothing is left to read. On a virtio port
 * that poll can be older than the bytes just read: a host that left and the next one that
 * connected and wrote in between (one migctl after another) coalesce into that HUP. Hanging
 * up then would drop the new host's requests after its sync was answered, so a host present
 * now makes it a reconnect: nothing is dropped. */
static void
channel_lost_host (MaChannel *self)
{
  if (self->kind == MA_CHANNEL_VIRTIO && channel_host_present (self))
    {
      if (self->callbacks.reconnected != NULL)
        self->callbacks.reconnected (self, self->user_data);
      return;
    }
  channel_hangup (self);
}

static void
channel_flush (MaChannel *self)
{
  while (self->out_offset < self->out->len)
    {
      ssize_t n = write (self->fd, self->out->data + self->out_offset,
                         self->out->len - self->out_offset);
      if (n > 0)
        {
          self->out_offset += (gsize) n;
          continue;
        }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      g_debug ("%s: write failed: %s", self->name, n < 0 ? g_strerror (errno) : "no progress");
      channel_hangup (self);
      return;
    }
  if (self->out_offset == self->out->len)
    {
      gboolean had_output = self->out->len > 0;
      channel_drop_output (self);
      if (had_output && self->callbacks.drained != NULL)
        self->callbacks.drained (self, self->user_data);
    }
  else if (self->out_offset > 65536)
    {
      g_byte_array_remove_range (self->out, 0, (guint) self->out_offset);
      self->out_offset = 0;
    }
}

static gboolean
channel_on_io (int fd, GIOCondition cond, gpointer user_data)
{
  MaChannel *self = user_data;
  char buf[MA_CHANNEL_READ_CHUNK];

  if (cond & G_IO_OUT)
    channel_flush (self);

  if (self->connected && self->reading && (cond & (G_IO_IN | G_IO_HUP | G_IO_ERR)))
    {
      /* Drain what is there; a hangup is acted on only once nothing is left to read. */
      for (guint rounds = 0; rounds < 16 && self->connected && self->reading; rounds++)
        {
          ssize_t n = read (self->fd, buf, sizeof buf);
          if (n > 0)
            {
              self->callbacks.data (self, buf, (gsize) n, self->user_data);
              if (self->dead)
                return G_SOURCE_REMOVE;
              continue;
            }
          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            {
              if (cond & (G_IO_HUP | G_IO_ERR))
                channel_lost_host (self);
              break;
            }
          /* EOF or a hard error */
          channel_hangup (self);
          break;
        }
    }
  else if (cond & (G_IO_HUP | G_IO_ERR))
    channel_lost_host (self);

  if (self->watch_id == 0)
    return G_SOURCE_REMOVE;
  channel_update_watch (self);
  return self->watch_id != 0 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* Watch only what can make progress; a disconnected virtio port is not watched at
 * all (it would report HUP continuously): SIGIO tells us when a host connects. */
static void
channel_update_watch (MaChannel *self)
{
  GIOCondition cond = 0;

  if (!self->dead && self->connected)
    {
      if (self->reading)
        cond |= G_IO_IN | G_IO_HUP | G_IO_ERR;
      if (self->out_offset < self->out->len)
        cond |= G_IO_OUT | G_IO_HUP | G_IO_ERR;
    }
  if (cond == self->watch_cond && (cond == 0) == (self->watch_id == 0))
    return;
  if (self->watch_id != 0)
    {
      g_source_remove (self->watch_id);
      self->watch_id = 0;
    }
  self->watch_cond = cond;
  if (cond != 0)
    self->watch_id = g_unix_fd_add (self->fd, cond, channel_on_io, self);
}

MaChannel *
ma_channel_new (int fd, MaChannelKind kind, const char *name, const MaChannelCallbacks *callbacks,
                gpointer user_data)
{
  MaChannel *self = g_new0 (MaChannel, 1);

  self->fd = fd;
  self->kind = kind;
  self->name = g_strdup (name);
  self->callbacks = *callbacks;
  self->user_data = user_data;
  self->out = g_byte_array_new ();
  self->reading = TRUE;
  g_unix_set_fd_nonblocking (fd, TRUE, NULL);
  if (kind == MA_CHANNEL_SOCKET)
    {
      self->connected = TRUE;
      channel_update_watch (self);
    }
  else
    ma_channel_check_host (self);
  return self;
}

void
ma_channel_free (MaChannel *self)
{
  if (self == NULL)
    return;
  if (self->watch_id != 0)
    g_source_remove (self->watch_id);
  if (self->fd >= 0)
    close (self->fd);
  g_byte_array_unref (self->out);
  g_free (self->name);
  g_free (self);
}

const char *
ma_channel_get_name (MaChannel *self)
{
  return self->name;
}

MaChannelKind
ma_channel_get_kind (MaChannel *self)
{
  return self->kind;
}

int
ma_channel_get_fd (MaChannel *self)
{
  return self->fd;
}

void
ma_channel_set_reading (MaChannel *self, gboolean reading)
{
  if (self->reading == reading)
    return;
  self->reading = reading;
  channel_update_watch (self);
}

gboolean
ma_channel_write (MaChannel *self, const char *data, gsize len)
{
  if (self->dead || !self->connected)
    return FALSE;
  g_byte_array_append (self->out, (const guint8 *) data, (guint) len);
  channel_flush (self);
  channel_update_watch (self);
  return !self->dead;
}

gsize
ma_channel_get_pending_output (MaChannel *self)
{
  return self->out->len - self->out_offset;
}

gboolean
ma_channel_is_connected (MaChannel *self)
{
  return self->connected && !self->dead;
}

void
ma_channel_check_host (MaChannel *self)
{
  gboolean was_connected = self->connected;

  if (self->kind != MA_CHANNEL_VIRTIO || self->dead)
    return;
  /* A host that went away while we were connected is not believed here: the watch drains
   * what it sent, and its EOF hangs up. */
  if (channel_host_present (self))
    self->connected = TRUE;
  channel_update_watch (self);
  if (self->connected && !was_connected && self->callbacks.connected != NULL)
    self->callbacks.connected (self, self->user_data);
}

/* ---- UNIX listener ---- */

struct _MaListener
{
  int fd;
  char *path;
  guint watch_id;
  MaListenerAcceptFunc func;
  gpointer user_data;
};

static gboolean
listener_on_accept (int fd, GIOCondition cond, gpointer user_data)
{
  MaListener *self = user_data;

  for (guint i = 0; i < 64; i++)
    {
      struct ucred cred = { 0 };
      socklen_t len = sizeof cred;
      int client = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

      if (client < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK)
            g_warning ("%s: accept failed: %s", self->path, g_strerror (errno));
          break;
        }
      if (getsockopt (client, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        {
          g_warning ("%s: cannot read the peer's credentials: %s", self->path, g_strerror (errno));
          close (client);
          continue;
        }
      self->func (client, (gint64) cred.uid, (gint64) cred.pid, self->user_data);
    }
  return G_SOURCE_CONTINUE;
}

MaListener *
ma_listener_new (const char *path, MaListenerAcceptFunc func, gpointer user_data, GError **error)
{
  g_autoptr(MaListener) self = g_new0 (MaListener, 1);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;
  mode_t old_umask;
  int rc;

  self->fd = -1;
  if (strlen (path) >= sizeof addr.sun_path)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "socket path too long: %s", path);
      return NULL;
    }
  strcpy (addr.sun_path, path);
  if (lstat (path, &st) == 0)
    {
      if (!S_ISSOCK (st.st_mode))
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "%s exists and is not a socket", path);
          return NULL;
        }
      unlink (path);
    }
  self->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (self->fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "socket: %s",
                   g_strerror (errno));
      return NULL;
    }
  old_umask = umask (0177);
  rc = bind (self->fd, (struct sockaddr *) &addr, sizeof addr);
  umask (old_umask);
  if (rc < 0 || chmod (path, 0600) < 0 || listen (self->fd, 128) < 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot listen on %s: %s",
                   path, g_strerror (saved));
      return NULL;
    }
  self->path = g_strdup (path);
  self->func = func;
  self->user_data = user_data;
  self->watch_id = g_unix_fd_add (self->fd, G_IO_IN, listener_on_accept, self);
  return g_steal_pointer (&self);
}

void
ma_listener_free (MaListener *self)
{
  if (self == NULL)
    return;
  if (self->watch_id != 0)
    g_source_remove (self->watch_id);
  if (self->fd >= 0)
    {
      close (self->fd);
      if (self->path != NULL)
        unlink (self->path);
    }
  g_free (self->path);
  g_free (self);
}

const char *
ma_listener_get_path (MaListener *self)
{
  return self->path;
}

/* ---- virtio port ---- */

char *
ma_virtio_port_find (const char *name)
{
  g_autoptr(MaUdev) ctx = NULL;
  g_autoptr(MaUdevEnumerate) en = NULL;
  struct udev_list_entry *entry;

  if (name[0] == '/')
    return g_strdup (name);
  ctx = udev_new ();
  if (ctx == NULL)
    return NULL;
  en = udev_enumerate_new (ctx);
  udev_enumerate_add_match_subsystem (en, "virtio-ports");
  if (udev_enumerate_scan_devices (en) < 0)
    return NULL;
  udev_list_entry_foreach (entry, udev_enumerate_get_list_entry (en))
    {
      g_autoptr(MaUdevDevice) dev =
        udev_device_new_from_syspath (ctx, udev_list_entry_get_name (entry));
      const char *port_name;
      const char *node;

      if (dev == NULL)
        continue;
      port_name = udev_device_get_sysattr_value (dev, "name");
      node = udev_device_get_devnode (dev);
      if (port_name != NULL && node != NULL && g_strcmp0 (port_name, name) == 0)
        return g_strdup (node);
    }
  return NULL;
}

int
ma_virtio_port_open (const char *devnode, GError **error)
{
  int fd = open (devnode, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  int flags;

  if (fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot open %s: %s",
                   devnode, g_strerror (errno));
      return -1;
    }
  flags = fcntl (fd, F_GETFL);
  if (fcntl (fd, F_SETOWN, getpid ()) < 0 || fcntl (fd, F_SETFL, flags | O_ASYNC) < 0)
    g_warning ("%s: cannot request SIGIO on host connect: %s", devnode, g_strerror (errno));
  return fd;
}
