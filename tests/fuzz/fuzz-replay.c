/* fuzz-replay.c — runs a fuzz target over every file of its seed corpus, so each target is
 * also a plain test in the normal suite (TAP: one line per corpus file). */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
main (int argc, char **argv)
{
  guint n = 0, failed = 0;

  if (argc < 2)
    {
      fprintf (stderr, "usage: %s CORPUS_DIR...\n", argv[0]);
      return 2;
    }
  for (int i = 1; i < argc; i++)
    {
      g_autoptr(GDir) dir = g_dir_open (argv[i], 0, NULL);
      g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
      const char *name;

      if (dir == NULL)
        {
          printf ("not ok %u - cannot open %s\n", ++n, argv[i]);
          failed++;
          continue;
        }
      while ((name = g_dir_read_name (dir)) != NULL)
        g_ptr_array_add (names, g_strdup (name));
      g_ptr_array_sort (names, (GCompareFunc) (void (*) (void)) g_strcmp0);
      for (guint j = 0; j < names->len; j++)
        {
          g_autofree char *path = g_build_filename (argv[i], names->pdata[j], NULL);
          g_autofree char *contents = NULL;
          gsize len = 0;

          if (!g_file_get_contents (path, &contents, &len, NULL))
            {
              printf ("not ok %u - cannot read %s\n", ++n, path);
              failed++;
              continue;
            }
          LLVMFuzzerTestOneInput ((const uint8_t *) contents, len);
          printf ("ok %u - %s\n", ++n, (const char *) names->pdata[j]);
        }
    }
  printf ("1..%u\n", n);
  return failed > 0 ? 1 : 0;
}
