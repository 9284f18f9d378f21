/* procscan.c — one pass over /proc: every process's fds (open mode from lstat, target through
 * statx only where needed), its tasks in D state (wchan, syscall, file) and who it is. */
#include "procscan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "error.h"
#include "paths.h"
#include "statbatch.h"
#include "syscalls.h"

#define MA_PROC_SCAN_MAX_THREADS 4
#define MA_PROC_SMALL_FILE_BYTES 4096
#define MA_PROC_CMDLINE_MAX_BYTES 4096
#define MA_PROC_DELETED_SUFFIX " (deleted)"
/* while a lock's fd is looked for, targets are resolved this many (at least) at a time */
#define MA_PROC_WANTED_STEP 8
/* a process's lock files are mostly the first it opens after its standard streams: their
 * targets are asked with the open modes, with a margin (a statx costs less than a round trip) */
#define MA_PROC_STD_FDS 3

/* ---- file keys ---- */

guint
ma_file_key_hash (gconstpointer key)
{
  const MaFileKey *k = key;

  return (guint) (k->ino * 2654435761u) ^ k->devno ^ ((guint) k->pid << 7);
}

gboolean
ma_file_key_equal (gconstpointer a, gconstpointer b)
{
  const MaFileKey *x = a, *y = b;

  return x->ino == y->ino && x->devno == y->devno && x->pid == y->pid;
}

/* What an open file owns (the struct itself may live in an array). */
static void
open_file_clear (MaOpenFile *file)
{
  g_free (file->path);
  if (file->fdinfo != NULL)
    {
      ma_fdinfo_clear (file->fdinfo);
      g_free (file->fdinfo);
    }
}

void
ma_open_file_free (MaOpenFile *file)
{
  if (file == NULL)
    return;
  open_file_clear (file);
  g_free (file);
}

static void
stuck_task_free (MaStuckTask *task)
{
  g_free (task->comm);
  g_free (task->wchan);
  ma_open_file_free (task->file);
  g_free (task);
}

static void
proc_info_free (MaProcInfo *info)
{
  g_free (info->comm);
  g_free (info->cmdline);
  g_free (info->cgroup);
  g_free (info->unit);
  g_free (info->mnt_ns);
  g_free (info);
}

/* ---- small readers relative to a directory fd ---- */

