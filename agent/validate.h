/* validate.h — post-migration validation: compares the guest now with the stored snapshot
 * (network, storage, clock), runs bounded live probes, and reports checks and a verdict. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "agent.h"

G_BEGIN_DECLS

#define MA_VALIDATION_FILE "validation.json"

/* Defaults of the [validate] configuration group. */
#define MA_VALIDATE_GATEWAY_TIMEOUT_MS 1000
#define MA_VALIDATE_DNS_TIMEOUT_MS 2000
#define MA_VALIDATE_TCP_TIMEOUT_MS 2000
#define MA_VALIDATE_WRITE_TIMEOUT_MS 5000
#define MA_VALIDATE_THAW_WAIT_SECONDS 30
#define MA_VALIDATE_RTC_MAX_DRIFT_SECONDS 2

typedef enum
{
  MA_CHECK_PASS,
  MA_CHECK_WARN,
  MA_CHECK_FAIL,
} MaCheckStatus;

typedef struct
{
  char *name;      /* "link:eth0", "mount:/var", "clock:rtc"… */
  MaCheckStatus status;
  char *detail;
  char *caused_by; /* the name of the failed check that explains this one, or NULL */
  double duration; /* seconds */
} MaCheck;

typedef struct _MaReport MaReport;

MaReport *ma_report_new (void);
void ma_report_free (MaReport *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaReport, ma_report_free)

/* started: g_get_monotonic_time () when the check began (for its duration). */
MaCheck *ma_report_add (MaReport *self, const char *name, MaCheckStatus status, gint64 started,
                        const char *format, ...) G_GNUC_PRINTF (5, 6);
const MaCheck *ma_report_find (MaReport *self, const char *name);
/* Whether a check of that name exists and failed. */
gboolean ma_report_failed (MaReport *self, const char *name);
GPtrArray *ma_report_get_checks (MaReport *self); /* MaCheck*, in order */
MaCheckStatus ma_report_verdict (MaReport *self);
const char *ma_check_status_to_string (MaCheckStatus status);
/* {"verdict", "checks": [{"name", "status", "detail", "duration", "caused-by"?}], "failed": [...],
 * "warned": [...]}: causes before the checks they explain. */
JsonNode *ma_report_to_json (MaReport *self);

/* Everything the live probes need, read from [validate] and the agent's state. */
typedef struct
{
  guint gateway_timeout_ms;
  guint dns_timeout_ms;
  guint tcp_timeout_ms;
  guint write_timeout_ms;
  guint thaw_wait_seconds;
  double rtc_max_drift;
  gboolean write_probe;
  char **dns_names;     /* names that must resolve */
  char **tcp_endpoints; /* "host:port" that must accept a connection */
  gint *quiesced;       /* atomic: the lifecycle says applications/filesystems are quiesced */
} MaValidateOptions;

MaValidateOptions *ma_validate_options_new (MaConfig *config, GError **error);
void ma_validate_options_free (MaValidateOptions *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaValidateOptions, ma_validate_options_free)

/* The pure comparison of two snapshots (no probes): what the unit tests exercise. */
void ma_validate_diff (JsonObject *before, JsonObject *now, MaReport *report);
void ma_validate_clock (JsonObject *before, JsonObject *now, const MaValidateOptions *options,
                        MaReport *report);

/* A whole validation, blocking (a worker thread): collect now, diff, probe. */
MaReport *ma_validate_run (JsonObject *before, const MaValidateOptions *options);

/* ---- in the agent ---- */

typedef struct _MaValidator MaValidator;
typedef void (*MaValidationDoneFunc) (JsonNode *report, gpointer user_data);

MaValidator *ma_validator_new (MaAgent *agent);
/* Not while a validation runs (the daemon keeps its validator for its whole life). */
void ma_validator_free (MaValidator *self);
/* Start a validation unless one is running; done (may be NULL) is called with the report
 * JSON when it completes (the running one's, when one was running). The report is also
 * saved as STATE_DIR/validation.json and sent as VALIDATION_COMPLETED. trigger is "command"
 * or "resume"; resume is the resume number or 0. */
void ma_validator_start (MaValidator *self, const char *trigger, guint64 resume,
                         const char *operation, MaValidationDoneFunc done, gpointer user_data,
                         GDestroyNotify notify);
gboolean ma_validator_is_running (MaValidator *self);

G_END_DECLS
