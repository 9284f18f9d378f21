/* blockers-reply.c — a `blockers` reply written as JSON text within its budgets: mounts,
 * writers, stuck tasks, reasons, detail pages and totals (the locks are blockers-locks.c's). */
#include "blockers-private.h"

#include <sys/sysmacros.h>

#include "json.h"

static const char *const severity_names[] = { "info", "slow", "blocked" };

/* ---- writing JSON text ---- */

void
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
void
out_open (Out *o, const char *key, char bracket)
{
  out_key (o, key);
  g_string_append_c (o->text, bracket);
}

void
out_close (Out *o, char bracket)
{
  g_string_append_c (o->text, bracket);
  o->comma = TRUE;
}

void
out_literal (Out *o, const char *key, const char *literal)
{
  out_key (o, key);
  g_string_append (o->text, literal);
  o->comma = TRUE;
}

void
out_bool (Out *o, const char *key, gboolean value)
{
  out_literal (o, key, value ? "true" : "false");
}

/* Decimal digits without printf: a report has ten numbers per lock. */
void
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

void
out_int (Out *o, const char *key, gint64 value)
{
  out_key (o, key);
  append_int (o->text, value);
  o->comma = TRUE;
}

void
out_double (Out *o, const char *key, double value)
{
  out_key (o, key);
  ma_json_append_double (o->text, value);
  o->comma = TRUE;
}

/* A name of this program's own (lock types, severities): plain ASCII, nothing to check. */
void
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
void
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
void
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
void
out_node (Out *o, const char *key, JsonNode *node)
{
  g_autofree char *text = ma_json_to_string (node);

  out_literal (o, key, text);
}

guint
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

MaSuperblock *
sb_for_devno (Report *r, guint32 devno)
{
  return ma_mount_table_lookup_dev (r->mounts, major (devno), minor (devno));
}

const char *
mountpoint_for_devno (Report *r, guint32 devno)
{
  MaSuperblock *sb = sb_for_devno (r, devno);

  return sb != NULL ? sb->primary->target : NULL;
}

gboolean
devno_selected (Report *r, guint32 devno)
{
  MaSuperblock *sb = sb_for_devno (r, devno);

  return sb != NULL && g_hash_table_contains (r->selected, sb);
}

/* ---- processes ---- */

/* "pid", then who it is ("exited": true when it is gone); written once per process. */
void
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
void
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

void
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

void
out_nesting (Report *r, gsize budget)
{
  Out *o = &r->out;

  out_open (o, "nesting", '[');
  r->nesting_listed = out_entries (r, r->mounts->nesting->pdata, 0, r->mounts->nesting->len,
                                   G_MAXUINT, budget, out_nesting_at, NULL);
  out_close (o, ']');
}
/* ---- writers and stuck tasks ---- */

void
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
void
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

void
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
GPtrArray *
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

/* ---- reasons ---- */

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
void
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

/* ---- pages ---- */

/* One page of the entries of query->detail, in page order, starting after the cursor. */
gboolean
out_page (Report *r, const MaBlockersQuery *query, Locks *l, GPtrArray *stuck,
          GError **error)
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
      keys = lock_page_keys (l);
      n = l->rows->len;
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

void
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
