/* plugin-reply.c — what a plugin answers on stdout: a session plugin's reply line
 * ({"status": …, "detail": …}) and a oneshot plugin's closing {"detail": …} line; bytes in, result out. */
#include "plugin-reply.h"

#include <string.h>

#include "error.h"
#include "json.h"

void
ma_plugin_reply_free (MaPluginReply *reply)
{
  if (reply == NULL)
    return;
  g_free (reply->status);
  g_free (reply->detail);
  g_free (reply);
}

/* The line as a JSON object, or NULL. Anything whose first non-blank byte (after a
 * byte-order mark, which json-glib skips) is not '{' is refused before json-glib sees it:
 * a plugin line is often plain text, and json-glib leaks on some scalar-then-garbage
 * inputs such as "1[]". */
static JsonNode *
parse_object (const char *data, gsize len, GError **error)
{
  g_autoptr(JsonNode) node = NULL;
  gsize i = 0;

  if (len >= 3 && memcmp (data, "\xef\xbb\xbf", 3) == 0)
    i = 3;
  while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
    i++;
  if (i == len || data[i] != '{')
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "not a JSON object");
      return NULL;
    }
  node = ma_json_parse (data, len, error);
  if (node == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "not a JSON object");
      return NULL;
    }
  return g_steal_pointer (&node);
}

MaPluginReply *
ma_plugin_reply_parse (const char *data, gsize len, GError **error)
{
  g_autoptr(JsonNode) node = parse_object (data, len, error);
  g_autoptr(MaPluginReply) reply = NULL;
  JsonObject *obj;
  const char *status = NULL, *detail = NULL;

  if (node == NULL)
    return NULL;
  obj = json_node_get_object (node);
  if (!ma_json_get_string (obj, "status", &status, error))
    return NULL;
  if (status == NULL)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "no \"status\" member: not a reply");
      return NULL;
    }
  /* a detail of the wrong type is no detail */
  (void) ma_json_get_string (obj, "detail", &detail, NULL);

  reply = g_new0 (MaPluginReply, 1);
  reply->ok = g_strcmp0 (status, "ok") == 0;
  reply->status = g_strdup (status);
  reply->detail = g_strdup (detail);
  return g_steal_pointer (&reply);
}

char *
ma_plugin_reply_parse_detail (const char *data, gsize len, GError **error)
{
  g_autoptr(JsonNode) node = parse_object (data, len, error);
  const char *detail = NULL;

  if (node == NULL)
    return NULL;
  if (!ma_json_get_string (json_node_get_object (node), "detail", &detail, error))
    return NULL;
  if (detail == NULL)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "no \"detail\" member");
      return NULL;
    }
  return g_strdup (detail);
}
