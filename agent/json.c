/* json.c — type-checked access to json-glib nodes and bounded parsing.
 * No other module calls json_object_get_*_member directly: wrong types become GErrors here. */
#include "json.h"

#include <math.h>
#include <string.h>

#include "error.h"

static JsonNode *
member_node (JsonObject *obj, const char *member)
{
  JsonNode *node;

  if (obj == NULL || !json_object_has_member (obj, member))
    return NULL;
  node = json_object_get_member (obj, member);
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return NULL;
  return node;
}

static gboolean
wrong_type (const char *member, const char *expected, GError **error)
{
  g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
               "Parameter '%s' expects %s", member, expected);
  return FALSE;
}

static gboolean
holds_value_of (JsonNode *node, GType type)
{
  return JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

gboolean
ma_json_get_string (JsonObject *obj, const char *member, const char **out, GError **error)
{
  JsonNode *node = member_node (obj, member);

  if (node == NULL)
    return TRUE;
  if (!holds_value_of (node, G_TYPE_STRING))
    return wrong_type (member, "a string", error);
  *out = json_node_get_string (node);
  return TRUE;
}

gboolean
ma_json_require_string (JsonObject *obj, const char *member, const char **out, GError **error)
{
  if (member_node (obj, member) == NULL)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "Parameter '%s' is missing", member);
      return FALSE;
    }
  return ma_json_get_string (obj, member, out, error);
}

gboolean
ma_json_get_int (JsonObject *obj, const char *member, gint64 *out, GError **error)
{
  JsonNode *node = member_node (obj, member);

  if (node == NULL)
    return TRUE;
  if (holds_value_of (node, G_TYPE_INT64))
    {
      *out = json_node_get_int (node);
      return TRUE;
    }
  if (holds_value_of (node, G_TYPE_DOUBLE))
    {
      double d = json_node_get_double (node);
      if (isfinite (d) && d == floor (d) && fabs (d) < 9.0e15)
        {
          *out = (gint64) d;
          return TRUE;
        }
    }
  return wrong_type (member, "an integer", error);
}

gboolean
ma_json_get_double (JsonObject *obj, const char *member, double *out, GError **error)
{
  JsonNode *node = member_node (obj, member);

  if (node == NULL)
    return TRUE;
  if (holds_value_of (node, G_TYPE_INT64))
    *out = (double) json_node_get_int (node);
  else if (holds_value_of (node, G_TYPE_DOUBLE))
    *out = json_node_get_double (node);
  else
    return wrong_type (member, "a number", error);
  return TRUE;
}

gboolean
ma_json_get_bool (JsonObject *obj, const char *member, gboolean *out, GError **error)
{
  JsonNode *node = member_node (obj, member);

  if (node == NULL)
    return TRUE;
  if (!holds_value_of (node, G_TYPE_BOOLEAN))
    return wrong_type (member, "a boolean", error);
  *out = json_node_get_boolean (node);
  return TRUE;
}

JsonArray *
ma_json_array_or_null (JsonObject *obj, const char *member)
{
  JsonArray *array = NULL;

  if (obj == NULL || !ma_json_get_array (obj, member, &array, NULL))
    return NULL;
  return array;
}

const char *
ma_json_string_or_null (JsonObject *obj, const char *member)
{
  const char *value = NULL;

  if (obj == NULL || !ma_json_get_string (obj, member, &value, NULL))
    return NULL;
  return value;
}

gint64
ma_json_int_or (JsonObject *obj, const char *member, gint64 def)
{
  gint64 value = def;

  if (obj == NULL || !ma_json_get_int (obj, member, &value, NULL))
    return def;
  return value;
}

gboolean
ma_json_bool_or (JsonObject *obj, const char *member, gboolean def)
{
  gboolean value = def;

  if (obj == NULL || !ma_json_get_bool (obj, member, &value, NULL))
    return def;
  return value;
}

guint
ma_json_array_length (JsonArray *array)
{
  return array != NULL ? json_array_get_length (array) : 0;
}

