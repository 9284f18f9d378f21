/* blockers.c — the `blockers` command: what will make a filesystem freeze slow or fail
 * (locks, writers, stuck tasks, unfreezable mounts, dirty data, qemu-ga) and the verdict. */
#include "blockers.h"

#include <errno.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blockers-summary.h"
#include "json.h"
#include "mounts.h"
#include "paths.h"
#include "proclocks.h"
#include "procscan.h"
#include "writeback.h"

#define MA_BLOCKERS_FREEZE_WAIT_WCHAN "percpu_rwsem_wait"

typedef enum
{
  SEVERITY_INFO,
  SEVERITY_SLOW,
  SEVERITY_BLOCKED,
} Severity;

static const char *const severity_names[] = { "info", "slow", "blocked" };
/* the verdict is the worst severity among the reasons; information alone means ready */
static const char *const verdict_names[] = { "ready", "slow", "blocked" };

typedef struct
{
  Severity severity;
  const char *code;
  char *mountpoint;
  char *message;
} Reason;

static void
reason_free (Reason *reason)
{
  g_free (reason->mountpoint);
  g_free (reason->message);
  g_free (reason);
}

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

static void
add_reason (Report *r, Severity severity, const char *code, const char *mountpoint,
            const char *format, ...) G_GNUC_PRINTF (5, 6);

static void
add_reason (Report *r, Severity severity, const char *code, const char *mountpoint,
            const char *format, ...)
{
  Reason *reason = g_new0 (Reason, 1);
  va_list args;

  va_start (args, format);
  reason->message = g_strdup_vprintf (format, args);
  va_end (args);
  reason->severity = severity;
  reason->code = code;
  reason->mountpoint = g_strdup (mountpoint);
  g_ptr_array_add (r->reasons, reason);
  r->verdict = MAX (r->verdict, severity);
}

/* ---- writing JSON text ---- */

static void
out_key (Out *o, const char *key)
{
  if (o->comma)
    g_string_append_c (o->text, ',');
  o->comma = FALSE;
  if (key != NULL)
    {
      /* member names are literals of this file: nothing to escape */
      g_string_append_c (o->text, '"');
      g_string_append (o->text, key);
      g_string_append (o->text, "\":");
    }
}

/* '{' or '[' as a member (key) or an array element (key NULL). */
static void
out_open (Out *o, const char *key, char bracket)
{
  out_key (o, key);
  g_string_append_c (o->text, bracket);
}

static void
out_close (Out *o, char bracket)
{
  g_string_append_c (o->text, bracket);
  o->comma = TRUE;
}

static void
out_literal (Out *o, const char *key, const char *literal)
{
  out_key (o, key);
  g_string_append (o->text, literal);
  o->comma = TRUE;
}

static void
out_bool (Out *o, const char *key, gboolean value)
{
  out_literal (o, key, value ? "true" : "false");
}

/* Decimal digits without printf: a report has ten numbers per lock. */
static void
append_int (GString *text, gint64 value)
{
  char buf[24];
  char *p = buf + sizeof buf;
  guint64 v = value < 0 ? -(guint64) value : (guint64) value;

  do
    {
      *--p = (char) ('0' + v % 10);
      v /= 10;
    }
  while (v > 0);
  if (value < 0)
    *--p = '-';
  g_string_append_len (text, p, buf + sizeof buf - p);
}

static void
out_int (Out *o, const char *key, gint64 value)
{
  out_key (o, key);
  append_int (o->text, value);
  o->comma = TRUE;
}

static void
out_double (Out *o, const char *key, double value)
{
  out_key (o, key);
  ma_json_append_double (o->text, value);
  o->comma = TRUE;
}

/* A name of this program's own (lock types, severities): plain ASCII, nothing to check. */
static void
out_name (Out *o, const char *key, const char *name)
{
  out_key (o, key);
  ma_json_append_string (o->text, name);
  o->comma = TRUE;
}

/* Bytes that may not be UTF-8 (paths, command lines): escaped losslessly; TRUE if so. */
static gboolean
append_safe (GString *text, const char *bytes)
{
  g_autofree char *safe = NULL;
  gboolean escaped = FALSE;

  if (g_utf8_validate (bytes, -1, NULL))
    {
      ma_json_append_string (text, bytes);
      return FALSE;
    }
  safe = ma_json_safe_string (bytes, -1, &escaped);
  ma_json_append_string (text, safe);
  return escaped;
}

/* A string from outside (mount options, wchan, messages quoting paths): kept valid UTF-8. */
static void
out_string (Out *o, const char *key, const char *value)
{
  if (value == NULL)
    {
      out_literal (o, key, "null");
      return;
    }
  out_key (o, key);
  append_safe (o->text, value);
  o->comma = TRUE;
}

/* A path member, escaped losslessly; "<member>_escaped": true says the \xNN form is used. */
static void
out_path (Out *o, const char *key, const char *path)
{
  if (path == NULL)
    {
      out_literal (o, key, "null");
      return;
    }
  out_key (o, key);
  o->comma = TRUE;
  /* an array element (key NULL) has no member to say so: its \xNN form stands alone */
  if (append_safe (o->text, path) && key != NULL)
    g_string_append_printf (o->text, ",\"%s_escaped\":true", key);
}

/* A JSON value made elsewhere, as a member. */
static void
out_node (Out *o, const char *key, JsonNode *node)
{
  g_autofree char *text = ma_json_to_string (node);

  out_literal (o, key, text);
}

/* Writes entries while they fit: `budget` bytes of them, at most `limit`. The entry that
 * would pass the budget is taken back. Returns how many were written. */
typedef void (*OutEntryFunc) (Report *r, gpointer items, guint i, gpointer data);

static guint
out_entries (Report *r, gpointer items, guint from, guint n, guint limit, gsize budget,
             OutEntryFunc func, gpointer data)
{
  Out *o = &r->out;
  gsize start = o->text->len;
  guint written = 0;

  for (guint i = from; i < n && written < limit; i++)
    {
      gsize len = o->text->len;
      gboolean comma = o->comma;

      func (r, items, i, data);
      if (o->text->len - start > budget)
        {
          g_string_truncate (o->text, len);
          o->comma = comma;
          break;
        }
      written++;
    }
  return written;
}

static MaSuperblock *
sb_for_devno (Report *r, guint32 devno)
{
  return ma_mount_table_lookup_dev (r->mounts, major (devno), minor (devno));
}

static const char *
mountpoint_for_devno (Report *r, guint32 devno)
{
  MaSuperblock *sb = sb_for_devno (r, devno);

  return sb != NULL ? sb->primary->target : NULL;
}

static gboolean
devno_selected (Report *r, guint32 devno)
{
  MaSuperblock *sb = sb_for_devno (r, devno);

  return sb != NULL && g_hash_table_contains (r->selected, sb);
}

/* ---- processes ---- */

/* "pid", then who it is ("exited": true when it is gone); written once per process. */
static void
out_process_members (Report *r, gint pid)
{
  const char *members = g_hash_table_lookup (r->processes, GINT_TO_POINTER (pid));

  if (members == NULL)
    {
      MaProcInfo *info = pid > 0 ? ma_proc_scan_describe (r->scan, pid) : NULL;
      Out o = { g_string_new (NULL), FALSE };

      out_int (&o, "pid", pid);
      if (info == NULL)
        out_bool (&o, "exited", TRUE);
      else
        {
          out_path (&o, "comm", info->comm);
          out_path (&o, "cmdline", info->cmdline);
          if (info->unit != NULL)
            out_path (&o, "unit", info->unit);
          if (info->cgroup != NULL)
            out_path (&o, "cgroup", info->cgroup);
          if (info->foreign_mnt_ns)
            out_string (&o, "mount_namespace", info->mnt_ns);
        }
      members = g_string_free (o.text, FALSE);
      g_hash_table_insert (r->processes, GINT_TO_POINTER (pid), (char *) members);
    }
  out_key (&r->out, NULL);
  g_string_append (r->out.text, members);
  r->out.comma = TRUE;
}

