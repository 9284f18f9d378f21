/* test-mounts.c — freezability and freeze order from mount-table fixtures: a loop device on a
 * file of another filesystem, a dm device over a loop, bind duplicates, btrfs subvolumes,
 * overlay, FUSE, NFS, read-only and odd bytes in mountpoints. The sysfs trees are fixtures
 * because loop/dm stacks cannot be created for a unit test. */
#include "error.h"
#include "mounts.h"

static char *
fixture (const char *name, const char *file)
{
  const char *srcdir = g_getenv ("G_TEST_SRCDIR");

  return g_build_filename (srcdir != NULL ? srcdir : ".", "unit", "fixtures", "mounts", name, file,
                           NULL);
}

static MaMountTable *
load (const char *name)
{
  g_autofree char *mountinfo = fixture (name, "mountinfo");
  g_autofree char *sysfs = fixture (name, "sys");
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  gsize len = 0;
  MaMountTable *table;

  g_assert_true (g_file_get_contents (mountinfo, &text, &len, NULL));
  table = ma_mount_table_new_from_text (text, len, sysfs, &error);
  g_assert_no_error (error);
  g_assert_nonnull (table);
  return table;
}

static const char *
order_string (GPtrArray *order, GString *out)
{
  g_string_truncate (out, 0);
  for (guint i = 0; i < order->len; i++)
    {
      MaSuperblock *sb = order->pdata[i];
      g_string_append_printf (out, "%s%s", i ? " " : "", sb->primary->target);
    }
  return out->str;
}

static MaSuperblock *
sb_at (MaMountTable *t, const char *target)
{
  MaMount *m = ma_mount_table_find_target (t, target);

  g_assert_nonnull (m);
  return m->sb;
}

static void
test_nested_order (void)
{
  g_autoptr(MaMountTable) t = load ("nested");
  g_autoptr(GString) s = g_string_new (NULL);
  MaSuperblock *srv = sb_at (t, "/srv");

  g_assert_cmpuint (t->mounts->len, ==, 5);
  g_assert_cmpuint (t->superblocks->len, ==, 4);
  g_assert_cmpuint (t->n_bad_lines, ==, 0);
  /* /export is the same superblock as /srv, mounted from a subdirectory */
  g_assert_true (sb_at (t, "/export") == srv);
  g_assert_cmpstr (srv->primary->target, ==, "/srv");
  g_assert_false (ma_mount_table_find_target (t, "/export")->primary);

  g_assert_cmpuint (t->nesting->len, ==, 2);
  for (guint i = 0; i < t->nesting->len; i++)
    {
      MaMountNesting *n = t->nesting->pdata[i];
      if (n->inner == sb_at (t, "/mnt/img"))
        {
          g_assert_true (n->outer == srv);
          g_assert_cmpstr (n->via, ==, "loop0 is backed by /srv/images/disk.img on /srv");
        }
      else
        {
          /* dm-0 over loop1 whose backing file was deleted: still on / */
          g_assert_true (n->inner == sb_at (t, "/mnt/lvm"));
          g_assert_true (n->outer == sb_at (t, "/"));
          g_assert_nonnull (strstr (n->via, "loop1 is backed by /var/lib/images/pv.img"));
        }
    }
  /* qemu-ga walks mountinfo backwards and meets /srv first through its bind at /export */
  g_assert_cmpstr (order_string (t->qga_order, s), ==, "/srv /mnt/lvm /mnt/img /");
  /* the loop filesystem must be frozen before the one that holds its backing file */
  g_assert_cmpstr (order_string (t->freeze_order, s), ==, "/mnt/lvm /mnt/img /srv /");
}

static void
test_nested_without_sysfs (void)
{
  g_autofree char *mountinfo = fixture ("nested", "mountinfo");
  g_autofree char *text = NULL;
  g_autoptr(MaMountTable) t = NULL;
  g_autoptr(GString) s = g_string_new (NULL);
  gsize len = 0;

  g_assert_true (g_file_get_contents (mountinfo, &text, &len, NULL));
  t = ma_mount_table_new_from_text (text, len, "/nonexistent-sysfs", NULL);
  g_assert_nonnull (t);
  g_assert_cmpuint (t->nesting->len, ==, 0);
  /* without nesting information the order is qemu-ga's */
  g_assert_cmpstr (order_string (t->freeze_order, s), ==, order_string (t->qga_order, s));
}

typedef struct
{
  const char *target;
  gboolean freezable; /* of the superblock */
  gboolean primary;
  const char *reason_prefix;
} Expect;