/* Read a small /proc file whole; NULL with errno set when it cannot be read. */
static char *
read_at (int dirfd, const char *name, gsize max, gsize *len_out)
{
  int fd = openat (dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  g_autofree char *buf = NULL;
  gsize len = 0;

  if (fd < 0)
    return NULL;
  buf = g_malloc (max + 1);
  while (len < max)
    {
      ssize_t n = read (fd, buf + len, max - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;
          close (fd);
          errno = saved;
          return NULL;
        }
      if (n == 0)
        break;
      len += (gsize) n;
      /* every file read here is one procfs record (a single_open file, or cmdline): a read
       * that returns less than asked returned all of it, and the read that would say EOF
       * is a system call per file saved */
      if (len < max)
        break;
    }
  close (fd);
  buf[len] = '\0';
  if (len_out != NULL)
    *len_out = len;
  return g_steal_pointer (&buf);
}

static char *
readlink_at (int dirfd, const char *name)
{
  char buf[PATH_MAX + 64];
  ssize_t n = readlinkat (dirfd, name, buf, sizeof buf);

  if (n < 0 || (gsize) n >= sizeof buf)
    return NULL;
  return g_strndup (buf, (gsize) n);
}

/* A /proc directory read with getdents64 into a buffer of its scan part: no fstat and fcntl
 * as fdopendir makes, and no last call that returns nothing when the first left room (procfs
 * fills the buffer while entries remain). */
#define MA_PROC_DIR_BUF 32768

typedef struct
{
  int fd;
  char *buf; /* MA_PROC_DIR_BUF bytes */
  gsize len, pos;
  gboolean eof;
} ProcDir;

struct proc_dirent64
{
  guint64 d_ino;
  gint64 d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

static const char *
proc_dir_next (ProcDir *d)
{
  const struct proc_dirent64 *de;

  while (d->pos >= d->len)
    {
      long n;

      if (d->eof)
        return NULL;
      n = syscall (SYS_getdents64, d->fd, d->buf, MA_PROC_DIR_BUF);
      if (n <= 0)
        {
          d->eof = TRUE;
          return NULL;
        }
      d->len = (gsize) n;
      d->pos = 0;
      if (MA_PROC_DIR_BUF - d->len >= sizeof (struct proc_dirent64) + NAME_MAX + 1)
        d->eof = TRUE;
    }
  de = (gconstpointer) (d->buf + d->pos);
  d->pos += de->d_reclen;
  return de->d_name;
}

static gboolean
parse_pid (const char *name, gint *out)
{
  gint64 v = 0;

  if (name[0] < '1' || name[0] > '9')
    return FALSE;
  for (const char *p = name; *p != '\0'; p++)
    {
      if (*p < '0' || *p > '9' || v > G_MAXINT / 10)
        return FALSE;
      v = v * 10 + (*p - '0');
    }
  *out = (gint) v;
  return TRUE;
}

/* ---- mount namespaces other than ours ---- */

static GHashTable *
load_ns_mounts (int piddir)
{
  GHashTable *map = g_hash_table_new (NULL, NULL);
  g_autofree char *text = NULL;
  gsize len = 0;
  int fd = openat (piddir, "mountinfo", O_RDONLY | O_CLOEXEC);
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  char chunk[65536];
  ssize_t n;

  if (fd < 0)
    return map;
  while ((n = read (fd, chunk, sizeof chunk)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0)
      g_byte_array_append (bytes, (guint8 *) chunk, (guint) n);
  close (fd);
  len = bytes->len;
  g_byte_array_append (bytes, (guint8 *) "", 1);
  text = (char *) g_byte_array_free (g_steal_pointer (&bytes), FALSE);
  for (char *line = text; line < text + len;)
    {
      char *nl = strchr (line, '\n');
      unsigned id, parent, maj, min;
      if (nl != NULL)
        *nl = '\0';
      if (sscanf (line, "%u %u %u:%u", &id, &parent, &maj, &min) == 4)
        g_hash_table_insert (map, GUINT_TO_POINTER (id), GUINT_TO_POINTER (makedev (maj, min)));
      if (nl == NULL)
        break;
      line = nl + 1;
    }
  return map;
}

/* The superblock device behind a mount id: ours first, then the process's own namespace. */
static guint32
devno_for_mount (MaProcScan *self, int piddir, gint mnt_id, guint32 fallback)
{
  MaMount *m = ma_mount_table_lookup_id (self->mounts, mnt_id);
  g_autofree char *ns = NULL;
  GHashTable *map;
  gpointer devno;

  if (m != NULL)
    return (guint32) makedev (m->major, m->minor);
  ns = readlink_at (piddir, "ns/mnt");
  if (ns == NULL || g_strcmp0 (ns, self->own_mnt_ns) == 0)
    return fallback; /* an internal mount: pipes, sockets, anonymous inodes */
  g_mutex_lock (&self->lock);
  map = g_hash_table_lookup (self->ns_mounts, ns);
  if (map == NULL)
    {
      map = load_ns_mounts (piddir);
      g_hash_table_insert (self->ns_mounts, g_strdup (ns), map);
    }
  if (!g_hash_table_lookup_extended (map, GINT_TO_POINTER (mnt_id), NULL, &devno))
    devno = GUINT_TO_POINTER (fallback);
  g_mutex_unlock (&self->lock);
  return GPOINTER_TO_UINT (devno);
}

/* Following an fd link reaches the file on its own filesystem: never let that ask a network or
 * FUSE server (a hung NFS server or FUSE daemon would hold the pass in D state for good). The
 * inode, mount id and link count are what the cache already knows. */
#define TARGET_STATX_FLAGS AT_STATX_DONT_SYNC
#define TARGET_STATX_MASK (STATX_TYPE | STATX_INO | STATX_NLINK | STATX_MNT_ID | STATX_SIZE)

/* statx through the fd link: the target's inode, mount and link count. */
static gboolean
stat_target (MaProcScan *self, int piddir, int fddir, const char *name, struct statx *stx)
{
  g_atomic_int_inc (&self->n_statx);
  return statx (fddir, name, TARGET_STATX_FLAGS,
                TARGET_STATX_MASK, stx) == 0;
}

/* The superblock device of a statx result: through the mount id when there is one. */
static guint32
devno_of (MaProcScan *self, int piddir, const struct statx *stx)
{
  guint32 fallback = (guint32) makedev (stx->stx_dev_major, stx->stx_dev_minor);

  return (stx->stx_mask & STATX_MNT_ID) ? devno_for_mount (self, piddir, (gint) stx->stx_mnt_id,
                                                           fallback)
                                        : fallback;
}

static MaOpenFile
open_file_value (gint pid, gint fd, const struct statx *stx, guint32 devno, gboolean writable)
{
  MaOpenFile file = { 0 };

  file.pid = pid;
  file.fd = fd;
  file.ino = stx->stx_ino;
  file.mnt_id = (stx->stx_mask & STATX_MNT_ID) ? (gint) stx->stx_mnt_id : -1;
  file.devno = devno;
  file.writable = writable != FALSE;
  file.size = (stx->stx_mask & STATX_SIZE) ? stx->stx_size : 0;
  file.deleted = stx->stx_nlink == 0 && S_ISREG (stx->stx_mode);
  return file;
}

static MaOpenFile *
open_file_new (gint pid, gint fd, const struct statx *stx, guint32 devno, gboolean writable)
{
  MaOpenFile file = open_file_value (pid, fd, stx, devno, writable);

  return g_memdup2 (&file, sizeof file);
}

const char *
ma_proc_scan_file_path (MaProcScan *self, MaOpenFile *file)
{
  char name[64];
  struct statx stx;

  if (file->path_tried)
    return file->path;
  file->path_tried = TRUE;
  g_snprintf (name, sizeof name, "%s/%d/fd/%d", ma_path_procfs (), file->pid, file->fd);
  file->path = readlink_at (AT_FDCWD, name);
  if (file->path == NULL)
    return NULL;
  /* the fd may have been closed and reused since the pass: the same file, or no path */
  g_atomic_int_inc (&self->n_statx);
  if (statx (AT_FDCWD, name, TARGET_STATX_FLAGS, STATX_INO, &stx) != 0 || stx.stx_ino != file->ino)
    {
      g_clear_pointer (&file->path, g_free);
      return NULL;
    }
  if (file->deleted && g_str_has_suffix (file->path, MA_PROC_DELETED_SUFFIX))
    file->path[strlen (file->path) - strlen (MA_PROC_DELETED_SUFFIX)] = '\0';
  return file->path;
}

/* One entry of /proc/PID/fd while its batch is worked on. */
typedef struct
{
  char name[16];
  gint fd;
  int link_res;          /* the link's statx: its permission bits are the open mode */
  struct statx link;
  int target_res;        /* the target's, G_MININT when not asked */
  struct statx target;
} FdEntry;

/* ---- one process ---- */

typedef struct
{
  GPtrArray *lock_files;
  GPtrArray *orphan_files;
  GArray *writers;  /* MaOpenFile values: one small struct each, no allocation of its own */
  GPtrArray *stuck;
  GArray *qemu_ga_pids;
  guint n_processes, n_tasks, n_fds, n_vanished;
  MaStatBatch *batch; /* this thread's */
  FdEntry *fds;       /* MA_STAT_BATCH_SIZE of them, reused */
  char *dirbuf;       /* a ProcDir's, reused */
} ScanPart;

static void
scan_part_init (ScanPart *part)
{
  memset (part, 0, sizeof *part);
  part->lock_files = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_open_file_free);
  part->orphan_files = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_open_file_free);
  part->writers = g_array_new (FALSE, FALSE, sizeof (MaOpenFile));
  g_array_set_clear_func (part->writers, (GDestroyNotify) open_file_clear);
  part->stuck = g_ptr_array_new_with_free_func ((GDestroyNotify) stuck_task_free);
  part->qemu_ga_pids = g_array_new (FALSE, FALSE, sizeof (gint));
  part->batch = g_new0 (MaStatBatch, 1);
  ma_stat_batch_init (part->batch);
  part->fds = g_new0 (FdEntry, MA_STAT_BATCH_SIZE);
  part->dirbuf = g_malloc (MA_PROC_DIR_BUF);
}

/* Parse "TID (comm) S ppid ... flags ... num_threads": state, comm, whether it is a kernel
 * thread and how many threads its process has. */
static gboolean
parse_stat (const char *text, char *state, char **comm, gboolean *kthread, guint *n_threads)
{
  const char *open = strchr (text, '(');
  const char *close = strrchr (text, ')');
  guint64 flags = 0;
  const char *p;

  if (open == NULL || close == NULL || close < open || close[1] != ' ' || close[2] == '\0')
    return FALSE;
  *state = close[2];
  *comm = g_strndup (open + 1, (gsize) (close - open - 1));
  /* fields after the state: ppid pgrp session tty_nr tpgid flags (the 9th field) */
  p = close + 3;
  for (guint field = 4; field < 9 && p != NULL; field++)
    p = strchr (p + 1, ' ');
  if (p != NULL)
    flags = g_ascii_strtoull (p + 1, NULL, 10);
  *kthread = (flags & 0x00200000) != 0; /* PF_KTHREAD */
  /* … minflt cminflt majflt cmajflt utime stime cutime cstime priority nice num_threads */
  for (guint field = 9; field < 20 && p != NULL; field++)
    p = strchr (p + 1, ' ');
  *n_threads = p != NULL ? (guint) g_ascii_strtoull (p + 1, NULL, 10) : 0;
  return TRUE;
}

/* A task in D state; tdir is its /proc/PID/task/TID (or /proc/PID for a single thread). */
static void
scan_stuck_task (MaProcScan *self, int tdir, gint pid, gint tid, char *comm, ScanPart *part)
{
  g_autofree char *syscall = NULL;
  MaStuckTask *task = g_new0 (MaStuckTask, 1);
  gint fd = -1;

  task->pid = pid;
  task->tid = tid;
  task->comm = comm;
  task->syscall = -1;
  task->wchan = read_at (tdir, "wchan", 256, NULL);
  if (task->wchan != NULL && (task->wchan[0] == '\0' || g_strcmp0 (task->wchan, "0") == 0))
    g_clear_pointer (&task->wchan, g_free);
  syscall = read_at (tdir, "syscall", 512, NULL);
  if (syscall != NULL && ma_syscall_parse_line (syscall, &task->syscall, &fd))
    {
      task->syscall_name = ma_syscall_name (task->syscall);
      if (fd >= 0)
        task->file = ma_proc_scan_stat_fd (self, pid, fd);
    }
  g_ptr_array_add (part->stuck, task);
}

/* Every thread of a multi-threaded process: the ones in D state (not kernel threads). */
static void
scan_tasks (MaProcScan *self, int piddir, gint pid, ScanPart *part)
{
  int taskdir = openat (piddir, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ProcDir dir = { taskdir, part->dirbuf, 0, 0, FALSE };
  const char *d_name;

  if (taskdir < 0)
    return;
  while ((d_name = proc_dir_next (&dir)) != NULL)
    {
      char path[48];
      g_autofree char *stat = NULL;
      char *comm = NULL;
      char state = '?';
      gboolean kthread = FALSE;
      guint n_threads = 0;
      gint tid;
      int tdir;

      if (!parse_pid (d_name, &tid))
        continue;
      part->n_tasks++;
      g_snprintf (path, sizeof path, "%d/stat", tid);
      stat = read_at (taskdir, path, 1024, NULL);
      if (stat == NULL || !parse_stat (stat, &state, &comm, &kthread, &n_threads))
        continue;
      if (state != 'D' || kthread)
        {
          g_free (comm);
          continue;
        }
      tdir = openat (taskdir, d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (tdir < 0)
        {
          g_free (comm);
          continue;
        }
      scan_stuck_task (self, tdir, pid, tid, comm, part);
      close (tdir);
    }
  close (taskdir);
}

/* What one resolved fd is: a wanted lock's, a writer, an orphan lock's holder. Counts the
 * lock files found (their process is described during the pass); no path is read here. */
static guint
scan_fd (MaProcScan *self, int piddir, int fddir, gint pid, const FdEntry *e, gboolean writable,
         guint *wanted_left, ScanPart *part)
{
  const struct statx *stx = &e->target;
  gboolean want_orphans = g_hash_table_size (self->orphan_inodes) > 0;
  gboolean is_lock = FALSE, is_writer;
  guint32 devno = 0;
  guint n_found = 0;

  if (*wanted_left > 0 || (writable && S_ISREG (stx->stx_mode)) || want_orphans)
    devno = devno_of (self, piddir, stx);
  if (*wanted_left > 0)
    {
      MaFileKey key = { stx->stx_ino, devno, pid };
      is_lock = g_hash_table_contains (self->wanted, &key);
      if (is_lock)
        (*wanted_left)--;
    }
  is_writer = writable && S_ISREG (stx->stx_mode)
              && g_hash_table_contains (self->selected_devs, GUINT_TO_POINTER (devno));
  if (is_writer)
    {
      /* a writer's process is described only if the report lists it, afterwards */
      MaOpenFile file = open_file_value (pid, e->fd, stx, devno, writable);
      g_array_append_val (part->writers, file);
    }
  if (is_lock)
    {
      g_ptr_array_add (part->lock_files, open_file_new (pid, e->fd, stx, devno, writable));
      n_found++;
    }
  if (want_orphans)
    {
      MaFileKey key = { stx->stx_ino, 0, 0 };
      if (g_hash_table_contains (self->orphan_inodes, &key))
        {
          g_autoptr(MaOpenFile) file = open_file_new (pid, e->fd, stx, devno, writable);
          g_auto(MaFdinfo) fdinfo = { 0 };
          char name[48];
          g_autofree char *text = NULL;
          gsize len = 0;

          g_snprintf (name, sizeof name, "fdinfo/%d", e->fd);
          text = read_at (piddir, name, MA_PROC_SMALL_FILE_BYTES * 16, &len);
          if (text != NULL && ma_fdinfo_parse (text, len, &fdinfo, NULL)
              && fdinfo.locks->len > 0)
            {
              file->fdinfo = g_memdup2 (&fdinfo, sizeof fdinfo);
              fdinfo.locks = NULL; /* the file's now */
              g_ptr_array_add (part->orphan_files, g_steal_pointer (&file));
              n_found++;
            }
        }
    }
  return n_found;
}

/* The target of this fd is still to be asked for: it is open, not asked yet, and writable, or
 * a lock of its process is still missing, or orphan locks are looked for. */
static gboolean
fd_needs_target (const FdEntry *e, guint wanted_left, gboolean want_orphans)
{
  return e->link_res == 0 && e->target_res == G_MININT
         && ((e->link.stx_mode & S_IWUSR) != 0 || wanted_left > 0 || want_orphans);
}

/* The fds of one process; TRUE when one of them went into the report. Open modes come from
 * the links (no access to the target filesystems); targets are resolved only for writable
 * fds, for the fds of a process until every lock it owns is found, and for all when locks
 * without a known owner (OFD) are looked for. */
static gboolean
scan_fds (MaProcScan *self, int piddir, gint pid, ScanPart *part)
{
  int fddir = openat (piddir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  gboolean want_orphans = g_hash_table_size (self->orphan_inodes) > 0;
  guint wanted_left = 0, n_found = 0, n_ahead = 0;
  gboolean more = TRUE;
  ProcDir dir = { fddir, part->dirbuf, 0, 0, FALSE };

  if (fddir < 0)
    return FALSE;
  if (g_hash_table_size (self->wanted) > 0)
    wanted_left = GPOINTER_TO_UINT (g_hash_table_lookup (self->wanted_pids, GINT_TO_POINTER (pid)));
  /* targets asked together with the open modes, in the same submission: every one when
   * orphan locks are looked for, else the fds most likely to hold this process's locks */
  if (want_orphans)
    n_ahead = G_MAXUINT;
  else if (wanted_left > 0)
    n_ahead = wanted_left + MA_PROC_STD_FDS + MA_PROC_WANTED_STEP;
  while (more)
    {
      FdEntry *fds = part->fds;
      guint n = 0, n_early = 0;

      while (n < MA_STAT_BATCH_SIZE && part->batch->n + 2 <= MA_STAT_BATCH_SIZE)
        {
          const char *d_name = proc_dir_next (&dir);
          if (d_name == NULL)
            {
              more = FALSE;
              break;
            }
          if (d_name[0] < '0' || d_name[0] > '9' || strlen (d_name) >= sizeof fds[n].name)
            continue;
          strcpy (fds[n].name, d_name);
          fds[n].fd = (gint) g_ascii_strtoll (d_name, NULL, 10);
          fds[n].target_res = G_MININT;
          ma_stat_batch_add (part->batch, fddir, fds[n].name, AT_SYMLINK_NOFOLLOW, STATX_MODE,
                             &fds[n].link, &fds[n].link_res);
          if (n_ahead > 0)
            {
              ma_stat_batch_add (part->batch, fddir, fds[n].name, TARGET_STATX_FLAGS,
                                 TARGET_STATX_MASK, &fds[n].target, &fds[n].target_res);
              n_ahead--;
              n_early++;
            }
          n++;
        }
      g_atomic_int_add (&self->n_statx, (gint) n_early);
      ma_stat_batch_run (part->batch);

      for (guint i = 0; i < n;)
        {
          guint end;

          /* what needs no target, or has it already (asked early), is looked at in order:
           * a lock found there may make the next targets unnecessary */
          for (; i < n && !fd_needs_target (&fds[i], wanted_left, want_orphans); i++)
            {
              FdEntry *e = &fds[i];
              if (e->link_res != 0)
                continue; /* closed meanwhile */
              part->n_fds++;
              if (e->target_res == 0)
                n_found += scan_fd (self, piddir, fddir, pid, e, (e->link.stx_mode & S_IWUSR) != 0,
                                    &wanted_left, part);
            }
          /* while a lock's fd is missing, every target of a few fds at a time; then the
           * writable ones (and all of them for orphan locks) of the rest in one go */
          end = wanted_left > 0 && !want_orphans ? MIN (n, i + MAX (wanted_left, MA_PROC_WANTED_STEP))
                                                 : n;
          for (guint j = i; j < end; j++)
            if (fd_needs_target (&fds[j], wanted_left, want_orphans))
              ma_stat_batch_add (part->batch, fddir, fds[j].name, TARGET_STATX_FLAGS,
                                 TARGET_STATX_MASK, &fds[j].target, &fds[j].target_res);
          g_atomic_int_add (&self->n_statx, (gint) part->batch->n);
          ma_stat_batch_run (part->batch);
        }
    }
  close (fddir);
  return n_found > 0;
}

static MaProcInfo *proc_info_read (MaProcScan *self, int piddir, gint pid, const char *comm);
static MaProcInfo *proc_info_remember (MaProcScan *self, MaProcInfo *info);

static void
scan_process (MaProcScan *self, int procfd, gint pid, ScanPart *part)
{
  char name[16];
  int piddir;
  g_autofree char *stat = NULL;
  g_autofree char *comm = NULL;
  char state = '?';
  gboolean kthread = FALSE, found = FALSE;
  guint n_threads = 0, n_stuck = part->stuck->len;

  g_snprintf (name, sizeof name, "%d", pid);
  piddir = openat (procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (piddir >= 0)
    stat = read_at (piddir, "stat", 1024, NULL);
  if (stat == NULL || !parse_stat (stat, &state, &comm, &kthread, &n_threads))
    {
      if (piddir >= 0)
        close (piddir);
      part->n_vanished++;
      return;
    }
  part->n_processes++;
  if (!kthread && g_strcmp0 (comm, "qemu-ga") == 0)
    g_array_append_val (part->qemu_ga_pids, pid);
  /* the process's own stat is its only thread's: the task directory only when there are more */
  if (n_threads > 1)
    scan_tasks (self, piddir, pid, part);
  else
    {
      part->n_tasks++;
      if (state == 'D' && !kthread)
        scan_stuck_task (self, piddir, pid, pid, g_strdup (comm), part);
    }
  /* kernel threads have no files */
  if (!kthread)
    found = scan_fds (self, piddir, pid, part);
  /* who it is, read here in parallel rather than one process at a time afterwards */
  if (found || part->stuck->len > n_stuck
      || g_hash_table_contains (self->describe_pids, GINT_TO_POINTER (pid)))
    proc_info_remember (self, proc_info_read (self, piddir, pid, comm));
  close (piddir);
}

/* ---- the pass, spread over a few threads ---- */

typedef struct
{
  MaProcScan *self;
  int procfd;
  GArray *pids;
  gint next;
  GCancellable *cancellable;
} ScanShared;

typedef struct
{
  ScanShared *shared;
  ScanPart part;
} ScanWorker;

static gpointer
scan_worker (gpointer data)
{
  ScanWorker *w = data;
  ScanShared *s = w->shared;

  for (;;)
    {
      gint i = g_atomic_int_add (&s->next, 1);
      if ((guint) i >= s->pids->len || g_cancellable_is_cancelled (s->cancellable))
        break;
      scan_process (s->self, s->procfd, g_array_index (s->pids, gint, i), &w->part);
    }
  return NULL;
}

/* by pid, then fd */
static gint
open_file_order (const MaOpenFile *x, const MaOpenFile *y)
{
  return x->pid != y->pid ? (x->pid < y->pid ? -1 : 1) : (x->fd < y->fd ? -1 : x->fd > y->fd);
}

static gint
compare_open_files (gconstpointer a, gconstpointer b)
{
  return open_file_order (*(MaOpenFile *const *) a, *(MaOpenFile *const *) b);
}

static gint
compare_open_file_values (gconstpointer a, gconstpointer b)
{
  return open_file_order (a, b);
}

/* A part's writers join the scan's, in order: the part's are in order already (a worker
 * takes the processes in /proc's order and /proc/PID/fd lists fds in order), so a merge in
 * one pass, no sort of 100,000 pointers; a part out of order is sorted first. */
static void
merge_writers (MaProcScan *self, GArray *store)
{
  GPtrArray *merged;
  guint i = 0, j = 0;

  for (guint k = 1; k < store->len; k++)
    if (open_file_order (&g_array_index (store, MaOpenFile, k - 1),
                         &g_array_index (store, MaOpenFile, k)) > 0)
      {
        g_array_sort (store, compare_open_file_values);
        break;
      }
  merged = g_ptr_array_sized_new (self->writers->len + store->len);
  while (i < self->writers->len || j < store->len)
    {
      MaOpenFile *a = i < self->writers->len ? self->writers->pdata[i] : NULL;
      MaOpenFile *b = j < store->len ? &g_array_index (store, MaOpenFile, j) : NULL;
      gboolean take_a = b == NULL || (a != NULL && open_file_order (a, b) <= 0);

      g_ptr_array_add (merged, take_a ? a : b);
      if (take_a)
        i++;
      else
        j++;
    }
  g_ptr_array_unref (self->writers);
  self->writers = merged;
  g_ptr_array_add (self->writer_stores, store);
}

static void
merge_part (MaProcScan *self, ScanPart *part)
{
  g_ptr_array_extend_and_steal (self->lock_files, part->lock_files);
  g_ptr_array_extend_and_steal (self->orphan_files, part->orphan_files);
  merge_writers (self, part->writers); /* keeps the part's array */
  g_ptr_array_extend_and_steal (self->stuck, part->stuck);
  g_array_append_vals (self->qemu_ga_pids, part->qemu_ga_pids->data, part->qemu_ga_pids->len);
  g_array_unref (part->qemu_ga_pids);
  ma_stat_batch_clear (part->batch);
  g_free (part->batch);
  g_free (part->fds);
  g_free (part->dirbuf);
  self->n_processes += part->n_processes;
  self->n_tasks += part->n_tasks;
  self->n_fds += part->n_fds;
  self->n_vanished += part->n_vanished;
}

static gint
compare_stuck (gconstpointer a, gconstpointer b)
{
  const MaStuckTask *x = *(MaStuckTask *const *) a, *y = *(MaStuckTask *const *) b;

  return x->tid < y->tid ? -1 : x->tid > y->tid;
}

MaProcScan *
ma_proc_scan_new (MaMountTable *mounts)
{
  MaProcScan *self = g_new0 (MaProcScan, 1);

  self->mounts = mounts;
  self->wanted = g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL);
  self->orphan_inodes = g_hash_table_new_full (ma_file_key_hash, ma_file_key_equal, g_free, NULL);
  self->selected_devs = g_hash_table_new (NULL, NULL);
  self->describe_pids = g_hash_table_new (NULL, NULL);
  self->wanted_pids = g_hash_table_new (NULL, NULL);
  self->lock_files = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_open_file_free);
  self->orphan_files = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_open_file_free);
  self->writers = g_ptr_array_new ();
  self->writer_stores = g_ptr_array_new_with_free_func ((GDestroyNotify) g_array_unref);
  self->stuck = g_ptr_array_new_with_free_func ((GDestroyNotify) stuck_task_free);
  self->qemu_ga_pids = g_array_new (FALSE, FALSE, sizeof (gint));
  self->proc_info = g_hash_table_new_full (NULL, NULL, NULL, (GDestroyNotify) proc_info_free);
  self->ns_mounts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify) g_hash_table_unref);
  g_mutex_init (&self->lock);
  return self;
}

