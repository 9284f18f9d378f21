/* spawn-floor.c — the floor of a plugin phase: start every script given (posix_spawn, as the
 * agent does, with ARG as its argument) one after the other, then reap them all; prints ms. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int
main (int argc, char **argv)
{
  struct timespec t0, t1;
  pid_t pids[256];
  int n = argc - 2;

  if (argc < 3 || n > 256)
    {
      fprintf (stderr, "usage: %s ARG SCRIPT...\n", argv[0]);
      return 2;
    }
  clock_gettime (CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < n; i++)
    {
      char *args[] = { argv[i + 2], argv[1], NULL };
      if (posix_spawn (&pids[i], argv[i + 2], NULL, NULL, args, environ) != 0)
        {
          perror (argv[i + 2]);
          return 1;
        }
    }
  for (int i = 0; i < n; i++)
    waitpid (pids[i], NULL, 0);
  clock_gettime (CLOCK_MONOTONIC, &t1);
  printf ("%.3f\n", (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6);
  return 0;
}
