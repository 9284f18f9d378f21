/* migrate.c — `migctl migrate`: preflight → quiesce (lease renewed) → migrate (job statistics;
 * the late freeze in migrate-freeze.c, the controller's actions in migrate-converge.c) → thaw
 * and release on the destination → RESUMED and validation → timeline. Every state records
 * what it did; every exit path undoes it where the guest then runs. */
#include "buildconfig.h"

#include "migrate.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "json.h"
#include "migctl-error.h"
#include "migctl-output.h"
#include "migrate-private.h"

#include "migrate-guard.h"
#include "virt.h"

#include <libvirt/virterror.h>

static Migration *the_migration; /* for the libvirt event callbacks */

/* ---------------------------------------------------------------- output */

void
migrate_say (Migration *m, const char *fmt, ...)
{
  g_autofree char *text = NULL;
  va_list ap;

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (m->opt.json ? stderr : stdout, "%s\n", text);
  fflush (m->opt.json ? stderr : stdout);
}

void
migrate_step (Migration *m, const char *who, const char *what, const char *detail)
{
  ma_timeline_add (m->timeline, g_get_real_time (), who, what, detail);
}

static void
progress_line (Migration *m, guint64 iteration, guint64 remaining, guint64 rate, guint64 downtime)
{
  if (!isatty (STDERR_FILENO))
    return;
  fprintf (stderr, "\r  iteration %" G_GUINT64_FORMAT ", remaining %.1f MiB, dirty %.1f MiB/s, "
           "expected downtime %" G_GUINT64_FORMAT " ms   ",
           iteration, (double) remaining / 1048576.0, (double) rate / 1048576.0, downtime);
  fflush (stderr);
}

void
migrate_progress_end (void)
{
  if (isatty (STDERR_FILENO))
    fputs ("\n", stderr);
}

/* ---------------------------------------------------------------- the agent */

JsonNode *
migrate_agent_call (Migration *m, const char *command, JsonObject *args, guint timeout_s, GError **error)
{
  if (m->agent == NULL)
    {
      g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_AGENT_SILENT, "no agent connection");
      return NULL;
    }
  ma_client_set_timeout (m->agent, timeout_s * 1000);
  return ma_client_execute (m->agent, command, args, error);
}

JsonObject *
migrate_args_operation (Migration *m)
{
  JsonObject *args = json_object_new ();

  json_object_set_string_member (args, "operation", m->opt.operation);
  return args;
}

/* The agent's journal after seq (a new reference), or NULL when it cannot be read. */
static JsonArray *
agent_events_after (Migration *m, gint64 seq)
{
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;
  JsonArray *events = NULL;

  json_object_set_int_member (args, "after", MAX (0, seq));
  ret = migrate_agent_call (m, "events", args, MA_MIGRATE_AGENT_TIMEOUT_S, NULL);
  if (ret == NULL || !JSON_NODE_HOLDS_OBJECT (ret)
      || !ma_json_get_array (json_node_get_object (ret), "events", &events, NULL) || !events)
    return NULL;
  return json_array_ref (events);
}

/* An event's name, or NULL when it is not an event. */
static const char *
event_name (JsonNode *ev)
{
  const char *name = NULL;

  if (JSON_NODE_HOLDS_OBJECT (ev))
    ma_json_get_string (json_node_get_object (ev), "event", &name, NULL);
  return name;
}

/* The agent's events after last_event_seq, into the timeline (who: the side). */
static void
agent_collect_events (Migration *m, const char *who)
{
  g_autoptr(JsonArray) events = agent_events_after (m, m->last_event_seq);

  for (guint i = 0; events != NULL && i < json_array_get_length (events); i++)
    {
      JsonNode *ev = json_array_get_element (events, i);
      gint64 seq = 0;
      if (JSON_NODE_HOLDS_OBJECT (ev)
          && ma_json_get_int (json_node_get_object (ev), "seq", &seq, NULL))
        m->last_event_seq = MAX (m->last_event_seq, seq);
      ma_timeline_add_event (m->timeline, who, ev, m->guest_offset_us);
    }
}

/* Release the applications where the guest runs now (no error is fatal: the lease is the
 * safety net, and the failure is said). */
static void
agent_release (Migration *m, const char *where)
{
  g_autoptr(JsonObject) args = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;

  if (!m->quiesced)
    return;
  args = migrate_args_operation (m);
  ret = migrate_agent_call (m, "thaw", args, MA_MIGRATE_PREPARE_TIMEOUT_S, &error);
  if (ret == NULL)
    {
      migrate_say (m, "migctl: warning: releasing the applications on the %s failed: %s; the agent "
           "releases them when the %d s lease ends", where, error->message, m->opt.lease_s);
      migrate_step (m, "host", "release failed", error->message);
      return;
    }
  m->quiesced = FALSE;
  ma_timeline_phase (m->timeline, "quiesced", m->quiesced_at, g_get_real_time ());
  migrate_step (m, "host", "released", where);
  migrate_say (m, "released the applications on the %s (quiesced %.2f s)", where,
       (double) (g_get_real_time () - m->quiesced_at) / G_USEC_PER_SEC);
}



/* ---------------------------------------------------------------- threads */

