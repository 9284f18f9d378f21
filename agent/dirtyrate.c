/* dirtyrate.c — per-process dirty-page rates: soft-dirty tracking (clear_refs, pagemap bit 55)
 * where the kernel has it, a labelled proxy (minor faults, write_bytes) where it does not. */
#include "dirtyrate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "agent.h"
#include "json.h"
#include "paths.h"

#define MIB (1024.0 * 1024.0)

/* One measurement at a time: clear_refs is per target process, a second sampler would
 * reset the first one's bits. */
static gint sample_in_flight = 0;

const char *
ma_dirty_method_to_string (MaDirtyMethod method)
{
  switch (method)
    {
    case MA_DIRTY_METHOD_SOFT_DIRTY:
      return "soft-dirty";
    case MA_DIRTY_METHOD_PROXY:
      return "proxy";
    default:
      return "unknown";
    }
}

/* ---- parsers ---- */

gboolean
ma_dirty_parse_maps_line (const char *line, MaMapping *out)
{
  guint64 start, end, offset, inode;
  char perms[5];
  char dev[16];
  int consumed = 0;
  const char *path;

  memset (out, 0, sizeof *out);
  if (sscanf (line, "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x %4s %" G_GINT64_MODIFIER
              "x %15s %" G_GINT64_MODIFIER "u%n",
              &start, &end, perms, &offset, dev, &inode, &consumed) < 6)
    return FALSE;
  if (end < start || strlen (perms) != 4)
    return FALSE;
  out->start = start;
  out->end = end;
  out->readable = perms[0] == 'r';
  out->writable = perms[1] == 'w';
  out->shared = perms[3] == 's';
  out->inode = inode;
  path = line + consumed;
  while (*path == ' ' || *path == '\t')
    path++;
  g_strlcpy (out->path, path, sizeof out->path);
  g_strchomp (out->path);
  return TRUE;
}

gboolean
ma_dirty_mapping_tracked (const MaMapping *m)
{
  if (!m->writable || m->end <= m->start)
    return FALSE;
  /* special kernel mappings: not RAM the process dirties through its page tables */
  if (g_str_has_prefix (m->path, "[vsyscall]") || g_str_has_prefix (m->path, "[vvar]")
      || g_str_has_prefix (m->path, "[vdso]"))
    return FALSE;
  /* device memory (frame buffers, DRM, uio): not guest RAM pages; /dev/shm and /dev/zero are */
  if (g_str_has_prefix (m->path, "/dev/") && !g_str_has_prefix (m->path, "/dev/shm/")
      && !g_str_has_prefix (m->path, "/dev/zero"))
    return FALSE;
  return TRUE;
}

guint64
ma_dirty_count_pagemap (const guint64 *entries, gsize n)
{
  guint64 dirty = 0;

  for (gsize i = 0; i < n; i++)
    if ((entries[i] & MA_PAGEMAP_SOFT_DIRTY) != 0
        && (entries[i] & (MA_PAGEMAP_PRESENT | MA_PAGEMAP_SWAPPED)) != 0)
      dirty++;
  return dirty;
}

gboolean
ma_dirty_parse_stat (const char *text, MaProcStat *out)
{
  const char *open = strchr (text, '(');
  const char *close = strrchr (text, ')');
  g_auto(GStrv) fields = NULL;
  g_autofree char *rest = NULL;
  gsize len;

  memset (out, 0, sizeof *out);
  if (open == NULL || close == NULL || close < open)
    return FALSE;
  len = MIN ((gsize) (close - open - 1), sizeof out->comm - 1);
  memcpy (out->comm, open + 1, len);
  out->comm[len] = '\0';
  /* fields after the comm: [0]=state(3) … [6]=flags(9) [7]=minflt(10) … [19]=starttime(22)
   * [21]=rss(24) */
  rest = g_strstrip (g_strdup (close + 1));
  fields = g_strsplit (rest, " ", -1);
  if (g_strv_length (fields) < 22)
    return FALSE;
  out->state = fields[0][0];
  out->flags = g_ascii_strtoull (fields[6], NULL, 10);
  out->minflt = g_ascii_strtoull (fields[7], NULL, 10);
  out->starttime = g_ascii_strtoull (fields[19], NULL, 10);
  out->rss_pages = g_ascii_strtoll (fields[21], NULL, 10);
  return TRUE;
}

