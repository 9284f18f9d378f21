/* client.c — the client side of the protocol, used by migctl, the qemu-ga hook bridge and
 * the tests: connect, resynchronise with sync-delimited, execute, and collect events. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "json.h"
#include "protocol.h"

struct _MaClient
{
  MaTransport *transport;
  guint timeout_ms;
  GByteArray *in;
  GQueue events; /* JsonNode* */
  gint64 next_id;
  gsize scanned; /* bytes of `in` known to hold no newline */
  /* a request that rides on every sync (ma_client_set_pipelined) and its id once sent */
  char *pipelined_command;
  JsonObject *pipelined_args;
  gint64 pipelined_id;
};

static gboolean
set_io_error (GError **error, int err, const char *what)
{
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (err), "%s: %s", what, g_strerror (err));
  return FALSE;
}

/* The unix-socket transport: a connected stream socket, read with poll () and a deadline. */
typedef struct
{
  MaTransport parent;
  int fd;
} UnixTransport;

static gssize
unix_transport_read (MaTransport *transport, guint8 *buf, gsize len, gint64 deadline,
                     gboolean *timed_out, GError **error)
{
  UnixTransport *self = (UnixTransport *) transport;

  *timed_out = FALSE;
  for (;;)
    {
      struct pollfd pfd = { .fd = self->fd, .events = POLLIN };
      int wait_ms = -1;
      ssize_t n;
      int rc;

      if (deadline >= 0)
        {
          gint64 left = deadline - g_get_monotonic_time ();
          if (left <= 0)
            {
              *timed_out = TRUE;
              return -1;
            }
          wait_ms = (int) ((left + 999) / 1000);
        }
      rc = poll (&pfd, 1, wait_ms);
      if (rc < 0 && errno == EINTR)
        continue;
      if (rc < 0)
        {
          set_io_error (error, errno, "poll");
          return -1;
        }
      if (rc == 0)
        continue;
      n = read (self->fd, buf, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          set_io_error (error, errno, "read");
          return -1;
        }
      return n;
    }
}

static gboolean
unix_transport_write (MaTransport *transport, const char *data, gsize len, GError **error)
{
  UnixTransport *self = (UnixTransport *) transport;

  while (len > 0)
    {
      ssize_t n = send (self->fd, data, len, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return set_io_error (error, errno, "write");
      data += n;
      len -= (gsize) n;
    }
  return TRUE;
}

static void
unix_transport_free (MaTransport *transport)
{
  UnixTransport *self = (UnixTransport *) transport;

  if (self->fd >= 0)
    close (self->fd);
  g_free (self);
}

static const MaTransportClass unix_transport_class = {
  .name = "unix",
  .read = unix_transport_read,
  .write = unix_transport_write,
  .free = unix_transport_free,
};

static MaTransport *
unix_transport_connect (const char *uri, GError **error)
{
  g_autoptr(MaTransport) transport = NULL;
  UnixTransport *self = g_new0 (UnixTransport, 1);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  const char *path = g_str_has_prefix (uri, "unix:") ? uri + 5 : uri;

  self->parent.klass = &unix_transport_class;
  self->fd = -1;
  transport = &self->parent;
  if (*path == '\0' || strlen (path) >= sizeof addr.sun_path)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad address '%s'", uri);
      return NULL;
    }
  strcpy (addr.sun_path, path);
  self->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (self->fd < 0)
    {
      set_io_error (error, errno, "socket");
      return NULL;
    }
  if (connect (self->fd, (struct sockaddr *) &addr, sizeof addr) < 0)
    {
      g_autofree char *what = g_strdup_printf ("cannot connect to %s", path);
      set_io_error (error, errno, what);
      return NULL;
    }
  return g_steal_pointer (&transport);
}

void
ma_transport_free (MaTransport *transport)
{
  if (transport != NULL)
    transport->klass->free (transport);
}

MaClient *
ma_client_new (MaTransport *transport, guint timeout_ms)
{
  MaClient *self = g_new0 (MaClient, 1);

  self->transport = transport;
  self->in = g_byte_array_new ();
  self->timeout_ms = timeout_ms;
  self->next_id = 1;
  g_queue_init (&self->events);
  return self;
}

MaClient *
ma_client_connect (const char *uri, guint timeout_ms, GError **error)
{
  MaTransport *transport = unix_transport_connect (uri, error);

  return transport != NULL ? ma_client_new (transport, timeout_ms) : NULL;
}

