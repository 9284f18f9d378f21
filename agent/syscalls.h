/* syscalls.h — what a task is doing in the kernel: the x86-64/aarch64 system calls that work
 * on a file descriptor (name, which argument is the fd) and /proc's syscall lines. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The x86-64/aarch64 system call name, or NULL. */
const char *ma_syscall_name (gint64 nr);
/* The argument index holding a file descriptor for this system call, or -1. */
gint ma_syscall_fd_arg (gint64 nr);
/* A task's /proc/PID/task/TID/syscall text ("NR ARG1 … ARG6 SP PC", hexadecimal arguments):
 * *nr the system call (-1 when none), *fd the descriptor it works on (-1 when the call takes
 * none, or a value that is not one such as AT_FDCWD). FALSE when the task is in no system call
 * ("running", "-1 …") and *nr, *fd are -1. Resolve the fd with ma_proc_scan_stat_fd ()
 * (procscan.h). */
gboolean ma_syscall_parse_line (const char *text, gint64 *nr, gint *fd);

G_END_DECLS
