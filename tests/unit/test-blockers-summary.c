/* test-blockers-summary.c — the bounded parts of the blockers report without /proc: writers
 * aggregated by mount and by process, detail names, page cursors and where a page starts. */
#include <sys/sysmacros.h>

#include "blockers-summary.h"
#include "error.h"

static MaOpenFile *
writer (gint pid, gint fd, guint32 devno, guint64 size, gboolean deleted)
{
  MaOpenFile *f = g_new0 (MaOpenFile, 1);

  f->pid = pid;
  f->fd = fd;
  f->devno = devno;
  f->size = size;
  f->deleted = deleted;
  f->writable = TRUE;
  return f;
}

/* As the pass leaves them: by pid, then fd. */
static GPtrArray *
population (void)
{
  GPtrArray *w = g_ptr_array_new_with_free_func ((GDestroyNotify)ma_open_file_free);
  guint32 root = makedev (8, 1), data = makedev (8, 17);

  /* pid 10: 2 fds on / */
  g_ptr_array_add (w, writer (10, 3, root, 100, FALSE));
  g_ptr_array_add (w, writer (10, 4, root, 50, TRUE));
  /* pid 20: 5 fds on /data, 1 on / */
  for (gint fd = 3; fd < 8; fd++)
    g_ptr_array_add (w, writer (20, fd, data, 1000, FALSE));
  g_ptr_array_add (w, writer (20, 9, root, 1, FALSE));
  /* pid 30: 2 fds on /data, larger than pid 10's */
  g_ptr_array_add (w, writer (30, 5, data, 7000, FALSE));
  g_ptr_array_add (w, writer (30, 6, data, 7000, FALSE));
  return w;
}

static void
test_aggregate (void)
{
  g_autoptr (GPtrArray) w = population ();
  g_autoptr (MaWriterSummary) sum = ma_writer_summary_new (w);
  MaWriterGroup *g;

  g_assert_cmpuint (sum->fds, ==, 10);
  g_assert_cmpuint (sum->processes, ==, 3);
  g_assert_cmpuint (sum->mounts, ==, 2);
  g_assert_cmpuint (sum->deleted, ==, 1);
  g_assert_cmpuint (sum->bytes, ==, 100 + 50 + 5 * 1000 + 1 + 2 * 7000);

  /* by mount: /data (7 fds, 2 processes) before / (3 fds, 2 processes) */
  g_assert_cmpuint (sum->by_mount->len, ==, 2);
  g_assert_cmpint (((MaWriterGroup *)sum->by_mount->pdata[0])->key, ==, makedev (8, 17));
  g = sum->by_mount->pdata[0];
  g_assert_cmpuint (g->fds, ==, 7);
  g_assert_cmpuint (g->processes, ==, 2);
  g_assert_cmpuint (g->mounts, ==, 1);
  g_assert_cmpuint (g->bytes, ==, 5 * 1000 + 2 * 7000);
  g_assert_cmpuint (g->examples->len, ==, MA_BLOCKERS_EXAMPLES);
  /* examples are the first in page order */
  g_assert_cmpint (((MaOpenFile *)g->examples->pdata[0])->pid, ==, 20);
  g_assert_cmpint (((MaOpenFile *)g->examples->pdata[0])->fd, ==, 3);
  g = sum->by_mount->pdata[1];
  g_assert_cmpuint (g->fds, ==, 3);
  g_assert_cmpuint (g->processes, ==, 2);
  g_assert_cmpuint (g->deleted, ==, 1);

  /* by process: 20 (6 fds, 2 mounts), then 30 and 10 with 2 fds each: more bytes first */
  g_assert_cmpuint (sum->by_process->len, ==, 3);
  g = sum->by_process->pdata[0];
  g_assert_cmpint (g->key, ==, 20);
  g_assert_cmpuint (g->fds, ==, 6);
  g_assert_cmpuint (g->mounts, ==, 2);
  g_assert_cmpuint (g->processes, ==, 1);
  g = sum->by_process->pdata[1];
  g_assert_cmpint (g->key, ==, 30);
  g_assert_cmpuint (g->bytes, ==, 14000);
  g = sum->by_process->pdata[2];
  g_assert_cmpint (g->key, ==, 10);
  g_assert_cmpuint (g->examples->len, ==, 2);
}

