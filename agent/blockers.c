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
#define MA_BLOCKERS_MAX_EXAMPLES 3

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
  MaMountTable *mounts;
  MaProcScan *scan;
  GHashTable *selected;     /* MaSuperblock* set */
  gboolean explicit_selection;
  JsonArray *reasons;
  Severity verdict;
} Report;

static void
add_reason (Report *r, Severity severity, const char *code, const char *mountpoint,
            const char *format, ...) G_GNUC_PRINTF (5, 6);

static void
add_reason (Report *r, Severity severity, const char *code, const char *mountpoint,
            const char *format, ...)
{
  JsonObject *obj = json_object_new ();
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  json_object_set_string_member (obj, "severity", severity_names[severity]);
  json_object_set_string_member (obj, "code", code);
  if (mountpoint != NULL)
    {
      g_autofree char *safe = ma_json_safe_string (mountpoint, -1, NULL);
      json_object_set_string_member (obj, "mountpoint", safe);
    }
  {
    /* the sentence may quote paths: keep it valid UTF-8 */
    g_autofree char *safe = ma_json_safe_string (message, -1, NULL);
    json_object_set_string_member (obj, "message", safe);
  }
  json_array_add_element (r->reasons, ma_json_new_object_node (obj));
  r->verdict = MAX (r->verdict, severity);
}

/* A path member, escaped losslessly; "<member>_escaped": true says the \xNN form is used. */
static void
set_path (JsonObject *obj, const char *member, const char *path)
{
  g_autofree char *safe = NULL;
  gboolean escaped = FALSE;

  if (path == NULL)
    {
      json_object_set_null_member (obj, member);
      return;
    }
  safe = ma_json_safe_string (path, -1, &escaped);
  json_object_set_string_member (obj, member, safe);
  if (escaped)
    {
      g_autofree char *flag = g_strdup_printf ("%s_escaped", member);
      json_object_set_boolean_member (obj, flag, TRUE);
    }
}

static char *
devno_string (guint32 devno)
{
  return g_strdup_printf ("%u:%u", major (devno), minor (devno));
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

static void
add_process_members (Report *r, JsonObject *obj, gint pid)
{
  MaProcInfo *info = pid > 0 ? ma_proc_scan_describe (r->scan, pid) : NULL;

  json_object_set_int_member (obj, "pid", pid);
  if (info == NULL)
    {
      json_object_set_boolean_member (obj, "exited", TRUE);
      return;
    }
  set_path (obj, "comm", info->comm);
  set_path (obj, "cmdline", info->cmdline);
  if (info->unit != NULL)
    set_path (obj, "unit", info->unit);
  if (info->cgroup != NULL)
    set_path (obj, "cgroup", info->cgroup);
  if (info->foreign_mnt_ns)
    json_object_set_string_member (obj, "mount_namespace", info->mnt_ns);
}

/* ---- mounts ---- */

static JsonNode *
mounts_to_json (Report *r)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < r->mounts->superblocks->len; i++)
    {
      MaSuperblock *sb = r->mounts->superblocks->pdata[i];
      for (guint j = 0; j < sb->mounts->len; j++)
        {
          MaMount *m = sb->mounts->pdata[j];
          JsonObject *obj = json_object_new ();
          gboolean freezable = m->primary && sb->freezable;
          g_autofree char *dev = g_strdup_printf ("%u:%u", sb->major, sb->minor);

          set_path (obj, "mountpoint", m->target);
          json_object_set_string_member (obj, "device", dev);
          set_path (obj, "fstype", m->fstype);
          set_path (obj, "source", m->source);
          set_path (obj, "root", m->root);
          json_object_set_int_member (obj, "mount_id", m->id);
          json_object_set_boolean_member (obj, "freezable", freezable);
          if (!m->primary)
            {
              g_autofree char *why = g_strdup_printf ("bind duplicate of %s (same superblock %s)",
                                                      sb->primary->target, dev);
              set_path (obj, "reason", why);
              set_path (obj, "bind_of", sb->primary->target);
            }
          else if (!sb->freezable)
            json_object_set_string_member (obj, "reason", sb->reason);
          json_object_set_boolean_member (obj, "read_only", sb->read_only);
          if (sb->frozen)
            json_object_set_boolean_member (obj, "frozen", TRUE);
          json_object_set_boolean_member (obj, "selected",
                                          m->primary && g_hash_table_contains (r->selected, sb));
          json_array_add_element (array, ma_json_new_object_node (obj));
        }
    }
  return ma_json_new_array_node (array);
}

static JsonNode *
freeze_order_to_json (Report *r)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < r->mounts->freeze_order->len; i++)
    {
      MaSuperblock *sb = r->mounts->freeze_order->pdata[i];
      g_autofree char *safe = NULL;
      if (!g_hash_table_contains (r->selected, sb))
        continue;
      safe = ma_json_safe_string (sb->primary->target, -1, NULL);
      json_array_add_string_element (array, safe);
    }
  return ma_json_new_array_node (array);
}

