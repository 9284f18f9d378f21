/* test-quiesce-parts.c — the parts of the quiesce engine on their own: a batch running real
 * plugin scripts in order (and in reverse, and stopping at a failure), the journal file a
 * restarted agent replays, and the thaw-retry delays of [quiesce] thaw-retry-seconds. */
#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "error.h"
#include "json.h"
#include "quiesce-private.h"

#define WAIT_SECONDS 10

typedef struct
{
  char *dir;     /* plugins, their log, the journal */
  char *log;
  GMainLoop *loop;
  GPtrArray *heard;     /* "PLUGIN PHASE ok|failed" from the observer */
  GPtrArray *not_run;   /* "NAME: DETAIL" */
  gboolean done;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;

  f->dir = g_dir_make_tmp ("ma-quiesce-parts-XXXXXX", &error);
  g_assert_no_error (error);
  f->log = g_build_filename (f->dir, "log", NULL);
  f->loop = g_main_loop_new (NULL, FALSE);
  f->heard = g_ptr_array_new_with_free_func (g_free);
  f->not_run = g_ptr_array_new_with_free_func (g_free);
}

static void
remove_tree (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      struct stat st;
      g_assert_cmpint (g_lstat (path, &st), ==, 0);
      if (S_ISDIR (st.st_mode))
        remove_tree (path);
      else
        g_assert_cmpint (g_unlink (path), ==, 0);
    }
  g_assert_cmpint (g_rmdir (dir), ==, 0);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  remove_tree (f->dir);
  g_free (f->dir);
  g_free (f->log);
  g_main_loop_unref (f->loop);
  g_ptr_array_unref (f->heard);
  g_ptr_array_unref (f->not_run);
}

/* NAME.plugin and NAME.sh, logging "NAME PHASE" and exiting with status. */
static void
write_plugin (Fixture *f, const char *name, const char *manifest_extra, int status)
{
  g_autofree char *script_path = g_strdup_printf ("%s/%s.sh", f->dir, name);
  g_autofree char *manifest_path = g_strdup_printf ("%s/%s.plugin", f->dir, name);
  g_autofree char *script = g_strdup_printf ("#!/bin/sh\necho \"$MA_PLUGIN $1\" >> '%s'\n"
                                             "exit %d\n", f->log, status);
  g_autofree char *manifest = g_strdup_printf ("[Plugin]\nName=%s\nExec=%s.sh\n%s\n", name, name,
                                               manifest_extra);

  g_assert_true (g_file_set_contents (script_path, script, -1, NULL));
  g_assert_cmpint (chmod (script_path, 0755), ==, 0);
  g_assert_true (g_file_set_contents (manifest_path, manifest, -1, NULL));
  g_assert_cmpint (chmod (manifest_path, 0644), ==, 0);
}

static MaPluginSet *
load_plugins (Fixture *f)
{
  const char *const dirs[] = { f->dir, NULL };

  return ma_plugin_set_load (dirs);
}

