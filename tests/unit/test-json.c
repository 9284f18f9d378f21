/* test-json.c — type-checked JSON access, bounded parsing and lossless path strings. */
#include <glib.h>

#include "error.h"
#include "json.h"

static JsonObject *
parse_object (const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = ma_json_parse (text, strlen (text), &error);

  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  return json_object_ref (json_node_get_object (node));
}

static void
test_getters_types (void)
{
  g_autoptr(JsonObject) obj =
    parse_object ("{\"s\":\"x\",\"i\":5,\"d\":2.0,\"f\":2.5,\"b\":true,\"a\":[\"p\",\"q\"],"
                  "\"o\":{},\"n\":null,\"bad\":[1]}");
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) strv = NULL;
  const char *s = NULL;
  gint64 i = 0;
  double d = 0;
  gboolean b = FALSE;
  JsonObject *o = NULL;

  g_assert_true (ma_json_get_string (obj, "s", &s, &error));
  g_assert_cmpstr (s, ==, "x");
  g_assert_true (ma_json_get_int (obj, "i", &i, &error));
  g_assert_cmpint (i, ==, 5);
  g_assert_true (ma_json_get_int (obj, "d", &i, &error)); /* 2.0 is an integer */
  g_assert_cmpint (i, ==, 2);
  g_assert_true (ma_json_get_double (obj, "f", &d, &error));
  g_assert_cmpfloat (d, ==, 2.5);
  g_assert_true (ma_json_get_bool (obj, "b", &b, &error));
  g_assert_true (b);
  g_assert_true (ma_json_get_object (obj, "o", &o, &error));
  g_assert_nonnull (o);
  g_assert_true (ma_json_get_strv (obj, "a", &strv, &error));
  g_assert_cmpstr (strv[1], ==, "q");
  g_assert_no_error (error);

  /* absent and null leave the output alone */
  s = "default";
  g_assert_true (ma_json_get_string (obj, "missing", &s, &error));
  g_assert_true (ma_json_get_string (obj, "n", &s, &error));
  g_assert_cmpstr (s, ==, "default");

  /* wrong types are errors, never criticals */
  g_assert_false (ma_json_get_string (obj, "i", &s, &error));
  g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (ma_json_get_int (obj, "f", &i, &error));
  g_clear_error (&error);
  g_assert_false (ma_json_get_int (obj, "s", &i, &error));
  g_clear_error (&error);
  g_assert_false (ma_json_get_bool (obj, "i", &b, &error));
  g_clear_error (&error);
  g_assert_false (ma_json_get_object (obj, "a", &o, &error));
  g_clear_error (&error);
  g_assert_false (ma_json_get_strv (obj, "bad", &strv, &error));
  g_clear_error (&error);
  g_assert_false (ma_json_require_string (obj, "missing", &s, &error));
  g_assert_true (strstr (error->message, "'missing' is missing") != NULL);
}

static void
test_check_members (void)
{
  g_autoptr(JsonObject) obj = parse_object ("{\"a\":1,\"zz\":2}");
  const char *const allowed[] = { "a", "b", NULL };
  g_autoptr(GError) error = NULL;

  g_assert_false (ma_json_check_members (obj, allowed, &error));
  g_assert_cmpstr (error->message, ==, "Parameter 'zz' is unexpected");
}

