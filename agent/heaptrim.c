/* heaptrim.c — handing the heap's free pages back to the kernel once the agent has answered:
 * a scan or a reply leaves no high-water mark in an agent idle between migrations. */
#include "heaptrim.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

static gboolean trim_enabled;
static guint trim_source;
static guint trims;

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

static gboolean
on_trim_due (gpointer user_data)
{
  trim_source = 0;
  ma_heap_trim_now ();
  return G_SOURCE_REMOVE;
}

void
ma_heap_trim_schedule (void)
{
  if (!trim_enabled || trim_source != 0)
    return;
  trim_source = g_timeout_add_seconds (MA_HEAP_TRIM_DELAY_SECONDS, on_trim_due, NULL);
  g_source_set_name_by_id (trim_source, "[migration-agent] heap trim");
}