static char *
read_log (Fixture *f)
{
  char *text = NULL;

  if (!g_file_get_contents (f->log, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

static char *
array_text (JsonArray *array /* taken */)
{
  g_autoptr(JsonNode) node = ma_json_new_array_node (array);

  return ma_json_to_string (node);
}

static void
on_item_done (MaBatch *batch, MaPhaseResult *result, gpointer user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->heard, g_strdup_printf ("%s %s %s", result->plugin->name,
                                              ma_plugin_phase_to_string (result->phase),
                                              result->ok ? "ok" : "failed"));
}

static void
on_thaw_not_run (MaBatch *batch, const char *name, const char *detail, gpointer user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->not_run, g_strdup_printf ("%s: %s", name, detail));
}

static const MaBatchObserver observer = {
  .item_done = on_item_done,
  .thaw_not_run = on_thaw_not_run,
};

static void
on_batch_done (MaBatch *batch, gpointer user_data)
{
  Fixture *f = user_data;

  f->done = TRUE;
  g_main_loop_quit (f->loop);
}

static gboolean
on_timeout (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

/* Every usable plugin of set, in quiesce order, in one batch of that phase; run to the end. */
static MaBatch *
run_batch (Fixture *f, MaPluginSet *set, MaPluginPhase phase, gboolean reverse,
           gboolean stop_on_failure)
{
  GPtrArray *ordered = ma_plugin_set_get_ordered (set);
  MaBatch *batch = ma_batch_new (set, phase, "op-1", 30, f->dir, &observer, f);
  guint timeout;

  batch->reverse = reverse;
  batch->stop_on_failure = stop_on_failure;
  for (guint i = 0; i < ordered->len; i++)
    ma_batch_add (batch, ordered->pdata[reverse ? ordered->len - 1 - i : i], NULL);
  f->done = FALSE;
  ma_batch_start (batch, on_batch_done, f);
  timeout = g_timeout_add_seconds (WAIT_SECONDS, on_timeout, f->loop);
  if (!f->done)
    g_main_loop_run (f->loop);
  g_source_remove (timeout);
  g_assert_true (f->done);
  return batch;
}

static void
test_batch_order (Fixture *f, gconstpointer data)
{
  g_autoptr(MaPluginSet) set = NULL;
  g_autofree char *log = NULL;
  g_autofree char *results = NULL;
  MaBatch *batch;

  write_plugin (f, "db", "Order=10", 0);
  write_plugin (f, "app", "Order=20", 0);
  set = load_plugins (f);

  batch = run_batch (f, set, MA_PLUGIN_PHASE_QUIESCE, FALSE, TRUE);
  g_assert_null (ma_batch_first_failure (batch));
  results = array_text (ma_batch_results (batch));
  g_assert_nonnull (strstr (results, "\"plugin\":\"db\""));
  g_assert_nonnull (strstr (results, "\"plugin\":\"app\""));
  ma_batch_free (batch);

  batch = run_batch (f, set, MA_PLUGIN_PHASE_THAW, TRUE, FALSE);
  ma_batch_free (batch);

  log = read_log (f);
  g_assert_cmpstr (log, ==, "db quiesce\napp quiesce\napp thaw\ndb thaw\n");
  g_assert_cmpuint (f->heard->len, ==, 4);
  g_assert_cmpstr (f->heard->pdata[0], ==, "db quiesce ok");
  g_assert_cmpstr (f->heard->pdata[3], ==, "db thaw ok");
}

static void
test_batch_stops_at_failure (Fixture *f, gconstpointer data)
{
  g_autoptr(MaPluginSet) set = NULL;
  g_autofree char *log = NULL;
  MaBatchItem *failed;
  MaBatch *batch;

  write_plugin (f, "db", "Order=10", 0);
  write_plugin (f, "broken", "Order=20", 3);
  write_plugin (f, "app", "Order=30", 0);
  set = load_plugins (f);

  batch = run_batch (f, set, MA_PLUGIN_PHASE_QUIESCE, FALSE, TRUE);
  failed = ma_batch_first_failure (batch);
  g_assert_nonnull (failed);
  g_assert_cmpstr (failed->plugin->name, ==, "broken");
  g_assert_cmpint (failed->state, ==, ITEM_FAILED);
  /* app, ordered after the failure, never started */
  g_assert_cmpint (((MaBatchItem *) batch->items->pdata[2])->state, ==, ITEM_PENDING);
  ma_batch_free (batch);

  log = read_log (f);
  g_assert_cmpstr (log, ==, "db quiesce\nbroken quiesce\n");
  g_assert_cmpuint (f->heard->len, ==, 2);
  g_assert_cmpstr (f->heard->pdata[1], ==, "broken quiesce failed");
}

static void
test_batch_named_thaw (Fixture *f, gconstpointer data)
{
  g_autoptr(MaPluginSet) set = NULL;
  g_autofree char *log = NULL;
  MaBatch *batch;

  write_plugin (f, "db", "Order=10", 0);
  write_plugin (f, "sess", "Protocol=session", 0);
  set = load_plugins (f);

  batch = ma_batch_new (set, MA_PLUGIN_PHASE_THAW, "op-2", 0, f->dir, &observer, f);
  ma_batch_add_named_thaw (batch, set, "db");
  ma_batch_add_named_thaw (batch, set, "gone");
  ma_batch_add_named_thaw (batch, set, "sess");
  g_assert_cmpuint (batch->items->len, ==, 1);
  g_assert_cmpuint (batch->dropped->len, ==, 1);
  g_assert_cmpstr (batch->dropped->pdata[0], ==, "gone");
  g_assert_cmpuint (batch->held_back->len, ==, 1);
  g_assert_cmpstr (batch->held_back->pdata[0], ==, "sess");
  g_assert_nonnull (strstr (batch->held_back_failures->str, "sess: cannot run now: "));
  g_assert_cmpuint (f->not_run->len, ==, 2);
  g_assert_true (g_str_has_prefix (f->not_run->pdata[0], "gone: dropped: plugin removed"));
  ma_batch_start (batch, on_batch_done, f);
  if (!f->done)
    g_main_loop_run (f->loop);
  ma_batch_free (batch);
  log = read_log (f);
  g_assert_cmpstr (log, ==, "db thaw\n");
}

static void
test_batch_empty (Fixture *f, gconstpointer data)
{
  MaBatch *batch = ma_batch_new (NULL, MA_PLUGIN_PHASE_CHECK, "op-3", 0, f->dir, NULL, NULL);
  g_autofree char *results = NULL;

  /* nothing to run: done at once, from ma_batch_start */
  ma_batch_start (batch, on_batch_done, f);
  g_assert_true (f->done);
  results = array_text (ma_batch_results (batch));
  g_assert_cmpstr (results, ==, "[]");
  ma_batch_free (batch);
}

/* the wave callback: which items start together, and that none of them has run yet */
static void
on_wave (MaBatch *batch, GPtrArray *items, gpointer user_data)
{
  Fixture *f = user_data;
  g_autoptr(GString) names = g_string_new ("wave:");
  g_autofree char *log = read_log (f);

  for (guint i = 0; i < items->len; i++)
    {
      MaBatchItem *item = items->pdata[i];
      g_autofree char *line = g_strdup_printf ("%s quiesce\n", item->plugin->name);
      g_assert_cmpint (item->state, ==, ITEM_RUNNING);
      g_assert_null (strstr (log, line));
      g_string_append_printf (names, " %s", item->plugin->name);
    }
  g_ptr_array_add (f->heard, g_strdup (names->str));
}

/* Plugins that become ready together start as one wave, announced once, before any of them
 * runs (the quiesce journal is written there, once a wave). */
static void
test_batch_waves (Fixture *f, gconstpointer data)
{
  g_autoptr(MaPluginSet) set = NULL;
  GPtrArray *ordered;
  MaBatch *batch;
  guint timeout;
  g_autoptr(GString) waves = g_string_new (NULL);

  write_plugin (f, "db", "Order=10", 0);
  write_plugin (f, "cache1", "Order=20", 0);
  write_plugin (f, "cache2", "Order=20", 0);
  write_plugin (f, "app", "Order=30", 0);
  set = load_plugins (f);
  ordered = ma_plugin_set_get_ordered (set);
  batch = ma_batch_new (set, MA_PLUGIN_PHASE_QUIESCE, "op-1", 30, f->dir, &observer, f);
  batch->starting = on_wave;
  for (guint i = 0; i < ordered->len; i++)
    ma_batch_add (batch, ordered->pdata[i], NULL);
  f->done = FALSE;
  ma_batch_start (batch, on_batch_done, f);
  timeout = g_timeout_add_seconds (WAIT_SECONDS, on_timeout, f->loop);
  if (!f->done)
    g_main_loop_run (f->loop);
  g_source_remove (timeout);
  g_assert_true (f->done);
  g_assert_null (ma_batch_first_failure (batch));
  ma_batch_free (batch);

  for (guint i = 0; i < f->heard->len; i++)
    if (g_str_has_prefix (f->heard->pdata[i], "wave:"))
      g_string_append_printf (waves, "%s;", (char *) f->heard->pdata[i]);
  g_assert_cmpstr (waves->str, ==, "wave: db;wave: cache1 cache2;wave: app;");
}

static void
test_journal_roundtrip (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, MA_QUIESCE_JOURNAL, NULL);
  g_autoptr(GPtrArray) names = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *operation = NULL;
  g_autofree char *text = NULL;
  g_auto(GStrv) loaded = NULL;
  struct stat st;

  g_ptr_array_add (names, (gpointer) "db");
  g_ptr_array_add (names, (gpointer) "app");
  g_assert_true (ma_quiesce_journal_save (path, "op-9", names, TRUE, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  {
    /* written beside it and renamed: nothing left over */
    g_autofree char *tmp = g_strconcat (path, ".new", NULL);
    g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));
  }
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_assert_nonnull (strstr (text, "\"thaw-failed\":true"));

  g_assert_true (ma_quiesce_journal_load (path, &operation, &loaded, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (operation, ==, "op-9");
  g_assert_cmpuint (g_strv_length (loaded), ==, 2);
  g_assert_cmpstr (loaded[0], ==, "db");
  g_assert_cmpstr (loaded[1], ==, "app");
}

static void
test_journal_unreadable (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->dir, MA_QUIESCE_JOURNAL, NULL);
  g_autofree char *operation = NULL;
  g_auto(GStrv) names = NULL;
  GError *error = NULL;

  /* none: a file error, which the replay takes as "nothing to do" */
  g_assert_false (ma_quiesce_journal_load (path, &operation, &names, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
  g_clear_error (&error);

  g_assert_true (g_file_set_contents (path, "[1, 2]", -1, NULL));
  g_assert_false (ma_quiesce_journal_load (path, &operation, &names, &error));
  g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
  g_assert_cmpstr (error->message, ==, "not an object");
  g_clear_error (&error);

  g_assert_true (g_file_set_contents (path, "{\"operation\": ", -1, NULL));
  g_assert_false (ma_quiesce_journal_load (path, &operation, &names, &error));
  g_assert_nonnull (error);
  g_assert_false (error->domain == G_FILE_ERROR);
  g_clear_error (&error);

  g_assert_true (g_file_set_contents (path, "{\"plugins\": 7}", -1, NULL));
  g_assert_false (ma_quiesce_journal_load (path, &operation, &names, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);

  /* a journal without its operation still names its plugins */
  g_assert_true (g_file_set_contents (path, "{\"plugins\": [\"db\"]}", -1, NULL));
  g_assert_true (ma_quiesce_journal_load (path, &operation, &names, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (operation, ==, "unknown");
  g_assert_cmpstr (names[0], ==, "db");
}

static void
test_retry_delays (void)
{
  double delays[MA_QUIESCE_THAW_RETRY_MAX_DELAYS];
  g_auto(GStrv) two = g_strsplit (" 1 ;2.5", ";", -1);
  g_auto(GStrv) nine = g_strsplit ("1;1;1;1;1;1;1;1;1", ";", -1);
  g_auto(GStrv) word = g_strsplit ("1;soon", ";", -1);
  g_auto(GStrv) tiny = g_strsplit ("0.001", ";", -1);
  g_auto(GStrv) huge = g_strsplit ("3601", ";", -1);
  GError *error = NULL;

  g_assert_cmpuint (ma_quiesce_retry_delays_parse (NULL, delays, &error), ==, 0);
  g_assert_no_error (error);

  g_assert_cmpuint (ma_quiesce_retry_delays_parse (two, delays, &error), ==, 2);
  g_assert_no_error (error);
  g_assert_cmpfloat (delays[0], ==, 1.0);
  g_assert_cmpfloat (delays[1], ==, 2.5);
  /* the last delay repeats */
  g_assert_cmpfloat (ma_quiesce_retry_delay (delays, 2, 0), ==, 1.0);
  g_assert_cmpfloat (ma_quiesce_retry_delay (delays, 2, 1), ==, 2.5);
  g_assert_cmpfloat (ma_quiesce_retry_delay (delays, 2, 7), ==, 2.5);

  g_assert_cmpuint (ma_quiesce_retry_delays_parse (nine, delays, &error), ==, 0);
  g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "lists 9 delays, at most 8"));
  g_clear_error (&error);

  g_assert_cmpuint (ma_quiesce_retry_delays_parse (word, delays, &error), ==, 0);
  g_assert_nonnull (strstr (error->message, "'soon' is not a number of seconds"));
  g_clear_error (&error);

  g_assert_cmpuint (ma_quiesce_retry_delays_parse (tiny, delays, &error), ==, 0);
  g_assert_nonnull (error);
  g_clear_error (&error);

  g_assert_cmpuint (ma_quiesce_retry_delays_parse (huge, delays, &error), ==, 0);
  g_assert_nonnull (error);
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* the parts warn about failing and missing plugins, which these tests cause on purpose;
   * criticals stay fatal */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  g_test_add ("/quiesce/batch/order", Fixture, NULL, fixture_setup, test_batch_order,
              fixture_teardown);
  g_test_add ("/quiesce/batch/stops-at-failure", Fixture, NULL, fixture_setup,
              test_batch_stops_at_failure, fixture_teardown);
  g_test_add ("/quiesce/batch/named-thaw", Fixture, NULL, fixture_setup, test_batch_named_thaw,
              fixture_teardown);
  g_test_add ("/quiesce/batch/waves", Fixture, NULL, fixture_setup, test_batch_waves,
              fixture_teardown);
  g_test_add ("/quiesce/batch/empty", Fixture, NULL, fixture_setup, test_batch_empty,
              fixture_teardown);
  g_test_add ("/quiesce/journal/roundtrip", Fixture, NULL, fixture_setup, test_journal_roundtrip,
              fixture_teardown);
  g_test_add ("/quiesce/journal/unreadable", Fixture, NULL, fixture_setup,
              test_journal_unreadable, fixture_teardown);
  g_test_add_func ("/quiesce/lease/retry-delays", test_retry_delays);
  return g_test_run ();
}
