/* plugin.c — quiesce plugins as described by their manifests: loading and validating
 * NAME.plugin files, the search path with overrides and masks, ownership checks, ordering. */
#include "plugin.h"

#include "buildconfig.h"

#include <errno.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "config.h"
#include "error.h"
#include "json.h"

#define PLUGIN_GROUP "Plugin"
/* Phases= absent: every phase but renew, which a plugin must ask for */
#define DEFAULT_PHASES (((1u << MA_PLUGIN_N_PHASES) - 1) & ~(1u << MA_PLUGIN_PHASE_RENEW))

static const char *const phase_names[] = {
  [MA_PLUGIN_PHASE_CHECK] = "check",
  [MA_PLUGIN_PHASE_QUIESCE] = "quiesce",
  [MA_PLUGIN_PHASE_THAW] = "thaw",
  [MA_PLUGIN_PHASE_VALIDATE] = "validate",
  [MA_PLUGIN_PHASE_RENEW] = "renew",
};

static const char *const timeout_keys[] = {
  [MA_PLUGIN_PHASE_CHECK] = "CheckTimeout",
  [MA_PLUGIN_PHASE_QUIESCE] = "QuiesceTimeout",
  [MA_PLUGIN_PHASE_THAW] = "ThawTimeout",
  [MA_PLUGIN_PHASE_VALIDATE] = "ValidateTimeout",
  [MA_PLUGIN_PHASE_RENEW] = "RenewTimeout",
};

static const char *const known_keys[] = {
  "Name", "Description", "Exec", "Protocol", "Order", "After", "Before", "Timeout",
  "CheckTimeout", "QuiesceTimeout", "ThawTimeout", "ValidateTimeout", "RenewTimeout", "Phases",
  "Hook", "User", "EnvironmentFile", "Enabled", NULL,
};

/* Variables the agent sets itself; an EnvironmentFile may not replace them. */
static const char *const reserved_env[] = {
  "PATH", "LANG", "MA_PLUGIN", "MA_PHASE", "MA_OPERATION", "MA_LEASE_SECONDS",
  "MA_DEADLINE_MS", "MA_STATE_DIR", NULL,
};

/* g_strv_builder_take() is newer than the GLib we require */
static void
builder_take (GStrvBuilder *builder, char *value)
{
  g_strv_builder_add (builder, value);
  g_free (value);
}

const char *
ma_plugin_phase_to_string (MaPluginPhase phase)
{
  if ((guint) phase >= G_N_ELEMENTS (phase_names))
    return "unknown";
  return phase_names[phase];
}

gboolean
ma_plugin_phase_from_string (const char *name, MaPluginPhase *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (phase_names); i++)
    if (g_strcmp0 (name, phase_names[i]) == 0)
      {
        *out = (MaPluginPhase) i;
        return TRUE;
      }
  return FALSE;
}

gboolean
ma_plugin_has_phase (MaPlugin *plugin, MaPluginPhase phase)
{
  return (plugin->phases & (1u << phase)) != 0;
}

const char *
ma_plugin_phase_argument (MaPlugin *plugin, MaPluginPhase phase)
{
  if (plugin->fsfreeze_hook && phase == MA_PLUGIN_PHASE_QUIESCE)
    return "freeze";
  return ma_plugin_phase_to_string (phase);
}

MaPlugin *
ma_plugin_ref (MaPlugin *plugin)
{
  g_atomic_int_inc (&plugin->refcount);
  return plugin;
}

void
ma_plugin_unref (MaPlugin *plugin)
{
  if (plugin == NULL || !g_atomic_int_dec_and_test (&plugin->refcount))
    return;
  g_free (plugin->name);
  g_free (plugin->description);
  g_free (plugin->manifest);
  g_strfreev (plugin->argv);
  g_strfreev (plugin->after);
  g_strfreev (plugin->before);
  g_free (plugin->user);
  g_strfreev (plugin->environment);
  g_free (plugin->environment_file);
  g_free (plugin->reason);
  g_free (plugin);
}

