/* migrate-guard.c — the dead man's switch of `migctl migrate --freeze`: a child process that
 * undoes what migctl holds in libvirt (the held switch-over's limits, a freeze) if migctl dies. */
#include "migrate-guard.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "virt.h"

struct _MigrateGuard
{
  GPid pid;
  int fd; /* the guard's standard input */
  GMutex lock;
  gboolean held, frozen;
};

static void
guard_child_setup (gpointer data)
{
  /* its own session: a Ctrl-C or a SIGTERM to migctl's process group is not for it */
  setsid ();
}

MigrateGuard *
migrate_guard_spawn (const char *src_uri, const char *dst_uri, const char *uuid, GError **error)
{
  g_autofree char *self_exe = g_file_read_link ("/proc/self/exe", error);
  g_autoptr(MigrateGuard) guard = NULL;
  const char *argv[] = { NULL, MA_GUARD_COMMAND, src_uri, dst_uri, uuid, NULL };

  if (self_exe == NULL)
    return NULL;
  argv[0] = self_exe;
  guard = g_new0 (MigrateGuard, 1);
  guard->fd = -1;
  g_mutex_init (&guard->lock);
  if (!g_spawn_async_with_pipes (NULL, (char **) argv, NULL,
                                 G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL,
                                 guard_child_setup, NULL, &guard->pid, &guard->fd, NULL, NULL,
                                 error))
    return NULL;
  return g_steal_pointer (&guard);
}

static void
guard_tell (MigrateGuard *self, const char *line)
{
  gsize len = strlen (line);

  /* one short line is one atomic write; a guard that died is not migctl's failure */
  if (self->fd >= 0 && write (self->fd, line, len) != (gssize) len)
    g_debug ("the migration guard did not take '%s': %s", line, g_strerror (errno));
}

void
migrate_guard_limits (MigrateGuard *self, gboolean held, unsigned long long downtime_ms,
                      unsigned long speed_mib)
{
  g_autofree char *line = NULL;

  if (self == NULL)
    return;
  g_mutex_lock (&self->lock);
  if (held != self->held)
    {
      self->held = held;
      line = held ? g_strdup_printf ("limits held %llu %lu\n", downtime_ms, speed_mib)
                  : g_strdup ("limits free\n");
      guard_tell (self, line);
    }
  g_mutex_unlock (&self->lock);
}

void
migrate_guard_frozen (MigrateGuard *self, gboolean frozen)
{
  if (self == NULL)
    return;
  g_mutex_lock (&self->lock);
  if (frozen != self->frozen)
    {
      self->frozen = frozen;
      guard_tell (self, frozen ? "frozen 1\n" : "frozen 0\n");
    }
  g_mutex_unlock (&self->lock);
}

void
migrate_guard_free (MigrateGuard *self)
{
  if (self == NULL)
    return;
  if (self->fd >= 0)
    {
      guard_tell (self, "done\n");
      close (self->fd);
    }
  if (self->pid > 0)
    {
      while (waitpid (self->pid, NULL, 0) < 0 && errno == EINTR)
        ;
      g_spawn_close_pid (self->pid);
    }
  g_mutex_clear (&self->lock);
  g_free (self);
}

/* ---------------------------------------------------------------- the child */

typedef struct
{
  const char *src_uri, *dst_uri, *uuid;
  gboolean held, frozen;
  unsigned long long downtime_ms;
  unsigned long speed_mib;
} GuardState;

static void
guard_say (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static void
guard_say (const char *fmt, ...)
{
  va_list ap;
  g_autofree char *text = NULL;

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "migctl (migration guard): %s\n", text);
}

static void
guard_restore_limits (GuardState *s)
{
  g_autoptr(virConnect) conn = virConnectOpen (s->src_uri);
  g_autoptr(virDomain) dom = conn != NULL ? virDomainLookupByUUIDString (conn, s->uuid) : NULL;
  gboolean ok;

  if (dom == NULL)
    {
      guard_say ("cannot reach the domain on the source to restore its migration limits: %s",
                 virGetLastErrorMessage ());
      return;
    }
  ok = virDomainMigrateSetMaxDowntime (dom, s->downtime_ms, 0) == 0;
  ok = virDomainMigrateSetMaxSpeed (dom, s->speed_mib, 0) == 0 && ok;
  if (ok)
    guard_say ("migctl is gone while the switch-over was held: the downtime limit is back to "
               "%llu ms and the bandwidth to %lu MiB/s, so libvirt finishes the migration",
               s->downtime_ms, s->speed_mib);
  else
    guard_say ("restoring the migration limits: %s (the migration may have ended)",
               virGetLastErrorMessage ());
}

/* Thaw the guest where it runs (the source, or the destination once it moved); TRUE when one
 * side answered. A paused guest (the switch-over) is asked again a moment later. */
static gboolean
guard_thaw_once (GuardState *s)
{
  const char *uris[] = { s->src_uri, s->dst_uri };

  for (guint i = 0; i < G_N_ELEMENTS (uris); i++)
    {
      g_autoptr(virConnect) conn = virConnectOpen (uris[i]);
      g_autoptr(virDomain) dom = conn != NULL ? virDomainLookupByUUIDString (conn, s->uuid)
                                              : NULL;
      int state = VIR_DOMAIN_NOSTATE, reason = 0, n;

      if (dom == NULL || virDomainGetState (dom, &state, &reason, 0) < 0
          || state != VIR_DOMAIN_RUNNING)
        continue;
      n = virDomainFSThaw (dom, NULL, 0, 0);
      if (n >= 0)
        {
          guard_say ("migctl is gone after a freeze: thawed %d filesystem(s) on the %s", n,
                     i == 0 ? "source" : "destination");
          return TRUE;
        }
    }
  return FALSE;
}

static void
guard_undo (GuardState *s)
{
  gint64 deadline = g_get_monotonic_time () + MA_GUARD_THAW_WAIT_S * G_USEC_PER_SEC;

  if (s->held)
    guard_restore_limits (s);
  if (!s->frozen)
    return;
  while (!guard_thaw_once (s))
    {
      if (g_get_monotonic_time () >= deadline)
        {
          guard_say ("could not thaw the guest within %d s; its agent's freeze guard will",
                     MA_GUARD_THAW_WAIT_S);
          return;
        }
      g_usleep (G_USEC_PER_SEC);
    }
}

int
ma_migrate_guard_main (int argc, char **argv)
{
  GuardState s = { 0 };
  char line[128];

  if (argc != 4)
    {
      g_printerr ("migctl: %s is started by migctl migrate --freeze, not by hand\n",
                  MA_GUARD_COMMAND);
      return 2;
    }
  /* migctl's stderr may be a pipe nobody reads any more */
  signal (SIGPIPE, SIG_IGN);
  s.src_uri = argv[1];
  s.dst_uri = argv[2];
  s.uuid = argv[3];
  while (fgets (line, sizeof line, stdin) != NULL)
    {
      if (g_str_has_prefix (line, "done"))
        return 0;
      if (sscanf (line, "limits held %llu %lu", &s.downtime_ms, &s.speed_mib) == 2)
        s.held = TRUE;
      else if (g_str_has_prefix (line, "limits free"))
        s.held = FALSE;
      else if (g_str_has_prefix (line, "frozen "))
        s.frozen = line[7] == '1';
    }
  /* end of input without "done": migctl died */
  if (s.held || s.frozen)
    guard_undo (&s);
  return 0;
}