void
ma_client_free (MaClient *self)
{
  if (self == NULL)
    return;
  ma_transport_free (self->transport);
  g_byte_array_unref (self->in);
  g_queue_clear_full (&self->events, (GDestroyNotify) json_node_unref);
  g_free (self->pipelined_command);
  g_clear_pointer (&self->pipelined_args, json_object_unref);
  g_free (self);
}

void
ma_client_set_timeout (MaClient *self, guint timeout_ms)
{
  self->timeout_ms = timeout_ms;
}

gboolean
ma_client_write_raw (MaClient *self, const char *data, gsize len, GError **error)
{
  return self->transport->klass->write (self->transport, data, len, error);
}

/* Read more bytes into the buffer before the deadline (monotonic µs, -1 = none). */
static gboolean
client_fill (MaClient *self, gint64 deadline, gboolean *timed_out, GError **error)
{
  guint8 buf[65536];
  gssize n = self->transport->klass->read (self->transport, buf, sizeof buf, deadline, timed_out,
                                           error);

  if (n < 0)
    return FALSE;
  if (n == 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                           "the agent closed the connection");
      return FALSE;
    }
  g_byte_array_append (self->in, buf, (guint) n);
  if (self->in->len > MA_CLIENT_MAX_REPLY_BYTES)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                   "reply larger than %d bytes", MA_CLIENT_MAX_REPLY_BYTES);
      return FALSE;
    }
  return TRUE;
}

static gint64
deadline_from (int timeout_ms)
{
  return timeout_ms < 0 ? -1 : g_get_monotonic_time () + (gint64) timeout_ms * 1000;
}

static char *
client_read_line_until (MaClient *self, gint64 deadline, gboolean *timed_out, GError **error)
{
  *timed_out = FALSE;
  for (;;)
    {
      /* a large reply arrives in many reads: each one is searched once */
      guint8 *nl = self->in->len > self->scanned
                     ? memchr (self->in->data + self->scanned, '\n', self->in->len - self->scanned)
                     : NULL;
      if (nl != NULL)
        {
          gsize len = (gsize) (nl - self->in->data);
          char *line = g_strndup ((const char *) self->in->data, len);
          g_byte_array_remove_range (self->in, 0, (guint) len + 1);
          self->scanned = 0;
          return line;
        }
      self->scanned = self->in->len;
      if (!client_fill (self, deadline, timed_out, error))
        return NULL;
    }
}

char *
ma_client_read_line (MaClient *self, int timeout_ms, GError **error)
{
  gboolean timed_out;
  char *line = client_read_line_until (self, deadline_from (timeout_ms), &timed_out, error);

  if (line == NULL && timed_out)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "no answer from the agent");
  return line;
}

typedef enum
{
  LINE_SKIP,  /* an event (queued), a stale reply or garbage: read on */
  LINE_REPLY, /* the reply: its return */
  LINE_ERROR, /* the reply: an error */
} LineKind;

/* One message parsed: an event is queued, our reply gives its return (a copy). */
static LineKind
client_take_message (MaClient *self, gint64 id, JsonNode *node, JsonNode **ret, GError **error)
{
  JsonObject *obj;
  JsonNode *id_node;

  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    return LINE_SKIP;
  obj = json_node_get_object (node);
  if (json_object_has_member (obj, "event"))
    {
      g_queue_push_tail (&self->events, json_node_ref (node));
      return LINE_SKIP;
    }
  id_node = json_object_has_member (obj, "id") ? json_object_get_member (obj, "id") : NULL;
  if (id_node == NULL)
    {
      /* an error about a request the agent could not parse: ours, if nothing else is pending */
      JsonObject *err = NULL;
      const char *desc = "unknown error";
      if (ma_json_get_object (obj, "error", &err, NULL) && err != NULL)
        {
          ma_json_get_string (err, "desc", &desc, NULL);
          g_set_error (error, MA_ERROR, MA_ERROR_GENERIC, "%s", desc);
          return LINE_ERROR;
        }
      return LINE_SKIP;
    }
  if (!JSON_NODE_HOLDS_VALUE (id_node) || json_node_get_value_type (id_node) != G_TYPE_INT64
      || json_node_get_int (id_node) != id)
    return LINE_SKIP; /* a stale reply from before a resync */
  if (json_object_has_member (obj, "error"))
    {
      JsonObject *err = NULL;
      const char *klass = "GenericError", *desc = "unknown error";
      if (ma_json_get_object (obj, "error", &err, NULL) && err != NULL)
        {
          ma_json_get_string (err, "class", &klass, NULL);
          ma_json_get_string (err, "desc", &desc, NULL);
        }
      g_set_error (error, MA_ERROR, ma_error_from_class (klass), "%s", desc);
      return LINE_ERROR;
    }
  if (!json_object_has_member (obj, "return"))
    return LINE_SKIP;
  *ret = json_node_copy (json_object_get_member (obj, "return"));
  return LINE_REPLY;
}