void
ma_proc_scan_free (MaProcScan *self)
{
  if (self == NULL)
    return;
  g_hash_table_unref (self->wanted);
  g_hash_table_unref (self->orphan_inodes);
  g_hash_table_unref (self->selected_devs);
  g_hash_table_unref (self->describe_pids);
  g_hash_table_unref (self->wanted_pids);
  g_ptr_array_unref (self->lock_files);
  g_ptr_array_unref (self->orphan_files);
  g_ptr_array_unref (self->writers);
  g_ptr_array_unref (self->writer_stores);
  g_ptr_array_unref (self->stuck);
  g_array_unref (self->qemu_ga_pids);
  g_hash_table_unref (self->proc_info);
  g_hash_table_unref (self->ns_mounts);
  g_mutex_clear (&self->lock);
  g_free (self->own_mnt_ns);
  g_free (self);
}

gboolean
ma_proc_scan_run (MaProcScan *self, GCancellable *cancellable, GError **error)
{
  g_autoptr(GArray) pids = g_array_new (FALSE, FALSE, sizeof (gint));
  g_autofree char *self_ns = ma_path_build (ma_path_procfs (), "self", "ns", "mnt", NULL);
  gint64 started = g_get_monotonic_time ();
  GHashTableIter iter;
  gpointer key;
  ScanShared shared = { 0 };
  ScanWorker workers[MA_PROC_SCAN_MAX_THREADS];
  GThread *threads[MA_PROC_SCAN_MAX_THREADS] = { NULL };
  guint n_threads;
  DIR *dir;
  struct dirent *de;
  int procfd;

  self->own_mnt_ns = g_file_read_link (self_ns, NULL);
  g_hash_table_remove_all (self->wanted_pids);
  g_hash_table_iter_init (&iter, self->wanted);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      const MaFileKey *k = key;
      gpointer n = g_hash_table_lookup (self->wanted_pids, GINT_TO_POINTER (k->pid));
      g_hash_table_insert (self->wanted_pids, GINT_TO_POINTER (k->pid),
                           GUINT_TO_POINTER (GPOINTER_TO_UINT (n) + 1));
    }

  procfd = open (ma_path_procfs (), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_UNSUPPORTED, "cannot open %s: %s", ma_path_procfs (),
                   g_strerror (errno));
      return FALSE;
    }
  dir = fdopendir (dup (procfd));
  if (dir == NULL)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_UNSUPPORTED, "cannot list %s: %s", ma_path_procfs (),
                   g_strerror (errno));
      close (procfd);
      return FALSE;
    }
  while ((de = readdir (dir)) != NULL)
    {
      gint pid;
      if (parse_pid (de->d_name, &pid))
        g_array_append_val (pids, pid);
    }
  closedir (dir);

  shared.self = self;
  shared.procfd = procfd;
  shared.pids = pids;
  shared.cancellable = cancellable;
  n_threads = CLAMP (g_get_num_processors (), 1, MA_PROC_SCAN_MAX_THREADS);
  for (guint i = 0; i < n_threads; i++)
    {
      workers[i].shared = &shared;
      scan_part_init (&workers[i].part);
      if (i > 0)
        threads[i] = g_thread_try_new ("procscan", scan_worker, &workers[i], NULL);
    }
  scan_worker (&workers[0]);
  for (guint i = 0; i < n_threads; i++)
    {
      if (threads[i] != NULL)
        g_thread_join (threads[i]);
      else if (i > 0)
        scan_worker (&workers[i]); /* no thread: do its share here */
      merge_part (self, &workers[i].part); /* consumes the part's arrays */
    }
  close (procfd);
  g_ptr_array_sort (self->lock_files, compare_open_files);
  g_ptr_array_sort (self->orphan_files, compare_open_files);
  g_ptr_array_sort (self->stuck, compare_stuck);
  self->seconds = (double) (g_get_monotonic_time () - started) / G_USEC_PER_SEC;
  return !g_cancellable_set_error_if_cancelled (cancellable, error);
}

