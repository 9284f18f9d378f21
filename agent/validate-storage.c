/* validate-storage.c — the storage half of validation: mounts (source, options, emergency_ro),
 * block devices (serial, WWN, size), kernel I/O errors, tasks stuck in a freeze, write probes. */
#include "validate-storage.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "json.h"
#include "paths.h"
#include "snapshot.h"

#define MA_FROZEN_POLL_MS 100
#define MA_FREEZE_WCHAN "percpu_rwsem_wait"
#define MA_KMSG_ERRORS_SHOWN 3

/* Filesystems without a block device that still hold data worth checking. */
static const char *const network_fstypes[] = { "nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs",
                                               "ceph", "glusterfs", NULL };

/* ---- JSON helpers ---- */

/* The last entry with member == value (the top of a stack of mounts on one target). */
static JsonObject *
find_last (JsonArray *array, const char *member, const char *value)
{
  JsonObject *found = NULL;

  for (guint i = 0; i < ma_json_array_length (array); i++)
    {
      JsonObject *obj = ma_json_array_object (array, i);
      if (obj != NULL && g_strcmp0 (ma_json_string_or_null (obj, member), value) == 0)
        found = obj;
    }
  return found;
}

static gboolean
has_option (const char *options, const char *option)
{
  g_auto(GStrv) list = g_strsplit (options ? options : "", ",", -1);

  return g_strv_contains ((const char *const *) list, option);
}

/* Mounts of storage: a block device behind them, or a network/shared filesystem. */
static gboolean
is_storage_mount (JsonObject *mount)
{
  const char *devno = ma_json_string_or_null (mount, "devno");
  const char *fstype = ma_json_string_or_null (mount, "fstype");

  if (fstype != NULL && (g_strv_contains (network_fstypes, fstype)))
    return TRUE;
  return devno != NULL && !g_str_has_prefix (devno, "0:");
}

/* ---- devices ---- */

static void
diff_devices (JsonArray *before, JsonArray *now, MaReport *report)
{
  for (guint i = 0; i < ma_json_array_length (before); i++)
    {
      JsonObject *b = ma_json_array_object (before, i);
      const char *dev = ma_json_string_or_null (b, "name");
      const char *serial = ma_json_string_or_null (b, "serial"),
                 *wwn = ma_json_string_or_null (b, "wwn");
      g_autofree char *name = NULL;
      gint64 started = g_get_monotonic_time ();
      gint64 size_b, size_n;
      JsonObject *n;

      if (b == NULL || dev == NULL)
        continue;
      name = g_strdup_printf ("device:%s", dev);
      n = find_last (now, "name", dev);
      size_b = ma_json_int_or (b, "size", -1);
      if (n == NULL)
        {
          JsonObject *moved = serial != NULL ? find_last (now, "serial", serial) : NULL;
          MaCheck *check;
          if (moved != NULL)
            check = ma_report_add (report, name, MA_CHECK_FAIL, started,
                                   "gone; the disk with its serial %s is now %s", serial,
                                   ma_json_string_or_null (moved, "name"));
          else
            check = ma_report_add (report, name, MA_CHECK_FAIL, started,
                                   "gone (serial %s, %" G_GINT64_FORMAT " bytes)",
                                   serial ? serial : "unknown", size_b);
          /* a partition of a vanished disk is explained by the disk */
          for (guint j = 0; j < i; j++)
            {
              const char *parent
                  = ma_json_string_or_null (ma_json_array_object (before, j), "name");
              g_autofree char *pname = g_strdup_printf ("device:%s", parent);
              if (parent != NULL && g_str_has_prefix (dev, parent) && !g_str_equal (dev, parent)
                  && ma_report_failed (report, pname))
                {
                  check->caused_by = g_strdup (pname);
                  break;
                }
            }
          continue;
        }
      size_n = ma_json_int_or (n, "size", -1);
      if (serial != NULL && g_strcmp0 (serial, ma_json_string_or_null (n, "serial")) != 0)
        ma_report_add (report, name, MA_CHECK_FAIL, started, "another disk: serial %s, it was %s",
                       ma_json_string_or_null (n, "serial") ?: "none", serial);
      else if (wwn != NULL && g_strcmp0 (wwn, ma_json_string_or_null (n, "wwn")) != 0)
        ma_report_add (report, name, MA_CHECK_FAIL, started, "another disk: WWN %s, it was %s",
                       ma_json_string_or_null (n, "wwn") ?: "none", wwn);
      else if (size_n < size_b)
        ma_report_add (report, name, MA_CHECK_FAIL, started,
                       "shrank from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT " bytes", size_b,
                       size_n);
      else if (size_n > size_b)
        ma_report_add (report, name, MA_CHECK_WARN, started,
                       "grew from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT " bytes", size_b,
                       size_n);
      else
        ma_report_add (report, name, MA_CHECK_PASS, started, "serial %s, %" G_GINT64_FORMAT
                       " bytes", serial ? serial : "none", size_n);
    }
}

