/* test-timeline.c — host steps and guest events on one clock; JSON and SVG output. */
#include <glib/gstdio.h>

#include "json.h"
#include "timeline.h"

#define T0 (G_GINT64_CONSTANT (1764800000) * G_USEC_PER_SEC)

static JsonNode *
guest_event (const char *name, gint64 wall_us)
{
  g_autofree char *text = g_strdup_printf (
    "{\"event\": \"%s\", \"data\": {\"operation\": \"op-1\"}, \"seq\": 3, "
    "\"timestamp\": {\"seconds\": %" G_GINT64_FORMAT ", \"microseconds\": %" G_GINT64_FORMAT "}}",
    name, wall_us / G_USEC_PER_SEC, wall_us % G_USEC_PER_SEC);
  return ma_json_parse (text, strlen (text), NULL);
}

static void
test_merged_on_one_clock (void)
{
  g_autoptr(MaTimeline) tl = ma_timeline_new ();
  g_autoptr(JsonNode) quiesced = guest_event ("QUIESCED", T0 + 250000);
  g_autoptr(JsonNode) resumed = guest_event ("RESUMED", T0 + 3100000);
  g_autoptr(JsonNode) json = NULL;
  JsonArray *steps;
  double t;

  ma_timeline_add (tl, T0, "host", "start", "op-1");
  ma_timeline_add (tl, T0 + 3000000, "host", "migration completed", NULL);
  ma_timeline_add_event (tl, "guest", resumed, 0);
  ma_timeline_add_event (tl, "guest", quiesced, -1000000); /* guest 1 s behind */
  ma_timeline_phase (tl, "migration", T0 + 500000, T0 + 3000000);
  ma_timeline_sample (tl, T0 + 1000000, 100 << 20, 10 << 20, 1, 300);
  json = ma_timeline_to_json (tl);
  steps = json_object_get_array_member (json_node_get_object (json), "steps");
  g_assert_cmpuint (json_array_get_length (steps), ==, 4);
  /* sorted by time whatever the order they came in, relative to the first */
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (steps, 0), "what"),
                   ==, "start");
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (steps, 1), "what"),
                   ==, "QUIESCED");
  /* at the guest's 0.25 s, 1 s behind the host: 1.25 s on the host's clock */
  t = json_object_get_double_member (json_array_get_object_element (steps, 1), "t");
  g_assert_cmpfloat_with_epsilon (t, 1.25, 1e-6);
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (steps, 2), "who"),
                   ==, "host");
  g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (steps, 3), "what"),
                   ==, "RESUMED");
  t = json_object_get_double_member (json_array_get_object_element (steps, 3), "t");
  g_assert_cmpfloat_with_epsilon (t, 3.1, 1e-6);
  g_assert_nonnull (strstr (json_object_get_string_member (
                              json_array_get_object_element (steps, 1), "detail"), "op-1"));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (
                      json_node_get_object (json), "samples")), ==, 1);
}

static void
test_event_without_timestamp_is_ignored (void)
{
  g_autoptr(MaTimeline) tl = ma_timeline_new ();
  g_autoptr(JsonNode) bad = ma_json_parse ("{\"event\": \"X\"}", 15, NULL);
  g_autoptr(JsonNode) json = NULL;

  ma_timeline_add_event (tl, "guest", bad, 0);
  ma_timeline_add_event (tl, "guest", NULL, 0);
  json = ma_timeline_to_json (tl);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (
                      json_node_get_object (json), "steps")), ==, 0);
}

static void
test_svg (void)
{
  g_autoptr(MaTimeline) tl = ma_timeline_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("timeline-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "t.svg", NULL);
  g_autofree char *text = NULL;

  ma_timeline_add (tl, T0, "host", "start <&>", NULL);
  ma_timeline_phase (tl, "frozen", T0 + 1000000, T0 + 1500000);
  for (int i = 0; i < 5; i++)
    ma_timeline_sample (tl, T0 + i * 500000, (guint64) (5 - i) << 20, 1 << 20, 1 + i / 2, 100);
  g_assert_true (ma_timeline_write_svg (tl, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_assert_true (g_str_has_prefix (text, "<svg"));
  g_assert_nonnull (strstr (text, "<polyline"));
  g_assert_nonnull (strstr (text, ">frozen<"));
  g_assert_nonnull (strstr (text, "start &lt;&amp;&gt;")); /* escaped */
  g_assert_nonnull (strstr (text, "memory remaining (max 5.0 MiB)"));
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/timeline/merged-on-one-clock", test_merged_on_one_clock);
  g_test_add_func ("/timeline/event-without-timestamp-is-ignored",
                   test_event_without_timestamp_is_ignored);
  g_test_add_func ("/timeline/svg", test_svg);
  return g_test_run ();
}
