/* fuzz-proclocks.c — fuzz target for the /proc/locks parser: whole files and single lines
 * of arbitrary bytes, as the blockers scan reads them. */
#include <stdint.h>

#include "proclocks.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(GArray) locks = NULL;
  g_autoptr(GError) error = NULL;
  guint n_bad = 0;
  MaLock lock;

  locks = ma_locks_parse ((const char *) data, size, &n_bad);
  g_assert (locks != NULL);
  for (guint i = 0; i < locks->len; i++)
    {
      MaLock *l = &g_array_index (locks, MaLock, i);
      g_assert (ma_lock_type_to_string (l->type) != NULL);
      g_assert (ma_lock_mode_to_string (l->mode) != NULL);
      g_assert (l->kind[sizeof l->kind - 1] == '\0');
    }
  /* the whole input as one line: must parse or fail cleanly with a message */
  if (!ma_lock_parse_line ((const char *) data, size, &lock, &error))
    g_assert (error != NULL && error->message != NULL);
  return 0;
}
