/* validate-report.c — what validation produces and reads, shared by its halves: the report
 * (checks, their status and causes, the verdict, its JSON) and the options of the probes. */
#include "validate-report.h"

#include "json.h"

/* ---- report ---- */

struct _MaReport
{
  GPtrArray *checks; /* MaCheck* */
};

static void
check_free (MaCheck *check)
{
  g_free (check->name);
  g_free (check->detail);
  g_free (check->caused_by);
  g_free (check);
}

MaReport *
ma_report_new (void)
{
  MaReport *self = g_new0 (MaReport, 1);

  self->checks = g_ptr_array_new_with_free_func ((GDestroyNotify) check_free);
  return self;
}

void
ma_report_free (MaReport *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->checks);
  g_free (self);
}

MaCheck *
ma_report_add (MaReport *self, const char *name, MaCheckStatus status, gint64 started,
               const char *format, ...)
{
  MaCheck *check = g_new0 (MaCheck, 1);
  va_list args;

  check->name = g_strdup (name);
  check->status = status;
  va_start (args, format);
  check->detail = g_strdup_vprintf (format, args);
  va_end (args);
  check->duration = (double) (g_get_monotonic_time () - started) / G_USEC_PER_SEC;
  g_ptr_array_add (self->checks, check);
  return check;
}

const MaCheck *
ma_report_find (MaReport *self, const char *name)
{
  for (guint i = 0; i < self->checks->len; i++)
    {
      const MaCheck *check = self->checks->pdata[i];
      if (g_strcmp0 (check->name, name) == 0)
        return check;
    }
  return NULL;
}

gboolean
ma_report_failed (MaReport *self, const char *name)
{
  const MaCheck *check = ma_report_find (self, name);

  return check != NULL && check->status == MA_CHECK_FAIL;
}

GPtrArray *
ma_report_get_checks (MaReport *self)
{
  return self->checks;
}

MaCheckStatus
ma_report_verdict (MaReport *self)
{
  MaCheckStatus worst = MA_CHECK_PASS;

  for (guint i = 0; i < self->checks->len; i++)
    {
      const MaCheck *check = self->checks->pdata[i];
      worst = MAX (worst, check->status);
    }
  return worst;
}

const char *
ma_check_status_to_string (MaCheckStatus status)
{
  switch (status)
    {
    case MA_CHECK_PASS:
      return "pass";
    case MA_CHECK_WARN:
      return "warn";
    case MA_CHECK_FAIL:
      return "fail";
    default:
      return "fail";
    }
}

static JsonObject *
check_to_json (const MaCheck *check)
{
  JsonObject *obj = json_object_new ();

  json_object_set_string_member (obj, "name", check->name);
  json_object_set_string_member (obj, "status", ma_check_status_to_string (check->status));
  json_object_set_string_member (obj, "detail", check->detail);
  json_object_set_double_member (obj, "duration", (double) (gint64) (check->duration * 1e6 + 0.5) / 1e6);
  if (check->caused_by != NULL)
    json_object_set_string_member (obj, "caused-by", check->caused_by);
  return obj;
}

JsonNode *
ma_report_to_json (MaReport *self)
{
  JsonObject *obj = json_object_new ();
  JsonArray *checks = json_array_new ();
  JsonArray *failed = json_array_new ();
  JsonArray *warned = json_array_new ();

  /* order: root-cause failures, explained failures, warnings, passes */
  for (guint pass = 0; pass < 4; pass++)
    for (guint i = 0; i < self->checks->len; i++)
      {
        const MaCheck *check = self->checks->pdata[i];
        guint rank = check->status == MA_CHECK_FAIL ? (check->caused_by == NULL ? 0 : 1)
                     : check->status == MA_CHECK_WARN ? 2
                                                      : 3;
        if (rank != pass)
          continue;
        json_array_add_object_element (checks, check_to_json (check));
        if (check->status == MA_CHECK_FAIL)
          json_array_add_string_element (failed, check->name);
        else if (check->status == MA_CHECK_WARN)
          json_array_add_string_element (warned, check->name);
      }
  json_object_set_string_member (obj, "verdict",
                                 ma_check_status_to_string (ma_report_verdict (self)));
  json_object_set_array_member (obj, "failed", failed);
  json_object_set_array_member (obj, "warned", warned);
  json_object_set_array_member (obj, "checks", checks);
  return ma_json_new_object_node (obj);
}

/* ---- options ---- */

MaValidateOptions *
ma_validate_options_new (MaConfig *config, GError **error)
{
  g_autoptr(MaValidateOptions) self = g_new0 (MaValidateOptions, 1);
  gint64 gateway, dns, tcp, write, thaw, drift;

  self->quiesced = g_new0 (gint, 1);
  if (config == NULL)
    {
      self->gateway_timeout_ms = MA_VALIDATE_GATEWAY_TIMEOUT_MS;
      self->dns_timeout_ms = MA_VALIDATE_DNS_TIMEOUT_MS;
      self->tcp_timeout_ms = MA_VALIDATE_TCP_TIMEOUT_MS;
      self->write_timeout_ms = MA_VALIDATE_WRITE_TIMEOUT_MS;
      self->thaw_wait_seconds = MA_VALIDATE_THAW_WAIT_SECONDS;
      self->rtc_max_drift = MA_VALIDATE_RTC_MAX_DRIFT_SECONDS;
      self->write_probe = TRUE;
      return g_steal_pointer (&self);
    }
  if (!ma_config_get_int (config, "validate", "gateway-timeout-ms",
                          MA_VALIDATE_GATEWAY_TIMEOUT_MS, 10, 60000, &gateway, error)
      || !ma_config_get_int (config, "validate", "dns-timeout-ms", MA_VALIDATE_DNS_TIMEOUT_MS, 10,
                             60000, &dns, error)
      || !ma_config_get_int (config, "validate", "tcp-timeout-ms", MA_VALIDATE_TCP_TIMEOUT_MS, 10,
                             60000, &tcp, error)
      || !ma_config_get_int (config, "validate", "write-timeout-ms", MA_VALIDATE_WRITE_TIMEOUT_MS,
                             10, 600000, &write, error)
      || !ma_config_get_int (config, "validate", "thaw-wait-seconds",
                             MA_VALIDATE_THAW_WAIT_SECONDS, 0, 3600, &thaw, error)
      || !ma_config_get_int (config, "validate", "rtc-max-drift-seconds",
                             MA_VALIDATE_RTC_MAX_DRIFT_SECONDS, 1, 86400, &drift, error)
      || !ma_config_get_bool (config, "validate", "write-probe", TRUE, &self->write_probe, error))
    return NULL;
  self->gateway_timeout_ms = (guint) gateway;
  self->dns_timeout_ms = (guint) dns;
  self->tcp_timeout_ms = (guint) tcp;
  self->write_timeout_ms = (guint) write;
  self->thaw_wait_seconds = (guint) thaw;
  self->rtc_max_drift = (double) drift;
  self->dns_names = ma_config_get_strv (config, "validate", "dns-names");
  self->tcp_endpoints = ma_config_get_strv (config, "validate", "tcp-endpoints");
  return g_steal_pointer (&self);
}

void
ma_validate_options_free (MaValidateOptions *self)
{
  if (self == NULL)
    return;
  g_strfreev (self->dns_names);
  g_strfreev (self->tcp_endpoints);
  g_free (self->quiesced);
  g_free (self);
}