/* Our reply found in the text without a tree: its return as written. LINE_ERROR (no error
 * set) when the line needs a parse: an event, an error, anything unusual. */
static LineKind
client_take_message_text (gint64 id, const char *line, gsize len, char **text)
{
  static const char *const names[] = { "return", "id", "event", "error", NULL };
  MaJsonSpan spans[G_N_ELEMENTS (names) - 1];
  char want[24];
  gsize want_len;

  if (!ma_json_find_members (line, len, names, spans, NULL))
    return LINE_SKIP; /* not one JSON object: ma_json_parse () would refuse it too */
  if (spans[2].len > 0 || spans[3].len > 0 || spans[1].len == 0)
    return LINE_ERROR;
  want_len = (gsize) g_snprintf (want, sizeof want, "%" G_GINT64_FORMAT, id);
  if (spans[1].len != want_len || memcmp (line + spans[1].offset, want, want_len) != 0)
    return LINE_ERROR; /* another id, or one written otherwise: the tree decides */
  if (spans[0].len == 0)
    return LINE_SKIP;
  *text = g_strndup (line + spans[0].offset, spans[0].len);
  return LINE_REPLY;
}

/* Read messages until the reply with this id; events are queued. Its return as a tree, or
 * (text given) as the text the agent wrote, checked but never parsed into a tree. */
static gboolean
client_wait_reply_full (MaClient *self, gint64 id, JsonNode **ret, char **text, GError **error)
{
  gint64 deadline = deadline_from ((int) self->timeout_ms);

  for (;;)
    {
      gboolean timed_out;
      g_autofree char *line = client_read_line_until (self, deadline, &timed_out, error);
      g_autoptr(JsonNode) node = NULL;
      g_autoptr(JsonNode) tree = NULL;
      LineKind kind;
      char *start;

      if (line == NULL)
        {
          if (timed_out)
            g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                         "no answer from the agent within %u ms", self->timeout_ms);
          return FALSE;
        }
      /* a 0xFF (sync-delimited) starts a fresh stream: drop what precedes it */
      start = strrchr (line, (char) MA_PROTOCOL_RESET_BYTE);
      start = start != NULL ? start + 1 : line;
      if (text != NULL)
        {
          kind = client_take_message_text (id, start, strlen (start), text);
          if (kind == LINE_REPLY)
            return TRUE;
          if (kind == LINE_SKIP)
            continue;
        }
      node = ma_json_parse (start, strlen (start), NULL);
      kind = client_take_message (self, id, node, &tree, error);
      if (kind == LINE_ERROR)
        return FALSE;
      if (kind == LINE_SKIP)
        continue;
      if (text != NULL)
        *text = ma_json_to_string (tree);
      else
        *ret = g_steal_pointer (&tree);
      return TRUE;
    }
}

static JsonNode *
client_wait_reply (MaClient *self, gint64 id, GError **error)
{
  JsonNode *ret = NULL;

  return client_wait_reply_full (self, id, &ret, NULL, error) ? ret : NULL;
}

/* Appends one request line (after a 0xFF when reset) to out. */
static void
client_append_request (GString *out, const char *command, JsonObject *args, gint64 id,
                       gboolean reset)
{
  g_autoptr(JsonObject) obj = json_object_new ();
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *text = NULL;

  json_object_set_string_member (obj, "execute", command);
  if (args != NULL)
    json_object_set_object_member (obj, "arguments", json_object_ref (args));
  json_object_set_int_member (obj, "id", id);
  node = ma_json_new_object_node (json_object_ref (obj));
  text = ma_json_to_string (node);
  if (reset)
    g_string_append_c (out, '\xff');
  g_string_append (out, text);
  g_string_append_c (out, '\n');
}