static void
test_aggregate_empty (void)
{
  g_autoptr (GPtrArray) w = g_ptr_array_new ();
  g_autoptr (MaWriterSummary) sum = ma_writer_summary_new (w);

  g_assert_cmpuint (sum->fds, ==, 0);
  g_assert_cmpuint (sum->by_mount->len, ==, 0);
  g_assert_cmpuint (sum->by_process->len, ==, 0);
  g_assert_cmpuint (sum->bytes, ==, 0);
}

/* Equal groups keep a deterministic order: by key. */
static void
test_aggregate_ties (void)
{
  g_autoptr (GPtrArray) w = g_ptr_array_new_with_free_func ((GDestroyNotify)ma_open_file_free);
  g_autoptr (MaWriterSummary) sum = NULL;

  for (gint pid = 50; pid > 40; pid--)
    g_ptr_array_add (w, writer (pid, 3, makedev (8, 1), 10, FALSE));
  sum = ma_writer_summary_new (w);
  for (guint i = 0; i < sum->by_process->len; i++)
    g_assert_cmpint (((MaWriterGroup *)sum->by_process->pdata[i])->key, ==, 41 + (gint)i);
}

static void
test_detail_names (void)
{
  MaBlockersDetail d = MA_BLOCKERS_DETAIL_SUMMARY;

  for (guint i = MA_BLOCKERS_DETAIL_SUMMARY; i <= MA_BLOCKERS_DETAIL_STUCK; i++)
    {
      g_assert_true (ma_blockers_detail_from_string (ma_blockers_detail_to_string (i), &d));
      g_assert_cmpuint (d, ==, i);
    }
  g_assert_cmpstr (ma_blockers_detail_to_string (MA_BLOCKERS_DETAIL_WRITERS), ==, "writers");
  g_assert_false (ma_blockers_detail_from_string ("Writers", &d));
  g_assert_false (ma_blockers_detail_from_string ("", &d));
  g_assert_false (ma_blockers_detail_from_string (NULL, &d));
}

static void
test_cursor_round_trip (void)
{
  MaPageKey key = { { 8, 1, 123456789012LL, 0, 2, -1 }, 6 };
  MaPageKey back = { { 0 }, 0 };
  g_autoptr (GError) error = NULL;
  g_autofree char *text = ma_page_cursor_format (MA_BLOCKERS_DETAIL_LOCKS, &key);

  g_assert_cmpstr (text, ==, "locks:8.1.123456789012.0.2.-1");
  g_assert_true (ma_page_cursor_parse (text, MA_BLOCKERS_DETAIL_LOCKS, 6, &back, &error));
  g_assert_no_error (error);
  g_assert_cmpint (ma_page_key_compare (&key, &back), ==, 0);
  {
    MaPageKey w = { { 4242, 17 }, 2 };
    g_autofree char *t = ma_page_cursor_format (MA_BLOCKERS_DETAIL_WRITERS, &w);
    g_assert_cmpstr (t, ==, "writers:4242.17");
  }
}

static void
test_cursor_invalid (void)
{
  static const struct
  {
    const char *text;
    MaBlockersDetail detail;
    guint n;
  } bad[] = {
    { "", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:1", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:1.2.3", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:1.", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:1..2", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:a.2", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:1.2 ", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:+1.2", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:-.2", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writers:99999999999999999999.2", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "locks:1.2", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "writersx:1.2", MA_BLOCKERS_DETAIL_WRITERS, 2 },
    { "stuck:1.2", MA_BLOCKERS_DETAIL_STUCK, 1 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      MaPageKey key;
      g_assert_false (ma_page_cursor_parse (bad[i].text, bad[i].detail, bad[i].n, &key, &error));
      g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "cursor"));
    }
}

static void
test_key_compare (void)
{
  MaPageKey a = { { 1, 2 }, 2 }, b = { { 1, 3 }, 2 }, c = { { 2, -5 }, 2 }, d = { { 1 }, 1 };

  g_assert_cmpint (ma_page_key_compare (&a, &b), <, 0);
  g_assert_cmpint (ma_page_key_compare (&b, &c), <, 0);
  g_assert_cmpint (ma_page_key_compare (&c, &a), >, 0);
  g_assert_cmpint (ma_page_key_compare (&a, &a), ==, 0);
  /* a prefix comes first */
  g_assert_cmpint (ma_page_key_compare (&d, &a), <, 0);
}

