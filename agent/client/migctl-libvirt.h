/* migctl-libvirt.h — what migctl finds in its libvirt module (migctl-libvirt.so, shipped by
 * the host package): the agent of a domain by name, and `migrate`. */
#pragma once

#include "client.h"

G_BEGIN_DECLS

#define MIGCTL_LIBVIRT_MODULE_NAME "migctl-libvirt"
#define MIGCTL_LIBVIRT_ENTRY "migctl_libvirt_module"

typedef struct
{
  const char *version; /* MA_VERSION of the module: migctl refuses another version */
  /* A synchronised client of the agent of a running domain (errors: MIGCTL_ERROR). */
  /* first_command (args may be NULL): a request that only reads, sent with the sync
   * (ma_client_set_pipelined); NULL for none. */
  MaClient *(*agent_connect) (const char *uri, const char *domain, gboolean force,
                              guint timeout_ms, const char *first_command,
                              JsonObject *first_args, GError **error);
  /* `migctl [--connect URI] migrate ...`: argv[0] is "migrate"; returns the exit status. */
  int (*migrate) (const char *uri, int argc, char **argv);
  /* `migctl migrate-guard ...`: the child migrate --freeze starts (migrate-guard.h). */
  int (*migrate_guard) (int argc, char **argv);
} MigctlLibvirtModule;

typedef const MigctlLibvirtModule *(*MigctlLibvirtEntry) (void);

G_END_DECLS
