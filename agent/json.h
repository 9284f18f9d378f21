/* json.h — type-checked access to json-glib nodes and bounded parsing.
 * No other module calls json_object_get_*_member directly: wrong types become GErrors here. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MA_JSON_MAX_DEPTH 64

/* Getters: an absent (or null) member leaves *out unchanged and returns TRUE;
 * a member of the wrong type returns FALSE with MA_ERROR_INVALID_ARGUMENT. */
gboolean ma_json_get_string (JsonObject *obj, const char *member, const char **out, GError **error);
gboolean ma_json_get_int (JsonObject *obj, const char *member, gint64 *out, GError **error);
gboolean ma_json_get_double (JsonObject *obj, const char *member, double *out, GError **error);
gboolean ma_json_get_bool (JsonObject *obj, const char *member, gboolean *out, GError **error);
gboolean ma_json_get_object (JsonObject *obj, const char *member, JsonObject **out, GError **error);
gboolean ma_json_get_array (JsonObject *obj, const char *member, JsonArray **out, GError **error);
/* A list of strings; *out is a new NULL-terminated vector or left NULL when absent. */
gboolean ma_json_get_strv (JsonObject *obj, const char *member, char ***out, GError **error);

/* Lenient readers for documents the agent wrote itself (snapshots kept in the state dir, which may
 * be damaged on disk): a missing or mistyped member reads as NULL / 0 / the default given, and a
 * NULL object or array reads as empty. */
JsonArray *ma_json_array_or_null (JsonObject *obj, const char *member);
const char *ma_json_string_or_null (JsonObject *obj, const char *member);
gint64 ma_json_int_or (JsonObject *obj, const char *member, gint64 def);
gboolean ma_json_bool_or (JsonObject *obj, const char *member, gboolean def);
guint ma_json_array_length (JsonArray *array);
/* Element i of array when it is an object, else NULL. */
JsonObject *ma_json_array_object (JsonArray *array, guint i);

/* Same, but an absent member is an error. */
gboolean ma_json_require_string (JsonObject *obj, const char *member, const char **out, GError **error);

/* Every member of obj must be in allowed (NULL-terminated). */
gboolean ma_json_check_members (JsonObject *obj, const char *const *allowed, GError **error);

/* Nesting depth of JSON text, ignoring brackets inside strings. */
guint ma_json_text_depth (const char *text, gsize len);

/* Parse text that must be valid UTF-8, at most MA_JSON_MAX_DEPTH deep. */
JsonNode *ma_json_parse (const char *text, gsize len, GError **error);

/* Where a member's value lies in the JSON text of an object: offset and length in bytes. */
typedef struct
{
  gsize offset;
  gsize len; /* 0 when the member is absent */
} MaJsonSpan;

/* The values of some members of one JSON object, found in its text without building a tree
 * (a large reply passed on as the agent wrote it). The text is checked as ma_json_parse ()
 * checks it; names are NULL-terminated, plain ASCII, matched against member names written
 * without escapes; a repeated member gives its last value, as json-glib does. */
gboolean ma_json_find_members (const char *text, gsize len, const char *const *names,
                               MaJsonSpan *spans, GError **error);

/* One-line serialisation (no trailing newline). */
char *ma_json_to_string (JsonNode *node);
/* The pieces of it, for replies written as text directly: a string (JSON escapes, bytes as
 * they are) and a double (shortest exact form, always with a fraction or exponent). */
void ma_json_append_string (GString *out, const char *str);
void ma_json_append_double (GString *out, double d);

/* A node that ma_json_to_string () writes as `json` (taken), verbatim: a large reply built as
 * text. `json` must be one valid JSON value. To json-glib it is an object with one private
 * member: only the serializer and ma_json_raw_node_get_text () know it. */
JsonNode *ma_json_new_raw_node (char *json);
/* The text of a raw node, NULL for any other node. */
const char *ma_json_raw_node_get_text (JsonNode *node);

/* Small constructors used everywhere. */
JsonNode *ma_json_new_object_node (JsonObject *obj /* transfer full */);
JsonNode *ma_json_new_array_node (JsonArray *array /* transfer full */);
JsonNode *ma_json_new_empty_object (void);
/* Strings that may hold arbitrary bytes (paths): valid UTF-8 is kept, anything
 * else is escaped losslessly as \xNN and *lossy set to TRUE when given. */
char *ma_json_safe_string (const char *bytes, gssize len, gboolean *escaped);

G_END_DECLS