/* ---- mounts ---- */

static void
out_mount_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  MaMount *m = ((MaMount **) items)[i];
  MaSuperblock *sb = m->sb;
  gboolean freezable = m->primary && sb->freezable;
  g_autofree char *dev = g_strdup_printf ("%u:%u", sb->major, sb->minor);

  out_open (o, NULL, '{');
  out_path (o, "mountpoint", m->target);
  out_string (o, "device", dev);
  out_path (o, "fstype", m->fstype);
  out_path (o, "source", m->source);
  out_path (o, "root", m->root);
  out_int (o, "mount_id", m->id);
  out_bool (o, "freezable", freezable);
  if (!m->primary)
    {
      g_autofree char *why = g_strdup_printf ("bind duplicate of %s (same superblock %s)",
                                              sb->primary->target, dev);
      out_path (o, "reason", why);
      out_path (o, "bind_of", sb->primary->target);
    }
  else if (!sb->freezable)
    out_string (o, "reason", sb->reason);
  out_bool (o, "read_only", sb->read_only);
  if (sb->frozen)
    out_bool (o, "frozen", TRUE);
  out_bool (o, "selected", m->primary && g_hash_table_contains (r->selected, sb));
  out_close (o, '}');
}

/* Every mount, grouped by superblock; when they do not all fit, the selected ones (those
 * standing for a selected superblock) first. */
static void
out_mounts (Report *r, gsize budget)
{
  Out *o = &r->out;
  g_autoptr(GPtrArray) all = g_ptr_array_new ();
  g_autoptr(GPtrArray) selected_first = g_ptr_array_new ();

  for (guint i = 0; i < r->mounts->superblocks->len; i++)
    {
      MaSuperblock *sb = r->mounts->superblocks->pdata[i];
      for (guint j = 0; j < sb->mounts->len; j++)
        g_ptr_array_add (all, sb->mounts->pdata[j]);
    }
  r->mounts_total = all->len;
  out_open (o, "mounts", '[');
  {
    gsize len = o->text->len;
    gboolean comma = o->comma;

    r->mounts_listed = out_entries (r, all->pdata, 0, all->len, G_MAXUINT, budget,
                                    out_mount_at, NULL);
    if (r->mounts_listed < all->len)
      {
        /* again: the selected ones first, then the others while they fit */
        g_string_truncate (o->text, len);
        o->comma = comma;
        for (guint pass = 0; pass < 2; pass++)
          for (guint i = 0; i < all->len; i++)
            {
              MaMount *m = all->pdata[i];
              gboolean sel = m->primary && g_hash_table_contains (r->selected, m->sb);
              if (sel == (pass == 0))
                g_ptr_array_add (selected_first, m);
            }
        r->mounts_listed = out_entries (r, selected_first->pdata, 0, selected_first->len,
                                        G_MAXUINT, budget, out_mount_at, NULL);
      }
  }
  out_close (o, ']');
}

static void
out_order_at (Report *r, gpointer items, guint i, gpointer data)
{
  out_path (&r->out, NULL, ((MaSuperblock **) items)[i]->primary->target);
}

static void
out_freeze_order (Report *r, gsize budget)
{
  Out *o = &r->out;
  g_autoptr(GPtrArray) order = g_ptr_array_new ();

  for (guint i = 0; i < r->mounts->freeze_order->len; i++)
    {
      MaSuperblock *sb = r->mounts->freeze_order->pdata[i];
      if (g_hash_table_contains (r->selected, sb))
        g_ptr_array_add (order, sb);
    }
  out_open (o, "freeze_order", '[');
  r->order_listed = out_entries (r, order->pdata, 0, order->len, G_MAXUINT, budget, out_order_at,
                                 NULL);
  r->order_total = order->len;
  out_close (o, ']');
}

static void
out_nesting_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  MaMountNesting *n = ((MaMountNesting **) items)[i];

  out_open (o, NULL, '{');
  out_path (o, "inner", n->inner->primary->target);
  out_path (o, "outer", n->outer->primary->target);
  out_path (o, "via", n->via);
  out_close (o, '}');
}

static void
out_nesting (Report *r, gsize budget)
{
  Out *o = &r->out;

  out_open (o, "nesting", '[');
  r->nesting_listed = out_entries (r, r->mounts->nesting->pdata, 0, r->mounts->nesting->len,
                                   G_MAXUINT, budget, out_nesting_at, NULL);
  out_close (o, ']');
}

/* ---- locks ---- */

static void
out_range (Out *o, const MaLock *lock)
{
  out_int (o, "start", (gint64) lock->start);
  if (lock->end == MA_LOCK_END_EOF)
    out_literal (o, "end", "null");
  else
    out_int (o, "end", (gint64) lock->end);
}

static void
out_lock_waiter (Report *r, const MaLock *lock)
{
  Out *o = &r->out;

  out_open (o, NULL, '{');
  out_process_members (r, (gint) lock->pid);
  out_name (o, "type", ma_lock_type_to_string (lock->type));
  out_name (o, "mode", ma_lock_mode_to_string (lock->mode));
  out_range (o, lock);
  out_close (o, '}');
}

static gboolean
fdinfo_lock_matches (const MaLock *held, const MaLock *line)
{
  return line->has_inode && line->major == held->major && line->minor == held->minor
         && line->inode == held->inode && line->type == held->type && line->mode == held->mode
         && line->start == held->start && line->end == held->end;
}

typedef struct
{
  GHashTable *by_key;    /* MaFileKey (with pid) → MaOpenFile* */
  GHashTable *by_inode;  /* MaFileKey (pid 0) → MaOpenFile*: any fd on that file */
  GHashTable *orphans;   /* MaFileKey (pid 0) → GPtrArray of MaOpenFile* whose fdinfo locks it */
} FileIndex;

static void
index_files (FileIndex *index, GPtrArray *files)
{
  for (guint i = 0; i < files->len; i++)
    {
      MaOpenFile *f = files->pdata[i];
      MaFileKey *key = g_new (MaFileKey, 1);
      MaFileKey *ikey = g_new (MaFileKey, 1);
      *key = (MaFileKey){ f->ino, f->devno, f->pid };
      *ikey = (MaFileKey){ f->ino, f->devno, 0 };
      g_hash_table_insert (index->by_key, key, f);
      g_hash_table_insert (index->by_inode, ikey, f);
    }
}

/* Open files by the files their fdinfo `lock:` lines name (an open file may lock several). */
static void
index_orphans (FileIndex *index, GPtrArray *files)
{
  for (guint i = 0; i < files->len; i++)
    {
      MaOpenFile *f = files->pdata[i];
      for (guint k = 0; k < f->fdinfo.locks->len; k++)
        {
          const MaLock *line = &g_array_index (f->fdinfo.locks, MaLock, k);
          MaFileKey key = { line->inode, (guint32) makedev (line->major, line->minor), 0 };
          GPtrArray *list;

          if (!line->has_inode)
            continue;
          list = g_hash_table_lookup (index->orphans, &key);
          if (list == NULL)
            {
              list = g_ptr_array_new ();
              g_hash_table_insert (index->orphans, g_memdup2 (&key, sizeof key), list);
            }
          if (list->len == 0 || list->pdata[list->len - 1] != f)
            g_ptr_array_add (list, f);
        }
    }
}

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