gboolean
ma_plugin_check_file (const char *path, gboolean executable, GError **error)
{
  struct stat st;
  uid_t self = geteuid ();

  if (stat (path, &st) < 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION, "%s: %s", path, g_strerror (errno));
      return FALSE;
    }
  if (!S_ISREG (st.st_mode))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION, "%s is not a regular file", path);
      return FALSE;
    }
  if (st.st_uid != 0 && st.st_uid != self)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION,
                   "%s is owned by uid %u, not by root%s", path, (guint) st.st_uid,
                   self != 0 ? " or the agent's own user" : "");
      return FALSE;
    }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION,
                   "%s is writable by %s (mode %04o)", path,
                   (st.st_mode & S_IWOTH) ? "everyone" : "its group", st.st_mode & 07777);
      return FALSE;
    }
  if (executable && (st.st_mode & S_IXUSR) == 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION, "%s is not executable", path);
      return FALSE;
    }
  return TRUE;
}

static gboolean
name_is_valid (const char *name)
{
  gsize len = strlen (name);

  if (len == 0 || len > MA_PLUGIN_MAX_NAME || !g_ascii_isalnum (name[0]))
    return FALSE;
  for (const char *p = name; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_' && *p != '.')
      return FALSE;
  return TRUE;
}

static gboolean
parse_seconds (GKeyFile *kf, const char *key, double def, guint *out_ms, GError **error)
{
  g_autofree char *raw = g_key_file_get_value (kf, PLUGIN_GROUP, key, NULL);
  char *end = NULL;
  double value;

  if (raw == NULL)
    {
      *out_ms = (guint) (def * 1000);
      return TRUE;
    }
  g_strstrip (raw);
  value = g_ascii_strtod (raw, &end);
  if (end == raw || *end != '\0' || !(value > 0) || value > MA_PLUGIN_MAX_TIMEOUT_SECONDS)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "%s=%s: expected seconds, more than 0 and at most %.0f", key, raw,
                   MA_PLUGIN_MAX_TIMEOUT_SECONDS);
      return FALSE;
    }
  *out_ms = (guint) (value * 1000);
  return TRUE;
}

static gboolean
parse_bool (GKeyFile *kf, const char *key, gboolean def, gboolean *out, GError **error)
{
  g_autofree char *raw = g_key_file_get_value (kf, PLUGIN_GROUP, key, NULL);

  *out = def;
  if (raw == NULL)
    return TRUE;
  if (!ma_keyfile_parse_bool (raw, out))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "%s=%s: expected true or false",
                   key, g_strstrip (raw));
      return FALSE;
    }
  return TRUE;
}

static char **
get_list (GKeyFile *kf, const char *key)
{
  g_auto(GStrv) raw = g_key_file_get_string_list (kf, PLUGIN_GROUP, key, NULL, NULL);
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  for (guint i = 0; raw != NULL && raw[i] != NULL; i++)
    {
      /* "a b;c" and "a;b;c" both list three names */
      g_auto(GStrv) words = g_strsplit_set (raw[i], " \t,", -1);
      for (guint j = 0; words[j] != NULL; j++)
        if (*words[j] != '\0')
          g_strv_builder_add (builder, words[j]);
    }
  return g_strv_builder_end (builder);
}

static gboolean
parse_environment_file (MaPlugin *plugin, const char *path, GError **error)
{
  g_autofree char *contents = NULL;
  g_auto(GStrv) lines = NULL;
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr(GError) local = NULL;

  if (!g_path_is_absolute (path))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "EnvironmentFile=%s: must be an absolute path", path);
      return FALSE;
    }
  if (!ma_plugin_check_file (path, FALSE, &local))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION, "EnvironmentFile refused: %s",
                   local->message);
      return FALSE;
    }
  if (!g_file_get_contents (path, &contents, NULL, error))
    return FALSE;
  lines = g_strsplit (contents, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      char *line = g_strstrip (lines[i]);
      const char *eq;
      g_autofree char *key = NULL;
      g_autofree char *value = NULL;
      gsize vlen;

      if (*line == '\0' || *line == '#' || *line == ';')
        continue;
      eq = strchr (line, '=');
      if (eq == NULL || eq == line)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "EnvironmentFile %s line %u: expected KEY=VALUE", path, i + 1);
          return FALSE;
        }
      key = g_strndup (line, (gsize) (eq - line));
      g_strstrip (key);
      for (const char *p = key; *p != '\0'; p++)
        if (!(g_ascii_isalnum (*p) || *p == '_') || g_ascii_isdigit (key[0]))
          {
            g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                         "EnvironmentFile %s line %u: '%s' is not a variable name", path, i + 1,
                         key);
            return FALSE;
          }
      if (g_strv_contains (reserved_env, key))
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "EnvironmentFile %s line %u: %s is set by the agent", path, i + 1, key);
          return FALSE;
        }
      value = g_strdup (eq + 1);
      g_strstrip (value);
      vlen = strlen (value);
      if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0])
        {
          value[vlen - 1] = '\0';
          memmove (value, value + 1, vlen - 1);
        }
      builder_take (builder, g_strdup_printf ("%s=%s", key, value));
    }
  plugin->environment = g_strv_builder_end (builder);
  return TRUE;
}

