/* bench-call.c — one `blockers` request on the agent's UNIX socket, timed from the request
 * to the last byte of the reply, as an orchestrator sees it (no client-side parsing). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int
main (int argc, char **argv)
{
  static const char request[] = "{\"execute\":\"blockers\",\"id\":1}\n";
  static char buf[1 << 20];
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  size_t total = 0;
  char first[16] = "";
  double start;
  int fd;

  if (argc != 2 || strlen (argv[1]) >= sizeof addr.sun_path)
    {
      fprintf (stderr, "usage: %s SOCKET\n", argv[0]);
      return 2;
    }
  strcpy (addr.sun_path, argv[1]);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    {
      perror ("connect");
      return 1;
    }
  start = now ();
  if (write (fd, request, sizeof request - 1) != (ssize_t) (sizeof request - 1))
    {
      perror ("write");
      return 1;
    }
  for (;;)
    {
      ssize_t n = read (fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          fprintf (stderr, "the agent closed the connection after %zu bytes\n", total);
          return 1;
        }
      if (total < sizeof first - 1)
        memcpy (first + total, buf, (size_t) n < sizeof first - 1 - total ? (size_t) n
                                                                         : sizeof first - 1 - total);
      total += (size_t) n;
      if (buf[n - 1] == '\n')
        break;
    }
  printf ("%.3f s, %zu bytes\n", now () - start, total);
  close (fd);
  /* an error reply is not a report */
  return strncmp (first, "{\"return\":", 10) == 0 ? 0 : 1;
}
