/* plugin-spawn.c — starting a plugin's process: argv only, a given environment, its own process
 * group, cwd /, default signals, three pipes; posix_spawn (vfork: no copy of the agent) or fork for User=. */
#include "plugin-spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <glib-unix.h>

#include "error.h"

#define MAX_GROUPS 256

/* Why not GSubprocess: a child setup function (for the process group) makes GLib fork the
 * agent and wait until the child has exec'd: a copy of the agent's page tables, and the main
 * loop waiting for a child scheduled on a busy CPU — measured 4-5 ms a plugin on 2 CPUs, most
 * of a no-op plugin's cost. posix_spawn (CLONE_VFORK) sets the group, mask, signals, fds and
 * cwd itself, and the agent waits only for the exec: 0.3-2 ms. User= needs setuid between
 * fork and exec, which posix_spawn cannot do: those plugins keep GLib's fork. */

static void
close_fd (int *fd)
{
  if (*fd >= 0)
    close (*fd);
  *fd = -1;
}

static void
close_pair (int fds[2])
{
  close_fd (&fds[0]);
  close_fd (&fds[1]);
}

/* pipes[i][child_end] becomes fd i in the child */
static gboolean
open_pipes (int pipes[3][2], GError **error)
{
  for (int i = 0; i < 3; i++)
    {
      g_autoptr(GError) local = NULL;
      if (g_unix_open_pipe (pipes[i], FD_CLOEXEC, &local))
        continue;
      for (int j = 0; j < i; j++)
        close_pair (pipes[j]);
      g_set_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "cannot create a pipe: %s",
                   local->message);
      return FALSE;
    }
  return TRUE;
}

static gboolean
spawn_direct (const char *const *argv, const char *const *envp, MaSpawned *out, GError **error)
{
  int pipes[3][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  sigset_t none, defaults;
  pid_t pid = 0;
  int rc;

  if (!open_pipes (pipes, error))
    return FALSE;
  posix_spawnattr_init (&attr);
  posix_spawn_file_actions_init (&actions);
  sigemptyset (&none);
  /* the agent blocks SIGIO and ignores SIGPIPE; a plugin starts with defaults (glibc leaves
   * its own two reserved signals, 32 and 33, ignored: they are not in a sigset_t it fills) */
  sigfillset (&defaults);
  sigdelset (&defaults, SIGKILL);
  sigdelset (&defaults, SIGSTOP);
  posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK
                                     | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup (&attr, 0);
  posix_spawnattr_setsigmask (&attr, &none);
  posix_spawnattr_setsigdefault (&attr, &defaults);
  /* pipe ends are never 0-2 here: the agent keeps those open (on /dev/null when detached) */
  posix_spawn_file_actions_adddup2 (&actions, pipes[0][0], 0);
  posix_spawn_file_actions_adddup2 (&actions, pipes[1][1], 1);
  posix_spawn_file_actions_adddup2 (&actions, pipes[2][1], 2);
  posix_spawn_file_actions_addclosefrom_np (&actions, 3);
  posix_spawn_file_actions_addchdir_np (&actions, "/");
  rc = posix_spawn (&pid, argv[0], &actions, &attr, (char *const *) argv, (char *const *) envp);
  posix_spawn_file_actions_destroy (&actions);
  posix_spawnattr_destroy (&attr);
  close_fd (&pipes[0][0]);
  close_fd (&pipes[1][1]);
  close_fd (&pipes[2][1]);
  if (rc != 0)
    {
      close_fd (&pipes[0][1]);
      close_fd (&pipes[1][0]);
      close_fd (&pipes[2][0]);
      g_set_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "cannot execute %s: %s", argv[0],
                   g_strerror (rc));
      return FALSE;
    }
  out->pid = pid;
  out->stdin_fd = pipes[0][1];
  out->stdout_fd = pipes[1][0];
  out->stderr_fd = pipes[2][0];
  return TRUE;
}

typedef struct
{
  uid_t uid;
  gid_t gid;
  gid_t groups[MAX_GROUPS];
  int n_groups;
} MaUserSetup;

/* In the child between fork and exec: only async-signal-safe calls. */
static void
user_child_setup (gpointer user_data)
{
  MaUserSetup *setup = user_data;
  sigset_t none;

  setpgid (0, 0);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  signal (SIGPIPE, SIG_DFL);
  if (setgroups ((size_t) setup->n_groups, setup->groups) < 0 || setgid (setup->gid) < 0
      || setuid (setup->uid) < 0)
    _exit (126);
}

static gboolean
spawn_as_user (const char *const *argv, const char *const *envp, const char *user,
               MaSpawned *out, GError **error)
{
  g_autoptr(GError) local = NULL;
  MaUserSetup setup = { 0 };
  struct passwd *pw = getpwnam (user);

  if (pw == NULL)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "User=%s: no such user", user);
      return FALSE;
    }
  setup.uid = pw->pw_uid;
  setup.gid = pw->pw_gid;
  setup.n_groups = MAX_GROUPS;
  if (getgrouplist (user, pw->pw_gid, setup.groups, &setup.n_groups) < 0)
    {
      setup.n_groups = 1;
      setup.groups[0] = pw->pw_gid;
    }
  if (!g_spawn_async_with_pipes_and_fds ("/", argv, envp, G_SPAWN_DO_NOT_REAP_CHILD,
                                         user_child_setup, &setup, -1, -1, -1, NULL, NULL, 0,
                                         &out->pid, &out->stdin_fd, &out->stdout_fd,
                                         &out->stderr_fd, &local))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PLUGIN_FAILED, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
ma_plugin_spawn (const char *const *argv, const char *const *envp, const char *user,
                 MaSpawned *out, GError **error)
{
  gboolean ok = user != NULL ? spawn_as_user (argv, envp, user, out, error)
                             : spawn_direct (argv, envp, out, error);

  if (!ok)
    return FALSE;
  g_unix_set_fd_nonblocking (out->stdin_fd, TRUE, NULL);
  g_unix_set_fd_nonblocking (out->stdout_fd, TRUE, NULL);
  g_unix_set_fd_nonblocking (out->stderr_fd, TRUE, NULL);
  return TRUE;
}
