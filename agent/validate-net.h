/* validate-net.h — the network half of validation: links, MACs, MTUs, addresses and routes
 * against the snapshot, gateway probes (ARP, neighbour solicitation), DNS, TCP; and `announce`. */
#pragma once

#include <json-glib/json-glib.h>

#include "validate.h"

G_BEGIN_DECLS

/* Compare the "network" parts of two snapshots. */
void ma_validate_net_diff (JsonObject *before, JsonObject *now, MaReport *report);
/* Live, bounded probes against the network as it is now (blocking: a worker thread). */
void ma_validate_net_probe (JsonObject *before, JsonObject *now,
                            const MaValidateOptions *options, MaReport *report);

/* Probe one IPv4 gateway with ARP requests on a raw AF_PACKET socket, or an IPv6 one with
 * neighbour solicitations; *lladdr gets the answering MAC. FALSE on no answer in time. */
gboolean ma_net_probe_gateway (const char *ifname, const char *gateway, guint timeout_ms,
                               char **lladdr, GError **error);

/* Gratuitous ARP for every IPv4 address and an unsolicited neighbour advertisement for every
 * IPv6 address on each up, non-loopback interface with a MAC. Returns
 * [{"interface", "address", "sent": bool, "error"?}]. */
JsonNode *ma_net_announce (GError **error);

G_END_DECLS
