/* test-protocol.c — framing, request validation and reply encoding of the wire format. */
#include <glib.h>

#include "json.h"
#include "protocol.h"

typedef struct
{
  GPtrArray *frames; /* "R:text", "L" (too large), "D" (too deep) */
} Collector;

static void
collect (MaFrameKind kind, const char *text, gsize len, gpointer user_data)
{
  Collector *c = user_data;

  switch (kind)
    {
    case MA_FRAME_REQUEST:
      g_ptr_array_add (c->frames, g_strdup_printf ("R:%.*s", (int) len, text));
      break;
    case MA_FRAME_TOO_LARGE:
      g_ptr_array_add (c->frames, g_strdup ("L"));
      break;
    case MA_FRAME_TOO_DEEP:
      g_ptr_array_add (c->frames, g_strdup ("D"));
      break;
    default:
      g_assert_not_reached ();
    }
}

static GPtrArray *
frame_all (const char *data, gsize len, gsize max, gsize chunk)
{
  g_autoptr(MaFramer) framer = ma_framer_new (max);
  Collector c = { g_ptr_array_new_with_free_func (g_free) };

  for (gsize off = 0; off < len; off += chunk)
    ma_framer_feed (framer, data + off, MIN (chunk, len - off), collect, &c);
  return c.frames;
}

static void
assert_frames (GPtrArray *frames, const char *const *expected)
{
  guint n = g_strv_length ((char **) expected);

  for (guint i = 0; i < MIN (frames->len, n); i++)
    g_assert_cmpstr (frames->pdata[i], ==, expected[i]);
  g_assert_cmpuint (frames->len, ==, n);
}

static void
test_framer_lines (void)
{
  const char input[] = "{\"execute\":\"ping\"}\n  \n{\"a\":\"}\\\"{\"}{\"b\":[1,{}]}\r\nfoo\n";
  const char *const expected[] = {
    "R:{\"execute\":\"ping\"}", "R:{\"a\":\"}\\\"{\"}", "R:{\"b\":[1,{}]}", "R:foo", NULL,
  };

  /* the same frames whatever the read sizes */
  for (gsize chunk = 1; chunk <= sizeof input; chunk++)
    {
      g_autoptr(GPtrArray) frames = frame_all (input, sizeof input - 1, 1024, chunk);
      assert_frames (frames, expected);
    }
}

static void
test_framer_reset_byte (void)
{
  const char input[] = "{\"execute\":\"pi\xff{\"execute\":\"ping\"}\n";
  const char *const expected[] = { "R:{\"execute\":\"ping\"}", NULL };
  g_autoptr(GPtrArray) frames = frame_all (input, sizeof input - 1, 1024, 3);

  assert_frames (frames, expected);
}

static void
test_framer_unterminated_line (void)
{
  /* a line that ends inside an object is emitted (and fails to parse); the next line is clean */
  const char input[] = "{\"execute\":\n{\"execute\":\"ping\"}\n";
  const char *const expected[] = { "R:{\"execute\":", "R:{\"execute\":\"ping\"}", NULL };
  g_autoptr(GPtrArray) frames = frame_all (input, sizeof input - 1, 1024, 5);

  assert_frames (frames, expected);
}

static void
test_framer_too_large (void)
{
  g_autoptr(GString) input = g_string_new ("{\"execute\":\"");
  const char *const expected[] = { "L", "R:{\"execute\":\"ping\"}", NULL };
  g_autoptr(GPtrArray) frames = NULL;

  for (guint i = 0; i < 5000; i++)
    g_string_append_c (input, 'x');
  g_string_append (input, "\"}\n{\"execute\":\"ping\"}\n");
  frames = frame_all (input->str, input->len, 1000, 4096);
  assert_frames (frames, expected);
}

static void
test_framer_too_deep (void)
{
  g_autoptr(GString) input = g_string_new (NULL);
  const char *const expected[] = { "D", "R:{\"execute\":\"ping\"}", NULL };
  g_autoptr(GPtrArray) frames = NULL;

  for (guint i = 0; i < 100000; i++)
    g_string_append_c (input, '[');
  g_string_append (input, "\n{\"execute\":\"ping\"}\n");
  frames = frame_all (input->str, input->len, 1024 * 1024, 65536);
  assert_frames (frames, expected);
}

static void
assert_parse_error (const char *text, const char *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) id = NULL;
  g_autoptr(MaRequest) request = ma_request_parse (text, strlen (text), &id, &error);

  g_assert_null (request);
  g_assert_nonnull (error);
  g_assert_true (g_str_has_prefix (error->message, message));
}