static gboolean
client_send (MaClient *self, const char *command, JsonObject *args, gint64 id, gboolean reset,
             GError **error)
{
  g_autoptr(GString) line = g_string_new (NULL);

  client_append_request (line, command, args, id, reset);
  return ma_client_write_raw (self, line->str, line->len, error);
}

void
ma_client_set_pipelined (MaClient *self, const char *command, JsonObject *args)
{
  g_free (self->pipelined_command);
  g_clear_pointer (&self->pipelined_args, json_object_unref);
  self->pipelined_command = g_strdup (command);
  self->pipelined_args = args != NULL ? json_object_ref (args) : NULL;
  self->pipelined_id = 0;
}

gboolean
ma_client_sync (MaClient *self, GError **error)
{
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;
  gint64 token = g_random_int_range (1, G_MAXINT32 - 1);
  g_autoptr(GString) lines = g_string_new (NULL);

  json_object_set_int_member (args, "id", token);
  /* the request id doubles as the token so client_wait_reply matches it */
  client_append_request (lines, "sync-delimited", args, token, TRUE);
  /* the pipelined request follows in the same write with the next id (one stream packet on
   * libvirt, which sends a second only after the first went out): its reply comes after the
   * sync's (every attempt sends it again, and a reply to an earlier attempt is a stale id) */
  self->pipelined_id = 0;
  if (self->pipelined_command != NULL)
    client_append_request (lines, self->pipelined_command, self->pipelined_args, token + 1,
                           FALSE);
  if (!ma_client_write_raw (self, lines->str, lines->len, error))
    return FALSE;
  if (self->pipelined_command != NULL)
    self->pipelined_id = token + 1;
  ret = client_wait_reply (self, token, error);
  if (ret == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_VALUE (ret) || json_node_get_int (ret) != token)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the agent answered sync with the wrong token");
      return FALSE;
    }
  self->next_id = token + 2;
  return TRUE;
}

/* The id to wait for: the pipelined request's when this is it (sent with the sync), else a
 * new request's, sent now. 0 with error set when the write failed. */
static gint64
client_send_or_take_pipelined (MaClient *self, const char *command, JsonObject *args,
                               GError **error)
{
  gint64 id;

  if (self->pipelined_id != 0 && g_strcmp0 (command, self->pipelined_command) == 0
      && args == self->pipelined_args)
    {
      id = self->pipelined_id;
      self->pipelined_id = 0;
      return id;
    }
  id = self->next_id++;
  return client_send (self, command, args, id, FALSE, error) ? id : 0;
}

JsonNode *
ma_client_execute (MaClient *self, const char *command, JsonObject *args, GError **error)
{
  gint64 id = client_send_or_take_pipelined (self, command, args, error);

  if (id == 0)
    return NULL;
  return client_wait_reply (self, id, error);
}

char *
ma_client_execute_text (MaClient *self, const char *command, JsonObject *args, GError **error)
{
  gint64 id = client_send_or_take_pipelined (self, command, args, error);
  char *text = NULL;

  if (id == 0)
    return NULL;
  return client_wait_reply_full (self, id, NULL, &text, error) ? text : NULL;
}

JsonNode *
ma_client_next_event (MaClient *self, int timeout_ms, GError **error)
{
  gint64 deadline = deadline_from (timeout_ms);

  while (self->events.length == 0)
    {
      gboolean timed_out;
      g_autofree char *line = client_read_line_until (self, deadline, &timed_out, error);
      g_autoptr(JsonNode) node = NULL;
      char *start;

      if (line == NULL)
        return NULL;
      start = strrchr (line, (char) MA_PROTOCOL_RESET_BYTE);
      start = start != NULL ? start + 1 : line;
      node = ma_json_parse (start, strlen (start), NULL);
      if (node != NULL && JSON_NODE_HOLDS_OBJECT (node)
          && json_object_has_member (json_node_get_object (node), "event"))
        g_queue_push_tail (&self->events, g_steal_pointer (&node));
    }
  return g_queue_pop_head (&self->events);
}

gboolean
ma_client_command_only_reads (const char *command)
{
  static const char *const reads[] = { "ping", "info", "status", "blockers", "plugins",
                                       "events", NULL };

  return command != NULL && g_strv_contains (reads, command);
}