static void
locks_clear (Locks *l)
{
  g_clear_pointer (&l->rows, g_array_unref);
  g_clear_pointer (&l->holders, g_array_unref);
}

static void
add_holder (GArray *holders, gint pid, gint fd)
{
  Holder h = { pid, fd };

  g_array_append_val (holders, h);
}

/* Every held lock on a selected filesystem with its holders: the owner's fd (pid from
 * /proc/locks), or every open file whose fdinfo lists it. No path is read here. */
static void
find_lock_holders (Report *r, Locks *l)
{
  FileIndex index = {
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL),
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL),
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free,
                           (GDestroyNotify) g_ptr_array_unref),
  };

  l->rows = g_array_new (FALSE, TRUE, sizeof (LockRow));
  l->holders = g_array_new (FALSE, FALSE, sizeof (Holder));
  index_files (&index, r->scan->orphan_files);
  index_files (&index, r->scan->lock_files);
  index_orphans (&index, r->scan->orphan_files);
  for (guint i = 0; i < l->locks->len; i++)
    {
      const MaLock *lock = &g_array_index (l->locks, MaLock, i);
      guint32 devno = (guint32) makedev (lock->major, lock->minor);
      MaFileKey key = { lock->inode, devno, (gint32) lock->pid };
      MaFileKey ikey = { lock->inode, devno, 0 };
      LockRow row = { 0 };

      if (lock->depth > 0 || !lock->has_inode || !devno_selected (r, devno))
        continue;
      row.index = i;
      row.holders_at = l->holders->len;
      row.file = lock->pid > 0 ? g_hash_table_lookup (index.by_key, &key) : NULL;
      if (row.file != NULL)
        add_holder (l->holders, row.file->pid, row.file->fd);
      else
        {
          GPtrArray *candidates = g_hash_table_lookup (index.orphans, &ikey);
          for (guint j = 0; candidates != NULL && j < candidates->len; j++)
            {
              MaOpenFile *of = candidates->pdata[j];
              for (guint k = 0; k < of->fdinfo.locks->len; k++)
                if (fdinfo_lock_matches (lock, &g_array_index (of->fdinfo.locks, MaLock, k)))
                  {
                    add_holder (l->holders, of->pid, of->fd);
                    row.file = row.file != NULL ? row.file : of;
                    break;
                  }
            }
          /* the owner is known but no fd of its own holds the file (shared, inherited) */
          if (l->holders->len == row.holders_at && lock->pid > 0)
            add_holder (l->holders, (gint) lock->pid, -1);
        }
      if (row.file == NULL)
        row.file = g_hash_table_lookup (index.by_inode, &ikey);
      row.n_holders = l->holders->len - row.holders_at;
      for (guint j = i + 1; j < l->locks->len; j++)
        {
          const MaLock *w = &g_array_index (l->locks, MaLock, j);
          if (w->id != lock->id || w->depth == 0)
            break;
          row.n_waiters++;
        }
      if (row.n_waiters > 0)
        l->n_with_waiters++;
      row.key = (MaPageKey){ { lock->major, lock->minor, (gint64) MIN (lock->inode, G_MAXINT64),
                               (gint64) MIN (lock->start, G_MAXINT64), lock->type, lock->pid },
                             6 };
      g_array_append_val (l->rows, row);
    }
  g_hash_table_unref (index.by_key);
  g_hash_table_unref (index.by_inode);
  g_hash_table_unref (index.orphans);
}

static void
out_holder (Report *r, gint pid, gint fd)
{
  Out *o = &r->out;

  out_open (o, NULL, '{');
  out_process_members (r, pid);
  if (fd >= 0)
    out_int (o, "fd", fd);
  out_close (o, '}');
}

/* holders and waiters listed in one lock's entry (the rest are counted) */
#define LOCK_PEOPLE_LISTED 16

static void
out_lock_row (Report *r, Locks *l, const LockRow *row)
{
  Out *o = &r->out;
  const MaLock *lock = &g_array_index (l->locks, MaLock, row->index);
  guint32 devno = (guint32) makedev (lock->major, lock->minor);

  out_open (o, NULL, '{');
  out_int (o, "id", (gint64) lock->id);
  out_name (o, "type", ma_lock_type_to_string (lock->type));
  out_name (o, "mode", ma_lock_mode_to_string (lock->mode));
  out_string (o, "kind", lock->kind);
  out_key (o, "device");
  g_string_append_c (o->text, '"');
  append_int (o->text, lock->major);
  g_string_append_c (o->text, ':');
  append_int (o->text, lock->minor);
  g_string_append_c (o->text, '"');
  o->comma = TRUE;
  out_int (o, "inode", (gint64) lock->inode);
  out_range (o, lock);
  out_path (o, "mountpoint", mountpoint_for_devno (r, devno));
  out_path (o, "path", row->file != NULL ? ma_proc_scan_file_path (r->scan, row->file) : NULL);
  out_bool (o, "deleted", row->file != NULL && row->file->deleted);
  out_open (o, "holders", '[');
  for (guint j = 0; j < MIN (row->n_holders, LOCK_PEOPLE_LISTED); j++)
    {
      const Holder *h = &g_array_index (l->holders, Holder, row->holders_at + j);
      out_holder (r, h->pid, h->fd);
    }
  out_close (o, ']');
  out_open (o, "waiters", '[');
  for (guint j = 0; j < MIN (row->n_waiters, LOCK_PEOPLE_LISTED); j++)
    out_lock_waiter (r, &g_array_index (l->locks, MaLock, row->index + 1 + j));
  out_close (o, ']');
  /* a lock shared by thousands of processes, or waited for by thousands, stays one entry */
  if (row->n_holders > LOCK_PEOPLE_LISTED)
    out_int (o, "holders_total", row->n_holders);
  if (row->n_waiters > LOCK_PEOPLE_LISTED)
    out_int (o, "waiters_total", row->n_waiters);
  out_close (o, '}');
}

