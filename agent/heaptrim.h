/* heaptrim.h — handing the heap's free pages back to the kernel once the agent has answered:
 * a scan or a reply leaves no high-water mark in an agent idle between migrations. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A second after the first reply since the last trim. Off until enabled (the daemon enables
 * it; unit tests of other modules leave no timer behind). */
#define MA_HEAP_TRIM_DELAY_SECONDS 1

void ma_heap_trim_enable (gboolean enabled);
/* Called after each reply: arms the timer unless it is armed already (so a steady stream of
 * requests trims once a second, not never). A no-op while disabled. */
void ma_heap_trim_schedule (void);
/* Trims now; the number of trims so far. */
guint ma_heap_trim_now (void);
guint ma_heap_trim_count (void);

G_END_DECLS
