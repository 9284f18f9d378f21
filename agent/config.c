/* config.c — the agent's configuration: agent.conf plus agent.conf.d/NAME.conf (GKeyFile),
 * merged in order, with typed accessors and the built-in defaults. */
#include "config.h"

#include "buildconfig.h"

#include "error.h"

struct _MaConfig
{
  GKeyFile *keyfile;
  GPtrArray *sources;
};

static MaConfig *
config_new (void)
{
  MaConfig *self = g_new0 (MaConfig, 1);

  self->keyfile = g_key_file_new ();
  self->sources = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (self->sources, NULL);
  return self;
}

void
ma_config_free (MaConfig *self)
{
  if (self == NULL)
    return;
  g_key_file_unref (self->keyfile);
  g_ptr_array_unref (self->sources);
  g_free (self);
}

static void
add_source (MaConfig *self, const char *path)
{
  g_ptr_array_insert (self->sources, (gint) self->sources->len - 1, g_strdup (path));
}

/* Copy every key of `from` over `into`: later files override earlier ones. */
static void
merge_keyfile (GKeyFile *into, GKeyFile *from)
{
  g_auto(GStrv) groups = g_key_file_get_groups (from, NULL);

  for (guint i = 0; groups[i] != NULL; i++)
    {
      g_auto(GStrv) keys = g_key_file_get_keys (from, groups[i], NULL, NULL);
      for (guint j = 0; keys != NULL && keys[j] != NULL; j++)
        {
          g_autofree char *value = g_key_file_get_value (from, groups[i], keys[j], NULL);
          if (value != NULL)
            g_key_file_set_value (into, groups[i], keys[j], value);
        }
    }
}

static gboolean
merge_file (MaConfig *self, const char *path, GError **error)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();

  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_NONE, error))
    {
      g_prefix_error (error, "%s: ", path);
      return FALSE;
    }
  merge_keyfile (self->keyfile, kf);
  add_source (self, path);
  return TRUE;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(const char *const *) a, *(const char *const *) b);
}

MaConfig *
ma_config_load (const char *path, GError **error)
{
  g_autoptr(MaConfig) self = config_new ();
  g_autofree char *default_path = g_build_filename (MA_SYSCONFDIR, "agent.conf", NULL);
  g_autofree char *dropin_dir = NULL;
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (path == NULL)
    {
      path = default_path;
      if (g_file_test (path, G_FILE_TEST_EXISTS) && !merge_file (self, path, error))
        return NULL;
    }
  else if (!merge_file (self, path, error))
    return NULL;

  dropin_dir = g_strconcat (path, ".d", NULL);
  dir = g_dir_open (dropin_dir, 0, NULL);
  if (dir == NULL)
    return g_steal_pointer (&self);
  while ((name = g_dir_read_name (dir)) != NULL)
    if (g_str_has_suffix (name, ".conf"))
      g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *file = g_build_filename (dropin_dir, names->pdata[i], NULL);
      if (!merge_file (self, file, error))
        return NULL;
    }
  return g_steal_pointer (&self);
}

MaConfig *
ma_config_new_from_data (const char *data, GError **error)
{
  g_autoptr(MaConfig) self = config_new ();

  if (!g_key_file_load_from_data (self->keyfile, data, (gsize) -1, G_KEY_FILE_NONE, error))
    return NULL;
  return g_steal_pointer (&self);
}

char *
ma_config_get_string (MaConfig *self, const char *group, const char *key, const char *def)
{
  char *value = g_key_file_get_string (self->keyfile, group, key, NULL);

  if (value == NULL || *value == '\0')
    {
      g_free (value);
      return g_strdup (def);
    }
  return value;
}

char **
ma_config_get_strv (MaConfig *self, const char *group, const char *key)
{
  g_auto(GStrv) raw = g_key_file_get_string_list (self->keyfile, group, key, NULL, NULL);
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();

  for (guint i = 0; raw != NULL && raw[i] != NULL; i++)
    {
      g_strstrip (raw[i]);
      if (*raw[i] != '\0')
        g_strv_builder_add (builder, raw[i]);
    }
  return g_strv_builder_end (builder);
}

gboolean
ma_config_get_int (MaConfig *self, const char *group, const char *key, gint64 def, gint64 min,
                   gint64 max, gint64 *out, GError **error)
{
  g_autofree char *raw = g_key_file_get_value (self->keyfile, group, key, NULL);
  gint64 value;

  if (raw == NULL)
    {
      *out = def;
      return TRUE;
    }
  g_strstrip (raw);
  if (!g_ascii_string_to_signed (raw, 10, min, max, &value, NULL))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "configuration [%s] %s=%s: expected an integer from %" G_GINT64_FORMAT
                   " to %" G_GINT64_FORMAT, group, key, raw, min, max);
      return FALSE;
    }
  *out = value;
  return TRUE;
}

gboolean
ma_keyfile_parse_bool (const char *raw, gboolean *out)
{
  g_autofree char *word = g_strstrip (g_strdup (raw));

  if (g_ascii_strcasecmp (word, "true") == 0 || g_strcmp0 (word, "1") == 0
      || g_ascii_strcasecmp (word, "yes") == 0)
    *out = TRUE;
  else if (g_ascii_strcasecmp (word, "false") == 0 || g_strcmp0 (word, "0") == 0
           || g_ascii_strcasecmp (word, "no") == 0)
    *out = FALSE;
  else
    return FALSE;
  return TRUE;
}

gboolean
ma_config_get_bool (MaConfig *self, const char *group, const char *key, gboolean def,
                    gboolean *out, GError **error)
{
  g_autofree char *raw = g_key_file_get_value (self->keyfile, group, key, NULL);

  if (raw == NULL)
    {
      *out = def;
      return TRUE;
    }
  if (!ma_keyfile_parse_bool (raw, out))
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "configuration [%s] %s=%s: expected true or false", group, key, g_strstrip (raw));
      return FALSE;
    }
  return TRUE;
}

GKeyFile *
ma_config_get_keyfile (MaConfig *self)
{
  return self->keyfile;
}

const char *const *
ma_config_get_sources (MaConfig *self)
{
  return (const char *const *) self->sources->pdata;
}