static gpointer
migrate_thread_run (gpointer data)
{
  Migration *m = data;
  virTypedParameterPtr params = NULL;
  int nparams = 0, maxparams = 0;
  unsigned int flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_ABORT_ON_ERROR;
  g_autoptr(virConnect) conn = virConnectOpen (m->src_uri);
  g_autoptr(virDomain) dom = NULL;
  int rc = -1;

  if (m->opt.p2p)
    flags |= VIR_MIGRATE_PEER2PEER;
  if (m->opt.unsafe)
    flags |= VIR_MIGRATE_UNSAFE;
  if (m->opt.copy_storage_all)
    flags |= VIR_MIGRATE_NON_SHARED_DISK;
  if (m->opt.persistent)
    flags |= VIR_MIGRATE_PERSIST_DEST;
  if (m->opt.undefinesource)
    flags |= VIR_MIGRATE_UNDEFINE_SOURCE;
  if (m->opt.postcopy)
    flags |= VIR_MIGRATE_POSTCOPY;
  if (m->opt.migrateuri != NULL)
    virTypedParamsAddString (&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_URI, m->opt.migrateuri);
  if (m->opt.listen_address != NULL)
    virTypedParamsAddString (&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_LISTEN_ADDRESS,
                             m->opt.listen_address);
  if (m->opt.bandwidth_mib > 0)
    virTypedParamsAddULLong (&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_BANDWIDTH,
                             (unsigned long long) m->opt.bandwidth_mib);
  if (conn != NULL)
    dom = virDomainLookupByUUIDString (conn, m->uuid);
  if (dom != NULL && m->opt.p2p)
    rc = virDomainMigrateToURI3 (dom, m->opt.dest_uri, params, (unsigned int) nparams, flags);
  else if (dom != NULL)
    {
      g_autoptr(virConnect) dconn = virConnectOpen (m->opt.dest_uri);
      if (dconn != NULL)
        {
          virDomainPtr ddom = virDomainMigrate3 (dom, dconn, params, (unsigned int) nparams, flags);
          rc = ddom != NULL ? 0 : -1;
          if (ddom != NULL)
            virDomainFree (ddom);
        }
    }
  if (rc < 0)
    {
      m->migrate_error = g_strdup (virGetLastErrorMessage ());
      /* this thread's own connection saw the daemon go first: the main loop's may not yet */
      m->migrate_conn_lost = ma_virt_connection_lost (conn);
    }
  m->migrate_rc = rc;
  virTypedParamsFree (params, nparams);
  g_atomic_int_set (&m->migrate_done, 1);
  g_main_context_wakeup (NULL);
  return NULL;
}

static gpointer
abort_thread_run (gpointer data)
{
  virDomainPtr dom = data;

  virDomainAbortJob (dom);
  virDomainFree (dom);
  return NULL;
}

/* libvirt can hang: the abort runs on a thread of its own, and the loop goes on. */
void
migrate_abort_job (Migration *m, const char *why)
{
  if (m->abort_sent || m->migrate_thread == NULL || g_atomic_int_get (&m->migrate_done))
    return;
  m->abort_sent = TRUE;
  migrate_say (m, "aborting the migration (%s)", why);
  migrate_step (m, "host", "abort", why);
  virDomainRef (m->dom);
  g_thread_unref (g_thread_new ("abort", abort_thread_run, m->dom));
}