gboolean
ma_dirty_parse_io_write_bytes (const char *text, guint64 *out)
{
  const char *p = strstr (text, "\nwrite_bytes:");

  if (p == NULL && g_str_has_prefix (text, "write_bytes:"))
    p = text - 1;
  if (p == NULL)
    return FALSE;
  *out = g_ascii_strtoull (p + strlen ("\nwrite_bytes:"), NULL, 10);
  return TRUE;
}

char *
ma_dirty_parse_cgroup (const char *text)
{
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);

  for (guint i = 0; lines[i] != NULL; i++)
    if (g_str_has_prefix (lines[i], "0::"))
      return g_strdup (lines[i] + 3);
  return NULL;
}

char *
ma_dirty_unit_from_cgroup (const char *cgroup)
{
  static const char *const suffixes[] = { ".service", ".scope", ".socket", ".mount",
                                          ".swap", NULL };
  g_auto(GStrv) parts = NULL;

  if (cgroup == NULL)
    return NULL;
  parts = g_strsplit (cgroup, "/", -1);
  for (guint i = g_strv_length (parts); i > 0; i--)
    for (guint s = 0; suffixes[s] != NULL; s++)
      if (g_str_has_suffix (parts[i - 1], suffixes[s]))
        return g_strdup (parts[i - 1]);
  return NULL;
}

/* ---- reading one process ---- */

static char *
proc_read (const char *procfs, gint pid, const char *name, GError **error)
{
  g_autofree char *path = g_strdup_printf ("%s/%d/%s", procfs, pid, name);
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return NULL;
  return text;
}

gboolean
ma_dirty_count_process (const char *procfs, gint pid, guint64 *dirty_pages,
                        guint64 *tracked_pages, GError **error)
{
  g_autofree char *maps = proc_read (procfs, pid, "maps", error);
  g_autofree char *pagemap_path = g_strdup_printf ("%s/%d/pagemap", procfs, pid);
  g_autofree guint64 *buffer = NULL;
  g_auto(GStrv) lines = NULL;
  guint64 page_size = (guint64) sysconf (_SC_PAGESIZE);
  guint64 dirty = 0, tracked = 0;
  int fd;

  if (maps == NULL)
    return FALSE;
  fd = open (pagemap_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s", pagemap_path,
                   g_strerror (errno));
      return FALSE;
    }
  buffer = g_new (guint64, MA_DIRTY_PAGEMAP_CHUNK);
  lines = g_strsplit (maps, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      MaMapping m;
      guint64 first, last;

      if (lines[i][0] == '\0' || !ma_dirty_parse_maps_line (lines[i], &m)
          || !ma_dirty_mapping_tracked (&m))
        continue;
      first = m.start / page_size;
      last = m.end / page_size;
      tracked += last - first;
      for (guint64 page = first; page < last;)
        {
          gsize want = (gsize) MIN ((guint64) MA_DIRTY_PAGEMAP_CHUNK, last - page);
          ssize_t got = pread (fd, buffer, want * sizeof (guint64), (off_t) (page * 8));
          if (got < 0 && errno == EINTR)
            continue;
          if (got <= 0)
            break; /* the mapping went away under us: count what was read */
          dirty += ma_dirty_count_pagemap (buffer, (gsize) got / sizeof (guint64));
          page += (guint64) got / sizeof (guint64);
        }
    }
  close (fd);
  *dirty_pages = dirty;
  if (tracked_pages != NULL)
    *tracked_pages = tracked;
  return TRUE;
}

