/* blockers-summary.c — what keeps a `blockers` reply bounded: writers aggregated by mount and
 * by process, the orders (worst first, page order), page cursors and byte budgets. */
#include "blockers-summary.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

/* ---- writers aggregated ---- */

static void
writer_group_free (MaWriterGroup *group)
{
  g_ptr_array_unref (group->examples);
  g_free (group);
}

static MaWriterGroup *
group_for (GHashTable *groups, GPtrArray *order, gint64 key)
{
  MaWriterGroup *group = g_hash_table_lookup (groups, &key);

  if (group == NULL)
    {
      group = g_new0 (MaWriterGroup, 1);
      group->key = key;
      group->examples = g_ptr_array_new ();
      g_hash_table_insert (groups, &group->key, group);
      g_ptr_array_add (order, group);
    }
  return group;
}

static void
group_add (MaWriterGroup *group, MaOpenFile *file)
{
  group->fds++;
  group->bytes += file->size;
  if (file->deleted)
    group->deleted++;
  if (group->examples->len < MA_BLOCKERS_EXAMPLES)
    g_ptr_array_add (group->examples, file);
}

static gint
compare_groups (gconstpointer a, gconstpointer b)
{
  const MaWriterGroup *x = *(MaWriterGroup *const *) a, *y = *(MaWriterGroup *const *) b;

  if (x->fds != y->fds)
    return x->fds > y->fds ? -1 : 1;
  if (x->bytes != y->bytes)
    return x->bytes > y->bytes ? -1 : 1;
  return x->key < y->key ? -1 : x->key > y->key;
}

MaWriterSummary *
ma_writer_summary_new (GPtrArray *writers)
{
  MaWriterSummary *self = g_new0 (MaWriterSummary, 1);
  g_autoptr(GHashTable) mounts = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_autoptr(GHashTable) processes = g_hash_table_new (g_int64_hash, g_int64_equal);
  /* (devno, pid) pairs seen, and (pid, devno): distinct processes per mount and back */
  g_autoptr(GHashTable) pairs = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);

  self->by_mount = g_ptr_array_new_with_free_func ((GDestroyNotify) writer_group_free);
  self->by_process = g_ptr_array_new_with_free_func ((GDestroyNotify) writer_group_free);
  for (guint i = 0; i < writers->len; i++)
    {
      MaOpenFile *f = writers->pdata[i];
      MaWriterGroup *m = group_for (mounts, self->by_mount, f->devno);
      MaWriterGroup *p = group_for (processes, self->by_process, f->pid);
      gint64 pair = ((gint64) f->devno << 32) | (guint32) f->pid;

      group_add (m, f);
      group_add (p, f);
      if (!g_hash_table_contains (pairs, &pair))
        {
          g_hash_table_add (pairs, g_memdup2 (&pair, sizeof pair));
          m->processes++;
          p->mounts++;
        }
      self->fds++;
      self->bytes += f->size;
      if (f->deleted)
        self->deleted++;
    }
  for (guint i = 0; i < self->by_process->len; i++)
    ((MaWriterGroup *) self->by_process->pdata[i])->processes = 1;
  for (guint i = 0; i < self->by_mount->len; i++)
    ((MaWriterGroup *) self->by_mount->pdata[i])->mounts = 1;
  self->processes = self->by_process->len;
  self->mounts = self->by_mount->len;
  g_ptr_array_sort (self->by_mount, compare_groups);
  g_ptr_array_sort (self->by_process, compare_groups);
  return self;
}

void
ma_writer_summary_free (MaWriterSummary *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->by_mount);
  g_ptr_array_unref (self->by_process);
  g_free (self);
}

/* ---- pages ---- */

static const char *const detail_names[] = { "summary", "locks", "writers", "stuck" };

const char *
ma_blockers_detail_to_string (MaBlockersDetail detail)
{
  g_return_val_if_fail ((guint) detail < G_N_ELEMENTS (detail_names), "summary");
  return detail_names[detail];
}

gboolean
ma_blockers_detail_from_string (const char *text, MaBlockersDetail *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (detail_names); i++)
    if (g_strcmp0 (text, detail_names[i]) == 0)
      {
        *out = (MaBlockersDetail) i;
        return TRUE;
      }
  return FALSE;
}

gint
ma_page_key_compare (const MaPageKey *a, const MaPageKey *b)
{
  guint n = MIN (a->n, b->n);

  for (guint i = 0; i < n; i++)
    if (a->v[i] != b->v[i])
      return a->v[i] < b->v[i] ? -1 : 1;
  return a->n < b->n ? -1 : a->n > b->n;
}

char *
ma_page_cursor_format (MaBlockersDetail detail, const MaPageKey *key)
{
  GString *text = g_string_new (ma_blockers_detail_to_string (detail));

  for (guint i = 0; i < key->n; i++)
    g_string_append_printf (text, "%c%" G_GINT64_FORMAT, i == 0 ? ':' : '.', key->v[i]);
  return g_string_free (text, FALSE);
}

/* One decimal integer (a leading '-' allowed) ending at a '.' or the end: *end after it. */
static gboolean
parse_field (const char *p, gint64 *value, const char **end)
{
  char *stop = NULL;

  if (!(g_ascii_isdigit (p[0]) || (p[0] == '-' && g_ascii_isdigit (p[1]))))
    return FALSE;
  errno = 0;
  *value = g_ascii_strtoll (p, &stop, 10);
  if (errno != 0 || (*stop != '.' && *stop != '\0'))
    return FALSE;
  *end = stop;
  return TRUE;
}

gboolean
ma_page_cursor_parse (const char *text, MaBlockersDetail detail, guint n_fields, MaPageKey *out,
                      GError **error)
{
  const char *name = ma_blockers_detail_to_string (detail);
  gsize len = strlen (name);
  const char *p = text + len + 1;
  gboolean ok;

  g_return_val_if_fail (n_fields > 0 && n_fields <= MA_PAGE_KEY_MAX, FALSE);
  memset (out, 0, sizeof *out);
  ok = strncmp (text, name, len) == 0 && text[len] == ':';
  for (guint i = 0; ok && i < n_fields; i++)
    {
      ok = parse_field (p, &out->v[i], &p);
      if (ok && i + 1 < n_fields)
        ok = *p++ == '.';
    }
  if (!ok || *p != '\0')
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "Parameter 'cursor' expects the next_cursor of a detail=%s page "
                   "(%s:N with %u integer(s))",
                   name, name, n_fields);
      return FALSE;
    }
  out->n = n_fields;
  return TRUE;
}

guint
ma_page_start (const MaPageKey *keys, guint n, const MaPageKey *cursor)
{
  guint lo = 0, hi = n;

  if (cursor == NULL)
    return 0;
  /* the first key greater than the cursor */
  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;
      if (ma_page_key_compare (&keys[mid], cursor) <= 0)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo;
}
