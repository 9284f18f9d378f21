/* blockers.c — the `blockers` command: what will make a filesystem freeze slow or fail
 * (locks, writers, stuck tasks, unfreezable mounts, dirty data, qemu-ga) and the verdict. */
#include "blockers.h"

#include <errno.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

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

typedef struct
{
  MaMountTable *mounts;
  MaProcScan *scan;
  GHashTable *selected;     /* MaSuperblock* set */
  gboolean explicit_selection;
  GPtrArray *reasons;       /* Reason* */
  Severity verdict;
  GHashTable *processes;    /* pid → the members describing it, as text */
  Out out;
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
  if (append_safe (o->text, path))
    {
      g_string_append_printf (o->text, ",\"%s_escaped\":true", key);
    }
}

/* A JSON value made elsewhere, as a member. */
static void
out_node (Out *o, const char *key, JsonNode *node)
{
  g_autofree char *text = ma_json_to_string (node);

  out_literal (o, key, text);
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
out_mounts (Report *r)
{
  Out *o = &r->out;

  out_open (o, "mounts", '[');
  for (guint i = 0; i < r->mounts->superblocks->len; i++)
    {
      MaSuperblock *sb = r->mounts->superblocks->pdata[i];
      for (guint j = 0; j < sb->mounts->len; j++)
        {
          MaMount *m = sb->mounts->pdata[j];
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
    }
  out_close (o, ']');
}

static void
out_freeze_order (Report *r)
{
  Out *o = &r->out;

  out_open (o, "freeze_order", '[');
  for (guint i = 0; i < r->mounts->freeze_order->len; i++)
    {
      MaSuperblock *sb = r->mounts->freeze_order->pdata[i];
      if (g_hash_table_contains (r->selected, sb))
        out_string (o, NULL, sb->primary->target);
    }
  out_close (o, ']');
}

static void
out_nesting (Report *r)
{
  Out *o = &r->out;

  out_open (o, "nesting", '[');
  for (guint i = 0; i < r->mounts->nesting->len; i++)
    {
      MaMountNesting *n = r->mounts->nesting->pdata[i];
      out_open (o, NULL, '{');
      out_path (o, "inner", n->inner->primary->target);
      out_path (o, "outer", n->outer->primary->target);
      out_path (o, "via", n->via);
      out_close (o, '}');
    }
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

static void
add_holder (GArray *holders, gint pid, gint fd)
{
  Holder h = { pid, fd };

  g_array_append_val (holders, h);
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

static void
out_locks (Report *r, GArray *locks, guint *n_locks, guint *n_with_waiters)
{
  Out *o = &r->out;
  FileIndex index = {
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL),
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL),
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free,
                           (GDestroyNotify) g_ptr_array_unref),
  };

  g_autoptr(GArray) holders = g_array_new (FALSE, FALSE, sizeof (Holder));

  index_files (&index, r->scan->orphan_files);
  index_files (&index, r->scan->lock_files);
  index_orphans (&index, r->scan->orphan_files);
  out_open (o, "locks", '[');
  for (guint i = 0; i < locks->len; i++)
    {
      const MaLock *lock = &g_array_index (locks, MaLock, i);
      guint32 devno = (guint32) makedev (lock->major, lock->minor);
      MaFileKey key = { lock->inode, devno, (gint32) lock->pid };
      MaFileKey ikey = { lock->inode, devno, 0 };
      MaOpenFile *file;
      guint n_waiters = 0;

      if (lock->depth > 0 || !lock->has_inode || !devno_selected (r, devno))
        continue;
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

      /* holders: the owner's fd (pid from /proc/locks), or every open file whose fdinfo lists it */
      g_array_set_size (holders, 0);
      file = lock->pid > 0 ? g_hash_table_lookup (index.by_key, &key) : NULL;
      if (file != NULL)
        add_holder (holders, file->pid, file->fd);
      else
        {
          GPtrArray *candidates = g_hash_table_lookup (index.orphans, &ikey);
          for (guint j = 0; candidates != NULL && j < candidates->len; j++)
            {
              MaOpenFile *of = candidates->pdata[j];
              for (guint k = 0; k < of->fdinfo.locks->len; k++)
                if (fdinfo_lock_matches (lock, &g_array_index (of->fdinfo.locks, MaLock, k)))
                  {
                    add_holder (holders, of->pid, of->fd);
                    file = file != NULL ? file : of;
                    break;
                  }
            }
          /* the owner is known but no fd of its own holds the file (shared, inherited) */
          if (holders->len == 0 && lock->pid > 0)
            add_holder (holders, (gint) lock->pid, -1);
        }
      if (file == NULL)
        file = g_hash_table_lookup (index.by_inode, &ikey);
      out_path (o, "path", file != NULL ? file->path : NULL);
      out_bool (o, "deleted", file != NULL && file->deleted);
      out_open (o, "holders", '[');
      for (guint j = 0; j < holders->len; j++)
        {
          const Holder *h = &g_array_index (holders, Holder, j);
          out_holder (r, h->pid, h->fd);
        }
      out_close (o, ']');

      out_open (o, "waiters", '[');
      for (guint j = i + 1; j < locks->len; j++)
        {
          const MaLock *w = &g_array_index (locks, MaLock, j);
          if (w->id != lock->id || w->depth == 0)
            break;
          out_lock_waiter (r, w);
          n_waiters++;
        }
      out_close (o, ']');
      if (n_waiters > 0)
        (*n_with_waiters)++;
      out_close (o, '}');
      (*n_locks)++;
    }
  out_close (o, ']');
  g_hash_table_unref (index.by_key);
  g_hash_table_unref (index.by_inode);
  g_hash_table_unref (index.orphans);
}

/* ---- writers and stuck tasks ---- */

static void
out_writers (Report *r)
{
  Out *o = &r->out;

  out_open (o, "writers", '[');
  for (guint i = 0; i < r->scan->writers->len; i++)
    {
      MaOpenFile *f = r->scan->writers->pdata[i];
      out_open (o, NULL, '{');
      out_process_members (r, f->pid);
      out_int (o, "fd", f->fd);
      out_path (o, "path", f->path);
      out_bool (o, "deleted", f->deleted);
      out_path (o, "mountpoint", mountpoint_for_devno (r, f->devno));
      out_close (o, '}');
    }
  out_close (o, ']');
}

static void
out_stuck (Report *r, guint *n_stuck, guint *n_freeze_waiters)
{
  Out *o = &r->out;

  out_open (o, "stuck", '[');
  for (guint i = 0; i < r->scan->stuck->len; i++)
    {
      MaStuckTask *t = r->scan->stuck->pdata[i];
      gboolean freeze_wait = g_strcmp0 (t->wchan, MA_BLOCKERS_FREEZE_WAIT_WCHAN) == 0;

      /* a task blocked on a file of another filesystem is not ours to report */
      if (t->file != NULL && !devno_selected (r, t->file->devno))
        continue;
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
          out_path (o, "path", t->file->path);
          out_path (o, "mountpoint", mountpoint_for_devno (r, t->file->devno));
        }
      out_bool (o, "waits_for_freeze", freeze_wait);
      out_close (o, '}');
      (*n_stuck)++;
      if (freeze_wait)
        (*n_freeze_waiters)++;
    }
  out_close (o, ']');
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
out_reasons (Report *r)
{
  Out *o = &r->out;

  out_open (o, "reasons", '[');
  for (guint i = 0; i < r->reasons->len; i++)
    {
      Reason *reason = r->reasons->pdata[i];
      out_open (o, NULL, '{');
      out_name (o, "severity", severity_names[reason->severity]);
      out_name (o, "code", reason->code);
      if (reason->mountpoint != NULL)
        out_string (o, "mountpoint", reason->mountpoint);
      /* the sentence may quote paths: kept valid UTF-8 */
      out_string (o, "message", reason->message);
      out_close (o, '}');
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

char *
ma_blockers_collect_text (const char *const *mountpoints, GCancellable *cancellable,
                          GError **error)
{
  g_autoptr(MaWritebackSample) wb_start = ma_writeback_sample_new ();
  g_autoptr(MaMountTable) mounts = NULL;
  g_autoptr(MaProcScan) scan = NULL;
  g_autoptr(GHashTable) selected = g_hash_table_new (NULL, NULL);
  g_autoptr(GHashTable) alive = g_hash_table_new (NULL, NULL);
  g_autoptr(GArray) locks = NULL;
  g_autoptr(JsonNode) writeback = NULL;
  g_autofree char *locks_path = ma_path_build (ma_path_procfs (), "locks", NULL);
  g_autofree char *locks_text = NULL;
  gsize locks_len = 0;
  guint n_bad_locks = 0, n_locks = 0, n_with_waiters = 0, n_stuck = 0, n_freeze_waiters = 0;
  gint64 started = g_get_monotonic_time (), mounts_read, locks_read, pass_started, scanned, reported;
  g_auto(Report) r = { 0 };
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
  if (!select_mounts (&r, mountpoints, error))
    return NULL;

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

  /* about 400 bytes per lock */
  r.out.text = g_string_sized_new (65536 + (gsize) locks->len * 512);
  o = &r.out;
  out_open (o, NULL, '{');
  out_mounts (&r);
  out_freeze_order (&r);
  out_nesting (&r);
  out_locks (&r, locks, &n_locks, &n_with_waiters);
  out_writers (&r);
  out_stuck (&r, &n_stuck, &n_freeze_waiters);
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
  if (n_stuck > n_freeze_waiters)
    {
      MaStuckTask *t = NULL;
      for (guint i = 0; i < scan->stuck->len && t == NULL; i++)
        {
          MaStuckTask *c = scan->stuck->pdata[i];
          if (g_strcmp0 (c->wchan, MA_BLOCKERS_FREEZE_WAIT_WCHAN) != 0
              && (c->file == NULL || devno_selected (&r, c->file->devno)))
            t = c;
        }
      add_reason (&r, SEVERITY_SLOW, "stuck-tasks", NULL,
                  "%u task(s) are in uninterruptible sleep (e.g. pid %d %s in %s): the freeze "
                  "waits for their I/O",
                  n_stuck - n_freeze_waiters, t ? t->pid : 0, t ? t->comm : "?",
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
      add_reason (&r, SEVERITY_INFO, "writers", NULL,
                  "%u file(s) are open for writing (e.g. %s by pid %d %s): those writes stall "
                  "while frozen",
                  scan->writers->len, w->path ? w->path : "?", w->pid,
                  info != NULL ? info->comm : "(exited)");
    }
  if (n_locks > 0)
    add_reason (&r, SEVERITY_INFO, "locks", NULL,
                "%u lock(s) are held on these filesystems, %u with waiters: their holders keep "
                "them across a freeze",
                n_locks, n_with_waiters);
  if (g_hash_table_size (selected) == 0)
    add_reason (&r, SEVERITY_INFO, "nothing-to-freeze", NULL,
                "no mounted filesystem supports freezing");

  out_name (o, "verdict", verdict_names[r.verdict]);
  out_reasons (&r);
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
           n_locks, scan->n_fds, (double) (mounts_read - started) / G_USEC_PER_SEC,
           (double) (locks_read - mounts_read) / G_USEC_PER_SEC,
           (double) (pass_started - locks_read) / G_USEC_PER_SEC,
           (double) (scanned - pass_started) / G_USEC_PER_SEC,
           (double) (reported - scanned) / G_USEC_PER_SEC, o->text->len, seconds_since (reported));
  return g_string_free (g_steal_pointer (&r.out.text), FALSE);
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

static void
blockers_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;
  char *text = ma_blockers_collect_text ((const char *const *) task_data, cancellable, &error);

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

static void
cmd_blockers (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "mountpoints", NULL };
  g_autoptr(GTask) task = NULL;
  g_auto(GStrv) mountpoints = NULL;
  GError *error = NULL;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!ma_json_get_strv (ma_call_get_arguments (call), "mountpoints", &mountpoints, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  task = g_task_new (NULL, NULL, blockers_done, ma_call_ref (call));
  g_task_set_source_tag (task, cmd_blockers);
  g_task_set_task_data (task, g_steal_pointer (&mountpoints), (GDestroyNotify) g_strfreev);
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
