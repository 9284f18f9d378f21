/* test-proclocks.c — the /proc/locks and fdinfo parsers: every lock kind the kernel prints,
 * waiters, malformed lines, and the real /proc/locks with a lock this test holds. */
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "error.h"
#include "proclocks.h"

static MaLock
parse_ok (const char *line)
{
  g_autoptr(GError) error = NULL;
  MaLock lock;

  g_assert_true (ma_lock_parse_line (line, strlen (line), &lock, &error));
  g_assert_no_error (error);
  return lock;
}

static void
test_posix (void)
{
  MaLock lock = parse_ok ("1: POSIX  ADVISORY  WRITE 3833 fe:00:10952756 0 9");

  g_assert_cmpuint (lock.id, ==, 1);
  g_assert_cmpuint (lock.depth, ==, 0);
  g_assert_cmpint (lock.type, ==, MA_LOCK_TYPE_POSIX);
  g_assert_cmpstr (lock.kind, ==, "ADVISORY");
  g_assert_cmpint (lock.mode, ==, MA_LOCK_MODE_WRITE);
  g_assert_cmpint (lock.pid, ==, 3833);
  g_assert_true (lock.has_inode);
  g_assert_cmpuint (lock.major, ==, 0xfe);
  g_assert_cmpuint (lock.minor, ==, 0);
  g_assert_cmpuint (lock.inode, ==, 10952756);
  g_assert_cmpuint (lock.start, ==, 0);
  g_assert_cmpuint (lock.end, ==, 9);
}

static void
test_flock (void)
{
  MaLock lock = parse_ok ("12: FLOCK  ADVISORY  READ 8706 103:02:5308820 0 EOF");

  g_assert_cmpuint (lock.id, ==, 12);
  g_assert_cmpint (lock.type, ==, MA_LOCK_TYPE_FLOCK);
  g_assert_cmpint (lock.mode, ==, MA_LOCK_MODE_READ);
  g_assert_cmpuint (lock.major, ==, 0x103);
  g_assert_cmpuint (lock.minor, ==, 2);
  g_assert_cmpuint (lock.end, ==, MA_LOCK_END_EOF);
  g_assert_cmpstr (ma_lock_type_to_string (lock.type), ==, "FLOCK");
}

static void
test_ofd (void)
{
  MaLock lock = parse_ok ("3: OFDLCK ADVISORY  WRITE -1 fe:00:408225 100 199");

  g_assert_cmpint (lock.type, ==, MA_LOCK_TYPE_OFD);
  g_assert_cmpint (lock.pid, ==, -1);
  g_assert_cmpuint (lock.start, ==, 100);
  g_assert_cmpuint (lock.end, ==, 199);
  g_assert_cmpstr (ma_lock_type_to_string (lock.type), ==, "OFD");
}

static void
test_lease (void)
{
  MaLock active = parse_ok ("4: LEASE  ACTIVE    READ 5120 00:1c:77 0 EOF");
  MaLock breaking = parse_ok ("5: LEASE  BREAKING  READ 5120 00:1c:77 0 EOF");
  MaLock deleg = parse_ok ("6: DELEG  ACTIVE    READ 5120 08:01:78 0 EOF");

  g_assert_cmpint (active.type, ==, MA_LOCK_TYPE_LEASE);
  g_assert_cmpstr (active.kind, ==, "ACTIVE");
  g_assert_cmpstr (breaking.kind, ==, "BREAKING");
  g_assert_cmpuint (active.major, ==, 0);
  g_assert_cmpuint (active.minor, ==, 0x1c);
  g_assert_cmpint (deleg.type, ==, MA_LOCK_TYPE_DELEG);
}

static void
test_waiters (void)
{
  MaLock w1 = parse_ok ("7: -> POSIX  ADVISORY  WRITE 900 fe:00:12 0 EOF");
  MaLock w2 = parse_ok ("7:  -> FLOCK  ADVISORY  WRITE 901 fe:00:12 0 EOF");

  g_assert_cmpuint (w1.id, ==, 7);
  g_assert_cmpuint (w1.depth, ==, 1);
  g_assert_cmpint (w1.pid, ==, 900);
  g_assert_cmpuint (w2.depth, >=, 1);
  g_assert_cmpint (w2.type, ==, MA_LOCK_TYPE_FLOCK);
}