static gboolean
write_clear_refs (const char *procfs, const char *who, GError **error)
{
  g_autofree char *path = g_strdup_printf ("%s/%s/clear_refs", procfs, who);
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  ssize_t n;
  int saved;

  if (fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s", path,
                   g_strerror (errno));
      return FALSE;
    }
  n = write (fd, "4", 1);
  saved = errno;
  close (fd);
  if (n != 1)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", path,
                   g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

static gboolean
self_pagemap_entry (const char *procfs, gconstpointer addr, guint64 *entry)
{
  g_autofree char *path = g_strdup_printf ("%s/self/pagemap", procfs);
  guint64 page_size = (guint64) sysconf (_SC_PAGESIZE);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  ssize_t n;

  if (fd < 0)
    return FALSE;
  n = pread (fd, entry, sizeof *entry, (off_t) (((guint64) (guintptr) addr / page_size) * 8));
  close (fd);
  return n == sizeof *entry;
}

static gboolean
soft_dirty_probe (char **why)
{
  const char *procfs = ma_path_procfs ();
  gsize page_size = (gsize) sysconf (_SC_PAGESIZE);
  g_autoptr(GError) error = NULL;
  volatile char *pages;
  guint64 touched = 0, untouched = 0;
  gboolean ok;

  pages = mmap (NULL, 2 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pages == MAP_FAILED)
    {
      *why = g_strdup_printf ("mmap: %s", g_strerror (errno));
      return FALSE;
    }
  pages[0] = 1;
  pages[page_size] = 1;
  if (!write_clear_refs (procfs, "self", &error))
    {
      *why = g_strdup_printf ("clear_refs is not writable: %s", error->message);
      munmap ((void *) pages, 2 * page_size);
      return FALSE;
    }
  pages[0] = 2;
  ok = self_pagemap_entry (procfs, (gconstpointer) pages, &touched)
       && self_pagemap_entry (procfs, (gconstpointer) (pages + page_size), &untouched);
  munmap ((void *) pages, 2 * page_size);
  if (!ok)
    {
      *why = g_strdup ("/proc/self/pagemap is not readable");
      return FALSE;
    }
  if ((touched & MA_PAGEMAP_SOFT_DIRTY) == 0)
    {
      *why = g_strdup ("the kernel does not set the soft-dirty bit (pagemap bit 55) after a "
                       "write: it lacks CONFIG_MEM_SOFT_DIRTY");
      return FALSE;
    }
  if ((untouched & MA_PAGEMAP_SOFT_DIRTY) != 0)
    {
      *why = g_strdup ("clear_refs 4 does not clear the soft-dirty bit here");
      return FALSE;
    }
  return TRUE;
}

gboolean
ma_dirty_soft_dirty_works (char **why)
{
  static gsize probed = 0;
  static gboolean works = FALSE;
  static char *reason = NULL;

  if (g_once_init_enter (&probed))
    {
      works = soft_dirty_probe (&reason);
      if (works)
        g_debug ("soft-dirty tracking works");
      else
        g_message ("soft-dirty tracking unavailable (%s); dirty-rate uses the proxy", reason);
      g_once_init_leave (&probed, 1);
    }
  if (!works && why != NULL)
    *why = g_strdup (reason);
  return works;
}

/* ---- a measurement ---- */

typedef struct
{
  gint pid;
  guint64 starttime;
  guint64 minflt;
  guint64 write_bytes;
  gboolean have_io;
  gint64 cleared_at; /* monotonic µs */
} DirtyBase;

typedef struct
{
  double seconds;
  MaDirtyMethod method;
  char *note;
  GArray *base; /* DirtyBase */
  guint kernel_threads;
  guint unreadable;
  guint64 nr_dirtied;
  gint64 started_at;
  gint64 cost_us;
  guint timeout_id;
  GTask *outer; /* set while waiting for the interval */
} SampleState;

static void
sample_state_free (SampleState *st)
{
  g_free (st->note);
  g_array_unref (st->base);
  g_free (st);
}

void
ma_dirty_sample_free (MaDirtySample *sample)
{
  if (sample == NULL)
    return;
  g_free (sample->method_note);
  g_ptr_array_unref (sample->processes);
  g_free (sample);
}

