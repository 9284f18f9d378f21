/* blockers.h — the `blockers` command: what will make a filesystem freeze slow or fail
 * (locks, writers, stuck tasks, unfreezable mounts, dirty data, qemu-ga) and the verdict. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "agent.h"
#include "blockers-summary.h"

G_BEGIN_DECLS

/* Above this many seconds of estimated flush the verdict is at least "slow". */
#define MA_BLOCKERS_SLOW_SYNC_SECONDS 1.0
#define MA_QEMU_GA_PORT_NAME "org.qemu.guest_agent.0"
#define MA_QEMU_GA_FROZEN_FILE "qga.state.isfrozen"

/* An MaModuleRegisterFunc: the command and the "blockers" capability; never fails. */
gboolean ma_blockers_register (MaAgent *agent, GError **error);

/* What a `blockers` request asks for (agent/PROTOCOL.md): the bounded default report
 * (detail SUMMARY) or one page of one kind of entry, after a cursor. */
typedef struct
{
  const char *const *mountpoints; /* NULL for every freezable filesystem */
  MaBlockersDetail detail;
  guint limit;                    /* entries per page; 0 for MA_BLOCKERS_PAGE_DEFAULT */
  const char *cursor;             /* a page's next_cursor, or NULL for the first page */
} MaBlockersQuery;

/* The reply as one line of JSON text (at most MA_BLOCKERS_MAX_REPLY_BYTES), blocking (run
 * it in a worker thread). */
char *ma_blockers_query_text (const MaBlockersQuery *query, GCancellable *cancellable,
                              GError **error);

/* The default report as text: ma_blockers_query_text () with detail SUMMARY. */
char *ma_blockers_collect_text (const char *const *mountpoints, GCancellable *cancellable,
                                GError **error);

G_END_DECLS