static void
test_no_inode (void)
{
  MaLock lock = parse_ok ("8: POSIX  *NOINODE* WRITE 77 <none>:0 0 EOF");

  g_assert_false (lock.has_inode);
  g_assert_cmpint (lock.pid, ==, 77);
}

static void
test_malformed (void)
{
  static const char *const bad[] = {
    "",
    "garbage",
    "1 POSIX  ADVISORY  WRITE 1 fe:00:1 0 EOF",      /* no colon */
    "1: POSIX  ADVISORY  WRITE abc fe:00:1 0 EOF",   /* pid */
    "1: POSIX  ADVISORY  WRITE -2 fe:00:1 0 EOF",    /* pid below -1 */
    "1: POSIX  ADVISORY  WRITE 1 fe:00 0 EOF",       /* no inode */
    "1: POSIX  ADVISORY  WRITE 1 fe:zz:1 0 EOF",     /* minor */
    "1: POSIX  ADVISORY  WRITE 1 fe:00:1 0",         /* no end */
    "1: POSIX  ADVISORY  WRITE 1 fe:00:1 0 EOF 9",   /* extra field */
    "1: SPLAT  ADVISORY  WRITE 1 fe:00:1 0 EOF",     /* type */
    "1: POSIX  ADVISORY  SHOUT 1 fe:00:1 0 EOF",     /* mode */
    "1: POSIX  ADVISORY  WRITE 1 fe:00:99999999999999999999999 0 EOF", /* overflow */
    "1: POSIX  ADVISORY  WRITE 1 fffffffff:00:1 0 EOF", /* major overflow */
    "1: -> -> -> -> -> -> -> -> -> -> -> -> POSIX",   /* too many tokens */
    NULL,
  };

  for (guint i = 0; bad[i] != NULL; i++)
    {
      g_autoptr(GError) error = NULL;
      MaLock lock;
      g_test_message ("line: %s", bad[i]);
      g_assert_false (ma_lock_parse_line (bad[i], strlen (bad[i]), &lock, &error));
      g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
    }
}

static void
test_parse_all (void)
{
  const char text[] = "1: POSIX  ADVISORY  WRITE 10 fe:00:1 0 EOF\n"
                      "1: -> POSIX  ADVISORY  WRITE 11 fe:00:1 0 EOF\n"
                      "this line is junk\n"
                      "\n"
                      "2: FLOCK  ADVISORY  WRITE 12 fe:00:2 0 EOF"; /* no final newline */
  guint bad = 99;
  g_autoptr(GArray) locks = ma_locks_parse (text, strlen (text), &bad);

  g_assert_cmpuint (locks->len, ==, 3);
  g_assert_cmpuint (bad, ==, 1);
  g_assert_cmpuint (g_array_index (locks, MaLock, 1).depth, ==, 1);
  g_assert_cmpint (g_array_index (locks, MaLock, 2).pid, ==, 12);
}