static void
dirty_process_free (MaDirtyProcess *p)
{
  g_free (p->comm);
  g_free (p->cgroup);
  g_free (p->unit);
  g_free (p);
}

static guint64
vmstat_nr_dirtied (const char *procfs)
{
  g_autofree char *path = g_build_filename (procfs, "vmstat", NULL);
  g_autofree char *text = NULL;
  const char *p;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  p = strstr (text, "\nnr_dirtied ");
  if (p == NULL)
    return 0;
  return g_ascii_strtoull (p + strlen ("\nnr_dirtied "), NULL, 10);
}

static gboolean
is_pid_name (const char *name)
{
  if (name[0] == '\0')
    return FALSE;
  for (const char *p = name; *p != '\0'; p++)
    if (!g_ascii_isdigit (*p))
      return FALSE;
  return TRUE;
}

static void
clear_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  SampleState *st = task_data;
  const char *procfs = ma_path_procfs ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = NULL;
  g_autofree char *why = NULL;
  const char *name;
  gint64 t0 = g_get_monotonic_time ();

  st->method = ma_dirty_soft_dirty_works (&why) ? MA_DIRTY_METHOD_SOFT_DIRTY
                                                : MA_DIRTY_METHOD_PROXY;
  if (st->method == MA_DIRTY_METHOD_PROXY)
    st->note = g_strdup_printf ("soft-dirty unavailable (%s); rates are minor-fault pages "
                                "plus write_bytes, an estimate that misses rewrites of "
                                "resident pages", why);
  else
    st->note = g_strdup ("pages written (soft-dirty, pagemap bit 55) in writable mappings");

  dir = g_dir_open (procfs, 0, &error);
  if (dir == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  st->nr_dirtied = vmstat_nr_dirtied (procfs);
  st->started_at = g_get_monotonic_time ();
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *stat_text = NULL;
      g_autofree char *io_text = NULL;
      g_autoptr(GError) local = NULL;
      MaProcStat ps;
      DirtyBase b = { 0 };

      if (g_cancellable_is_cancelled (cancellable))
        break;
      if (!is_pid_name (name))
        continue;
      b.pid = (gint) g_ascii_strtoll (name, NULL, 10);
      stat_text = proc_read (procfs, b.pid, "stat", NULL);
      if (stat_text == NULL || !ma_dirty_parse_stat (stat_text, &ps))
        continue; /* gone already */
      if ((ps.flags & MA_PF_KTHREAD) != 0 || ps.state == 'Z')
        {
          st->kernel_threads += (ps.flags & MA_PF_KTHREAD) != 0;
          continue;
        }
      b.starttime = ps.starttime;
      b.minflt = ps.minflt;
      io_text = proc_read (procfs, b.pid, "io", NULL);
      b.have_io = io_text != NULL && ma_dirty_parse_io_write_bytes (io_text, &b.write_bytes);
      if (st->method == MA_DIRTY_METHOD_SOFT_DIRTY && !write_clear_refs (procfs, name, &local))
        {
          if (!g_error_matches (local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
            st->unreadable++;
          continue;
        }
      b.cleared_at = g_get_monotonic_time ();
      g_array_append_val (st->base, b);
    }
  st->cost_us += g_get_monotonic_time () - t0;
  if (g_task_return_error_if_cancelled (task))
    return;
  g_task_return_boolean (task, TRUE);
}

static gint
compare_rate (gconstpointer a, gconstpointer b)
{
  const MaDirtyProcess *pa = *(MaDirtyProcess *const *) a;
  const MaDirtyProcess *pb = *(MaDirtyProcess *const *) b;

  if (pa->dirty_mib_per_s != pb->dirty_mib_per_s)
    return pa->dirty_mib_per_s < pb->dirty_mib_per_s ? 1 : -1;
  if (pa->rss_bytes != pb->rss_bytes)
    return pa->rss_bytes < pb->rss_bytes ? 1 : -1;
  return pa->pid - pb->pid;
}

static void
read_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  SampleState *st = task_data;
  const char *procfs = ma_path_procfs ();
  guint64 page_size = (guint64) sysconf (_SC_PAGESIZE);
  g_autoptr(MaDirtySample) sample = g_new0 (MaDirtySample, 1);
  gint64 t0 = g_get_monotonic_time ();
  guint64 nr_dirtied;

  sample->method = st->method;
  sample->method_note = g_strdup (st->note);
  sample->processes = g_ptr_array_new_with_free_func ((GDestroyNotify) dirty_process_free);
  sample->kernel_threads = st->kernel_threads;
  sample->unreadable = st->unreadable;
  for (guint i = 0; i < st->base->len; i++)
    {
      DirtyBase *b = &g_array_index (st->base, DirtyBase, i);
      g_autofree char *stat_text = NULL;
      g_autofree char *cgroup_text = NULL;
      g_autofree char *io_text = NULL;
      g_autoptr(GError) local = NULL;
      MaDirtyProcess *p;
      MaProcStat ps;
      guint64 dirty_pages = 0;
      gint64 now;
      double interval;

      if (g_cancellable_is_cancelled (cancellable))
        break;
      stat_text = proc_read (procfs, b->pid, "stat", NULL);
      if (stat_text == NULL || !ma_dirty_parse_stat (stat_text, &ps)
          || ps.starttime != b->starttime || ps.state == 'Z')
        {
          sample->vanished++;
          continue;
        }
      p = g_new0 (MaDirtyProcess, 1);
      p->pid = b->pid;
      p->comm = g_strdup (ps.comm);
      p->rss_bytes = (guint64) MAX (ps.rss_pages, 0) * page_size;
      p->minor_faults = ps.minflt >= b->minflt ? ps.minflt - b->minflt : 0;
      io_text = proc_read (procfs, b->pid, "io", NULL);
      if (b->have_io && io_text != NULL)
        {
          guint64 wb = 0;
          if (ma_dirty_parse_io_write_bytes (io_text, &wb) && wb >= b->write_bytes)
            p->write_bytes = wb - b->write_bytes;
        }
      cgroup_text = proc_read (procfs, b->pid, "cgroup", NULL);
      p->cgroup = cgroup_text != NULL ? ma_dirty_parse_cgroup (cgroup_text) : NULL;
      p->unit = ma_dirty_unit_from_cgroup (p->cgroup);
      if (st->method == MA_DIRTY_METHOD_SOFT_DIRTY)
        {
          if (!ma_dirty_count_process (procfs, b->pid, &dirty_pages, NULL, &local))
            {
              sample->vanished++;
              dirty_process_free (p);
              continue;
            }
          p->dirty_bytes = dirty_pages * page_size;
        }
      else
        p->dirty_bytes = p->minor_faults * page_size + p->write_bytes;
      now = g_get_monotonic_time ();
      interval = MAX ((double) (now - b->cleared_at) / G_USEC_PER_SEC, 0.001);
      p->dirty_mib_per_s = (double) p->dirty_bytes / MIB / interval;
      sample->total_mib_per_s += p->dirty_mib_per_s;
      sample->scanned++;
      g_ptr_array_add (sample->processes, p);
    }
  nr_dirtied = vmstat_nr_dirtied (procfs);
  sample->seconds = (double) (g_get_monotonic_time () - st->started_at) / G_USEC_PER_SEC;
  if (nr_dirtied >= st->nr_dirtied && sample->seconds > 0)
    sample->page_cache_mib_per_s = (double) ((nr_dirtied - st->nr_dirtied) * page_size) / MIB
                                   / sample->seconds;
  g_ptr_array_sort (sample->processes, compare_rate);
  st->cost_us += g_get_monotonic_time () - t0;
  sample->cost_ms = (double) st->cost_us / 1000.0;
  if (g_task_return_error_if_cancelled (task))
    return;
  g_task_return_pointer (task, g_steal_pointer (&sample), (GDestroyNotify) ma_dirty_sample_free);
}

