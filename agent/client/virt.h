/* virt.h — libvirt glue for migctl: connections whose events run on GLib's main loop, domain
 * lookup with errors a user can act on, the agent's channel as a transport, qemu-ga via libvirt. */
#pragma once

#include <libvirt/libvirt.h>

#include "client.h"

G_BEGIN_DECLS

#define MA_VIRT_AGENT_CHANNEL "org.migration_agent.0"
#define MA_VIRT_KEEPALIVE_INTERVAL_S 5 /* a silent daemon is declared lost after about 20 s */
#define MA_VIRT_KEEPALIVE_COUNT 3

G_DEFINE_AUTOPTR_CLEANUP_FUNC (virConnect, virConnectClose)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (virDomain, virDomainFree)

/* Once per process: libvirt's event loop becomes GLib's default main context. */
void ma_virt_init (void);

/* Open a libvirt connection (uri NULL: libvirt's default), with keepalive for long work; its
 * loss is noticed by ma_virt_connection_lost (). Errors are MIGCTL_EXIT_CONNECTION. */
virConnectPtr ma_virt_open (const char *uri, gboolean keepalive, GError **error);
gboolean ma_virt_connection_lost (virConnectPtr conn);

/* The domain NAME (or UUID): MIGCTL_EXIT_NO_DOMAIN. */
virDomainPtr ma_virt_lookup (virConnectPtr conn, const char *name, GError **error);
/* The same, and running: MIGCTL_EXIT_DOMAIN_NOT_RUNNING. */
virDomainPtr ma_virt_lookup_running (virConnectPtr conn, const char *name, GError **error);

/* The agent's channel of a running domain as a client transport, non-blocking on the main
 * loop. MIGCTL_EXIT_DOMAIN_NOT_RUNNING, MIGCTL_EXIT_NO_CHANNEL (the message holds the <channel> XML to add),
 * MIGCTL_EXIT_CHANNEL_BUSY (another client holds it; force takes it over). */
MaTransport *ma_virt_open_agent_channel (virDomainPtr dom, gboolean force, GError **error);

/* Connect, resynchronise (sync-delimited, repeated every attempt_ms: bytes written before the
 * guest opened its port are lost) and return a client; MIGCTL_EXIT_AGENT_SILENT when nothing
 * answers within timeout_ms. first_command (NULL for none) rides on the sync: see
 * ma_client_set_pipelined. */
MaClient *ma_virt_agent_connect (virDomainPtr dom, gboolean force, guint timeout_ms,
                                 const char *first_command, JsonObject *first_args,
                                 GError **error);

/* qemu-ga through libvirt: a command's reply text (JSON), or NULL with error set. */
char *ma_virt_qga_command (virDomainPtr dom, const char *json, int timeout_s, GError **error);

/* libvirt's last error as a GError of this domain and code, prefixed with what failed. */
void ma_virt_set_error (GError **error, int code, const char *what);

/* Run the main context until *flag is TRUE, the deadline (monotonic µs; -1 none) passes or the
 * connection is lost. TRUE when *flag became TRUE. */
gboolean ma_virt_wait_flag (virConnectPtr conn, const gboolean *flag, gint64 deadline);

G_END_DECLS