JsonObject *
ma_json_array_object (JsonArray *array, guint i)
{
  JsonNode *node = json_array_get_element (array, i);

  return JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

gboolean
ma_json_get_object (JsonObject *obj, const char *member, JsonObject **out, GError **error)
{
  JsonNode *node = member_node (obj, member);

  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return wrong_type (member, "an object", error);
  *out = json_node_get_object (node);
  return TRUE;
}

gboolean
ma_json_get_array (JsonObject *obj, const char *member, JsonArray **out, GError **error)
{
  JsonNode *node = member_node (obj, member);

  if (node == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (node))
    return wrong_type (member, "an array", error);
  *out = json_node_get_array (node);
  return TRUE;
}

gboolean
ma_json_get_strv (JsonObject *obj, const char *member, char ***out, GError **error)
{
  JsonArray *array = NULL;
  g_autoptr(GStrvBuilder) builder = NULL;

  if (!ma_json_get_array (obj, member, &array, error))
    return FALSE;
  if (array == NULL)
    return TRUE;
  builder = g_strv_builder_new ();
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *node = json_array_get_element (array, i);
      if (!holds_value_of (node, G_TYPE_STRING))
        return wrong_type (member, "a list of strings", error);
      g_strv_builder_add (builder, json_node_get_string (node));
    }
  *out = g_strv_builder_end (builder);
  return TRUE;
}

gboolean
ma_json_check_members (JsonObject *obj, const char *const *allowed, GError **error)
{
  g_autoptr(GList) members = json_object_get_members (obj);

  for (GList *l = members; l != NULL; l = l->next)
    {
      if (!g_strv_contains (allowed, l->data))
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "Parameter '%s' is unexpected", (const char *) l->data);
          return FALSE;
        }
    }
  return TRUE;
}

/* Escapes json-glib would accept but lose: \u0000 (cut strings short) and \u
 * without four hex digits. */
/* The value of four hexadecimal digits at text[at], or G_MAXUINT. */
static guint
hex4 (const char *text, gsize len, gsize at)
{
  guint v = 0;

  if (at + 4 > len)
    return G_MAXUINT;
  for (gsize k = at; k < at + 4; k++)
    {
      if (!g_ascii_isxdigit (text[k]))
        return G_MAXUINT;
      v = v * 16 + (guint) g_ascii_xdigit_value (text[k]);
    }
  return v;
}

static gboolean
text_has_bad_escape (const char *text, gsize len, const char **why)
{
  gboolean in_string = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      if (!in_string)
        {
          in_string = text[i] == '"';
          continue;
        }
      if (text[i] == '"')
        in_string = FALSE;
      else if (text[i] == '\\' && i + 1 < len)
        {
          if (text[i + 1] == 'u')
            {
              guint unit = hex4 (text, len, i + 2);
              if (unit > 0xFFFF)
                {
                  *why = "an invalid \\u escape (not four hexadecimal digits)";
                  return TRUE;
                }
              if (unit == 0)
                {
                  *why = "a \\u0000 escape (a NUL character)";
                  return TRUE;
                }
              if (unit >= 0xDC00 && unit <= 0xDFFF)
                {
                  *why = "an invalid \\u escape: a lone low surrogate (\\udc00-\\udfff)";
                  return TRUE;
                }
              if (unit >= 0xD800 && unit <= 0xDBFF)
                {
                  guint low = i + 11 < len && text[i + 6] == '\\' && text[i + 7] == 'u'
                                ? hex4 (text, len, i + 8) : G_MAXUINT;
                  if (low < 0xDC00 || low > 0xDFFF)
                    {
                      *why = "an invalid \\u escape: a high surrogate (\\ud800-\\udbff) not "
                             "followed by a low one";
                      return TRUE;
                    }
                  i += 6; /* the pair's low half */
                }
              i += 4;
            }
          i++; /* skip the escaped character */
        }
    }
  return FALSE;
}

