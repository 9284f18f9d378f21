/* blockers-locks.c — the held locks of a `blockers` report: their holders (the owner's fd or
 * the open files whose fdinfo lists them), their entries and the worst of them for the summary. */
#include "blockers-private.h"

#include <sys/sysmacros.h>

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
      for (guint k = 0; k < f->fdinfo->locks->len; k++)
        {
          const MaLock *line = &g_array_index (f->fdinfo->locks, MaLock, k);
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


void
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
void
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
              for (guint k = 0; k < of->fdinfo->locks->len; k++)
                if (fdinfo_lock_matches (lock, &g_array_index (of->fdinfo->locks, MaLock, k)))
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

/* The default reply's locks: all of them when they fit, else the worst first; then their
 * holders, one entry per process (the most waited-for first). */
void
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

/* ---- pages ---- */

MaPageKey *
lock_page_keys (Locks *l)
{
  guint n = l->rows->len;
  MaPageKey *keys = g_new (MaPageKey, MAX (n, 1));

  g_array_sort (l->rows, compare_lock_rows_page);
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
  return keys;
}

void
out_page_lock_at (Report *r, gpointer items, guint i, gpointer data)
{
  out_lock_row (r, data, &((LockRow *) items)[i]);
}
