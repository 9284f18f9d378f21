/* agent.h — the agent context: owns configuration, command table, event journal, lifecycle,
 * the modules and their hooks, the UNIX clients and the virtio port, and orderly shutdown. */
#pragma once

#include "commands.h"
#include "config.h"
#include "events.h"
#include "lifecycle.h"

G_BEGIN_DECLS

#define MA_DEFAULT_VIRTIO_PORT "org.migration_agent.0"
#define MA_SHUTDOWN_DEADLINE_SECONDS 60

/* Creates state_dir (0700) if needed. config is taken. */
MaAgent *ma_agent_new (MaConfig *config, const char *state_dir, GError **error);
void ma_agent_free (MaAgent *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaAgent, ma_agent_free)

MaConfig *ma_agent_get_config (MaAgent *self);
MaCommands *ma_agent_get_commands (MaAgent *self);
MaEvents *ma_agent_get_events (MaAgent *self);
MaLifecycle *ma_agent_get_lifecycle (MaAgent *self);
const char *ma_agent_get_state_dir (MaAgent *self);
/* Seconds since start (monotonic). */
double ma_agent_get_uptime (MaAgent *self);

/* ---- modules: the one way a capability plugs into the agent ----
 * A module (blockers, quiesce, resume…) has a register function of type MaModuleRegisterFunc
 * that builds its state and hands it to ma_agent_add_module with its class: its commands,
 * its capabilities and its hooks, each called with that state. Modules call each other
 * through their headers (ma_quiesce_from_agent () …), never through the command table. */

typedef struct
{
  const char *name;
  MaCommandFunc func; /* user_data is the module's state */
  const char *summary;
} MaCommandSpec;

typedef struct
{
  const char *name;                 /* unique among the modules */
  const MaCommandSpec *commands;    /* ends with { NULL }; may be NULL */
  const char *const *capabilities;  /* listed by `info`; NULL-terminated; may be NULL */
  /* Hooks, each optional. shutdown: the agent begins to stop, newest module first; it may
   * ma_agent_hold () until its work is done. resumed: the guest resumed on a new host (once
   * per resume). host_connected: a host opened the virtio port. free: the agent is freed,
   * newest module first. */
  void (*shutdown) (MaAgent *agent, gpointer state);
  void (*resumed) (MaAgent *agent, const char *operation, gpointer state);
  void (*host_connected) (MaAgent *agent, gpointer state);
  GDestroyNotify free;
} MaModuleClass;

/* Builds the module's state and adds it; FALSE only when the agent must not start. */
typedef gboolean (*MaModuleRegisterFunc) (MaAgent *agent, GError **error);

/* Adds the module's commands, capabilities and hooks; the agent owns state from now on. */
void ma_agent_add_module (MaAgent *self, const MaModuleClass *klass, gpointer state);
/* The state of the module of that class, or NULL when it is not registered. */
gpointer ma_agent_get_module (MaAgent *self, const MaModuleClass *klass);

JsonNode *ma_agent_capabilities_to_json (MaAgent *self);

/* Record an event in the journal and send it to every connected client. data is taken. */
guint64 ma_agent_emit_event (MaAgent *self, const char *name, JsonNode *data);

/* Apply [commands] allow= / block= once every module has registered its commands. */
gboolean ma_agent_apply_command_config (MaAgent *self, GError **error);

/* Transports. uri: "unix:PATH". */
gboolean ma_agent_listen (MaAgent *self, const char *uri, GError **error);
/* Serve the virtio-serial port with this name (or a path), now or when it appears. */
gboolean ma_agent_serve_virtio_port (MaAgent *self, const char *name, GError **error);

/* {"unix-clients": N, "virtio-port": {...}, "dropped-events": N} */
JsonNode *ma_agent_clients_to_json (MaAgent *self);

/* The last operation any command reported, for `status`. */
void ma_agent_set_last_operation (MaAgent *self, const char *command, const char *operation,
                                  const char *result);
JsonNode *ma_agent_last_operation_to_json (MaAgent *self);

/* Resume detection calls this once per resume: every module's resumed hook runs. */
void ma_agent_notify_resumed (MaAgent *self, const char *operation);

/* Shutdown: every module's shutdown hook runs; each may ma_agent_hold() and later
 * ma_agent_release(); the loop quits when nothing is held or after the deadline. */
void ma_agent_hold (MaAgent *self);
void ma_agent_release (MaAgent *self);
void ma_agent_shutdown (MaAgent *self, GMainLoop *loop);
gboolean ma_agent_is_shutting_down (MaAgent *self);

G_END_DECLS
