/* resume.h — resume detection (NOTIFY_PEERS on virtio_net, the `resumed` command, corroborating
 * host reconnects and clock steps) and the commands resumed, validate and announce. */
#pragma once

#include "agent.h"
#include "netlink.h"

G_BEGIN_DECLS

/* QEMU announces in rounds about 100 ms apart for about half a second: one resume. */
#define MA_RESUME_COALESCE_MS 1000
/* Signals this soon after a resume belong to it (a `resumed` call after the announce). */
#define MA_RESUME_HOLDOFF_SECONDS 10

/* Corroborating signals this long before a resume are named in it. */
#define MA_RESUME_CORROBORATE_SECONDS 10
/* After a resume without NOTIFY_PEERS, wait this long for one before announcing ourselves. */
#define MA_RESUME_ANNOUNCE_WAIT_MS 2000

typedef struct _MaResume MaResume;

/* Detection without commands (the unit tests use it on its own). Reads [resume] from the
 * agent's configuration: coalesce-ms, holdoff-seconds, validate (default true),
 * announce = auto|never. */
MaResume *ma_resume_new (MaAgent *agent, GError **error);
void ma_resume_free (MaResume *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaResume, ma_resume_free)

/* The link monitor whose messages feed detection (tests hand it crafted messages). */
MaNlMonitor *ma_resume_get_monitor (MaResume *self);
/* Resumes detected so far. */
guint64 ma_resume_get_count (MaResume *self);

/* Whether signals are being coalesced into a resume right now. */
gboolean ma_resume_is_gathering (MaResume *self);

/* Corroborating signals: "host-reconnect", "clock-step". */
void ma_resume_note_signal (MaResume *self, const char *signal);

/* An MaModuleRegisterFunc: the commands resumed, validate and announce, the capabilities
 * "resume-detection" and "validation", and starts detection. An invalid [resume]
 * configuration does not stop the agent: it is logged and the module is left out. */
gboolean ma_resume_register (MaAgent *agent, GError **error);

G_END_DECLS