static gboolean
on_signal (gpointer data)
{
  Migration *m = data;

  if (m->interrupted == 0)
    m->interrupted = SIGINT;
  g_main_context_wakeup (NULL);
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigterm (gpointer data)
{
  Migration *m = data;

  m->interrupted = SIGTERM;
  g_main_context_wakeup (NULL);
  return G_SOURCE_CONTINUE;
}

static void
on_migration_iteration (virConnectPtr conn, virDomainPtr dom, int iteration, void *opaque)
{
  Migration *m = the_migration;
  g_autofree char *detail = g_strdup_printf ("iteration %d", iteration);

  if (m == NULL)
    return;
  m->iteration = MAX (m->iteration, (guint64) iteration);
  migrate_step (m, "libvirt", "MIGRATION_ITERATION", detail);
  g_main_context_wakeup (NULL);
}

/* ---------------------------------------------------------------- the steps */

void
migrate_blockers_explain (Migration *m, JsonNode *report)
{
  MaFormatter format = ma_out_find_formatter ("blockers");

  if (report == NULL || !JSON_NODE_HOLDS_OBJECT (report))
    return;
  if (m->opt.json)
    json_object_set_member (m->result, "blockers", json_node_copy (report));
  else if (format == NULL)
    ma_out_print_json (report, TRUE);
  else
    format (report);
}

/* The guest's HOST_CONNECTED for this connection happened between connect_start and
 * connect_end on the host's clock: outside that window, the difference is the clocks'. */
static void
estimate_guest_clock (Migration *m, gint64 connect_start, gint64 connect_end)
{
  g_autoptr(JsonArray) events = agent_events_after (m, m->last_event_seq - 4);
  gint64 guest = -1;
  g_autofree char *detail = NULL;

  for (guint i = 0; events != NULL && i < json_array_get_length (events); i++)
    if (g_strcmp0 (event_name (json_array_get_element (events, i)), "HOST_CONNECTED") == 0)
      guest = ma_timeline_event_time (json_array_get_element (events, i));
  if (guest < 0)
    return;
  if (guest < connect_start)
    m->guest_offset_us = guest - connect_start;
  else if (guest > connect_end)
    m->guest_offset_us = guest - connect_end;
  detail = g_strdup_printf ("guest clock %+.3f s against the host's (corrected in the timeline)",
                            (double) m->guest_offset_us / G_USEC_PER_SEC);
  migrate_step (m, "host", "clocks", detail);
}

/* qemu-ga's ping runs beside the agent's prepare: a libvirt call that waits for the guest, in
 * a thread of its own while the main loop carries the agent's channel. */
typedef struct
{
  virDomainPtr dom;
  char *reply;
  GError *error;
  gboolean done;
} QgaPing;

static gpointer
qga_ping_thread_run (gpointer data)
{
  QgaPing *p = data;

  p->reply = ma_virt_qga_command (p->dom, "{\"execute\":\"guest-ping\"}",
                                  MA_MIGRATE_QGA_TIMEOUT_S, &p->error);
  g_atomic_int_set (&p->done, TRUE);
  g_main_context_wakeup (NULL);
  return NULL;
}

/* Waits for the ping (the main loop runs meanwhile); TRUE when qemu-ga answered. */
static gboolean
qga_ping_finish (Migration *m, GThread *thread, QgaPing *p, GError **error)
{
  ma_virt_wait_flag (m->src, &p->done, -1);
  g_thread_join (thread);
  if (p->reply == NULL)
    {
      g_propagate_error (error, g_steal_pointer (&p->error));
      return FALSE;
    }
  g_clear_pointer (&p->reply, g_free);
  return TRUE;
}

static int
preflight (Migration *m)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) info = NULL, prepared = NULL, status = NULL;
  g_autoptr(JsonObject) args = NULL;
  g_autoptr(GError) qga_error = NULL;
  QgaPing qga = { 0 };
  GThread *qga_thread;
  gboolean ready = FALSE, qga_ok;
  JsonObject *obj;

  gint64 connect_start = g_get_real_time (), connect_end;

  /* the status rides on the sync: one round trip less */
  m->agent = ma_virt_agent_connect (m->dom, FALSE, MA_MIGRATE_AGENT_TIMEOUT_S * 1000, "status",
                                    NULL, &error);
  connect_end = g_get_real_time ();
  if (m->agent == NULL)
    {
      if (error->domain == MIGCTL_ERROR
          && (error->code == MIGCTL_EXIT_NO_CHANNEL || error->code == MIGCTL_EXIT_AGENT_SILENT))
        {
          if (!m->opt.no_agent)
            {
              g_printerr ("migctl: %s\nmigctl: refusing to migrate '%s' without its agent "
                          "(--no-agent migrates it plainly)\n", error->message, m->opt.domain_name);
              return MIGCTL_EXIT_NO_AGENT;
            }
          migrate_say (m, "migctl: warning: %s; migrating without the agent (--no-agent): no quiesce, no "
               "validation", error->message);
          migrate_step (m, "host", "no agent", error->message);
          return MIGCTL_EXIT_OK;
        }
      g_printerr ("migctl: %s\n", error->message);
      return error->domain == MIGCTL_ERROR ? error->code : MIGCTL_EXIT_USAGE;
    }
  if (m->opt.no_agent)
    migrate_say (m, "migctl: note: the agent answers; --no-agent ignored");
  /* this migration's events are those after now; the guest greeted this connection with
   * HOST_CONNECTED, whose timestamp places the guest's clock against the host's */
  status = migrate_agent_call (m, "status", NULL, MA_MIGRATE_AGENT_TIMEOUT_S, NULL);
  if (status != NULL && JSON_NODE_HOLDS_OBJECT (status))
    ma_json_get_int (json_node_get_object (status), "last-event-seq", &m->last_event_seq, NULL);
  estimate_guest_clock (m, connect_start, connect_end);
  info = migrate_agent_call (m, "info", NULL, MA_MIGRATE_AGENT_TIMEOUT_S, &error);
  args = migrate_args_operation (m);
  qga.dom = m->dom;
  qga_thread = g_thread_new ("qga-ping", qga_ping_thread_run, &qga);
  if (info != NULL)
    prepared = migrate_agent_call (m, "prepare", args, MA_MIGRATE_PREPARE_TIMEOUT_S, &error);
  qga_ok = qga_ping_finish (m, qga_thread, &qga, &qga_error);
  if (prepared == NULL || !JSON_NODE_HOLDS_OBJECT (prepared))
    {
      g_printerr ("migctl: preflight: %s\n", error != NULL ? error->message : "bad answer");
      return error != NULL && error->domain == MIGCTL_ERROR ? error->code
                                                            : MIGCTL_EXIT_ERROR_REPLY;
    }
  obj = json_node_get_object (prepared);
  ma_json_get_bool (obj, "ready", &ready, NULL);
  migrate_step (m, "host", "prepare", ready ? "ready" : "not ready");
  if (!ready)
    {
      JsonObject *blockers = NULL;
      const char *verdict = NULL;
      g_auto(GStrv) reasons = NULL;

      ma_json_get_strv (obj, "not-ready", &reasons, NULL);
      if (ma_json_get_object (obj, "blockers", &blockers, NULL) && blockers != NULL)
        ma_json_get_string (blockers, "verdict", &verdict, NULL);
      g_autofree char *joined = reasons != NULL ? g_strjoinv ("; ", reasons) : g_strdup ("");
      migrate_say (m, "preflight: not ready: %s", joined);
      if (g_strcmp0 (verdict, "blocked") == 0)
        {
          migrate_blockers_explain (m, json_object_get_member (obj, "blockers"));
          if (!m->opt.force)
            {
              g_printerr ("migctl: the agent's verdict is blocked: nothing was changed; fix "
                          "what it names, or --force to migrate anyway\n");
              return MIGCTL_EXIT_BLOCKED;
            }
          migrate_say (m, "migctl: warning: --force: migrating despite the blocked verdict");
        }
    }
  else
    migrate_say (m, "preflight: the agent is ready (operation %s)", m->opt.operation);
  if (!qga_ok)
    {
      if (m->opt.freeze)
        {
          g_printerr ("migctl: --freeze needs qemu-ga, which does not answer: %s\n",
                      qga_error->message);
          return MIGCTL_EXIT_ERROR_REPLY;
        }
      migrate_say (m, "preflight: qemu-ga does not answer (%s); no freeze is possible",
                   qga_error->message);
    }
  else
    migrate_step (m, "host", "qemu-ga ping", "ok");
  return MIGCTL_EXIT_OK;
}

