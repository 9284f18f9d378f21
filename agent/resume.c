/* resume.c — resume detection (NOTIFY_PEERS on virtio_net, the `resumed` command, corroborating
 * host reconnects and clock steps) and the commands resumed, validate and announce. */
#include "resume.h"

#include <errno.h>
#include <string.h>
#include <linux/if_link.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <glib-unix.h>

#include "json.h"
#include "validate-net.h"
#include "validate.h"

#define MA_RESUME_DRIVER "virtio_net"
/* The realtime timer that only exists to be cancelled by a clock step. */
#define MA_CLOCK_WATCH_SECONDS (100LL * 365 * 24 * 3600)

struct _MaResume
{
  MaAgent *agent;
  MaNlMonitor *monitor;
  MaValidator *validator;
  int clock_fd;
  guint clock_watch;

  guint coalesce_ms;
  guint holdoff_seconds;
  gboolean validate;
  gboolean announce_auto;

  /* the resume being gathered */
  guint window;
  GPtrArray *signals;    /* char*, unique */
  GPtrArray *interfaces; /* char*, unique */
  char *operation;

  /* the last resume */
  guint64 count;
  gint64 last_at; /* monotonic µs */
  gboolean last_notify_peers;
  char *last_operation;
  JsonNode *last_event;
  guint announce_timer;

  gint64 host_reconnect_at;
  gint64 clock_step_at;
};

static void
add_unique (GPtrArray *array, const char *value)
{
  if (value != NULL && !g_ptr_array_find_with_equal_func (array, value, g_str_equal, NULL))
    g_ptr_array_add (array, g_strdup (value));
}

static JsonNode *
strings_to_json (GPtrArray *array)
{
  JsonArray *out = json_array_new ();

  for (guint i = 0; i < array->len; i++)
    json_array_add_string_element (out, array->pdata[i]);
  return ma_json_new_array_node (out);
}

static gboolean
within (gint64 at, gint64 seconds)
{
  return at > 0 && g_get_monotonic_time () - at < seconds * G_USEC_PER_SEC;
}

/* ---- announce ---- */

static void
announce_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;
  JsonNode *sent = ma_net_announce (&error);

  if (sent == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, sent, (GDestroyNotify) json_node_unref);
}

static void
announce_async (GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, NULL, callback, user_data);

  g_task_run_in_thread (task, announce_thread);
}

static void
auto_announce_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MaResume *self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) sent = g_task_propagate_pointer (G_TASK (result), &error);
  JsonObject *data = json_object_new ();

  json_object_set_int_member (data, "resume", (gint64) self->count);
  json_object_set_string_member (data, "reason",
                                 "no NOTIFY_PEERS arrived after the resume (configuration "
                                 "[resume] announce=auto)");
  if (sent != NULL)
    json_object_set_member (data, "sent", g_steal_pointer (&sent));
  else
    json_object_set_string_member (data, "error", error->message);
  ma_agent_emit_event (self->agent, "ANNOUNCED", ma_json_new_object_node (data));
}

static gboolean
on_announce_wait (gpointer user_data)
{
  MaResume *self = user_data;

  self->announce_timer = 0;
  if (!self->last_notify_peers)
    announce_async (auto_announce_done, self);
  return G_SOURCE_REMOVE;
}

/* ---- detection ---- */

static gboolean
resume_operation_in_flight (MaLifecycle *lc)
{
  switch (ma_lifecycle_get_state (lc))
    {
    case MA_STATE_PREPARED:
    case MA_STATE_QUIESCED:
    case MA_STATE_THAWED:
    case MA_STATE_EXPIRED:
      return ma_lifecycle_get_operation (lc) != NULL;
    case MA_STATE_IDLE:
    case MA_STATE_RESUMED:
    case MA_STATE_VALIDATED:
    case MA_STATE_FAILED:
    default:
      return FALSE;
    }
}