static void
test_fdinfo (void)
{
  const char text[] = "pos:\t4096\nflags:\t0100002\nmnt_id:\t26\nino:\t408225\n"
                      "lock:\t1: OFDLCK ADVISORY  WRITE -1 fe:00:408225 0 EOF\n"
                      "lock:\t2: FLOCK  ADVISORY  READ 42 fe:00:408225 0 EOF\n";
  g_auto(MaFdinfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_true (ma_fdinfo_parse (text, strlen (text), &info, &error));
  g_assert_no_error (error);
  g_assert_cmpint (info.pos, ==, 4096);
  g_assert_cmpint (info.flags, ==, 0100002);
  g_assert_cmpint (info.mnt_id, ==, 26);
  g_assert_cmpint (info.ino, ==, 408225);
  g_assert_true (ma_fdinfo_is_writer (&info));
  g_assert_cmpuint (info.locks->len, ==, 2);
  g_assert_cmpint (g_array_index (info.locks, MaLock, 0).type, ==, MA_LOCK_TYPE_OFD);
  g_assert_cmpint (g_array_index (info.locks, MaLock, 1).pid, ==, 42);
}

static void
test_fdinfo_reader (void)
{
  const char text[] = "pos:\t0\nflags:\t02100000\nmnt_id:\t30\nino:\t7\n";
  g_auto(MaFdinfo) info = { 0 };

  g_assert_true (ma_fdinfo_parse (text, strlen (text), &info, NULL));
  g_assert_false (ma_fdinfo_is_writer (&info));
  g_assert_cmpuint (info.locks->len, ==, 0);
}

static void
test_fdinfo_malformed (void)
{
  const char bad_flags[] = "pos:\t0\nflags:\t0999\n";
  const char bad_lock[] = "pos:\t0\nlock:\t1: NOPE\n";
  g_auto(MaFdinfo) a = { 0 };
  g_auto(MaFdinfo) b = { 0 };
  g_autoptr(GError) e1 = NULL;
  g_autoptr(GError) e2 = NULL;

  g_assert_false (ma_fdinfo_parse (bad_flags, strlen (bad_flags), &a, &e1));
  g_assert_error (e1, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
  g_assert_false (ma_fdinfo_parse (bad_lock, strlen (bad_lock), &b, &e2));
  g_assert_error (e2, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
}

/* The kernel's own text: a flock and an OFD lock this process holds appear as parsed. */
static void
test_real_proc_locks (void)
{
  g_autofree char *dir = g_dir_make_tmp ("proclocks-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "locked", NULL);
  g_autofree char *text = NULL;
  g_autofree char *fdinfo_path = NULL;
  g_autofree char *fdinfo = NULL;
  g_autoptr(GArray) locks = NULL;
  g_auto(MaFdinfo) info = { 0 };
  struct flock ofd = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 5 };
  struct stat st;
  gsize len = 0;
  guint bad = 0;
  gboolean found_flock = FALSE, found_ofd = FALSE;
  int fd, fd2;

  g_assert_nonnull (dir);
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  fd2 = open (path, O_RDWR | O_CLOEXEC);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (fd2, >=, 0);
  g_assert_cmpint (fstat (fd, &st), ==, 0);
  g_assert_cmpint (flock (fd, LOCK_EX), ==, 0);
  g_assert_cmpint (fcntl (fd2, F_OFD_SETLK, &ofd), ==, 0);

  g_assert_true (g_file_get_contents ("/proc/locks", &text, &len, NULL));
  locks = ma_locks_parse (text, len, &bad);
  g_assert_cmpuint (bad, ==, 0);
  for (guint i = 0; i < locks->len; i++)
    {
      MaLock *l = &g_array_index (locks, MaLock, i);
      if (l->inode != st.st_ino)
        continue;
      if (l->type == MA_LOCK_TYPE_FLOCK && l->pid == getpid ())
        found_flock = TRUE;
      if (l->type == MA_LOCK_TYPE_OFD && l->pid == -1 && l->start == 10 && l->end == 14)
        found_ofd = TRUE;
    }
  g_assert_true (found_flock);
  g_assert_true (found_ofd);

  fdinfo_path = g_strdup_printf ("/proc/self/fdinfo/%d", fd2);
  g_assert_true (g_file_get_contents (fdinfo_path, &fdinfo, &len, NULL));
  g_assert_true (ma_fdinfo_parse (fdinfo, len, &info, NULL));
  g_assert_true (ma_fdinfo_is_writer (&info));
  g_assert_cmpint (info.ino, ==, (gint64) st.st_ino);
  g_assert_cmpuint (info.locks->len, ==, 1);
  g_assert_cmpint (g_array_index (info.locks, MaLock, 0).type, ==, MA_LOCK_TYPE_OFD);

  close (fd2);
  close (fd);
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/proclocks/posix", test_posix);
  g_test_add_func ("/proclocks/flock", test_flock);
  g_test_add_func ("/proclocks/ofd", test_ofd);
  g_test_add_func ("/proclocks/lease", test_lease);
  g_test_add_func ("/proclocks/waiters", test_waiters);
  g_test_add_func ("/proclocks/no-inode", test_no_inode);
  g_test_add_func ("/proclocks/malformed", test_malformed);
  g_test_add_func ("/proclocks/parse-all", test_parse_all);
  g_test_add_func ("/proclocks/fdinfo", test_fdinfo);
  g_test_add_func ("/proclocks/fdinfo-reader", test_fdinfo_reader);
  g_test_add_func ("/proclocks/fdinfo-malformed", test_fdinfo_malformed);
  g_test_add_func ("/proclocks/real-proc-locks", test_real_proc_locks);
  return g_test_run ();
}
