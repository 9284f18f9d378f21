/* plugin-kit.h — what every shipped quiesce plugin shares: the phase names, the
 * configuration read from the environment, and both halves of the plugin protocol. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  MA_KIT_PHASE_INVALID,
  MA_KIT_PHASE_CHECK,
  MA_KIT_PHASE_QUIESCE,
  MA_KIT_PHASE_THAW,
  MA_KIT_PHASE_VALIDATE,
  MA_KIT_PHASE_RENEW, /* only for plugins that declare it in Phases= */
} MaKitPhase;

/* Longest request line a session plugin accepts. */
#define MA_KIT_MAX_LINE 65536
/* Budget used when the agent gave none (a plugin run by hand). */
#define MA_KIT_DEFAULT_BUDGET_MS 30000
/* Time kept back from a deadline to answer and clean up. */
#define MA_KIT_DEADLINE_MARGIN_MS 500

/* check, quiesce, thaw, validate, renew; "freeze" is accepted for quiesce as qemu-ga's hooks say it. */
MaKitPhase ma_kit_phase_from_string (const char *name);
const char *ma_kit_phase_to_string (MaKitPhase phase);

/* Configuration comes from the environment (the manifest's EnvironmentFile). */
const char *ma_kit_env (const char *key, const char *fallback);
/* An unset or empty key gives fallback; anything but a decimal number is an error. */
gboolean ma_kit_env_int (const char *key, gint64 fallback, gint64 *out, GError **error);
gboolean ma_kit_env_bool (const char *key, gboolean fallback, gboolean *out, GError **error);
/* A list separated by ';' (entries may contain spaces and are trimmed); never NULL,
 * empty entries dropped. */
char **ma_kit_env_list (const char *key);

/* One request: from the session's JSON line, or from argv and MA_* for oneshot plugins. */
typedef struct
{
  MaKitPhase phase;
  char *operation;
  gint64 deadline_ms; /* time allowed for this phase, in milliseconds */
  gint64 lease_seconds;
  gint64 started_us;  /* g_get_monotonic_time () when the request arrived */
} MaKitRequest;

void ma_kit_request_free (MaKitRequest *request);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaKitRequest, ma_kit_request_free)

/* Milliseconds left of the request's budget minus MA_KIT_DEADLINE_MARGIN_MS, at least min_ms. */
gint64 ma_kit_request_remaining_ms (const MaKitRequest *request, gint64 min_ms);

/* oneshot: argv[1] is the phase; the budget comes from MA_DEADLINE_MS and MA_LEASE_SECONDS. */
MaKitRequest *ma_kit_oneshot_request (int argc, char **argv, GError **error);
/* Print the {"detail": ...} line and return the exit status for ok. */
int ma_kit_oneshot_finish (gboolean ok, const char *detail);

/* session: install the SIGTERM/SIGINT/SIGHUP handlers that make a blocked read return. */
void ma_kit_session_init (void);
/* Next request; NULL without error at end of input or after a termination signal.
 * A malformed line is an error: answer it with ma_kit_session_reply and read on. */
MaKitRequest *ma_kit_session_read (GError **error);
/* One line {"status": "ok"|"fail", "detail": ...}; FALSE when stdout is gone. */
gboolean ma_kit_session_reply (gboolean ok, const char *detail);
/* TRUE once a termination signal has arrived. */
gboolean ma_kit_session_terminated (void);

/* What a session plugin does per request. self is the plugin's state; each phase returns
 * whether it succeeded and says what happened in detail. configure runs before every request
 * (settings may change between them; its failure answers that request). A phase left NULL is
 * answered "unexpected phase". */
typedef gboolean (*MaKitPhaseFunc) (gpointer self, const MaKitRequest *request, GString *detail);
typedef struct
{
  gboolean (*configure) (gpointer self, GString *detail);
  MaKitPhaseFunc check;
  MaKitPhaseFunc quiesce;
  MaKitPhaseFunc thaw;
  MaKitPhaseFunc validate;
  MaKitPhaseFunc renew;
} MaKitSession;

/* The session loop, after ma_kit_session_init: one answer per request until end of input, a
 * termination signal or a vanished agent. The caller then gives back whatever it holds. */
void ma_kit_session_run (const MaKitSession *session, gpointer self);

/* Log to stderr (the agent captures it under the plugin's name). */
void ma_kit_log (const char *format, ...) G_GNUC_PRINTF (1, 2);

G_END_DECLS
