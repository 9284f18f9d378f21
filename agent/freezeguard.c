/* freezeguard.c — the freeze watchdog: notices filesystems left frozen past a limit with no
 * sign of life from the orchestrator, and thaws them (FITHAW, reverse freeze order). */
#include "freezeguard.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <gio/gio.h>

#include "json.h"
#include "paths.h"
#include "procscan.h"
#include "syscalls.h"

/* Evidence that the guest's filesystems are frozen. */
typedef enum
{
  MA_FROZEN_MARKER = 1 << 0,  /* qemu-ga's isfrozen file */
  MA_FROZEN_WRITERS = 1 << 1, /* tasks sleeping in percpu_rwsem_wait on a guarded filesystem */
} MaFrozenEvidence;

/* What one look at /proc found: the tasks sleeping in MA_FREEZE_GUARD_FROZEN_WCHAN, each
 * attributed to the filesystem of the file its system call works on. */
typedef struct
{
  guint blocked;      /* every such task */
  guint unattributed; /* of them: the file cannot be told (see attribute_writer) */
  guint elsewhere;    /* of them: on a filesystem the guard does not guard (not evidence) */
  GArray *devs;       /* guint: makedev of each guarded superblock with writers blocked on it */
  GPtrArray *mounts;  /* char*: a mount point of each of devs, same order */
} MaBlockedWriters;

/* The /proc scan's input (its thread's own copies). */
typedef struct
{
  char *procfs;
  char **filter;
} MaScanJob;

/* One thaw, shared between the worker thread and the main loop (under lock). */
typedef struct
{
  GMutex lock;
  char **filter;      /* mount points to restrict to, or NULL */
  GArray *devs;       /* guint devnos the evidence names, or NULL = every guarded filesystem */
  GPtrArray *targets; /* char*: the mount points, in thaw order */
  GPtrArray *results; /* char*: "thawed", "not-frozen" or an error; NULL = not reached yet */
  char *load_error;   /* the mount table could not be read */
} MaThawJob;

struct _MaFreezeGuard
{
  MaAgent *agent;
  gboolean enabled;
  gint64 limit_seconds;
  gint64 poll_seconds;
  char **filter;
  char *marker_path;
  GFileMonitor *monitor;
  guint timer_id;

  /* the check in flight: a scan of /proc for blocked writers, in a thread */
  GCancellable *scan_cancellable;
  gboolean scan_again;
  guint64 checks;
  gint64 last_check_real;

  /* the current freeze, if any */
  guint evidence;           /* MaFrozenEvidence */
  gint64 frozen_since_real; /* 0 when no freeze is seen */
  gint64 frozen_since_mono;
  MaBlockedWriters *writers; /* the last scan's, NULL before the first */
  gint64 activity_mono;     /* last sign of life, 0 = none */
  gint64 activity_real;

  /* a marker the guard has already acted on: ignored until it changes */
  gboolean marker_consumed;
  dev_t consumed_dev;
  ino_t consumed_ino;
  gint64 consumed_mtime_ns;

  /* the thaw in flight (the worker may be stuck in the kernel: never two at once) */
  GTask *thaw_task;
  guint thaw_deadline_id;
  gboolean thaw_reported;
  char *thaw_reason;
  double thaw_seconds_frozen;
  guint thaw_evidence;
  JsonArray *thaw_writer_mounts; /* what the blocked-writer evidence named at the thaw */
  gboolean holding; /* the agent is held until the thaw reports (shutdown) */

  guint64 thaws;
  JsonObject *last_action;
  gboolean stopped;  /* the agent is stopping: no more checks */
  gboolean disposed; /* the agent is gone: freed when the last worker returns */
};


static void guard_check (MaFreezeGuard *self);
static void guard_schedule (MaFreezeGuard *self);

/* ---- pure parts ---- */

GPtrArray *
ma_freeze_guard_thaw_order (MaMountTable *table)
{
  GPtrArray *order = g_ptr_array_new ();

  /* freeze_order holds inner filesystems before the ones their devices live on, and
   * children before parents (reverse mountinfo order, as qemu-ga freezes): thawing runs
   * it backwards, so a loop device's backing filesystem is writable again before the
   * filesystem on the loop device flushes its journal on thaw. */
  for (guint i = table->freeze_order->len; i > 0; i--)
    g_ptr_array_add (order, table->freeze_order->pdata[i - 1]);
  return order;
}

static gboolean
is_number (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (; *name != '\0'; name++)
    if (!g_ascii_isdigit (*name))
      return FALSE;
  return TRUE;
}

static gboolean
task_waits_on_freeze (const char *task_dir)
{
  g_autofree char *path = g_build_filename (task_dir, "wchan", NULL);
  char buf[64];
  ssize_t n;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return FALSE;
  n = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (n <= 0)
    return FALSE;
  buf[n] = '\0';
  g_strchomp (buf);
  return strcmp (buf, MA_FREEZE_GUARD_FROZEN_WCHAN) == 0;
}

