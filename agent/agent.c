/* agent.c — the agent context: owns configuration, command table, event journal, lifecycle,
 * the modules and their hooks, the UNIX clients and the virtio port, and orderly shutdown. */
#include "agent.h"

#include <errno.h>
#include <unistd.h>

#include "channel.h"
#include "json.h"
#include "session.h"
#include "virtio.h"

typedef struct
{
  const MaModuleClass *klass;
  gpointer state;
} MaModule;

struct _MaAgent
{
  MaConfig *config;
  char *state_dir;
  MaEvents *events;
  MaLifecycle *lifecycle;
  MaCommands *commands;
  GPtrArray *capabilities;
  gint64 started_at;
  GArray *allowed_uids; /* gint64 */

  GPtrArray *listeners; /* MaListener* */
  GPtrArray *sessions;  /* MaSession*, UNIX clients */

  MaVirtio *virtio;
  guint64 host_connects;

  char *last_command;
  char *last_operation;
  char *last_result;
  gint64 last_at;

  GArray *modules; /* MaModule, in registration order */
  guint holds;
  gboolean shutting_down;
  GMainLoop *loop;
  guint shutdown_timeout;
};

static void
agent_broadcast (JsonNode *event, gpointer user_data)
{
  MaAgent *self = user_data;
  g_autofree char *line = ma_event_to_line (event);
  MaSession *virtio = self->virtio != NULL ? ma_virtio_get_session (self->virtio) : NULL;

  for (guint i = 0; i < self->sessions->len; i++)
    ma_session_send_event (self->sessions->pdata[i], line);
  if (virtio != NULL)
    ma_session_send_event (virtio, line);
}

static gboolean
load_allowed_uids (MaAgent *self, GError **error)
{
  g_auto(GStrv) uids = ma_config_get_strv (self->config, "access", "allowed-uids");

  self->allowed_uids = g_array_new (FALSE, FALSE, sizeof (gint64));
  if (uids == NULL || uids[0] == NULL)
    {
      gint64 root = 0;
      g_array_append_val (self->allowed_uids, root);
      return TRUE;
    }
  for (guint i = 0; uids[i] != NULL; i++)
    {
      guint64 uid;
      if (!g_ascii_string_to_unsigned (uids[i], 10, 0, G_MAXUINT32 - 1, &uid, NULL))
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "configuration [access] allowed-uids: '%s' is not a uid", uids[i]);
          return FALSE;
        }
      g_array_append_vals (self->allowed_uids, &(gint64){ (gint64) uid }, 1);
    }
  return TRUE;
}

MaAgent *
ma_agent_new (MaConfig *config, const char *state_dir, GError **error)
{
  g_autoptr(MaAgent) self = g_new0 (MaAgent, 1);
  gint64 capacity;

  self->config = config;
  self->state_dir = g_strdup (state_dir);
  self->started_at = g_get_monotonic_time ();
  self->capabilities = g_ptr_array_new_with_free_func (g_free);
  self->listeners = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_listener_free);
  self->sessions = g_ptr_array_new ();
  self->modules = g_array_new (FALSE, FALSE, sizeof (MaModule));
  self->commands = ma_commands_new ();

  if (!ma_config_get_int (config, "events", "buffer-size", MA_EVENTS_DEFAULT_CAPACITY, 16,
                          1000000, &capacity, error))
    return NULL;
  self->events = ma_events_new ((guint) capacity);
  ma_events_set_listener (self->events, agent_broadcast, self);
  self->lifecycle = ma_lifecycle_new (self->events);
  if (!load_allowed_uids (self, error))
    return NULL;

  if (g_mkdir_with_parents (state_dir, 0700) < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno),
                   "cannot create the state directory %s: %s", state_dir, g_strerror (errno));
      return NULL;
    }
  return g_steal_pointer (&self);
}

static void
session_release (gpointer data)
{
  MaSession *session = data;

  ma_session_close (session);
  ma_session_unref (session);
}

void
ma_agent_free (MaAgent *self)
{
  if (self == NULL)
    return;
  /* modules first (newest first): they may still use the rest of the agent */
  for (guint i = self->modules->len; i > 0; i--)
    {
      MaModule *m = &g_array_index (self->modules, MaModule, i - 1);
      if (m->klass->free != NULL)
        m->klass->free (m->state);
    }
  g_array_unref (self->modules);
  g_clear_handle_id (&self->shutdown_timeout, g_source_remove);
  g_clear_pointer (&self->virtio, ma_virtio_free);
  g_ptr_array_foreach (self->sessions, (GFunc) (void (*) (void)) session_release, NULL);
  g_ptr_array_unref (self->sessions);
  g_ptr_array_unref (self->listeners);
  g_clear_pointer (&self->lifecycle, ma_lifecycle_free);
  g_clear_pointer (&self->events, ma_events_free);
  g_clear_pointer (&self->commands, ma_commands_free);
  g_clear_pointer (&self->config, ma_config_free);
  g_clear_pointer (&self->allowed_uids, g_array_unref);
  g_ptr_array_unref (self->capabilities);
  g_free (self->state_dir);
  g_free (self->last_command);
  g_free (self->last_operation);
  g_free (self->last_result);
  g_free (self);
}

