/* proclocks.h — parsers for the kernel's lock listings: /proc/locks lines and the `lock:`
 * lines and fields of /proc/PID/fdinfo/N. Pure functions over text, no I/O. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  MA_LOCK_TYPE_UNKNOWN,
  MA_LOCK_TYPE_FLOCK,
  MA_LOCK_TYPE_POSIX,
  MA_LOCK_TYPE_OFD,
  MA_LOCK_TYPE_LEASE,
  MA_LOCK_TYPE_DELEG,
  MA_LOCK_TYPE_ACCESS, /* a transient POSIX lock taken for mandatory-lock checks */
} MaLockType;

typedef enum
{
  MA_LOCK_MODE_UNLCK,
  MA_LOCK_MODE_READ,
  MA_LOCK_MODE_WRITE,
} MaLockMode;

#define MA_LOCK_END_EOF G_MAXUINT64

typedef struct
{
  guint64 id;         /* the N before the colon: waiters repeat their blocker's N */
  guint depth;        /* 0 for a held lock, 1+ for a waiter ("->" lines) */
  MaLockType type;
  char kind[12];      /* ADVISORY, MANDATORY; ACTIVE, BREAKING, BREAKER for leases */
  MaLockMode mode;
  gint64 pid;         /* -1 for OFD locks (and owners outside our PID namespace) */
  gboolean has_inode; /* FALSE for "<none>:0" */
  guint major, minor; /* the superblock's device */
  guint64 inode;
  guint64 start;
  guint64 end;        /* MA_LOCK_END_EOF for "EOF" */
} MaLock;

const char *ma_lock_type_to_string (MaLockType type);
const char *ma_lock_mode_to_string (MaLockMode mode);

/* One line of /proc/locks without its newline ("1: POSIX  ADVISORY  WRITE 3833 fe:00:10952756
 * 0 EOF", "1: -> FLOCK ..."). FALSE with MA_ERROR_INVALID_ARGUMENT when it does not parse. */
gboolean ma_lock_parse_line (const char *line, gsize len, MaLock *out, GError **error);

/* All of /proc/locks: an array of MaLock in file order; *n_bad (optional) counts lines
 * that did not parse (they are skipped, never guessed). */
GArray *ma_locks_parse (const char *text, gsize len, guint *n_bad);

/* One /proc/PID/fdinfo/N file. Missing fields stay at their defaults (-1 / 0). */
typedef struct
{
  gint64 pos;
  gint64 flags;  /* octal in the file; -1 when absent */
  gint64 mnt_id; /* -1 when absent */
  gint64 ino;    /* -1 when absent */
  GArray *locks; /* MaLock, one per `lock:` line */
} MaFdinfo;

gboolean ma_fdinfo_parse (const char *text, gsize len, MaFdinfo *out, GError **error);
void ma_fdinfo_clear (MaFdinfo *info);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (MaFdinfo, ma_fdinfo_clear)

/* The open file is writable: O_WRONLY or O_RDWR in fdinfo `flags`. */
gboolean ma_fdinfo_is_writer (const MaFdinfo *info);

G_END_DECLS
