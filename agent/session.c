/* session.c — one client of the protocol on one channel: frames requests, answers them
 * strictly in order, delivers events, and applies backpressure so no client grows memory. */
#include "session.h"


typedef struct
{
  MaCall *call; /* a request to run, or */
  char *line;   /* a ready answer (a framing or parse error) */
} MaPending;

struct _MaSession
{
  gint refcount;
  MaAgent *agent;       /* handed to the calls, never looked into */
  MaCommands *commands;
  MaChannel *channel;
  MaFramer *framer;
  char *name;
  gint64 uid;
  GQueue queue;     /* MaPending* */
  MaCall *current;  /* running */
  gboolean discard_current; /* its host left: its reply goes nowhere */
  gboolean processing;
  gboolean closed;
  guint64 dropped_events;
  MaSessionCallbacks callbacks;
  gpointer callbacks_data;
};

static void session_process (MaSession *self);

static void
pending_free (MaPending *p)
{
  if (p->call != NULL)
    {
      /* never dispatched: answer into the void so the call is not reported as leaked */
      if (!ma_call_is_done (p->call))
        ma_call_return_new_error (p->call, MA_ERROR_GENERIC, "session closed");
      ma_call_unref (p->call);
    }
  g_free (p->line);
  g_free (p);
}

static void
session_update_reading (MaSession *self)
{
  gboolean reading;

  if (self->closed)
    return;
  reading = self->queue.length < MA_SESSION_MAX_QUEUED
            && ma_channel_get_pending_output (self->channel) < MA_SESSION_MAX_OUTPUT;
  ma_channel_set_reading (self->channel, reading);
}

static void
session_write (MaSession *self, const char *line)
{
  if (self->closed)
    return;
  ma_channel_write (self->channel, line, strlen (line));
}

static void
session_on_reply (MaCall *call, const char *line, gpointer user_data)
{
  MaSession *self = user_data;

  if (self->current == call && self->discard_current)
    g_debug ("%s: reply for a host that has left dropped", self->name);
  else
    session_write (self, line);
  if (self->current == call)
    {
      self->discard_current = FALSE;
      self->current = NULL;
      ma_call_unref (call);
      session_process (self);
    }
}

static void
session_enqueue_line (MaSession *self, char *line)
{
  MaPending *p = g_new0 (MaPending, 1);

  p->line = line;
  g_queue_push_tail (&self->queue, p);
}

static void
session_on_frame (MaFrameKind kind, const char *text, gsize len, gpointer user_data)
{
  MaSession *self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) id = NULL;
  MaRequest *request;
  MaPending *p;

  switch (kind)
    {
    case MA_FRAME_TOO_LARGE:
      session_enqueue_line (self, ma_reply_error_class (NULL, "GenericError",
                                                        "JSON parse error, request larger than "
                                                        "1048576 bytes; skipped to end of line"));
      return;
    case MA_FRAME_TOO_DEEP:
      session_enqueue_line (self, ma_reply_error_class (NULL, "GenericError",
                                                        "JSON parse error, nesting deeper than 64; "
                                                        "skipped to end of line"));
      return;
    case MA_FRAME_REQUEST:
    default:
      break;
    }

  request = ma_request_parse (text, len, &id, &error);
  if (request == NULL)
    {
      session_enqueue_line (self, ma_reply_error (id, error));
      return;
    }
  p = g_new0 (MaPending, 1);
  p->call = ma_call_new (self->agent, request, session_on_reply, ma_session_ref (self),
                         (GDestroyNotify) ma_session_unref);
  ma_call_set_peer_uid (p->call, self->uid);
  ma_call_set_peer (p->call, self->name);
  g_queue_push_tail (&self->queue, p);
}

static void
session_process (MaSession *self)
{
  if (self->processing)
    return;
  self->processing = TRUE;
  while (self->current == NULL && !self->closed && self->queue.length > 0)
    {
      MaPending *p = g_queue_pop_head (&self->queue);
      if (p->line != NULL)
        session_write (self, p->line);
      else
        {
          self->current = g_steal_pointer (&p->call);
          ma_commands_dispatch (self->commands, self->current);
        }
      pending_free (p);
    }
  self->processing = FALSE;
  session_update_reading (self);
}

static void
session_on_data (MaChannel *channel, const char *data, gsize len, gpointer user_data)
{
  MaSession *self = user_data;
  g_autoptr(MaSession) hold = ma_session_ref (self);

  ma_framer_feed (self->framer, data, len, session_on_frame, self);
  session_process (self);
}