static gboolean
plugin_parse (MaPlugin *plugin, GKeyFile *kf, const char *dir, GError **error)
{
  g_auto(GStrv) keys = NULL;
  g_autofree char *name = NULL;
  g_autofree char *exec = NULL;
  g_autofree char *protocol = NULL;
  g_autofree char *hook = NULL;
  g_autofree char *env_file = NULL;
  g_auto(GStrv) phases = NULL;
  g_autoptr(GError) local = NULL;
  guint default_timeout;
  gboolean enabled;

  if (!g_key_file_has_group (kf, PLUGIN_GROUP))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "no [%s] group", PLUGIN_GROUP);
      return FALSE;
    }
  keys = g_key_file_get_keys (kf, PLUGIN_GROUP, NULL, NULL);
  for (guint i = 0; keys != NULL && keys[i] != NULL; i++)
    if (!g_strv_contains (known_keys, keys[i]))
      {
        g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "unknown key %s=", keys[i]);
        return FALSE;
      }

  if (!parse_bool (kf, "Enabled", TRUE, &enabled, error))
    return FALSE;
  if (!enabled)
    {
      plugin->status = MA_PLUGIN_MASKED;
      plugin->reason = g_strdup_printf ("Enabled=false in %s", plugin->manifest);
      return TRUE;
    }

  name = g_key_file_get_string (kf, PLUGIN_GROUP, "Name", NULL);
  if (name != NULL && g_strcmp0 (g_strstrip (name), plugin->name) != 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "Name=%s does not match the file name %s" MA_PLUGIN_SUFFIX, name, plugin->name);
      return FALSE;
    }
  plugin->description = g_key_file_get_string (kf, PLUGIN_GROUP, "Description", NULL);

  exec = g_key_file_get_string (kf, PLUGIN_GROUP, "Exec", NULL);
  if (exec == NULL || *g_strstrip (exec) == '\0')
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "Exec= is missing");
      return FALSE;
    }
  if (!g_shell_parse_argv (exec, NULL, &plugin->argv, &local))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "Exec=%s: %s", exec, local->message);
      return FALSE;
    }
  if (!g_path_is_absolute (plugin->argv[0]))
    {
      /* relative to the manifest's directory, never looked up in PATH */
      char *abs = g_build_filename (dir, plugin->argv[0], NULL);
      g_free (plugin->argv[0]);
      plugin->argv[0] = abs;
    }
  if (!ma_plugin_check_file (plugin->argv[0], TRUE, &local))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION, "Exec refused: %s", local->message);
      return FALSE;
    }

  protocol = g_key_file_get_string (kf, PLUGIN_GROUP, "Protocol", NULL);
  if (protocol == NULL || g_strcmp0 (g_strstrip (protocol), "oneshot") == 0)
    plugin->protocol = MA_PLUGIN_ONESHOT;
  else if (g_strcmp0 (protocol, "session") == 0)
    plugin->protocol = MA_PLUGIN_SESSION;
  else
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "Protocol=%s: expected oneshot or session", protocol);
      return FALSE;
    }

  plugin->order = MA_PLUGIN_DEFAULT_ORDER;
  if (g_key_file_has_key (kf, PLUGIN_GROUP, "Order", NULL))
    {
      g_autofree char *raw = g_key_file_get_value (kf, PLUGIN_GROUP, "Order", NULL);
      if (!g_ascii_string_to_signed (g_strstrip (raw), 10, -1000000, 1000000, &plugin->order,
                                     NULL))
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "Order=%s: expected an integer from -1000000 to 1000000", raw);
          return FALSE;
        }
    }
  g_strfreev (plugin->after);
  plugin->after = get_list (kf, "After");
  g_strfreev (plugin->before);
  plugin->before = get_list (kf, "Before");

  if (!parse_seconds (kf, "Timeout", MA_PLUGIN_DEFAULT_TIMEOUT_SECONDS, &default_timeout, error))
    return FALSE;
  for (guint p = 0; p < MA_PLUGIN_N_PHASES; p++)
    if (!parse_seconds (kf, timeout_keys[p], default_timeout / 1000.0, &plugin->timeout_ms[p],
                        error))
      return FALSE;

  hook = g_key_file_get_string (kf, PLUGIN_GROUP, "Hook", NULL);
  if (hook != NULL && *g_strstrip (hook) != '\0')
    {
      if (g_strcmp0 (hook, "fsfreeze") != 0)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "Hook=%s: only fsfreeze exists",
                       hook);
          return FALSE;
        }
      if (plugin->protocol != MA_PLUGIN_ONESHOT)
        {
          g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                               "Hook=fsfreeze needs Protocol=oneshot");
          return FALSE;
        }
      plugin->fsfreeze_hook = TRUE;
    }

  phases = get_list (kf, "Phases");
  if (phases[0] == NULL)
    plugin->phases = DEFAULT_PHASES;
  for (guint i = 0; phases[i] != NULL; i++)
    {
      MaPluginPhase phase;
      if (!ma_plugin_phase_from_string (phases[i], &phase))
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "Phases: unknown phase '%s' (check, quiesce, thaw, validate, renew)",
                       phases[i]);
          return FALSE;
        }
      plugin->phases |= 1u << phase;
    }
  if (plugin->fsfreeze_hook)
    plugin->phases &= (1u << MA_PLUGIN_PHASE_QUIESCE) | (1u << MA_PLUGIN_PHASE_THAW);

  plugin->user = g_key_file_get_string (kf, PLUGIN_GROUP, "User", NULL);
  if (plugin->user != NULL && *g_strstrip (plugin->user) == '\0')
    g_clear_pointer (&plugin->user, g_free);
  if (plugin->user != NULL)
    {
      struct passwd *pw = getpwnam (plugin->user);
      if (pw == NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "User=%s: no such user",
                       plugin->user);
          return FALSE;
        }
      if (geteuid () != 0 && pw->pw_uid != geteuid ())
        {
          g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION,
                       "User=%s: the agent is not running as root", plugin->user);
          return FALSE;
        }
    }

  env_file = g_key_file_get_string (kf, PLUGIN_GROUP, "EnvironmentFile", NULL);
  if (env_file != NULL && *g_strstrip (env_file) != '\0')
    {
      plugin->environment_file = g_strdup (env_file);
      if (!parse_environment_file (plugin, env_file, error))
        return FALSE;
    }
  return TRUE;
}

