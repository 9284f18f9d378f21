/* bare-fd-scan.c — the floor for the blockers benchmark: one pass over /proc that only
 * lstat()s every /proc/PID/fd entry (the cheapest way to learn every fd's open mode).
 *
 * usage: bare-fd-scan [THREADS] [pidfd|targets]
 *   THREADS  split the processes over this many threads (default 1): the floor on all CPUs
 *   targets  also stat() the target of every writable fd (following the link): the least a
 *            report must learn to say which writers are regular files on which filesystem,
 *            and how big (the agent's statx of a writer's target), one call after the other
 *   pidfd    learn the open modes the other way, pidfd_getfd() each slot of the fd table
 *            (FDSize in /proc/PID/status), fcntl(F_GETFL) and close: no /proc/PID/fd lookups;
 *            a process that refuses it (EPERM, e.g. a non-dumpable one) is passed over, so
 *            this pass sees at most as many fds as the lstat pass */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_THREADS 64

typedef struct
{
  int *pids;
  size_t n_pids;
  size_t first, step;
  int use_pidfd;
  int targets;
  unsigned long processes, fds, writable, regular;
} Part;

static void
scan_lstat (int procfd, int pid, Part *part)
{
  char path[64];
  int fddir;
  DIR *dir;
  struct dirent *fe;

  snprintf (path, sizeof path, "%d/fd", pid);
  fddir = openat (procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fddir < 0)
    return;
  dir = fdopendir (fddir);
  if (dir == NULL)
    {
      close (fddir);
      return;
    }
  part->processes++;
  while ((fe = readdir (dir)) != NULL)
    {
      struct stat st;
      if (fe->d_name[0] == '.')
        continue;
      if (fstatat (fddir, fe->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        {
          part->fds++;
          part->writable += (st.st_mode & S_IWUSR) != 0;
          if (part->targets && (st.st_mode & S_IWUSR) != 0
              && fstatat (fddir, fe->d_name, &st, 0) == 0 && S_ISREG (st.st_mode))
            part->regular++;
        }
    }
  closedir (dir);
}

static void
scan_pidfd (int procfd, int pid, Part *part)
{
  char path[64], status[4096];
  const char *size;
  ssize_t n;
  long slots;
  int fd, pidfd;

  snprintf (path, sizeof path, "%d/status", pid);
  fd = openat (procfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  n = read (fd, status, sizeof status - 1);
  close (fd);
  if (n <= 0)
    return;
  status[n] = '\0';
  size = strstr (status, "FDSize:");
  slots = size != NULL ? strtol (size + 7, NULL, 10) : 0;
  pidfd = (int) syscall (SYS_pidfd_open, pid, 0);
  if (pidfd < 0)
    return;
  part->processes++;
  for (long slot = 0; slot < slots; slot++)
    {
      int copy = (int) syscall (SYS_pidfd_getfd, pidfd, (int) slot, 0);
      int flags;
      if (copy < 0)
        continue;
      flags = fcntl (copy, F_GETFL);
      part->fds++;
      part->writable += flags >= 0 && (flags & O_ACCMODE) != O_RDONLY;
      close (copy);
    }
  close (pidfd);
}

static void *
scan_part (void *data)
{
  Part *part = data;
  int procfd = open ("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (procfd < 0)
    return NULL;
  for (size_t i = part->first; i < part->n_pids; i += part->step)
    {
      if (part->use_pidfd)
        scan_pidfd (procfd, part->pids[i], part);
      else
        scan_lstat (procfd, part->pids[i], part);
    }
  close (procfd);
  return NULL;
}

int
main (int argc, char **argv)
{
  DIR *proc = opendir ("/proc");
  struct dirent *de;
  int *pids = NULL;
  size_t n_pids = 0, cap = 0;
  int threads = argc > 1 ? atoi (argv[1]) : 1;
  int use_pidfd = argc > 2 && strcmp (argv[2], "pidfd") == 0;
  int targets = argc > 2 && strcmp (argv[2], "targets") == 0;
  pthread_t tids[MAX_THREADS];
  Part parts[MAX_THREADS];
  unsigned long processes = 0, fds = 0, writable = 0, regular = 0;

  if (proc == NULL || threads < 1 || threads > MAX_THREADS)
    return 1;
  while ((de = readdir (proc)) != NULL)
    {
      if (de->d_name[0] < '1' || de->d_name[0] > '9')
        continue;
      if (n_pids == cap)
        {
          cap = cap ? cap * 2 : 1024;
          pids = realloc (pids, cap * sizeof *pids);
          if (pids == NULL)
            return 1;
        }
      pids[n_pids++] = atoi (de->d_name);
    }
  closedir (proc);
  for (int t = 0; t < threads; t++)
    {
      parts[t] = (Part){ .pids = pids, .n_pids = n_pids, .first = (size_t) t,
                         .step = (size_t) threads, .use_pidfd = use_pidfd, .targets = targets };
      if (pthread_create (&tids[t], NULL, scan_part, &parts[t]) != 0)
        return 1;
    }
  for (int t = 0; t < threads; t++)
    {
      pthread_join (tids[t], NULL);
      processes += parts[t].processes;
      fds += parts[t].fds;
      writable += parts[t].writable;
      regular += parts[t].regular;
    }
  free (pids);
  printf ("%lu processes, %lu fds, %lu writable", processes, fds, writable);
  if (targets)
    printf (" (%lu of them regular files)", regular);
  printf ("\n");
  return 0;
}
