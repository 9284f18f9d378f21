/* agent.c — the agent context: owns configuration, command table, event journal,
 * lifecycle, the listeners and the virtio port, and orderly shutdown. */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>
#include <libudev.h>

#include "channel.h"
#include "json.h"
#include "paths.h"
#include "session.h"

typedef struct
{
  gpointer state;
  GDestroyNotify destroy;
} MaModuleState;

typedef struct
{
  MaResumedFunc func;
  gpointer user_data;
} MaResumedEntry;

typedef struct
{
  MaShutdownFunc func;
  gpointer user_data;
} MaShutdownEntry;

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

  char *virtio_name;
  MaSession *virtio_session;
  struct udev *udev;
  struct udev_monitor *monitor;
  guint monitor_watch;
  int sigio_fd;
  guint sigio_watch;
  MaHostConnectedFunc host_connected_func;
  gpointer host_connected_data;
  guint64 host_connects;

  char *last_command;
  char *last_operation;
  char *last_result;
  gint64 last_at;

  GArray *shutdown_funcs;
  GArray *resumed_funcs; /* MaResumedEntry */
  GArray *module_states; /* MaModuleState, freed newest first */
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

  for (guint i = 0; i < self->sessions->len; i++)
    ma_session_send_event (self->sessions->pdata[i], line);
  if (self->virtio_session != NULL)
    ma_session_send_event (self->virtio_session, line);
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
  self->sigio_fd = -1;
  self->state_dir = g_strdup (state_dir);
  self->started_at = g_get_monotonic_time ();
  self->capabilities = g_ptr_array_new_with_free_func (g_free);
  self->listeners = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_listener_free);
  self->sessions = g_ptr_array_new ();
  self->shutdown_funcs = g_array_new (FALSE, FALSE, sizeof (MaShutdownEntry));
  self->module_states = g_array_new (FALSE, FALSE, sizeof (MaModuleState));
  self->resumed_funcs = g_array_new (FALSE, FALSE, sizeof (MaResumedEntry));
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
  for (guint i = self->module_states->len; i > 0; i--)
    {
      MaModuleState *m = &g_array_index (self->module_states, MaModuleState, i - 1);
      m->destroy (m->state);
    }
  g_array_unref (self->module_states);
  g_array_unref (self->resumed_funcs);
  g_clear_handle_id (&self->shutdown_timeout, g_source_remove);
  g_clear_handle_id (&self->monitor_watch, g_source_remove);
  g_clear_handle_id (&self->sigio_watch, g_source_remove);
  if (self->sigio_fd >= 0)
    close (self->sigio_fd);
  g_clear_pointer (&self->monitor, udev_monitor_unref);
  g_clear_pointer (&self->udev, udev_unref);
  if (self->virtio_session != NULL)
    session_release (self->virtio_session);
  g_ptr_array_foreach (self->sessions, (GFunc) (void (*) (void)) session_release, NULL);
  g_ptr_array_unref (self->sessions);
  g_ptr_array_unref (self->listeners);
  g_clear_pointer (&self->lifecycle, ma_lifecycle_free);
  g_clear_pointer (&self->events, ma_events_free);
  g_clear_pointer (&self->commands, ma_commands_free);
  g_clear_pointer (&self->config, ma_config_free);
  g_clear_pointer (&self->allowed_uids, g_array_unref);
  g_ptr_array_unref (self->capabilities);
  g_array_unref (self->shutdown_funcs);
  g_free (self->virtio_name);
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
ma_agent_add_capability (MaAgent *self, const char *name)
{
  g_ptr_array_add (self->capabilities, g_strdup (name));
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
  g_ptr_array_add (self->sessions, ma_session_new (self, fd, MA_CHANNEL_SOCKET, name, uid,
                                                   agent_on_session_closed, self));
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
agent_close_virtio (MaAgent *self, const char *why)
{
  if (self->virtio_session == NULL)
    return;
  g_message ("virtio port %s closed: %s", self->virtio_name, why);
  session_release (g_steal_pointer (&self->virtio_session));
}

static void
agent_open_virtio (MaAgent *self)
{
  g_autofree char *node = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *name = NULL;
  int fd;

  if (self->virtio_session != NULL)
    return;
  node = ma_virtio_port_find (self->virtio_name);
  if (node == NULL)
    {
      g_message ("virtio port %s not present; waiting for it", self->virtio_name);
      return;
    }
  fd = ma_virtio_port_open (node, &error);
  if (fd < 0)
    {
      g_warning ("virtio port %s: %s", self->virtio_name, error->message);
      return;
    }
  name = g_strdup_printf ("virtio port %s (%s)", self->virtio_name, node);
  g_message ("serving %s", name);
  self->virtio_session = ma_session_new (self, fd, MA_CHANNEL_VIRTIO, name, -1, NULL, NULL);
}

static gboolean
agent_on_uevent (int fd, GIOCondition cond, gpointer user_data)
{
  MaAgent *self = user_data;
  struct udev_device *dev;

  while ((dev = udev_monitor_receive_device (self->monitor)) != NULL)
    {
      const char *action = udev_device_get_action (dev);
      const char *name = udev_device_get_sysattr_value (dev, "name");

      if (g_strcmp0 (action, "remove") == 0 && self->virtio_session != NULL)
        {
          /* the name attribute is gone with the device: check whether ours still exists */
          g_autofree char *node = ma_virtio_port_find (self->virtio_name);
          if (node == NULL)
            agent_close_virtio (self, "device removed");
        }
      /* a hot-added port gets its name after the "add": virtio_console announces the
       * name with a "change" uevent */
      else if ((g_strcmp0 (action, "add") == 0 || g_strcmp0 (action, "change") == 0)
               && g_strcmp0 (name, self->virtio_name) == 0)
        agent_open_virtio (self);
      udev_device_unref (dev);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
agent_on_sigio (int fd, GIOCondition cond, gpointer user_data)
{
  MaAgent *self = user_data;
  struct signalfd_siginfo info;

  while (read (fd, &info, sizeof info) == sizeof info)
    ;
  if (self->virtio_session != NULL)
    ma_session_check_host (self->virtio_session);
  return G_SOURCE_CONTINUE;
}

void
ma_agent_note_host_connected (MaAgent *self, const char *name)
{
  JsonObject *data = json_object_new ();

  self->host_connects++;
  json_object_set_string_member (data, "port", self->virtio_name ? self->virtio_name : name);
  json_object_set_int_member (data, "connects", (gint64) self->host_connects);
  ma_agent_emit_event (self, "HOST_CONNECTED", ma_json_new_object_node (data));
  if (self->host_connected_func != NULL)
    self->host_connected_func (self, self->host_connected_data);
}

void
ma_agent_set_host_connected_func (MaAgent *self, MaHostConnectedFunc func, gpointer data)
{
  self->host_connected_func = func;
  self->host_connected_data = data;
}

gboolean
ma_agent_serve_virtio_port (MaAgent *self, const char *name, GError **error)
{
  sigset_t mask;

  g_free (self->virtio_name);
  self->virtio_name = g_strdup (name);

  /* SIGIO is blocked in every thread (main() blocks it before any thread starts) and
   * read from a signalfd: a host connecting wakes us, nothing else does. */
  sigemptyset (&mask);
  sigaddset (&mask, SIGIO);
  self->sigio_fd = signalfd (-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (self->sigio_fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "signalfd: %s",
                   g_strerror (errno));
      return FALSE;
    }
  self->sigio_watch = g_unix_fd_add (self->sigio_fd, G_IO_IN, agent_on_sigio, self);

  if (name[0] != '/')
    {
      self->udev = udev_new ();
      if (self->udev != NULL)
        {
          /* without udevd (a minimal initramfs) listen to the kernel's own uevents; udevd's
           * control socket is under the overridable run directory (MA_RUNDIR) */
          g_autofree char *control = ma_path_build (ma_path_rundir (), "udev", "control", NULL);
          const char *source = g_file_test (control, G_FILE_TEST_EXISTS) ? "udev" : "kernel";
          self->monitor = udev_monitor_new_from_netlink (self->udev, source);
        }
      if (self->monitor != NULL)
        {
          udev_monitor_filter_add_match_subsystem_devtype (self->monitor, "virtio-ports", NULL);
          if (udev_monitor_enable_receiving (self->monitor) == 0)
            self->monitor_watch = g_unix_fd_add (udev_monitor_get_fd (self->monitor), G_IO_IN,
                                                 agent_on_uevent, self);
        }
      if (self->monitor_watch == 0)
        g_warning ("cannot watch for virtio ports appearing; serving only a port present now");
    }
  agent_open_virtio (self);
  return TRUE;
}

JsonNode *
ma_agent_clients_to_json (MaAgent *self)
{
  JsonObject *obj = json_object_new ();
  guint64 dropped = 0;

  for (guint i = 0; i < self->sessions->len; i++)
    dropped += ma_session_get_dropped_events (self->sessions->pdata[i]);
  json_object_set_int_member (obj, "unix-clients", self->sessions->len);
  if (self->virtio_name != NULL)
    {
      JsonObject *port = json_object_new ();
      json_object_set_string_member (port, "name", self->virtio_name);
      json_object_set_boolean_member (port, "present", self->virtio_session != NULL);
      json_object_set_boolean_member (port, "host-connected",
                                      self->virtio_session != NULL
                                        && ma_session_is_connected (self->virtio_session));
      json_object_set_int_member (port, "host-connects", (gint64) self->host_connects);
      json_object_set_object_member (obj, "virtio-port", port);
      if (self->virtio_session != NULL)
        dropped += ma_session_get_dropped_events (self->virtio_session);
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
ma_agent_add_resumed_func (MaAgent *self, MaResumedFunc func, gpointer user_data)
{
  MaResumedEntry entry = { func, user_data };

  g_array_append_val (self->resumed_funcs, entry);
}

void
ma_agent_notify_resumed (MaAgent *self, const char *operation)
{
  for (guint i = 0; i < self->resumed_funcs->len; i++)
    {
      MaResumedEntry *entry = &g_array_index (self->resumed_funcs, MaResumedEntry, i);
      entry->func (self, operation, entry->user_data);
    }
}

void
ma_agent_own_module_state (MaAgent *self, gpointer state, GDestroyNotify destroy)
{
  MaModuleState m = { state, destroy };

  g_array_append_val (self->module_states, m);
}

/* ---- shutdown ---- */

void
ma_agent_add_shutdown_func (MaAgent *self, MaShutdownFunc func, gpointer user_data)
{
  MaShutdownEntry entry = { func, user_data };

  g_array_append_val (self->shutdown_funcs, entry);
}

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
  for (guint i = self->shutdown_funcs->len; i > 0; i--)
    {
      MaShutdownEntry *entry = &g_array_index (self->shutdown_funcs, MaShutdownEntry, i - 1);
      entry->func (self, entry->user_data);
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