static void
finish_resume (MaResume *self)
{
  JsonObject *data = json_object_new ();
  MaLifecycle *lc = ma_agent_get_lifecycle (self->agent);
  g_autoptr(GError) error = NULL;

  g_clear_handle_id (&self->window, g_source_remove);
  if (within (self->host_reconnect_at, MA_RESUME_CORROBORATE_SECONDS))
    add_unique (self->signals, "host-reconnect");
  if (within (self->clock_step_at, MA_RESUME_CORROBORATE_SECONDS))
    add_unique (self->signals, "clock-step");
  self->count++;
  self->last_at = g_get_monotonic_time ();
  self->last_notify_peers = g_ptr_array_find_with_equal_func (self->signals, "notify-peers",
                                                              g_str_equal, NULL);
  g_free (self->last_operation);
  self->last_operation = g_steal_pointer (&self->operation);
  /* detected without the orchestrator's `resumed`: the resume belongs to the
   * operation in flight (prepared, quiesced or thawed on the source) */
  if (self->last_operation == NULL && resume_operation_in_flight (lc))
    self->last_operation = g_strdup (ma_lifecycle_get_operation (lc));

  json_object_set_int_member (data, "resume", (gint64) self->count);
  json_object_set_member (data, "signals", strings_to_json (self->signals));
  json_object_set_member (data, "interfaces", strings_to_json (self->interfaces));
  if (self->last_operation != NULL)
    json_object_set_string_member (data, "operation", self->last_operation);
  json_object_set_boolean_member (data, "validation", self->validate);
  g_clear_pointer (&self->last_event, json_node_unref);
  self->last_event = ma_json_new_object_node (data);
  g_ptr_array_set_size (self->signals, 0);
  g_ptr_array_set_size (self->interfaces, 0);

  g_message ("resume #%" G_GUINT64_FORMAT " detected", self->count);
  ma_agent_emit_event (self->agent, "RESUMED", json_node_copy (self->last_event));
  if (ma_lifecycle_get_state (lc) != MA_STATE_RESUMED
      && !ma_lifecycle_enter (lc, MA_STATE_RESUMED, self->last_operation, "resume detected",
                              &error))
    g_debug ("lifecycle: %s", error->message);
  ma_agent_notify_resumed (self->agent, self->last_operation);
  if (self->validate && self->validator != NULL)
    ma_validator_start (self->validator, "resume", self->count, self->last_operation, NULL, NULL,
                        NULL);
  g_clear_handle_id (&self->announce_timer, g_source_remove);
  if (self->announce_auto && !self->last_notify_peers)
    self->announce_timer = g_timeout_add (MA_RESUME_ANNOUNCE_WAIT_MS, on_announce_wait, self);
}

static gboolean
on_window_closed (gpointer user_data)
{
  MaResume *self = user_data;

  self->window = 0;
  finish_resume (self);
  return G_SOURCE_REMOVE;
}

/* Whether an operation other than the last resume's is in flight: a new migration was
 * prepared since, so its resume is a new one even within the holdoff. */
static gboolean
new_operation_since_last_resume (MaResume *self)
{
  MaLifecycle *lc = ma_agent_get_lifecycle (self->agent);

  return resume_operation_in_flight (lc)
         && g_strcmp0 (ma_lifecycle_get_operation (lc), self->last_operation) != 0;
}

/* A primary signal: opens a coalescing window, joins the open one, or belongs to the last
 * resume when it comes within the holdoff (unless another operation was prepared since).
 * Returns TRUE when it starts a new resume. */
static gboolean
note_primary (MaResume *self, const char *signal, const char *ifname)
{
  if (self->window == 0 && within (self->last_at, self->holdoff_seconds)
      && !new_operation_since_last_resume (self))
    {
      if (g_str_equal (signal, "notify-peers"))
        self->last_notify_peers = TRUE;
      g_debug ("%s%s%s belongs to resume #%" G_GUINT64_FORMAT, signal, ifname ? " on " : "",
               ifname ? ifname : "", self->count);
      return FALSE;
    }
  add_unique (self->signals, signal);
  add_unique (self->interfaces, ifname);
  if (self->window == 0)
    self->window = g_timeout_add (self->coalesce_ms, on_window_closed, self);
  return TRUE;
}

static void
on_link (const MaNlLink *link, gboolean removed, gpointer user_data)
{
  MaResume *self = user_data;
  g_autofree char *driver = NULL;

  if (removed || link->event != IFLA_EVENT_NOTIFY_PEERS)
    return;
  /* a bonding failover announces on the bond itself, as QEMU does on the NIC: not a move */
  if (g_strcmp0 (link->kind, "bond") == 0)
    {
      g_debug ("NOTIFY_PEERS on bond %s: a failover, not a resume", link->name);
      return;
    }
  driver = ma_netlink_get_driver (link->name);
  if (g_strcmp0 (driver, MA_RESUME_DRIVER) != 0)
    {
      g_debug ("NOTIFY_PEERS on %s (driver %s): not a migration signal", link->name,
               driver ? driver : "none");
      return;
    }
  note_primary (self, "notify-peers", link->name);
}

void
ma_resume_note_signal (MaResume *self, const char *signal)
{
  if (g_str_equal (signal, "host-reconnect"))
    self->host_reconnect_at = g_get_monotonic_time ();
  else if (g_str_equal (signal, "clock-step"))
    self->clock_step_at = g_get_monotonic_time ();
  if (self->window != 0)
    add_unique (self->signals, signal);
}

static void
on_host_connected (MaAgent *agent, gpointer user_data)
{
  ma_resume_note_signal (user_data, "host-reconnect");
}