/* Worst first: waited for (most waiters first), then write locks, then /proc/locks order. */
static gint
compare_lock_rows_worst (gconstpointer a, gconstpointer b, gpointer data)
{
  const LockRow *x = *(const LockRow *const *) a, *y = *(const LockRow *const *) b;
  GArray *locks = data;
  gboolean xw = g_array_index (locks, MaLock, x->index).mode == MA_LOCK_MODE_WRITE;
  gboolean yw = g_array_index (locks, MaLock, y->index).mode == MA_LOCK_MODE_WRITE;

  if (x->n_waiters != y->n_waiters)
    return x->n_waiters > y->n_waiters ? -1 : 1;
  if (xw != yw)
    return xw ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

static gint
compare_lock_rows_page (gconstpointer a, gconstpointer b)
{
  const LockRow *x = a, *y = b;
  gint c = ma_page_key_compare (&x->key, &y->key);

  return c != 0 ? c : (x->index < y->index ? -1 : x->index > y->index);
}

static void
out_lock_at (Report *r, gpointer items, guint i, gpointer data)
{
  out_lock_row (r, data, ((LockRow **) items)[i]);
}

/* Per holder process: how many locks it holds, how many of them are waited for. */
typedef struct
{
  gint pid;
  guint locks;
  guint waited_for;
  guint write;
} HolderCount;

static gint
compare_holder_counts (gconstpointer a, gconstpointer b)
{
  const HolderCount *x = *(HolderCount *const *) a, *y = *(HolderCount *const *) b;

  if (x->waited_for != y->waited_for)
    return x->waited_for > y->waited_for ? -1 : 1;
  if (x->locks != y->locks)
    return x->locks > y->locks ? -1 : 1;
  return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void
out_holder_count_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  const HolderCount *h = ((HolderCount **) items)[i];

  out_open (o, NULL, '{');
  out_process_members (r, h->pid);
  out_int (o, "locks", h->locks);
  out_int (o, "write_locks", h->write);
  out_int (o, "waited_for", h->waited_for);
  out_close (o, '}');
}

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

/* The default reply's locks: all of them when they fit, else the worst first; then their
 * holders, one entry per process (the most waited-for first). */
static void
out_locks_summary (Report *r, Locks *l)
{
  Out *o = &r->out;
  g_autoptr(GPtrArray) order = g_ptr_array_sized_new (l->rows->len);
  g_autoptr(GHashTable) by_pid = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  g_autoptr(GPtrArray) counts = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer value;

  for (guint i = 0; i < l->rows->len; i++)
    g_ptr_array_add (order, &g_array_index (l->rows, LockRow, i));
  g_ptr_array_sort_with_data (order, compare_lock_rows_worst, l->locks);
  out_open (o, "locks", '[');
  r->locks_listed = out_entries (r, order->pdata, 0, order->len, G_MAXUINT, BUDGET_LOCKS,
                                 out_lock_at, l);
  out_close (o, ']');

  for (guint i = 0; i < l->rows->len; i++)
    {
      const LockRow *row = &g_array_index (l->rows, LockRow, i);
      const MaLock *lock = &g_array_index (l->locks, MaLock, row->index);
      for (guint j = 0; j < row->n_holders; j++)
        {
          gint pid = g_array_index (l->holders, Holder, row->holders_at + j).pid;
          HolderCount *h = g_hash_table_lookup (by_pid, GINT_TO_POINTER (pid));
          if (h == NULL)
            {
              h = g_new0 (HolderCount, 1);
              h->pid = pid;
              g_hash_table_insert (by_pid, GINT_TO_POINTER (pid), h);
            }
          h->locks++;
          h->write += lock->mode == MA_LOCK_MODE_WRITE;
          h->waited_for += row->n_waiters > 0;
        }
    }
  g_hash_table_iter_init (&iter, by_pid);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (counts, value);
  g_ptr_array_sort (counts, compare_holder_counts);
  r->lock_holders = counts->len;
  out_open (o, "lock_holders", '[');
  r->lock_holders_listed = out_entries (r, counts->pdata, 0, counts->len, G_MAXUINT,
                                        BUDGET_LOCK_HOLDERS, out_holder_count_at, NULL);
  out_close (o, ']');
}

/* ---- writers and stuck tasks ---- */

static void
out_writer_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  MaOpenFile *f = ((MaOpenFile **) items)[i];

  out_open (o, NULL, '{');
  out_process_members (r, f->pid);
  out_int (o, "fd", f->fd);
  out_path (o, "path", ma_proc_scan_file_path (r->scan, f));
  out_bool (o, "deleted", f->deleted);
  out_int (o, "size", (gint64) MIN (f->size, G_MAXINT64));
  out_path (o, "mountpoint", mountpoint_for_devno (r, f->devno));
  out_close (o, '}');
}

static void
out_group_common (Out *o, const MaWriterGroup *g)
{
  out_int (o, "fds", g->fds);
  out_int (o, "bytes", (gint64) MIN (g->bytes, G_MAXINT64));
  out_int (o, "deleted", g->deleted);
}

static void
out_mount_group_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  const MaWriterGroup *g = ((MaWriterGroup **) items)[i];
  guint32 devno = (guint32) g->key;
  g_autofree char *dev = g_strdup_printf ("%u:%u", major (devno), minor (devno));

  out_open (o, NULL, '{');
  out_path (o, "mountpoint", mountpoint_for_devno (r, devno));
  out_string (o, "device", dev);
  out_group_common (o, g);
  out_int (o, "processes", g->processes);
  out_open (o, "examples", '[');
  for (guint j = 0; j < g->examples->len; j++)
    {
      MaOpenFile *f = g->examples->pdata[j];
      out_open (o, NULL, '{');
      out_int (o, "pid", f->pid);
      out_int (o, "fd", f->fd);
      out_path (o, "path", ma_proc_scan_file_path (r->scan, f));
      out_close (o, '}');
    }
  out_close (o, ']');
  out_close (o, '}');
}

static void
out_process_group_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  const MaWriterGroup *g = ((MaWriterGroup **) items)[i];

  out_open (o, NULL, '{');
  out_process_members (r, (gint) g->key);
  out_group_common (o, g);
  out_int (o, "mounts", g->mounts);
  out_open (o, "examples", '[');
  for (guint j = 0; j < g->examples->len; j++)
    {
      MaOpenFile *f = g->examples->pdata[j];
      out_open (o, NULL, '{');
      out_int (o, "fd", f->fd);
      out_path (o, "path", ma_proc_scan_file_path (r->scan, f));
      out_path (o, "mountpoint", mountpoint_for_devno (r, f->devno));
      out_close (o, '}');
    }
  out_close (o, ']');
  out_close (o, '}');
}

/* The default reply's writers: the first few as before, then all of them aggregated. */
static void
out_writers_summary (Report *r)
{
  Out *o = &r->out;
  GPtrArray *writers = r->scan->writers;
  g_autoptr(MaWriterSummary) sum = ma_writer_summary_new (writers);

  out_open (o, "writers", '[');
  r->writers_listed = out_entries (r, writers->pdata, 0, writers->len, SUMMARY_WRITERS,
                                   BUDGET_WRITERS, out_writer_at, NULL);
  out_close (o, ']');
  out_open (o, "writers_by_mount", '[');
  r->writer_mounts_listed = out_entries (r, sum->by_mount->pdata, 0, sum->by_mount->len,
                                         G_MAXUINT, BUDGET_WRITERS_BY_MOUNT, out_mount_group_at,
                                         NULL);
  out_close (o, ']');
  out_open (o, "writers_by_process", '[');
  r->writer_processes_listed = out_entries (r, sum->by_process->pdata, 0, sum->by_process->len,
                                            G_MAXUINT, BUDGET_WRITERS_BY_PROCESS,
                                            out_process_group_at, NULL);
  out_close (o, ']');
  r->writer_processes = sum->processes;
  r->writer_mounts = sum->mounts;
  r->writer_bytes = sum->bytes;
  r->writers_deleted = sum->deleted;
}

static void
out_stuck_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  MaStuckTask *t = ((MaStuckTask **) items)[i];

  out_open (o, NULL, '{');
  out_process_members (r, t->pid);
  out_int (o, "tid", t->tid);
  out_path (o, "task_comm", t->comm);
  out_string (o, "wchan", t->wchan);
  if (t->syscall >= 0)
    {
      out_int (o, "syscall_nr", t->syscall);
      if (t->syscall_name != NULL)
        out_string (o, "syscall", t->syscall_name);
    }
  if (t->file != NULL)
    {
      out_int (o, "fd", t->file->fd);
      out_path (o, "path", ma_proc_scan_file_path (r->scan, t->file));
      out_path (o, "mountpoint", mountpoint_for_devno (r, t->file->devno));
    }
  out_bool (o, "waits_for_freeze", g_strcmp0 (t->wchan, MA_BLOCKERS_FREEZE_WAIT_WCHAN) == 0);
  out_close (o, '}');
}

/* The stuck tasks to report (a task blocked on a file of another filesystem is not ours),
 * in tid order, and how many of them wait for a freeze. */
