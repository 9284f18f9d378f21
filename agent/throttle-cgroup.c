/* throttle-cgroup.c — what the throttle writes and where: policies (cpu.max, freeze), cgroup v2
 * control files, and classes resolved to the cgroups that exist now (a blocking /proc walk). */
#include "throttle-cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "dirtyrate.h"
#include "error.h"
#include "paths.h"

#define THROTTLE_GROUP "throttle"

gboolean
ma_throttle_parse_policy (const char *text, MaThrottlePolicy *out, GError **error)
{
  g_auto(GStrv) words = NULL;
  guint n;
  guint64 quota, period = MA_THROTTLE_CPU_MAX_DEFAULT_PERIOD;

  words = g_strsplit_set (text != NULL ? text : "", " \t", -1);
  /* drop empty words from repeated spaces */
  {
    guint j = 0;
    for (guint i = 0; words[i] != NULL; i++)
      {
        if (words[i][0] == '\0')
          {
            g_free (words[i]);
            continue;
          }
        words[j++] = words[i];
      }
    words[j] = NULL;
  }
  n = g_strv_length (words);
  if (n == 1 && g_str_equal (words[0], "freeze"))
    {
      out->kind = MA_THROTTLE_POLICY_FREEZE;
      out->quota = out->period = 0;
      return TRUE;
    }
  if ((n == 2 || n == 3) && g_str_equal (words[0], "cpu.max"))
    {
      if (!g_ascii_string_to_unsigned (words[1], 10, MA_THROTTLE_CPU_MAX_MIN_QUOTA, G_MAXINT32,
                                       &quota, NULL)
          || (n == 3
              && !g_ascii_string_to_unsigned (words[2], 10, MA_THROTTLE_CPU_MAX_MIN_QUOTA,
                                              MA_THROTTLE_CPU_MAX_MAX_PERIOD, &period, NULL)))
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "policy '%s': cpu.max wants QUOTA [PERIOD] in µs, QUOTA >= %d and "
                       "PERIOD from %d to %d", text, MA_THROTTLE_CPU_MAX_MIN_QUOTA,
                       MA_THROTTLE_CPU_MAX_MIN_QUOTA, MA_THROTTLE_CPU_MAX_MAX_PERIOD);
          return FALSE;
        }
      out->kind = MA_THROTTLE_POLICY_CPU_MAX;
      out->quota = (gint64) quota;
      out->period = (gint64) period;
      return TRUE;
    }
  g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
               "policy '%s' is neither 'freeze' nor 'cpu.max QUOTA [PERIOD]'",
               text != NULL ? text : "");
  return FALSE;
}

const char *
ma_throttle_policy_file (const MaThrottlePolicy *policy)
{
  return policy->kind == MA_THROTTLE_POLICY_FREEZE ? "cgroup.freeze" : "cpu.max";
}

char *
ma_throttle_policy_value (const MaThrottlePolicy *policy)
{
  if (policy->kind == MA_THROTTLE_POLICY_FREEZE)
    return g_strdup ("1");
  return g_strdup_printf ("%" G_GINT64_FORMAT " %" G_GINT64_FORMAT, policy->quota,
                          policy->period);
}

char *
ma_throttle_policy_to_string (const MaThrottlePolicy *policy)
{
  if (policy->kind == MA_THROTTLE_POLICY_FREEZE)
    return g_strdup ("freeze");
  return g_strdup_printf ("cpu.max %" G_GINT64_FORMAT " %" G_GINT64_FORMAT, policy->quota,
                          policy->period);
}

static gboolean
is_cgroup2_dir (const char *dir)
{
  g_autofree char *controllers = g_build_filename (dir, "cgroup.controllers", NULL);

  return g_file_test (controllers, G_FILE_TEST_EXISTS);
}

char *
ma_throttle_find_cgroup_root (MaConfig *config)
{
  g_autofree char *configured = ma_config_get_string (config, THROTTLE_GROUP, "cgroup-root", NULL);
  g_autofree char *unified = NULL;

  if (configured != NULL && configured[0] != '\0')
    return g_steal_pointer (&configured);
  if (is_cgroup2_dir (ma_path_cgroupfs ()))
    return g_strdup (ma_path_cgroupfs ());
  unified = g_build_filename (ma_path_cgroupfs (), "unified", NULL);
  if (is_cgroup2_dir (unified))
    return g_steal_pointer (&unified);
  return g_strdup (ma_path_cgroupfs ());
}

