/* blockers-private.h — the `blockers` report's own state and the calls between its parts:
 * blockers.c (the scan, the verdict, the command), -locks (lock holders), -reply (the text). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "blockers-summary.h"
#include "blockers.h"
#include "mounts.h"
#include "proclocks.h"
#include "procscan.h"

G_BEGIN_DECLS

#define MA_BLOCKERS_FREEZE_WAIT_WCHAN "percpu_rwsem_wait"

typedef enum
{
  SEVERITY_INFO,
  SEVERITY_SLOW,
  SEVERITY_BLOCKED,
} Severity;

typedef struct
{
  Severity severity;
  const char *code;
  char *mountpoint;
  char *message;
} Reason;

/* The reply is written as JSON text directly: tens of thousands of locks as json-glib nodes
 * cost more than finding them. `comma` says whether a value came last at this level. */
typedef struct
{
  GString *text;
  gboolean comma;
} Out;

typedef struct _Report
{
  MaMountTable *mounts;
  MaProcScan *scan;
  GHashTable *selected;     /* MaSuperblock* set */
  gboolean explicit_selection;
  GPtrArray *reasons;       /* Reason* */
  Severity verdict;
  GHashTable *processes;    /* pid → the members describing it, as text */
  Out out;
  /* what the default reply listed of what there is (its `totals`) */
  guint mounts_total, mounts_listed;
  guint locks_listed, lock_holders, lock_holders_listed;
  guint writers_listed, writer_processes, writer_processes_listed, writer_mounts,
    writer_mounts_listed, writers_deleted;
  guint64 writer_bytes;
  guint stuck_listed;
  guint reasons_listed, order_total, order_listed, nesting_listed;
} Report;

/* Writes entries while they fit: `budget` bytes of them, at most `limit`. The entry that
 * would pass the budget is taken back. Returns how many were written. */
typedef void (*OutEntryFunc) (Report *r, gpointer items, guint i, gpointer data);

typedef struct
{
  gint pid;
  gint fd; /* -1 when no fd of the process was found */
} Holder;

/* One held lock on a selected filesystem, its holders found. */
typedef struct
{
  guint index;        /* in the /proc/locks array; its waiters follow it there */
  guint n_waiters;
  guint holders_at;   /* its holders: Locks.holders[holders_at … + n_holders] */
  guint n_holders;
  MaOpenFile *file;   /* an fd open on the file (for the path), or NULL */
  MaPageKey key;      /* page order */
} LockRow;

typedef struct
{
  GArray *locks;      /* MaLock, as parsed */
  GArray *rows;       /* LockRow, in /proc/locks order */
  GArray *holders;    /* Holder */
  guint n_with_waiters;
} Locks;


/* The budgets of the default reply's parts (bytes of their entries); with the fixed parts
 * (writeback, qemu_ga, scan, totals: a few KiB) they stay under MA_BLOCKERS_MAX_REPLY_BYTES. */
#define BUDGET_MOUNTS (144 * 1024)
#define BUDGET_ORDER (24 * 1024)
#define BUDGET_NESTING (24 * 1024)
#define BUDGET_LOCKS (288 * 1024)
#define BUDGET_LOCK_HOLDERS (96 * 1024)
#define BUDGET_WRITERS (64 * 1024)
#define BUDGET_WRITERS_BY_MOUNT (64 * 1024)
#define BUDGET_WRITERS_BY_PROCESS (96 * 1024)
#define BUDGET_STUCK (96 * 1024)
#define BUDGET_REASONS (48 * 1024)
/* individual writers listed in the default reply (all of them on a small guest) */
#define SUMMARY_WRITERS 64
#define SUMMARY_STUCK 256

/* ---- writing JSON text (blockers-reply.c) ---- */

void out_key (Out *o, const char *key);
void out_open (Out *o, const char *key, char bracket);
void out_close (Out *o, char bracket);
void out_literal (Out *o, const char *key, const char *literal);
void out_bool (Out *o, const char *key, gboolean value);
void append_int (GString *text, gint64 value);
void out_int (Out *o, const char *key, gint64 value);
void out_double (Out *o, const char *key, double value);
void out_name (Out *o, const char *key, const char *name);
void out_string (Out *o, const char *key, const char *value);
void out_path (Out *o, const char *key, const char *path);
void out_node (Out *o, const char *key, JsonNode *node);
guint out_entries (Report *r, gpointer items, guint from, guint n, guint limit, gsize budget,
                   OutEntryFunc func, gpointer data);

MaSuperblock *sb_for_devno (Report *r, guint32 devno);
const char *mountpoint_for_devno (Report *r, guint32 devno);
gboolean devno_selected (Report *r, guint32 devno);
void out_process_members (Report *r, gint pid);

/* ---- the parts of the reply (blockers-reply.c) ---- */

void out_mounts (Report *r, gsize budget);
void out_freeze_order (Report *r, gsize budget);
void out_nesting (Report *r, gsize budget);
void out_writer_at (Report *r, gpointer items, guint i, gpointer data);
void out_writers_summary (Report *r);
void out_stuck_at (Report *r, gpointer items, guint i, gpointer data);
GPtrArray *reported_stuck (Report *r, guint *n_freeze_waiters);
void out_reasons (Report *r, gsize budget);
gboolean out_page (Report *r, const MaBlockersQuery *query, Locks *l, GPtrArray *stuck,
                   GError **error);
void out_totals (Report *r, Locks *l, guint n_stuck, gboolean summary);

/* ---- locks (blockers-locks.c) ---- */

void locks_clear (Locks *l);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Locks, locks_clear)
void find_lock_holders (Report *r, Locks *l);
void out_locks_summary (Report *r, Locks *l);
/* Sorts l->rows in page order; their keys (with the rank among alike locks), to g_free. */
MaPageKey *lock_page_keys (Locks *l);
void out_page_lock_at (Report *r, gpointer items, guint i, gpointer data);

G_END_DECLS