static MaBlockedWriters *
blocked_writers_new (void)
{
  MaBlockedWriters *w = g_new0 (MaBlockedWriters, 1);

  w->devs = g_array_new (FALSE, FALSE, sizeof (guint));
  w->mounts = g_ptr_array_new_with_free_func (g_free);
  return w;
}

static void
blocked_writers_free (MaBlockedWriters *w)
{
  g_array_unref (w->devs);
  g_ptr_array_unref (w->mounts);
  g_free (w);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaBlockedWriters, blocked_writers_free)

static gboolean
devs_contain (GArray *devs, guint devno)
{
  for (guint i = 0; i < devs->len; i++)
    if (g_array_index (devs, guint, i) == devno)
      return TRUE;
  return FALSE;
}

static void
scan_job_free (MaScanJob *job)
{
  g_free (job->procfs);
  g_strfreev (job->filter);
  g_free (job);
}

/* ---- the thaw worker ---- */

static void
thaw_job_free (MaThawJob *job)
{
  g_mutex_clear (&job->lock);
  g_strfreev (job->filter);
  g_clear_pointer (&job->devs, g_array_unref);
  g_ptr_array_unref (job->targets);
  g_ptr_array_unref (job->results);
  g_free (job->load_error);
  g_free (job);
}

static gboolean
superblock_selected (MaSuperblock *sb, char **filter)
{
  if (filter == NULL || filter[0] == NULL)
    return TRUE;
  for (guint i = 0; i < sb->mounts->len; i++)
    {
      MaMount *m = sb->mounts->pdata[i];
      if (g_strv_contains ((const char *const *) filter, m->target))
        return TRUE;
    }
  return FALSE;
}

/* A mount point that reaches this superblock: one not hidden by a later mount on top. */
static const char *
superblock_path (MaMountTable *table, MaSuperblock *sb)
{
  for (guint i = 0; i < sb->mounts->len; i++)
    {
      MaMount *m = sb->mounts->pdata[i];
      MaMount *top = ma_mount_table_find_target (table, m->target);
      if (top == NULL || top->sb == sb)
        return m->target;
    }
  return sb->primary->target;
}

/* The guard's filesystems: the freezable ones (those it would thaw), restricted by mounts=. */
static gboolean
superblock_guarded (MaMountTable *table, MaSuperblock *sb, char **filter)
{
  return g_ptr_array_find (table->freeze_order, sb, NULL) && superblock_selected (sb, filter);
}

/* Which filesystem a blocked task waits on: the file of its system call (the fd argument of
 * /proc/PID/task/TID/syscall, resolved through /proc/PID/fd/N to its mount's superblock, as
 * blockers does; stat and readlink do not wait on a frozen filesystem, only writes do).
 *
 * When that cannot be told (a call by path such as open(O_CREAT), mkdir, rename or unlink,
 * openat relative to the working directory, an unreadable syscall file, a kernel thread, a
 * mount table that cannot be read), the task counts as unattributed, and unattributed
 * writers are evidence for every guarded filesystem, as all writers were before. That is the
 * conservative side: such a task may well wait on a guarded filesystem (creating a file by
 * name is the commonest write), and ignoring it could leave a guest frozen for good, the very
 * failure the guard exists for; counting it costs at worst a thaw pass whose FITHAW finds
 * filesystems not frozen (EINVAL, reported as not-frozen). */
static void
attribute_writer (MaBlockedWriters *found, MaMountTable *table, MaProcScan *scan, char **filter,
                  gint pid, const char *task_dir)
{
  g_autofree char *path = g_build_filename (task_dir, "syscall", NULL);
  g_autofree char *text = NULL;
  g_autoptr(MaOpenFile) file = NULL;
  MaSuperblock *sb;
  gint64 nr = -1;
  gint fd = -1;
  guint devno;

  if (scan != NULL && g_file_get_contents (path, &text, NULL, NULL)
      && ma_syscall_parse_line (text, &nr, &fd) && fd >= 0)
    file = ma_proc_scan_stat_fd (scan, pid, fd);
  if (file == NULL)
    {
      found->unattributed++;
      return;
    }
  sb = ma_mount_table_lookup_dev (table, major (file->devno), minor (file->devno));
  if (sb == NULL || !superblock_guarded (table, sb, filter))
    {
      found->elsewhere++;
      return;
    }
  devno = (guint) makedev (sb->major, sb->minor);
  if (!devs_contain (found->devs, devno))
    {
      g_array_append_val (found->devs, devno);
      g_ptr_array_add (found->mounts, g_strdup (superblock_path (table, sb)));
    }
}

/* Every task under procfs (PROC/N/task/T) sleeping in MA_FREEZE_GUARD_FROZEN_WCHAN, and the
 * filesystem each waits on. Blocking: runs in a worker thread. No error is fatal (tasks come
 * and go); the mount table is read only when a blocked task is found. */
