/* migrate-freeze.c — the late freeze of `migctl migrate`: frozen when the first pass ends,
 * the switch-over held until then, and every way back to a thawed guest and its limits. */
#include "migrate-private.h"

#include <libvirt/virterror.h>

#include "json.h"
#include "migrate-guard.h"

/* Holding the switch-over: QEMU switches over when what is left fits in bandwidth × downtime
 * limit; 1 ms at 1 MiB/s is under one page, so pre-copy iterates while the guest dirties any
 * page at all. The 1 ms limit holds from the migration's start, the bandwidth clamp from when
 * the first pass is ending; both end once frozen. */
#define MA_MIGRATE_HOLD_DOWNTIME_MS 1ULL
#define MA_MIGRATE_HOLD_SPEED_MIB 1UL

/* ---------------------------------------------------------------- qemu-ga through libvirt */

/* What qemu-ga says of the freeze: "frozen", "thawed", or NULL when it does not answer (it
 * may be busy running its fsfreeze hook). */
static char *
qga_freeze_status (virDomainPtr dom)
{
  g_autofree char *reply = ma_virt_qga_command (dom, "{\"execute\":\"guest-fsfreeze-status\"}",
                                                MA_MIGRATE_QGA_TIMEOUT_S, NULL);

  if (reply == NULL)
    return NULL;
  return g_strdup (strstr (reply, "\"frozen\"") != NULL ? "frozen" : "thawed");
}
/* Thaw the filesystems of the guest on `dom` once a freeze was ever asked for: frozen, in
 * flight, or failed. A freeze that failed because the guest switched over still runs in its
 * qemu-ga, which freezes once its hook is done: while qemu-ga does not answer, the thaw is
 * asked again (it comes after the freeze in qemu-ga's queue), within the freeze timeout plus
 * qemu-ga's own. Never leave a half-frozen guest. */
void
migrate_thaw_filesystems (Migration *m, virDomainPtr dom, const char *where)
{
  g_autofree char *status = NULL;
  gint64 deadline;
  int n;

  if (!m->freeze_attempted || dom == NULL)
    return;
  if (!m->frozen && !m->freeze_in_flight)
    {
      status = qga_freeze_status (dom);
      if (g_strcmp0 (status, "thawed") == 0)
        return;
    }
  deadline = g_get_monotonic_time ()
             + (gint64) ((m->opt.freeze_timeout_s + MA_MIGRATE_QGA_TIMEOUT_S) * G_USEC_PER_SEC);
  while ((n = virDomainFSThaw (dom, NULL, 0, 0)) < 0 && virDomainIsActive (dom) == 1
         && g_get_monotonic_time () < deadline)
    g_usleep (MA_MIGRATE_THAW_RETRY_MS * 1000);
  if (n < 0)
    {
      const char *msg = virGetLastErrorMessage ();
      migrate_say (m, "migctl: warning: thawing the filesystems on the %s failed: %s; the agent's freeze "
           "watchdog thaws them", where, msg);
      migrate_step (m, "host", "thaw failed", msg);
      return;
    }
  if (m->frozen)
    ma_timeline_phase (m->timeline, "frozen", m->frozen_at, g_get_real_time ());
  migrate_say (m, "thawed %d filesystem(s) on the %s%s", n, where,
       m->frozen ? "" : " (a freeze had been asked for)");
  if (m->frozen)
    migrate_say (m, "frozen window: %.3f s", (double) (g_get_real_time () - m->frozen_at) / G_USEC_PER_SEC);
  m->frozen = FALSE;
  migrate_guard_frozen (m->guard, FALSE);
  migrate_step (m, "host", "thawed", where);
}
static gpointer
freeze_thread_run (gpointer data)
{
  Migration *m = data;
  g_autoptr(virConnect) conn = virConnectOpen (m->src_uri);
  g_autoptr(virDomain) dom = conn != NULL ? virDomainLookupByUUIDString (conn, m->uuid) : NULL;
  int rc = dom != NULL ? virDomainFSFreeze (dom, NULL, 0, 0) : -1;

  if (rc < 0)
    m->freeze_error = g_strdup (virGetLastErrorMessage ());
  m->freeze_rc = rc;
  g_atomic_int_set (&m->freeze_done, 1);
  g_main_context_wakeup (NULL);
  return NULL;
}
/* Tell the guard whether the switch-over's limits are held now (what it restores). */
static void
guard_limits (Migration *m)
{
  gboolean held = m->clamp_applied
                  || (m->downtime_known && m->downtime_applied == MA_MIGRATE_HOLD_DOWNTIME_MS
                      && m->downtime_wanted != MA_MIGRATE_HOLD_DOWNTIME_MS);

  migrate_guard_limits (m->guard, held, m->downtime_wanted, m->speed_wanted);
}
/* Apply the downtime limit the migration should have now (retried each tick: it can only be
 * set once libvirt's job exists). */
