/* plugin-run.h — running one phase of one plugin: the oneshot and session protocols,
 * GSubprocess with argv and a scrubbed environment, deadlines, process-group kill, bounded capture. */
#pragma once

#include "plugin.h"

G_BEGIN_DECLS

#define MA_PLUGIN_KILL_GRACE_MS 2000         /* SIGTERM to the group, then SIGKILL after this */
#define MA_PLUGIN_OUTPUT_MAX (64 * 1024)     /* bytes kept per stream; the rest is counted */
#define MA_PLUGIN_LINE_MAX 4096              /* a session reply line longer than this is refused */
#define MA_PLUGIN_PATH "/usr/sbin:/usr/bin:/sbin:/bin"

typedef struct
{
  const char *operation;
  guint lease_seconds;
  const char *state_dir; /* the agent's; plugins get STATE_DIR/plugins/NAME */
} MaRunContext;

typedef struct
{
  MaPlugin *plugin;
  MaPluginPhase phase;
  gboolean ok;
  gboolean timed_out;
  gboolean skipped; /* the plugin does not implement this phase */
  char *detail;     /* what the plugin said, or why it failed */
  double seconds;
} MaPhaseResult;

void ma_phase_result_free (MaPhaseResult *result);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaPhaseResult, ma_phase_result_free)
JsonObject *ma_phase_result_to_json (MaPhaseResult *result);

/* A running plugin process; for session plugins it lives from quiesce to thaw. */
typedef struct _MaPluginProcess MaPluginProcess;

/* result is taken by the callee. */
typedef void (*MaPhaseDoneFunc) (MaPhaseResult *result, gpointer user_data);

/* Run one phase, answering through done on a later main-loop turn (never before
 * returning). For session plugins *session keeps the process between quiesce and thaw:
 * quiesce stores it there, renew talks to it and leaves it there, thaw takes it (and
 * ends it), and check/validate use a process of their own. Phases the plugin lacks answer ok with skipped set. */
void ma_plugin_run_phase (MaPlugin *plugin, MaPluginPhase phase, const MaRunContext *ctx,
                          MaPluginProcess **session, MaPhaseDoneFunc done, gpointer user_data);

/* Give up on a session: close its stdin (the plugin must release), and kill its process
 * group if it has not exited within its thaw timeout. The pointer is consumed. */
void ma_plugin_process_abandon (MaPluginProcess *process);
gboolean ma_plugin_process_is_alive (MaPluginProcess *process);
/* Kill the process group at once (SIGKILL); for an agent that must exit now. */
void ma_plugin_process_kill (MaPluginProcess *process);

G_END_DECLS