static gboolean
arm_clock_watch (int fd)
{
  struct itimerspec its = { 0 };
  struct timespec now;

  clock_gettime (CLOCK_REALTIME, &now);
  its.it_value.tv_sec = now.tv_sec + MA_CLOCK_WATCH_SECONDS;
  return timerfd_settime (fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL) == 0;
}

static gboolean
on_clock_step (int fd, GIOCondition cond, gpointer user_data)
{
  MaResume *self = user_data;
  guint64 expirations;

  if (read (fd, &expirations, sizeof expirations) < 0 && errno == ECANCELED)
    {
      g_debug ("the realtime clock was stepped");
      ma_resume_note_signal (self, "clock-step");
    }
  arm_clock_watch (fd);
  return G_SOURCE_CONTINUE;
}

MaResume *
ma_resume_new (MaAgent *agent, GError **error)
{
  g_autoptr(MaResume) self = g_new0 (MaResume, 1);
  MaConfig *config = ma_agent_get_config (agent);
  g_autofree char *announce = NULL;
  gint64 coalesce, holdoff;

  self->agent = agent;
  self->clock_fd = -1;
  self->signals = g_ptr_array_new_with_free_func (g_free);
  self->interfaces = g_ptr_array_new_with_free_func (g_free);
  if (!ma_config_get_int (config, "resume", "coalesce-ms", MA_RESUME_COALESCE_MS, 1, 60000,
                          &coalesce, error)
      || !ma_config_get_int (config, "resume", "holdoff-seconds", MA_RESUME_HOLDOFF_SECONDS, 0,
                             3600, &holdoff, error)
      || !ma_config_get_bool (config, "resume", "validate", TRUE, &self->validate, error))
    return NULL;
  self->coalesce_ms = (guint) coalesce;
  self->holdoff_seconds = (guint) holdoff;
  announce = ma_config_get_string (config, "resume", "announce", "auto");
  if (!g_str_equal (announce, "auto") && !g_str_equal (announce, "never"))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "configuration [resume] announce: '%s' is not auto or never", announce);
      return NULL;
    }
  self->announce_auto = g_str_equal (announce, "auto");
  self->monitor = ma_netlink_monitor_new (on_link, self, error);
  if (self->monitor == NULL)
    return NULL;
  self->clock_fd = timerfd_create (CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
  if (self->clock_fd >= 0 && arm_clock_watch (self->clock_fd))
    self->clock_watch = g_unix_fd_add (self->clock_fd, G_IO_IN, on_clock_step, self);
  else
    g_warning ("cannot watch for clock steps: %s", g_strerror (errno));
  return g_steal_pointer (&self);
}

void
ma_resume_free (MaResume *self)
{
  if (self == NULL)
    return;
  g_clear_handle_id (&self->window, g_source_remove);
  g_clear_handle_id (&self->announce_timer, g_source_remove);
  g_clear_handle_id (&self->clock_watch, g_source_remove);
  if (self->clock_fd >= 0)
    close (self->clock_fd);
  g_clear_pointer (&self->monitor, ma_netlink_monitor_free);
  g_clear_pointer (&self->validator, ma_validator_free);
  g_clear_pointer (&self->last_event, json_node_unref);
  g_ptr_array_unref (self->signals);
  g_ptr_array_unref (self->interfaces);
  g_free (self->operation);
  g_free (self->last_operation);
  g_free (self);
}

MaNlMonitor *
ma_resume_get_monitor (MaResume *self)
{
  return self->monitor;
}

gboolean
ma_resume_is_gathering (MaResume *self)
{
  return self->window != 0;
}

guint64
ma_resume_get_count (MaResume *self)
{
  return self->count;
}

/* ---- commands ---- */

static void
validation_answer (JsonNode *report, gpointer user_data)
{
  ma_call_return (user_data, json_node_copy (report));
}

static void
cmd_validate (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "operation", NULL };
  MaResume *self = user_data;
  const char *operation = NULL;

  if (!ma_call_check_arguments (call, allowed) || !ma_call_get_operation (call, FALSE, &operation))
    return;
  ma_validator_start (self->validator, "command", 0, operation, validation_answer,
                      ma_call_ref (call), (GDestroyNotify) ma_call_unref);
}

static JsonObject *
resumed_reply (MaResume *self, gboolean is_new)
{
  JsonObject *obj = json_node_dup_object (self->last_event);

  json_object_set_boolean_member (obj, "new", is_new);
  json_object_set_string_member (obj, "validation",
                                 !self->validate                              ? "disabled"
                                 : ma_validator_is_running (self->validator) ? "running"
                                                                              : "done");
  return obj;
}

typedef struct
{
  MaCall *call;
  JsonObject *reply;
} WaitData;

static void
wait_data_free (WaitData *data)
{
  ma_call_unref (data->call);
  json_object_unref (data->reply);
  g_free (data);
}

