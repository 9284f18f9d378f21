/* fuzz-mounts.c — fuzz target for the mount table: arbitrary mountinfo text through libmount
 * and the agent's own model on top (superblocks, freezability, loop/dm nesting, freeze order). */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "mounts.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* A small sysfs tree written once per process, so that devices named by the input can be
 * loop devices with backing files, dm devices with slaves, partitions of a loop-backed disk,
 * a nesting cycle and a slave that names itself (sysfs cannot be faked otherwise). */
static char *sysfs_root;

static void
put (const char *rel, const char *contents)
{
  g_autofree char *path = g_build_filename (sysfs_root, rel, NULL);
  g_autofree char *dir = g_path_get_dirname (path);

  g_assert (g_mkdir_with_parents (dir, 0755) == 0);
  g_assert (g_file_set_contents (path, contents, -1, NULL));
}

static void
link_to (const char *rel, const char *target)
{
  g_autofree char *path = g_build_filename (sysfs_root, rel, NULL);
  g_autofree char *dir = g_path_get_dirname (path);

  g_assert (g_mkdir_with_parents (dir, 0755) == 0);
  g_assert (symlink (target, path) == 0);
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  if (g_file_test (path, G_FILE_TEST_IS_SYMLINK) || !g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_unlink (path);
      return;
    }
  dir = g_dir_open (path, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
  g_rmdir (path);
}

static void
sysfs_cleanup (void)
{
  remove_tree (sysfs_root);
  g_clear_pointer (&sysfs_root, g_free);
}

static void
sysfs_create (void)
{
  sysfs_root = g_dir_make_tmp ("ma-fuzz-sysfs-XXXXXX", NULL);
  g_assert (sysfs_root != NULL);
  atexit (sysfs_cleanup);
  put ("dev/block/7:0/loop/backing_file", "/srv/disk.img\n");
  put ("dev/block/7:0/uevent", "MAJOR=7\nMINOR=0\nDEVNAME=loop0\nDEVTYPE=disk\n");
  put ("dev/block/7:1/loop/backing_file", "/mnt/img/inner.img (deleted)\n");
  put ("dev/block/7:1/uevent", "DEVNAME=");
  put ("dev/block/253:0/slaves/loop1/dev", "7:1\n");
  put ("dev/block/253:0/slaves/junk/dev", "not a device\n");
  /* two loop filesystems whose images live on each other: a cycle */
  put ("dev/block/7:2/loop/backing_file", "/mnt/b/image\n");
  put ("dev/block/7:3/loop/backing_file", "/mnt/a/image\n");
  /* a dm device that is its own slave: the walk must stop at its depth limit */
  put ("dev/block/253:1/slaves/dm-1/dev", "253:1\n");
  put ("dev/block/253:2/loop/backing_file", "\n");
  /* a partition of a loop-backed disk: the walk goes up to the parent */
  put ("devices/loop8/loop/backing_file", "/\n");
  put ("devices/loop8/loop8p1/partition", "1\n");
  link_to ("dev/block/259:0", "../../devices/loop8/loop8p1");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(MaMountTable) table = NULL;
  g_autoptr(GError) error = NULL;

  if (sysfs_root == NULL)
    sysfs_create ();
  table = ma_mount_table_new_from_text ((const char *) data, size, sysfs_root, &error);
  if (table == NULL)
    {
      g_assert (error != NULL && error->message != NULL);
      return 0;
    }
  g_assert (error == NULL);
  g_assert (table->freeze_order->len == table->qga_order->len);
  for (guint i = 0; i < table->mounts->len; i++)
    {
      MaMount *m = table->mounts->pdata[i];
      MaMount *by_id = ma_mount_table_lookup_id (table, m->id);

      g_assert (m->sb != NULL && m->target != NULL);
      g_assert (g_ptr_array_find (m->sb->mounts, m, NULL));
      g_assert (by_id != NULL && by_id->id == m->id);
      g_assert (ma_mount_table_lookup_dev (table, m->major, m->minor) == m->sb);
      g_assert (ma_mount_table_find_target (table, m->target) != NULL);
      if (m->target[0] == '/')
        g_assert (ma_mount_table_find_path (table, m->target) != NULL);
    }
  for (guint i = 0; i < table->superblocks->len; i++)
    {
      MaSuperblock *sb = table->superblocks->pdata[i];

      g_assert (sb->mounts->len > 0);
      g_assert (sb->primary != NULL && sb->primary->primary);
      g_assert (g_ptr_array_find (sb->mounts, sb->primary, NULL));
      g_assert (sb->freezable == (sb->reason == NULL));
      g_assert (sb->freezable == g_ptr_array_find (table->freeze_order, sb, NULL));
      g_assert (sb->freezable == g_ptr_array_find (table->qga_order, sb, NULL));
    }
  for (guint i = 0; i < table->nesting->len; i++)
    {
      MaMountNesting *n = table->nesting->pdata[i];

      g_assert (n->inner != n->outer && n->via != NULL);
      g_assert (g_ptr_array_find (table->superblocks, n->inner, NULL));
      g_assert (g_ptr_array_find (table->superblocks, n->outer, NULL));
    }
  /* what the blockers scan does when it finds a filesystem frozen already */
  if (table->superblocks->len > 0)
    {
      MaSuperblock *sb = table->superblocks->pdata[0];

      ma_mount_table_mark_frozen (table, sb, "fuzz");
      g_assert (!sb->freezable && sb->reason != NULL && sb->frozen);
      g_assert (!g_ptr_array_find (table->freeze_order, sb, NULL));
    }
  return 0;
}
