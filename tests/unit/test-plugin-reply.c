/* test-plugin-reply.c — parsing what plugins answer: session reply lines and the oneshot
 * closing detail line, including every kind of line that is not a reply. */
#include <glib.h>
#include <string.h>

#include "error.h"
#include "plugin-reply.h"

static MaPluginReply *
parse_ok (const char *line)
{
  g_autoptr(GError) error = NULL;
  MaPluginReply *reply = ma_plugin_reply_parse (line, strlen (line), &error);

  g_assert_no_error (error);
  g_assert_nonnull (reply);
  g_assert_nonnull (reply->status);
  return reply;
}

static void
test_status_ok (void)
{
  g_autoptr(MaPluginReply) reply = parse_ok ("{\"status\": \"ok\"}");

  g_assert_true (reply->ok);
  g_assert_cmpstr (reply->status, ==, "ok");
  g_assert_null (reply->detail);
}

static void
test_status_fail_with_detail (void)
{
  g_autoptr(MaPluginReply) reply = parse_ok ("{\"status\": \"fail\", \"detail\": \"lock wait timeout\"}");

  g_assert_false (reply->ok);
  g_assert_cmpstr (reply->status, ==, "fail");
  g_assert_cmpstr (reply->detail, ==, "lock wait timeout");
}

