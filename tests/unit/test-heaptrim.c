/* test-heaptrim.c — the heap trim after replies: one timer however many replies, none while
 * disabled, a trim that really gives the free pages in the middle of the heap back, and a
 * large free heap kept while replies go on, given back once they stop. */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "heaptrim.h"

#define BLOCKS 4096
#define BLOCK_BYTES 1000

/* The trim works on glibc's own allocator; ASan and memcheck replace it (memcheck's is
 * preloaded into the program it runs: vgpreload_memcheck in LD_PRELOAD). */
static gboolean
own_allocator (void)
{
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
  return FALSE;
#else
  const char *preload = g_getenv ("LD_PRELOAD");
  return preload == NULL || strstr (preload, "vgpreload") == NULL;
#endif
}

static gboolean
skip_without_own_allocator (void)
{
  if (own_allocator ())
    return FALSE;
  g_test_skip ("needs glibc's own allocator (ASan and memcheck replace it)");
  return TRUE;
}

static gint64
anon_kib (void)
{
  g_autofree char *text = NULL;
  const char *p;

  g_assert_true (g_file_get_contents ("/proc/self/smaps_rollup", &text, NULL, NULL));
  p = strstr (text, "\nAnonymous:");
  g_assert_nonnull (p);
  return g_ascii_strtoll (p + strlen ("\nAnonymous:"), NULL, 10);
}

/* 4 MB of small blocks, freed but one in 64: glibc cannot give that back by shrinking the
 * heap (the blocks that stay hold every stretch in place), only the trim can, page by page.
 * Returns the blocks that stay. */
static char **
fragment_heap (void)
{
  char **blocks = g_new0 (char *, BLOCKS);

  for (guint i = 0; i < BLOCKS; i++)
    {
      blocks[i] = malloc (BLOCK_BYTES);
      memset (blocks[i], 0x5a, BLOCK_BYTES);
    }
  for (guint i = 0; i < BLOCKS; i++)
    if (i % 64 != 63)
      g_clear_pointer (&blocks[i], free);
  return blocks;
}

static void
free_blocks (char **blocks)
{
  for (guint i = 0; i < BLOCKS; i++)
    free (blocks[i]);
  g_free (blocks);
}

static void
test_one_timer (void)
{
  guint before = ma_heap_trim_count ();
  gint64 deadline;

  ma_heap_trim_enable (FALSE);
  ma_heap_trim_schedule ();
  g_assert_false (g_main_context_pending (NULL));

  ma_heap_trim_enable (TRUE);
  for (int i = 0; i < 100; i++)
    ma_heap_trim_schedule (); /* a hundred replies in a row: one trim */
  deadline = g_get_monotonic_time () + (MA_HEAP_TRIM_DELAY_SECONDS + 10) * G_USEC_PER_SEC;
  while (ma_heap_trim_count () == before && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (ma_heap_trim_count (), ==, before + 1);
  g_assert_false (g_main_context_pending (NULL));

  /* disabling drops an armed timer */
  ma_heap_trim_schedule ();
  ma_heap_trim_enable (FALSE);
  g_assert_false (g_main_context_iteration (NULL, FALSE));
  g_assert_cmpuint (ma_heap_trim_count (), ==, before + 1);
}

static void
test_gives_pages_back (void)
{
  if (skip_without_own_allocator ())
    return;

  char **blocks = fragment_heap ();
  gint64 freed, trimmed;

  freed = anon_kib ();
  ma_heap_trim_now ();
  trimmed = anon_kib ();
  g_test_message ("private anonymous memory: %" G_GINT64_FORMAT " KiB with 4 MB freed, %"
                  G_GINT64_FORMAT " KiB after the trim", freed, trimmed);
  g_assert_cmpint (freed - trimmed, >=, 2048);
  free_blocks (blocks);
}

/* A free heap over MA_HEAP_TRIM_EAGER_MAX_BYTES stays while replies go on (the next job would
 * fault it all in again) and goes back MA_HEAP_TRIM_QUIET_SECONDS after the last one. */
static void
test_large_waits_for_quiet (void)
{
  if (skip_without_own_allocator ())
    return;

  char **blocks = fragment_heap ();
  guint before = ma_heap_trim_count ();
  gint64 start = g_get_monotonic_time (), last, deadline, freed = anon_kib ();

  g_assert_cmpuint (ma_heap_free_bytes (), >, MA_HEAP_TRIM_EAGER_MAX_BYTES);
  ma_heap_trim_enable (TRUE);
  /* replies every 100 ms for three delays: no trim */
  while (g_get_monotonic_time () - start < 3 * MA_HEAP_TRIM_DELAY_SECONDS * G_USEC_PER_SEC)
    {
      ma_heap_trim_schedule ();
      g_usleep (100 * 1000);
      while (g_main_context_iteration (NULL, FALSE))
        ;
    }
  g_assert_cmpuint (ma_heap_trim_count (), ==, before);
  last = g_get_monotonic_time ();
  ma_heap_trim_schedule ();
  deadline = last + (MA_HEAP_TRIM_QUIET_SECONDS + 10) * G_USEC_PER_SEC;
  while (ma_heap_trim_count () == before && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (ma_heap_trim_count (), ==, before + 1);
  g_assert_cmpint (g_get_monotonic_time () - last, >=,
                   MA_HEAP_TRIM_QUIET_SECONDS * G_USEC_PER_SEC - 100 * 1000);
  g_assert_cmpint (freed - anon_kib (), >=, 2048);
  ma_heap_trim_enable (FALSE);
  free_blocks (blocks);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/heaptrim/one-timer-however-many-replies", test_one_timer);
  g_test_add_func ("/heaptrim/gives-free-pages-back", test_gives_pages_back);
  g_test_add_func ("/heaptrim/large-waits-for-quiet", test_large_waits_for_quiet);
  return g_test_run ();
}
