/* blockers-summary.h — what keeps a `blockers` reply bounded: writers aggregated by mount and
 * by process, the orders (worst first, page order), page cursors and byte budgets. */
#pragma once

#include <glib.h>

#include "procscan.h"

G_BEGIN_DECLS

/* The whole default reply stays under this, whatever the guest holds (agent/PROTOCOL.md). */
#define MA_BLOCKERS_MAX_REPLY_BYTES (1024 * 1024)
/* A `detail` page: entries stop before this many bytes of them (next_cursor goes on). */
#define MA_BLOCKERS_PAGE_BYTES (896 * 1024)
#define MA_BLOCKERS_PAGE_DEFAULT 1000
#define MA_BLOCKERS_PAGE_MAX 100000
/* example paths per writer group */
#define MA_BLOCKERS_EXAMPLES 3

/* Writers that share a mount (key: superblock devno) or a process (key: pid). */
typedef struct
{
  gint64 key;
  guint fds;
  guint processes; /* by mount: distinct pids; by process: 1 */
  guint mounts;    /* by process: distinct superblocks; by mount: 1 */
  guint deleted;
  guint64 bytes;   /* sum of the sizes of the files open for writing */
  GPtrArray *examples; /* MaOpenFile* (borrowed), the first MA_BLOCKERS_EXAMPLES in page order */
} MaWriterGroup;

typedef struct
{
  guint fds;
  guint processes;
  guint mounts;
  guint deleted;
  guint64 bytes;
  GPtrArray *by_mount;   /* MaWriterGroup*, most fds first (then bytes, then key) */
  GPtrArray *by_process; /* likewise */
} MaWriterSummary;

/* Aggregate writers (MaOpenFile*, sorted by pid then fd as the pass leaves them; borrowed:
 * they must outlive the summary). Reads no path. */
MaWriterSummary *ma_writer_summary_new (GPtrArray *writers);
void ma_writer_summary_free (MaWriterSummary *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaWriterSummary, ma_writer_summary_free)

/* ---- pages ---- */

typedef enum
{
  MA_BLOCKERS_DETAIL_SUMMARY,
  MA_BLOCKERS_DETAIL_LOCKS,
  MA_BLOCKERS_DETAIL_WRITERS,
  MA_BLOCKERS_DETAIL_STUCK,
} MaBlockersDetail;

/* "summary", "locks", "writers", "stuck" */
const char *ma_blockers_detail_to_string (MaBlockersDetail detail);
gboolean ma_blockers_detail_from_string (const char *text, MaBlockersDetail *out);

/* Page keys: a few integers in page order (writers: pid, fd; stuck: tid; locks: major,
 * minor, inode, start, type, pid and the rank among locks alike in all of those). A cursor is the key of the last entry returned, as text
 * "DETAIL:N.N…" (integers in decimal, '-' for negatives); the next page starts after it. */
#define MA_PAGE_KEY_MAX 8

typedef struct
{
  gint64 v[MA_PAGE_KEY_MAX];
  guint n;
} MaPageKey;

gint ma_page_key_compare (const MaPageKey *a, const MaPageKey *b);
char *ma_page_cursor_format (MaBlockersDetail detail, const MaPageKey *key);
/* FALSE (MA_ERROR_INVALID_ARGUMENT naming `cursor`) when the text is not a cursor of this
 * detail with n_fields integers. */
gboolean ma_page_cursor_parse (const char *text, MaBlockersDetail detail, guint n_fields,
                               MaPageKey *out, GError **error);

/* The index of the first of n sorted keys that comes after cursor (n when none does); 0 when
 * cursor is NULL. The entry the cursor names may be gone: the page starts after its place. */
guint ma_page_start (const MaPageKey *keys, guint n, const MaPageKey *cursor);

G_END_DECLS