void
migrate_apply_downtime (Migration *m, virDomainPtr dom)
{
  gboolean holding = g_atomic_int_get (&m->holding);
  unsigned long long want = holding ? MA_MIGRATE_HOLD_DOWNTIME_MS : m->downtime_wanted;

  gboolean clamp = holding && g_atomic_int_get (&m->clamping);

  if (clamp != m->clamp_applied
      && virDomainMigrateSetMaxSpeed (dom, clamp ? MA_MIGRATE_HOLD_SPEED_MIB : m->speed_wanted,
                                      0) == 0)
    m->clamp_applied = clamp;
  if ((!holding && !m->downtime_known && m->opt.downtime_limit_ms == 0)
      || (want == m->downtime_applied && m->downtime_known))
    {
      guard_limits (m);
      return;
    }
  if (virDomainMigrateSetMaxDowntime (dom, want, 0) == 0)
    {
      m->downtime_applied = want;
      m->downtime_known = TRUE;
    }
  guard_limits (m);
}
void
migrate_release_hold (Migration *m, const char *why)
{
  g_autofree char *detail = NULL;

  if (!g_atomic_int_get (&m->holding))
    return;
  g_atomic_int_set (&m->holding, FALSE);
  detail = g_strdup_printf ("%s; downtime limit back to %llu ms, bandwidth to %lu MiB/s", why,
                            m->downtime_wanted, m->speed_wanted);
  migrate_step (m, "host", "switch-over released", detail);
}
/* The late freeze: when the first pass is about to end (what it has left takes at most
 * MA_MIGRATE_FREEZE_LEAD_MS at the current bandwidth) or has ended (libvirt's iteration 2),
 * while the switch-over is held: the frozen window is only the end of the migration. */