MaConfig *
ma_agent_get_config (MaAgent *self)
{
  return self->config;
}

MaCommands *
ma_agent_get_commands (MaAgent *self)
{
  return self->commands;
}

MaEvents *
ma_agent_get_events (MaAgent *self)
{
  return self->events;
}

MaLifecycle *
ma_agent_get_lifecycle (MaAgent *self)
{
  return self->lifecycle;
}

const char *
ma_agent_get_state_dir (MaAgent *self)
{
  return self->state_dir;
}

double
ma_agent_get_uptime (MaAgent *self)
{
  return (double) (g_get_monotonic_time () - self->started_at) / G_USEC_PER_SEC;
}

void
ma_agent_add_module (MaAgent *self, const MaModuleClass *klass, gpointer state)
{
  MaModule m = { klass, state };

  g_return_if_fail (ma_agent_get_module (self, klass) == NULL);
  for (guint i = 0; klass->commands != NULL && klass->commands[i].name != NULL; i++)
    ma_commands_add (self->commands, klass->commands[i].name, klass->commands[i].func, state,
                     klass->commands[i].summary);
  for (guint i = 0; klass->capabilities != NULL && klass->capabilities[i] != NULL; i++)
    g_ptr_array_add (self->capabilities, g_strdup (klass->capabilities[i]));
  g_array_append_val (self->modules, m);
}

gpointer
ma_agent_get_module (MaAgent *self, const MaModuleClass *klass)
{
  for (guint i = 0; i < self->modules->len; i++)
    {
      MaModule *m = &g_array_index (self->modules, MaModule, i);
      if (m->klass == klass)
        return m->state;
    }
  return NULL;
}

JsonNode *
ma_agent_capabilities_to_json (MaAgent *self)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < self->capabilities->len; i++)
    json_array_add_string_element (array, self->capabilities->pdata[i]);
  return ma_json_new_array_node (array);
}

guint64
ma_agent_emit_event (MaAgent *self, const char *name, JsonNode *data)
{
  return ma_events_emit (self->events, name, data);
}

gboolean
ma_agent_apply_command_config (MaAgent *self, GError **error)
{
  g_auto(GStrv) allow = ma_config_get_strv (self->config, "commands", "allow");
  g_auto(GStrv) block = ma_config_get_strv (self->config, "commands", "block");

  return ma_commands_configure (self->commands, (const char *const *) allow,
                                (const char *const *) block, error);
}

/* ---- UNIX clients ---- */

static void
agent_on_session_closed (MaSession *session, gpointer user_data)
{
  MaAgent *self = user_data;

  if (g_ptr_array_remove (self->sessions, session))
    {
      g_debug ("%s: client gone", ma_session_get_name (session));
      session_release (session);
    }
}

static gboolean
uid_allowed (MaAgent *self, gint64 uid)
{
  for (guint i = 0; i < self->allowed_uids->len; i++)
    if (g_array_index (self->allowed_uids, gint64, i) == uid)
      return TRUE;
  return FALSE;
}

static void
agent_on_accept (int fd, gint64 uid, gint64 pid, gpointer user_data)
{
  static const MaSessionCallbacks callbacks = { .closed = agent_on_session_closed };
  MaAgent *self = user_data;
  g_autofree char *name = g_strdup_printf ("unix client pid %" G_GINT64_FORMAT " uid %"
                                           G_GINT64_FORMAT, pid, uid);

  if (!uid_allowed (self, uid) || self->shutting_down)
    {
      g_autofree char *line = ma_reply_error_class (
        NULL, "PermissionDenied",
        self->shutting_down ? "the agent is shutting down"
                            : "this user may not use the agent (configuration [access] allowed-uids)");
      JsonObject *data = json_object_new ();
      json_object_set_int_member (data, "uid", uid);
      json_object_set_int_member (data, "pid", pid);
      json_object_set_string_member (data, "reason", self->shutting_down ? "shutting down"
                                                                          : "uid not allowed");
      ma_agent_emit_event (self, "ACCESS_DENIED", ma_json_new_object_node (data));
      g_message ("refused %s", name);
      if (write (fd, line, strlen (line)) < 0)
        g_debug ("could not tell the refused client: %s", g_strerror (errno));
      close (fd);
      return;
    }
  g_ptr_array_add (self->sessions, ma_session_new (self, self->commands, fd, MA_CHANNEL_SOCKET,
                                                   name, uid, &callbacks, self));
}

gboolean
ma_agent_listen (MaAgent *self, const char *uri, GError **error)
{
  MaListener *listener;

  if (!g_str_has_prefix (uri, "unix:") || uri[5] == '\0')
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "cannot listen on '%s': expected unix:PATH", uri);
      return FALSE;
    }
  listener = ma_listener_new (uri + 5, agent_on_accept, self, error);
  if (listener == NULL)
    return FALSE;
  g_ptr_array_add (self->listeners, listener);
  g_message ("listening on %s", uri);
  return TRUE;
}

