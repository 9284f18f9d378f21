/* mounts.c — the mount table (libmount) grouped by superblock: which filesystems can be
 * frozen and why not, and the order to freeze them in (loop/dm nesting read from sysfs). */
#include "mounts.h"

#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>

#include "cleanup.h"
#include "error.h"
#include "paths.h"

#define MA_MOUNTS_MAX_STACK_DEPTH 16
#define MA_MOUNTS_MAX_MOUNTINFO_BYTES (64 * 1024 * 1024)

/* Filesystems whose kernel driver implements freeze_fs/freeze_super. */
static const char *const freezable_fstypes[] = {
  "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "nilfs2", "reiserfs", "gfs2", "ocfs2",
  "bcachefs", NULL,
};

static const char *const memory_fstypes[] = {
  "tmpfs", "ramfs", "devtmpfs", "hugetlbfs", "mqueue", NULL,
};

static const char *const pseudo_fstypes[] = {
  "proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "pstore",
  "bpf", "configfs", "fusectl", "autofs", "binfmt_misc", "efivarfs", "selinuxfs", "rpc_pipefs",
  "nsfs", NULL,
};

static const char *const network_fstypes[] = {
  "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "afs", "virtiofs", NULL,
};

static const char *const stacking_fstypes[] = {
  "overlay", "aufs", "unionfs", "ecryptfs", "shiftfs", NULL,
};

gboolean
ma_mount_fstype_freezable (const char *fstype, guint major, const char **why)
{
  const char *reason;

  if (fstype == NULL)
    fstype = "";
  if (g_strv_contains (freezable_fstypes, fstype))
    {
      /* qemu-ga skips anonymous devices too, except btrfs (and bcachefs) */
      if (major == 0 && g_strcmp0 (fstype, "btrfs") != 0 && g_strcmp0 (fstype, "bcachefs") != 0)
        {
          if (why != NULL)
            *why = "no freeze support: not on a block device";
          return FALSE;
        }
      return TRUE;
    }
  if (g_strv_contains (memory_fstypes, fstype))
    reason = "no freeze support: memory-backed filesystem";
  else if (g_strv_contains (pseudo_fstypes, fstype))
    reason = "no freeze support: kernel pseudo-filesystem";
  else if (g_strv_contains (network_fstypes, fstype))
    reason = "no freeze support: network or host-shared filesystem";
  else if (g_strv_contains (stacking_fstypes, fstype))
    reason = "no freeze support: stacked on other filesystems (freeze those)";
  else if (g_str_has_prefix (fstype, "fuse") || g_strcmp0 (fstype, "fuseblk") == 0)
    reason = "no freeze support: FUSE filesystem";
  else
    reason = "no freeze support: the kernel driver does not implement freeze";
  if (why != NULL)
    *why = reason;
  return FALSE;
}

static void
mount_free (MaMount *m)
{
  g_free (m->root);
  g_free (m->target);
  g_free (m->fstype);
  g_free (m->source);
  g_free (m->vfs_options);
  g_free (m->fs_options);
  g_free (m);
}

static void
superblock_free (MaSuperblock *sb)
{
  g_ptr_array_unref (sb->mounts);
  g_free (sb->reason);
  g_free (sb);
}

static void
nesting_free (MaMountNesting *n)
{
  g_free (n->via);
  g_free (n);
}

void
ma_mount_table_free (MaMountTable *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->freeze_order);
  g_ptr_array_unref (self->qga_order);
  g_ptr_array_unref (self->nesting);
  g_hash_table_unref (self->by_id);
  g_hash_table_unref (self->by_dev);
  g_ptr_array_unref (self->superblocks);
  g_ptr_array_unref (self->mounts);
  g_free (self);
}

static gboolean
has_option (const char *options, const char *option)
{
  g_auto(GStrv) parts = NULL;

  if (options == NULL)
    return FALSE;
  parts = g_strsplit (options, ",", -1);
  return g_strv_contains ((const char *const *) parts, option);
}

static int
count_parse_error (struct libmnt_table *tb, const char *filename, int line)
{
  MaMountTable *self = mnt_table_get_userdata (tb);

  self->n_bad_lines++;
  return 1; /* skip the line, go on */
}

