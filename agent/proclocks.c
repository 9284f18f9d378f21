/* proclocks.c — parsers for the kernel's lock listings: /proc/locks lines and the `lock:`
 * lines and fields of /proc/PID/fdinfo/N. Pure functions over text, no I/O. */
#include "proclocks.h"

#include <string.h>

#include "error.h"

#define MA_LOCK_MAX_TOKENS 12
#define MA_LOCK_MAX_TOKEN 32

typedef struct
{
  const char *start[MA_LOCK_MAX_TOKENS];
  gsize len[MA_LOCK_MAX_TOKENS];
  guint n;
} Tokens;

/* Split on spaces and tabs; FALSE when there are too many tokens. */
static gboolean
tokenize (const char *p, const char *end, Tokens *t)
{
  t->n = 0;
  while (p < end)
    {
      const char *s;
      while (p < end && (*p == ' ' || *p == '\t'))
        p++;
      if (p >= end)
        break;
      s = p;
      while (p < end && *p != ' ' && *p != '\t')
        p++;
      if (t->n == MA_LOCK_MAX_TOKENS)
        return FALSE;
      t->start[t->n] = s;
      t->len[t->n] = (gsize) (p - s);
      t->n++;
    }
  return TRUE;
}

static gboolean
tok_is (const Tokens *t, guint i, const char *word)
{
  gsize n = strlen (word);

  return i < t->n && t->len[i] == n && memcmp (t->start[i], word, n) == 0;
}

/* An unsigned number in base 10 or 16 that spans the whole token. */
static gboolean
parse_u64 (const char *s, gsize len, guint base, guint64 *out)
{
  guint64 v = 0;

  if (len == 0 || len > 20)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      int d = g_ascii_xdigit_value (s[i]);
      if (d < 0 || (guint) d >= base)
        return FALSE;
      if (v > (G_MAXUINT64 - (guint64) d) / base)
        return FALSE;
      v = v * base + (guint64) d;
    }
  *out = v;
  return TRUE;
}

static gboolean
parse_i64 (const char *s, gsize len, gint64 *out)
{
  guint64 v;
  gboolean neg = len > 0 && s[0] == '-';

  if (!parse_u64 (s + neg, len - neg, 10, &v) || v > G_MAXINT64)
    return FALSE;
  *out = neg ? -(gint64) v : (gint64) v;
  return TRUE;
}

/* "fe:00:10952756" (hex major, hex minor, decimal inode) or "<none>:0". */
static gboolean
parse_dev_ino (const char *s, gsize len, MaLock *out)
{
  const char *c1 = memchr (s, ':', len), *c2;
  guint64 major, minor, ino;

  if (len >= 6 && memcmp (s, "<none>", 6) == 0)
    {
      out->has_inode = FALSE;
      return TRUE;
    }
  if (c1 == NULL)
    return FALSE;
  c2 = memchr (c1 + 1, ':', (gsize) (s + len - c1 - 1));
  if (c2 == NULL)
    return FALSE;
  if (!parse_u64 (s, (gsize) (c1 - s), 16, &major) || major > G_MAXUINT32
      || !parse_u64 (c1 + 1, (gsize) (c2 - c1 - 1), 16, &minor) || minor > G_MAXUINT32
      || !parse_u64 (c2 + 1, (gsize) (s + len - c2 - 1), 10, &ino))
    return FALSE;
  out->has_inode = TRUE;
  out->major = (guint) major;
  out->minor = (guint) minor;
  out->inode = ino;
  return TRUE;
}

const char *
ma_lock_type_to_string (MaLockType type)
{
  switch (type)
    {
    case MA_LOCK_TYPE_FLOCK:
      return "FLOCK";
    case MA_LOCK_TYPE_POSIX:
      return "POSIX";
    case MA_LOCK_TYPE_OFD:
      return "OFD";
    case MA_LOCK_TYPE_LEASE:
      return "LEASE";
    case MA_LOCK_TYPE_DELEG:
      return "DELEG";
    case MA_LOCK_TYPE_ACCESS:
      return "ACCESS";
    case MA_LOCK_TYPE_UNKNOWN:
    default:
      return "UNKNOWN";
    }
}

