/* vm-lockhold.c — a guest helper for tests/vm (busybox has no flock(1)):
 * take a lock on a file and hold it until killed.
 *   vm-lockhold flock|posix|ofd PATH
 * Prints "locked" on stdout once the lock is held. Built static by build-guest.sh. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int
main (int argc, char **argv)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
  int fd, rc;

  if (argc != 3)
    {
      fprintf (stderr, "usage: vm-lockhold flock|posix|ofd PATH\n");
      return 2;
    }
  fd = open (argv[2], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      perror (argv[2]);
      return 1;
    }
  if (strcmp (argv[1], "flock") == 0)
    rc = flock (fd, LOCK_EX);
  else if (strcmp (argv[1], "posix") == 0)
    rc = fcntl (fd, F_SETLKW, &fl);
  else if (strcmp (argv[1], "ofd") == 0)
    rc = fcntl (fd, F_OFD_SETLKW, &fl);
  else
    {
      fprintf (stderr, "unknown lock type %s\n", argv[1]);
      return 2;
    }
  if (rc < 0)
    {
      perror ("lock");
      return 1;
    }
  printf ("locked\n");
  fflush (stdout);
  for (;;)
    pause ();
}