static GPtrArray *
reported_stuck (Report *r, guint *n_freeze_waiters)
{
  GPtrArray *stuck = g_ptr_array_new ();

  *n_freeze_waiters = 0;
  for (guint i = 0; i < r->scan->stuck->len; i++)
    {
      MaStuckTask *t = r->scan->stuck->pdata[i];
      if (t->file != NULL && !devno_selected (r, t->file->devno))
        continue;
      g_ptr_array_add (stuck, t);
      if (g_strcmp0 (t->wchan, MA_BLOCKERS_FREEZE_WAIT_WCHAN) == 0)
        (*n_freeze_waiters)++;
    }
  return stuck;
}

/* ---- qemu-ga ---- */

static char *
find_virtio_port (const char *wanted)
{
  g_autofree char *dir_path = ma_path_build (ma_path_sysfs (), "class", "virtio-ports", NULL);
  g_autoptr(GDir) dir = g_dir_open (dir_path, 0, NULL);
  const char *entry;

  while (dir != NULL && (entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *name_path = g_build_filename (dir_path, entry, "name", NULL);
      g_autofree char *name = NULL;
      if (g_file_get_contents (name_path, &name, NULL, NULL)
          && g_strcmp0 (g_strchomp (name), wanted) == 0)
        return g_strdup (entry);
    }
  return NULL;
}

static void
out_qemu_ga (Report *r)
{
  Out *o = &r->out;
  g_autofree char *port = find_virtio_port (MA_QEMU_GA_PORT_NAME);
  g_autofree char *frozen_file = ma_path_build (ma_path_rundir (), MA_QEMU_GA_FROZEN_FILE, NULL);
  gboolean running = r->scan->qemu_ga_pids->len > 0;
  gboolean frozen = g_file_test (frozen_file, G_FILE_TEST_EXISTS);

  out_open (o, "qemu_ga", '{');
  out_bool (o, "running", running);
  out_open (o, "pids", '[');
  for (guint i = 0; i < r->scan->qemu_ga_pids->len; i++)
    out_int (o, NULL, g_array_index (r->scan->qemu_ga_pids, gint, i));
  out_close (o, ']');
  out_bool (o, "port_present", port != NULL);
  out_name (o, "port_name", MA_QEMU_GA_PORT_NAME);
  if (port != NULL)
    out_string (o, "port", port);
  out_path (o, "state_file", frozen_file);
  out_bool (o, "frozen", frozen);
  out_close (o, '}');

  if (frozen)
    add_reason (r, SEVERITY_BLOCKED, "qemu-ga-frozen", NULL,
                "qemu-ga believes the guest is frozen (%s exists): a new freeze fails until "
                "guest-fsfreeze-thaw",
                frozen_file);
  if (port != NULL && !running)
    add_reason (r, SEVERITY_BLOCKED, "qemu-ga-not-running", NULL,
                "the %s port is present but qemu-ga is not running: guest-fsfreeze-freeze "
                "will not be answered",
                MA_QEMU_GA_PORT_NAME);
}

static void
out_reason_at (Report *r, gpointer items, guint i, gpointer data)
{
  Out *o = &r->out;
  Reason *reason = ((Reason **) items)[i];

  out_open (o, NULL, '{');
  out_name (o, "severity", severity_names[reason->severity]);
  out_name (o, "code", reason->code);
  if (reason->mountpoint != NULL)
    out_string (o, "mountpoint", reason->mountpoint);
  /* the sentence may quote paths: kept valid UTF-8 */
  out_string (o, "message", reason->message);
  out_close (o, '}');
}

static gint
compare_reasons (gconstpointer a, gconstpointer b)
{
  const Reason *x = *(Reason *const *) a, *y = *(Reason *const *) b;

  return x->severity > y->severity ? -1 : x->severity < y->severity;
}

/* The worst first when they do not all fit (a list of many unfreezable mountpoints). */
static void
out_reasons (Report *r, gsize budget)
{
  Out *o = &r->out;
  gsize len;
  gboolean comma;

  out_open (o, "reasons", '[');
  len = o->text->len;
  comma = o->comma;
  r->reasons_listed = out_entries (r, r->reasons->pdata, 0, r->reasons->len, G_MAXUINT, budget,
                                   out_reason_at, NULL);
  if (r->reasons_listed < r->reasons->len)
    {
      g_string_truncate (o->text, len);
      o->comma = comma;
      g_ptr_array_sort (r->reasons, compare_reasons);
      r->reasons_listed = out_entries (r, r->reasons->pdata, 0, r->reasons->len, G_MAXUINT,
                                       budget, out_reason_at, NULL);
    }
  out_close (o, ']');
}

/* ---- the verdict on mounts ---- */

static void
judge_mounts (Report *r)
{
  GHashTableIter iter;
  gpointer key;

  g_hash_table_iter_init (&iter, r->selected);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      MaSuperblock *sb = key;
      if (sb->frozen)
        add_reason (r, SEVERITY_BLOCKED, "already-frozen", sb->primary->target,
                    "%s is already frozen (%s): freezing it again fails with EBUSY",
                    sb->primary->target, sb->reason);
      else if (!sb->freezable && r->explicit_selection)
        add_reason (r, SEVERITY_BLOCKED, "not-freezable", sb->primary->target,
                    "%s (%s) cannot be frozen: %s", sb->primary->target, sb->primary->fstype,
                    sb->reason);
    }
  /* qemu-ga freezes in reverse mount order: a nested filesystem it reaches after its
   * holder deadlocks the holder's flush */
  for (guint i = 0; i < r->mounts->nesting->len; i++)
    {
      MaMountNesting *n = r->mounts->nesting->pdata[i];
      guint inner_pos, outer_pos;

      if (!g_hash_table_contains (r->selected, n->inner)
          || !g_hash_table_contains (r->selected, n->outer)
          || !g_ptr_array_find (r->mounts->qga_order, n->inner, &inner_pos)
          || !g_ptr_array_find (r->mounts->qga_order, n->outer, &outer_pos))
        continue;
      if (outer_pos < inner_pos)
        add_reason (r, SEVERITY_BLOCKED, "freeze-order", n->inner->primary->target,
                    "qemu-ga would freeze %s before %s, but %s: the inner flush would hang; "
                    "freeze them in freeze_order (guest-fsfreeze-freeze-list, one at a time)",
                    n->outer->primary->target, n->inner->primary->target, n->via);
    }
}

static void
format_bytes (char *buf, gsize size, gint64 bytes)
{
  g_autofree char *s = g_format_size ((guint64) MAX (bytes, 0));
  g_strlcpy (buf, s, size);
}

/* ---- the whole report ---- */

static gboolean
select_mounts (Report *r, const char *const *mountpoints, GError **error)
{
  if (mountpoints == NULL || mountpoints[0] == NULL)
    {
      for (guint i = 0; i < r->mounts->superblocks->len; i++)
        {
          MaSuperblock *sb = r->mounts->superblocks->pdata[i];
          if (sb->freezable)
            g_hash_table_add (r->selected, sb);
        }
      return TRUE;
    }
  r->explicit_selection = TRUE;
  for (guint i = 0; mountpoints[i] != NULL; i++)
    {
      MaMount *m = ma_mount_table_find_target (r->mounts, mountpoints[i]);
      if (m == NULL)
        {
          g_autofree char *safe = ma_json_safe_string (mountpoints[i], -1, NULL);
          g_set_error (error, MA_ERROR, MA_ERROR_NOT_FOUND, "'%s' is not a mountpoint", safe);
          return FALSE;
        }
      g_hash_table_add (r->selected, m->sb);
    }
  return TRUE;
}