static MaBlockedWriters *
find_blocked_writers (const char *procfs, char **filter)
{
  g_autoptr(MaBlockedWriters) found = blocked_writers_new ();
  g_autoptr(GDir) proc = g_dir_open (procfs, 0, NULL);
  g_autoptr(MaMountTable) table = NULL;
  g_autoptr(MaProcScan) scan = NULL;
  gboolean loaded = FALSE;
  const char *pid;

  if (proc == NULL)
    return g_steal_pointer (&found);
  while ((pid = g_dir_read_name (proc)) != NULL)
    {
      g_autofree char *task_root = NULL;
      g_autoptr(GDir) tasks = NULL;
      const char *tid;

      if (!is_number (pid))
        continue;
      task_root = g_build_filename (procfs, pid, "task", NULL);
      tasks = g_dir_open (task_root, 0, NULL);
      if (tasks == NULL)
        continue; /* the process is gone */
      while ((tid = g_dir_read_name (tasks)) != NULL)
        {
          g_autofree char *task_dir = g_build_filename (task_root, tid, NULL);

          if (!is_number (tid) || !task_waits_on_freeze (task_dir))
            continue;
          found->blocked++;
          if (!loaded)
            {
              loaded = TRUE;
              table = ma_mount_table_load (NULL);
              if (table != NULL)
                scan = ma_proc_scan_new (table);
            }
          attribute_writer (found, table, scan, filter, (gint) g_ascii_strtoll (pid, NULL, 10),
                            task_dir);
        }
    }
  return g_steal_pointer (&found);
}

/* The superblocks a thaw acts on when the evidence names some (devs): those, and the ones
 * their devices are backed by (a loop filesystem's thaw writes its journal to its image, so
 * the filesystem holding the image must be thawed too, and is, first, in thaw order). */
static GHashTable *
thaw_scope (MaMountTable *table, GArray *devs)
{
  GHashTable *scope = g_hash_table_new (NULL, NULL);
  gboolean grew = TRUE;

  for (guint i = 0; i < table->superblocks->len; i++)
    {
      MaSuperblock *sb = table->superblocks->pdata[i];
      if (devs_contain (devs, (guint) makedev (sb->major, sb->minor)))
        g_hash_table_add (scope, sb);
    }
  while (grew)
    {
      grew = FALSE;
      for (guint i = 0; i < table->nesting->len; i++)
        {
          MaMountNesting *n = table->nesting->pdata[i];
          if (g_hash_table_contains (scope, n->inner) && !g_hash_table_contains (scope, n->outer))
            {
              g_hash_table_add (scope, n->outer);
              grew = TRUE;
            }
        }
    }
  return scope;
}

static char *
thaw_one (const char *path)
{
  int fd = open (path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  int saved;
  int unused = 0; /* FITHAW is declared _IOWR(…, int): the kernel ignores the argument,
                   * memcheck checks it */

  if (fd < 0)
    return g_strdup_printf ("cannot open: %s", g_strerror (errno));
  if (ioctl (fd, FITHAW, &unused) == 0)
    {
      close (fd);
      return g_strdup ("thawed");
    }
  saved = errno;
  close (fd);
  if (saved == EINVAL) /* not frozen: nothing to do */
    return g_strdup ("not-frozen");
  return g_strdup_printf ("FITHAW: %s", g_strerror (saved));
}

static void
thaw_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  MaThawJob *job = task_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(MaMountTable) table = ma_mount_table_load (&error);
  g_autoptr(GPtrArray) order = NULL;
  g_autoptr(GHashTable) scope = NULL;
  guint n;

  if (table == NULL)
    {
      g_mutex_lock (&job->lock);
      job->load_error = g_strdup (error->message);
      g_mutex_unlock (&job->lock);
      g_task_return_boolean (task, TRUE);
      return;
    }
  order = ma_freeze_guard_thaw_order (table);
  if (job->devs != NULL)
    scope = thaw_scope (table, job->devs);
  g_mutex_lock (&job->lock);
  for (guint i = 0; i < order->len; i++)
    if (superblock_selected (order->pdata[i], job->filter)
        && (scope == NULL || g_hash_table_contains (scope, order->pdata[i])))
      {
        g_ptr_array_add (job->targets, g_strdup (superblock_path (table, order->pdata[i])));
        g_ptr_array_add (job->results, NULL);
      }
  n = job->targets->len;
  g_mutex_unlock (&job->lock);

  for (guint i = 0; i < n; i++)
    {
      const char *path;
      char *result;

      g_mutex_lock (&job->lock);
      path = job->targets->pdata[i];
      g_mutex_unlock (&job->lock);
      result = thaw_one (path); /* may block in the kernel: outside the lock */
      g_mutex_lock (&job->lock);
      job->results->pdata[i] = result;
      g_mutex_unlock (&job->lock);
    }
  g_task_return_boolean (task, TRUE);
}