MaPlugin *
ma_plugin_load (const char *path)
{
  g_autoptr(MaPlugin) plugin = g_new0 (MaPlugin, 1);
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize len = 0;

  plugin->refcount = 1;
  plugin->manifest = g_strdup (path);
  plugin->name = g_str_has_suffix (base, MA_PLUGIN_SUFFIX)
                   ? g_strndup (base, strlen (base) - strlen (MA_PLUGIN_SUFFIX))
                   : g_strdup (base);
  plugin->order = MA_PLUGIN_DEFAULT_ORDER;
  plugin->after = g_new0 (char *, 1);
  plugin->before = g_new0 (char *, 1);

  if (!name_is_valid (plugin->name))
    {
      plugin->status = MA_PLUGIN_REFUSED;
      plugin->reason = g_strdup_printf ("'%s' is not a valid plugin name (letters, digits, "
                                        "'-', '_', '.'; at most %d)", plugin->name,
                                        MA_PLUGIN_MAX_NAME);
      return g_steal_pointer (&plugin);
    }
  if (!ma_plugin_check_file (path, FALSE, &error)
      || !g_file_get_contents (path, &contents, &len, &error))
    {
      plugin->status = MA_PLUGIN_REFUSED;
      plugin->reason = g_strdup_printf ("manifest refused: %s", error->message);
      return g_steal_pointer (&plugin);
    }
  if (len == 0 || *g_strstrip (contents) == '\0')
    {
      plugin->status = MA_PLUGIN_MASKED;
      plugin->reason = g_strdup_printf ("masked by the empty file %s", path);
      return g_steal_pointer (&plugin);
    }
  if (len > MA_PLUGIN_MAX_MANIFEST_BYTES)
    {
      plugin->status = MA_PLUGIN_REFUSED;
      plugin->reason = g_strdup_printf ("manifest larger than %d bytes",
                                        MA_PLUGIN_MAX_MANIFEST_BYTES);
      return g_steal_pointer (&plugin);
    }
  if (!g_key_file_load_from_data (kf, contents, (gsize) -1, G_KEY_FILE_NONE, &error)
      || !plugin_parse (plugin, kf, dir, &error))
    {
      g_strfreev (plugin->argv);
      plugin->argv = NULL;
      plugin->status = MA_PLUGIN_REFUSED;
      plugin->reason = g_strdup (error->message);
    }
  return g_steal_pointer (&plugin);
}

