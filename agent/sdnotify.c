/* sdnotify.c — the systemd notification protocol (READY=1, STOPPING=1, WATCHDOG=1)
 * spoken directly over $NOTIFY_SOCKET, without linking libsystemd. */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

gboolean
ma_sd_notify (const char *message)
{
  const char *path = g_getenv ("NOTIFY_SOCKET");
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  socklen_t addr_len;
  gsize path_len;
  ssize_t sent;
  int fd;

  if (path == NULL || (path[0] != '/' && path[0] != '@'))
    return TRUE;
  path_len = strlen (path);
  if (path_len >= sizeof addr.sun_path)
    return FALSE;
  memcpy (addr.sun_path, path, path_len);
  if (path[0] == '@')
    addr.sun_path[0] = '\0'; /* abstract namespace */
  addr_len = (socklen_t) (offsetof (struct sockaddr_un, sun_path) + path_len);

  fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return FALSE;
  sent = sendto (fd, message, strlen (message), MSG_NOSIGNAL, (struct sockaddr *) &addr, addr_len);
  if (sent < 0)
    g_debug ("sd_notify %s: %s", message, g_strerror (errno));
  close (fd);
  return sent >= 0;
}

static gboolean
watchdog_ping (gpointer user_data)
{
  ma_sd_notify ("WATCHDOG=1");
  return G_SOURCE_CONTINUE;
}

guint
ma_sd_watchdog_start (void)
{
  const char *usec = g_getenv ("WATCHDOG_USEC");
  const char *pid = g_getenv ("WATCHDOG_PID");
  guint64 interval;

  if (usec == NULL || !g_ascii_string_to_unsigned (usec, 10, 1, G_MAXUINT64, &interval, NULL))
    return 0;
  if (pid != NULL && g_ascii_strtoll (pid, NULL, 10) != getpid ())
    return 0;
  return g_timeout_add ((guint) MAX (interval / 2000, 1), watchdog_ping, NULL);
}