/* ---- mounts ---- */

static const char *
device_cause (MaReport *report, JsonArray *devices, const char *devno)
{
  JsonObject *dev = find_last (devices, "devno", devno);
  g_autofree char *name = NULL;

  if (dev == NULL || ma_json_string_or_null (dev, "name") == NULL)
    return NULL;
  name = g_strdup_printf ("device:%s", ma_json_string_or_null (dev, "name"));
  return ma_report_failed (report, name) ? ma_report_find (report, name)->name : NULL;
}

static void
diff_mounts (JsonArray *before, JsonArray *now, JsonArray *devices_before, MaReport *report)
{
  for (guint i = 0; i < ma_json_array_length (before); i++)
    {
      JsonObject *b = ma_json_array_object (before, i);
      const char *target = ma_json_string_or_null (b, "target");
      g_autofree char *name = NULL;
      gint64 started = g_get_monotonic_time ();
      const char *opt_b, *opt_n, *sup_b, *sup_n;
      JsonObject *n;
      MaCheck *check = NULL;

      if (b == NULL || target == NULL || !is_storage_mount (b)
          || find_last (before, "target", target) != b)
        continue;
      name = g_strdup_printf ("mount:%s", target);
      n = find_last (now, "target", target);
      opt_b = ma_json_string_or_null (b, "options");
      sup_b = ma_json_string_or_null (b, "super-options");
      opt_n = ma_json_string_or_null (n, "options");
      sup_n = ma_json_string_or_null (n, "super-options");
      if (n == NULL)
        check = ma_report_add (
            report, name, MA_CHECK_FAIL, started, "not mounted any more (it was %s, %s)",
            ma_json_string_or_null (b, "source"), ma_json_string_or_null (b, "fstype"));
      else if (g_strcmp0 (ma_json_string_or_null (b, "source"),
                          ma_json_string_or_null (n, "source"))
               != 0)
        check = ma_report_add (report, name, MA_CHECK_FAIL, started, "source changed from %s to %s",
                               ma_json_string_or_null (b, "source"),
                               ma_json_string_or_null (n, "source"));
      else if (has_option (opt_b, "rw") && has_option (opt_n, "ro"))
        ma_report_add (report, name, MA_CHECK_FAIL, started, "went read-only (options %s)",
                       opt_n);
      else if (!has_option (sup_b, "emergency_ro") && has_option (sup_n, "emergency_ro"))
        ma_report_add (report, name, MA_CHECK_FAIL, started,
                       "the filesystem went emergency_ro after errors, although the mount "
                       "still says %s (super options %s)", opt_n, sup_n);
      else if (has_option (sup_b, "rw") && has_option (sup_n, "ro"))
        ma_report_add (report, name, MA_CHECK_FAIL, started,
                       "the filesystem went read-only (super options %s)", sup_n);
      else if (g_strcmp0 (opt_b, opt_n) != 0)
        ma_report_add (report, name, MA_CHECK_FAIL, started, "options changed from %s to %s",
                       opt_b, opt_n);
      else if (g_strcmp0 (sup_b, sup_n) != 0)
        ma_report_add (report, name, MA_CHECK_WARN, started,
                       "super options changed from %s to %s", sup_b, sup_n);
      else if (g_strcmp0 (ma_json_string_or_null (b, "devno"), ma_json_string_or_null (n, "devno"))
               != 0)
        ma_report_add (report, name, MA_CHECK_WARN, started, "device number changed from %s to %s",
                       ma_json_string_or_null (b, "devno"), ma_json_string_or_null (n, "devno"));
      else
        ma_report_add (report, name, MA_CHECK_PASS, started, "%s (%s) %s",
                       ma_json_string_or_null (n, "source"), ma_json_string_or_null (n, "fstype"),
                       opt_n);
      if (check != NULL)
        {
          const char *cause
              = device_cause (report, devices_before, ma_json_string_or_null (b, "devno"));
          if (cause != NULL)
            check->caused_by = g_strdup (cause);
        }
    }
}