static void
outer_return_error (GTask *outer, GError *error)
{
  g_atomic_int_set (&sample_in_flight, 0);
  g_task_return_error (outer, error);
  g_object_unref (outer);
}

static void
on_read (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *outer = user_data;
  GError *error = NULL;
  MaDirtySample *sample = g_task_propagate_pointer (G_TASK (result), &error);

  if (sample == NULL)
    {
      outer_return_error (outer, error);
      return;
    }
  g_atomic_int_set (&sample_in_flight, 0);
  g_task_return_pointer (outer, sample, (GDestroyNotify) ma_dirty_sample_free);
  g_object_unref (outer);
}

static gboolean
on_interval (gpointer user_data)
{
  GTask *outer = user_data;
  SampleState *st = g_task_get_task_data (outer);
  g_autoptr(GTask) reader = NULL;

  st->timeout_id = 0;
  if (g_cancellable_is_cancelled (g_task_get_cancellable (outer)))
    {
      outer_return_error (outer, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                      "dirty-rate measurement cancelled"));
      return G_SOURCE_REMOVE;
    }
  reader = g_task_new (NULL, g_task_get_cancellable (outer), on_read, outer);
  g_task_set_task_data (reader, st, NULL);
  g_task_run_in_thread (reader, read_thread);
  return G_SOURCE_REMOVE;
}

