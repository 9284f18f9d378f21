/* mounts.h — the mount table (libmount) grouped by superblock: which filesystems can be
 * frozen and why not, and the order to freeze them in (loop/dm nesting read from sysfs). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _MaSuperblock MaSuperblock;

typedef struct
{
  gint id;           /* mount id (mountinfo field 1, statx stx_mnt_id) */
  gint parent_id;
  guint major, minor; /* the superblock's device */
  char *root;        /* the directory of the filesystem that is mounted here */
  char *target;      /* the mountpoint, raw bytes (escapes of mountinfo decoded) */
  char *fstype;
  char *source;
  char *vfs_options;
  char *fs_options;
  guint index;       /* position in mountinfo order */
  MaSuperblock *sb;
  gboolean primary;  /* the mount that stands for its superblock */
} MaMount;

struct _MaSuperblock
{
  guint major, minor;
  guint index;        /* position among superblocks (order of first mount) */
  MaMount *primary;   /* first mount of the whole filesystem (root "/"), else the first */
  GPtrArray *mounts;  /* MaMount*, mountinfo order; borrowed */
  gboolean freezable;
  char *reason;       /* why not, when !freezable */
  gboolean read_only;
  gboolean frozen;    /* set by ma_mount_table_mark_frozen () */
};

typedef struct
{
  MaSuperblock *inner; /* must be frozen first… */
  MaSuperblock *outer; /* …because its device is backed by a file on this one */
  char *via;           /* "loop0 is backed by /srv/disk.img" */
} MaMountNesting;

typedef struct
{
  GPtrArray *mounts;      /* MaMount*, mountinfo order */
  GPtrArray *superblocks; /* MaSuperblock*, order of first appearance */
  GPtrArray *nesting;     /* MaMountNesting* */
  GPtrArray *freeze_order; /* MaSuperblock*: freezable ones, inner before outer, else reverse mount order */
  GPtrArray *qga_order;    /* MaSuperblock*: the order qemu-ga freezes in (reverse mountinfo) */
  guint n_bad_lines;
  GHashTable *by_id;       /* mount id → MaMount* */
  GHashTable *by_dev;      /* devno → MaSuperblock* */
} MaMountTable;

/* The pure core: a mountinfo text and a sysfs root (for /dev/block/M:m/{loop/backing_file,slaves}).
 * Lines that do not parse are counted in n_bad_lines and skipped. */
MaMountTable *ma_mount_table_new_from_text (const char *mountinfo, gsize len,
                                            const char *sysfs_root, GError **error);
/* procfs/self/mountinfo and the sysfs of paths.h. */
MaMountTable *ma_mount_table_load (GError **error);
void ma_mount_table_free (MaMountTable *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaMountTable, ma_mount_table_free)

MaMount *ma_mount_table_lookup_id (MaMountTable *self, gint id);
MaSuperblock *ma_mount_table_lookup_dev (MaMountTable *self, guint major, guint minor);
/* The mount whose mountpoint is exactly path (the last one mounted there). */
MaMount *ma_mount_table_find_target (MaMountTable *self, const char *path);
/* The mount that holds path: the longest mountpoint prefix (the last one mounted there). */
MaMount *ma_mount_table_find_path (MaMountTable *self, const char *path);

/* Evidence that a superblock is frozen already: it becomes unfreezable with this reason. */
void ma_mount_table_mark_frozen (MaMountTable *self, MaSuperblock *sb, const char *evidence);

/* Whether the kernel implements freeze for this filesystem type; *why explains a FALSE. */
gboolean ma_mount_fstype_freezable (const char *fstype, guint major, const char **why);

G_END_DECLS