char *
ma_throttle_cgroup_read (const char *dir, const char *file, GError **error)
{
  g_autofree char *path = g_build_filename (dir, file, NULL);
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, error))
    return NULL;
  return g_strstrip (text);
}

gboolean
ma_throttle_cgroup_write (const char *dir, const char *file, const char *value, GError **error)
{
  g_autofree char *path = g_build_filename (dir, file, NULL);
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  gsize len = strlen (value);
  ssize_t n;
  int saved;

  if (fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot open %s: %s", path,
                   g_strerror (errno));
      return FALSE;
    }
  n = write (fd, value, len);
  saved = errno;
  close (fd);
  if (n != (ssize_t) len)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot write '%s' to %s: %s",
                   value, path, n < 0 ? g_strerror (saved) : "short write");
      return FALSE;
    }
  return TRUE;
}

char *
ma_throttle_rel_normalize (const char *path)
{
  g_auto(GStrv) parts = g_strsplit (path, "/", -1);
  g_autoptr(GPtrArray) keep = g_ptr_array_new ();

  for (guint i = 0; parts[i] != NULL; i++)
    if (parts[i][0] != '\0')
      g_ptr_array_add (keep, parts[i]);
  g_ptr_array_add (keep, NULL);
  return g_strjoinv ("/", (char **) keep->pdata);
}

/* a is b or an ancestor of b (relative paths, normalised). */
gboolean
ma_throttle_rel_contains (const char *a, const char *b)
{
  gsize la = strlen (a);

  if (la == 0)
    return TRUE;
  return g_str_has_prefix (b, a) && (b[la] == '\0' || b[la] == '/');
}

static char *
own_cgroup (void)
{
  g_autofree char *path = g_build_filename (ma_path_procfs (), "self", "cgroup", NULL);
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  return ma_dirty_parse_cgroup (text);
}

/* A unit's cgroup, relative to the root ("system.slice/NAME" or found through a process). */
static char *
unit_cgroup (const char *root, const char *unit)
{
  g_autofree char *system = g_build_filename (root, "system.slice", unit, NULL);
  g_autoptr(GDir) dir = NULL;
  const char *name;

  if (g_file_test (system, G_FILE_TEST_IS_DIR))
    return g_build_filename ("system.slice", unit, NULL);
  dir = g_dir_open (ma_path_procfs (), 0, NULL);
  if (dir == NULL)
    return NULL;
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autofree char *text = NULL;
      g_autofree char *cgroup = NULL;
      g_auto(GStrv) parts = NULL;

      if (!g_ascii_isdigit (name[0]))
        continue;
      path = g_build_filename (ma_path_procfs (), name, "cgroup", NULL);
      if (!g_file_get_contents (path, &text, NULL, NULL))
        continue;
      cgroup = ma_dirty_parse_cgroup (text);
      if (cgroup == NULL)
        continue;
      parts = g_strsplit (cgroup, "/", -1);
      for (guint i = 0; parts[i] != NULL; i++)
        if (g_str_equal (parts[i], unit))
          {
            g_free (parts[i + 1]);
            parts[i + 1] = NULL;
            {
              g_autofree char *joined = g_strjoinv ("/", parts);
              const char *rel = joined;
              while (*rel == '/')
                rel++;
              return g_strdup (rel);
            }
          }
    }
  return NULL;
}

/* Why this relative cgroup must not be touched, or NULL. */
static char *
protected_reason (const char *root, char **protected_units, const char *rel)
{
  g_autofree char *own = own_cgroup ();
  g_auto(GStrv) parts = g_strsplit (rel, "/", -1);

  if (rel[0] == '\0')
    return g_strdup ("it is the root cgroup");
  if (own != NULL)
    {
      g_autofree char *own_rel = ma_throttle_rel_normalize (own);
      if (ma_throttle_rel_contains (rel, own_rel))
        return g_strdup_printf ("it contains the agent itself (%s)", own);
    }
  for (guint i = 0; protected_units[i] != NULL; i++)
    {
      const char *p = protected_units[i];
      g_autofree char *pcg = NULL;

      for (guint j = 0; parts[j] != NULL; j++)
        if (g_str_equal (parts[j], p))
          return g_strdup_printf ("it belongs to the protected unit %s", p);
      pcg = strchr (p, '/') != NULL ? ma_throttle_rel_normalize (p) : unit_cgroup (root, p);
      if (pcg != NULL)
        {
          g_autofree char *norm = ma_throttle_rel_normalize (pcg);
          if (ma_throttle_rel_contains (rel, norm) || ma_throttle_rel_contains (norm, rel))
            return g_strdup_printf ("it contains or is inside the protected %s (%s)", p, norm);
        }
    }
  return NULL;
}