static JsonNode *
nesting_to_json (Report *r)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < r->mounts->nesting->len; i++)
    {
      MaMountNesting *n = r->mounts->nesting->pdata[i];
      JsonObject *obj = json_object_new ();
      set_path (obj, "inner", n->inner->primary->target);
      set_path (obj, "outer", n->outer->primary->target);
      set_path (obj, "via", n->via);
      json_array_add_element (array, ma_json_new_object_node (obj));
    }
  return ma_json_new_array_node (array);
}

/* ---- locks ---- */

static JsonObject *
lock_waiter_to_json (Report *r, const MaLock *lock)
{
  JsonObject *obj = json_object_new ();

  add_process_members (r, obj, (gint) lock->pid);
  json_object_set_string_member (obj, "type", ma_lock_type_to_string (lock->type));
  json_object_set_string_member (obj, "mode", ma_lock_mode_to_string (lock->mode));
  json_object_set_int_member (obj, "start", (gint64) lock->start);
  if (lock->end == MA_LOCK_END_EOF)
    json_object_set_null_member (obj, "end");
  else
    json_object_set_int_member (obj, "end", (gint64) lock->end);
  return obj;
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
  GHashTable *by_key;   /* MaFileKey (with pid) → MaOpenFile* */
  GHashTable *by_inode; /* MaFileKey (pid 0) → MaOpenFile*: any fd on that file */
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

static JsonNode *
locks_to_json (Report *r, GArray *locks, guint *n_locks, guint *n_with_waiters)
{
  JsonArray *array = json_array_new ();
  FileIndex index = {
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL),
    g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL),
  };

  index_files (&index, r->scan->orphan_files);
  index_files (&index, r->scan->lock_files);
  for (guint i = 0; i < locks->len; i++)
    {
      const MaLock *lock = &g_array_index (locks, MaLock, i);
      guint32 devno = (guint32) makedev (lock->major, lock->minor);
      MaFileKey key = { lock->inode, devno, (gint32) lock->pid };
      MaFileKey ikey = { lock->inode, devno, 0 };
      MaOpenFile *file;
      JsonObject *obj;
      JsonArray *holders, *waiters;
      g_autofree char *dev = NULL;

      if (lock->depth > 0 || !lock->has_inode || !devno_selected (r, devno))
        continue;
      obj = json_object_new ();
      holders = json_array_new ();
      waiters = json_array_new ();
      dev = devno_string (devno);
      json_object_set_int_member (obj, "id", (gint64) lock->id);
      json_object_set_string_member (obj, "type", ma_lock_type_to_string (lock->type));
      json_object_set_string_member (obj, "mode", ma_lock_mode_to_string (lock->mode));
      json_object_set_string_member (obj, "kind", lock->kind);
      json_object_set_string_member (obj, "device", dev);
      json_object_set_int_member (obj, "inode", (gint64) lock->inode);
      json_object_set_int_member (obj, "start", (gint64) lock->start);
      if (lock->end == MA_LOCK_END_EOF)
        json_object_set_null_member (obj, "end");
      else
        json_object_set_int_member (obj, "end", (gint64) lock->end);
      set_path (obj, "mountpoint", mountpoint_for_devno (r, devno));

      /* holders: the owner's fd (pid from /proc/locks), or every open file whose fdinfo lists it */
      file = lock->pid > 0 ? g_hash_table_lookup (index.by_key, &key) : NULL;
      if (file != NULL)
        {
          JsonObject *h = json_object_new ();
          add_process_members (r, h, file->pid);
          json_object_set_int_member (h, "fd", file->fd);
          json_array_add_element (holders, ma_json_new_object_node (h));
        }
      else
        {
          for (guint j = 0; j < r->scan->orphan_files->len; j++)
            {
              MaOpenFile *of = r->scan->orphan_files->pdata[j];
              for (guint k = 0; k < of->fdinfo.locks->len; k++)
                if (fdinfo_lock_matches (lock, &g_array_index (of->fdinfo.locks, MaLock, k)))
                  {
                    JsonObject *h = json_object_new ();
                    add_process_members (r, h, of->pid);
                    json_object_set_int_member (h, "fd", of->fd);
                    json_array_add_element (holders, ma_json_new_object_node (h));
                    file = file != NULL ? file : of;
                    break;
                  }
            }
          if (json_array_get_length (holders) == 0 && lock->pid > 0)
            {
              /* the owner is known but no fd of its own holds the file (shared, inherited) */
              JsonObject *h = json_object_new ();
              add_process_members (r, h, (gint) lock->pid);
              json_array_add_element (holders, ma_json_new_object_node (h));
            }
        }
      if (file == NULL)
        file = g_hash_table_lookup (index.by_inode, &ikey);
      set_path (obj, "path", file != NULL ? file->path : NULL);
      json_object_set_boolean_member (obj, "deleted", file != NULL && file->deleted);

      for (guint j = i + 1; j < locks->len; j++)
        {
          const MaLock *w = &g_array_index (locks, MaLock, j);
          if (w->id != lock->id || w->depth == 0)
            break;
          json_array_add_element (waiters, ma_json_new_object_node (lock_waiter_to_json (r, w)));
        }
      if (json_array_get_length (waiters) > 0)
        (*n_with_waiters)++;
      json_object_set_array_member (obj, "holders", holders);
      json_object_set_array_member (obj, "waiters", waiters);
      json_array_add_element (array, ma_json_new_object_node (obj));
      (*n_locks)++;
    }
  g_hash_table_unref (index.by_key);
  g_hash_table_unref (index.by_inode);
  return ma_json_new_array_node (array);
}