static void
on_cleared (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GTask *outer = user_data;
  SampleState *st = g_task_get_task_data (outer);
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      outer_return_error (outer, error);
      return;
    }
  st->timeout_id = g_timeout_add ((guint) (st->seconds * 1000), on_interval, outer);
}

void
ma_dirty_sample_async (double seconds, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data)
{
  GTask *outer = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr(GTask) clearer = NULL;
  SampleState *st;

  g_task_set_source_tag (outer, ma_dirty_sample_async);
  if (!g_atomic_int_compare_and_exchange (&sample_in_flight, 0, 1))
    {
      g_task_return_new_error (outer, MA_ERROR, MA_ERROR_BUSY,
                               "a dirty-rate measurement is already running");
      g_object_unref (outer);
      return;
    }
  st = g_new0 (SampleState, 1);
  st->seconds = CLAMP (seconds, MA_DIRTY_MIN_SECONDS, MA_DIRTY_MAX_SECONDS);
  st->base = g_array_new (FALSE, TRUE, sizeof (DirtyBase));
  g_task_set_task_data (outer, st, (GDestroyNotify) sample_state_free);
  clearer = g_task_new (NULL, cancellable, on_cleared, outer);
  g_task_set_task_data (clearer, st, NULL);
  g_task_run_in_thread (clearer, clear_thread);
}

MaDirtySample *
ma_dirty_sample_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