/* ---- the set ---- */

struct _MaPluginSet
{
  gint refcount;
  char **dirs;
  GPtrArray *all;      /* MaPlugin*, by name */
  GPtrArray *ordered;  /* usable MaPlugin*, topological */
  GHashTable *by_name; /* name → MaPlugin* (in all) */
  GHashTable *index;   /* MaPlugin* → position in ordered + 1 */
  guint8 *precedes;    /* ordered->len² reachability */
};

char **
ma_plugin_search_path (MaConfig *config)
{
  g_auto(GStrv) dirs = ma_config_get_strv (config, "plugins", "dirs");
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  if (dirs != NULL && dirs[0] != NULL)
    return g_steal_pointer (&dirs);
  builder_take (builder, g_build_filename (MA_PKGLIBDIR, "plugins.d", NULL));
  builder_take (builder, g_build_filename (MA_SYSCONFDIR, "plugins.d", NULL));
  return g_strv_builder_end (builder);
}

static gint
compare_by_name (gconstpointer a, gconstpointer b)
{
  const MaPlugin *pa = *(MaPlugin *const *) a;
  const MaPlugin *pb = *(MaPlugin *const *) b;

  return strcmp (pa->name, pb->name);
}

static void
refuse (MaPlugin *plugin, char *reason /* taken */)
{
  plugin->status = MA_PLUGIN_REFUSED;
  g_free (plugin->reason);
  plugin->reason = reason;
}

/* edge[i*n+j]: i must quiesce before j. Built from Order, After= and Before=. */
static guint8 *
build_edges (GPtrArray *nodes)
{
  guint n = nodes->len;
  guint8 *edge = g_new0 (guint8, (gsize) n * n + 1);

  for (guint i = 0; i < n; i++)
    {
      MaPlugin *a = nodes->pdata[i];
      for (guint j = 0; j < n; j++)
        {
          MaPlugin *b = nodes->pdata[j];
          if (i == j)
            continue;
          if (a->order < b->order || g_strv_contains ((const char *const *) b->after, a->name)
              || g_strv_contains ((const char *const *) a->before, b->name))
            edge[i * n + j] = 1;
        }
    }
  return edge;
}

/* Topological order of nodes (Kahn). Nodes left over are on or behind a cycle. */
static GPtrArray *
toposort (GPtrArray *nodes, const guint8 *edge, GPtrArray *left)
{
  guint n = nodes->len;
  g_autofree guint *indegree = g_new0 (guint, n + 1);
  g_autofree gboolean *done = g_new0 (gboolean, n + 1);
  GPtrArray *out = g_ptr_array_new ();
  gboolean progress = TRUE;

  for (guint i = 0; i < n; i++)
    for (guint j = 0; j < n; j++)
      indegree[j] += edge[i * n + j];
  while (progress)
    {
      progress = FALSE;
      /* lowest Order first, then by name: a stable, readable order */
      for (guint j = 0; j < n; j++)
        if (!done[j] && indegree[j] == 0)
          {
            done[j] = TRUE;
            g_ptr_array_add (out, nodes->pdata[j]);
            for (guint k = 0; k < n; k++)
              indegree[k] -= edge[j * n + k];
            progress = TRUE;
            break;
          }
    }
  for (guint j = 0; j < n; j++)
    if (!done[j])
      g_ptr_array_add (left, nodes->pdata[j]);
  return out;
}

