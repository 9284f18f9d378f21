/* migctl-error.h — migctl's exit statuses, and the GError domain of the host side whose codes
 * are those statuses (the agent's own errors keep MA_ERROR and its protocol classes). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  MIGCTL_EXIT_OK = 0,
  MIGCTL_EXIT_ERROR_REPLY = 1,        /* the agent answered with an error */
  MIGCTL_EXIT_USAGE = 2,              /* usage, or no connection to the agent's socket */
  MIGCTL_EXIT_VALIDATION_FAILED = 3,  /* validate (or migrate's destination check) said fail */
  MIGCTL_EXIT_NO_DOMAIN = 4,          /* libvirt knows no such domain */
  MIGCTL_EXIT_DOMAIN_NOT_RUNNING = 5, /* the domain is defined but not running */
  MIGCTL_EXIT_NO_CHANNEL = 6,         /* the domain's XML has no org.migration_agent.0 channel */
  MIGCTL_EXIT_CHANNEL_BUSY = 7,       /* another client holds the channel (see --force) */
  MIGCTL_EXIT_AGENT_SILENT = 8,       /* nothing answered on the channel in time */
  MIGCTL_EXIT_CONNECTION = 9,         /* the libvirt connection failed or was lost */
  MIGCTL_EXIT_BLOCKED = 10,           /* migrate: the preflight verdict is blocked */
  MIGCTL_EXIT_MIGRATION_FAILED = 11,  /* migrate: refused or failed; the guest runs on the source */
  MIGCTL_EXIT_INTERRUPTED = 12,       /* migrate: SIGINT/SIGTERM; aborted, thawed, released */
  MIGCTL_EXIT_NO_AGENT = 13,          /* migrate: the guest has no agent (see --no-agent) */
  MIGCTL_EXIT_NO_LIBVIRT = 14,        /* this migctl has no libvirt support installed */
} MigctlExit;

#define MIGCTL_ERROR (migctl_error_quark ())
GQuark migctl_error_quark (void);

G_END_DECLS
