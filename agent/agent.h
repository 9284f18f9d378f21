/* agent.h — the agent context: owns configuration, command table, event journal,
 * lifecycle, the listeners and the virtio port, and orderly shutdown. */
#pragma once

#include "commands.h"
#include "config.h"
#include "events.h"
#include "lifecycle.h"

G_BEGIN_DECLS

#define MA_DEFAULT_VIRTIO_PORT "org.migration_agent.0"
#define MA_SHUTDOWN_DEADLINE_SECONDS 60

typedef void (*MaShutdownFunc) (MaAgent *agent, gpointer user_data);

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

/* Capabilities listed by `info` (e.g. "blockers", "quiesce"). */
void ma_agent_add_capability (MaAgent *self, const char *name);
JsonNode *ma_agent_capabilities_to_json (MaAgent *self);

/* Record an event in the journal and send it to every connected client. data is taken. */
guint64 ma_agent_emit_event (MaAgent *self, const char *name, JsonNode *data);

/* Apply [commands] allow= / block= once every module has registered its commands. */
gboolean ma_agent_apply_command_config (MaAgent *self, GError **error);

/* Transports. uri: "unix:PATH". */
gboolean ma_agent_listen (MaAgent *self, const char *uri, GError **error);
/* Serve the virtio-serial port with this name (or a path), now or when it appears. */
gboolean ma_agent_serve_virtio_port (MaAgent *self, const char *name, GError **error);
/* Called by the virtio session when a host connects (a corroborating resume signal). */
void ma_agent_note_host_connected (MaAgent *self, const char *name);
typedef void (*MaHostConnectedFunc) (MaAgent *agent, gpointer user_data);
void ma_agent_set_host_connected_func (MaAgent *self, MaHostConnectedFunc func, gpointer data);

/* {"unix-clients": N, "virtio-port": {...}, "dropped-events": N} */
JsonNode *ma_agent_clients_to_json (MaAgent *self);

/* The last operation any command reported, for `status`. */
void ma_agent_set_last_operation (MaAgent *self, const char *command, const char *operation,
                                  const char *result);
JsonNode *ma_agent_last_operation_to_json (MaAgent *self);

/* Resume hooks: modules that must act when the guest resumed on a new host (release
 * throttles…) register here; resume detection calls ma_agent_notify_resumed once per resume. */
typedef void (*MaResumedFunc) (MaAgent *agent, const char *operation, gpointer user_data);
void ma_agent_add_resumed_func (MaAgent *self, MaResumedFunc func, gpointer user_data);
void ma_agent_notify_resumed (MaAgent *self, const char *operation);

/* A module's state, freed (newest first) when the agent is freed. */
void ma_agent_own_module_state (MaAgent *self, gpointer state, GDestroyNotify destroy);

/* Shutdown: every registered function runs; each may ma_agent_hold() and later
 * ma_agent_release(); the loop quits when nothing is held or after the deadline. */
void ma_agent_add_shutdown_func (MaAgent *self, MaShutdownFunc func, gpointer user_data);
void ma_agent_hold (MaAgent *self);
void ma_agent_release (MaAgent *self);
void ma_agent_shutdown (MaAgent *self, GMainLoop *loop);
gboolean ma_agent_is_shutting_down (MaAgent *self);

G_END_DECLS