void
ma_validate_storage_diff (JsonObject *before, JsonObject *now, MaReport *report)
{
  diff_devices (ma_json_array_or_null (before, "devices"), ma_json_array_or_null (now, "devices"),
                report);
  diff_mounts (ma_json_array_or_null (before, "mounts"), ma_json_array_or_null (now, "mounts"),
               ma_json_array_or_null (before, "devices"), report);
}

/* ---- frozen? ---- */

gboolean
ma_validate_storage_frozen (const MaValidateOptions *options, const char **why)
{
  g_autofree char *marker = ma_path_build (ma_path_rundir (), MA_FROZEN_MARKER, NULL);

  if (g_file_test (marker, G_FILE_TEST_EXISTS))
    {
      *why = "qemu-ga reports frozen filesystems";
      return TRUE;
    }
  if (options != NULL && options->quiesced != NULL && g_atomic_int_get (options->quiesced))
    {
      *why = "the agent's lifecycle is quiesced";
      return TRUE;
    }
  return FALSE;
}

/* ---- kernel log ---- */

static void
check_kmsg (JsonObject *before, MaReport *report)
{
  g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) shown = g_string_new (NULL);
  gint64 started = g_get_monotonic_time ();
  gint64 after = ma_json_int_or (before, "kmsg-seq", -1), last = -1;

  if (after < 0)
    {
      ma_report_add (report, "kmsg", MA_CHECK_WARN, started,
                     "the snapshot has no kernel log position: nothing to compare");
      return;
    }
  if (!ma_snapshot_scan_kmsg (after, &last, errors, &error))
    {
      ma_report_add (report, "kmsg", MA_CHECK_WARN, started, "cannot read the kernel log: %s",
                     error->message);
      return;
    }
  if (errors->len == 0)
    {
      ma_report_add (report, "kmsg", MA_CHECK_PASS, started,
                     "no storage errors in the kernel log since the snapshot");
      return;
    }
  for (guint i = 0; i < errors->len && i < MA_KMSG_ERRORS_SHOWN; i++)
    g_string_append_printf (shown, "%s%s", i ? "; " : "", (const char *) errors->pdata[i]);
  ma_report_add (report, "kmsg", MA_CHECK_FAIL, started,
                 "%u storage error%s in the kernel log since the snapshot: %s%s", errors->len,
                 errors->len == 1 ? "" : "s", shown->str,
                 errors->len > MA_KMSG_ERRORS_SHOWN ? "; …" : "");
}

/* ---- tasks blocked in a freeze ---- */

