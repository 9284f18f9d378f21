/* validate.h — post-migration validation: compares the guest now with the stored snapshot
 * (network, storage, clock), runs bounded live probes, and reports checks and a verdict. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "agent.h"
#include "validate-report.h"

G_BEGIN_DECLS

#define MA_VALIDATION_FILE "validation.json"

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