/* ---- reporting ---- */

static char *
describe_evidence (guint evidence)
{
  if (evidence == (MA_FROZEN_MARKER | MA_FROZEN_WRITERS))
    return g_strdup ("qemu-ga's frozen marker and tasks blocked writing to a frozen filesystem");
  if (evidence & MA_FROZEN_MARKER)
    return g_strdup ("qemu-ga's frozen marker");
  return g_strdup ("tasks blocked writing to a frozen filesystem");
}

static JsonArray *
evidence_to_json (guint evidence)
{
  JsonArray *array = json_array_new ();

  if (evidence & MA_FROZEN_MARKER)
    json_array_add_string_element (array, "qemu-ga-marker");
  if (evidence & MA_FROZEN_WRITERS)
    json_array_add_string_element (array, "blocked-writers");
  return array;
}

/* The mount points the blocked-writer evidence names (none for a NULL scan). */
static JsonArray *
writer_mounts_to_json (const MaBlockedWriters *w)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; w != NULL && i < w->mounts->len; i++)
    {
      g_autofree char *safe = ma_json_safe_string (w->mounts->pdata[i], -1, NULL);
      json_array_add_string_element (array, safe);
    }
  return array;
}

/* The same, for the log: "/a, /b" (safe strings). */
static char *
writer_mounts_to_string (const MaBlockedWriters *w)
{
  g_autoptr(GString) text = g_string_new (NULL);

  for (guint i = 0; w != NULL && i < w->mounts->len; i++)
    {
      g_autofree char *safe = ma_json_safe_string (w->mounts->pdata[i], -1, NULL);
      g_string_append_printf (text, "%s%s", i ? ", " : "", safe);
    }
  return g_string_free (g_steal_pointer (&text), FALSE);
}

static void
guard_free (MaFreezeGuard *self)
{
  g_clear_handle_id (&self->timer_id, g_source_remove);
  g_clear_handle_id (&self->thaw_deadline_id, g_source_remove);
  if (self->monitor != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->monitor, self);
      g_file_monitor_cancel (self->monitor);
      g_clear_object (&self->monitor);
    }
  if (self->scan_cancellable != NULL)
    {
      /* the scan's callback sees the cancellation and leaves self alone */
      g_cancellable_cancel (self->scan_cancellable);
      g_clear_object (&self->scan_cancellable);
    }
  g_clear_object (&self->thaw_task);
  g_strfreev (self->filter);
  g_free (self->marker_path);
  g_free (self->thaw_reason);
  g_clear_pointer (&self->thaw_writer_mounts, json_array_unref);
  g_clear_pointer (&self->writers, blocked_writers_free);
  g_clear_pointer (&self->last_action, json_object_unref);
  g_free (self);
}

/* Build the report from what the worker has done so far (all of it, or up to the deadline). */
static void
guard_report_thaw (MaFreezeGuard *self, gboolean timed_out)
{
  MaThawJob *job = g_task_get_task_data (self->thaw_task);
  g_autoptr(JsonArray) thawed = json_array_new ();
  g_autoptr(JsonArray) not_frozen = json_array_new ();
  g_autoptr(JsonArray) errors = json_array_new ();
  g_autoptr(JsonArray) unreached = json_array_new ();
  g_autoptr(GString) summary = g_string_new (NULL);
  g_autofree char *evidence = describe_evidence (self->thaw_evidence);
  JsonObject *data = json_object_new ();

  g_mutex_lock (&job->lock);
  for (guint i = 0; i < job->targets->len; i++)
    {
      const char *target = job->targets->pdata[i];
      const char *result = job->results->pdata[i];
      g_autofree char *safe = ma_json_safe_string (target, -1, NULL);

      if (result == NULL)
        json_array_add_string_element (unreached, safe);
      else if (strcmp (result, "thawed") == 0)
        {
          json_array_add_string_element (thawed, safe);
          g_string_append_printf (summary, "%s%s", summary->len ? ", " : "", safe);
        }
      else if (strcmp (result, "not-frozen") == 0)
        json_array_add_string_element (not_frozen, safe);
      else
        {
          JsonObject *e = json_object_new ();
          json_object_set_string_member (e, "mount", safe);
          json_object_set_string_member (e, "error", result);
          json_array_add_object_element (errors, e);
        }
    }
  if (job->load_error != NULL)
    {
      JsonObject *e = json_object_new ();
      json_object_set_string_member (e, "mount", "");
      json_object_set_string_member (e, "error", job->load_error);
      json_array_add_object_element (errors, e);
    }
  g_mutex_unlock (&job->lock);

  json_object_set_array_member (data, "mounts", json_array_ref (thawed));
  json_object_set_double_member (data, "seconds_frozen", self->thaw_seconds_frozen);
  json_object_set_string_member (data, "reason", self->thaw_reason);
  json_object_set_array_member (data, "evidence", evidence_to_json (self->thaw_evidence));
  json_object_set_array_member (data, "blocked-writer-mounts",
                                json_array_ref (self->thaw_writer_mounts));
  json_object_set_array_member (data, "not-frozen", json_array_ref (not_frozen));
  json_object_set_array_member (data, "errors", json_array_ref (errors));
  if (timed_out)
    json_object_set_array_member (data, "timed-out", json_array_ref (unreached));

  g_warning ("freeze guard: %s; thawed %s%s%s", self->thaw_reason,
             summary->len ? summary->str : "no filesystem (none was frozen)",
             json_array_get_length (errors) ? " — some thaws failed (see the event)" : "",
             timed_out ? " — the thaw did not finish before its deadline" : "");

  g_clear_pointer (&self->last_action, json_object_unref);
  self->last_action = json_object_new ();
  json_object_set_string_member (self->last_action, "action", "thaw");
  json_object_set_int_member (self->last_action, "at", g_get_real_time () / G_USEC_PER_SEC);
  json_object_set_string_member (self->last_action, "reason", self->thaw_reason);
  json_object_set_array_member (self->last_action, "mounts", json_array_ref (thawed));
  json_object_set_array_member (self->last_action, "errors", json_array_ref (errors));
  json_object_set_boolean_member (self->last_action, "timed-out", timed_out);
  self->thaws++;

  ma_agent_emit_event (self->agent, "FREEZE_GUARD_THAWED", ma_json_new_object_node (data));
  ma_agent_set_last_operation (self->agent, "freeze-guard", NULL,
                               json_array_get_length (errors) || timed_out ? "thaw incomplete"
                                                                           : "thawed");
  self->thaw_reported = TRUE;
  if (self->holding)
    {
      self->holding = FALSE;
      ma_agent_release (self->agent);
    }
}