/* Relative cgroups of a class that exist now; missing ones are listed in `missing`. */
static GPtrArray *
class_targets (const char *root, char **cgroups, char **units, GPtrArray *missing)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; cgroups[i] != NULL; i++)
    {
      g_autofree char *rel = ma_throttle_rel_normalize (cgroups[i]);
      g_autofree char *abs = g_build_filename (root, rel, NULL);
      if (g_file_test (abs, G_FILE_TEST_IS_DIR))
        g_ptr_array_add (out, g_steal_pointer (&rel));
      else if (missing != NULL)
        g_ptr_array_add (missing, g_strdup (cgroups[i]));
    }
  for (guint i = 0; units[i] != NULL; i++)
    {
      g_autofree char *rel = unit_cgroup (root, units[i]);
      if (rel != NULL)
        g_ptr_array_add (out, ma_throttle_rel_normalize (rel));
      else if (missing != NULL)
        g_ptr_array_add (missing, g_strdup (units[i]));
    }
  return out;
}

MaThrottleTargets *
ma_throttle_resolve (const char *root, const char *klass, char **cgroups, char **units,
                     char **protected_units)
{
  MaThrottleTargets *t = g_new0 (MaThrottleTargets, 1);

  t->klass = g_strdup (klass);
  t->missing = g_ptr_array_new_with_free_func (g_free);
  t->targets = class_targets (root, cgroups, units, t->missing);
  t->why_not = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < t->targets->len; i++)
    g_ptr_array_add (t->why_not, protected_reason (root, protected_units, t->targets->pdata[i]));
  return t;
}

void
ma_throttle_targets_free (MaThrottleTargets *t)
{
  if (t == NULL)
    return;
  g_free (t->klass);
  g_ptr_array_unref (t->targets);
  g_ptr_array_unref (t->why_not);
  g_ptr_array_unref (t->missing);
  g_free (t);
}

void
ma_throttle_class_free (MaThrottleClass *klass)
{
  if (klass == NULL)
    return;
  g_free (klass->name);
  g_strfreev (klass->cgroups);
  g_strfreev (klass->units);
  g_free (klass);
}

typedef struct
{
  char *root;
  char **protected_units;
  GPtrArray *classes; /* MaThrottleClass* copies */
} ResolveJob;

static void
resolve_job_free (ResolveJob *job)
{
  g_free (job->root);
  g_strfreev (job->protected_units);
  g_ptr_array_unref (job->classes);
  g_free (job);
}

static void
resolve_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  ResolveJob *job = task_data;
  GPtrArray *resolved = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_throttle_targets_free);

  for (guint i = 0; i < job->classes->len; i++)
    {
      MaThrottleClass *klass = job->classes->pdata[i];
      g_ptr_array_add (resolved, ma_throttle_resolve (job->root, klass->name, klass->cgroups,
                                                      klass->units, job->protected_units));
    }
  g_task_return_pointer (task, resolved, (GDestroyNotify) g_ptr_array_unref);
}

void
ma_throttle_resolve_async (const char *root, char **protected_units, GPtrArray *classes,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new (NULL, NULL, callback, user_data);
  ResolveJob *job = g_new0 (ResolveJob, 1);

  job->root = g_strdup (root);
  job->protected_units = g_strdupv (protected_units);
  job->classes = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_throttle_class_free);
  for (guint i = 0; i < classes->len; i++)
    {
      MaThrottleClass *c = classes->pdata[i];
      MaThrottleClass *copy = g_new0 (MaThrottleClass, 1);
      copy->name = g_strdup (c->name);
      copy->policy = c->policy;
      copy->cgroups = g_strdupv (c->cgroups);
      copy->units = g_strdupv (c->units);
      g_ptr_array_add (job->classes, copy);
    }
  g_task_set_task_data (task, job, (GDestroyNotify) resolve_job_free);
  g_task_set_source_tag (task, ma_throttle_resolve_async);
  g_task_run_in_thread (task, resolve_thread);
}

GPtrArray *
ma_throttle_resolve_finish (GAsyncResult *result)
{
  return g_task_propagate_pointer (G_TASK (result), NULL);
}