const char *
ma_lock_mode_to_string (MaLockMode mode)
{
  switch (mode)
    {
    case MA_LOCK_MODE_READ:
      return "READ";
    case MA_LOCK_MODE_WRITE:
      return "WRITE";
    case MA_LOCK_MODE_UNLCK:
    default:
      return "UNLCK";
    }
}

static gboolean
bad_line (GError **error, const char *line, gsize len, const char *why)
{
  g_autofree char *shown = g_strndup (line, MIN (len, 80));
  g_autofree char *escaped = g_strescape (shown, NULL);

  g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "lock line '%s': %s", escaped, why);
  return FALSE;
}

gboolean
ma_lock_parse_line (const char *line, gsize len, MaLock *out, GError **error)
{
  Tokens t;
  guint i = 0;
  guint64 id;
  MaLock lock = { 0 };

  if (!tokenize (line, line + len, &t) || t.n < 2)
    return bad_line (error, line, len, "wrong number of fields");
  /* "N:" */
  if (t.len[0] < 2 || t.start[0][t.len[0] - 1] != ':'
      || !parse_u64 (t.start[0], t.len[0] - 1, 10, &id))
    return bad_line (error, line, len, "no lock number");
  lock.id = id;
  i = 1;
  while (tok_is (&t, i, "->"))
    {
      lock.depth++;
      i++;
    }
  if (tok_is (&t, i, "POSIX") || tok_is (&t, i, "OFDLCK") || tok_is (&t, i, "ACCESS"))
    {
      lock.type = tok_is (&t, i, "POSIX")    ? MA_LOCK_TYPE_POSIX
                  : tok_is (&t, i, "OFDLCK") ? MA_LOCK_TYPE_OFD
                                             : MA_LOCK_TYPE_ACCESS;
      i++;
      if (!tok_is (&t, i, "ADVISORY") && !tok_is (&t, i, "MANDATORY")
          && !tok_is (&t, i, "*NOINODE*"))
        return bad_line (error, line, len, "unknown POSIX lock kind");
    }
  else if (tok_is (&t, i, "FLOCK"))
    {
      lock.type = MA_LOCK_TYPE_FLOCK;
      i++;
      if (!tok_is (&t, i, "ADVISORY") && !tok_is (&t, i, "MSNFS"))
        return bad_line (error, line, len, "unknown FLOCK kind");
    }
  else if (tok_is (&t, i, "LEASE") || tok_is (&t, i, "DELEG"))
    {
      lock.type = tok_is (&t, i, "LEASE") ? MA_LOCK_TYPE_LEASE : MA_LOCK_TYPE_DELEG;
      i++;
      if (!tok_is (&t, i, "ACTIVE") && !tok_is (&t, i, "BREAKING") && !tok_is (&t, i, "BREAKER"))
        return bad_line (error, line, len, "unknown lease state");
    }
  else if (tok_is (&t, i, "UNKNOWN"))
    {
      lock.type = MA_LOCK_TYPE_UNKNOWN;
      i++;
    }
  else
    return bad_line (error, line, len, "unknown lock type");
  if (i >= t.n || t.len[i] >= sizeof lock.kind)
    return bad_line (error, line, len, "no lock kind");
  memcpy (lock.kind, t.start[i], t.len[i]);
  lock.kind[t.len[i]] = '\0';
  i++;

  if (tok_is (&t, i, "WRITE"))
    lock.mode = MA_LOCK_MODE_WRITE;
  else if (tok_is (&t, i, "READ"))
    lock.mode = MA_LOCK_MODE_READ;
  else if (tok_is (&t, i, "UNLCK"))
    lock.mode = MA_LOCK_MODE_UNLCK;
  else
    return bad_line (error, line, len, "unknown lock mode");
  i++;

  if (i + 4 != t.n)
    return bad_line (error, line, len, "wrong number of fields");
  if (!parse_i64 (t.start[i], t.len[i], &lock.pid) || lock.pid < -1)
    return bad_line (error, line, len, "bad pid");
  i++;
  if (!parse_dev_ino (t.start[i], t.len[i], &lock))
    return bad_line (error, line, len, "bad device:inode");
  i++;
  if (!parse_u64 (t.start[i], t.len[i], 10, &lock.start))
    return bad_line (error, line, len, "bad range start");
  i++;
  if (tok_is (&t, i, "EOF"))
    lock.end = MA_LOCK_END_EOF;
  else if (!parse_u64 (t.start[i], t.len[i], 10, &lock.end))
    return bad_line (error, line, len, "bad range end");
  *out = lock;
  return TRUE;
}