/* ---- virtio port ---- */

static void
agent_on_host_connected (MaVirtio *virtio, gpointer user_data)
{
  MaAgent *self = user_data;
  JsonObject *data = json_object_new ();

  self->host_connects++;
  json_object_set_string_member (data, "port", ma_virtio_get_name (virtio));
  json_object_set_int_member (data, "connects", (gint64) self->host_connects);
  ma_agent_emit_event (self, "HOST_CONNECTED", ma_json_new_object_node (data));
  for (guint i = 0; i < self->modules->len; i++)
    {
      MaModule *m = &g_array_index (self->modules, MaModule, i);
      if (m->klass->host_connected != NULL)
        m->klass->host_connected (self, m->state);
    }
}

gboolean
ma_agent_serve_virtio_port (MaAgent *self, const char *name, GError **error)
{
  g_clear_pointer (&self->virtio, ma_virtio_free);
  self->virtio = ma_virtio_new (self, self->commands, name, agent_on_host_connected, self, error);
  return self->virtio != NULL;
}

JsonNode *
ma_agent_clients_to_json (MaAgent *self)
{
  JsonObject *obj = json_object_new ();
  guint64 dropped = 0;

  for (guint i = 0; i < self->sessions->len; i++)
    dropped += ma_session_get_dropped_events (self->sessions->pdata[i]);
  json_object_set_int_member (obj, "unix-clients", self->sessions->len);
  if (self->virtio != NULL)
    {
      MaSession *session = ma_virtio_get_session (self->virtio);
      JsonObject *port = json_object_new ();
      json_object_set_string_member (port, "name", ma_virtio_get_name (self->virtio));
      json_object_set_boolean_member (port, "present", session != NULL);
      json_object_set_boolean_member (port, "host-connected",
                                      session != NULL && ma_session_is_connected (session));
      json_object_set_int_member (port, "host-connects", (gint64) self->host_connects);
      json_object_set_object_member (obj, "virtio-port", port);
      if (session != NULL)
        dropped += ma_session_get_dropped_events (session);
    }
  json_object_set_int_member (obj, "dropped-events", (gint64) dropped);
  return ma_json_new_object_node (obj);
}

void
ma_agent_set_last_operation (MaAgent *self, const char *command, const char *operation,
                             const char *result)
{
  g_free (self->last_command);
  g_free (self->last_operation);
  g_free (self->last_result);
  self->last_command = g_strdup (command);
  self->last_operation = g_strdup (operation);
  self->last_result = g_strdup (result);
  self->last_at = g_get_real_time ();
}

JsonNode *
ma_agent_last_operation_to_json (MaAgent *self)
{
  JsonObject *obj;

  if (self->last_command == NULL)
    return json_node_new (JSON_NODE_NULL);
  obj = json_object_new ();
  json_object_set_string_member (obj, "command", self->last_command);
  if (self->last_operation != NULL)
    json_object_set_string_member (obj, "operation", self->last_operation);
  if (self->last_result != NULL)
    json_object_set_string_member (obj, "result", self->last_result);
  json_object_set_int_member (obj, "at", self->last_at / G_USEC_PER_SEC);
  return ma_json_new_object_node (obj);
}

void
ma_agent_notify_resumed (MaAgent *self, const char *operation)
{
  for (guint i = 0; i < self->modules->len; i++)
    {
      MaModule *m = &g_array_index (self->modules, MaModule, i);
      if (m->klass->resumed != NULL)
        m->klass->resumed (self, operation, m->state);
    }
}

/* ---- shutdown ---- */

void
ma_agent_hold (MaAgent *self)
{
  self->holds++;
}

static gboolean
agent_shutdown_deadline (gpointer user_data)
{
  MaAgent *self = user_data;

  g_warning ("shutdown work still running after %d s; exiting anyway",
             MA_SHUTDOWN_DEADLINE_SECONDS);
  self->shutdown_timeout = 0;
  g_main_loop_quit (self->loop);
  return G_SOURCE_REMOVE;
}

void
ma_agent_release (MaAgent *self)
{
  g_return_if_fail (self->holds > 0);
  if (--self->holds == 0 && self->shutting_down && self->loop != NULL)
    g_main_loop_quit (self->loop);
}

void
ma_agent_shutdown (MaAgent *self, GMainLoop *loop)
{
  if (self->shutting_down)
    return;
  self->shutting_down = TRUE;
  self->loop = loop;
  g_message ("shutting down");
  ma_agent_hold (self);
  /* newest first: modules registered last depend on the ones before */
  for (guint i = self->modules->len; i > 0; i--)
    {
      MaModule *m = &g_array_index (self->modules, MaModule, i - 1);
      if (m->klass->shutdown != NULL)
        m->klass->shutdown (self, m->state);
    }
  self->shutdown_timeout = g_timeout_add_seconds (MA_SHUTDOWN_DEADLINE_SECONDS,
                                                  agent_shutdown_deadline, self);
  ma_agent_release (self);
}

gboolean
ma_agent_is_shutting_down (MaAgent *self)
{
  return self->shutting_down;
}