/* A strict check of the syntax (RFC 8259, one value, a leading byte-order mark allowed)
 * before json-glib sees the text. json-glib 1.6 is lenient (single quotes, comments, junk
 * between members, more values after the first) and leaks nodes on many of those paths
 * ("{}{}", "1[]", {"a":"b"/x"/}): only text it parses cleanly reaches it. Control
 * characters inside strings stay accepted, as json-glib took them. */
typedef struct
{
  const char *text;
  gsize len;
  gsize i;
} MaJsonScan;

static void
scan_blanks (MaJsonScan *s)
{
  while (s->i < s->len && (s->text[s->i] == ' ' || s->text[s->i] == '\t'
                           || s->text[s->i] == '\n' || s->text[s->i] == '\r'))
    s->i++;
}

static gboolean
scan_char (MaJsonScan *s, char c)
{
  scan_blanks (s);
  if (s->i < s->len && s->text[s->i] == c)
    {
      s->i++;
      return TRUE;
    }
  return FALSE;
}

static gboolean
scan_digits (MaJsonScan *s)
{
  gsize start = s->i;

  while (s->i < s->len && g_ascii_isdigit (s->text[s->i]))
    s->i++;
  return s->i > start;
}

static gboolean
scan_string (MaJsonScan *s)
{
  s->i++; /* the opening quote */
  while (s->i < s->len)
    {
      char c = s->text[s->i];
      if (c == '"')
        {
          s->i++;
          return TRUE;
        }
      if (c != '\\')
        {
          s->i++;
          continue;
        }
      if (s->i + 1 >= s->len)
        return FALSE;
      c = s->text[s->i + 1];
      if (c == 'u')
        {
          for (gsize k = 2; k < 6; k++)
            if (s->i + k >= s->len || !g_ascii_isxdigit (s->text[s->i + k]))
              return FALSE;
          s->i += 6;
        }
      else if (c != '\0' && strchr ("\"\\/bfnrt", c) != NULL)
        s->i += 2;
      else
        return FALSE;
    }
  return FALSE;
}

static gboolean
scan_number (MaJsonScan *s)
{
  if (s->text[s->i] == '-')
    s->i++;
  if (s->i < s->len && s->text[s->i] == '0')
    s->i++;
  else if (!scan_digits (s))
    return FALSE;
  if (s->i < s->len && s->text[s->i] == '.')
    {
      s->i++;
      if (!scan_digits (s))
        return FALSE;
    }
  if (s->i < s->len && (s->text[s->i] == 'e' || s->text[s->i] == 'E'))
    {
      s->i++;
      if (s->i < s->len && (s->text[s->i] == '+' || s->text[s->i] == '-'))
        s->i++;
      if (!scan_digits (s))
        return FALSE;
    }
  return TRUE;
}

static gboolean
scan_word (MaJsonScan *s, const char *word)
{
  gsize n = strlen (word);

  if (s->len - s->i < n || memcmp (s->text + s->i, word, n) != 0)
    return FALSE;
  s->i += n;
  return TRUE;
}

static gboolean
scan_value (MaJsonScan *s, guint depth)
{
  char c;

  scan_blanks (s);
  if (s->i >= s->len)
    return FALSE;
  c = s->text[s->i];
  if ((c == '{' || c == '[') && depth > MA_JSON_MAX_DEPTH)
    return FALSE;
  if (c == '{')
    {
      s->i++;
      if (scan_char (s, '}'))
        return TRUE;
      do
        {
          scan_blanks (s);
          if (s->i >= s->len || s->text[s->i] != '"' || !scan_string (s) || !scan_char (s, ':')
              || !scan_value (s, depth + 1))
            return FALSE;
        }
      while (scan_char (s, ','));
      return scan_char (s, '}');
    }
  if (c == '[')
    {
      s->i++;
      if (scan_char (s, ']'))
        return TRUE;
      do
        {
          if (!scan_value (s, depth + 1))
            return FALSE;
        }
      while (scan_char (s, ','));
      return scan_char (s, ']');
    }
  if (c == '"')
    return scan_string (s);
  if (c == '-' || g_ascii_isdigit (c))
    return scan_number (s);
  return scan_word (s, "true") || scan_word (s, "false") || scan_word (s, "null");
}