static gboolean
reaches (const guint8 *edge, guint n, guint from, guint to, guint8 *seen)
{
  if (edge[from * n + to])
    return TRUE;
  seen[from] = 1;
  for (guint k = 0; k < n; k++)
    if (edge[from * n + k] && !seen[k] && reaches (edge, n, k, to, seen))
      return TRUE;
  return FALSE;
}

static void
plugin_set_order (MaPluginSet *self)
{
  g_autoptr(GPtrArray) nodes = g_ptr_array_new ();

  for (guint i = 0; i < self->all->len; i++)
    {
      MaPlugin *p = self->all->pdata[i];
      if (p->status == MA_PLUGIN_USABLE)
        g_ptr_array_add (nodes, p);
    }
  g_ptr_array_sort (nodes, compare_by_name);

  for (;;)
    {
      g_autofree guint8 *edge = build_edges (nodes);
      g_autoptr(GPtrArray) left = g_ptr_array_new ();
      g_autoptr(GPtrArray) cyclic = g_ptr_array_new ();
      g_autoptr(GString) names = g_string_new (NULL);
      guint n = nodes->len;
      GPtrArray *sorted = toposort (nodes, edge, left);

      if (left->len == 0)
        {
          self->ordered = sorted;
          break;
        }
      g_ptr_array_unref (sorted);
      for (guint i = 0; i < n; i++)
        {
          g_autofree guint8 *seen = g_new0 (guint8, n + 1);
          if (reaches (edge, n, i, i, seen))
            g_ptr_array_add (cyclic, nodes->pdata[i]);
        }
      for (guint i = 0; i < cyclic->len; i++)
        g_string_append_printf (names, "%s%s", i ? ", " : "",
                                ((MaPlugin *) cyclic->pdata[i])->name);
      for (guint i = 0; i < cyclic->len; i++)
        {
          refuse (cyclic->pdata[i],
                  g_strdup_printf ("ordering cycle among %s (After=, Before= and Order= "
                                   "contradict each other)", names->str));
          g_ptr_array_remove (nodes, cyclic->pdata[i]);
        }
    }

  /* reachability in the final order, for waiting on subsets */
  {
    guint n = self->ordered->len;
    g_autofree guint8 *edge = build_edges (self->ordered);

    self->precedes = g_new0 (guint8, (gsize) n * n + 1);
    for (guint i = 0; i < n; i++)
      {
        g_hash_table_insert (self->index, self->ordered->pdata[i], GUINT_TO_POINTER (i + 1));
        for (guint j = 0; j < n; j++)
          if (i != j)
            {
              g_autofree guint8 *seen = g_new0 (guint8, n + 1);
              self->precedes[i * n + j] = reaches (edge, n, i, j, seen);
            }
      }
  }
}

MaPluginSet *
ma_plugin_set_load (const char *const *dirs)
{
  MaPluginSet *self = g_new0 (MaPluginSet, 1);
  g_autoptr(GHashTable) winners = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  GHashTableIter iter;
  gpointer value;

  self->refcount = 1;
  self->dirs = g_strdupv ((char **) dirs);
  self->all = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_plugin_unref);
  self->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  self->index = g_hash_table_new (NULL, NULL);

  for (guint d = 0; dirs != NULL && dirs[d] != NULL; d++)
    {
      g_autoptr(GDir) dir = g_dir_open (dirs[d], 0, NULL);
      const char *entry;

      if (dir == NULL)
        continue;
      while ((entry = g_dir_read_name (dir)) != NULL)
        if (g_str_has_suffix (entry, MA_PLUGIN_SUFFIX) && entry[0] != '.')
          g_hash_table_replace (winners, g_strdup (entry),
                                g_build_filename (dirs[d], entry, NULL));
    }

  g_hash_table_iter_init (&iter, winners);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      MaPlugin *plugin = ma_plugin_load (value);
      if (self->all->len >= MA_PLUGIN_MAX_PLUGINS)
        refuse (plugin, g_strdup_printf ("more than %d plugins", MA_PLUGIN_MAX_PLUGINS));
      g_ptr_array_add (self->all, plugin);
    }
  g_ptr_array_sort (self->all, compare_by_name);
  for (guint i = 0; i < self->all->len; i++)
    {
      MaPlugin *p = self->all->pdata[i];
      g_hash_table_insert (self->by_name, p->name, p);
    }
  plugin_set_order (self);
  for (guint i = 0; i < self->all->len; i++)
    {
      MaPlugin *p = self->all->pdata[i];
      if (p->status == MA_PLUGIN_REFUSED)
        g_warning ("plugin %s refused: %s", p->name, p->reason);
    }
  return self;
}

