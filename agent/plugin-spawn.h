/* plugin-spawn.h — starting a plugin's process: argv only, a given environment, its own process
 * group, cwd /, default signals, three pipes; posix_spawn (vfork: no copy of the agent) or fork for User=. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  GPid pid;      /* also the process group's id */
  int stdin_fd;  /* the agent's ends of the pipes: close-on-exec, non-blocking */
  int stdout_fd;
  int stderr_fd;
} MaSpawned;

/* Start argv (argv[0] an absolute path, never looked up in PATH) with exactly envp, in a new
 * process group, cwd "/", an empty signal mask and every signal at its default, only fds 0-2
 * open. user: NULL to run as the agent, else the user to switch to (its groups too). The
 * child is not reaped: watch out->pid (g_child_watch_add). FALSE with an MA_ERROR when it
 * could not be started (the program missing or not executable: said so). */
gboolean ma_plugin_spawn (const char *const *argv, const char *const *envp, const char *user,
                          MaSpawned *out, GError **error);

G_END_DECLS
