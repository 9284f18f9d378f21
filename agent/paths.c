/* paths.c — every filesystem location the agent reads or writes, each overridable
 * through an environment variable so tests can point the agent at fixtures. */
#include "paths.h"

static const char *
env_or (const char *var, const char *def)
{
  const char *value = g_getenv (var);

  return value != NULL && value[0] != '\0' ? value : def;
}

const char *
ma_path_procfs (void)
{
  return env_or ("MA_PROCFS", "/proc");
}

const char *
ma_path_sysfs (void)
{
  return env_or ("MA_SYSFS", "/sys");
}

const char *
ma_path_rundir (void)
{
  return env_or ("MA_RUNDIR", "/run");
}

const char *
ma_path_etcdir (void)
{
  return env_or ("MA_ETCDIR", "/etc");
}

const char *
ma_path_cgroupfs (void)
{
  return env_or ("MA_CGROUPFS", "/sys/fs/cgroup");
}

const char *
ma_path_devdir (void)
{
  return env_or ("MA_DEVDIR", "/dev");
}

const char *
ma_path_udevdir (void)
{
  return env_or ("MA_UDEVDIR", "/run/udev");
}

char *
ma_path_build (const char *root, const char *first, ...)
{
  va_list args;
  g_autoptr(GPtrArray) parts = g_ptr_array_new ();
  const char *part;

  g_ptr_array_add (parts, (gpointer) root);
  va_start (args, first);
  for (part = first; part != NULL; part = va_arg (args, const char *))
    g_ptr_array_add (parts, (gpointer) part);
  va_end (args);
  g_ptr_array_add (parts, NULL);
  return g_build_filenamev ((char **) parts->pdata);
}