static gboolean
read_mounts (MaMountTable *self, const char *text, gsize len, GError **error)
{
  g_autoptr(MaMntTable) tb = mnt_new_table ();
  g_autoptr(MaMntIter) iter = mnt_new_iter (MNT_ITER_FORWARD);
  struct libmnt_fs *fs = NULL;
  FILE *stream;
  int rc;

  if (len == 0)
    return TRUE;
  stream = fmemopen ((void *) text, len, "r");
  if (stream == NULL)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_GENERIC, "cannot read the mount table: %s",
                   g_strerror (errno));
      return FALSE;
    }
  mnt_table_set_userdata (tb, self);
  mnt_table_set_parser_errcb (tb, count_parse_error);
  rc = mnt_table_parse_stream (tb, stream, "mountinfo");
  fclose (stream);
  if (rc < 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_GENERIC, "cannot parse the mount table: %s",
                   g_strerror (-rc));
      return FALSE;
    }
  while (mnt_table_next_fs (tb, iter, &fs) == 0)
    {
      MaMount *m = g_new0 (MaMount, 1);
      dev_t dev = mnt_fs_get_devno (fs);

      m->id = mnt_fs_get_id (fs);
      m->parent_id = mnt_fs_get_parent_id (fs);
      m->major = major (dev);
      m->minor = minor (dev);
      m->root = g_strdup (mnt_fs_get_root (fs));
      m->target = g_strdup (mnt_fs_get_target (fs));
      m->fstype = g_strdup (mnt_fs_get_fstype (fs));
      m->source = g_strdup (mnt_fs_get_source (fs));
      m->vfs_options = g_strdup (mnt_fs_get_vfs_options (fs));
      m->fs_options = g_strdup (mnt_fs_get_fs_options (fs));
      m->index = self->mounts->len;
      if (m->target == NULL)
        {
          self->n_bad_lines++;
          mount_free (m);
          continue;
        }
      g_ptr_array_add (self->mounts, m);
    }
  return TRUE;
}

static void
group_superblocks (MaMountTable *self)
{
  for (guint i = 0; i < self->mounts->len; i++)
    {
      MaMount *m = self->mounts->pdata[i];
      gpointer key = GUINT_TO_POINTER (makedev (m->major, m->minor));
      MaSuperblock *sb = g_hash_table_lookup (self->by_dev, key);

      /* mount ids are unique; a duplicate line keeps the first */
      if (!g_hash_table_contains (self->by_id, GINT_TO_POINTER (m->id)))
        g_hash_table_insert (self->by_id, GINT_TO_POINTER (m->id), m);
      if (sb == NULL)
        {
          sb = g_new0 (MaSuperblock, 1);
          sb->major = m->major;
          sb->minor = m->minor;
          sb->index = self->superblocks->len;
          sb->mounts = g_ptr_array_new ();
          g_ptr_array_add (self->superblocks, sb);
          g_hash_table_insert (self->by_dev, key, sb);
        }
      g_ptr_array_add (sb->mounts, m);
      m->sb = sb;
    }
  for (guint i = 0; i < self->superblocks->len; i++)
    {
      MaSuperblock *sb = self->superblocks->pdata[i];
      const char *why = NULL;

      sb->primary = sb->mounts->pdata[0];
      for (guint j = 0; j < sb->mounts->len; j++)
        {
          MaMount *m = sb->mounts->pdata[j];
          if (g_strcmp0 (m->root, "/") == 0)
            {
              sb->primary = m;
              break;
            }
        }
      sb->primary->primary = TRUE;
      sb->read_only = has_option (sb->primary->fs_options, "ro");
      if (!ma_mount_fstype_freezable (sb->primary->fstype, sb->major, &why))
        sb->reason = g_strdup (why);
      else if (sb->read_only)
        sb->reason = g_strdup ("read-only: nothing to flush and nothing can be written");
      else
        sb->freezable = TRUE;
    }
}

static char *
read_sysfs_line (const char *path)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  g_strchomp (text);
  return text[0] != '\0' ? g_steal_pointer (&text) : NULL;
}

