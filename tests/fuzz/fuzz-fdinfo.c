/* fuzz-fdinfo.c — fuzz target for the /proc/PID/fdinfo/N parser (pos, flags, mnt_id, ino
 * and the lock: lines) on arbitrary bytes. */
#include <stdint.h>

#include "proclocks.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_auto(MaFdinfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  if (ma_fdinfo_parse ((const char *) data, size, &info, &error))
    {
      (void) ma_fdinfo_is_writer (&info);
      for (guint i = 0; info.locks != NULL && i < info.locks->len; i++)
        g_assert (ma_lock_type_to_string (g_array_index (info.locks, MaLock, i).type) != NULL);
    }
  else
    g_assert (error != NULL);
  return 0;
}