static void
check_freeze_waiters (const MaValidateOptions *options, MaReport *report)
{
  g_autoptr(GDir) proc = g_dir_open (ma_path_procfs (), 0, NULL);
  g_autoptr(GString) found = g_string_new (NULL);
  gint64 started = g_get_monotonic_time ();
  guint count = 0;
  const char *entry, *why = NULL;
  pid_t self = getpid ();

  if (proc == NULL)
    return;
  while ((entry = g_dir_read_name (proc)) != NULL)
    {
      g_autofree char *taskdir = NULL;
      g_autoptr(GDir) tasks = NULL;
      const char *tid;
      guint64 pid;

      if (!g_ascii_string_to_unsigned (entry, 10, 1, G_MAXINT, &pid, NULL)
          || (pid_t) pid == self)
        continue; /* our own probes may wait there: they are reported on their own */
      taskdir = ma_path_build (ma_path_procfs (), entry, "task", NULL);
      tasks = g_dir_open (taskdir, 0, NULL);
      if (tasks == NULL)
        continue;
      while ((tid = g_dir_read_name (tasks)) != NULL)
        {
          g_autofree char *wchan_path = g_build_filename (taskdir, tid, "wchan", NULL);
          g_autofree char *wchan = NULL;
          g_autofree char *comm_path = NULL;
          g_autofree char *comm = NULL;

          if (!g_file_get_contents (wchan_path, &wchan, NULL, NULL)
              || !g_str_equal (g_strstrip (wchan), MA_FREEZE_WCHAN))
            continue;
          count++;
          comm_path = g_build_filename (taskdir, tid, "comm", NULL);
          g_file_get_contents (comm_path, &comm, NULL, NULL);
          if (count <= 5)
            g_string_append_printf (found, "%s%s[%s]", found->len ? ", " : "",
                                    comm ? g_strstrip (comm) : "?", tid);
        }
    }
  if (count == 0)
    ma_report_add (report, "freeze-waiters", MA_CHECK_PASS, started,
                   "no task waits in " MA_FREEZE_WCHAN);
  else if (ma_validate_storage_frozen (options, &why))
    ma_report_add (report, "freeze-waiters", MA_CHECK_WARN, started,
                   "%u task%s wait in " MA_FREEZE_WCHAN " (%s): %s", count, count == 1 ? "" : "s",
                   why, found->str);
  else
    ma_report_add (report, "freeze-waiters", MA_CHECK_FAIL, started,
                   "%u task%s blocked in " MA_FREEZE_WCHAN " although nothing should be frozen: "
                   "%s", count, count == 1 ? "" : "s", found->str);
}

/* ---- write probes ---- */

typedef struct
{
  gatomicrefcount refs;
  GMutex lock;
  GCond cond;
  char *dir;
  gboolean done;
  char *error; /* NULL on success */
} WriteProbe;

static WriteProbe *
write_probe_ref (WriteProbe *probe)
{
  g_atomic_ref_count_inc (&probe->refs);
  return probe;
}

static void
write_probe_unref (WriteProbe *probe)
{
  if (!g_atomic_ref_count_dec (&probe->refs))
    return;
  g_mutex_clear (&probe->lock);
  g_cond_clear (&probe->cond);
  g_free (probe->dir);
  g_free (probe->error);
  g_free (probe);
}

/* Filesystems whose write probe has not completed yet (target → its probe): a probe stuck on a
 * hung device is never started again beside it, so repeated validations cannot pile threads up. */
static GMutex outstanding_lock;
static GHashTable *outstanding;

/* TRUE when target has no probe in flight, and then registers this one. */
static gboolean
outstanding_claim (const char *target)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&outstanding_lock);

  if (outstanding == NULL)
    outstanding = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  if (g_hash_table_contains (outstanding, target))
    return FALSE;
  g_hash_table_add (outstanding, g_strdup (target));
  return TRUE;
}

static void
outstanding_release (const char *target)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new (&outstanding_lock);

  g_hash_table_remove (outstanding, target);
}

/* May block for ever on a frozen filesystem: that is why it runs in its own thread. */
static gpointer
write_probe_thread (gpointer data)
{
  WriteProbe *probe = data;
  g_autofree char *path = g_build_filename (probe->dir, MA_WRITE_PROBE_PREFIX "XXXXXX", NULL);
  char *error = NULL;
  int fd;

  fd = g_mkstemp_full (path, O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0)
    error = g_strdup_printf ("cannot create a file: %s", g_strerror (errno));
  else
    {
      if (write (fd, "m", 1) != 1 || fdatasync (fd) < 0)
        error = g_strdup_printf ("cannot write: %s", g_strerror (errno));
      close (fd);
      if (g_unlink (path) < 0 && error == NULL)
        error = g_strdup_printf ("cannot remove the probe file: %s", g_strerror (errno));
    }
  outstanding_release (probe->dir);
  g_mutex_lock (&probe->lock);
  probe->error = error;
  probe->done = TRUE;
  g_cond_signal (&probe->cond);
  g_mutex_unlock (&probe->lock);
  write_probe_unref (probe);
  return NULL;
}