static gboolean
check_syntax (const char *text, gsize len, GError **error)
{
  MaJsonScan s = { text, len, 0 };

  if (len >= 3 && memcmp (text, "\xef\xbb\xbf", 3) == 0)
    s.i = 3;
  scan_blanks (&s);
  if (s.i == len)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "JSON parse error, empty input");
      return FALSE;
    }
  if (!scan_value (&s, 1))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "JSON parse error, invalid JSON at byte %" G_GSIZE_FORMAT, s.i);
      return FALSE;
    }
  scan_blanks (&s);
  if (s.i < len)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "JSON parse error, unexpected data after the value at byte %" G_GSIZE_FORMAT,
                   s.i);
      return FALSE;
    }
  return TRUE;
}

guint
ma_json_text_depth (const char *text, gsize len)
{
  guint depth = 0, max_depth = 0;
  gboolean in_string = FALSE, escaped = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      char c = text[i];
      if (in_string)
        {
          if (escaped)
            escaped = FALSE;
          else if (c == '\\')
            escaped = TRUE;
          else if (c == '"')
            in_string = FALSE;
          continue;
        }
      if (c == '"')
        in_string = TRUE;
      else if (c == '{' || c == '[')
        {
          depth++;
          max_depth = MAX (max_depth, depth);
        }
      else if ((c == '}' || c == ']') && depth > 0)
        depth--;
    }
  return max_depth;
}

/* What ma_json_parse () refuses before its syntax check: bad UTF-8, depth, lossy escapes. */
static gboolean
check_text (const char *text, gsize len, GError **error)
{
  const char *why = NULL;

  if (!g_utf8_validate_len (text, len, NULL))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "JSON parse error, input is not valid UTF-8");
      return FALSE;
    }
  if (ma_json_text_depth (text, len) > MA_JSON_MAX_DEPTH)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_TOO_LARGE,
                   "JSON parse error, nesting deeper than %d", MA_JSON_MAX_DEPTH);
      return FALSE;
    }
  if (text_has_bad_escape (text, len, &why))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "JSON parse error, %s in a string", why);
      return FALSE;
    }
  return TRUE;
}

JsonNode *
ma_json_parse (const char *text, gsize len, GError **error)
{
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) local_error = NULL;
  JsonNode *root;

  if (!check_text (text, len, error) || !check_syntax (text, len, error))
    return NULL;
  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, text, (gssize) len, &local_error))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "JSON parse error, %s", local_error->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "JSON parse error, empty input");
      return NULL;
    }
  return json_node_copy (root);
}

gboolean
ma_json_find_members (const char *text, gsize len, const char *const *names, MaJsonSpan *spans,
                      GError **error)
{
  MaJsonScan s = { text, len, 0 };
  gboolean ok = TRUE;

  for (guint k = 0; names[k] != NULL; k++)
    spans[k] = (MaJsonSpan){ 0, 0 };
  if (!check_text (text, len, error))
    return FALSE;
  if (len >= 3 && memcmp (text, "\xef\xbb\xbf", 3) == 0)
    s.i = 3;
  if (!scan_char (&s, '{'))
    ok = FALSE;
  else if (!scan_char (&s, '}'))
    {
      do
        {
          gsize name_start, name_len, value_start;

          scan_blanks (&s);
          if (s.i >= s.len || s.text[s.i] != '"')
            {
              ok = FALSE;
              break;
            }
          name_start = s.i + 1;
          if (!scan_string (&s))
            {
              ok = FALSE;
              break;
            }
          name_len = s.i - 1 - name_start; /* s.i is past the closing quote */
          if (!scan_char (&s, ':'))
            {
              ok = FALSE;
              break;
            }
          scan_blanks (&s);
          value_start = s.i;
          if (!scan_value (&s, 2))
            {
              ok = FALSE;
              break;
            }
          for (guint k = 0; names[k] != NULL; k++)
            if (strlen (names[k]) == name_len && memcmp (text + name_start, names[k], name_len) == 0)
              spans[k] = (MaJsonSpan){ value_start, s.i - value_start };
        }
      while (scan_char (&s, ','));
      ok = ok && scan_char (&s, '}');
    }
  if (ok)
    {
      scan_blanks (&s);
      ok = s.i == len;
    }
  if (!ok)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "JSON parse error, not one JSON object (at byte %" G_GSIZE_FORMAT ")", s.i);
      return FALSE;
    }
  return TRUE;
}