static void
test_page_start (void)
{
  MaPageKey keys[] = { { { 1, 3 }, 2 }, { { 1, 7 }, 2 }, { { 5, 0 }, 2 }, { { 9, 9 }, 2 } };
  MaPageKey at = { { 1, 7 }, 2 }, gone = { { 2, 0 }, 2 }, before = { { 0, 0 }, 2 },
            after = { { 10, 0 }, 2 };

  g_assert_cmpuint (ma_page_start (keys, 4, NULL), ==, 0);
  g_assert_cmpuint (ma_page_start (keys, 4, &at), ==, 2);
  /* the entry the cursor named went away: the page starts after its place */
  g_assert_cmpuint (ma_page_start (keys, 4, &gone), ==, 2);
  g_assert_cmpuint (ma_page_start (keys, 4, &before), ==, 0);
  g_assert_cmpuint (ma_page_start (keys, 4, &after), ==, 4);
  g_assert_cmpuint (ma_page_start (keys, 0, &at), ==, 0);
}

/* Walking pages of any size over a set that loses and gains entries between pages: every
 * entry present throughout is returned exactly once, in order. */
static void
test_page_walk (void)
{
  for (guint limit = 1; limit <= 9; limit++)
    {
      g_autoptr (GArray) keys = g_array_new (FALSE, FALSE, sizeof (MaPageKey));
      g_autoptr (GHashTable) seen = g_hash_table_new (g_int64_hash, g_int64_equal);
      g_autoptr (GArray) returned = g_array_new (FALSE, FALSE, sizeof (gint64));
      MaPageKey cursor = { { 0 }, 0 };
      gboolean have_cursor = FALSE;
      guint round = 0;

      for (gint64 v = 0; v < 40; v += 2)
        {
          MaPageKey k = { { v }, 1 };
          g_array_append_val (keys, k);
        }
      for (;;)
        {
          guint from = ma_page_start ((MaPageKey *)(gpointer)keys->data, keys->len,
                                      have_cursor ? &cursor : NULL);
          guint n = MIN (limit, keys->len - from);

          for (guint i = 0; i < n; i++)
            {
              gint64 v = g_array_index (keys, MaPageKey, from + i).v[0];
              g_array_append_val (returned, v);
            }
          if (from + n >= keys->len)
            break;
          cursor = g_array_index (keys, MaPageKey, from + n - 1);
          have_cursor = TRUE;
          /* between pages: the entry at the cursor goes away, an odd one appears (twenty
           * times: a set that grows ahead of the pages forever has no last page) */
          g_array_remove_index (keys, from + n - 1);
          if (round < 20)
            {
              MaPageKey k = { { 2 * (gint64)round + 1 }, 1 };
              guint at = ma_page_start ((MaPageKey *)(gpointer)keys->data, keys->len, &k);
              g_array_insert_val (keys, at, k);
            }
          round++;
        }
      for (guint i = 0; i < returned->len; i++)
        {
          gint64 *v = &g_array_index (returned, gint64, i);
          g_assert_false (g_hash_table_contains (seen, v));
          g_hash_table_add (seen, v);
          if (i > 0)
            g_assert_cmpint (*v, >, g_array_index (returned, gint64, i - 1));
        }
      /* every even key (present from the start; removed ones were returned before) */
      for (gint64 v = 0; v < 40; v += 2)
        g_assert_true (g_hash_table_contains (seen, &v));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/blockers-summary/aggregate", test_aggregate);
  g_test_add_func ("/blockers-summary/aggregate-empty", test_aggregate_empty);
  g_test_add_func ("/blockers-summary/aggregate-ties", test_aggregate_ties);
  g_test_add_func ("/blockers-summary/detail-names", test_detail_names);
  g_test_add_func ("/blockers-summary/cursor-round-trip", test_cursor_round_trip);
  g_test_add_func ("/blockers-summary/cursor-invalid", test_cursor_invalid);
  g_test_add_func ("/blockers-summary/key-compare", test_key_compare);
  g_test_add_func ("/blockers-summary/page-start", test_page_start);
  g_test_add_func ("/blockers-summary/page-walk", test_page_walk);
  return g_test_run ();
}