static gboolean
wait_for_thaw (const MaValidateOptions *options, const char **why)
{
  gint64 deadline = g_get_monotonic_time ()
                    + (gint64) (options ? options->thaw_wait_seconds : 0) * G_USEC_PER_SEC;

  while (ma_validate_storage_frozen (options, why))
    {
      if (g_get_monotonic_time () >= deadline)
        return FALSE;
      g_usleep (MA_FROZEN_POLL_MS * 1000);
    }
  return TRUE;
}

static void
check_writes (JsonObject *now, const MaValidateOptions *options, MaReport *report)
{
  JsonArray *mounts = ma_json_array_or_null (now, "mounts");
  g_autoptr(GPtrArray) probes = g_ptr_array_new_with_free_func ((GDestroyNotify) write_probe_unref);
  g_autoptr(GPtrArray) targets = g_ptr_array_new ();
  guint timeout = options ? options->write_timeout_ms : MA_VALIDATE_WRITE_TIMEOUT_MS;
  gint64 started = g_get_monotonic_time ();
  gint64 deadline;
  const char *why = NULL;

  if (options != NULL && !options->write_probe)
    return;
  if (!wait_for_thaw (options, &why))
    {
      ma_report_add (report, "write-probes", MA_CHECK_WARN, started,
                     "not run: %s and nothing thawed within %u s", why,
                     options ? options->thaw_wait_seconds : 0);
      return;
    }
  for (guint i = 0; i < ma_json_array_length (mounts); i++)
    {
      JsonObject *m = ma_json_array_object (mounts, i);
      const char *target = ma_json_string_or_null (m, "target");
      WriteProbe *probe;
      GThread *thread;
      g_autoptr(GError) error = NULL;

      if (m == NULL || target == NULL || !is_storage_mount (m)
          || find_last (mounts, "target", target) != m
          || !has_option (ma_json_string_or_null (m, "options"), "rw")
          || has_option (ma_json_string_or_null (m, "super-options"), "ro")
          || has_option (ma_json_string_or_null (m, "super-options"), "emergency_ro"))
        continue;
      if (!outstanding_claim (target))
        {
          g_autofree char *name = g_strdup_printf ("write:%s", target);
          ma_report_add (report, name, MA_CHECK_FAIL, started,
                         "an earlier write probe on this filesystem has still not completed "
                         "(a frozen filesystem or a hung device); no new one is started");
          continue;
        }
      probe = g_new0 (WriteProbe, 1);
      g_atomic_ref_count_init (&probe->refs);
      g_mutex_init (&probe->lock);
      g_cond_init (&probe->cond);
      probe->dir = g_strdup (target);
      thread = g_thread_try_new ("write-probe", write_probe_thread, write_probe_ref (probe),
                                 &error);
      if (thread == NULL)
        {
          outstanding_release (target);
          write_probe_unref (probe); /* the thread's reference */
          probe->error = g_strdup (error->message);
          probe->done = TRUE;
        }
      else
        g_thread_unref (thread);
      g_ptr_array_add (probes, probe);
      g_ptr_array_add (targets, (gpointer) target);
    }
  deadline = g_get_monotonic_time () + (gint64) timeout * 1000;
  for (guint i = 0; i < probes->len; i++)
    {
      WriteProbe *probe = probes->pdata[i];
      g_autofree char *name = g_strdup_printf ("write:%s", (const char *) targets->pdata[i]);
      gboolean done;

      g_mutex_lock (&probe->lock);
      while (!probe->done && g_cond_wait_until (&probe->cond, &probe->lock, deadline))
        ;
      done = probe->done;
      g_mutex_unlock (&probe->lock);
      if (!done)
        ma_report_add (report, name, MA_CHECK_FAIL, started,
                       "the write did not complete within %u ms (a frozen filesystem or a "
                       "hung device); it is left to finish on its own", timeout);
      else if (probe->error != NULL)
        ma_report_add (report, name, MA_CHECK_FAIL, started, "%s", probe->error);
      else
        ma_report_add (report, name, MA_CHECK_PASS, started, "a file was written, synced and "
                       "removed");
    }
}

void
ma_validate_storage_probe (JsonObject *before, JsonObject *now, const MaValidateOptions *options,
                           MaReport *report)
{
  if (before != NULL)
    check_kmsg (before, report);
  check_freeze_waiters (options, report);
  check_writes (now, options, report);
}
