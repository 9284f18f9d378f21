/* error.c — the agent's single GError domain.
 * Every code maps to one protocol error class (agent/PROTOCOL.md, "Errors"). */
#include "error.h"

G_DEFINE_QUARK (migration-agent-error-quark, ma_error)

const char *
ma_error_class (const GError *error)
{
  if (error == NULL || error->domain != MA_ERROR)
    return "GenericError";

  switch ((MaError) error->code)
    {
    case MA_ERROR_COMMAND_NOT_FOUND:
      return "CommandNotFound";
    case MA_ERROR_BUSY:
      return "Busy";
    case MA_ERROR_TIMEOUT:
      return "Timeout";
    case MA_ERROR_NOT_FOUND:
      return "NotFound";
    case MA_ERROR_PERMISSION:
      return "PermissionDenied";
    case MA_ERROR_PLUGIN_FAILED:
      return "PluginFailed";
    case MA_ERROR_UNSUPPORTED:
      return "Unsupported";
    case MA_ERROR_GENERIC:
    case MA_ERROR_INVALID_ARGUMENT:
    case MA_ERROR_TOO_LARGE:
    default:
      return "GenericError";
    }
}

MaError
ma_error_from_class (const char *klass)
{
  static const struct
  {
    const char *klass;
    MaError code;
  } map[] = {
    { "CommandNotFound", MA_ERROR_COMMAND_NOT_FOUND },
    { "Busy", MA_ERROR_BUSY },
    { "Timeout", MA_ERROR_TIMEOUT },
    { "NotFound", MA_ERROR_NOT_FOUND },
    { "PermissionDenied", MA_ERROR_PERMISSION },
    { "PluginFailed", MA_ERROR_PLUGIN_FAILED },
    { "Unsupported", MA_ERROR_UNSUPPORTED },
  };

  for (guint i = 0; i < G_N_ELEMENTS (map); i++)
    if (g_strcmp0 (klass, map[i].klass) == 0)
      return map[i].code;
  return MA_ERROR_GENERIC;
}