void
ma_json_append_string (GString *out, const char *str)
{
  const guchar *p = (const guchar *) str;

  g_string_append_c (out, '"');
  while (*p != '\0')
    {
      const guchar *run = p;

      /* bytes that need no escape go in one piece */
      while (*p >= 0x20 && *p != '"' && *p != '\\' && *p != 0x7f)
        p++;
      if (p > run)
        g_string_append_len (out, (const char *) run, p - run);
      if (*p == '\0')
        break;
      switch (*p++)
        {
        case '"':
          g_string_append (out, "\\\"");
          break;
        case '\\':
          g_string_append (out, "\\\\");
          break;
        case '\n':
          g_string_append (out, "\\n");
          break;
        case '\r':
          g_string_append (out, "\\r");
          break;
        case '\t':
          g_string_append (out, "\\t");
          break;
        default:
          g_string_append_printf (out, "\\u%04x", p[-1]);
          break;
        }
    }
  g_string_append_c (out, '"');
}

void
ma_json_append_double (GString *out, double d)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite (d))
    {
      g_string_append (out, "null"); /* JSON has no NaN or infinity */
      return;
    }
  /* the shortest form that reads back as the same double */
  g_ascii_formatd (buf, sizeof buf, "%.15g", d);
  if (g_ascii_strtod (buf, NULL) != d)
    g_ascii_formatd (buf, sizeof buf, "%.16g", d);
  if (g_ascii_strtod (buf, NULL) != d)
    g_ascii_formatd (buf, sizeof buf, "%.17g", d);
  g_string_append (out, buf);
  /* keep it a double for readers that care, without breaking exponent forms */
  if (strpbrk (buf, ".eEn") == NULL)
    g_string_append (out, ".0");
}

/* The one member of a raw node: a byte no UTF-8 text starts with (parsed input cannot spell
 * it), then a per-process nonce (nor can bytes read from elsewhere, by accident). */
static const char *
raw_member_name (void)
{
  static char name[1 + 32 + 1];
  static gsize done = 0;

  if (g_once_init_enter (&done))
    {
      name[0] = '\xff';
      for (guint i = 0; i < 4; i++)
        g_snprintf (name + 1 + i * 8, 9, "%08x", g_random_int ());
      g_once_init_leave (&done, 1);
    }
  return name;
}

JsonNode *
ma_json_new_raw_node (char *json)
{
  JsonObject *obj = json_object_new ();

  json_object_set_member (obj, raw_member_name (), json_node_init_string (json_node_alloc (), json));
  g_free (json);
  return ma_json_new_object_node (obj);
}

const char *
ma_json_raw_node_get_text (JsonNode *node)
{
  JsonObject *obj;
  JsonNode *member;

  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    return NULL;
  obj = json_node_get_object (node);
  if (json_object_get_size (obj) != 1 || !json_object_has_member (obj, raw_member_name ()))
    return NULL;
  member = json_object_get_member (obj, raw_member_name ());
  return JSON_NODE_HOLDS_VALUE (member) ? json_node_get_string (member) : NULL;
}