/* Whether a process exists, asked once per pid (a lock owner holds many locks). */
static gboolean
pid_alive (GHashTable *known, gint64 pid)
{
  gpointer value;
  char path[64];
  gboolean alive;

  if (g_hash_table_lookup_extended (known, GINT_TO_POINTER ((gint) pid), NULL, &value))
    return GPOINTER_TO_INT (value);
  g_snprintf (path, sizeof path, "%s/%" G_GINT64_FORMAT, ma_path_procfs (), pid);
  alive = access (path, F_OK) == 0;
  g_hash_table_insert (known, GINT_TO_POINTER ((gint) pid), GINT_TO_POINTER (alive));
  return alive;
}

static void
report_clear (Report *r)
{
  g_clear_pointer (&r->reasons, g_ptr_array_unref);
  g_clear_pointer (&r->processes, g_hash_table_unref);
  if (r->out.text != NULL)
    g_string_free (g_steal_pointer (&r->out.text), TRUE);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Report, report_clear)

static double
seconds_since (gint64 start_us)
{
  return (double) (g_get_monotonic_time () - start_us) / G_USEC_PER_SEC;
}

/* ---- pages ---- */

static void
out_page_lock_at (Report *r, gpointer items, guint i, gpointer data)
{
  out_lock_row (r, data, &((LockRow *) items)[i]);
}

/* One page of the entries of query->detail, in page order, starting after the cursor. */
static gboolean
out_page (Report *r, const MaBlockersQuery *query, Locks *l, GPtrArray *stuck, GError **error)
{
  Out *o = &r->out;
  MaPageKey cursor = { { 0 }, 0 };
  g_autofree MaPageKey *keys = NULL;
  g_autofree char *next = NULL;
  guint n = 0, from, written, n_fields = 1;
  guint limit = query->limit > 0 ? query->limit : MA_BLOCKERS_PAGE_DEFAULT;
  gpointer items = NULL;
  OutEntryFunc func = NULL;
  gpointer data = NULL;

  switch (query->detail)
    {
    case MA_BLOCKERS_DETAIL_LOCKS:
      g_array_sort (l->rows, compare_lock_rows_page);
      n = l->rows->len;
      keys = g_new (MaPageKey, MAX (n, 1));
      for (guint i = 0, rank = 0; i < n; i++)
        {
          /* locks that /proc/locks shows alike (two OFD read locks on one range) are told
           * apart by their rank among their likes */
          const MaPageKey *k = &g_array_index (l->rows, LockRow, i).key;
          rank = i > 0 && ma_page_key_compare (&g_array_index (l->rows, LockRow, i - 1).key, k) == 0
                   ? rank + 1
                   : 0;
          keys[i] = *k;
          keys[i].v[6] = rank;
          keys[i].n = 7;
        }
      items = l->rows->data;
      func = out_page_lock_at;
      data = l;
      n_fields = 7;
      break;
    case MA_BLOCKERS_DETAIL_WRITERS:
      n = r->scan->writers->len;
      keys = g_new (MaPageKey, MAX (n, 1));
      for (guint i = 0; i < n; i++)
        {
          MaOpenFile *f = r->scan->writers->pdata[i];
          keys[i] = (MaPageKey){ { f->pid, f->fd }, 2 };
        }
      items = r->scan->writers->pdata;
      func = out_writer_at;
      n_fields = 2;
      break;
    case MA_BLOCKERS_DETAIL_STUCK:
      n = stuck->len;
      keys = g_new (MaPageKey, MAX (n, 1));
      for (guint i = 0; i < n; i++)
        keys[i] = (MaPageKey){ { ((MaStuckTask *) stuck->pdata[i])->tid }, 1 };
      items = stuck->pdata;
      func = out_stuck_at;
      n_fields = 1;
      break;
    case MA_BLOCKERS_DETAIL_SUMMARY:
    default:
      g_assert_not_reached ();
    }
  if (query->cursor != NULL
      && !ma_page_cursor_parse (query->cursor, query->detail, n_fields, &cursor, error))
    return FALSE;
  from = ma_page_start (keys, n, query->cursor != NULL ? &cursor : NULL);
  out_open (o, ma_blockers_detail_to_string (query->detail), '[');
  written = out_entries (r, items, from, n, limit, MA_BLOCKERS_PAGE_BYTES, func, data);
  out_close (o, ']');
  if (written == 0 && from < n)
    {
      /* one entry alone passes a page: cannot happen with the bounded members (paths and
       * command lines are cut by the kernel's own limits), said rather than looping */
      g_set_error (error, MA_ERROR, MA_ERROR_TOO_LARGE, "entry %u of %s does not fit in a page",
                   from, ma_blockers_detail_to_string (query->detail));
      return FALSE;
    }
  if (from + written < n)
    next = ma_page_cursor_format (query->detail, &keys[from + written - 1]);
  out_open (o, "page", '{');
  out_name (o, "detail", ma_blockers_detail_to_string (query->detail));
  out_int (o, "limit", limit);
  out_string (o, "cursor", query->cursor);
  out_int (o, "total", n);
  out_int (o, "skipped", from);
  out_int (o, "returned", written);
  out_string (o, "next_cursor", next);
  out_close (o, '}');
  return TRUE;
}

static void
out_totals (Report *r, Locks *l, guint n_stuck, gboolean summary)
{
  Out *o = &r->out;
  guint n_writers = r->scan->writers->len;

  out_open (o, "totals", '{');
  out_open (o, "locks", '{');
  out_int (o, "total", l->rows->len);
  if (summary)
    out_int (o, "listed", r->locks_listed);
  out_int (o, "with_waiters", l->n_with_waiters);
  if (summary)
    {
      out_int (o, "holders", r->lock_holders);
      out_int (o, "holders_listed", r->lock_holders_listed);
    }
  out_close (o, '}');
  out_open (o, "writers", '{');
  out_int (o, "fds", n_writers);
  if (summary)
    {
      out_int (o, "listed", r->writers_listed);
      out_int (o, "processes", r->writer_processes);
      out_int (o, "processes_listed", r->writer_processes_listed);
      out_int (o, "mounts", r->writer_mounts);
      out_int (o, "mounts_listed", r->writer_mounts_listed);
      out_int (o, "bytes", (gint64) MIN (r->writer_bytes, G_MAXINT64));
      out_int (o, "deleted", r->writers_deleted);
    }
  out_close (o, '}');
  out_open (o, "stuck", '{');
  out_int (o, "total", n_stuck);
  if (summary)
    out_int (o, "listed", r->stuck_listed);
  out_close (o, '}');
  if (summary)
    {
      out_open (o, "mounts", '{');
      out_int (o, "total", r->mounts_total);
      out_int (o, "listed", r->mounts_listed);
      out_close (o, '}');
    }
  out_open (o, "reasons", '{');
  out_int (o, "total", r->reasons->len);
  out_int (o, "listed", r->reasons_listed);
  out_close (o, '}');
  out_close (o, '}');
  if (summary)
    out_bool (o, "complete",
              r->locks_listed == l->rows->len && r->lock_holders_listed == r->lock_holders
                && r->writers_listed == n_writers && r->writer_mounts_listed == r->writer_mounts
                && r->writer_processes_listed == r->writer_processes && r->stuck_listed == n_stuck
                && r->mounts_listed == r->mounts_total && r->order_listed == r->order_total
                && r->nesting_listed == r->mounts->nesting->len
                && r->reasons_listed == r->reasons->len);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Locks, locks_clear)