JsonNode *
ma_dirty_sample_to_json (MaDirtySample *sample, guint top)
{
  JsonObject *obj = json_object_new ();
  JsonArray *procs = json_array_new ();

  json_object_set_string_member (obj, "method", ma_dirty_method_to_string (sample->method));
  json_object_set_string_member (obj, "method-note", sample->method_note);
  json_object_set_double_member (obj, "seconds", sample->seconds);
  json_object_set_int_member (obj, "page-size", sysconf (_SC_PAGESIZE));
  for (guint i = 0; i < sample->processes->len && i < top; i++)
    {
      MaDirtyProcess *p = sample->processes->pdata[i];
      JsonObject *po = json_object_new ();
      g_autofree char *comm = ma_json_safe_string (p->comm, -1, NULL);

      json_object_set_int_member (po, "pid", p->pid);
      json_object_set_string_member (po, "comm", comm);
      if (p->cgroup != NULL)
        {
          g_autofree char *cg = ma_json_safe_string (p->cgroup, -1, NULL);
          json_object_set_string_member (po, "cgroup", cg);
        }
      if (p->unit != NULL)
        {
          g_autofree char *unit = ma_json_safe_string (p->unit, -1, NULL);
          json_object_set_string_member (po, "unit", unit);
        }
      json_object_set_double_member (po, "dirty-mib-per-s", p->dirty_mib_per_s);
      json_object_set_int_member (po, "dirty-bytes", (gint64) p->dirty_bytes);
      json_object_set_int_member (po, "rss-bytes", (gint64) p->rss_bytes);
      json_object_set_int_member (po, "minor-faults", (gint64) p->minor_faults);
      json_object_set_int_member (po, "write-bytes", (gint64) p->write_bytes);
      json_array_add_object_element (procs, po);
    }
  json_object_set_array_member (obj, "processes", procs);
  json_object_set_double_member (obj, "processes-mib-per-s", sample->total_mib_per_s);
  json_object_set_double_member (obj, "page-cache-mib-per-s", sample->page_cache_mib_per_s);
  json_object_set_double_member (obj, "guest-total-mib-per-s",
                                 sample->total_mib_per_s + sample->page_cache_mib_per_s);
  json_object_set_int_member (obj, "scanned", sample->scanned);
  json_object_set_int_member (obj, "kernel-threads-skipped", sample->kernel_threads);
  json_object_set_int_member (obj, "vanished", sample->vanished);
  json_object_set_int_member (obj, "unreadable", sample->unreadable);
  json_object_set_double_member (obj, "cost-ms", sample->cost_ms);
  return ma_json_new_object_node (obj);
}

/* ---- the command ---- */

typedef struct
{
  MaCall *call;
  guint top;
} DirtyCall;

static void
on_sampled (GObject *source, GAsyncResult *result, gpointer user_data)
{
  DirtyCall *dc = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(MaDirtySample) sample = ma_dirty_sample_finish (result, &error);

  if (sample == NULL)
    ma_call_return_error (dc->call, g_steal_pointer (&error));
  else
    ma_call_return (dc->call, ma_dirty_sample_to_json (sample, dc->top));
  ma_call_unref (dc->call);
  g_free (dc);
}

static void
cmd_dirty_rate (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "seconds", "top", NULL };
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  double seconds = MA_DIRTY_DEFAULT_SECONDS;
  gint64 top = MA_DIRTY_DEFAULT_TOP;
  DirtyCall *dc;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (!ma_json_get_double (args, "seconds", &seconds, &error)
      || !ma_json_get_int (args, "top", &top, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (!(seconds >= MA_DIRTY_MIN_SECONDS && seconds <= MA_DIRTY_MAX_SECONDS))
    {
      ma_call_return_new_error (call, MA_ERROR_INVALID_ARGUMENT,
                                "Parameter 'seconds' must be from %.1f to %.0f",
                                MA_DIRTY_MIN_SECONDS, MA_DIRTY_MAX_SECONDS);
      return;
    }
  if (top < 1 || top > MA_DIRTY_MAX_TOP)
    {
      ma_call_return_new_error (call, MA_ERROR_INVALID_ARGUMENT,
                                "Parameter 'top' must be from 1 to %d", MA_DIRTY_MAX_TOP);
      return;
    }
  dc = g_new0 (DirtyCall, 1);
  dc->call = ma_call_ref (call);
  dc->top = (guint) top;
  ma_dirty_sample_async (seconds, NULL, on_sampled, dc);
}

static const MaCommandSpec dirtyrate_commands[] = {
  { "dirty-rate", cmd_dirty_rate,
    "per-process dirty-page rates over an interval (soft-dirty or a proxy)" },
  { NULL }
};

static const char *const dirtyrate_capabilities[] = { "dirty-rate", NULL };

static const MaModuleClass dirtyrate_module = {
  .name = "dirty-rate",
  .commands = dirtyrate_commands,
  .capabilities = dirtyrate_capabilities,
};

gboolean
ma_dirtyrate_register (MaAgent *agent, GError **error)
{
  ma_agent_add_module (agent, &dirtyrate_module, NULL);
  return TRUE;
}
