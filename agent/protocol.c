/* protocol.c — the wire format: framing of the byte stream into requests, request
 * validation (QMP conventions), and the encoding of replies and events. No I/O here. */
#include "protocol.h"

#include "error.h"
#include "json.h"

struct _MaFramer
{
  GString *buf;
  gsize max_bytes;
  guint depth;
  gboolean in_string;
  gboolean escaped;
  gboolean skipping; /* discarding to the end of the line after an error */
};

MaFramer *
ma_framer_new (gsize max_bytes)
{
  MaFramer *self = g_new0 (MaFramer, 1);

  self->buf = g_string_new (NULL);
  self->max_bytes = max_bytes;
  return self;
}

void
ma_framer_free (MaFramer *self)
{
  if (self == NULL)
    return;
  g_string_free (self->buf, TRUE);
  g_free (self);
}

void
ma_framer_reset (MaFramer *self)
{
  g_string_truncate (self->buf, 0);
  self->depth = 0;
  self->in_string = FALSE;
  self->escaped = FALSE;
  self->skipping = FALSE;
}

gsize
ma_framer_pending (MaFramer *self)
{
  return self->buf->len;
}

static void
emit_pending (MaFramer *self, MaFrameFunc func, gpointer user_data)
{
  if (self->buf->len > 0)
    func (MA_FRAME_REQUEST, self->buf->str, self->buf->len, user_data);
  ma_framer_reset (self);
}

static void
start_skipping (MaFramer *self, MaFrameKind kind, MaFrameFunc func, gpointer user_data)
{
  ma_framer_reset (self);
  self->skipping = TRUE;
  func (kind, NULL, 0, user_data);
}

void
ma_framer_feed (MaFramer *self, const char *data, gsize len, MaFrameFunc func, gpointer user_data)
{
  for (gsize i = 0; i < len; i++)
    {
      char c = data[i];

      if ((guchar) c == MA_PROTOCOL_RESET_BYTE)
        {
          ma_framer_reset (self);
          continue;
        }
      if (self->skipping)
        {
          if (c == '\n')
            self->skipping = FALSE;
          continue;
        }
      if (c == '\n' || c == '\r')
        {
          emit_pending (self, func, user_data);
          continue;
        }
      if (self->buf->len == 0 && g_ascii_isspace (c))
        continue;
      if (self->buf->len >= self->max_bytes)
        {
          start_skipping (self, MA_FRAME_TOO_LARGE, func, user_data);
          continue;
        }
      g_string_append_c (self->buf, c);

      if (self->in_string)
        {
          if (self->escaped)
            self->escaped = FALSE;
          else if (c == '\\')
            self->escaped = TRUE;
          else if (c == '"')
            self->in_string = FALSE;
          continue;
        }
      switch (c)
        {
        case '"':
          self->in_string = TRUE;
          break;
        case '{':
        case '[':
          if (++self->depth > MA_JSON_MAX_DEPTH)
            start_skipping (self, MA_FRAME_TOO_DEEP, func, user_data);
          break;
        case '}':
        case ']':
          if (self->depth > 0 && --self->depth == 0)
            emit_pending (self, func, user_data);
          break;
        default:
          break;
        }
    }
}

void
ma_request_free (MaRequest *request)
{
  if (request == NULL)
    return;
  g_free (request->execute);
  g_clear_pointer (&request->arguments, json_object_unref);
  g_clear_pointer (&request->id, json_node_unref);
  g_free (request);
}

/* The request's id as the reply echoes it: the parsed node, or, for an integer that does not
 * survive the parse (beyond 64 bits json-glib keeps -1), its text exactly as the client
 * wrote it, so that a client matching replies by id is never misled. */
static JsonNode *
request_id (const char *text, gsize len, JsonObject *obj)
{
  static const char *const names[] = { "id", NULL };
  JsonNode *id = json_object_get_member (obj, "id");
  MaJsonSpan span[1];
  g_autofree char *canonical = NULL;

  if (!JSON_NODE_HOLDS_VALUE (id) || json_node_get_value_type (id) != G_TYPE_INT64
      || !ma_json_find_members (text, len, names, span, NULL) || span[0].len == 0)
    return json_node_copy (id);
  canonical = g_strdup_printf ("%" G_GINT64_FORMAT, json_node_get_int (id));
  if (strlen (canonical) == span[0].len && memcmp (canonical, text + span[0].offset, span[0].len) == 0)
    return json_node_copy (id);
  return ma_json_new_raw_node (g_strndup (text + span[0].offset, span[0].len));
}