/* ---- describing processes ---- */

static char *
unit_from_cgroup (const char *path)
{
  g_auto(GStrv) parts = g_strsplit (path, "/", -1);
  guint n = g_strv_length (parts);

  for (guint i = n; i-- > 0;)
    if (g_str_has_suffix (parts[i], ".service") || g_str_has_suffix (parts[i], ".scope"))
      return g_strdup (parts[i]);
  return NULL;
}

/* Who a process is, from its open /proc/PID directory; comm when already read (stat). */
static MaProcInfo *
proc_info_read (MaProcScan *self, int piddir, gint pid, const char *comm)
{
  MaProcInfo *info;
  g_autofree char *comm_text = NULL;
  g_autofree char *cmdline = NULL;
  g_autofree char *cgroup = NULL;
  gsize len = 0;

  if (comm == NULL)
    {
      comm_text = read_at (piddir, "comm", 256, NULL);
      if (comm_text == NULL)
        return NULL;
      comm = g_strchomp (comm_text);
    }
  info = g_new0 (MaProcInfo, 1);
  info->pid = pid;
  info->comm = g_strdup (comm);
  cmdline = read_at (piddir, "cmdline", MA_PROC_CMDLINE_MAX_BYTES, &len);
  if (cmdline != NULL && len > 0)
    {
      while (len > 0 && cmdline[len - 1] == '\0')
        len--;
      for (gsize i = 0; i < len; i++)
        if (cmdline[i] == '\0')
          cmdline[i] = ' ';
      info->cmdline = g_strndup (cmdline, len);
    }
  cgroup = read_at (piddir, "cgroup", MA_PROC_SMALL_FILE_BYTES, NULL);
  if (cgroup != NULL)
    {
      /* cgroup v2: "0::/system.slice/foo.service" */
      char *line = strstr (cgroup, "0::");
      if (line != NULL && (line == cgroup || line[-1] == '\n'))
        {
          info->cgroup = g_strndup (line + 3, strcspn (line + 3, "\n"));
          info->unit = unit_from_cgroup (info->cgroup);
        }
    }
  info->mnt_ns = readlink_at (piddir, "ns/mnt");
  info->foreign_mnt_ns = info->mnt_ns != NULL && self->own_mnt_ns != NULL
                         && g_strcmp0 (info->mnt_ns, self->own_mnt_ns) != 0;
  return info;
}