static gboolean
has_enabled_plugins (Migration *m)
{
  g_autoptr(JsonNode) ret = migrate_agent_call (m, "plugins", NULL, MA_MIGRATE_AGENT_TIMEOUT_S, NULL);
  JsonArray *plugins = NULL;

  if (ret == NULL || !JSON_NODE_HOLDS_OBJECT (ret)
      || !ma_json_get_array (json_node_get_object (ret), "plugins", &plugins, NULL) || !plugins)
    return FALSE;
  return json_array_get_length (plugins) > 0;
}

static int
quiesce (Migration *m)
{
  g_autoptr(JsonObject) args = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;

  if (m->agent == NULL || m->opt.no_quiesce || (!m->opt.quiesce && !has_enabled_plugins (m)))
    return MIGCTL_EXIT_OK;
  args = migrate_args_operation (m);
  json_object_set_int_member (args, "lease_seconds", m->opt.lease_s);
  ret = migrate_agent_call (m, "quiesce", args, MA_MIGRATE_PREPARE_TIMEOUT_S, &error);
  if (ret == NULL)
    {
      /* all or nothing: a failed quiesce left nothing quiesced */
      g_printerr ("migctl: quiesce failed, nothing is quiesced: %s\n", error->message);
      return MIGCTL_EXIT_ERROR_REPLY;
    }
  m->quiesced = TRUE;
  m->quiesced_at = g_get_real_time ();
  m->next_renew_us = g_get_monotonic_time () + (gint64) m->opt.lease_s * G_USEC_PER_SEC / 3;
  migrate_step (m, "host", "quiesced", NULL);
  migrate_say (m, "quiesced the applications (lease %d s, renewed every %d s)", m->opt.lease_s,
       MAX (1, m->opt.lease_s / 3));
  return MIGCTL_EXIT_OK;
}


/* One job sample from libvirt (on the stats thread's own connection). */
static JobSample
read_job_stats (virDomainPtr dom)
{
  virTypedParameterPtr params = NULL;
  int nparams = 0, type = 0;
  unsigned long long remaining = 0, rate = 0, page = 4096, iteration = 0, downtime = 0, bps = 0;
  JobSample sample = { FALSE };

  if (virDomainGetJobStats (dom, &type, &params, &nparams, 0) < 0)
    return sample;
  if (type != VIR_DOMAIN_JOB_NONE)
    {
      virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_MEMORY_BPS, &bps);
      virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_MEMORY_REMAINING, &remaining);
      virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, &rate);
      virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE, &page);
      virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_MEMORY_ITERATION, &iteration);
      virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_DOWNTIME, &downtime);
      sample = (JobSample) { TRUE, g_get_real_time (), remaining, rate * page, iteration, downtime,
                             bps };
    }
  virTypedParamsFree (params, nparams);
  return sample;
}

/* A sample reaches the main loop: the timeline, the progress line, the controller. */
static void
take_sample (Migration *m, const JobSample *s)
{
  m->iteration = MAX (m->iteration, s->iteration);
  m->last_sample = *s;
  ma_timeline_sample (m->timeline, s->wall_us, s->remaining, s->rate, s->iteration, s->downtime);
  progress_line (m, s->iteration, s->remaining, s->rate, s->downtime);
}







static void
renew_if_due (Migration *m)
{
  g_autoptr(JsonObject) args = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;

  if ((!m->quiesced && m->throttled->len == 0) || g_get_monotonic_time () < m->next_renew_us)
    return;
  migrate_converge_renew (m);
  m->next_renew_us = g_get_monotonic_time () + (gint64) m->opt.lease_s * G_USEC_PER_SEC / 3;
  if (!m->quiesced)
    return;
  args = json_object_new ();
  json_object_set_int_member (args, "lease_seconds", m->opt.lease_s);
  ret = migrate_agent_call (m, "renew", args, MA_MIGRATE_AGENT_TIMEOUT_S, &error);
  m->next_renew_us = g_get_monotonic_time () + (gint64) m->opt.lease_s * G_USEC_PER_SEC / 3;
  if (ret == NULL)
    {
      migrate_progress_end ();
      migrate_say (m, "migctl: warning: renewing the lease failed: %s", error->message);
      migrate_step (m, "host", "renew failed", error->message);
    }
}