static void
append_node (GString *out, JsonNode *node)
{
  switch (JSON_NODE_TYPE (node))
    {
    case JSON_NODE_OBJECT:
      {
        JsonObjectIter iter;
        const char *name;
        JsonNode *member;
        gboolean first = TRUE;
        const char *raw = ma_json_raw_node_get_text (node);

        if (raw != NULL)
          {
            g_string_append (out, raw);
            break;
          }
        g_string_append_c (out, '{');
        json_object_iter_init_ordered (&iter, json_node_get_object (node));
        while (json_object_iter_next_ordered (&iter, &name, &member))
          {
            if (!first)
              g_string_append_c (out, ',');
            first = FALSE;
            ma_json_append_string (out, name);
            g_string_append_c (out, ':');
            append_node (out, member);
          }
        g_string_append_c (out, '}');
        break;
      }
    case JSON_NODE_ARRAY:
      {
        JsonArray *array = json_node_get_array (node);

        g_string_append_c (out, '[');
        for (guint i = 0; i < json_array_get_length (array); i++)
          {
            if (i > 0)
              g_string_append_c (out, ',');
            append_node (out, json_array_get_element (array, i));
          }
        g_string_append_c (out, ']');
        break;
      }
    case JSON_NODE_VALUE:
      switch (json_node_get_value_type (node))
        {
        case G_TYPE_INT64:
          g_string_append_printf (out, "%" G_GINT64_FORMAT, json_node_get_int (node));
          break;
        case G_TYPE_DOUBLE:
          ma_json_append_double (out, json_node_get_double (node));
          break;
        case G_TYPE_BOOLEAN:
          g_string_append (out, json_node_get_boolean (node) ? "true" : "false");
          break;
        case G_TYPE_STRING:
          ma_json_append_string (out, json_node_get_string (node));
          break;
        default:
          g_string_append (out, "null");
          break;
        }
      break;
    case JSON_NODE_NULL:
    default:
      g_string_append (out, "null");
      break;
    }
}

/* Our own generator: json-glib 1.6 writes doubles such as 1e+308 as "1e+308.0",
 * which no JSON reader accepts. Member order is insertion order. */
char *
ma_json_to_string (JsonNode *node)
{
  GString *out = g_string_sized_new (256);

  append_node (out, node);
  return g_string_free (out, FALSE);
}

JsonNode *
ma_json_new_object_node (JsonObject *obj)
{
  JsonNode *node = json_node_new (JSON_NODE_OBJECT);

  json_node_take_object (node, obj);
  return node;
}

JsonNode *
ma_json_new_array_node (JsonArray *array)
{
  JsonNode *node = json_node_new (JSON_NODE_ARRAY);

  json_node_take_array (node, array);
  return node;
}

JsonNode *
ma_json_new_empty_object (void)
{
  return ma_json_new_object_node (json_object_new ());
}

char *
ma_json_safe_string (const char *bytes, gssize len, gboolean *escaped)
{
  GString *out;
  const char *p, *end;

  if (len < 0)
    len = (gssize) strlen (bytes);
  if (escaped != NULL)
    *escaped = FALSE;
  if (g_utf8_validate_len (bytes, (gsize) len, NULL))
    return g_strndup (bytes, (gsize) len);

  /* Escaped form: every backslash doubled, every byte that is not part of a
   * valid UTF-8 sequence written as \xNN — reversible, hence lossless. */
  if (escaped != NULL)
    *escaped = TRUE;
  out = g_string_sized_new ((gsize) len + 16);
  p = bytes;
  end = bytes + len;
  while (p < end)
    {
      gunichar c = g_utf8_get_char_validated (p, end - p);
      if (c == (gunichar) -1 || c == (gunichar) -2 || c == 0)
        {
          g_string_append_printf (out, "\\x%02x", (guchar) *p);
          p++;
          continue;
        }
      if (c == '\\')
        g_string_append (out, "\\\\");
      else
        g_string_append_unichar (out, c);
      p = g_utf8_next_char (p);
    }
  return g_string_free (out, FALSE);
}