static gboolean
on_thaw_deadline (gpointer user_data)
{
  MaFreezeGuard *self = user_data;

  self->thaw_deadline_id = 0;
  if (!self->thaw_reported)
    guard_report_thaw (self, TRUE);
  return G_SOURCE_REMOVE;
}

static void
on_thaw_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  MaFreezeGuard *self = user_data;

  g_clear_handle_id (&self->thaw_deadline_id, g_source_remove);
  if (!self->thaw_reported)
    guard_report_thaw (self, FALSE);
  g_clear_object (&self->thaw_task);
  if (self->disposed)
    {
      guard_free (self);
      return;
    }
  if (self->stopped)
    return;
  /* the freeze is over, whatever the kernel said: look again from scratch */
  self->evidence = 0;
  self->frozen_since_real = 0;
  g_clear_pointer (&self->writers, blocked_writers_free);
  guard_check (self);
}

static void
guard_start_thaw (MaFreezeGuard *self, gint64 now_mono)
{
  MaThawJob *job = g_new0 (MaThawJob, 1);
  g_autofree char *evidence = describe_evidence (self->evidence);
  g_autofree char *mounts = writer_mounts_to_string (self->writers);

  g_mutex_init (&job->lock);
  job->filter = g_strdupv (self->filter);
  job->targets = g_ptr_array_new_with_free_func (g_free);
  job->results = g_ptr_array_new_with_free_func (g_free);

  /* the marker is about every filesystem qemu-ga froze, an unattributed writer may wait on
   * any guarded one: then all of them; blocked writers alone name theirs */
  if (!(self->evidence & MA_FROZEN_MARKER) && self->writers != NULL
      && self->writers->unattributed == 0)
    job->devs = g_array_copy (self->writers->devs);
  g_clear_pointer (&self->thaw_writer_mounts, json_array_unref);
  self->thaw_writer_mounts = writer_mounts_to_json (self->writers);

  self->thaw_seconds_frozen = (double) (now_mono - self->frozen_since_mono) / G_USEC_PER_SEC;
  self->thaw_evidence = self->evidence;
  g_free (self->thaw_reason);
  self->thaw_reason = g_strdup_printf ("filesystems frozen for %.0f s (%s) with no renewal "
                                       "within the %" G_GINT64_FORMAT " s limit",
                                       self->thaw_seconds_frozen, evidence,
                                       self->limit_seconds);
  self->thaw_reported = FALSE;
  if (job->devs == NULL)
    g_warning ("freeze guard: %s: thawing every frozen filesystem it guards", self->thaw_reason);
  else
    g_warning ("freeze guard: %s: thawing the filesystems writers are blocked on (%s)",
               self->thaw_reason, mounts);

  self->thaw_task = g_task_new (NULL, NULL, on_thaw_done, self);
  g_task_set_source_tag (self->thaw_task, guard_start_thaw);
  g_task_set_task_data (self->thaw_task, job, (GDestroyNotify) thaw_job_free);
  g_task_run_in_thread (self->thaw_task, thaw_thread);
  self->thaw_deadline_id = g_timeout_add_seconds (MA_FREEZE_GUARD_THAW_DEADLINE_SECONDS,
                                                  on_thaw_deadline, self);
}