GArray *
ma_locks_parse (const char *text, gsize len, guint *n_bad)
{
  GArray *locks = g_array_new (FALSE, FALSE, sizeof (MaLock));
  const char *p = text, *end = text + len;
  guint bad = 0;

  while (p < end)
    {
      const char *nl = memchr (p, '\n', (gsize) (end - p));
      const char *eol = nl != NULL ? nl : end;
      MaLock lock;

      if (eol > p)
        {
          if (ma_lock_parse_line (p, (gsize) (eol - p), &lock, NULL))
            g_array_append_val (locks, lock);
          else
            bad++;
        }
      p = eol + 1;
    }
  if (n_bad != NULL)
    *n_bad = bad;
  return locks;
}

static gboolean
field_is (const char *p, const char *eol, const char *name, const char **value)
{
  gsize n = strlen (name);

  if ((gsize) (eol - p) < n || memcmp (p, name, n) != 0)
    return FALSE;
  p += n;
  while (p < eol && (*p == ' ' || *p == '\t'))
    p++;
  *value = p;
  return TRUE;
}

static gboolean
parse_field (const char *value, const char *eol, guint base, gint64 *out)
{
  guint64 v;

  if (!parse_u64 (value, (gsize) (eol - value), base, &v) || v > G_MAXINT64)
    return FALSE;
  *out = (gint64) v;
  return TRUE;
}

gboolean
ma_fdinfo_parse (const char *text, gsize len, MaFdinfo *out, GError **error)
{
  const char *p = text, *end = text + len;

  out->pos = -1;
  out->flags = -1;
  out->mnt_id = -1;
  out->ino = -1;
  out->locks = g_array_new (FALSE, FALSE, sizeof (MaLock));
  while (p < end)
    {
      const char *nl = memchr (p, '\n', (gsize) (end - p));
      const char *eol = nl != NULL ? nl : end;
      const char *value;
      gboolean ok = TRUE;

      if (field_is (p, eol, "pos:", &value))
        ok = parse_field (value, eol, 10, &out->pos);
      else if (field_is (p, eol, "flags:", &value))
        ok = parse_field (value, eol, 8, &out->flags);
      else if (field_is (p, eol, "mnt_id:", &value))
        ok = parse_field (value, eol, 10, &out->mnt_id);
      else if (field_is (p, eol, "ino:", &value))
        ok = parse_field (value, eol, 10, &out->ino);
      else if (field_is (p, eol, "lock:", &value))
        {
          MaLock lock;
          if (!ma_lock_parse_line (value, (gsize) (eol - value), &lock, error))
            return FALSE;
          g_array_append_val (out->locks, lock);
        }
      /* other lines (eventfd-count, tfd, inotify, …) belong to other file kinds */
      if (!ok)
        {
          g_autofree char *shown = g_strndup (p, MIN ((gsize) (eol - p), 80));
          g_autofree char *escaped = g_strescape (shown, NULL);
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "fdinfo line '%s' is malformed",
                       escaped);
          return FALSE;
        }
      p = eol + 1;
    }
  return TRUE;
}

void
ma_fdinfo_clear (MaFdinfo *info)
{
  g_clear_pointer (&info->locks, g_array_unref);
}

gboolean
ma_fdinfo_is_writer (const MaFdinfo *info)
{
  return info->flags >= 0 && ((info->flags & 3) == 1 || (info->flags & 3) == 2);
}