static void
test_parse_limits (void)
{
  g_autoptr(GString) deep = g_string_new (NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;

  for (guint i = 0; i < 65; i++)
    g_string_append_c (deep, '[');
  for (guint i = 0; i < 65; i++)
    g_string_append_c (deep, ']');
  node = ma_json_parse (deep->str, deep->len, &error);
  g_assert_null (node);
  g_assert_error (error, MA_ERROR, MA_ERROR_TOO_LARGE);
  g_clear_error (&error);

  /* 64 is fine, and brackets inside strings do not count */
  g_string_erase (deep, 0, 1);
  g_string_truncate (deep, deep->len - 1);
  g_string_append (deep, "");
  node = ma_json_parse (deep->str, deep->len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ma_json_text_depth ("[\"[[[[\"]", 8), ==, 1);
}

/* json-glib 1.6 is lenient and leaks nodes on many lenient paths: only strict JSON with
 * one value reaches it */
static void
test_parse_strict (void)
{
  static const struct
  {
    const char *text;
    const char *message;
  } refused[] = {
    { "{}{}", "unexpected data after the value at byte 2" },
    { "{\"a\":1} {\"b\":2}", "after the value" },
    { "[1][2]", "after the value" },
    { "{\"a\":\"}\"}{}", "after the value at byte 9" },
    { "1[]", "after the value at byte 1" },
    { "0{}", "after the value" },
    { "\"s\"{}", "after the value" },
    { "true []", "after the value" },
    { "{} x", "after the value" },
    { "\xef\xbb\xbf{}{}", "after the value at byte 5" },
    { "{\"a\":\"b\"/g\"/}", "invalid JSON at byte 8" }, /* json-glib took {"a":"b"} */
    { "{'a':'b'}", "invalid JSON at byte 1" },
    { "{\"a\":1,}", "invalid JSON" },
    { "[1,,2]", "invalid JSON" },
    { "[1 2]", "invalid JSON" },
    { "{\"a\" 1}", "invalid JSON" },
    { "{\"a\":1 /* c */}", "invalid JSON" },
    { "// c\n{}", "invalid JSON at byte 0" },
    { "{a:1}", "invalid JSON" },
    { "01", "after the value" },
    { "+1", "invalid JSON" },
    { ".5", "invalid JSON" },
    { "1.", "invalid JSON" },
    { "1e", "invalid JSON" },
    { "-", "invalid JSON" },
    { "tru", "invalid JSON" },
    { "nul", "invalid JSON" },
    { "True", "invalid JSON" },
    { "\"\\x\"", "invalid JSON" },
    { "\"open", "invalid JSON" },
    { "[", "invalid JSON" },
    { "{\"a\":", "invalid JSON" },
    { "", "empty input" },
    { " \r\n\t", "empty input" },
  };
  static const char *const accepted[] = {
    "{}", " {\"a\": [1, {\"b\": \"]}\"}]} \r\n", "[\"[\", \"{\"]", "1", " 2.5e3 ", "-0", "-0.0e-0",
    "1E+308", "9223372036854775807", "\"x\\\"{\"", "null", "true", "false", "[[], {}, [{}]]",
    "\xef\xbb\xbf {}", "{\"a\":\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"}", "\"tab\there\"",
  };

  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) node = ma_json_parse (refused[i].text, strlen (refused[i].text), &error);

      g_test_message ("refused %u", i);
      g_assert_null (node);
      g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
      g_assert_true (g_str_has_prefix (error->message, "JSON parse error, "));
      g_assert_nonnull (strstr (error->message, refused[i].message));
    }
  for (guint i = 0; i < G_N_ELEMENTS (accepted); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) node = ma_json_parse (accepted[i], strlen (accepted[i]), &error);

      g_test_message ("accepted %u", i);
      g_assert_no_error (error);
      g_assert_nonnull (node);
    }
}

static void
test_safe_string (void)
{
  gboolean escaped = TRUE;
  g_autofree char *plain = ma_json_safe_string ("/tmp/a b\nc", -1, &escaped);
  g_autofree char *odd = NULL;

  g_assert_cmpstr (plain, ==, "/tmp/a b\nc");
  g_assert_false (escaped);
  odd = ma_json_safe_string ("/x\\y\xff\xc3\xa9", -1, &escaped);
  g_assert_true (escaped);
  g_assert_cmpstr (odd, ==, "/x\\\\y\\xff\xc3\xa9");
}

/* A reply written as text goes out verbatim, also inside another node (the reply envelope),
 * and nothing a peer can send looks like one. */
static void
test_raw_node (void)
{
  const char *text = "{\"locks\":[{\"path\":\"/a\\nb\"}],\"n\":1.5}";
  g_autoptr(JsonNode) raw = ma_json_new_raw_node (g_strdup (text));
  g_autoptr(JsonObject) envelope = json_object_new ();
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(JsonNode) parsed = NULL;
  g_autofree char *alone = NULL;
  g_autofree char *wrapped = NULL;
  g_autofree char *expected = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_cmpstr (ma_json_raw_node_get_text (raw), ==, text);
  alone = ma_json_to_string (raw);
  g_assert_cmpstr (alone, ==, text);

  json_object_set_member (envelope, "return", json_node_copy (raw));
  json_object_set_int_member (envelope, "id", 7);
  node = ma_json_new_object_node (json_object_ref (envelope));
  wrapped = ma_json_to_string (node);
  expected = g_strdup_printf ("{\"return\":%s,\"id\":7}", text);
  g_assert_cmpstr (wrapped, ==, expected);

  /* parsed input is UTF-8: it cannot name the private member */
  parsed = ma_json_parse ("{\"\\u00ff\":\"x\"}", 14, &error);
  g_assert_no_error (error);
  g_assert_null (ma_json_raw_node_get_text (parsed));
  g_assert_null (ma_json_raw_node_get_text (NULL));
  g_assert_null (ma_json_raw_node_get_text (node));
}