/* The stats thread: libvirt's job statistics every tick and the downtime limit the
 * migration should have, on a connection of its own (a statistics call can wait for the
 * migration's own job phases: the main loop never does). */
static gpointer
stats_thread_run (gpointer data)
{
  Migration *m = data;
  g_autoptr(virConnect) conn = virConnectOpen (m->src_uri);
  g_autoptr(virDomain) dom = conn != NULL ? virDomainLookupByUUIDString (conn, m->uuid) : NULL;
  gint64 next_sample = 0;

  while (dom != NULL && !g_atomic_int_get (&m->migrate_done))
    {
      migrate_apply_downtime (m, dom);
      if (g_get_monotonic_time () >= next_sample)
        {
          JobSample sample = read_job_stats (dom);
          next_sample = g_get_monotonic_time () + MA_MIGRATE_TICK_MS * 1000;
          if (sample.valid)
            {
              g_async_queue_push (m->samples, g_memdup2 (&sample, sizeof sample));
              g_main_context_wakeup (NULL);
            }
        }
      g_usleep (MA_MIGRATE_STATS_POLL_MS * 1000);
    }
  return NULL;
}

/* The source is out of reach (what says why): what the guest holds is left to its own lease
 * and freeze watchdog. */
static int
source_out_of_reach (Migration *m, const char *what)
{
  g_printerr ("migctl: %s; the guest's lease (%d s) and freeze watchdog release it\n", what,
              m->opt.lease_s);
  return MIGCTL_EXIT_CONNECTION;
}

static int
run_migration (Migration *m)
{
  g_autofree char *what = g_strdup_printf ("to %s", m->opt.dest_uri);
  gint64 next_stats = 0, abort_deadline = 0;

  {
    MaConvergePolicy policy = {
      .use_agent = g_strcmp0 (m->opt.converge, "agent") == 0 && m->agent != NULL,
      .postcopy_allowed = m->opt.postcopy,
      .suspend_after_s = m->opt.suspend_after_s,
      .progress_timeout_s = m->opt.progress_timeout_s,
      .step_wait_s = MA_CONVERGE_DEFAULT_STEP_WAIT_S,
      .max_steps = MA_CONVERGE_DEFAULT_MAX_STEPS,
    };
    m->converge = ma_converge_new (&policy, (double) g_get_monotonic_time () / G_USEC_PER_SEC);
  }
  /* a guest that already dirties more than the bandwidth can carry is throttled before the
   * first pass: that pass is not sent in vain, and its service runs at full speed sooner */
  migrate_converge_from_the_guest (m);
  migrate_say (m, "migrating %s to %s%s", m->opt.domain_name, m->opt.dest_uri, m->opt.p2p ? " (peer to peer)" : "");
  m->migration_started = g_get_real_time ();
  migrate_step (m, "host", "migration started", what);
  /* the limit the switch-over returns to after a hold: the user's, else QEMU's default (what
   * QEMU reports now may be a value a previous migration left) */
  m->downtime_wanted = m->opt.downtime_limit_ms > 0 ? (unsigned long long) m->opt.downtime_limit_ms
                                                    : MA_MIGRATE_QEMU_DEFAULT_DOWNTIME_MS;
  m->speed_wanted = (unsigned long) m->opt.bandwidth_mib;
  if (m->opt.freeze && m->speed_wanted == 0
      && virDomainMigrateGetMaxSpeed (m->dom, &m->speed_wanted, 0) < 0)
    m->speed_wanted = 8796093022207UL; /* libvirt's "unlimited" */
  /* --freeze: the switch-over is held from the start (the downtime limit only matters once
   * the first pass is done), so that a pass that ends faster than the statistics are read (a
   * guest of zero pages) never switches over before its freeze */
  if (m->opt.freeze && m->opt.freeze_retries >= 0)
    g_atomic_int_set (&m->holding, TRUE);
  m->samples = g_async_queue_new_full (g_free);
  m->migrate_thread = g_thread_new ("migrate", migrate_thread_run, m);
  m->stats_thread = g_thread_new ("stats", stats_thread_run, m);
  while (!g_atomic_int_get (&m->migrate_done))
    {
      gint64 now = g_get_monotonic_time ();

      if (m->interrupted != 0)
        {
          migrate_abort_job (m, m->interrupted == SIGTERM ? "SIGTERM" : "SIGINT");
          if (abort_deadline == 0)
            abort_deadline = now + MA_MIGRATE_ABORT_WAIT_S * G_USEC_PER_SEC;
        }
      if (ma_virt_connection_lost (m->src))
        break;
      {
        JobSample *sample;
        while ((sample = g_async_queue_try_pop (m->samples)) != NULL)
          {
            take_sample (m, sample);
            /* not while the freeze holds the switch-over with the bandwidth clamped */
            if (!g_atomic_int_get (&m->holding) || !g_atomic_int_get (&m->clamping))
              migrate_converge_tick (m, sample);
            g_free (sample);
          }
      }
      if (now >= next_stats)
        {
          if (m->throttled->len > 0 && m->next_renew_us == 0)
            m->next_renew_us = now + (gint64) m->opt.lease_s * G_USEC_PER_SEC / 3;
          renew_if_due (m);
          next_stats = now + MA_MIGRATE_TICK_MS * 1000;
        }
      migrate_freeze_if_due (m);
      migrate_freeze_check (m);
      if (abort_deadline != 0 && now > abort_deadline)
        break;
      /* the migration thread sets migrate_done and wakes the context: no tick to wait for */
      ma_virt_wait_flag (m->src, &m->migrate_done, MIN (next_stats, now + 100 * 1000));
    }
  migrate_progress_end ();
  m->migration_ended = g_get_real_time ();
  if (g_atomic_int_get (&m->migrate_done))
    g_thread_join (g_steal_pointer (&m->stats_thread));
  if (!g_atomic_int_get (&m->migrate_done))
    {
      /* the connection is gone or the abort never returned: the thread is left behind; the
       * guest's lease and freeze watchdog release it */
      return source_out_of_reach (m, ma_virt_connection_lost (m->src)
                                       ? "the libvirt connection to the source was lost"
                                       : "the aborted migration did not end");
    }
  g_thread_join (g_steal_pointer (&m->migrate_thread));
  ma_timeline_phase (m->timeline, "migration", m->migration_started, m->migration_ended);
  if (m->migrate_rc < 0 && (m->migrate_conn_lost || ma_virt_connection_lost (m->src)))
    {
      g_autofree char *lost = g_strdup_printf ("the libvirt connection to the source was lost "
                                               "(%s)", m->migrate_error);

      migrate_step (m, "host", "migration failed", m->migrate_error);
      return source_out_of_reach (m, lost);
    }
  if (m->migrate_rc < 0)
    {
      migrate_step (m, "host", "migration failed", m->migrate_error);
      if (m->converge_aborted)
        migrate_say (m, "the migration did not converge and was aborted");
      return m->interrupted != 0 ? MIGCTL_EXIT_INTERRUPTED : MIGCTL_EXIT_MIGRATION_FAILED;
    }
  migrate_step (m, "host", "migration completed", NULL);
  migrate_say (m, "migration completed in %.2f s",
       (double) (m->migration_ended - m->migration_started) / G_USEC_PER_SEC);
  return MIGCTL_EXIT_OK;
}

