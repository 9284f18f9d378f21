/* bench-population.c — the synthetic load of the blockers benchmark: NPROC processes that
 * each hold NFILES open files and LOCKS locks (flock and POSIX alternating), every 20th one
 * also writing; with "rw", every file of every process is open read-write (a database or a
 * build farm). Prints "ready" when all hold their locks; ends them all on stdin EOF. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define POOL_FILES 1000
#define WRITER_EVERY 20
#define WRITER_FILES 5

static int all_rw;

static void
child (const char *dir, int index, int nfiles, int nlocks, int ready)
{
  char path[4096];
  int opened = 0;

  prctl (PR_SET_PDEATHSIG, SIGKILL);
  for (int i = 0; i < nlocks; i++, opened++)
    {
      struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
      int fd;
      snprintf (path, sizeof path, "%s/lock-%d-%d", dir, index, i);
      fd = open (path, (all_rw ? O_RDWR : O_RDONLY) | O_CREAT, 0600);
      if (fd < 0 || (i % 2 == 0 ? flock (fd, LOCK_EX) : fcntl (fd, F_SETLK, &fl)) != 0)
        _exit (2);
    }
  for (int i = 0; opened < nfiles; i++, opened++)
    {
      int writer = index % WRITER_EVERY == 0 && i < WRITER_FILES;
      snprintf (path, sizeof path, "%s/pool-%d", dir, (index * 7 + i) % POOL_FILES);
      if (open (path, all_rw ? O_RDWR : writer ? O_WRONLY | O_APPEND : O_RDONLY) < 0)
        _exit (3);
    }
  if (write (ready, "r", 1) != 1)
    _exit (4);
  for (;;)
    pause ();
}

int
main (int argc, char **argv)
{
  int nproc, nfiles, nlocks, pipefd[2], done = 0;
  char path[4096], c;

  if (argc != 5 && !(argc == 6 && strcmp (argv[5], "rw") == 0))
    {
      fprintf (stderr, "usage: %s DIR NPROC NFILES LOCKS-PER-PROCESS [rw]\n", argv[0]);
      return 2;
    }
  all_rw = argc == 6;
  nproc = atoi (argv[2]);
  nfiles = atoi (argv[3]);
  nlocks = atoi (argv[4]);
  for (int i = 0; i < POOL_FILES; i++)
    {
      int fd;
      snprintf (path, sizeof path, "%s/pool-%d", argv[1], i);
      fd = open (path, O_WRONLY | O_CREAT, 0600);
      if (fd < 0)
        return 1;
      close (fd);
    }
  if (pipe (pipefd) != 0)
    return 1;
  setpgid (0, 0);
  for (int i = 0; i < nproc; i++)
    {
      pid_t pid = fork ();
      if (pid < 0)
        {
          perror ("fork");
          kill (0, SIGKILL);
          return 1;
        }
      if (pid == 0)
        {
          close (pipefd[0]);
          child (argv[1], i, nfiles, nlocks, pipefd[1]);
        }
    }
  close (pipefd[1]);
  while (done < nproc && read (pipefd[0], &c, 1) == 1)
    done++;
  if (done < nproc)
    {
      fprintf (stderr, "only %d of %d processes came up\n", done, nproc);
      signal (SIGTERM, SIG_IGN);
      kill (0, SIGTERM);
      return 1;
    }
  printf ("ready\n");
  fflush (stdout);
  /* hold until stdin closes, then end every child */
  while (read (STDIN_FILENO, &c, 1) > 0)
    ;
  signal (SIGTERM, SIG_IGN);
  kill (0, SIGTERM);
  while (wait (NULL) > 0 || errno == EINTR)
    ;
  return 0;
}