static gboolean
session_notify_closed (gpointer user_data)
{
  MaSession *self = user_data;

  if (self->callbacks.closed != NULL)
    self->callbacks.closed (self, self->callbacks_data);
  return G_SOURCE_REMOVE;
}

static void
session_on_hangup (MaChannel *channel, gpointer user_data)
{
  MaSession *self = user_data;

  ma_framer_reset (self->framer);
  if (ma_channel_get_kind (channel) == MA_CHANNEL_VIRTIO)
    {
      /* The port outlives its host: what the departed host queued is not run for whoever
       * connects next (a quiesce or throttle nobody would thaw), and the answer to the
       * request in flight is not sent to the next host. */
      guint dropped = self->queue.length;
      g_queue_clear_full (&self->queue, (GDestroyNotify) pending_free);
      self->discard_current = self->current != NULL;
      if (dropped > 0)
        g_message ("%s: host disconnected; %u queued request(s) dropped", self->name, dropped);
      else
        g_message ("%s: host disconnected", self->name);
      return;
    }
  /* the agent drops its reference from an idle callback, never inside channel code */
  g_idle_add_full (G_PRIORITY_DEFAULT, session_notify_closed, ma_session_ref (self),
                   (GDestroyNotify) ma_session_unref);
}

static void
session_on_connected (MaChannel *channel, gpointer user_data)
{
  MaSession *self = user_data;

  /* stale bytes from a previous host are handled by 0xFF and sync-delimited */
  ma_framer_reset (self->framer);
  g_message ("%s: host connected", self->name);
  if (self->callbacks.host_connected != NULL)
    self->callbacks.host_connected (self, self->callbacks_data);
}

static void
session_on_reconnected (MaChannel *channel, gpointer user_data)
{
  MaSession *self = user_data;

  /* The host's departure was seen only once a host was back: what was read meanwhile may be
   * the new host's first requests, so nothing is dropped and the parser is not reset (the new
   * host's leading 0xFF discards a half request of the old one). */
  g_message ("%s: host reconnected (it left and came back before the agent looked); "
             "%u queued request(s) kept", self->name, self->queue.length);
  if (self->callbacks.host_connected != NULL)
    self->callbacks.host_connected (self, self->callbacks_data);
}

static void
session_on_drained (MaChannel *channel, gpointer user_data)
{
  session_update_reading (user_data);
}

MaSession *
ma_session_new (MaAgent *agent, MaCommands *commands, int fd, MaChannelKind kind,
                const char *name, gint64 uid, const MaSessionCallbacks *callbacks,
                gpointer user_data)
{
  static const MaChannelCallbacks channel_callbacks = {
    .data = session_on_data,
    .hangup = session_on_hangup,
    .connected = session_on_connected,
    .reconnected = session_on_reconnected,
    .drained = session_on_drained,
  };
  MaSession *self = g_new0 (MaSession, 1);

  self->refcount = 1;
  self->agent = agent;
  self->commands = commands;
  self->name = g_strdup (name);
  self->uid = uid;
  self->framer = ma_framer_new (MA_PROTOCOL_MAX_REQUEST_BYTES);
  if (callbacks != NULL)
    self->callbacks = *callbacks;
  self->callbacks_data = user_data;
  g_queue_init (&self->queue);
  self->channel = ma_channel_new (fd, kind, name, &channel_callbacks, self);
  return self;
}

MaSession *
ma_session_ref (MaSession *self)
{
  self->refcount++;
  return self;
}

void
ma_session_close (MaSession *self)
{
  if (self->closed)
    return;
  self->closed = TRUE;
  g_queue_clear_full (&self->queue, (GDestroyNotify) pending_free);
  g_clear_pointer (&self->channel, ma_channel_free);
}

void
ma_session_unref (MaSession *self)
{
  if (self == NULL || --self->refcount > 0)
    return;
  ma_session_close (self);
  ma_framer_free (self->framer);
  g_free (self->name);
  g_free (self);
}

const char *
ma_session_get_name (MaSession *self)
{
  return self->name;
}

gboolean
ma_session_is_connected (MaSession *self)
{
  return !self->closed && ma_channel_is_connected (self->channel);
}

void
ma_session_send_event (MaSession *self, const char *line)
{
  if (!ma_session_is_connected (self))
    return;
  if (ma_channel_get_pending_output (self->channel) >= MA_SESSION_MAX_OUTPUT)
    {
      self->dropped_events++;
      return;
    }
  session_write (self, line);
}

guint64
ma_session_get_dropped_events (MaSession *self)
{
  return self->dropped_events;
}

void
ma_session_check_host (MaSession *self)
{
  if (!self->closed)
    ma_channel_check_host (self->channel);
}