static void
test_mixed_freezability (void)
{
  static const Expect expect[] = {
    { "/proc", FALSE, TRUE, "no freeze support: kernel pseudo" },
    { "/", TRUE, TRUE, NULL },
    { "/tmp", FALSE, TRUE, "no freeze support: memory-backed" },
    { "/boot", FALSE, TRUE, "read-only" },
    { "/boot/efi", FALSE, TRUE, "no freeze support: the kernel driver" },
    { "/data", TRUE, TRUE, NULL },  /* btrfs on an anonymous device is freezable */
    { "/home", TRUE, FALSE, NULL }, /* another subvolume of the same superblock */
    { "/var/lib/docker/overlay2/abc/merged", FALSE, TRUE, "no freeze support: stacked" },
    { "/mnt/remote", FALSE, TRUE, "no freeze support: FUSE" },
    { "/mnt/nfs", FALSE, TRUE, "no freeze support: network" },
    { "/run/netns", TRUE, FALSE, NULL }, /* bind duplicate of / */
    { "/mnt/odd dir\nx", TRUE, TRUE, NULL },
  };
  g_autoptr(MaMountTable) t = load ("mixed");
  g_autoptr(GString) s = g_string_new (NULL);

  g_assert_cmpuint (t->n_bad_lines, ==, 1);
  g_assert_cmpuint (t->mounts->len, ==, G_N_ELEMENTS (expect));
  for (guint i = 0; i < G_N_ELEMENTS (expect); i++)
    {
      MaMount *m = ma_mount_table_find_target (t, expect[i].target);
      g_test_message ("mount %s", expect[i].target);
      g_assert_nonnull (m);
      g_assert_cmpint (m->sb->freezable, ==, expect[i].freezable);
      g_assert_cmpint (m->primary, ==, expect[i].primary);
      if (expect[i].reason_prefix != NULL)
        g_assert_true (g_str_has_prefix (m->sb->reason, expect[i].reason_prefix));
      else
        g_assert_null (m->sb->reason);
    }
  g_assert_true (sb_at (t, "/run/netns") == sb_at (t, "/"));
  g_assert_true (sb_at (t, "/home") == sb_at (t, "/data"));
  g_assert_cmpstr (order_string (t->qga_order, s), ==, "/mnt/odd dir\nx / /data");
  g_assert_cmpstr (order_string (t->freeze_order, s), ==, "/mnt/odd dir\nx / /data");
}

static void
test_find_path (void)
{
  g_autoptr(MaMountTable) t = load ("mixed");

  g_assert_cmpstr (ma_mount_table_find_path (t, "/boot/efi/EFI/x")->target, ==, "/boot/efi");
  g_assert_cmpstr (ma_mount_table_find_path (t, "/boot/efix")->target, ==, "/boot");
  g_assert_cmpstr (ma_mount_table_find_path (t, "/usr/bin/ls")->target, ==, "/");
  g_assert_cmpstr (ma_mount_table_find_path (t, "/run/netns/a")->target, ==, "/run/netns");
  g_assert_null (ma_mount_table_find_path (t, "relative"));
  g_assert_null (ma_mount_table_find_target (t, "/usr"));
}

static void
test_mark_frozen (void)
{
  g_autoptr(MaMountTable) t = load ("nested");
  g_autoptr(GString) s = g_string_new (NULL);
  MaSuperblock *img = sb_at (t, "/mnt/img");

  ma_mount_table_mark_frozen (t, img, "pid 1 waits in percpu_rwsem_wait");
  g_assert_true (img->frozen);
  g_assert_false (img->freezable);
  g_assert_cmpstr (img->reason, ==, "already frozen: pid 1 waits in percpu_rwsem_wait");
  /* nothing left nested in /srv: qemu-ga's order again, without the frozen one */
  g_assert_cmpstr (order_string (t->freeze_order, s), ==, "/srv /mnt/lvm /");
}

static void
test_fstypes (void)
{
  const char *why = NULL;

  g_assert_true (ma_mount_fstype_freezable ("xfs", 8, &why));
  g_assert_false (ma_mount_fstype_freezable ("ext4", 0, &why));
  g_assert_cmpstr (why, ==, "no freeze support: not on a block device");
  g_assert_false (ma_mount_fstype_freezable ("fuseblk", 8, &why));
  g_assert_cmpstr (why, ==, "no freeze support: FUSE filesystem");
  g_assert_false (ma_mount_fstype_freezable ("cifs", 0, &why));
  g_assert_false (ma_mount_fstype_freezable (NULL, 0, &why));
}

static void
test_garbage (void)
{
  const char text[] = "\x01\x02 not\n\xff\xfe mount\n";
  g_autoptr(MaMountTable) t = ma_mount_table_new_from_text (text, sizeof text - 1, NULL, NULL);

  g_assert_nonnull (t);
  g_assert_cmpuint (t->mounts->len, ==, 0);
  g_assert_cmpuint (t->freeze_order->len, ==, 0);
  g_assert_cmpuint (t->n_bad_lines, >=, 1);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/mounts/nested-order", test_nested_order);
  g_test_add_func ("/mounts/nested-without-sysfs", test_nested_without_sysfs);
  g_test_add_func ("/mounts/mixed-freezability", test_mixed_freezability);
  g_test_add_func ("/mounts/find-path", test_find_path);
  g_test_add_func ("/mounts/mark-frozen", test_mark_frozen);
  g_test_add_func ("/mounts/fstypes", test_fstypes);
  g_test_add_func ("/mounts/garbage", test_garbage);
  return g_test_run ();
}
