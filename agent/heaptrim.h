/* heaptrim.h — handing the heap's free pages back to the kernel once the agent has answered:
 * a scan or a reply leaves no high-water mark in an agent idle between migrations. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A second after the first reply since the last trim, the free heap is given back if it is
 * small (what giving it back costs, the next job faulting those pages in again, is small
 * too). A large free heap, what a scan of a busy guest leaves, is given back only once no
 * reply has gone out for MA_HEAP_TRIM_QUIET_SECONDS: back-to-back jobs keep their pages. */
#define MA_HEAP_TRIM_DELAY_SECONDS 1
#define MA_HEAP_TRIM_QUIET_SECONDS 5
#define MA_HEAP_TRIM_EAGER_MAX_BYTES (1024 * 1024)

/* Off until enabled (the daemon enables it; unit tests of other modules leave no timer). */
void ma_heap_trim_enable (gboolean enabled);
/* Called after each reply: notes the time, arms the timer unless it is armed (so a steady
 * stream of requests still trims a small free heap once a second). A no-op while disabled. */
void ma_heap_trim_schedule (void);
/* Trims now; the number of trims so far. */
guint ma_heap_trim_now (void);
guint ma_heap_trim_count (void);
/* The heap's free bytes (0 where the allocator cannot say). */
gsize ma_heap_free_bytes (void);

G_END_DECLS
