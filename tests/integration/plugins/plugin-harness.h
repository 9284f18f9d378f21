/* plugin-harness.h — what the shipped-plugin tests share: real database servers started in a
 * temporary directory (killed with the test even when it aborts), and both plugin protocols. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Deadlines for conditions the tests wait for; none of them is a speed goal. */
#define HARNESS_SERVER_START_MS 60000
#define HARNESS_REPLY_MS 60000
#define HARNESS_EXIT_MS 60000
/* How long a write must stay blocked to count as blocked. */
#define HARNESS_BLOCKED_MS 700

/* A temporary directory owned by user (NULL: the caller), removed by harness_tmpdir_free. */
typedef struct
{
  char *path;
  gboolean keep;
} HarnessTmpdir;
HarnessTmpdir *harness_tmpdir_new (const char *user);
void harness_tmpdir_free (HarnessTmpdir *dir);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HarnessTmpdir, harness_tmpdir_free)

/* Resolve a program (absolute path or in PATH plus the sbin directories); NULL when absent. */
char *harness_find_program (const char *name);

/* Spawn argv as user (NULL: unchanged), with envp (NULL: inherit), stdout/stderr into log
 * when given. The child gets SIGKILL when this process dies, however it dies. */
GSubprocess *harness_spawn (const char *const *argv, const char *const *envp, const char *user,
                            const char *log, GError **error);
/* Same with stdin and stdout as pipes (a session plugin). */
GSubprocess *harness_spawn_piped (const char *const *argv, const char *const *envp,
                                  GError **error);
/* Run argv to completion as user, return its exit status, stdout in *out when given. */
int harness_run (const char *const *argv, const char *const *envp, const char *user, char **out);
/* Wait up to timeout_ms for proc to exit; TRUE when it did. */
gboolean harness_wait_exit (GSubprocess *proc, guint timeout_ms);
/* Kill (SIGKILL) and reap, if still running. */
void harness_kill (GSubprocess *proc);

/* Poll cond until it is true or timeout_ms pass. */
gboolean harness_wait_for (gboolean (*cond) (gpointer data), gpointer data, guint timeout_ms);

/* Run a oneshot plugin: `exe phase` with envp. Returns the exit status, the last stdout
 * line's "detail" in *detail. */
int harness_oneshot (const char *exe, const char *phase, const char *const *envp, char **detail);

/* A session plugin: send one phase, read one reply {"status", "detail"}. */
typedef struct
{
  GSubprocess *proc;
  int stdin_fd;
  int stdout_fd;
  GString *pending;
} HarnessSession;
HarnessSession *harness_session_start (const char *exe, const char *const *envp);
/* TRUE when the reply says ok; *detail gets the detail. Asserts a well-formed reply. */
gboolean harness_session_phase (HarnessSession *session, const char *phase, gint64 deadline_ms,
                                gint64 lease_seconds, char **detail);
/* Write one raw line (with its newline) and read one reply. */
gboolean harness_session_raw (HarnessSession *session, const char *line, char **detail);
/* Close the plugin's stdin (as a dying agent does) and wait for it to exit; returns status. */
int harness_session_close (HarnessSession *session);
void harness_session_free (HarnessSession *session);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HarnessSession, harness_session_free)

/* Environment for a plugin: the agent's MA_* variables plus extra KEY=VALUE entries. */
char **harness_plugin_env (const char *plugin, const char *phase, const char *state_dir,
                           const char *first_extra, ...) G_GNUC_NULL_TERMINATED;

/* The plugin executable named by environment variable var (set by meson), or NULL. */
const char *harness_plugin_path (const char *var);

G_END_DECLS

G_BEGIN_DECLS

/* A stand-in for the agent as the plugin's parent, to be killed with SIGKILL: when argv is
 * `TEST --relay PIDFILE EXE`, spawn EXE with a pipe as its stdin (held by this process
 * only) and its stdout shared, write EXE's pid to PIDFILE, copy our stdin into the pipe.
 * Returns -1 when argv is not a relay request, else the exit status to return. */
int harness_relay_main (int argc, char **argv);
/* Start such a relay for exe; *plugin_pid gets the plugin's pid. */
HarnessSession *harness_session_start_relayed (const char *self_exe, const char *exe,
                                               const char *const *envp, const char *pidfile,
                                               GPid *plugin_pid);
/* TRUE once pid is gone or a zombie. */
gboolean harness_pid_exited (GPid pid);

G_END_DECLS

#include "daemon-fixture.h"

G_BEGIN_DECLS

/* The real agent with one shipped plugin installed: a plugins directory holding
 * NAME.plugin (Exec=exe, Protocol=protocol, EnvironmentFile with env_lines). */
typedef struct
{
  MaTestDaemon *daemon;
  MaClient *client;
} HarnessAgent;
HarnessAgent *harness_agent_start (const char *name, const char *exe, const char *protocol,
                                   const char *env_lines);
void harness_agent_free (HarnessAgent *agent);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (HarnessAgent, harness_agent_free)
/* quiesce/thaw an operation through the protocol; FALSE (with *error_desc) on an error reply. */
gboolean harness_agent_quiesce (HarnessAgent *agent, const char *operation, guint lease_seconds,
                                char **error_desc);
void harness_agent_thaw (HarnessAgent *agent, const char *operation);
/* Append the shipped NAME.plugin.in's Phases= (which must include renew) and RenewTimeout= to
 * the installed manifest, so the agent runs the phases a packaged install declares. */
void harness_agent_declare_shipped_phases (HarnessAgent *agent, const char *name);

G_END_DECLS