void
migrate_freeze_if_due (Migration *m)
{
  const JobSample *s = &m->last_sample;
  unsigned long long bps = MAX (s->bps, (unsigned long long) m->opt.bandwidth_mib << 20);
  gboolean first_pass_ending = s->valid && s->iteration == 1 && bps > 0
                               && s->remaining * 1000 <= bps * MA_MIGRATE_FREEZE_LEAD_MS;

  if (!m->opt.freeze || m->frozen || m->freeze_in_flight || m->opt.freeze_retries < 0
      || (m->iteration < 2 && !first_pass_ending) || g_atomic_int_get (&m->migrate_done))
    return;
  g_atomic_int_set (&m->clamping, TRUE);
  g_atomic_int_set (&m->holding, TRUE);
  m->freeze_attempted = TRUE;
  m->freeze_in_flight = TRUE;
  m->freeze_started = g_get_monotonic_time ();
  g_atomic_int_set (&m->freeze_done, 0);
  migrate_guard_frozen (m->guard, TRUE);
  migrate_step (m, "host", "freeze", m->iteration >= 2 ? "guest-fsfreeze-freeze (first pass copied)"
                                               : "guest-fsfreeze-freeze (first pass ending)");
  m->freeze_thread = g_thread_new ("freeze", freeze_thread_run, m);
}
void
migrate_freeze_check (Migration *m)
{
  if (!m->freeze_in_flight)
    return;
  if (g_atomic_int_get (&m->freeze_done))
    {
      g_thread_join (g_steal_pointer (&m->freeze_thread));
      m->freeze_in_flight = FALSE;
      migrate_progress_end ();
      if (m->freeze_rc >= 0 && m->freeze_started > 0)
        {
          m->frozen = TRUE;
          m->frozen_at = g_get_real_time ();
          migrate_say (m, "froze %d filesystem(s) in %.3f s", m->freeze_rc,
               (double) (g_get_monotonic_time () - m->freeze_started) / G_USEC_PER_SEC);
          migrate_step (m, "host", "frozen", NULL);
          migrate_release_hold (m, "frozen");
        }
      else if (m->freeze_rc >= 0)
        {
          /* a freeze that outlived its timeout finished late: undo it, maybe retry */
          m->frozen = TRUE;
          migrate_thaw_filesystems (m, m->dom, "source");
        }
      else
        {
          m->opt.freeze_retries--;
          migrate_say (m, "migctl: warning: the freeze failed: %s; %s",
               m->freeze_error != NULL ? m->freeze_error : "?",
               m->opt.freeze_retries >= 0 ? "trying again" : "going on unfrozen");
          migrate_step (m, "host", "freeze failed", m->freeze_error);
          if (m->opt.freeze_retries < 0)
            migrate_release_hold (m, "the freeze failed");
        }
      g_clear_pointer (&m->freeze_error, g_free);
      return;
    }
  if (m->freeze_started > 0
      && g_get_monotonic_time () - m->freeze_started > (gint64) (m->opt.freeze_timeout_s * G_USEC_PER_SEC))
    {
      g_autoptr(JsonNode) report = NULL;

      migrate_progress_end ();
      migrate_say (m, "migctl: the freeze did not finish within %.0f s (--freeze-timeout): what holds it, "
           "as the agent sees it:", m->opt.freeze_timeout_s);
      migrate_step (m, "host", "freeze timeout", NULL);
      report = migrate_agent_call (m, "blockers", NULL, MA_MIGRATE_AGENT_TIMEOUT_S, NULL);
      migrate_blockers_explain (m, report);
      m->freeze_started = 0; /* late completion is undone in freeze_check */
      m->opt.freeze_retries--;
      migrate_say (m, "%s", m->opt.freeze_retries >= 0 ? "the freeze is retried once this one ends"
                                               : "going on unfrozen (--freeze-retries exhausted)");
      if (m->opt.freeze_retries < 0)
        migrate_release_hold (m, "the freeze timed out");
    }
}
/* Wait for a freeze thread still running before the undo; bounded by libvirt's own timeout. */
void
migrate_freeze_settle (Migration *m)
{
  if (m->freeze_thread == NULL)
    return;
  while (!g_atomic_int_get (&m->freeze_done) && !ma_virt_connection_lost (m->src))
    g_main_context_iteration (NULL, TRUE);
  if (g_atomic_int_get (&m->freeze_done))
    {
      m->freeze_started = 1; /* counts as done: the thaw below undoes it */
      migrate_freeze_check (m);
    }
}
/* A migration that ended while the switch-over was held must not leave its limits to the
 * next migration of this domain (libvirt keeps the bandwidth, QEMU the downtime limit). */
void
migrate_restore_limits (Migration *m)
{
  if (m->clamp_applied && virDomainMigrateSetMaxSpeed (m->dom, m->speed_wanted, 0) == 0)
    m->clamp_applied = FALSE;
  if (m->downtime_known && m->downtime_applied != m->downtime_wanted && m->downtime_wanted > 0
      && virDomainMigrateSetMaxDowntime (m->dom, m->downtime_wanted, 0) == 0)
    m->downtime_applied = m->downtime_wanted;
  guard_limits (m);
}