/* ---- writers and stuck tasks ---- */

static JsonNode *
writers_to_json (Report *r)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < r->scan->writers->len; i++)
    {
      MaOpenFile *f = r->scan->writers->pdata[i];
      JsonObject *obj = json_object_new ();
      add_process_members (r, obj, f->pid);
      json_object_set_int_member (obj, "fd", f->fd);
      set_path (obj, "path", f->path);
      json_object_set_boolean_member (obj, "deleted", f->deleted);
      set_path (obj, "mountpoint", mountpoint_for_devno (r, f->devno));
      json_array_add_element (array, ma_json_new_object_node (obj));
    }
  return ma_json_new_array_node (array);
}

static JsonNode *
stuck_to_json (Report *r, guint *n_stuck, guint *n_freeze_waiters)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; i < r->scan->stuck->len; i++)
    {
      MaStuckTask *t = r->scan->stuck->pdata[i];
      JsonObject *obj;
      gboolean freeze_wait = g_strcmp0 (t->wchan, MA_BLOCKERS_FREEZE_WAIT_WCHAN) == 0;

      /* a task blocked on a file of another filesystem is not ours to report */
      if (t->file != NULL && !devno_selected (r, t->file->devno))
        continue;
      obj = json_object_new ();
      add_process_members (r, obj, t->pid);
      json_object_set_int_member (obj, "tid", t->tid);
      set_path (obj, "task_comm", t->comm);
      if (t->wchan != NULL)
        json_object_set_string_member (obj, "wchan", t->wchan);
      else
        json_object_set_null_member (obj, "wchan");
      if (t->syscall >= 0)
        {
          json_object_set_int_member (obj, "syscall_nr", t->syscall);
          if (t->syscall_name != NULL)
            json_object_set_string_member (obj, "syscall", t->syscall_name);
        }
      if (t->file != NULL)
        {
          json_object_set_int_member (obj, "fd", t->file->fd);
          set_path (obj, "path", t->file->path);
          set_path (obj, "mountpoint", mountpoint_for_devno (r, t->file->devno));
        }
      json_object_set_boolean_member (obj, "waits_for_freeze", freeze_wait);
      json_array_add_element (array, ma_json_new_object_node (obj));
      (*n_stuck)++;
      if (freeze_wait)
        (*n_freeze_waiters)++;
    }
  return ma_json_new_array_node (array);
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

