/* validate-report.h — what validation produces and reads, shared by its halves: the report
 * (checks, their status and causes, the verdict, its JSON) and the options of the probes. */
#pragma once

#include <json-glib/json-glib.h>

#include "config.h"

G_BEGIN_DECLS

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

G_END_DECLS
