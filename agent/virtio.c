/* virtio.c — the served virtio-serial port: found by name, followed through hotplug (udev,
 * or the kernel's uevents without udevd), a host connecting noticed by SIGIO, one session. */
#include "virtio.h"

#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <glib-unix.h>
#include <libudev.h>

#include "paths.h"

struct _MaVirtio
{
  MaAgent *agent;
  MaCommands *commands;
  char *name;
  MaSession *session;
  struct udev *udev;
  struct udev_monitor *monitor;
  guint monitor_watch;
  int sigio_fd;
  guint sigio_watch;
  MaVirtioHostFunc host_connected;
  gpointer user_data;
};

static void
virtio_close (MaVirtio *self, const char *why)
{
  g_autoptr(MaSession) session = g_steal_pointer (&self->session);

  if (session == NULL)
    return;
  g_message ("virtio port %s closed: %s", self->name, why);
  ma_session_close (session);
}

static void
virtio_on_host_connected (MaSession *session, gpointer user_data)
{
  MaVirtio *self = user_data;

  if (self->host_connected != NULL)
    self->host_connected (self, self->user_data);
}

static void
virtio_open (MaVirtio *self)
{
  static const MaSessionCallbacks callbacks = { .host_connected = virtio_on_host_connected };
  g_autofree char *node = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  int fd;

  if (self->session != NULL)
    return;
  node = ma_virtio_port_find (self->name);
  if (node == NULL)
    {
      g_message ("virtio port %s not present; waiting for it", self->name);
      return;
    }
  fd = ma_virtio_port_open (node, &error);
  if (fd < 0)
    {
      g_warning ("virtio port %s: %s", self->name, error->message);
      return;
    }
  name = g_strdup_printf ("virtio port %s (%s)", self->name, node);
  g_message ("serving %s", name);
  self->session = ma_session_new (self->agent, self->commands, fd, MA_CHANNEL_VIRTIO, name, -1,
                                  &callbacks, self);
}

static gboolean
virtio_on_uevent (int fd, GIOCondition cond, gpointer user_data)
{
  MaVirtio *self = user_data;
  struct udev_device *dev;

  while ((dev = udev_monitor_receive_device (self->monitor)) != NULL)
    {
      const char *action = udev_device_get_action (dev);
      const char *name = udev_device_get_sysattr_value (dev, "name");

      if (g_strcmp0 (action, "remove") == 0 && self->session != NULL)
        {
          /* the name attribute is gone with the device: check whether ours still exists */
          g_autofree char *node = ma_virtio_port_find (self->name);
          if (node == NULL)
            virtio_close (self, "device removed");
        }
      /* a hot-added port gets its name after the "add": virtio_console announces the
       * name with a "change" uevent */
      else if ((g_strcmp0 (action, "add") == 0 || g_strcmp0 (action, "change") == 0)
               && g_strcmp0 (name, self->name) == 0)
        virtio_open (self);
      udev_device_unref (dev);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
virtio_on_sigio (int fd, GIOCondition cond, gpointer user_data)
{
  MaVirtio *self = user_data;
  struct signalfd_siginfo info;

  while (read (fd, &info, sizeof info) == sizeof info)
    ;
  if (self->session != NULL)
    ma_session_check_host (self->session);
  return G_SOURCE_CONTINUE;
}

static void
virtio_watch_hotplug (MaVirtio *self)
{
  g_autofree char *control = ma_path_build (ma_path_udevdir (), "control", NULL);

  self->udev = udev_new ();
  if (self->udev != NULL)
    {
      /* without udevd (a minimal initramfs) listen to the kernel's own uevents */
      const char *source = g_file_test (control, G_FILE_TEST_EXISTS) ? "udev" : "kernel";
      self->monitor = udev_monitor_new_from_netlink (self->udev, source);
    }
  if (self->monitor != NULL)
    {
      udev_monitor_filter_add_match_subsystem_devtype (self->monitor, "virtio-ports", NULL);
      if (udev_monitor_enable_receiving (self->monitor) == 0)
        self->monitor_watch = g_unix_fd_add (udev_monitor_get_fd (self->monitor), G_IO_IN,
                                             virtio_on_uevent, self);
    }
  if (self->monitor_watch == 0)
    g_warning ("cannot watch for virtio ports appearing; serving only a port present now");
}

MaVirtio *
ma_virtio_new (MaAgent *agent, MaCommands *commands, const char *name,
               MaVirtioHostFunc host_connected, gpointer user_data, GError **error)
{
  g_autoptr(MaVirtio) self = g_new0 (MaVirtio, 1);
  sigset_t mask;

  self->sigio_fd = -1;
  self->agent = agent;
  self->commands = commands;
  self->name = g_strdup (name);
  self->host_connected = host_connected;
  self->user_data = user_data;

  /* SIGIO is read from a signalfd: a host connecting wakes us, nothing else does */
  sigemptyset (&mask);
  sigaddset (&mask, SIGIO);
  self->sigio_fd = signalfd (-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (self->sigio_fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "signalfd: %s",
                   g_strerror (errno));
      return NULL;
    }
  self->sigio_watch = g_unix_fd_add (self->sigio_fd, G_IO_IN, virtio_on_sigio, self);
  if (name[0] != '/')
    virtio_watch_hotplug (self);
  virtio_open (self);
  return g_steal_pointer (&self);
}

void
ma_virtio_free (MaVirtio *self)
{
  if (self == NULL)
    return;
  g_clear_handle_id (&self->monitor_watch, g_source_remove);
  g_clear_handle_id (&self->sigio_watch, g_source_remove);
  if (self->sigio_fd >= 0)
    close (self->sigio_fd);
  g_clear_pointer (&self->monitor, udev_monitor_unref);
  g_clear_pointer (&self->udev, udev_unref);
  if (self->session != NULL)
    {
      ma_session_close (self->session);
      ma_session_unref (self->session);
    }
  g_free (self->name);
  g_free (self);
}

const char *
ma_virtio_get_name (MaVirtio *self)
{
  return self->name;
}

MaSession *
ma_virtio_get_session (MaVirtio *self)
{
  return self->session;
}
