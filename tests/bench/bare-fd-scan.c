/* bare-fd-scan.c — the floor for the blockers benchmark: one pass over /proc that only
 * lstat()s every /proc/PID/fd entry (the cheapest way to learn every fd's open mode). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int
main (void)
{
  DIR *proc = opendir ("/proc");
  struct dirent *de;
  unsigned long processes = 0, fds = 0, writable = 0;

  if (proc == NULL)
    return 1;
  while ((de = readdir (proc)) != NULL)
    {
      char path[64];
      int fddir;
      DIR *dir;
      struct dirent *fe;

      if (de->d_name[0] < '1' || de->d_name[0] > '9')
        continue;
      snprintf (path, sizeof path, "%s/fd", de->d_name);
      fddir = openat (dirfd (proc), path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fddir < 0)
        continue;
      dir = fdopendir (fddir);
      if (dir == NULL)
        {
          close (fddir);
          continue;
        }
      processes++;
      while ((fe = readdir (dir)) != NULL)
        {
          struct stat st;
          if (fe->d_name[0] == '.')
            continue;
          if (fstatat (fddir, fe->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            {
              fds++;
              writable += (st.st_mode & S_IWUSR) != 0;
            }
        }
      closedir (dir);
    }
  closedir (proc);
  printf ("%lu processes, %lu fds, %lu writable\n", processes, fds, writable);
  return 0;
}
