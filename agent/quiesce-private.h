/* quiesce-private.h — the quiesce engine's own state and the calls between its parts:
 * quiesce.c (operations, commands), -batch, -journal, -lease (and thaw retry), -plugins. */
#pragma once

#include "agent.h"
#include "quiesce-batch.h"
#include "quiesce.h"

G_BEGIN_DECLS

typedef struct _MaOperation MaOperation;

/* Oneshot plugins whose thaw failed: they may still hold their application, so they are
 * thawed again (after a backoff, or at once by `thaw`) until it succeeds; the journal keeps
 * them for a restarted agent meanwhile. */
typedef struct
{
  char *operation;
  GPtrArray *names;  /* plugin names, still to thaw */
  char *failures;    /* why the last attempt failed */
  guint attempts;    /* retries run so far */
  guint timer_id;    /* the next automatic retry, or 0 */
  gint64 due;        /* monotonic µs of that retry */
  MaBatch *batch;    /* the retry running, or NULL */
  char *reason;      /* of the running retry: "retry" (the timer) or "thaw" (the command) */
  GPtrArray *calls;  /* MaCall*: thaw commands waiting for the running retry */
} MaThawRetry;

struct _MaQuiesce
{
  MaAgent *agent;
  MaPluginSet *set;
  GHashTable *last;     /* plugin name → JsonObject {phase → result} */
  MaOperation *op;      /* the operation holding plugins, or NULL */
  GHashTable *history;  /* operation id → JsonObject {"state", "error"} */
  GQueue *history_ids;
  gboolean replaying;
  gboolean testing;
  gboolean shutting_down;
  gboolean holding; /* ma_agent_hold() taken for shutdown */
  guint checks;     /* check batches running */
  MaThawRetry *retry; /* oneshot plugins whose thaw failed, or NULL */
  double retry_delays[MA_QUIESCE_THAW_RETRY_MAX_DELAYS]; /* seconds; the last one repeats */
  guint n_retry_delays;
};

typedef enum
{
  OP_QUIESCING,
  OP_QUIESCED,
  OP_RENEWING, /* quiesced; the plugins' renew phase runs, the lease clock is stopped */
  OP_RELEASING,
} MaOpState;

typedef struct
{
  MaPlugin *plugin;
  MaPluginProcess *session;
  gboolean attempted; /* quiesce started: thaw it on release */
  gboolean quiesced;
} MaOpNode;

struct _MaOperation
{
  MaQuiesce *q;
  char *id;
  MaPluginSet *set;
  GPtrArray *nodes; /* MaOpNode*, quiesce order */
  guint lease_seconds;
  gint64 expires_at; /* monotonic µs */
  guint lease_id;
  MaOpState state;
  GPtrArray *quiesce_calls; /* MaCall* */
  GPtrArray *thaw_calls;    /* MaCall* */
  GPtrArray *renew_calls;   /* MaCall*: the renew waiting for its plugins */
  GPtrArray *journaled;     /* names of oneshot plugins whose quiesce started */
  char *failure;            /* why the quiesce failed */
  gboolean failure_timeout;
  guint renew_lease;        /* the lease the running renew asked for */
  gint64 renew_started;     /* monotonic µs: the new lease counts from here */
  char *renew_failure;      /* why the renew failed: the operation was released for it */
  gboolean renew_failure_timeout;
  gboolean release_requested;
  char *release_reason;
  MaState release_state;
  double quiesce_seconds;
  JsonArray *quiesce_results;
  JsonArray *thaw_results;
  JsonArray *renew_results; /* the last renew's phase results */
  double renew_seconds;
};

/* quiesce.c */
MaBatch *quiesce_batch_new (MaQuiesce *q, MaPluginSet *set, MaPluginPhase phase,
                            const char *operation, guint lease_seconds);
void quiesce_enter_state (MaQuiesce *q, MaState state, const char *operation, const char *reason);
void quiesce_record_last (MaQuiesce *q, MaPhaseResult *result);
void quiesce_emit_plugin_failed (MaQuiesce *q, MaPhaseResult *result, const char *operation);
void quiesce_emit_thaw_not_run (MaQuiesce *q, const char *name, const char *operation,
                                const char *detail);
MaPluginSet *quiesce_reload (MaQuiesce *q);
void quiesce_remember (MaQuiesce *q, const char *id, const char *state, const char *error);
JsonArray *quiesce_op_names (MaOperation *op, gboolean only_quiesced);
JsonNode *quiesce_op_summary (MaOperation *op, gboolean already);
void quiesce_answer_calls (GPtrArray *calls, JsonNode *ret, const GError *error);
void quiesce_shutdown_done (MaQuiesce *q);
void quiesce_operation_release (MaOperation *op, const char *reason, MaState state);
gboolean quiesce_get_lease (JsonObject *args, gint64 *out, GError **error);
GPtrArray *quiesce_select_plugins (MaPluginSet *set, char **names, GError **error);

/* quiesce-journal.c */
/* The journal file: {"operation", "plugins": [names], "thaw-failed"?}. load: FALSE with a
 * G_FILE_ERROR when it cannot be read, another error when it is not a journal; a journal
 * without "operation" names the operation "unknown". */
gboolean ma_quiesce_journal_save (const char *path, const char *operation, GPtrArray *plugin_names,
                                  gboolean thaw_failed, GError **error);
gboolean ma_quiesce_journal_load (const char *path, char **operation, char ***plugin_names,
                                  GError **error);
char *quiesce_journal_path (MaQuiesce *q);
void quiesce_journal_write_names (MaQuiesce *q, const char *operation, GPtrArray *plugin_names,
                                  gboolean thaw_failed);
void quiesce_journal_write (MaOperation *op);
void quiesce_journal_remove (MaQuiesce *q);
gboolean quiesce_replay_journal (gpointer user_data);

/* quiesce-lease.c */
/* [quiesce] thaw-retry-seconds: up to MA_QUIESCE_THAW_RETRY_MAX_DELAYS delays into delays;
 * returns how many (0 when text is empty, or with error when a value is out of range). */
guint ma_quiesce_retry_delays_parse (char **text, double *delays, GError **error);
/* The delay before retry number attempts (from 0): the last delay repeats. */
double ma_quiesce_retry_delay (const double *delays, guint n_delays, guint attempts);
double quiesce_op_expires_in (MaOperation *op);
void quiesce_lease_start_from (MaOperation *op, gint64 since);
void quiesce_lease_start (MaOperation *op);
void quiesce_thaw_retry_free (MaThawRetry *retry);
double quiesce_thaw_retry_next_in (MaQuiesce *q);
char *quiesce_thaw_retry_names (MaThawRetry *retry);
void quiesce_thaw_retry_begin (MaQuiesce *q, const char *operation, GPtrArray *failed,
                               const char *failures);
void quiesce_thaw_retry_run (MaQuiesce *q, const char *reason);
GPtrArray *quiesce_thaw_failures (MaBatch *batch, GString *failures);
void quiesce_thaw_retry_configure (MaQuiesce *q);

/* quiesce-plugins.c */
void quiesce_cmd_check (MaCall *call, gpointer user_data);
void quiesce_cmd_plugins (MaCall *call, gpointer user_data);
void quiesce_cmd_plugin_test (MaCall *call, gpointer user_data);

G_END_DECLS