/* A member's value found in the text is what a parse and our generator make of it, and the
 * finder refuses what ma_json_parse () refuses. */
static void
test_find_members (void)
{
  static const char *const names[] = { "return", "id", "event", NULL };
  static const char *const objects[] = {
    "{\"return\":{\"locks\":[{\"path\":\"/a\\nb\"}],\"n\":1.5},\"id\":7}",
    " {\"id\" : 12 ,\t\"return\" :\n[1,\"}\",{\"return\":2}] } ",
    "\xef\xbb\xbf{\"x\":null,\"return\":\"a\\u00e9\\\"\",\"return\":true}",
    "{\"retur\":1,\"returnx\":2,\"event\":\"E\"}",
    "{}",
  };
  static const char *const refused[] = {
    "[1]", "{\"return\":1}{}", "{\"return\":1,}", "{\"return\":\"\\u0000\"}",
    "{\"return\":\"\xff\"}", "{'return':1}", "{\"return\":01}", "",
  };

  for (guint i = 0; i < G_N_ELEMENTS (objects); i++)
    {
      MaJsonSpan spans[G_N_ELEMENTS (names) - 1];
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) node = ma_json_parse (objects[i], strlen (objects[i]), &error);
      JsonObject *obj;

      g_test_message ("object %u", i);
      g_assert_no_error (error);
      g_assert_true (ma_json_find_members (objects[i], strlen (objects[i]), names, spans, &error));
      g_assert_no_error (error);
      obj = json_node_get_object (node);
      for (guint k = 0; names[k] != NULL; k++)
        {
          g_autofree char *found = g_strndup (objects[i] + spans[k].offset, spans[k].len);
          g_autofree char *expected = NULL;
          g_autoptr(JsonNode) reparsed = NULL;
          g_autofree char *again = NULL;

          if (!json_object_has_member (obj, names[k]))
            {
              g_assert_cmpuint (spans[k].len, ==, 0);
              continue;
            }
          expected = ma_json_to_string (json_object_get_member (obj, names[k]));
          reparsed = ma_json_parse (found, strlen (found), &error);
          g_assert_no_error (error);
          again = ma_json_to_string (reparsed);
          g_assert_cmpstr (again, ==, expected);
        }
    }
  /* written by our generator, the span is the generator's text itself */
  {
    const char *text = "{\"return\":{\"a\":[1,2.5,\"x\"],\"b\":null},\"id\":3}";
    MaJsonSpan spans[G_N_ELEMENTS (names) - 1];

    g_assert_true (ma_json_find_members (text, strlen (text), names, spans, NULL));
    g_assert_cmpuint (spans[0].offset, ==, 10);
    g_assert_cmpuint (spans[0].len, ==, strlen ("{\"a\":[1,2.5,\"x\"],\"b\":null}"));
    g_assert_cmpuint (spans[1].len, ==, 1);
    g_assert_cmpuint (spans[2].len, ==, 0);
  }
  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      MaJsonSpan spans[G_N_ELEMENTS (names) - 1];
      g_autoptr(GError) error = NULL;

      g_test_message ("refused %u", i);
      g_assert_false (ma_json_find_members (refused[i], strlen (refused[i]), names, spans, &error));
      g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/json/getters/types", test_getters_types);
  g_test_add_func ("/json/check-members", test_check_members);
  g_test_add_func ("/json/parse/limits", test_parse_limits);
  g_test_add_func ("/json/parse/strict", test_parse_strict);
  g_test_add_func ("/json/safe-string", test_safe_string);
  g_test_add_func ("/json/raw-node", test_raw_node);
  g_test_add_func ("/json/find-members", test_find_members);
  return g_test_run ();
}
