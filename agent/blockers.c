/* blockers.c — the `blockers` command: one scan for what will make a filesystem freeze slow
 * or fail (locks, writers, stuck tasks, unfreezable mounts, dirty data, qemu-ga), the verdict. */
#include "blockers.h"

#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blockers-private.h"
#include "json.h"
#include "paths.h"
#include "writeback.h"

/* the verdict is the worst severity among the reasons; information alone means ready */
static const char *const verdict_names[] = { "ready", "slow", "blocked" };

static void
reason_free (Reason *reason)
{
  g_free (reason->mountpoint);
  g_free (reason->message);
  g_free (reason);
}

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