/* ---- watching ---- */

static gboolean
on_timer (gpointer user_data)
{
  MaFreezeGuard *self = user_data;

  self->timer_id = 0;
  guard_check (self);
  return G_SOURCE_REMOVE;
}

/* Wake at the limit of the current freeze, or at the next poll: never more often. */
static void
guard_schedule (MaFreezeGuard *self)
{
  gint64 wait_us = -1;

  g_clear_handle_id (&self->timer_id, g_source_remove);
  if (self->stopped || self->thaw_task != NULL)
    return;
  if (self->frozen_since_real != 0)
    {
      gint64 start = MAX (self->frozen_since_mono, self->activity_mono);
      wait_us = MAX (start + self->limit_seconds * G_USEC_PER_SEC - g_get_monotonic_time (), 0);
    }
  if (self->poll_seconds > 0 && (wait_us < 0 || wait_us > self->poll_seconds * G_USEC_PER_SEC))
    wait_us = self->poll_seconds * G_USEC_PER_SEC;
  if (wait_us >= 0)
    self->timer_id = g_timeout_add ((guint) MIN (wait_us / 1000 + 1, G_MAXUINT), on_timer, self);
}

static gboolean
marker_stat (MaFreezeGuard *self, struct stat *st)
{
  return stat (self->marker_path, st) == 0;
}

/* Decide on the marker and what the scan found (taken over). */
static void
guard_evaluate (MaFreezeGuard *self, MaBlockedWriters *found)
{
  gint64 now_mono = g_get_monotonic_time ();
  gint64 now_real = g_get_real_time ();
  struct stat st;
  gboolean marker = marker_stat (self, &st);
  gint64 marker_mtime_ns = marker ? (gint64) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec : 0;
  guint evidence = 0;

  self->checks++;
  self->last_check_real = now_real;
  if (self->marker_consumed
      && (!marker || st.st_dev != self->consumed_dev || st.st_ino != self->consumed_ino
          || marker_mtime_ns != self->consumed_mtime_ns))
    self->marker_consumed = FALSE; /* qemu-ga thawed, or froze again since */
  if (marker && !self->marker_consumed)
    evidence |= MA_FROZEN_MARKER;
  /* writers blocked on filesystems the guard does not guard are not evidence */
  if (found->devs->len > 0 || found->unattributed > 0)
    evidence |= MA_FROZEN_WRITERS;
  g_clear_pointer (&self->writers, blocked_writers_free);
  self->writers = found;

  if (evidence == 0)
    {
      if (self->frozen_since_real != 0)
        g_debug ("freeze guard: no sign of a freeze any more");
      self->evidence = 0;
      self->frozen_since_real = 0;
      guard_schedule (self);
      return;
    }
  if (self->frozen_since_real == 0)
    {
      gint64 since = now_real;
      /* a marker older than this agent (a restart while frozen) dates the freeze */
      if (evidence & MA_FROZEN_MARKER)
        since = MIN (since, marker_mtime_ns / 1000);
      self->frozen_since_real = since;
      self->frozen_since_mono = now_mono - (now_real - since);
      g_autofree char *mounts = writer_mounts_to_string (found);

      g_message ("freeze guard: filesystems look frozen (%s%s%s%s); thawing them after %"
                 G_GINT64_FORMAT " s without renewal",
                 (evidence & MA_FROZEN_MARKER) ? "qemu-ga's marker" : "blocked writers",
                 *mounts ? " on " : "", mounts,
                 found->unattributed ? ", some on an unknown filesystem" : "",
                 self->limit_seconds);
    }
  self->evidence = evidence;

  if (now_mono - MAX (self->frozen_since_mono, self->activity_mono)
      >= self->limit_seconds * G_USEC_PER_SEC)
    {
      if (marker)
        {
          /* act once per marker: qemu-ga keeps it until someone calls guest-fsfreeze-thaw */
          self->marker_consumed = TRUE;
          self->consumed_dev = st.st_dev;
          self->consumed_ino = st.st_ino;
          self->consumed_mtime_ns = marker_mtime_ns;
        }
      guard_start_thaw (self, now_mono);
      return;
    }
  guard_schedule (self);
}

static void
on_scan_done (GObject *source, GAsyncResult *res, gpointer user_data)
{
  GCancellable *cancellable = g_task_get_cancellable (G_TASK (res));
  MaFreezeGuard *self;
  g_autoptr(MaBlockedWriters) found = NULL;

  if (g_cancellable_is_cancelled (cancellable))
    return; /* the guard is gone (the task frees its result) */
  self = user_data;
  g_clear_object (&self->scan_cancellable);
  found = g_task_propagate_pointer (G_TASK (res), NULL);
  if (self->thaw_task == NULL && found != NULL)
    guard_evaluate (self, g_steal_pointer (&found));
  if (self->scan_again)
    {
      self->scan_again = FALSE;
      guard_check (self);
    }
}

