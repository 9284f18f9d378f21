/* migctl-libvirt.c — the entry point of migctl's libvirt module: the agent of a domain by name
 * and `migrate`. Built only with -Dlibvirt; the guest package never carries it. */
#include "buildconfig.h"

#include <gmodule.h>

#include "migctl-libvirt.h"
#include "migrate-guard.h"
#include "migrate.h"
#include "virt.h"

static MaClient *
libvirt_agent_connect (const char *uri, const char *domain, gboolean force, guint timeout_ms,
                       const char *first_command, JsonObject *first_args, GError **error)
{
  g_autoptr(virConnect) conn = ma_virt_open (uri, FALSE, error);
  g_autoptr(virDomain) dom = NULL;

  if (conn == NULL)
    return NULL;
  /* whether it runs is asked only when the channel cannot be opened */
  dom = ma_virt_lookup (conn, domain, error);
  if (dom == NULL)
    return NULL;
  /* the transport keeps its own reference on the connection */
  return ma_virt_agent_connect (dom, force, timeout_ms, first_command, first_args, error);
}

static const MigctlLibvirtModule module = {
  .version = MA_VERSION,
  .agent_connect = libvirt_agent_connect,
  .migrate = ma_migrate_main,
  .migrate_guard = ma_migrate_guard_main,
};

G_MODULE_EXPORT const MigctlLibvirtModule *migctl_libvirt_module (void);

G_MODULE_EXPORT const MigctlLibvirtModule *
migctl_libvirt_module (void)
{
  return &module;
}
