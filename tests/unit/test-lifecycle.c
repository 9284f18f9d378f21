/* test-lifecycle.c — the state machine's transitions and the bounded event journal. */
#include <glib.h>

#include "error.h"
#include "events.h"
#include "json.h"
#include "lifecycle.h"

static void
count_event (JsonNode *event, gpointer user_data)
{
  (*(guint *) user_data)++;
}

static void
test_transitions (void)
{
  g_autoptr(MaEvents) events = ma_events_new (16);
  g_autoptr(MaLifecycle) lc = ma_lifecycle_new (events);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) since = NULL;
  JsonObject *first;
  guint seen = 0;

  ma_events_set_listener (events, count_event, &seen);
  g_assert_cmpint (ma_lifecycle_get_state (lc), ==, MA_STATE_IDLE);
  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_PREPARED, "op-1", "prepare", &error));
  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_QUIESCED, NULL, "quiesce", &error));
  g_assert_cmpstr (ma_lifecycle_get_operation (lc), ==, "op-1");
  /* quiesced can only be left by thaw, expiry, failure or a resume */
  g_assert_false (ma_lifecycle_enter (lc, MA_STATE_VALIDATED, NULL, "bogus", &error));
  g_assert_error (error, MA_ERROR, MA_ERROR_BUSY);
  g_assert_true (strstr (error->message, "'quiesced' to 'validated'") != NULL);
  g_clear_error (&error);
  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_THAWED, NULL, "thaw", &error));
  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_RESUMED, NULL, "notify-peers", &error));
  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_VALIDATED, NULL, "all pass", &error));
  g_assert_no_error (error);
  g_assert_cmpuint (seen, ==, 5);

  since = ma_events_since (events, 0, 100);
  first = json_array_get_object_element (
    json_object_get_array_member (json_node_get_object (since), "events"), 0);
  g_assert_cmpstr (json_object_get_string_member (first, "event"), ==, "STATE_CHANGED");
  g_assert_cmpstr (json_object_get_string_member (json_object_get_object_member (first, "data"),
                                                  "to"), ==, "prepared");
}

static void
test_allows_table (void)
{
  for (guint from = MA_STATE_IDLE; from <= MA_STATE_EXPIRED; from++)
    {
      /* a new operation can always start, except while applications are quiesced */
      gboolean expect = from != MA_STATE_QUIESCED;
      g_assert_cmpint (ma_lifecycle_allows (from, MA_STATE_PREPARED), ==, expect);
      /* a resume can be noticed in any state: guests move without being prepared */
      g_assert_true (ma_lifecycle_allows (from, MA_STATE_RESUMED));
    }
  g_assert_false (ma_lifecycle_allows (MA_STATE_IDLE, MA_STATE_THAWED));
  g_assert_true (ma_lifecycle_allows (MA_STATE_QUIESCED, MA_STATE_EXPIRED));
  g_assert_cmpstr (ma_state_to_string (MA_STATE_EXPIRED), ==, "expired");
  g_assert_cmpstr (ma_state_to_string ((MaState) 99), ==, "unknown");
}

static void
test_events_bounded (void)
{
  g_autoptr(MaEvents) events = ma_events_new (10);
  g_autoptr(JsonNode) all = NULL, page = NULL, none = NULL;
  JsonObject *obj;

  for (guint i = 0; i < 25; i++)
    ma_events_emit (events, "TICK", NULL);
  g_assert_cmpuint (ma_events_last_seq (events), ==, 25);

  all = ma_events_since (events, 0, 100);
  obj = json_node_get_object (all);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (obj, "events")), ==, 10);
  g_assert_cmpint (json_object_get_int_member (obj, "first-seq"), ==, 16);
  g_assert_cmpint (json_object_get_int_member (obj, "missed"), ==, 15);

  page = ma_events_since (events, 20, 3);
  obj = json_node_get_object (page);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (obj, "events")), ==, 3);
  g_assert_true (json_object_get_boolean_member (obj, "more"));
  g_assert_cmpint (json_object_get_int_member (obj, "missed"), ==, 0);

  none = ma_events_since (events, 25, 3);
  obj = json_node_get_object (none);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (obj, "events")), ==, 0);
  g_assert_false (json_object_get_boolean_member (obj, "more"));
}

/* Events of every size through a small ring, many times over: the buffer wraps, compacts and
 * grows, and what comes back is always the last `capacity` events, whole and in order. */
static void
test_events_ring_compaction (void)
{
  g_autoptr(MaEvents) events = ma_events_new (7);

  for (guint i = 1; i <= 3000; i++)
    {
      JsonObject *data = json_object_new ();
      g_autofree char *pad = g_strnfill ((i * 37) % 700, 'a' + (char) (i % 26));

      json_object_set_int_member (data, "n", i);
      json_object_set_string_member (data, "pad", pad);
      ma_events_emit (events, "SIZED", ma_json_new_object_node (data));
      if (i % 97 == 0 || i == 3000)
        {
          g_autoptr(JsonNode) all = ma_events_since (events, 0, 100);
          JsonObject *obj = json_node_get_object (all);
          JsonArray *list = json_object_get_array_member (obj, "events");
          guint n = MIN (i, 7);

          g_assert_cmpuint (json_array_get_length (list), ==, n);
          g_assert_cmpint (json_object_get_int_member (obj, "first-seq"), ==, i - n + 1);
          g_assert_cmpint (json_object_get_int_member (obj, "missed"), ==, i - n);
          for (guint k = 0; k < n; k++)
            {
              JsonObject *ev = json_array_get_object_element (list, k);
              JsonObject *d = json_object_get_object_member (ev, "data");
              guint want = i - n + 1 + k;
              g_assert_cmpint (json_object_get_int_member (ev, "seq"), ==, want);
              g_assert_cmpint (json_object_get_int_member (d, "n"), ==, want);
              g_assert_cmpuint (strlen (json_object_get_string_member (d, "pad")), ==,
                                (want * 37) % 700);
            }
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/lifecycle/transitions", test_transitions);
  g_test_add_func ("/lifecycle/allows-table", test_allows_table);
  g_test_add_func ("/events/bounded", test_events_bounded);
  g_test_add_func ("/events/ring-compaction", test_events_ring_compaction);
  return g_test_run ();
}