static void
scan_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  MaScanJob *job = task_data;

  g_task_return_pointer (task, find_blocked_writers (job->procfs, job->filter),
                         (GDestroyNotify) blocked_writers_free);
}

/* Look at the marker and for blocked writers, then decide. The /proc scan runs in a thread. */
static void
guard_check (MaFreezeGuard *self)
{
  g_autoptr(GTask) task = NULL;
  MaScanJob *job;

  if (self->stopped || self->thaw_task != NULL)
    return;
  if (self->scan_cancellable != NULL)
    {
      self->scan_again = TRUE;
      return;
    }
  self->scan_cancellable = g_cancellable_new ();
  task = g_task_new (NULL, self->scan_cancellable, on_scan_done, self);
  g_task_set_source_tag (task, guard_check);
  job = g_new0 (MaScanJob, 1);
  job->procfs = g_strdup (ma_path_procfs ());
  job->filter = g_strdupv (self->filter);
  g_task_set_task_data (task, job, (GDestroyNotify) scan_job_free);
  g_task_run_in_thread (task, scan_thread);
}

static void
on_marker_changed (GFileMonitor *monitor, GFile *file, GFile *other, GFileMonitorEvent event,
                   gpointer user_data)
{
  guard_check (user_data);
}

void
ma_freeze_guard_note_activity (MaFreezeGuard *self)
{
  if (self == NULL || self->stopped)
    return;
  self->activity_mono = g_get_monotonic_time ();
  self->activity_real = g_get_real_time ();
  if (self->thaw_task == NULL)
    guard_schedule (self);
}

static const MaModuleClass freeze_guard_module;

MaFreezeGuard *
ma_freeze_guard_from_agent (MaAgent *agent)
{
  MaFreezeGuard *self = ma_agent_get_module (agent, &freeze_guard_module);

  return self != NULL && !self->stopped ? self : NULL;
}

/* ---- the command ---- */

static JsonNode *
guard_status (MaFreezeGuard *self)
{
  JsonObject *obj = json_object_new ();
  struct stat st;

  json_object_set_boolean_member (obj, "enabled", self->enabled);
  json_object_set_int_member (obj, "limit-seconds", self->limit_seconds);
  json_object_set_int_member (obj, "poll-seconds", self->poll_seconds);
  json_object_set_string_member (obj, "marker", self->marker_path);
  json_object_set_boolean_member (obj, "marker-present", marker_stat (self, &st));
  json_object_set_boolean_member (obj, "frozen", self->frozen_since_real != 0);
  if (self->frozen_since_real != 0)
    {
      gint64 start = MAX (self->frozen_since_mono, self->activity_mono);
      gint64 left = start + self->limit_seconds * G_USEC_PER_SEC - g_get_monotonic_time ();
      json_object_set_int_member (obj, "frozen-since", self->frozen_since_real / G_USEC_PER_SEC);
      json_object_set_array_member (obj, "evidence", evidence_to_json (self->evidence));
      json_object_set_double_member (obj, "seconds-until-thaw",
                                     (double) MAX (left, 0) / G_USEC_PER_SEC);
    }
  else
    json_object_set_null_member (obj, "frozen-since");
  json_object_set_int_member (obj, "blocked-writers", self->writers ? self->writers->blocked : 0);
  json_object_set_array_member (obj, "blocked-writer-mounts", writer_mounts_to_json (self->writers));
  json_object_set_int_member (obj, "blocked-writers-unattributed",
                              self->writers ? self->writers->unattributed : 0);
  json_object_set_int_member (obj, "blocked-writers-elsewhere",
                              self->writers ? self->writers->elsewhere : 0);
  if (self->activity_real != 0)
    json_object_set_int_member (obj, "last-renewal", self->activity_real / G_USEC_PER_SEC);
  json_object_set_int_member (obj, "checks", (gint64) self->checks);
  if (self->last_check_real != 0)
    json_object_set_int_member (obj, "last-check", self->last_check_real / G_USEC_PER_SEC);
  json_object_set_boolean_member (obj, "thawing", self->thaw_task != NULL && !self->thaw_reported);
  json_object_set_int_member (obj, "thaws", (gint64) self->thaws);
  if (self->last_action != NULL)
    json_object_set_object_member (obj, "last-action", json_object_ref (self->last_action));
  else
    json_object_set_null_member (obj, "last-action");
  if (self->filter != NULL && self->filter[0] != NULL)
    {
      JsonArray *mounts = json_array_new ();
      for (guint i = 0; self->filter[i] != NULL; i++)
        json_array_add_string_element (mounts, self->filter[i]);
      json_object_set_array_member (obj, "mounts", mounts);
    }
  return ma_json_new_object_node (obj);
}

