/* syscalls.c — what a task is doing in the kernel: the x86-64/aarch64 system calls that work
 * on a file descriptor (name, which argument is the fd) and /proc's syscall lines. */
#include "syscalls.h"

typedef struct
{
  gint64 nr;
  const char *name;
  gint fd_arg; /* index of the fd argument, -1 when none */
} SyscallInfo;

static const SyscallInfo syscalls[] = {
#if defined(__x86_64__)
  { 0, "read", 0 },          { 1, "write", 0 },        { 2, "open", -1 },
  { 3, "close", 0 },         { 4, "stat", -1 },        { 5, "fstat", 0 },
  { 16, "ioctl", 0 },        { 17, "pread64", 0 },     { 18, "pwrite64", 0 },
  { 19, "readv", 0 },        { 20, "writev", 0 },      { 40, "sendfile", 0 },
  { 72, "fcntl", 0 },        { 73, "flock", 0 },       { 74, "fsync", 0 },
  { 75, "fdatasync", 0 },    { 76, "truncate", -1 },   { 77, "ftruncate", 0 },
  { 82, "rename", -1 },      { 83, "mkdir", -1 },      { 87, "unlink", -1 },
  { 162, "sync", -1 },       { 217, "getdents64", 0 }, { 257, "openat", 0 },
  { 277, "sync_file_range", 0 }, { 285, "fallocate", 0 }, { 295, "preadv", 0 },
  { 296, "pwritev", 0 },     { 306, "syncfs", 0 },     { 326, "copy_file_range", 2 },
  { 327, "preadv2", 0 },     { 328, "pwritev2", 0 },   { 332, "statx", 0 },
  { 437, "openat2", 0 },
#elif defined(__aarch64__)
  { 25, "fcntl", 0 },        { 29, "ioctl", 0 },       { 32, "flock", 0 },
  { 46, "ftruncate", 0 },    { 47, "fallocate", 0 },   { 56, "openat", 0 },
  { 57, "close", 0 },        { 61, "getdents64", 0 },  { 63, "read", 0 },
  { 64, "write", 0 },        { 65, "readv", 0 },       { 66, "writev", 0 },
  { 67, "pread64", 0 },      { 68, "pwrite64", 0 },    { 69, "preadv", 0 },
  { 70, "pwritev", 0 },      { 71, "sendfile", 0 },    { 80, "fstat", 0 },
  { 81, "sync", -1 },        { 82, "fsync", 0 },       { 83, "fdatasync", 0 },
  { 84, "sync_file_range", 0 }, { 267, "syncfs", 0 },  { 285, "copy_file_range", 2 },
  { 291, "statx", 0 },
#endif
  { -1, NULL, -1 },
};

static const SyscallInfo *
find_syscall (gint64 nr)
{
  for (guint i = 0; syscalls[i].name != NULL; i++)
    if (syscalls[i].nr == nr)
      return &syscalls[i];
  return NULL;
}

const char *
ma_syscall_name (gint64 nr)
{
  const SyscallInfo *info = find_syscall (nr);

  return info != NULL ? info->name : NULL;
}

gint
ma_syscall_fd_arg (gint64 nr)
{
  const SyscallInfo *info = find_syscall (nr);

  return info != NULL ? info->fd_arg : -1;
}

gboolean
ma_syscall_parse_line (const char *text, gint64 *nr, gint *fd)
{
  g_autofree char *copy = g_strstrip (g_strdup (text));
  g_auto(GStrv) words = NULL;
  gint fd_arg;

  *nr = -1;
  *fd = -1;
  if (!g_ascii_isdigit (copy[0]))
    return FALSE; /* "running", or "-1 SP PC" outside a system call */
  words = g_strsplit (copy, " ", -1);
  *nr = g_ascii_strtoll (words[0], NULL, 10);
  fd_arg = ma_syscall_fd_arg (*nr);
  if (fd_arg >= 0 && g_strv_length (words) > (guint) fd_arg + 1)
    {
      guint64 value = g_ascii_strtoull (words[fd_arg + 1], NULL, 16);
      if (value <= G_MAXINT) /* AT_FDCWD (-100) reads as 0xffffffffffffff9c */
        *fd = (gint) value;
    }
  return TRUE;
}
