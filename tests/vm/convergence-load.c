/* convergence-load.c — the two guest workloads of the convergence scenario, built static on
 * the host and pushed into the guest through qemu-ga:
 *   convergence-load dirty MIB [FILE]  rewrite every page of MIB MiB, forever (the batch job);
 *                                   after each pass writes "PASSES MONOTONIC_NS" to FILE
 *   convergence-load service FILE   a fixed unit of CPU work in a loop; every 100 ms writes
 *                                   "ITERATIONS MONOTONIC_NS" to FILE (the service) and
 *                                   appends it to FILE.log (its history, ~25 bytes a line) */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define REPORT_NS 100000000LL
#define WORK_UNIT 2000

static long long
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int
run_dirty (size_t mib, const char *path)
{
  size_t len = mib << 20;
  volatile unsigned char *p = mmap (NULL, len, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  int fd = path != NULL ? open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
  unsigned long long passes = 0;

  if (p == MAP_FAILED || (path != NULL && fd < 0))
    return 1;
  for (;;)
    {
      passes++;
      for (size_t off = 0; off < len; off += PAGE)
        p[off] = (unsigned char) passes;
      if (fd >= 0)
        {
          char line[64];
          int n = snprintf (line, sizeof line, "%llu %lld\n", passes, now_ns ());
          if (pwrite (fd, line, (size_t) n, 0) != n)
            return 1;
        }
    }
}

static int
run_service (const char *path)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  char history[4096];
  int log_fd;
  unsigned long long iterations = 0;
  uint32_t x = 1;
  long long next;

  if (fd < 0)
    return 1;
  snprintf (history, sizeof history, "%s.log", path);
  log_fd = open (history, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (log_fd < 0)
    return 1;
  next = now_ns () + REPORT_NS;
  for (;;)
    {
      for (int i = 0; i < WORK_UNIT; i++)
        x = x * 1664525u + 1013904223u;
      iterations++;
      if ((iterations & 63) == 0 && now_ns () >= next)
        {
          char line[64];
          int n = snprintf (line, sizeof line, "%llu %lld %u\n", iterations, now_ns (), x & 1);
          if (pwrite (fd, line, (size_t) n, 0) != n || write (log_fd, line, (size_t) n) != n)
            return 1;
          next += REPORT_NS;
        }
    }
}

int
main (int argc, char **argv)
{
  if ((argc == 3 || argc == 4) && strcmp (argv[1], "dirty") == 0)
    return run_dirty ((size_t) strtoul (argv[2], NULL, 10), argc == 4 ? argv[3] : NULL);
  if (argc == 3 && strcmp (argv[1], "service") == 0)
    return run_service (argv[2]);
  fprintf (stderr, "usage: %s dirty MIB [FILE] | service FILE\n", argv[0]);
  return 2;
}