static void
cmd_freeze_guard (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "renew", NULL };
  MaFreezeGuard *self = user_data;
  GError *error = NULL;
  gboolean renew = FALSE;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!ma_json_get_bool (ma_call_get_arguments (call), "renew", &renew, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (renew)
    {
      if (!self->enabled)
        {
          ma_call_return_new_error (call, MA_ERROR_UNSUPPORTED,
                                    "the freeze guard is disabled ([freeze-guard] enabled=false)");
          return;
        }
      ma_freeze_guard_note_activity (self);
    }
  ma_call_return (call, guard_status (self));
}

/* ---- lifetime ---- */

static void
on_shutdown (MaAgent *agent, gpointer user_data)
{
  MaFreezeGuard *self = user_data;

  self->stopped = TRUE;
  g_clear_handle_id (&self->timer_id, g_source_remove);
  if (self->scan_cancellable != NULL)
    {
      /* the scan's callback sees the cancellation and leaves self alone */
      g_cancellable_cancel (self->scan_cancellable);
      g_clear_object (&self->scan_cancellable);
    }
  if (self->thaw_task != NULL && !self->thaw_reported)
    {
      /* let a thaw in progress finish (or reach its deadline) before the agent exits */
      self->holding = TRUE;
      ma_agent_hold (agent);
    }
}

static void
guard_dispose (gpointer data)
{
  MaFreezeGuard *self = data;

  /* the agent is going away: nothing may report to it any more */
  self->stopped = TRUE;
  self->disposed = TRUE;
  self->thaw_reported = TRUE;
  if (self->thaw_task == NULL)
    guard_free (self);
  /* else a worker stuck in the kernel still owns self: freed if it ever returns */
}

static gboolean
guard_configure (MaFreezeGuard *self, MaConfig *config, GError **error)
{
  g_autofree char *dir = NULL;

  if (!ma_config_get_bool (config, "freeze-guard", "enabled", TRUE, &self->enabled, error)
      || !ma_config_get_int (config, "freeze-guard", "limit-seconds",
                             MA_FREEZE_GUARD_DEFAULT_LIMIT_SECONDS,
                             MA_FREEZE_GUARD_MIN_LIMIT_SECONDS, MA_FREEZE_GUARD_MAX_LIMIT_SECONDS,
                             &self->limit_seconds, error)
      || !ma_config_get_int (config, "freeze-guard", "poll-seconds",
                             MA_FREEZE_GUARD_DEFAULT_POLL_SECONDS, 0,
                             MA_FREEZE_GUARD_MAX_POLL_SECONDS, &self->poll_seconds, error))
    return FALSE;
  self->filter = ma_config_get_strv (config, "freeze-guard", "mounts");
  dir = ma_config_get_string (config, "freeze-guard", "qga-state-dir", ma_path_rundir ());
  self->marker_path = g_build_filename (dir, MA_FREEZE_GUARD_QGA_MARKER, NULL);
  return TRUE;
}

static const MaCommandSpec freeze_guard_commands[] = {
  { "freeze-guard", cmd_freeze_guard,
    "the freeze watchdog: status, or {\"renew\": true} to restart its clock" },
  { NULL }
};

static const char *const freeze_guard_capabilities[] = { "freeze-guard", NULL };

static const MaModuleClass freeze_guard_module = {
  .name = "freeze-guard",
  .commands = freeze_guard_commands,
  .capabilities = freeze_guard_capabilities,
  .shutdown = on_shutdown,
  .free = guard_dispose,
};

gboolean
ma_freeze_guard_register (MaAgent *agent, GError **error)
{
  MaFreezeGuard *self = g_new0 (MaFreezeGuard, 1);
  g_autoptr(GError) monitor_error = NULL;
  g_autoptr(GFile) marker = NULL;

  self->agent = agent;
  if (!guard_configure (self, ma_agent_get_config (agent), error))
    {
      guard_free (self);
      return FALSE;
    }
  ma_agent_add_module (agent, &freeze_guard_module, self);
  if (!self->enabled)
    {
      g_message ("freeze guard disabled by configuration");
      return TRUE;
    }

  /* inotify on the run directory (tmpfs, never frozen): qemu-ga creating or removing its
   * marker wakes us; nothing else does but the poll timer */
  marker = g_file_new_for_path (self->marker_path);
  self->monitor = g_file_monitor_file (marker, G_FILE_MONITOR_WATCH_MOVES, NULL, &monitor_error);
  if (self->monitor != NULL)
    g_signal_connect (self->monitor, "changed", G_CALLBACK (on_marker_changed), self);
  else
    g_warning ("freeze guard: cannot watch %s (%s); relying on the %" G_GINT64_FORMAT " s poll",
               self->marker_path, monitor_error->message, self->poll_seconds);
  g_message ("freeze guard: thawing filesystems left frozen for %" G_GINT64_FORMAT
             " s without renewal (watching %s%s)", self->limit_seconds, self->marker_path,
             self->poll_seconds > 0 ? " and polling for blocked writers" : "");
  guard_check (self);
  return TRUE;
}