/* The guest still runs on the source: thaw and release there. */
static void
undo_on_source (Migration *m)
{
  migrate_restore_limits (m);
  migrate_freeze_settle (m);
  if (m->suspended && virDomainResume (m->dom) == 0)
    migrate_say (m, "resumed the paused guest on the source");
  migrate_thaw_filesystems (m, m->dom, "source");
  agent_release (m, "source");
  migrate_converge_release (m, "source");
}

static void
print_validation (Migration *m, JsonNode *report)
{
  MaFormatter format = ma_out_find_formatter ("validate");

  if (report == NULL)
    return;
  if (m->result != NULL)
    json_object_set_member (m->result, "validation", json_node_copy (report));
  if (!m->opt.json && format != NULL)
    format (report);
}

/* libvirt's figures of the completed migration, from the destination. */
static void
record_completed_job (Migration *m)
{
  virTypedParameterPtr params = NULL;
  int nparams = 0, type = 0;
  unsigned long long downtime = 0, elapsed = 0, data = 0;
  g_autofree char *detail = NULL;

  if (virDomainGetJobStats (m->dst_dom, &type, &params, &nparams,
                            VIR_DOMAIN_JOB_STATS_COMPLETED
                              | VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED) < 0)
    return;
  virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_DOWNTIME, &downtime);
  virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_TIME_ELAPSED, &elapsed);
  virTypedParamsGetULLong (params, nparams, VIR_DOMAIN_JOB_DATA_PROCESSED, &data);
  virTypedParamsFree (params, nparams);
  detail = g_strdup_printf ("libvirt: %llu ms in all, downtime %llu ms, %.1f MiB sent", elapsed,
                            downtime, (double) data / 1048576.0);
  migrate_say (m, "%s", detail);
  migrate_step (m, "libvirt", "job completed", detail);
  json_object_set_int_member (m->result, "downtime-ms", (gint64) downtime);
  json_object_set_int_member (m->result, "libvirt-total-ms", (gint64) elapsed);
  json_object_set_int_member (m->result, "data-bytes", (gint64) data);
}

/* Does the agent's journal hold this event after the migration's first sequence number? */
static gboolean
journal_has_event (Migration *m, const char *wanted)
{
  g_autoptr(JsonArray) events = agent_events_after (m, m->last_event_seq);

  for (guint i = 0; events != NULL && i < json_array_get_length (events); i++)
    if (g_strcmp0 (event_name (json_array_get_element (events, i)), wanted) == 0)
      return TRUE;
  return FALSE;
}

