/* test-dirtyrate.c — the parsers of the dirty-rate measurement (/proc/PID/maps, stat, io,
 * cgroup; pagemap bit 55) on fixtures this test writes, and the throttle policy syntax.
 * The fixture procfs stands in for a kernel state that cannot be created on demand: a
 * process whose pagemap shows a chosen mix of soft-dirty, present and swapped pages. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "dirtyrate.h"
#include "error.h"
#include "throttle.h"

static void
test_maps_line (void)
{
  MaMapping m;

  g_assert_true (ma_dirty_parse_maps_line (
    "7f1c2a000000-7f1c2a021000 rw-p 00000000 00:00 0 ", &m));
  g_assert_cmphex (m.start, ==, 0x7f1c2a000000);
  g_assert_cmphex (m.end, ==, 0x7f1c2a021000);
  g_assert_true (m.readable && m.writable && !m.shared);
  g_assert_cmpstr (m.path, ==, "");
  g_assert_true (ma_dirty_mapping_tracked (&m));

  g_assert_true (ma_dirty_parse_maps_line (
    "55d0c8a3e000-55d0c8a40000 r-xp 00002000 fe:01 1835017                    /usr/bin/cat", &m));
  g_assert_false (m.writable);
  g_assert_cmpuint (m.inode, ==, 1835017);
  g_assert_cmpstr (m.path, ==, "/usr/bin/cat");
  g_assert_false (ma_dirty_mapping_tracked (&m));

  /* writable private file mapping (.data, copy-on-write): tracked */
  g_assert_true (ma_dirty_parse_maps_line (
    "7f00aa000000-7f00aa002000 rw-p 0001f000 fe:01 42 /usr/lib/x86_64-linux-gnu/libc.so.6", &m));
  g_assert_true (ma_dirty_mapping_tracked (&m));

  /* shared memory: tracked, also with a name containing spaces */
  g_assert_true (ma_dirty_parse_maps_line (
    "7f00ab000000-7f00ab100000 rw-s 00000000 00:19 7 /dev/shm/my segment (deleted)", &m));
  g_assert_true (m.shared);
  g_assert_cmpstr (m.path, ==, "/dev/shm/my segment (deleted)");
  g_assert_true (ma_dirty_mapping_tracked (&m));

  g_assert_true (ma_dirty_parse_maps_line (
    "7ffd5c2e1000-7ffd5c302000 rw-p 00000000 00:00 0                          [stack]", &m));
  g_assert_cmpstr (m.path, ==, "[stack]");
  g_assert_true (ma_dirty_mapping_tracked (&m));

  /* device memory is not guest RAM the process dirties */
  g_assert_true (ma_dirty_parse_maps_line (
    "7f00ac000000-7f00ac400000 rw-s 100000000 00:05 93 /dev/dri/card0", &m));
  g_assert_false (ma_dirty_mapping_tracked (&m));
  g_assert_true (ma_dirty_parse_maps_line (
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]", &m));
  g_assert_false (ma_dirty_mapping_tracked (&m));

  g_assert_false (ma_dirty_parse_maps_line ("", &m));
  g_assert_false (ma_dirty_parse_maps_line ("garbage line", &m));
  g_assert_false (ma_dirty_parse_maps_line ("2000-1000 rw-p 0 00:00 0", &m));
}

static void
test_pagemap_count (void)
{
  const guint64 entries[] = {
    MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY | 0x1234, /* written: counted */
    MA_PAGEMAP_PRESENT | 0x1235,                         /* clean */
    MA_PAGEMAP_SWAPPED | MA_PAGEMAP_SOFT_DIRTY,          /* written, then swapped: counted */
    MA_PAGEMAP_SOFT_DIRTY,   /* a hole in a new mapping: VM_SOFTDIRTY, not a page */
    0,
  };

  g_assert_cmpuint (ma_dirty_count_pagemap (entries, G_N_ELEMENTS (entries)), ==, 2);
  g_assert_cmpuint (ma_dirty_count_pagemap (entries, 1), ==, 1);
  g_assert_cmpuint (ma_dirty_count_pagemap (entries, 0), ==, 0);
}

