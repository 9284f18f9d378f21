/* fuzz-manifest.c — fuzz target for the plugin manifest loader and the ordering of a plugin
 * set: the input is split at "\n%%\n" into up to 8 NAME.plugin files of one directory. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "plugin.h"

#define MAX_MANIFESTS 8

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static char *dir;

static void
remove_dir (void)
{
  g_rmdir (dir);
}

static void
write_manifest (guint i, const char *text, gsize len)
{
  g_autofree char *name = g_strdup_printf ("p%u" MA_PLUGIN_SUFFIX, i);
  g_autofree char *path = g_build_filename (dir, name, NULL);

  g_assert (g_file_set_contents_full (path, text, (gssize) len, G_FILE_SET_CONTENTS_NONE, 0644,
                                      NULL));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *dirs[] = { NULL, NULL };
  const char *p = (const char *) data, *end = p + size;
  g_autoptr(MaPluginSet) set = NULL;
  GPtrArray *all, *ordered;
  guint n = 0;

  if (dir == NULL)
    {
      dir = g_dir_make_tmp ("ma-fuzz-manifest-XXXXXX", NULL);
      g_assert (dir != NULL);
      atexit (remove_dir);
    }
  while (n < MAX_MANIFESTS)
    {
      const char *sep = g_strstr_len (p, end - p, "\n%%\n");
      const char *stop = sep != NULL ? sep : end;
      write_manifest (n++, p, (gsize) (stop - p));
      if (sep == NULL)
        break;
      p = sep + 4;
    }

  dirs[0] = dir;
  set = ma_plugin_set_load (dirs);
  g_assert (set != NULL);
  all = ma_plugin_set_get_all (set);
  ordered = ma_plugin_set_get_ordered (set);
  g_assert (all->len == n);
  for (guint i = 0; i < all->len; i++)
    {
      MaPlugin *plugin = all->pdata[i];
      g_autoptr(JsonObject) json = ma_plugin_to_json (plugin);
      g_assert (json != NULL);
      g_assert (plugin->status != MA_PLUGIN_REFUSED || plugin->reason != NULL);
    }
  /* the order respects every edge it reports */
  for (guint i = 0; i < ordered->len; i++)
    for (guint j = i + 1; j < ordered->len; j++)
      g_assert (!ma_plugin_set_precedes (set, ordered->pdata[j], ordered->pdata[i]));

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *name = g_strdup_printf ("p%u" MA_PLUGIN_SUFFIX, i);
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_unlink (path);
    }
  return 0;
}
