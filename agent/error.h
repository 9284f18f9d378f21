/* error.h — the agent's single GError domain.
 * Every code maps to one protocol error class (agent/PROTOCOL.md, "Errors"). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MA_ERROR (ma_error_quark ())

typedef enum
{
  MA_ERROR_GENERIC,           /* GenericError */
  MA_ERROR_INVALID_ARGUMENT,  /* GenericError: bad member or argument */
  MA_ERROR_TOO_LARGE,         /* GenericError: a request over the limits */
  MA_ERROR_COMMAND_NOT_FOUND, /* CommandNotFound: unknown or disabled */
  MA_ERROR_BUSY,              /* Busy: another operation is in progress */
  MA_ERROR_TIMEOUT,           /* Timeout: a deadline passed */
  MA_ERROR_NOT_FOUND,         /* NotFound: a named object does not exist */
  MA_ERROR_PERMISSION,        /* PermissionDenied */
  MA_ERROR_PLUGIN_FAILED,     /* PluginFailed: a plugin refused or crashed */
  MA_ERROR_UNSUPPORTED,       /* Unsupported: the kernel or system lacks it */
} MaError;

GQuark ma_error_quark (void);

/* The protocol class for an error: MA_ERROR codes map as above, any
 * other domain (GIOError, GFileError…) is a GenericError. */
const char *ma_error_class (const GError *error);

G_END_DECLS

G_BEGIN_DECLS
/* The inverse, for clients: a protocol class back to an MA_ERROR code. */
MaError ma_error_from_class (const char *klass);
G_END_DECLS