static JsonNode *
qemu_ga_to_json (Report *r)
{
  JsonObject *obj = json_object_new ();
  JsonArray *pids = json_array_new ();
  g_autofree char *port = find_virtio_port (MA_QEMU_GA_PORT_NAME);
  g_autofree char *frozen_file = ma_path_build (ma_path_rundir (), MA_QEMU_GA_FROZEN_FILE, NULL);
  gboolean running = r->scan->qemu_ga_pids->len > 0;
  gboolean frozen = g_file_test (frozen_file, G_FILE_TEST_EXISTS);

  for (guint i = 0; i < r->scan->qemu_ga_pids->len; i++)
    json_array_add_int_element (pids, g_array_index (r->scan->qemu_ga_pids, gint, i));
  json_object_set_boolean_member (obj, "running", running);
  json_object_set_array_member (obj, "pids", pids);
  json_object_set_boolean_member (obj, "port_present", port != NULL);
  json_object_set_string_member (obj, "port_name", MA_QEMU_GA_PORT_NAME);
  if (port != NULL)
    json_object_set_string_member (obj, "port", port);
  set_path (obj, "state_file", frozen_file);
  json_object_set_boolean_member (obj, "frozen", frozen);

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
  return ma_json_new_object_node (obj);
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

static gboolean
pid_alive (gint64 pid)
{
  char path[64];

  g_snprintf (path, sizeof path, "%s/%" G_GINT64_FORMAT, ma_path_procfs (), pid);
  return access (path, F_OK) == 0;
}

JsonNode *
ma_blockers_collect (const char *const *mountpoints, GCancellable *cancellable, GError **error)
{
  g_autoptr(MaWritebackSample) wb_start = ma_writeback_sample_new ();
  g_autoptr(MaMountTable) mounts = NULL;
  g_autoptr(MaProcScan) scan = NULL;
  g_autoptr(GHashTable) selected = g_hash_table_new (NULL, NULL);
  g_autoptr(GArray) locks = NULL;
  g_autofree char *locks_path = ma_path_build (ma_path_procfs (), "locks", NULL);
  g_autofree char *locks_text = NULL;
  gsize locks_len = 0;
  guint n_bad_locks = 0, n_locks = 0, n_with_waiters = 0, n_stuck = 0, n_freeze_waiters = 0;
  gint64 started = g_get_monotonic_time ();
  JsonObject *obj;
  JsonObject *stats;
  JsonNode *writeback;
  Report r = { 0 };
  double sync_seconds;
  gint64 dirty = 0, writeback_bytes = 0;

  mounts = ma_mount_table_load (error);
  if (mounts == NULL)
    return NULL;
  r.mounts = mounts;
  r.selected = selected;
  r.reasons = json_array_new ();
  if (!select_mounts (&r, mountpoints, error))
    {
      json_array_unref (r.reasons);
      return NULL;
    }

  /* /proc/locks takes a global lock in the kernel: read it once */
  if (!g_file_get_contents (locks_path, &locks_text, &locks_len, error))
    {
      json_array_unref (r.reasons);
      return NULL;
    }
  locks = ma_locks_parse (locks_text, locks_len, &n_bad_locks);

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

      if (lock->depth > 0 || !lock->has_inode
          || !g_hash_table_contains (scan->selected_devs, GUINT_TO_POINTER (devno)))
        continue;
      key = g_new (MaFileKey, 1);
      if (lock->pid > 0 && pid_alive (lock->pid))
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
  if (!ma_proc_scan_run (scan, cancellable, error))
    {
      json_array_unref (r.reasons);
      return NULL;
    }

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

  obj = json_object_new ();
  json_object_set_member (obj, "mounts", mounts_to_json (&r));
  json_object_set_member (obj, "freeze_order", freeze_order_to_json (&r));
  json_object_set_member (obj, "nesting", nesting_to_json (&r));
  json_object_set_member (obj, "locks", locks_to_json (&r, locks, &n_locks, &n_with_waiters));
  json_object_set_member (obj, "writers", writers_to_json (&r));
  json_object_set_member (obj, "stuck", stuck_to_json (&r, &n_stuck, &n_freeze_waiters));
  writeback = ma_writeback_report (wb_start, cancellable);
  json_object_set_member (obj, "writeback", writeback);
  json_object_set_member (obj, "qemu_ga", qemu_ga_to_json (&r));

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

  json_object_set_string_member (obj, "verdict", verdict_names[r.verdict]);
  json_object_set_array_member (obj, "reasons", r.reasons);
  stats = json_object_new ();
  json_object_set_int_member (stats, "processes", scan->n_processes);
  json_object_set_int_member (stats, "tasks", scan->n_tasks);
  json_object_set_int_member (stats, "fds", scan->n_fds);
  json_object_set_int_member (stats, "fds_resolved", g_atomic_int_get (&scan->n_statx));
  json_object_set_int_member (stats, "vanished", scan->n_vanished);
  json_object_set_int_member (stats, "lock_lines", locks->len);
  json_object_set_int_member (stats, "lock_lines_unparsed", n_bad_locks);
  json_object_set_int_member (stats, "mountinfo_lines_unparsed", mounts->n_bad_lines);
  json_object_set_double_member (stats, "scan_seconds", scan->seconds);
  json_object_set_double_member (stats, "seconds",
                                 (double) (g_get_monotonic_time () - started) / G_USEC_PER_SEC);
  json_object_set_object_member (obj, "scan", stats);
  return ma_json_new_object_node (obj);
}

/* ---- the command ---- */

static void
blockers_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;
  JsonNode *ret = ma_blockers_collect ((const char *const *) task_data, cancellable, &error);

  if (ret == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, ret, (GDestroyNotify) json_node_unref);
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

void
ma_blockers_register (MaAgent *agent)
{
  ma_commands_add (ma_agent_get_commands (agent), "blockers", cmd_blockers, NULL,
                   "what will make a filesystem freeze slow or fail: locks, writers, stuck tasks, "
                   "mounts, dirty data");
  ma_agent_add_capability (agent, "blockers");
}