/* On the destination: thaw, release, wait for the agent's RESUMED and its validation. */
static int
finish_on_destination (Migration *m)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) resumed = NULL;
  g_autoptr(JsonObject) args = NULL;
  JsonObject *report_obj = NULL;
  const char *verdict = NULL;
  gint64 deadline;
  gboolean seen_resumed = FALSE;

  m->dst_dom = virDomainLookupByUUIDString (m->dst, m->uuid);
  if (m->dst_dom == NULL)
    {
      g_printerr ("migctl: the migration completed but the destination does not show the "
                  "domain: %s\n", virGetLastErrorMessage ());
      return MIGCTL_EXIT_CONNECTION;
    }
  record_completed_job (m);
  migrate_freeze_settle (m);
  {
    int state = 0, reason = 0;
    /* a guest paused to finish the migration (--suspend-after) runs again */
    if (virDomainGetState (m->dst_dom, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED
        && m->suspended)
      {
        if (virDomainResume (m->dst_dom) == 0)
          migrate_say (m, "resumed the guest on the destination (it was paused to finish)");
      }
  }
  migrate_thaw_filesystems (m, m->dst_dom, "destination");
  if (m->agent == NULL)
    return MIGCTL_EXIT_OK;
  g_clear_pointer (&m->agent, ma_client_free);
  m->agent = ma_virt_agent_connect (m->dst_dom, FALSE, MA_MIGRATE_AGENT_TIMEOUT_S * 3000, NULL,
                                    NULL, &error);
  if (m->agent == NULL)
    {
      g_printerr ("migctl: the agent on the destination: %s\n", error->message);
      return error->domain == MIGCTL_ERROR ? error->code : MIGCTL_EXIT_CONNECTION;
    }
  migrate_step (m, "host", "agent reconnected", "destination");
  agent_release (m, "destination");
  migrate_converge_release (m, "destination");

  /* the agent notices the resume by itself (QEMU's announce); `resumed` only if it did not.
   * The journal holds a RESUMED that came before this connection; live events the rest. */
  deadline = g_get_monotonic_time () + MA_MIGRATE_RESUMED_WAIT_S * G_USEC_PER_SEC;
  seen_resumed = journal_has_event (m, "RESUMED");
  while (!seen_resumed && g_get_monotonic_time () < deadline)
    {
      g_autoptr(JsonNode) ev = ma_client_next_event (m->agent, 500, NULL);
      const char *name = NULL;
      if (ev != NULL && JSON_NODE_HOLDS_OBJECT (ev)
          && ma_json_get_string (json_node_get_object (ev), "event", &name, NULL))
        seen_resumed = g_strcmp0 (name, "RESUMED") == 0;
    }
  if (!seen_resumed)
    migrate_say (m, "migctl: the agent did not report a resume within %d s; telling it",
         MA_MIGRATE_RESUMED_WAIT_S);
  args = migrate_args_operation (m);
  json_object_set_boolean_member (args, "wait", TRUE);
  resumed = migrate_agent_call (m, "resumed", args, (guint) m->opt.validation_timeout_s, &error);
  agent_collect_events (m, "guest");
  if (resumed == NULL || !JSON_NODE_HOLDS_OBJECT (resumed))
    {
      g_printerr ("migctl: validation on the destination: %s\n",
                  error != NULL ? error->message : "no report");
      return MIGCTL_EXIT_VALIDATION_FAILED;
    }
  if (ma_json_get_object (json_node_get_object (resumed), "report", &report_obj, NULL)
      && report_obj != NULL)
    {
      g_autoptr(JsonNode) report = ma_json_new_object_node (json_object_ref (report_obj));
      ma_json_get_string (report_obj, "verdict", &verdict, NULL);
      migrate_say (m, "validation on the destination: %s", verdict != NULL ? verdict : "?");
      print_validation (m, report);
    }
  else
    migrate_say (m, "validation on the destination: not run (disabled in the guest)");
  if (g_strcmp0 (verdict, "fail") == 0)
    {
      g_autoptr(JsonNode) announced = migrate_agent_call (m, "announce", NULL, MA_MIGRATE_AGENT_TIMEOUT_S,
                                                  NULL);
      migrate_say (m, "the validation failed; announce %s", announced != NULL ? "sent" : "failed too");
      return MIGCTL_EXIT_VALIDATION_FAILED;
    }
  return MIGCTL_EXIT_OK;
}

/* ---------------------------------------------------------------- main */

static void
migration_clear (Migration *m)
{
  g_clear_pointer (&m->guard, migrate_guard_free);
  g_clear_pointer (&m->agent, ma_client_free);
  if (m->dst_dom != NULL)
    virDomainFree (m->dst_dom);
  if (m->dom != NULL)
    virDomainFree (m->dom);
  if (m->dst != NULL)
    virConnectClose (m->dst);
  if (m->src != NULL)
    virConnectClose (m->src);
  ma_migrate_options_clear (&m->opt);
  g_free (m->migrate_error);
  g_free (m->freeze_error);
  g_clear_pointer (&m->timeline, ma_timeline_free);
  g_clear_pointer (&m->converge, ma_converge_free);
  g_clear_pointer (&m->throttled, g_ptr_array_unref);
  g_clear_pointer (&m->samples, g_async_queue_unref);
  g_clear_pointer (&m->result, json_object_unref);
}

static void
report (Migration *m, int status)
{
  g_autoptr(GError) error = NULL;

  if (m->opt.timeline_path != NULL)
    {
      if (g_str_has_suffix (m->opt.timeline_path, ".svg"))
        {
          if (!ma_timeline_write_svg (m->timeline, m->opt.timeline_path, &error))
            g_printerr ("migctl: %s\n", error->message);
        }
      else
        {
          g_autoptr(JsonNode) tl = ma_timeline_to_json (m->timeline);
          g_autofree char *text = ma_json_to_string (tl);
          if (!g_file_set_contents (m->opt.timeline_path, text, -1, &error))
            g_printerr ("migctl: %s\n", error->message);
        }
    }
  if (m->opt.json)
    {
      json_object_set_string_member (m->result, "operation", m->opt.operation);
      json_object_set_string_member (m->result, "domain", m->opt.domain_name);
      json_object_set_int_member (m->result, "exit", status);
      json_object_set_member (m->result, "timeline", ma_timeline_to_json (m->timeline));
      g_autoptr(JsonNode) node = ma_json_new_object_node (json_object_ref (m->result));
      ma_out_print_json (node, FALSE);
    }
  else
    {
      printf ("\ntimeline (host and guest on one clock):\n");
      ma_timeline_print (m->timeline, stdout);
    }
}