static void
test_status_other (void)
{
  /* only the exact "ok" succeeds */
  const char *lines[] = {
    "{\"status\": \"OK\"}", "{\"status\": \"\"}", "{\"status\": \"ok \"}",
    "{\"status\": \"okay\"}", "{\"status\": \"error\", \"detail\": null}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (lines); i++)
    {
      g_autoptr(MaPluginReply) reply = parse_ok (lines[i]);
      g_assert_false (reply->ok);
      g_assert_null (reply->detail);
    }
}

static void
test_members_and_types (void)
{
  g_autoptr(MaPluginReply) extra = parse_ok ("{\"x\": [1, {}], \"status\": \"ok\", \"y\": null}");
  g_autoptr(MaPluginReply) number = parse_ok ("{\"status\": \"fail\", \"detail\": 3}");
  g_autoptr(MaPluginReply) object = parse_ok ("{\"status\": \"ok\", \"detail\": {\"a\": 1}}");
  g_autoptr(MaPluginReply) escaped = parse_ok ("{\"status\": \"ok\", \"detail\": \"caf\\u00e9 \\\"3\\\"\\n\"}");
  g_autoptr(MaPluginReply) last = parse_ok ("{\"status\": \"fail\", \"status\": \"ok\"}");

  g_assert_true (extra->ok);
  /* a detail that is not a string is no detail */
  g_assert_false (number->ok);
  g_assert_null (number->detail);
  g_assert_true (object->ok);
  g_assert_null (object->detail);
  g_assert_cmpstr (escaped->detail, ==, "caf\xc3\xa9 \"3\"\n");
  /* a repeated member: json-glib keeps the last one */
  g_assert_true (last->ok);
}

static void
test_whitespace_and_length (void)
{
  const char buffer[] = "{\"status\":\"ok\"}{\"status\":\"fail\"}";
  g_autoptr(MaPluginReply) padded = parse_ok (" \t{\"status\": \"ok\"}\r");
  g_autoptr(GError) error = NULL;
  g_autoptr(MaPluginReply) first = NULL;

  g_assert_true (padded->ok);
  /* only len bytes are read: the buffer need not be NUL-terminated there */
  first = ma_plugin_reply_parse (buffer, strlen ("{\"status\":\"ok\"}"), &error);
  g_assert_no_error (error);
  g_assert_true (first->ok);
}

static void
test_not_a_reply (void)
{
  static const struct
  {
    const char *text;
    gsize len; /* 0: strlen */
  } lines[] = {
    { "", 0 },
    { "   \t", 0 },
    { "starting up", 0 },
    { "flushed 3 tables", 0 },
    { "[1]", 0 },
    { "[{\"status\": \"ok\"}]", 0 },
    { "\"ok\"", 0 },
    { "null", 0 },
    { "1[]", 0 },  /* json-glib leaks on these when it parses them */
    { "0{}", 0 },
    { "0[0]", 0 },
    { "{}", 0 },
    { "{\"status\": null}", 0 },
    { "{\"status\": 1}", 0 },
    { "{\"status\": true}", 0 },
    { "{\"status\": [\"ok\"]}", 0 },
    { "{\"status\": {\"ok\": true}}", 0 },
    { "{\"detail\": \"ok\"}", 0 },
    { "{\"status\": \"ok\"", 0 },
    { "{\"status\": \"ok\"} trailing", 0 },
    { "{\"status\": \"ok\"}{}", 0 }, /* json-glib took the first and leaked the rest */
    { "{\"status\": \"fail\"}{\"status\": \"ok\"}", 0 },
    { "{status: \"ok\"}", 0 },
    { "{'status': 'ok'}", 0 },                 /* json-glib took single quotes */
    { "{\"status\": \"ok\"/x\"/}", 0 },         /* and junk after a member (leaking it) */
    { "{\"status\": \"\\uZZZZ\"}", 0 },
    { "{\"status\": \"ok\\u0000\"}", 0 },
    { "{\"status\": \"\xc3\x28\"}", 0 },       /* invalid UTF-8 */
    { "{\"status\": \"\xed\xa0\x80\"}", 0 },   /* a surrogate */
    { "{\"status\": \"ok\"}\0{\"x\"}", 20 },    /* a NUL byte inside the line */
    { " \xef\xbb\xbf{\"status\": \"ok\"}", 0 }, /* a byte-order mark after a blank */
    { "\xef\xbb\xbf" "1[]", 0 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (lines); i++)
    {
      g_autoptr(GError) error = NULL;
      gsize len = lines[i].len ? lines[i].len : strlen (lines[i].text);
      g_autoptr(MaPluginReply) reply = ma_plugin_reply_parse (lines[i].text, len, &error);
      g_autofree char *shown = g_strescape (lines[i].text, NULL);

      g_test_message ("line %u: %s", i, shown);
      g_assert_null (reply);
      g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
    }
}

static void
test_byte_order_mark (void)
{
  g_autoptr(MaPluginReply) bom = parse_ok ("\xef\xbb\xbf {\"status\": \"ok\"}");

  g_assert_true (bom->ok);
}

static void
test_too_deep (void)
{
  g_autoptr(GString) line = g_string_new ("{\"status\": \"ok\", \"x\": ");
  g_autoptr(GError) error = NULL;
  g_autoptr(MaPluginReply) reply = NULL;

  for (guint i = 0; i < 1000; i++)
    g_string_append_c (line, '[');
  for (guint i = 0; i < 1000; i++)
    g_string_append_c (line, ']');
  g_string_append_c (line, '}');
  reply = ma_plugin_reply_parse (line->str, line->len, &error);
  g_assert_null (reply);
  g_assert_error (error, MA_ERROR, MA_ERROR_TOO_LARGE);
}

static void
test_oneshot_detail (void)
{
  static const char *const none[] = {
    "", "flushed 3 tables", "{}", "{\"detail\": null}", "{\"detail\": 3}", "{\"detail\": [\"x\"]}",
    "[\"detail\"]", "1[]", "{\"detail\": \"x\"", "{\"detail\": \"\xff\"}",
  };
  g_autoptr(GError) error = NULL;
  g_autofree char *detail = NULL;
  g_autofree char *with_status = NULL;

  detail = ma_plugin_reply_parse_detail ("{\"detail\": \"flushed 3 tables\"}", 30, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (detail, ==, "flushed 3 tables");
  /* a session-style reply on a oneshot's stdout: only its detail counts */
  with_status = ma_plugin_reply_parse_detail ("{\"status\": \"fail\", \"detail\": \"d\"}", 33, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (with_status, ==, "d");

  for (guint i = 0; i < G_N_ELEMENTS (none); i++)
    {
      g_autoptr(GError) line_error = NULL;
      g_autofree char *got = ma_plugin_reply_parse_detail (none[i], strlen (none[i]), &line_error);
      g_autofree char *shown = g_strescape (none[i], NULL);

      g_test_message ("line %u: %s", i, shown);
      g_assert_null (got);
      g_assert_error (line_error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/plugin-reply/status-ok", test_status_ok);
  g_test_add_func ("/plugin-reply/status-fail-with-detail", test_status_fail_with_detail);
  g_test_add_func ("/plugin-reply/status-other", test_status_other);
  g_test_add_func ("/plugin-reply/members-and-types", test_members_and_types);
  g_test_add_func ("/plugin-reply/whitespace-and-length", test_whitespace_and_length);
  g_test_add_func ("/plugin-reply/not-a-reply", test_not_a_reply);
  g_test_add_func ("/plugin-reply/byte-order-mark", test_byte_order_mark);
  g_test_add_func ("/plugin-reply/too-deep", test_too_deep);
  g_test_add_func ("/plugin-reply/oneshot-detail", test_oneshot_detail);
  return g_test_run ();
}