char *
ma_blockers_query_text (const MaBlockersQuery *query, GCancellable *cancellable, GError **error)
{
  g_autoptr(MaWritebackSample) wb_start = ma_writeback_sample_new ();
  g_autoptr(MaMountTable) mounts = NULL;
  g_autoptr(MaProcScan) scan = NULL;
  g_autoptr(GHashTable) selected = g_hash_table_new (NULL, NULL);
  g_autoptr(GHashTable) alive = g_hash_table_new (NULL, NULL);
  g_autoptr(GArray) locks = NULL;
  g_autoptr(GPtrArray) stuck = NULL;
  g_autoptr(JsonNode) writeback = NULL;
  g_autofree char *locks_path = ma_path_build (ma_path_procfs (), "locks", NULL);
  g_autofree char *locks_text = NULL;
  gsize locks_len = 0;
  guint n_bad_locks = 0, n_freeze_waiters = 0;
  gint64 started = g_get_monotonic_time (), mounts_read, locks_read, pass_started, scanned, reported;
  g_auto(Report) r = { 0 };
  g_auto(Locks) l = { 0 };
  gboolean summary = query->detail == MA_BLOCKERS_DETAIL_SUMMARY;
  Out *o;
  double sync_seconds;
  gint64 dirty = 0, writeback_bytes = 0;

  mounts = ma_mount_table_load (error);
  if (mounts == NULL)
    return NULL;
  mounts_read = g_get_monotonic_time ();
  r.mounts = mounts;
  r.selected = selected;
  r.reasons = g_ptr_array_new_with_free_func ((GDestroyNotify) reason_free);
  r.processes = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  if (!select_mounts (&r, query->mountpoints, error))
    return NULL;
  if (query->cursor != NULL && summary)
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "Parameter 'cursor' needs 'detail' (locks, writers or stuck)");
      return NULL;
    }

  /* /proc/locks takes a global lock in the kernel: read it once */
  if (!g_file_get_contents (locks_path, &locks_text, &locks_len, error))
    return NULL;
  locks = ma_locks_parse (locks_text, locks_len, &n_bad_locks);
  locks_read = g_get_monotonic_time ();

  scan = ma_proc_scan_new (mounts);
  r.scan = scan;
  {
    GHashTableIter iter;
    gpointer key;
    g_hash_table_iter_init (&iter, selected);
    while (g_hash_table_iter_next (&iter, &key, NULL))
      {
        MaSuperblock *sb = key;
        g_hash_table_add (scan->selected_devs, GUINT_TO_POINTER (makedev (sb->major, sb->minor)));
      }
  }
  for (guint i = 0; i < locks->len; i++)
    {
      const MaLock *lock = &g_array_index (locks, MaLock, i);
      guint32 devno = (guint32) makedev (lock->major, lock->minor);
      MaFileKey *key;

      if (!lock->has_inode
          || !g_hash_table_contains (scan->selected_devs, GUINT_TO_POINTER (devno)))
        continue;
      /* owners and waiters are described during the pass */
      if (lock->pid > 0 && lock->pid <= G_MAXINT)
        g_hash_table_add (scan->describe_pids, GINT_TO_POINTER ((gint) lock->pid));
      if (lock->depth > 0)
        continue;
      key = g_new (MaFileKey, 1);
      if (lock->pid > 0 && pid_alive (alive, lock->pid))
        {
          *key = (MaFileKey){ lock->inode, devno, (gint32) lock->pid };
          g_hash_table_add (scan->wanted, key);
        }
      else
        {
          /* OFD (pid -1) or an owner that exited: the holders are found through fdinfo */
          *key = (MaFileKey){ lock->inode, 0, 0 };
          g_hash_table_add (scan->orphan_inodes, key);
        }
    }
  pass_started = g_get_monotonic_time ();
  if (!ma_proc_scan_run (scan, cancellable, error))
    return NULL;
  scanned = g_get_monotonic_time ();

  /* writers blocked by a freeze in progress: that filesystem is frozen already */
  for (guint i = 0; i < scan->stuck->len; i++)
    {
      MaStuckTask *t = scan->stuck->pdata[i];
      MaSuperblock *sb;
      if (t->file == NULL || g_strcmp0 (t->wchan, MA_BLOCKERS_FREEZE_WAIT_WCHAN) != 0)
        continue;
      sb = sb_for_devno (&r, t->file->devno);
      if (sb != NULL && !sb->frozen)
        {
          g_autofree char *evidence = g_strdup_printf ("pid %d waits in %s", t->pid, t->wchan);
          ma_mount_table_mark_frozen (mounts, sb, evidence);
        }
    }
  l.locks = locks;
  find_lock_holders (&r, &l);
  stuck = reported_stuck (&r, &n_freeze_waiters);

  r.out.text = g_string_sized_new (summary ? MA_BLOCKERS_MAX_REPLY_BYTES / 4 : 65536);
  o = &r.out;
  out_open (o, NULL, '{');
  out_name (o, "detail", ma_blockers_detail_to_string (query->detail));
  if (summary)
    {
      out_mounts (&r, BUDGET_MOUNTS);
      out_freeze_order (&r, BUDGET_ORDER);
      out_nesting (&r, BUDGET_NESTING);
      out_locks_summary (&r, &l);
      out_writers_summary (&r);
      out_open (o, "stuck", '[');
      r.stuck_listed = out_entries (&r, stuck->pdata, 0, stuck->len, SUMMARY_STUCK, BUDGET_STUCK,
                                    out_stuck_at, NULL);
      out_close (o, ']');
    }
  else if (!out_page (&r, query, &l, stuck, error))
    return NULL;
  reported = g_get_monotonic_time ();
  writeback = ma_writeback_report (wb_start, cancellable);
  out_node (o, "writeback", writeback);
  out_qemu_ga (&r);

  /* the verdict */
  judge_mounts (&r);
  if (n_freeze_waiters > 0)
    add_reason (&r, SEVERITY_BLOCKED, "freeze-in-progress", NULL,
                "%u task(s) wait in %s: a freeze is already in progress or stuck", n_freeze_waiters,
                MA_BLOCKERS_FREEZE_WAIT_WCHAN);
  if (stuck->len > n_freeze_waiters)
    {
      MaStuckTask *t = NULL;
      for (guint i = 0; i < stuck->len && t == NULL; i++)
        {
          MaStuckTask *c = stuck->pdata[i];
          if (g_strcmp0 (c->wchan, MA_BLOCKERS_FREEZE_WAIT_WCHAN) != 0)
            t = c;
        }
      add_reason (&r, SEVERITY_SLOW, "stuck-tasks", NULL,
                  "%u task(s) are in uninterruptible sleep (e.g. pid %d %s in %s): the freeze "
                  "waits for their I/O",
                  stuck->len - n_freeze_waiters, t ? t->pid : 0, t ? t->comm : "?",
                  t && t->wchan ? t->wchan : "an unknown kernel function");
    }
  sync_seconds = ma_writeback_report_get_sync_seconds (writeback);
  ma_json_get_int (json_node_get_object (writeback), "dirty_bytes", &dirty, NULL);
  ma_json_get_int (json_node_get_object (writeback), "writeback_bytes", &writeback_bytes, NULL);
  if (sync_seconds > MA_BLOCKERS_SLOW_SYNC_SECONDS)
    {
      char size[64];
      format_bytes (size, sizeof size, dirty + writeback_bytes);
      add_reason (&r, SEVERITY_SLOW, "dirty-data", NULL,
                  "%s of dirty data must be flushed first: about %.1f s", size, sync_seconds);
    }
  if (scan->writers->len > 0)
    {
      MaOpenFile *w = scan->writers->pdata[0];
      MaProcInfo *info = ma_proc_scan_describe (scan, w->pid);
      const char *path = ma_proc_scan_file_path (scan, w);
      add_reason (&r, SEVERITY_INFO, "writers", NULL,
                  "%u file(s) are open for writing (e.g. %s by pid %d %s): those writes stall "
                  "while frozen",
                  scan->writers->len, path ? path : "?", w->pid,
                  info != NULL ? info->comm : "(exited)");
    }
  if (l.rows->len > 0)
    add_reason (&r, SEVERITY_INFO, "locks", NULL,
                "%u lock(s) are held on these filesystems, %u with waiters: their holders keep "
                "them across a freeze",
                l.rows->len, l.n_with_waiters);
  if (g_hash_table_size (selected) == 0)
    add_reason (&r, SEVERITY_INFO, "nothing-to-freeze", NULL,
                "no mounted filesystem supports freezing");

  out_name (o, "verdict", verdict_names[r.verdict]);
  out_reasons (&r, BUDGET_REASONS);
  out_totals (&r, &l, stuck->len, summary);
  out_open (o, "scan", '{');
  out_int (o, "processes", scan->n_processes);
  out_int (o, "tasks", scan->n_tasks);
  out_int (o, "fds", scan->n_fds);
  out_int (o, "fds_resolved", g_atomic_int_get (&scan->n_statx));
  out_int (o, "vanished", scan->n_vanished);
  out_int (o, "lock_lines", locks->len);
  out_int (o, "lock_lines_unparsed", n_bad_locks);
  out_int (o, "mountinfo_lines_unparsed", mounts->n_bad_lines);
  out_double (o, "scan_seconds", scan->seconds);
  out_double (o, "seconds", seconds_since (started));
  out_close (o, '}');
  out_close (o, '}');
  g_debug ("blockers: %u locks, %u fds; seconds: mounts %.3f, /proc/locks %.3f, keys %.3f, "
           "pass %.3f, report text %.3f (%" G_GSIZE_FORMAT " bytes), writeback and verdict %.3f",
           l.rows->len, scan->n_fds, (double) (mounts_read - started) / G_USEC_PER_SEC,
           (double) (locks_read - mounts_read) / G_USEC_PER_SEC,
           (double) (pass_started - locks_read) / G_USEC_PER_SEC,
           (double) (scanned - pass_started) / G_USEC_PER_SEC,
           (double) (reported - scanned) / G_USEC_PER_SEC, o->text->len, seconds_since (reported));
  if (o->text->len > MA_BLOCKERS_MAX_REPLY_BYTES - 4096)
    {
      /* the budgets above make this unreachable; a bug must not become a 16 MiB reply */
      g_set_error (error, MA_ERROR, MA_ERROR_TOO_LARGE,
                   "the blockers report grew to %" G_GSIZE_FORMAT " bytes, over its bound",
                   o->text->len);
      return NULL;
    }
  return g_string_free (g_steal_pointer (&r.out.text), FALSE);
}