static int
migrate_run (Migration *m)
{
  g_autoptr(GError) error = NULL;
  int status;

  m->src = ma_virt_open (m->src_uri, TRUE, &error);
  if (m->src == NULL)
    {
      g_printerr ("migctl: %s\n", error->message);
      return MIGCTL_EXIT_CONNECTION;
    }
  m->dom = ma_virt_lookup_running (m->src, m->opt.domain_name, &error);
  if (m->dom == NULL)
    {
      g_printerr ("migctl: %s\n", error->message);
      return error->code;
    }
  virDomainGetUUIDString (m->dom, m->uuid);
  /* the destination is reached before anything is changed */
  m->dst = ma_virt_open (m->opt.dest_uri, TRUE, &error);
  if (m->dst == NULL)
    {
      g_printerr ("migctl: the destination: %s; nothing was changed\n", error->message);
      return MIGCTL_EXIT_CONNECTION;
    }
  virConnectDomainEventRegisterAny (m->src, m->dom, VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION,
                                    VIR_DOMAIN_EVENT_CALLBACK (on_migration_iteration), NULL, NULL);
  migrate_step (m, "host", "start", m->opt.operation);

  status = preflight (m);
  if (status != MIGCTL_EXIT_OK || m->interrupted != 0)
    return status != MIGCTL_EXIT_OK ? status : MIGCTL_EXIT_INTERRUPTED;
  status = quiesce (m);
  if (status != MIGCTL_EXIT_OK)
    return status;
  if (m->interrupted != 0)
    {
      undo_on_source (m);
      return MIGCTL_EXIT_INTERRUPTED;
    }
  if (m->opt.freeze)
    {
      /* what a held switch-over or a freeze leaves in libvirt outlives a killed migctl: a
       * child of its own undoes it then (leases undo the rest in the guest) */
      m->guard = migrate_guard_spawn (m->src_uri, m->opt.dest_uri, m->uuid, &error);
      if (m->guard == NULL)
        {
          migrate_say (m, "migctl: warning: no migration guard (%s): if migctl is killed while "
                       "the switch-over is held, restore its limits by hand", error->message);
          g_clear_error (&error);
        }
    }
  status = run_migration (m);
  if (status == MIGCTL_EXIT_CONNECTION)
    return status;
  if (status != MIGCTL_EXIT_OK)
    {
      /* an abort can lose the race with the switch-over: ask where the guest runs (the
       * destination's domain exists, paused, while an incoming migration is unfinished) */
      virDomainPtr there = NULL;
      int state = VIR_DOMAIN_NOSTATE, reason = 0;
      gboolean on_destination;

      if (ma_virt_connection_lost (m->src))
        return source_out_of_reach (m, "the libvirt connection to the source was lost");
      there = virDomainLookupByUUIDString (m->dst, m->uuid);
      if (there != NULL && virDomainGetState (there, &state, &reason, 0) < 0)
        state = VIR_DOMAIN_NOSTATE;
      on_destination = state == VIR_DOMAIN_RUNNING && virDomainIsActive (m->dom) == 0;
      if (there != NULL)
        virDomainFree (there);
      if (!on_destination)
        {
          g_printerr ("migctl: the migration %s: %s\n",
                      status == MIGCTL_EXIT_INTERRUPTED ? "was interrupted" : "failed",
                      m->migrate_error != NULL ? m->migrate_error : "unknown error");
          undo_on_source (m);
          agent_collect_events (m, "guest");
          migrate_say (m, "the guest runs on the source, thawed and released");
          return status;
        }
      migrate_say (m, "the abort came too late: the guest already runs on the destination");
    }
  return finish_on_destination (m);
}

int
ma_migrate_main (const char *uri, int argc, char **argv)
{
  Migration m = { 0 };
  int status;
  guint sigint, sigterm, sighup;

  m.src_uri = uri;
  m.timeline = ma_timeline_new ();
  m.throttled = g_ptr_array_new_with_free_func (g_free);
  m.result = json_object_new ();
  ma_migrate_options_init (&m.opt);
  status = ma_migrate_options_parse (&m.opt, argc, argv);
  if (status != MIGCTL_EXIT_OK)
    {
      migration_clear (&m);
      return status;
    }
  ma_virt_init ();
  the_migration = &m;
  sigint = g_unix_signal_add (SIGINT, on_signal, &m);
  sighup = g_unix_signal_add (SIGHUP, on_signal, &m);
  sigterm = g_unix_signal_add (SIGTERM, on_sigterm, &m);
  status = migrate_run (&m);
  /* a refusal before anything was done has nothing to show but its message */
  if (m.src != NULL && m.dom != NULL && (m.migration_started != 0 || m.opt.json))
    report (&m, status);
  g_source_remove (sigint);
  g_source_remove (sighup);
  g_source_remove (sigterm);
  the_migration = NULL;
  migration_clear (&m);
  return status;
}
