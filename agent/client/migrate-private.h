/* migrate-private.h — what the parts of `migctl migrate` share: the migration's state and
 * the helpers of migrate.c; migrate-converge.c and migrate-freeze.c own the rest. */
#pragma once

#include <json-glib/json-glib.h>

#include "client.h"
#include "converge.h"
#include "migrate-options.h"
#include "timeline.h"
#include "virt.h"

G_BEGIN_DECLS

/* Deadlines and periods, named (seconds unless said otherwise). */
#define MA_MIGRATE_AGENT_TIMEOUT_S 20      /* the agent's answer to one command */
#define MA_MIGRATE_PREPARE_TIMEOUT_S 120   /* prepare runs blockers and plugin checks */
#define MA_MIGRATE_TICK_MS 200             /* job statistics are read, the lease renewed */
#define MA_MIGRATE_STATS_POLL_MS 50        /* the stats thread looks for work */
#define MA_MIGRATE_FREEZE_LEAD_MS 1500     /* freeze when the first pass has this long left */
#define MA_MIGRATE_RESUMED_WAIT_S 10       /* the agent's own RESUMED before `resumed` is sent */
#define MA_MIGRATE_ABORT_WAIT_S 120        /* an aborted job must end within this */
#define MA_MIGRATE_QGA_TIMEOUT_S 30
#define MA_MIGRATE_THAW_RETRY_MS 1000     /* a thaw qemu-ga did not take is asked again */
#define MA_MIGRATE_QEMU_DEFAULT_DOWNTIME_MS 300ULL /* what the switch-over returns to */
#define MA_MIGRATE_DIRTY_RATE_SECONDS 0.5  /* the guest's own measurement at the start */

/* One sample of libvirt's job statistics. */
typedef struct
{
  gboolean valid;
  gint64 wall_us;
  unsigned long long remaining, rate, iteration, downtime, bps;
} JobSample;

typedef struct
{
  const char *src_uri;
  MaMigrateOptions opt;

  /* connections */
  virConnectPtr src, dst;
  virDomainPtr dom;     /* on the source */
  virDomainPtr dst_dom; /* on the destination, once it runs there */
  MaClient *agent;      /* the agent where the guest runs now */
  char uuid[VIR_UUID_STRING_BUFLEN];

  /* what was done, for the undo */
  gboolean quiesced, frozen, freeze_in_flight, freeze_attempted;
  gint64 quiesced_at, frozen_at, next_renew_us;
  gint64 last_event_seq;
  gint64 guest_offset_us; /* the guest's clock minus the host's, estimated at the connect */

  /* the migration thread and friends */
  GThread *migrate_thread, *freeze_thread;
  gint migrate_done, freeze_done;
  int migrate_rc, freeze_rc;
  gboolean migrate_conn_lost; /* the migration's own connection was lost when it failed */
  char *migrate_error, *freeze_error;
  gint64 migration_started, migration_ended, freeze_started;
  guint64 iteration;
  JobSample last_sample;
  /* --freeze holds the switch-over (a 1 ms downtime limit keeps pre-copy iterating) until
   * the filesystems are frozen, then restores the limit so that the migration completes */
  gint holding;
  gint clamping; /* the first pass is ending: the bandwidth is clamped until the freeze */
  gboolean downtime_known, clamp_applied; /* stats thread only */
  unsigned long long downtime_applied, downtime_wanted;
  unsigned long speed_wanted;
  GThread *stats_thread;
  GAsyncQueue *samples; /* JobSample*, from the stats thread */

  /* signals */
  gint interrupted; /* the signal number */
  gboolean abort_sent;

  /* the convergence controller and what it did */
  MaConverge *converge;
  GPtrArray *throttled; /* class names the agent throttled for this migration */
  gboolean converge_aborted, suspended;

  MaTimeline *timeline;
  JsonObject *result; /* the --json document */

  struct _MigrateGuard *guard; /* --freeze: undoes the hold and the freeze if migctl dies */
} Migration;

/* migrate.c */
void migrate_say (Migration *m, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
void migrate_step (Migration *m, const char *who, const char *what, const char *detail);
void migrate_progress_end (void);
JsonNode *migrate_agent_call (Migration *m, const char *command, JsonObject *args,
                              guint timeout_s, GError **error);
JsonObject *migrate_args_operation (Migration *m);
void migrate_blockers_explain (Migration *m, JsonNode *report);
void migrate_abort_job (Migration *m, const char *why);

/* migrate-converge.c: the controller's actions through the agent */
void migrate_converge_from_the_guest (Migration *m);
void migrate_converge_tick (Migration *m, const JobSample *s);
void migrate_converge_renew (Migration *m);
void migrate_converge_release (Migration *m, const char *where);

/* migrate-freeze.c: the late freeze, the switch-over hold and their undo */
void migrate_apply_downtime (Migration *m, virDomainPtr dom); /* stats thread */
void migrate_release_hold (Migration *m, const char *why);
void migrate_freeze_if_due (Migration *m);
void migrate_freeze_check (Migration *m);
void migrate_freeze_settle (Migration *m);
void migrate_restore_limits (Migration *m);
void migrate_thaw_filesystems (Migration *m, virDomainPtr dom, const char *where);

G_END_DECLS