MaRequest *
ma_request_parse (const char *text, gsize len, JsonNode **id_out, GError **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(MaRequest) request = NULL;
  g_autoptr(GList) members = NULL;
  JsonObject *obj;
  JsonNode *node;

  /* anything but an object is refused before json-glib sees it (it also leaks on
   * some scalar-then-garbage inputs such as "1[]") */
  if (len == 0 || text[0] != '{')
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "QMP input must be a JSON object");
      return NULL;
    }
  root = ma_json_parse (text, len, error);
  if (root == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "QMP input must be a JSON object");
      return NULL;
    }
  obj = json_node_get_object (root);

  if (json_object_has_member (obj, "id") && id_out != NULL)
    *id_out = request_id (text, len, obj);

  members = json_object_get_members (obj);
  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *name = l->data;
      if (g_strcmp0 (name, "execute") != 0 && g_strcmp0 (name, "arguments") != 0
          && g_strcmp0 (name, "id") != 0)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "QMP input member '%s' is unexpected", name);
          return NULL;
        }
    }

  request = g_new0 (MaRequest, 1);
  node = json_object_has_member (obj, "execute") ? json_object_get_member (obj, "execute") : NULL;
  if (node == NULL)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "QMP input lacks member 'execute'");
      return NULL;
    }
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "QMP input member 'execute' must be a string");
      return NULL;
    }
  request->execute = g_strdup (json_node_get_string (node));

  node = json_object_has_member (obj, "arguments") ? json_object_get_member (obj, "arguments")
                                                   : NULL;
  if (node != NULL && !JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "QMP input member 'arguments' must be an object");
      return NULL;
    }
  request->arguments = node != NULL ? json_object_ref (json_node_get_object (node))
                                    : json_object_new ();
  if (json_object_has_member (obj, "id"))
    request->id = request_id (text, len, obj);
  return g_steal_pointer (&request);
}

static char *
object_to_line (JsonObject *obj)
{
  g_autoptr(JsonNode) node = ma_json_new_object_node (json_object_ref (obj));
  g_autofree char *text = ma_json_to_string (node);

  return g_strconcat (text, "\n", NULL);
}

char *
ma_reply_return (JsonNode *id, JsonNode *ret)
{
  g_autoptr(JsonObject) obj = json_object_new ();

  json_object_set_member (obj, "return", ret != NULL ? json_node_copy (ret)
                                                     : ma_json_new_empty_object ());
  if (id != NULL)
    json_object_set_member (obj, "id", json_node_copy (id));
  return object_to_line (obj);
}

char *
ma_reply_error_class (JsonNode *id, const char *klass, const char *desc)
{
  g_autoptr(JsonObject) obj = json_object_new ();
  JsonObject *err = json_object_new ();

  json_object_set_string_member (err, "class", klass);
  json_object_set_string_member (err, "desc", desc);
  json_object_set_object_member (obj, "error", err);
  if (id != NULL)
    json_object_set_member (obj, "id", json_node_copy (id));
  return object_to_line (obj);
}

char *
ma_reply_error (JsonNode *id, const GError *error)
{
  return ma_reply_error_class (id, ma_error_class (error), error->message);
}

JsonNode *
ma_event_new (const char *name, JsonNode *data, guint64 seq, gint64 realtime_us)
{
  JsonObject *obj = json_object_new ();
  JsonObject *ts = json_object_new ();

  json_object_set_string_member (obj, "event", name);
  json_object_set_member (obj, "data", data != NULL ? data : ma_json_new_empty_object ());
  json_object_set_int_member (obj, "seq", (gint64) seq);
  json_object_set_int_member (ts, "seconds", realtime_us / G_USEC_PER_SEC);
  json_object_set_int_member (ts, "microseconds", realtime_us % G_USEC_PER_SEC);
  json_object_set_object_member (obj, "timestamp", ts);
  return ma_json_new_object_node (obj);
}

char *
ma_event_to_line (JsonNode *event)
{
  g_autofree char *text = ma_json_to_string (event);

  return g_strconcat (text, "\n", NULL);
}