static void
test_request_errors (void)
{
  assert_parse_error ("[1,2]", "QMP input must be a JSON object");
  assert_parse_error ("42", "QMP input must be a JSON object");
  assert_parse_error ("{\"arguments\":{}}", "QMP input lacks member 'execute'");
  assert_parse_error ("{\"execute\":1}", "QMP input member 'execute' must be a string");
  assert_parse_error ("{\"execute\":\"ping\",\"foo\":1}", "QMP input member 'foo' is unexpected");
  assert_parse_error ("{\"execute\":\"ping\",\"arguments\":[]}",
                      "QMP input member 'arguments' must be an object");
  assert_parse_error ("{\"execute\":", "JSON parse error");
  assert_parse_error ("{\"execute\":\"\xc3\x28\"}", "JSON parse error, input is not valid UTF-8");
  assert_parse_error ("{\"execute\":\"ping\xfe\"}", "JSON parse error, input is not valid UTF-8");
  /* UTF-16 surrogates: a lone half is said as such, a pair is a character */
  assert_parse_error ("{\"execute\":\"ping\",\"arguments\":{\"x\":\"\\ud800\"}}",
                      "JSON parse error, an invalid \\u escape: a high surrogate");
  assert_parse_error ("{\"execute\":\"ping\",\"arguments\":{\"x\":\"\\ud800\\u0041\"}}",
                      "JSON parse error, an invalid \\u escape: a high surrogate");
  assert_parse_error ("{\"execute\":\"ping\",\"arguments\":{\"x\":\"\\udfff\"}}",
                      "JSON parse error, an invalid \\u escape: a lone low surrogate");
}

/* An id is echoed exactly as the client wrote it, also an integer beyond 64 bits (which
 * json-glib keeps as -1), so that replies are never matched to the wrong request. */
static void
test_request_echoes_id_exactly (void)
{
  static const char *const ids[] = { "99999999999999999999999", "-99999999999999999999999",
                                     "9223372036854775807", "-9223372036854775808", "12",
                                     "\"\\ud83d\\ude00\"" };

  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      g_autofree char *text = g_strdup_printf ("{\"execute\":\"ping\",\"id\":%s}", ids[i]);
      g_autofree char *want = g_strdup_printf ("{\"return\":{},\"id\":%s}\n",
                                               i == 5 ? "\"\xf0\x9f\x98\x80\"" : ids[i]);
      g_autoptr(GError) error = NULL;
      g_autoptr(MaRequest) request = ma_request_parse (text, strlen (text), NULL, &error);
      g_autofree char *line = NULL;

      g_assert_no_error (error);
      line = ma_reply_return (request->id, NULL);
      g_assert_cmpstr (line, ==, want);
    }
}

static void
test_request_keeps_id_on_error (void)
{
  const char text[] = "{\"execute\":\"ping\",\"id\":{\"n\":7},\"bogus\":true}";
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) id = NULL;
  g_autoptr(MaRequest) request = ma_request_parse (text, strlen (text), &id, &error);
  g_autofree char *line = NULL;

  g_assert_null (request);
  g_assert_nonnull (id);
  line = ma_reply_error (id, error);
  g_assert_cmpstr (line, ==,
                   "{\"error\":{\"class\":\"GenericError\",\"desc\":\"QMP input member 'bogus' is "
                   "unexpected\"},\"id\":{\"n\":7}}\n");
}

static void
test_request_ok (void)
{
  const char text[] = "{\"execute\":\"events\",\"arguments\":{\"after\":3},\"id\":\"abc\"}";
  g_autoptr(GError) error = NULL;
  g_autoptr(MaRequest) request = ma_request_parse (text, strlen (text), NULL, &error);
  g_autofree char *line = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (request->execute, ==, "events");
  g_assert_cmpint (json_object_get_int_member (request->arguments, "after"), ==, 3);
  line = ma_reply_return (request->id, NULL);
  g_assert_cmpstr (line, ==, "{\"return\":{},\"id\":\"abc\"}\n");
}

static void
test_event_encoding (void)
{
  g_autoptr(JsonNode) event = ma_event_new ("RESUMED", NULL, 9, 1700000000123456);
  g_autofree char *line = ma_event_to_line (event);

  g_assert_cmpstr (line, ==,
                   "{\"event\":\"RESUMED\",\"data\":{},\"seq\":9,\"timestamp\":{\"seconds\":"
                   "1700000000,\"microseconds\":123456}}\n");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/protocol/framer/lines", test_framer_lines);
  g_test_add_func ("/protocol/framer/reset-byte", test_framer_reset_byte);
  g_test_add_func ("/protocol/framer/unterminated-line", test_framer_unterminated_line);
  g_test_add_func ("/protocol/framer/too-large", test_framer_too_large);
  g_test_add_func ("/protocol/framer/too-deep", test_framer_too_deep);
  g_test_add_func ("/protocol/request/errors", test_request_errors);
  g_test_add_func ("/protocol/request/keeps-id-on-error", test_request_keeps_id_on_error);
  g_test_add_func ("/protocol/request/ok", test_request_ok);
  g_test_add_func ("/protocol/request/echoes-id-exactly", test_request_echoes_id_exactly);
  g_test_add_func ("/protocol/event/encoding", test_event_encoding);
  return g_test_run ();
}
