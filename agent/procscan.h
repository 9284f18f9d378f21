/* procscan.h — one pass over /proc: every process's fds (open mode from lstat, target through
 * statx only where needed), its tasks in D state (wchan, syscall, file) and who it is. */
#pragma once

#include <gio/gio.h>

#include "mounts.h"
#include "proclocks.h"

G_BEGIN_DECLS

/* A file identified as the kernel names it in /proc/locks: superblock device and inode. */
typedef struct
{
  guint64 ino;
  guint32 devno; /* makedev (major, minor) of the superblock */
  gint32 pid;    /* 0 when the key is not about one process */
} MaFileKey;

guint ma_file_key_hash (gconstpointer key);
gboolean ma_file_key_equal (gconstpointer a, gconstpointer b);

/* What one file descriptor turned out to be. Small: a scan may keep one per writable fd
 * of every process (100,000 and more on a big database guest). */
typedef struct
{
  gint pid;
  gint fd;
  guint32 devno;    /* superblock device (through the mount id, so btrfs subvolumes are right) */
  gint mnt_id;
  guint64 ino;
  guint64 size;      /* the target's size in bytes (what the cache knows) */
  char *path;        /* raw bytes, " (deleted)" removed when deleted; NULL until
                      * ma_proc_scan_file_path () resolves it (only what is reported is) */
  MaFdinfo *fdinfo;  /* only read for fds that may hold an OFD/orphan lock, else NULL */
  guint writable : 1;   /* opened O_WRONLY or O_RDWR */
  guint deleted : 1;    /* the file has no name left (st_nlink 0) */
  guint path_tried : 1;
} MaOpenFile;

typedef struct
{
  gint pid;
  gint tid;
  char *comm;
  char *wchan;
  gint64 syscall;    /* -1 when not in a system call or unknown */
  const char *syscall_name; /* static, NULL when unknown */
  MaOpenFile *file;  /* the fd the system call works on, when it has one */
} MaStuckTask;

typedef struct
{
  gint pid;
  char *comm;
  char *cmdline;     /* arguments joined with spaces, raw bytes; NULL for kernel threads */
  char *cgroup;      /* cgroup v2 path */
  char *unit;        /* systemd unit from the cgroup path, or NULL */
  char *mnt_ns;      /* "mnt:[4026531841]" */
  gboolean foreign_mnt_ns; /* not the agent's mount namespace */
} MaProcInfo;

typedef struct
{
  /* inputs, set before ma_proc_scan_run () */
  MaMountTable *mounts;
  GHashTable *wanted;       /* MaFileKey* (with pid) set: locks whose holder fd is looked for */
  GHashTable *orphan_inodes; /* MaFileKey* (pid 0) set: locks without a known holder (OFD, exited
                              * owner): every fd is statx()ed and fdinfo read on a match */
  GHashTable *selected_devs; /* devno set: writers are reported on these superblocks only */
  GHashTable *describe_pids; /* pid set: processes described during the pass (lock owners,
                              * waiters); those with reported fds or stuck tasks always are */

  /* outputs */
  GPtrArray *lock_files;    /* MaOpenFile*: fds matching wanted keys, one per key */
  GPtrArray *orphan_files;  /* MaOpenFile*: fds whose fdinfo lists locks on orphan inodes */
  GPtrArray *writers;       /* MaOpenFile*: regular files open for writing on selected devs,
                             * by pid and fd (held in writer_stores) */
  GPtrArray *stuck;         /* MaStuckTask*: user tasks in D state */
  GArray *qemu_ga_pids;     /* gint */
  guint n_processes;
  guint n_tasks;
  guint n_fds;
  gint n_statx;             /* atomic */
  guint n_vanished;         /* processes that exited while being read */
  double seconds;

  /* private */
  GHashTable *proc_info;    /* pid → MaProcInfo* */
  GPtrArray *writer_stores; /* GArray* of MaOpenFile values: what writers points into */
  GHashTable *wanted_pids;  /* pid → number of wanted keys */
  GHashTable *ns_mounts;    /* "mnt:[N]" → GHashTable mnt_id → devno */
  GMutex lock;
  char *own_mnt_ns;
} MaProcScan;

MaProcScan *ma_proc_scan_new (MaMountTable *mounts);
void ma_proc_scan_free (MaProcScan *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaProcScan, ma_proc_scan_free)

/* The pass. Blocking: run it in a worker thread. */
gboolean ma_proc_scan_run (MaProcScan *self, GCancellable *cancellable, GError **error);

/* Who a process is (cached; comm etc. read now if the pass did not). NULL when it is gone. */
MaProcInfo *ma_proc_scan_describe (MaProcScan *self, gint pid);

/* The path of an open file (readlink of /proc/PID/fd/N, once, then cached in file->path);
 * NULL when the fd is gone or now names another file. The pass resolves none: a report
 * asks only for the paths it prints. */
const char *ma_proc_scan_file_path (MaProcScan *self, MaOpenFile *file);

/* Resolve one fd of one process now (for waiters and stuck tasks). NULL when gone. */
MaOpenFile *ma_proc_scan_stat_fd (MaProcScan *self, gint pid, gint fd);

void ma_open_file_free (MaOpenFile *file);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaOpenFile, ma_open_file_free)

G_END_DECLS