static void
add_nesting (MaMountTable *self, MaSuperblock *inner, MaSuperblock *outer, char *via)
{
  MaMountNesting *n;

  if (outer == NULL || outer == inner)
    {
      g_free (via);
      return;
    }
  for (guint i = 0; i < self->nesting->len; i++)
    {
      MaMountNesting *old = self->nesting->pdata[i];
      if (old->inner == inner && old->outer == outer)
        {
          g_free (via);
          return;
        }
    }
  n = g_new0 (MaMountNesting, 1);
  n->inner = inner;
  n->outer = outer;
  n->via = via;
  g_ptr_array_add (self->nesting, n);
}

/* Walk the block device stack under M:m (dm/md slaves, partitions' parents) and record
 * every loop device's backing file as a dependency of inner on the filesystem holding it. */
static void
walk_block_stack (MaMountTable *self, const char *sysfs_root, MaSuperblock *inner,
                  const char *devdir, guint depth)
{
  g_autofree char *backing_path = g_build_filename (devdir, "loop", "backing_file", NULL);
  g_autofree char *backing = NULL;
  g_autofree char *slaves_path = g_build_filename (devdir, "slaves", NULL);
  g_autofree char *partition_path = g_build_filename (devdir, "partition", NULL);
  g_autoptr(GDir) slaves = NULL;
  const char *name;

  if (depth > MA_MOUNTS_MAX_STACK_DEPTH)
    return;
  backing = read_sysfs_line (backing_path);
  if (backing != NULL)
    {
      g_autofree char *devname = g_path_get_basename (devdir);
      g_autofree char *uevent_path = g_build_filename (devdir, "uevent", NULL);
      g_autofree char *uevent = NULL;
      MaMount *holder;

      if (g_str_has_suffix (backing, " (deleted)"))
        backing[strlen (backing) - strlen (" (deleted)")] = '\0';
      /* devdir may be /sys/dev/block/7:0: prefer the kernel name from uevent */
      if (g_file_get_contents (uevent_path, &uevent, NULL, NULL))
        {
          const char *dn = strstr (uevent, "DEVNAME=");
          if (dn != NULL)
            {
              g_free (devname);
              devname = g_strndup (dn + 8, strcspn (dn + 8, "\n"));
            }
        }
      holder = ma_mount_table_find_path (self, backing);
      if (holder != NULL)
        add_nesting (self, inner, holder->sb,
                     g_strdup_printf ("%s is backed by %s on %s", devname, backing,
                                      holder->sb->primary->target));
    }
  if (g_file_test (partition_path, G_FILE_TEST_EXISTS))
    {
      g_autofree char *parent = g_build_filename (devdir, "..", NULL);
      walk_block_stack (self, sysfs_root, inner, parent, depth + 1);
    }
  slaves = g_dir_open (slaves_path, 0, NULL);
  while (slaves != NULL && (name = g_dir_read_name (slaves)) != NULL)
    {
      g_autofree char *dev_path = g_build_filename (slaves_path, name, "dev", NULL);
      g_autofree char *dev = read_sysfs_line (dev_path);
      g_autofree char *slave_dir = NULL;

      if (dev == NULL)
        continue;
      slave_dir = g_build_filename (sysfs_root, "dev", "block", dev, NULL);
      walk_block_stack (self, sysfs_root, inner, slave_dir, depth + 1);
    }
}

static gboolean
depends_on_pending (MaMountTable *self, MaSuperblock *outer, GPtrArray *pending)
{
  for (guint i = 0; i < self->nesting->len; i++)
    {
      MaMountNesting *n = self->nesting->pdata[i];
      if (n->outer == outer && g_ptr_array_find (pending, n->inner, NULL))
        return TRUE;
    }
  return FALSE;
}

