/* validate-net.h — the network half of validation: links, MACs, MTUs, addresses and routes
 * against the snapshot, gateway probes (ARP, neighbour solicitation), DNS, TCP; and `announce`. */
#pragma once

#include <json-glib/json-glib.h>

#include "validate-report.h"

G_BEGIN_DECLS

/* How long a validation waits for IPv6 duplicate address detection of the snapshot's addresses
 * to settle (on its worker thread) before judging them: with the kernel's defaults (one probe,
 * 1 s apart, after a random delay of up to 1 s) DAD takes at most about 2 s. */
#define MA_VALIDATE_DAD_WAIT_MS 3000

/* Compare the "network" parts of two snapshots. */
void ma_validate_net_diff (JsonObject *before, JsonObject *now, MaReport *report);
/* Live, bounded probes against the network as it is now (blocking: a worker thread). First
 * waits, up to MA_VALIDATE_DAD_WAIT_MS, for tentative addresses to settle and judges their
 * interfaces' `addresses:IF` again (replacing the diff's "still in duplicate address
 * detection" warning with a pass, a DAD failure, or a "still tentative" failure). */
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