static void
test_stat (void)
{
  MaProcStat ps;
  /* a comm with spaces and a ')' inside: only the last ')' ends it */
  const char *line = "4242 (my (evil) comm) S 1 4242 4242 0 -1 4194560 98765 0 12 0 5 6 0 0 20 0 "
                     "1 0 123456 10485760 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 "
                     "1 0 0 0 0 0\n";

  g_assert_true (ma_dirty_parse_stat (line, &ps));
  g_assert_cmpstr (ps.comm, ==, "my (evil) comm");
  g_assert_cmpint (ps.state, ==, 'S');
  g_assert_cmpuint (ps.flags, ==, 4194560);
  g_assert_cmpuint (ps.minflt, ==, 98765);
  g_assert_cmpuint (ps.starttime, ==, 123456);
  g_assert_cmpint (ps.rss_pages, ==, 2560);
  g_assert_cmpuint (ps.flags & MA_PF_KTHREAD, ==, 0);

  g_assert_true (ma_dirty_parse_stat ("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 "
                                      "5 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 "
                                      "0 17 0 0 0 0 0 0", &ps));
  g_assert_cmpuint (ps.flags & MA_PF_KTHREAD, !=, 0);

  g_assert_false (ma_dirty_parse_stat ("4242 (truncated) S 1 2", &ps));
  g_assert_false (ma_dirty_parse_stat ("no parens at all", &ps));
}

static void
test_io_cgroup_unit (void)
{
  guint64 wb = 0;
  g_autofree char *cg = NULL;
  g_autofree char *unit = NULL;
  g_autofree char *none = NULL;
  g_autofree char *slice = NULL;
  g_autofree char *v1 = NULL;

  g_assert_true (ma_dirty_parse_io_write_bytes ("rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\n"
                                                "read_bytes: 4096\nwrite_bytes: 8192000\n"
                                                "cancelled_write_bytes: 0\n", &wb));
  g_assert_cmpuint (wb, ==, 8192000);
  g_assert_false (ma_dirty_parse_io_write_bytes ("rchar: 10\n", &wb));

  cg = ma_dirty_parse_cgroup ("12:cpuset:/\n1:name=systemd:/system.slice/batch.service\n"
                              "0::/system.slice/batch.service/worker\n");
  g_assert_cmpstr (cg, ==, "/system.slice/batch.service/worker");
  v1 = ma_dirty_parse_cgroup ("12:cpuset:/\n");
  g_assert_null (v1);
  unit = ma_dirty_unit_from_cgroup (cg);
  g_assert_cmpstr (unit, ==, "batch.service");
  slice = ma_dirty_unit_from_cgroup ("/user.slice/user-0.slice/session-3.scope");
  g_assert_cmpstr (slice, ==, "session-3.scope");
  none = ma_dirty_unit_from_cgroup ("/batch.slice");
  g_assert_null (none);
}

static void
write_entry (int fd, guint64 page, guint64 value)
{
  g_assert_cmpint (pwrite (fd, &value, sizeof value, (off_t) (page * 8)), ==, sizeof value);
}