static void
compute_orders (MaMountTable *self)
{
  g_autoptr(GPtrArray) pending = g_ptr_array_new ();

  g_ptr_array_set_size (self->qga_order, 0);
  g_ptr_array_set_size (self->freeze_order, 0);
  /* qemu-ga: reverse mountinfo order, first sight of each superblock */
  for (guint i = self->mounts->len; i-- > 0;)
    {
      MaMount *m = self->mounts->pdata[i];
      if (m->sb->freezable && !g_ptr_array_find (self->qga_order, m->sb, NULL))
        g_ptr_array_add (self->qga_order, m->sb);
    }
  /* ours: the same, but a filesystem waits until everything nested in it is frozen */
  g_ptr_array_extend (pending, self->qga_order, NULL, NULL);
  while (pending->len > 0)
    {
      guint pick = 0;
      for (guint i = 0; i < pending->len; i++)
        if (!depends_on_pending (self, pending->pdata[i], pending))
          {
            pick = i;
            break;
          }
      /* a cycle cannot be ordered: fall back to the first (pick stays 0) */
      g_ptr_array_add (self->freeze_order, pending->pdata[pick]);
      g_ptr_array_remove_index (pending, pick);
    }
}

MaMountTable *
ma_mount_table_new_from_text (const char *mountinfo, gsize len, const char *sysfs_root,
                              GError **error)
{
  g_autoptr(MaMountTable) self = g_new0 (MaMountTable, 1);

  self->mounts = g_ptr_array_new_with_free_func ((GDestroyNotify) mount_free);
  self->superblocks = g_ptr_array_new_with_free_func ((GDestroyNotify) superblock_free);
  self->nesting = g_ptr_array_new_with_free_func ((GDestroyNotify) nesting_free);
  self->freeze_order = g_ptr_array_new ();
  self->qga_order = g_ptr_array_new ();
  self->by_id = g_hash_table_new (NULL, NULL);
  self->by_dev = g_hash_table_new (NULL, NULL);
  if (!read_mounts (self, mountinfo, len, error))
    return NULL;
  group_superblocks (self);
  for (guint i = 0; sysfs_root != NULL && i < self->superblocks->len; i++)
    {
      MaSuperblock *sb = self->superblocks->pdata[i];
      g_autofree char *devname = NULL;
      g_autofree char *devdir = NULL;

      if (sb->major == 0)
        continue;
      devname = g_strdup_printf ("%u:%u", sb->major, sb->minor);
      devdir = g_build_filename (sysfs_root, "dev", "block", devname, NULL);
      walk_block_stack (self, sysfs_root, sb, devdir, 0);
    }
  compute_orders (self);
  return g_steal_pointer (&self);
}

MaMountTable *
ma_mount_table_load (GError **error)
{
  g_autofree char *path = ma_path_build (ma_path_procfs (), "self", "mountinfo", NULL);
  g_autofree char *text = NULL;
  gsize len = 0;

  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  return ma_mount_table_new_from_text (text, len, ma_path_sysfs (), error);
}

MaMount *
ma_mount_table_lookup_id (MaMountTable *self, gint id)
{
  return g_hash_table_lookup (self->by_id, GINT_TO_POINTER (id));
}

MaSuperblock *
ma_mount_table_lookup_dev (MaMountTable *self, guint maj, guint min)
{
  return g_hash_table_lookup (self->by_dev, GUINT_TO_POINTER (makedev (maj, min)));
}

MaMount *
ma_mount_table_find_target (MaMountTable *self, const char *path)
{
  for (guint i = self->mounts->len; i-- > 0;)
    {
      MaMount *m = self->mounts->pdata[i];
      if (g_strcmp0 (m->target, path) == 0)
        return m;
    }
  return NULL;
}

static gboolean
path_is_under (const char *path, const char *dir)
{
  gsize n = strlen (dir);

  if (g_strcmp0 (dir, "/") == 0)
    return path[0] == '/';
  return strncmp (path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

MaMount *
ma_mount_table_find_path (MaMountTable *self, const char *path)
{
  MaMount *best = NULL;

  for (guint i = 0; i < self->mounts->len; i++)
    {
      MaMount *m = self->mounts->pdata[i];
      /* later mounts on the same point cover earlier ones: >= keeps the last */
      if (path_is_under (path, m->target)
          && (best == NULL || strlen (m->target) >= strlen (best->target)))
        best = m;
    }
  return best;
}

void
ma_mount_table_mark_frozen (MaMountTable *self, MaSuperblock *sb, const char *evidence)
{
  sb->frozen = TRUE;
  if (sb->freezable)
    {
      sb->freezable = FALSE;
      g_free (sb->reason);
      sb->reason = g_strdup_printf ("already frozen: %s", evidence);
    }
  compute_orders (self);
}
