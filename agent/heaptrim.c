/* heaptrim.c — handing the heap's free pages back to the kernel once the agent has answered:
 * a scan or a reply leaves no high-water mark in an agent idle between migrations. */
#include "heaptrim.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

static gboolean trim_enabled;
static guint trim_source;
static guint trims;
static gint64 last_reply_us;

static gboolean on_trim_due (gpointer user_data);

static void
arm (guint ms)
{
  trim_source = g_timeout_add (ms, on_trim_due, NULL);
  g_source_set_name_by_id (trim_source, "[migration-agent] heap trim");
}

void
ma_heap_trim_enable (gboolean enabled)
{
  trim_enabled = enabled;
  if (!enabled)
    g_clear_handle_id (&trim_source, g_source_remove);
}

guint
ma_heap_trim_now (void)
{
#ifdef __GLIBC__
  /* glibc releases only what lies at the top of the heap by itself; malloc_trim also gives
   * back every whole free page in the middle (MADV_DONTNEED), which a long-lived daemon's heap,
   * its small long-lived blocks interleaved with a request's short-lived ones, is full of */
  malloc_trim (0);
#endif
  return ++trims;
}

guint
ma_heap_trim_count (void)
{
  return trims;
}

gsize
ma_heap_free_bytes (void)
{
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 33)
  struct mallinfo2 info = mallinfo2 ();
  return info.fordblks + info.fsmblks;
#else
  return 0;
#endif
}

static gboolean
on_trim_due (gpointer user_data)
{
  gint64 quiet_us = g_get_monotonic_time () - last_reply_us;
  gint64 wait_us = (gint64) MA_HEAP_TRIM_QUIET_SECONDS * G_USEC_PER_SEC - quiet_us;

  trim_source = 0;
  if (ma_heap_free_bytes () > MA_HEAP_TRIM_EAGER_MAX_BYTES && wait_us > 0)
    arm ((guint) (wait_us / 1000) + 1); /* large: wait for the quiet */
  else
    ma_heap_trim_now ();
  return G_SOURCE_REMOVE;
}

void
ma_heap_trim_schedule (void)
{
  if (!trim_enabled)
    return;
  last_reply_us = g_get_monotonic_time ();
  if (trim_source == 0)
    arm (MA_HEAP_TRIM_DELAY_SECONDS * 1000);
}