MaPluginSet *
ma_plugin_set_ref (MaPluginSet *self)
{
  g_atomic_int_inc (&self->refcount);
  return self;
}

void
ma_plugin_set_unref (MaPluginSet *self)
{
  if (self == NULL || !g_atomic_int_dec_and_test (&self->refcount))
    return;
  g_strfreev (self->dirs);
  g_hash_table_unref (self->by_name);
  g_hash_table_unref (self->index);
  g_clear_pointer (&self->ordered, g_ptr_array_unref);
  g_ptr_array_unref (self->all);
  g_free (self->precedes);
  g_free (self);
}

GPtrArray *
ma_plugin_set_get_all (MaPluginSet *self)
{
  return self->all;
}

GPtrArray *
ma_plugin_set_get_ordered (MaPluginSet *self)
{
  return self->ordered;
}

MaPlugin *
ma_plugin_set_lookup (MaPluginSet *self, const char *name)
{
  return g_hash_table_lookup (self->by_name, name);
}

gboolean
ma_plugin_set_precedes (MaPluginSet *self, MaPlugin *a, MaPlugin *b)
{
  guint i = GPOINTER_TO_UINT (g_hash_table_lookup (self->index, a));
  guint j = GPOINTER_TO_UINT (g_hash_table_lookup (self->index, b));

  if (i == 0 || j == 0)
    return FALSE;
  return self->precedes[(i - 1) * self->ordered->len + (j - 1)] != 0;
}

const char *const *
ma_plugin_set_get_dirs (MaPluginSet *self)
{
  return (const char *const *) self->dirs;
}

static JsonArray *
strv_to_array (char **strv)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; strv != NULL && strv[i] != NULL; i++)
    json_array_add_string_element (array, strv[i]);
  return array;
}

JsonObject *
ma_plugin_to_json (MaPlugin *plugin)
{
  static const char *const status_names[] = { "ready", "masked", "refused" };
  JsonObject *obj = json_object_new ();
  JsonArray *phases;

  json_object_set_string_member (obj, "name", plugin->name);
  json_object_set_string_member (obj, "manifest", plugin->manifest);
  json_object_set_string_member (obj, "status", status_names[plugin->status]);
  if (plugin->reason != NULL)
    json_object_set_string_member (obj, "reason", plugin->reason);
  if (plugin->status != MA_PLUGIN_USABLE)
    return obj;
  if (plugin->description != NULL)
    json_object_set_string_member (obj, "description", plugin->description);
  json_object_set_array_member (obj, "exec", strv_to_array (plugin->argv));
  json_object_set_string_member (obj, "protocol",
                                 plugin->protocol == MA_PLUGIN_SESSION ? "session" : "oneshot");
  json_object_set_int_member (obj, "order", plugin->order);
  json_object_set_array_member (obj, "after", strv_to_array (plugin->after));
  json_object_set_array_member (obj, "before", strv_to_array (plugin->before));
  phases = json_array_new ();
  for (guint p = 0; p < MA_PLUGIN_N_PHASES; p++)
    if (ma_plugin_has_phase (plugin, p))
      json_array_add_string_element (phases, phase_names[p]);
  json_object_set_array_member (obj, "phases", phases);
  {
    JsonObject *timeouts = json_object_new ();
    for (guint p = 0; p < MA_PLUGIN_N_PHASES; p++)
      json_object_set_double_member (timeouts, phase_names[p], plugin->timeout_ms[p] / 1000.0);
    json_object_set_object_member (obj, "timeouts", timeouts);
  }
  if (plugin->fsfreeze_hook)
    json_object_set_string_member (obj, "hook", "fsfreeze");
  if (plugin->user != NULL)
    json_object_set_string_member (obj, "user", plugin->user);
  if (plugin->environment_file != NULL)
    json_object_set_string_member (obj, "environment-file", plugin->environment_file);
  return obj;
}