static void
test_count_process_fixture (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *procfs = g_dir_make_tmp ("ma-dirty-XXXXXX", &error);
  g_autofree char *piddir = NULL;
  g_autofree char *maps_path = NULL;
  g_autofree char *pagemap_path = NULL;
  g_autofree char *maps = NULL;
  guint64 ps = (guint64) sysconf (_SC_PAGESIZE);
  guint64 big_first = 0x100000000 / ps, big_pages = MA_DIRTY_PAGEMAP_CHUNK + 4464;
  guint64 dirty = 0, tracked = 0;
  int fd;

  g_assert_no_error (error);
  piddir = g_build_filename (procfs, "4242", NULL);
  g_assert_cmpint (g_mkdir (piddir, 0700), ==, 0);
  maps_path = g_build_filename (piddir, "maps", NULL);
  pagemap_path = g_build_filename (piddir, "pagemap", NULL);
  maps = g_strdup_printf (
    "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x rw-p 00000000 00:00 0\n"
    "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x r--p 00000000 fe:01 77 /usr/lib/ro.so\n"
    "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x rw-s 00000000 00:19 8 /dev/shm/seg\n"
    "%" G_GINT64_MODIFIER "x-%" G_GINT64_MODIFIER "x rw-p 00000000 00:00 0\n",
    1 * ps, 5 * ps, 16 * ps, 18 * ps, 32 * ps, 34 * ps, big_first * ps,
    (big_first + big_pages) * ps);
  g_assert_true (g_file_set_contents (maps_path, maps, -1, NULL));
  fd = g_open (pagemap_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  g_assert_cmpint (fd, >=, 0);
  /* anonymous 1..4: present+dirty, present, swapped+dirty, hole with the VMA's soft-dirty */
  write_entry (fd, 1, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  write_entry (fd, 2, MA_PAGEMAP_PRESENT);
  write_entry (fd, 3, MA_PAGEMAP_SWAPPED | MA_PAGEMAP_SOFT_DIRTY);
  write_entry (fd, 4, MA_PAGEMAP_SOFT_DIRTY);
  /* read-only library: dirty bits there are not counted (not tracked) */
  write_entry (fd, 16, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  write_entry (fd, 17, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  /* shared memory: both written */
  write_entry (fd, 32, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  write_entry (fd, 33, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  /* a mapping larger than one read: first page, the first page of the second chunk, last */
  write_entry (fd, big_first, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  write_entry (fd, big_first + MA_DIRTY_PAGEMAP_CHUNK, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  write_entry (fd, big_first + big_pages - 1, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  /* just past the mapping: must not be read */
  write_entry (fd, big_first + big_pages, MA_PAGEMAP_PRESENT | MA_PAGEMAP_SOFT_DIRTY);
  close (fd);

  g_assert_true (ma_dirty_count_process (procfs, 4242, &dirty, &tracked, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (dirty, ==, 2 + 2 + 3);
  g_assert_cmpuint (tracked, ==, 4 + 2 + big_pages);

  /* a process that is gone: a clear error, nothing counted */
  dirty = 99;
  g_assert_false (ma_dirty_count_process (procfs, 4243, &dirty, NULL, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
  g_assert_cmpuint (dirty, ==, 99);

  g_unlink (pagemap_path);
  g_unlink (maps_path);
  g_rmdir (piddir);
  g_rmdir (procfs);
}

static void
test_policy (void)
{
  MaThrottlePolicy p;
  g_autoptr(GError) error = NULL;
  g_autofree char *value = NULL;
  g_autofree char *text = NULL;

  g_assert_true (ma_throttle_parse_policy ("freeze", &p, &error));
  g_assert_cmpint (p.kind, ==, MA_THROTTLE_POLICY_FREEZE);
  g_assert_cmpstr (ma_throttle_policy_file (&p), ==, "cgroup.freeze");

  g_assert_true (ma_throttle_parse_policy ("  cpu.max   20000   100000 ", &p, &error));
  g_assert_cmpint (p.kind, ==, MA_THROTTLE_POLICY_CPU_MAX);
  value = ma_throttle_policy_value (&p);
  g_assert_cmpstr (value, ==, "20000 100000");
  text = ma_throttle_policy_to_string (&p);
  g_assert_cmpstr (text, ==, "cpu.max 20000 100000");
  g_assert_true (ma_throttle_parse_policy ("cpu.max 5000", &p, &error));
  g_assert_cmpint (p.period, ==, MA_THROTTLE_CPU_MAX_DEFAULT_PERIOD);

  g_assert_false (ma_throttle_parse_policy ("cpu.max 10", &p, &error));
  g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (ma_throttle_parse_policy ("cpu.max max 100000", &p, &error));
  g_clear_error (&error);
  g_assert_false (ma_throttle_parse_policy ("cpu.max 20000 9999999", &p, &error));
  g_clear_error (&error);
  g_assert_false (ma_throttle_parse_policy ("pause", &p, &error));
  g_assert_nonnull (strstr (error->message, "freeze"));
  g_clear_error (&error);
  g_assert_false (ma_throttle_parse_policy ("", &p, &error));
  g_clear_error (&error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/dirtyrate/maps-line", test_maps_line);
  g_test_add_func ("/dirtyrate/pagemap-count", test_pagemap_count);
  g_test_add_func ("/dirtyrate/stat", test_stat);
  g_test_add_func ("/dirtyrate/io-cgroup-unit", test_io_cgroup_unit);
  g_test_add_func ("/dirtyrate/count-process-fixture", test_count_process_fixture);
  g_test_add_func ("/throttle/policy", test_policy);
  return g_test_run ();
}