static void
resumed_report (JsonNode *report, gpointer user_data)
{
  WaitData *data = user_data;

  json_object_set_string_member (data->reply, "validation", "done");
  json_object_set_member (data->reply, "report", json_node_copy (report));
  ma_call_return (data->call, ma_json_new_object_node (json_object_ref (data->reply)));
}

static void
cmd_resumed (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "operation", "wait", NULL };
  MaResume *self = user_data;
  JsonObject *args = ma_call_get_arguments (call);
  g_autoptr(GError) error = NULL;
  const char *operation = NULL;
  gboolean wait = FALSE, is_new;
  WaitData *data;

  if (!ma_call_check_arguments (call, allowed) || !ma_call_get_operation (call, TRUE, &operation))
    return;
  if (!ma_json_get_bool (args, "wait", &wait, &error))
    {
      ma_call_return_error (call, g_steal_pointer (&error));
      return;
    }
  is_new = note_primary (self, "command", NULL);
  if (is_new)
    {
      g_free (self->operation);
      self->operation = g_strdup (operation);
      /* the orchestrator knows: no need to wait for more signals */
      finish_resume (self);
    }
  else if (self->last_operation == NULL)
    self->last_operation = g_strdup (operation);
  ma_agent_set_last_operation (ma_call_get_agent (call), "resumed", operation,
                               is_new ? "new resume" : "already detected");
  if (!wait || !self->validate)
    {
      ma_call_return (call, ma_json_new_object_node (resumed_reply (self, is_new)));
      return;
    }
  data = g_new0 (WaitData, 1);
  data->call = ma_call_ref (call);
  data->reply = resumed_reply (self, is_new);
  if (ma_validator_is_running (self->validator))
    ma_validator_start (self->validator, "resume", self->count, self->last_operation,
                        resumed_report, data, (GDestroyNotify) wait_data_free);
  else
    {
      /* already validated: answer with the stored report */
      g_autofree char *path = g_build_filename (ma_agent_get_state_dir (self->agent),
                                                MA_VALIDATION_FILE, NULL);
      g_autofree char *text = NULL;
      g_autoptr(JsonNode) report = NULL;
      gsize len = 0;
      if (g_file_get_contents (path, &text, &len, NULL)
          && (report = ma_json_parse (text, len, NULL)) != NULL)
        resumed_report (report, data);
      else
        {
          json_object_set_null_member (data->reply, "report");
          ma_call_return (call, ma_json_new_object_node (json_object_ref (data->reply)));
        }
      wait_data_free (data);
    }
}

static void
announce_answer (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr(MaCall) call = user_data;
  g_autoptr(GError) error = NULL;
  JsonNode *sent = g_task_propagate_pointer (G_TASK (result), &error);
  JsonObject *obj;

  if (sent == NULL)
    {
      ma_call_return_error (call, g_steal_pointer (&error));
      return;
    }
  obj = json_object_new ();
  json_object_set_member (obj, "sent", sent);
  ma_call_return (call, ma_json_new_object_node (obj));
}

static void
cmd_announce (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { NULL };

  if (!ma_call_check_arguments (call, allowed))
    return;
  announce_async (announce_answer, ma_call_ref (call));
}

/* ---- registration ---- */

static void
resume_shutdown (MaAgent *agent, gpointer user_data)
{
  MaResume *self = user_data;

  /* stop detecting; the validator finishes what runs (it holds the agent) */
  g_clear_pointer (&self->monitor, ma_netlink_monitor_free);
  g_clear_handle_id (&self->window, g_source_remove);
  g_clear_handle_id (&self->announce_timer, g_source_remove);
}

static const MaCommandSpec resume_commands[] = {
  { "resumed", cmd_resumed, "the orchestrator says the guest resumed on the destination" },
  { "validate", cmd_validate, "validate network, storage and clock against the snapshot" },
  { "announce", cmd_announce,
    "gratuitous ARP and unsolicited neighbour advertisements on each interface" },
  { NULL }
};

static const char *const resume_capabilities[] = { "resume-detection", "validation", NULL };

static const MaModuleClass resume_module = {
  .name = "resume",
  .commands = resume_commands,
  .capabilities = resume_capabilities,
  .shutdown = resume_shutdown,
  .host_connected = on_host_connected,
  .free = (GDestroyNotify) ma_resume_free,
};

gboolean
ma_resume_register (MaAgent *agent, GError **error)
{
  g_autoptr(GError) local_error = NULL;
  MaResume *self = ma_resume_new (agent, &local_error);

  if (self == NULL)
    {
      g_warning ("resume detection is not available: %s", local_error->message);
      return TRUE;
    }
  self->validator = ma_validator_new (agent);
  ma_agent_add_module (agent, &resume_module, self);
  return TRUE;
}