char *
ma_blockers_collect_text (const char *const *mountpoints, GCancellable *cancellable,
                          GError **error)
{
  MaBlockersQuery query = { mountpoints, MA_BLOCKERS_DETAIL_SUMMARY, 0, NULL };

  return ma_blockers_query_text (&query, cancellable, error);
}

JsonNode *
ma_blockers_collect (const char *const *mountpoints, GCancellable *cancellable, GError **error)
{
  g_autofree char *text = ma_blockers_collect_text (mountpoints, cancellable, error);

  if (text == NULL)
    return NULL;
  return ma_json_parse (text, strlen (text), error);
}

/* ---- the command ---- */

typedef struct
{
  char **mountpoints;
  MaBlockersDetail detail;
  guint limit;
  char *cursor;
} BlockersArgs;

static void
blockers_args_free (BlockersArgs *args)
{
  g_strfreev (args->mountpoints);
  g_free (args->cursor);
  g_free (args);
}

static void
blockers_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  BlockersArgs *args = task_data;
  MaBlockersQuery query = { (const char *const *) args->mountpoints, args->detail, args->limit,
                            args->cursor };
  GError *error = NULL;
  char *text = ma_blockers_query_text (&query, cancellable, &error);

  /* the reply goes out as written: no json-glib tree for tens of thousands of locks */
  if (text == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, ma_json_new_raw_node (text), (GDestroyNotify) json_node_unref);
}

static void
blockers_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr(MaCall) call = user_data;
  GError *error = NULL;
  JsonNode *ret = g_task_propagate_pointer (G_TASK (result), &error);

  if (ret == NULL)
    ma_call_return_error (call, error);
  else
    ma_call_return (call, ret);
}

/* detail, limit and cursor; FALSE with a GenericError naming the member. */
static gboolean
parse_page_arguments (JsonObject *arguments, BlockersArgs *args, GError **error)
{
  const char *detail = NULL, *cursor = NULL;
  gint64 limit = 0;

  if (!ma_json_get_string (arguments, "detail", &detail, error)
      || !ma_json_get_string (arguments, "cursor", &cursor, error)
      || !ma_json_get_int (arguments, "limit", &limit, error))
    return FALSE;
  if (detail != NULL && !ma_blockers_detail_from_string (detail, &args->detail))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "Parameter 'detail' expects summary, locks, writers or stuck");
      return FALSE;
    }
  if (json_object_has_member (arguments, "limit")
      && (limit < 1 || limit > MA_BLOCKERS_PAGE_MAX))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "Parameter 'limit' expects an integer from 1 to %d", MA_BLOCKERS_PAGE_MAX);
      return FALSE;
    }
  if (args->detail == MA_BLOCKERS_DETAIL_SUMMARY
      && (cursor != NULL || json_object_has_member (arguments, "limit")))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                           "Parameters 'limit' and 'cursor' need 'detail' (locks, writers or "
                           "stuck)");
      return FALSE;
    }
  args->limit = (guint) limit;
  args->cursor = g_strdup (cursor);
  return TRUE;
}

static void
cmd_blockers (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "mountpoints", "detail", "limit", "cursor", NULL };
  g_autoptr(GTask) task = NULL;
  BlockersArgs *args;
  GError *error = NULL;

  if (!ma_call_check_arguments (call, allowed))
    return;
  args = g_new0 (BlockersArgs, 1);
  if (!ma_json_get_strv (ma_call_get_arguments (call), "mountpoints", &args->mountpoints, &error)
      || !parse_page_arguments (ma_call_get_arguments (call), args, &error))
    {
      blockers_args_free (args);
      ma_call_return_error (call, error);
      return;
    }
  task = g_task_new (NULL, NULL, blockers_done, ma_call_ref (call));
  g_task_set_source_tag (task, cmd_blockers);
  g_task_set_task_data (task, args, (GDestroyNotify) blockers_args_free);
  g_task_run_in_thread (task, blockers_thread);
}

static const MaCommandSpec blockers_commands[] = {
  { "blockers", cmd_blockers,
    "what will make a filesystem freeze slow or fail: locks, writers, stuck tasks, mounts, "
    "dirty data" },
  { NULL }
};

static const char *const blockers_capabilities[] = { "blockers", NULL };

static const MaModuleClass blockers_module = {
  .name = "blockers",
  .commands = blockers_commands,
  .capabilities = blockers_capabilities,
};

gboolean
ma_blockers_register (MaAgent *agent, GError **error)
{
  ma_agent_add_module (agent, &blockers_module, NULL);
  return TRUE;
}