/* Cache info (taken; NULL is fine) unless another thread was first; the cached one. */
static MaProcInfo *
proc_info_remember (MaProcScan *self, MaProcInfo *info)
{
  MaProcInfo *cached;

  if (info == NULL)
    return NULL;
  g_mutex_lock (&self->lock);
  cached = g_hash_table_lookup (self->proc_info, GINT_TO_POINTER (info->pid));
  if (cached == NULL)
    {
      g_hash_table_insert (self->proc_info, GINT_TO_POINTER (info->pid), info);
      cached = info;
    }
  else
    proc_info_free (info);
  g_mutex_unlock (&self->lock);
  return cached;
}

MaProcInfo *
ma_proc_scan_describe (MaProcScan *self, gint pid)
{
  MaProcInfo *info;
  char name[16];
  int piddir, procfd;

  g_mutex_lock (&self->lock);
  info = g_hash_table_lookup (self->proc_info, GINT_TO_POINTER (pid));
  g_mutex_unlock (&self->lock);
  if (info != NULL)
    return info;
  procfd = open (ma_path_procfs (), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0)
    return NULL;
  g_snprintf (name, sizeof name, "%d", pid);
  piddir = openat (procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  close (procfd);
  if (piddir < 0)
    return NULL;
  info = proc_info_read (self, piddir, pid, NULL);
  close (piddir);
  return proc_info_remember (self, info);
}

MaOpenFile *
ma_proc_scan_stat_fd (MaProcScan *self, gint pid, gint fd)
{
  char name[32];
  int procfd, piddir, fddir;
  struct stat st;
  struct statx stx;
  MaOpenFile *file = NULL;

  procfd = open (ma_path_procfs (), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (procfd < 0)
    return NULL;
  g_snprintf (name, sizeof name, "%d", pid);
  piddir = openat (procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  close (procfd);
  if (piddir < 0)
    return NULL;
  fddir = openat (piddir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fddir >= 0)
    {
      g_snprintf (name, sizeof name, "%d", fd);
      if (fstatat (fddir, name, &st, AT_SYMLINK_NOFOLLOW) == 0
          && stat_target (self, piddir, fddir, name, &stx))
        file = open_file_new (pid, fd, &stx, devno_of (self, piddir, &stx),
                              (st.st_mode & S_IWUSR) != 0);
      close (fddir);
    }
  close (piddir);
  return file;
}
