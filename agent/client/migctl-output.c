/* migctl-output.c — human output helpers for migctl: aligned tables, colour on a TTY,
 * and the per-command formatters (one function per command that has one). */
#include "migctl-output.h"

#include <stdio.h>
#include <unistd.h>

#include "json.h"

struct _MaTable
{
  guint columns;
  GPtrArray *rows; /* GStrv */
};

static int color_mode = -1;

gboolean
ma_out_use_color (void)
{
  if (color_mode < 0)
    color_mode = isatty (STDOUT_FILENO) && g_getenv ("NO_COLOR") == NULL;
  return color_mode;
}

void
ma_out_set_color (gboolean color)
{
  color_mode = color;
}

const char *
ma_out_paint (const char *color, const char *text)
{
  static GPtrArray *keep = NULL; /* painted strings live until exit */
  const char *code = NULL;
  char *painted;

  if (!ma_out_use_color () || text == NULL)
    return text;
  if (g_strcmp0 (color, "red") == 0)
    code = "31";
  else if (g_strcmp0 (color, "green") == 0)
    code = "32";
  else if (g_strcmp0 (color, "yellow") == 0)
    code = "33";
  else if (g_strcmp0 (color, "bold") == 0)
    code = "1";
  else if (g_strcmp0 (color, "dim") == 0)
    code = "2";
  if (code == NULL)
    return text;
  if (keep == NULL)
    keep = g_ptr_array_new_with_free_func (g_free);
  painted = g_strdup_printf ("\033[%sm%s\033[0m", code, text);
  g_ptr_array_add (keep, painted);
  return painted;
}

const char *
ma_out_status (const char *status)
{
  static const char *const good[] = { "pass", "ok", "ready", "thawed", "validated", "idle", NULL };
  static const char *const warn[] = { "warn", "slow", "skipped", "expired", NULL };
  static const char *const bad[] = { "fail", "blocked", "failed", "error", NULL };

  if (status == NULL)
    return "";
  if (g_strv_contains (good, status))
    return ma_out_paint ("green", status);
  if (g_strv_contains (warn, status))
    return ma_out_paint ("yellow", status);
  if (g_strv_contains (bad, status))
    return ma_out_paint ("red", status);
  return status;
}

MaTable *
ma_table_new (guint columns, ...)
{
  MaTable *self = g_new0 (MaTable, 1);
  char **row = g_new0 (char *, columns + 1);
  va_list args;

  self->columns = columns;
  self->rows = g_ptr_array_new_with_free_func ((GDestroyNotify) g_strfreev);
  va_start (args, columns);
  for (guint i = 0; i < columns; i++)
    row[i] = g_strdup (va_arg (args, const char *));
  va_end (args);
  g_ptr_array_add (self->rows, row);
  return self;
}

void
ma_table_add (MaTable *self, ...)
{
  char **row = g_new0 (char *, self->columns + 1);
  va_list args;

  va_start (args, self);
  for (guint i = 0; i < self->columns; i++)
    {
      const char *cell = va_arg (args, const char *);
      row[i] = g_strdup (cell != NULL ? cell : "");
    }
  va_end (args);
  g_ptr_array_add (self->rows, row);
}

/* Display width, ignoring ANSI escapes. */
static gsize
cell_width (const char *s)
{
  gsize width = 0;

  for (const char *p = s; *p != '\0'; p = g_utf8_next_char (p))
    {
      if (*p == '\033')
        {
          while (*p != '\0' && *p != 'm')
            p++;
          if (*p == '\0')
            break;
          continue;
        }
      width++;
    }
  return width;
}

void
ma_table_print (MaTable *self)
{
  g_autofree gsize *widths = g_new0 (gsize, self->columns);

  for (guint r = 0; r < self->rows->len; r++)
    {
      char **row = self->rows->pdata[r];
      for (guint c = 0; c < self->columns; c++)
        widths[c] = MAX (widths[c], cell_width (row[c]));
    }
  for (guint r = 0; r < self->rows->len; r++)
    {
      char **row = self->rows->pdata[r];
      GString *line = g_string_new (NULL);
      for (guint c = 0; c < self->columns; c++)
        {
          const char *cell = r == 0 ? ma_out_paint ("bold", row[c]) : row[c];
          g_string_append (line, cell);
          if (c + 1 < self->columns)
            for (gsize pad = cell_width (row[c]); pad < widths[c] + 2; pad++)
              g_string_append_c (line, ' ');
        }
      g_strchomp (line->str);
      printf ("%s\n", line->str);
      g_string_free (line, TRUE);
    }
}

void
ma_table_free (MaTable *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->rows);
  g_free (self);
}

void
ma_out_print_json (JsonNode *node, gboolean pretty)
{
  g_autoptr(JsonGenerator) gen = NULL;
  g_autofree char *text = NULL;

  if (!pretty)
    {
      /* for machines: the agent's own generator (exact numbers, one line) */
      text = ma_json_to_string (node);
      printf ("%s\n", text);
      return;
    }
  gen = json_generator_new ();
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_root (gen, node);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
}

static const char *
str_member (JsonObject *obj, const char *member, const char *def)
{
  const char *value = def;

  if (!ma_json_get_string (obj, member, &value, NULL))
    return def;
  return value;
}

static gint64
int_member (JsonObject *obj, const char *member, gint64 def)
{
  gint64 value = def;

  if (!ma_json_get_int (obj, member, &value, NULL))
    return def;
  return value;
}

static JsonObject *
as_object (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

static void
format_ping (JsonNode *ret)
{
  printf ("%s\n", ma_out_paint ("green", "ok: the agent answers"));
}

static void
format_info (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *commands = NULL, *caps = NULL;
  g_autoptr(MaTable) table = ma_table_new (3, "COMMAND", "ENABLED", "SUMMARY");

  if (obj == NULL)
    return;
  printf ("migration-agent %s, protocol %" G_GINT64_FORMAT "\n", str_member (obj, "version", "?"),
          int_member (obj, "protocol", 0));
  if (ma_json_get_array (obj, "capabilities", &caps, NULL) && caps != NULL)
    {
      g_autoptr(GString) list = g_string_new (NULL);
      for (guint i = 0; i < json_array_get_length (caps); i++)
        {
          JsonNode *n = json_array_get_element (caps, i);
          if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
            g_string_append_printf (list, "%s%s", list->len ? ", " : "", json_node_get_string (n));
        }
      printf ("capabilities: %s\n\n", list->len ? list->str : "(core only)");
    }
  if (!ma_json_get_array (obj, "commands", &commands, NULL) || commands == NULL)
    return;
  for (guint i = 0; i < json_array_get_length (commands); i++)
    {
      JsonObject *c = as_object (json_array_get_element (commands, i));
      gboolean enabled = FALSE;
      if (c == NULL)
        continue;
      ma_json_get_bool (c, "enabled", &enabled, NULL);
      ma_table_add (table, str_member (c, "name", "?"),
                    enabled ? ma_out_paint ("green", "yes") : ma_out_paint ("red", "no"),
                    enabled ? str_member (c, "summary", "") : str_member (c, "disabled-reason", ""));
    }
  ma_table_print (table);
}

static void
format_status (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonObject *clients = NULL, *port = NULL, *last = NULL;
  double uptime = 0;

  if (obj == NULL)
    return;
  ma_json_get_double (obj, "uptime", &uptime, NULL);
  printf ("state:      %s", ma_out_paint ("bold", str_member (obj, "state", "?")));
  if (str_member (obj, "operation", NULL) != NULL)
    printf (" (operation %s)", str_member (obj, "operation", NULL));
  printf ("\nuptime:     %.0f s\n", uptime);
  if (ma_json_get_object (obj, "clients", &clients, NULL) && clients != NULL)
    {
      printf ("clients:    %" G_GINT64_FORMAT " on UNIX sockets\n",
              int_member (clients, "unix-clients", 0));
      if (ma_json_get_object (clients, "virtio-port", &port, NULL) && port != NULL)
        {
          gboolean present = FALSE, host = FALSE;
          ma_json_get_bool (port, "present", &present, NULL);
          ma_json_get_bool (port, "host-connected", &host, NULL);
          printf ("virtio:     %s %s%s\n", str_member (port, "name", "?"),
                  present ? "present" : "absent", host ? ", host connected" : "");
        }
    }
  if (ma_json_get_object (obj, "last-operation", &last, NULL) && last != NULL)
    printf ("last:       %s %s: %s\n", str_member (last, "command", "?"),
            str_member (last, "operation", ""), str_member (last, "result", ""));
}

void
ma_out_print_event (JsonNode *event)
{
  JsonObject *obj = as_object (event);
  JsonObject *ts = NULL;
  JsonNode *data;
  g_autoptr(GDateTime) when = NULL;
  g_autofree char *stamp = NULL;
  g_autofree char *text = NULL;

  if (obj == NULL)
    return;
  if (ma_json_get_object (obj, "timestamp", &ts, NULL) && ts != NULL)
    when = g_date_time_new_from_unix_local (int_member (ts, "seconds", 0));
  stamp = when != NULL ? g_date_time_format (when, "%H:%M:%S") : g_strdup ("--:--:--");
  data = json_object_has_member (obj, "data") ? json_object_get_member (obj, "data") : NULL;
  text = data != NULL ? ma_json_to_string (data) : g_strdup ("{}");
  printf ("%s #%-4" G_GINT64_FORMAT " %s %s\n", stamp, int_member (obj, "seq", 0),
          ma_out_paint ("bold", str_member (obj, "event", "?")), text);
  fflush (stdout);
}

static void
format_events (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *events = NULL;

  if (obj == NULL || !ma_json_get_array (obj, "events", &events, NULL) || events == NULL)
    return;
  if (int_member (obj, "missed", 0) > 0)
    printf ("%s\n", ma_out_paint ("yellow", "(older events were dropped from the buffer)"));
  for (guint i = 0; i < json_array_get_length (events); i++)
    ma_out_print_event (json_array_get_element (events, i));
  if (json_array_get_length (events) == 0)
    printf ("no events after #%" G_GINT64_FORMAT "\n", int_member (obj, "last-seq", 0));
}

/* ---- quiesce plugins ---- */

static void
print_phase_results (JsonArray *results)
{
  g_autoptr(MaTable) table = ma_table_new (5, "PLUGIN", "PHASE", "STATUS", "SECONDS", "DETAIL");

  for (guint i = 0; results != NULL && i < json_array_get_length (results); i++)
    {
      JsonObject *r = as_object (json_array_get_element (results, i));
      g_autofree char *secs = NULL;
      double seconds = 0;
      if (r == NULL)
        continue;
      ma_json_get_double (r, "seconds", &seconds, NULL);
      secs = g_strdup_printf ("%.3f", seconds);
      ma_table_add (table, str_member (r, "plugin", "?"), str_member (r, "phase", "?"),
                    ma_out_status (str_member (r, "status", "?")), secs,
                    str_member (r, "detail", ""));
    }
  ma_table_print (table);
}

/* A failed thaw waiting for its retry: the application may still be quiesced. */
static void
print_thaw_retry (JsonObject *obj)
{
  JsonObject *retry = NULL;
  JsonArray *names = NULL;
  g_autoptr(GString) list = g_string_new (NULL);
  g_autofree char *when = NULL;
  gboolean running = FALSE;
  double next = -1;

  if (!ma_json_get_object (obj, "thaw_retry", &retry, NULL) || retry == NULL)
    return;
  if (ma_json_get_array (retry, "plugins", &names, NULL) && names != NULL)
    for (guint i = 0; i < json_array_get_length (names); i++)
      {
        JsonNode *n = json_array_get_element (names, i);
        if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
          g_string_append_printf (list, "%s%s", list->len ? ", " : "", json_node_get_string (n));
      }
  ma_json_get_bool (retry, "running", &running, NULL);
  if (json_object_has_member (retry, "next_retry_seconds")
      && !json_node_is_null (json_object_get_member (retry, "next_retry_seconds")))
    ma_json_get_double (retry, "next_retry_seconds", &next, NULL);
  when = running ? g_strdup ("retrying now")
                 : next >= 0 ? g_strdup_printf ("next attempt in %.0f s", next)
                             : g_strdup ("no attempt scheduled");
  printf ("%s of operation %s failed for %s: %" G_GINT64_FORMAT " retries so far, %s "
          "(`migctl thaw` retries at once)\n",
          ma_out_paint ("red", "thaw"), str_member (retry, "operation", "?"),
          list->len ? list->str : "?", int_member (retry, "retries", 0), when);
  if (str_member (retry, "failures", NULL) != NULL)
    printf ("  last failure: %s\n", str_member (retry, "failures", ""));
}

static void
format_plugins (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *plugins = NULL, *order = NULL;
  JsonObject *op = NULL;
  g_autoptr(MaTable) table = ma_table_new (6, "PLUGIN", "STATE", "PROTOCOL", "ORDER", "LAST",
                                           "DESCRIPTION / REASON");

  if (obj == NULL || !ma_json_get_array (obj, "plugins", &plugins, NULL) || plugins == NULL)
    return;
  for (guint i = 0; i < json_array_get_length (plugins); i++)
    {
      JsonObject *p = as_object (json_array_get_element (plugins, i));
      JsonObject *last = NULL;
      g_autoptr(GString) timings = g_string_new (NULL);
      g_autofree char *ord = NULL;
      if (p == NULL)
        continue;
      if (ma_json_get_object (p, "last", &last, NULL) && last != NULL)
        {
          static const char *const phases[] = { "check", "quiesce", "renew", "thaw",
                                                  "validate" };
          for (guint k = 0; k < G_N_ELEMENTS (phases); k++)
            {
              JsonObject *ph = NULL;
              double seconds = 0;
              if (!ma_json_get_object (last, phases[k], &ph, NULL) || ph == NULL)
                continue;
              ma_json_get_double (ph, "seconds", &seconds, NULL);
              g_string_append_printf (timings, "%s%s %.3fs %s", timings->len ? ", " : "",
                                      phases[k], seconds, str_member (ph, "status", ""));
            }
        }
      ord = json_object_has_member (p, "order")
              ? g_strdup_printf ("%" G_GINT64_FORMAT, int_member (p, "order", 0))
              : g_strdup ("");
      ma_table_add (table, str_member (p, "name", "?"),
                    ma_out_status (str_member (p, "state", "?")), str_member (p, "protocol", ""),
                    ord, timings->str,
                    str_member (p, "reason", str_member (p, "description", "")));
    }
  ma_table_print (table);
  if (ma_json_get_array (obj, "order", &order, NULL) && order != NULL
      && json_array_get_length (order) > 0)
    {
      g_autoptr(GString) list = g_string_new (NULL);
      for (guint i = 0; i < json_array_get_length (order); i++)
        {
          JsonNode *n = json_array_get_element (order, i);
          if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
            g_string_append_printf (list, "%s%s", list->len ? " → " : "", json_node_get_string (n));
        }
      printf ("\nquiesce order: %s\n", list->str);
    }
  if (ma_json_get_object (obj, "operation", &op, NULL) && op != NULL)
    printf ("operation %s: %s\n", str_member (op, "operation", "?"), str_member (op, "state", "?"));
  print_thaw_retry (obj);
}

static void
format_quiesce (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *results = NULL;
  double seconds = 0, expires = 0;
  gboolean already = FALSE;

  if (obj == NULL)
    return;
  ma_json_get_double (obj, "seconds", &seconds, NULL);
  ma_json_get_double (obj, "expires_in", &expires, NULL);
  ma_json_get_bool (obj, "already", &already, NULL);
  printf ("%s operation %s in %.3f s%s; lease %" G_GINT64_FORMAT " s, expires in %.0f s "
          "(renew or thaw before)\n", ma_out_paint ("green", "quiesced"),
          str_member (obj, "operation", "?"), seconds, already ? " (already)" : "",
          int_member (obj, "lease_seconds", 0), expires);
  if (ma_json_get_array (obj, "results", &results, NULL) && results != NULL)
    print_phase_results (results);
}

/* renew: the quiesce object plus what the plugins' renew phase did. */
static void
format_renew (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *results = NULL;
  double seconds = 0, expires = 0;

  if (obj == NULL)
    return;
  ma_json_get_double (obj, "renew_seconds", &seconds, NULL);
  ma_json_get_double (obj, "expires_in", &expires, NULL);
  printf ("%s operation %s: lease %" G_GINT64_FORMAT " s, expires in %.0f s "
          "(renew or thaw before)\n", ma_out_paint ("green", "renewed"),
          str_member (obj, "operation", "?"), int_member (obj, "lease_seconds", 0), expires);
  if (ma_json_get_array (obj, "renew_results", &results, NULL) && results != NULL
      && json_array_get_length (results) > 0)
    {
      printf ("plugins renewed in %.3f s:\n", seconds);
      print_phase_results (results);
    }
}

static void
format_thaw (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *results = NULL;
  gboolean already = FALSE;
  double seconds = 0;

  if (obj == NULL)
    return;
  ma_json_get_bool (obj, "already", &already, NULL);
  ma_json_get_double (obj, "seconds", &seconds, NULL);
  if (already)
    {
      printf ("%s: nothing was quiesced\n", ma_out_paint ("green", "thawed"));
      return;
    }
  printf ("%s operation %s in %.3f s\n", ma_out_paint ("green", "thawed"),
          str_member (obj, "operation", "?"), seconds);
  if (ma_json_get_array (obj, "results", &results, NULL) && results != NULL)
    print_phase_results (results);
}

static void
format_check (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *results = NULL;
  gboolean ready = FALSE;

  if (obj == NULL)
    return;
  ma_json_get_bool (obj, "ready", &ready, NULL);
  printf ("%s: %s\n", str_member (obj, "phase", "check"),
          ready ? ma_out_paint ("green", "every plugin is ready")
                : ma_out_paint ("red", "a plugin is not ready"));
  if (ma_json_get_array (obj, "plugins", &results, NULL) && results != NULL)
    print_phase_results (results);
}

static void
format_plugin_test (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *results = NULL;
  gboolean ok = FALSE;

  if (obj == NULL)
    return;
  ma_json_get_bool (obj, "ok", &ok, NULL);
  if (ma_json_get_array (obj, "phases", &results, NULL) && results != NULL)
    print_phase_results (results);
  printf ("plugin %s: %s\n", str_member (obj, "plugin", "?"),
          ok ? ma_out_paint ("green", "every phase passed")
             : ma_out_paint ("red", "a phase failed"));
}

/* ---- convergence: dirty-rate, throttle, unthrottle ---- */

static double
double_member (JsonObject *obj, const char *member, double def)
{
  double value = def;

  if (!ma_json_get_double (obj, member, &value, NULL))
    return def;
  return value;
}

static void
print_dirty_table (JsonObject *obj)
{
  JsonArray *procs = NULL;
  g_autoptr(MaTable) table = ma_table_new (6, "RANK", "PID", "COMM", "UNIT/CGROUP", "DIRTY MiB/s",
                                           "RSS MiB");
  const char *method = str_member (obj, "method", "?");

  printf ("method: %s over %.1f s — %s\n",
          ma_out_paint (g_strcmp0 (method, "soft-dirty") == 0 ? "green" : "yellow", method),
          double_member (obj, "seconds", 0), str_member (obj, "method-note", ""));
  if (ma_json_get_array (obj, "processes", &procs, NULL) && procs != NULL)
    for (guint i = 0; i < json_array_get_length (procs); i++)
      {
        JsonObject *p = as_object (json_array_get_element (procs, i));
        g_autofree char *rank = g_strdup_printf ("%u", i + 1);
        g_autofree char *pid = NULL;
        g_autofree char *rate = NULL;
        g_autofree char *rss = NULL;
        if (p == NULL)
          continue;
        pid = g_strdup_printf ("%" G_GINT64_FORMAT, int_member (p, "pid", 0));
        rate = g_strdup_printf ("%.2f", double_member (p, "dirty-mib-per-s", 0));
        rss = g_strdup_printf ("%.1f", (double) int_member (p, "rss-bytes", 0) / (1024.0 * 1024.0));
        ma_table_add (table, rank, pid, str_member (p, "comm", "?"),
                      str_member (p, "unit", str_member (p, "cgroup", "")), rate, rss);
      }
  ma_table_print (table);
  printf ("processes %.2f MiB/s + page cache %.2f MiB/s = guest %.2f MiB/s "
          "(%" G_GINT64_FORMAT " processes, %" G_GINT64_FORMAT " kernel threads skipped, "
          "cost %.1f ms)\n",
          double_member (obj, "processes-mib-per-s", 0),
          double_member (obj, "page-cache-mib-per-s", 0),
          double_member (obj, "guest-total-mib-per-s", 0), int_member (obj, "scanned", 0),
          int_member (obj, "kernel-threads-skipped", 0), double_member (obj, "cost-ms", 0));
}

static void
format_dirty_rate (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);

  if (obj != NULL)
    print_dirty_table (obj);
}

static void
print_throttle_classes (JsonArray *list, const char *verb)
{
  for (guint i = 0; list != NULL && i < json_array_get_length (list); i++)
    {
      JsonObject *c = as_object (json_array_get_element (list, i));
      JsonArray *cgroups = NULL;
      gboolean renewed = FALSE;
      if (c == NULL)
        continue;
      ma_json_get_bool (c, "renewed", &renewed, NULL);
      printf ("%s class %s (%s)", ma_out_paint ("bold", verb), str_member (c, "class", "?"),
              str_member (c, "policy", "?"));
      if (json_object_has_member (c, "lease-seconds-left"))
        printf (", lease %" G_GINT64_FORMAT " s%s", int_member (c, "lease-seconds-left", 0),
                renewed ? " (renewed)" : "");
      printf ("\n");
      if (ma_json_get_array (c, "cgroups", &cgroups, NULL) && cgroups != NULL)
        for (guint j = 0; j < json_array_get_length (cgroups); j++)
          {
            JsonObject *g = as_object (json_array_get_element (cgroups, j));
            if (g != NULL)
              printf ("  %s  %s: '%s' -> '%s'\n", str_member (g, "cgroup", "?"),
                      str_member (g, "file", "?"), str_member (g, "previous", ""),
                      str_member (g, "applied", ""));
          }
    }
}

static void
format_throttle (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *throttled = NULL, *skipped = NULL, *errors = NULL;
  JsonObject *sample = NULL;

  if (obj == NULL)
    return;
  if (ma_json_get_object (obj, "dirty-rate", &sample, NULL) && sample != NULL)
    {
      print_dirty_table (sample);
      printf ("\n");
    }
  ma_json_get_array (obj, "throttled", &throttled, NULL);
  print_throttle_classes (throttled, "throttled");
  if (throttled == NULL || json_array_get_length (throttled) == 0)
    printf ("%s\n", ma_out_paint ("yellow", "nothing throttled"));
  if (ma_json_get_array (obj, "skipped", &skipped, NULL) && skipped != NULL)
    for (guint i = 0; i < json_array_get_length (skipped); i++)
      {
        JsonObject *s = as_object (json_array_get_element (skipped, i));
        if (s != NULL)
          printf ("skipped pid %" G_GINT64_FORMAT " %s: %s\n", int_member (s, "pid", 0),
                  str_member (s, "comm", "?"), str_member (s, "reason", ""));
      }
  if (ma_json_get_array (obj, "errors", &errors, NULL) && errors != NULL)
    for (guint i = 0; i < json_array_get_length (errors); i++)
      {
        JsonObject *e = as_object (json_array_get_element (errors, i));
        if (e != NULL)
          printf ("%s class %s: %s\n", ma_out_paint ("red", "failed"), str_member (e, "class", "?"),
                  str_member (e, "error", ""));
      }
}

static void
format_unthrottle (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *released = NULL;

  if (obj == NULL)
    return;
  ma_json_get_array (obj, "released", &released, NULL);
  print_throttle_classes (released, "restored");
  if (released == NULL || json_array_get_length (released) == 0)
    printf ("nothing was throttled\n");
  printf ("still throttled: %" G_GINT64_FORMAT " classes\n", int_member (obj, "still-throttled", 0));
}

/* validate: the verdict, then every check that is not a pass, causes first (the agent orders
 * them so), then a count of passes; -v style detail lives in --json. */
static void
format_validate (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonArray *checks = NULL;
  g_autoptr(MaTable) table = ma_table_new (3, "STATUS", "CHECK", "DETAIL");
  guint passed = 0, shown = 0;

  if (obj == NULL)
    return;
  printf ("verdict: %s", ma_out_status (str_member (obj, "verdict", "?")));
  if (str_member (obj, "operation", NULL) != NULL)
    printf (" (operation %s)", str_member (obj, "operation", NULL));
  printf ("\n");
  if (!ma_json_get_array (obj, "checks", &checks, NULL) || checks == NULL)
    return;
  for (guint i = 0; i < json_array_get_length (checks); i++)
    {
      JsonObject *c = as_object (json_array_get_element (checks, i));
      const char *status;
      g_autofree char *detail = NULL;

      if (c == NULL)
        continue;
      status = str_member (c, "status", "?");
      if (g_strcmp0 (status, "pass") == 0)
        {
          passed++;
          continue;
        }
      detail = str_member (c, "caused-by", NULL) != NULL
                 ? g_strdup_printf ("%s (because %s failed)", str_member (c, "detail", ""),
                                    str_member (c, "caused-by", NULL))
                 : g_strdup (str_member (c, "detail", ""));
      ma_table_add (table, ma_out_status (status), str_member (c, "name", "?"), detail);
      shown++;
    }
  if (shown > 0)
    ma_table_print (table);
  printf ("%u check%s passed\n", passed, passed == 1 ? "" : "s");
}

static void
format_snapshot (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonObject *net = NULL, *storage = NULL, *clock = NULL;
  JsonArray *array = NULL;
  g_autoptr(GDateTime) when = NULL;
  g_autofree char *stamp = NULL;

  if (obj == NULL)
    return;
  when = g_date_time_new_from_unix_local (int_member (obj, "taken-at", 0));
  stamp = when != NULL ? g_date_time_format (when, "%Y-%m-%d %H:%M:%S") : g_strdup ("?");
  printf ("snapshot taken %s (%s)\n", stamp, str_member (obj, "reason", "?"));
  if (ma_json_get_object (obj, "network", &net, NULL) && net != NULL)
    {
      g_autoptr(MaTable) links = ma_table_new (5, "INTERFACE", "STATE", "MAC", "MTU", "DRIVER");
      if (ma_json_get_array (net, "links", &array, NULL) && array != NULL)
        for (guint i = 0; i < json_array_get_length (array); i++)
          {
            JsonObject *l = as_object (json_array_get_element (array, i));
            g_autofree char *mtu = NULL;
            if (l == NULL)
              continue;
            mtu = g_strdup_printf ("%" G_GINT64_FORMAT, int_member (l, "mtu", 0));
            ma_table_add (links, str_member (l, "name", "?"), str_member (l, "operstate", "?"),
                          str_member (l, "mac", "-"), mtu, str_member (l, "driver", "-"));
          }
      ma_table_print (links);
      array = NULL;
      if (ma_json_get_array (net, "routes", &array, NULL) && array != NULL)
        for (guint i = 0; i < json_array_get_length (array); i++)
          {
            JsonObject *r = as_object (json_array_get_element (array, i));
            if (r != NULL && g_strcmp0 (str_member (r, "dst", NULL), "default") == 0)
              printf ("default route (%s) via %s dev %s\n", str_member (r, "family", "?"),
                      str_member (r, "gateway", "-"), str_member (r, "interface", "-"));
          }
      if (str_member (net, "error", NULL) != NULL)
        printf ("network: %s\n", ma_out_paint ("red", str_member (net, "error", NULL)));
    }
  if (ma_json_get_object (obj, "storage", &storage, NULL) && storage != NULL)
    {
      g_autoptr(MaTable) mounts = ma_table_new (4, "MOUNT", "SOURCE", "TYPE", "OPTIONS");
      array = NULL;
      if (ma_json_get_array (storage, "mounts", &array, NULL) && array != NULL)
        for (guint i = 0; i < json_array_get_length (array); i++)
          {
            JsonObject *m = as_object (json_array_get_element (array, i));
            if (m == NULL || g_str_has_prefix (str_member (m, "devno", "0:"), "0:"))
              continue;
            ma_table_add (mounts, str_member (m, "target", "?"), str_member (m, "source", "?"),
                          str_member (m, "fstype", "?"), str_member (m, "super-options", ""));
          }
      printf ("\n");
      ma_table_print (mounts);
      if (str_member (storage, "error", NULL) != NULL)
        printf ("storage: %s\n", ma_out_paint ("red", str_member (storage, "error", NULL)));
    }
  if (ma_json_get_object (obj, "clock", &clock, NULL) && clock != NULL)
    {
      gboolean synced = FALSE;
      ma_json_get_bool (clock, "synchronized", &synced, NULL);
      printf ("\nclock: %s\n", synced ? "synchronised" : "not synchronised");
    }
}

/* blockers: the verdict and its reasons, then every selected mount, the worst first (stuck
 * tasks, then writers, then locks), then what cannot be frozen, the order, and writeback. */
#define BLOCKERS_MAX_ROWS_PER_MOUNT 20

typedef struct
{
  const char *mountpoint;
  guint stuck, writers, locks;
  MaTable *table;
  guint rows, hidden;
} BlockersMount;

static void
blockers_mount_free (BlockersMount *m)
{
  ma_table_free (m->table);
  g_free (m);
}

static BlockersMount *
blockers_mount (GHashTable *by_mp, const char *mountpoint)
{
  BlockersMount *m;

  if (mountpoint == NULL)
    mountpoint = "(unknown filesystem)";
  m = g_hash_table_lookup (by_mp, mountpoint);
  if (m == NULL)
    {
      m = g_new0 (BlockersMount, 1);
      m->mountpoint = mountpoint;
      m->table = ma_table_new (5, "WHAT", "PID", "COMM", "DETAIL", "PATH");
      g_hash_table_insert (by_mp, (gpointer) mountpoint, m);
    }
  return m;
}

static void
blockers_row (BlockersMount *m, const char *what, JsonObject *obj, const char *detail)
{
  g_autofree char *pid = g_strdup_printf ("%" G_GINT64_FORMAT, int_member (obj, "pid", 0));

  if (m->rows >= BLOCKERS_MAX_ROWS_PER_MOUNT)
    {
      m->hidden++;
      return;
    }
  m->rows++;
  ma_table_add (m->table, what, pid, str_member (obj, "comm", "?"), detail,
                str_member (obj, "path", ""));
}

static gint
blockers_mount_compare (gconstpointer a, gconstpointer b)
{
  const BlockersMount *x = *(BlockersMount *const *) a, *y = *(BlockersMount *const *) b;

  if (x->stuck != y->stuck)
    return x->stuck > y->stuck ? -1 : 1;
  if (x->writers != y->writers)
    return x->writers > y->writers ? -1 : 1;
  if (x->locks != y->locks)
    return x->locks > y->locks ? -1 : 1;
  return g_strcmp0 (x->mountpoint, y->mountpoint);
}

/* One page of `blockers detail=…`: its entries as a table and how to ask for the next. */
static void
format_blockers_page (JsonObject *obj, const char *detail)
{
  JsonArray *array = NULL;
  JsonObject *page = NULL;
  g_autoptr(MaTable) table = ma_table_new (5, "WHAT", "PID", "COMM", "DETAIL", "PATH");

  printf ("verdict: %s\n", ma_out_status (str_member (obj, "verdict", "?")));
  if (ma_json_get_array (obj, detail, &array, NULL) && array != NULL)
    for (guint i = 0; i < json_array_get_length (array); i++)
      {
        JsonObject *e = as_object (json_array_get_element (array, i));
        g_autofree char *pid = NULL;
        g_autofree char *what = NULL;
        JsonArray *holders = NULL, *waiters = NULL;
        if (e == NULL)
          continue;
        if (g_strcmp0 (detail, "locks") == 0)
          {
            JsonObject *h = NULL;
            ma_json_get_array (e, "holders", &holders, NULL);
            ma_json_get_array (e, "waiters", &waiters, NULL);
            if (holders != NULL && json_array_get_length (holders) > 0)
              h = as_object (json_array_get_element (holders, 0));
            pid = g_strdup_printf ("%" G_GINT64_FORMAT, h != NULL ? int_member (h, "pid", 0) : 0);
            what = g_strdup_printf ("%s %s%s", str_member (e, "type", "?"),
                                    str_member (e, "mode", "?"),
                                    waiters != NULL && json_array_get_length (waiters) > 0
                                      ? ", waited for" : "");
            ma_table_add (table, "lock", pid, h != NULL ? str_member (h, "comm", "?") : "?", what,
                          str_member (e, "path", ""));
          }
        else if (g_strcmp0 (detail, "writers") == 0)
          {
            pid = g_strdup_printf ("%" G_GINT64_FORMAT, int_member (e, "pid", 0));
            what = g_strdup_printf ("fd %" G_GINT64_FORMAT, int_member (e, "fd", -1));
            ma_table_add (table, "writer", pid, str_member (e, "comm", "?"), what,
                          str_member (e, "path", ""));
          }
        else
          {
            pid = g_strdup_printf ("%" G_GINT64_FORMAT, int_member (e, "pid", 0));
            what = g_strdup_printf ("D in %s (%s)", str_member (e, "wchan", "?"),
                                    str_member (e, "syscall", "no syscall"));
            ma_table_add (table, "stuck", pid, str_member (e, "comm", "?"), what,
                          str_member (e, "path", ""));
          }
      }
  ma_table_print (table);
  if (ma_json_get_object (obj, "page", &page, NULL) && page != NULL)
    {
      const char *next = str_member (page, "next_cursor", NULL);
      gint64 skipped = int_member (page, "skipped", 0);
      gint64 returned = int_member (page, "returned", 0);
      printf ("%s %" G_GINT64_FORMAT "–%" G_GINT64_FORMAT " of %" G_GINT64_FORMAT "\n", detail,
              returned > 0 ? skipped + 1 : skipped, skipped + returned,
              int_member (page, "total", 0));
      if (next != NULL)
        printf ("next page: migctl blockers detail=%s cursor=%s (or --all-pages)\n", detail,
                next);
    }
}

/* The writers in aggregate: per process, the largest first, as many as the reply lists. */
static void
format_writer_groups (JsonObject *obj)
{
  JsonArray *array = NULL;
  JsonObject *totals = NULL, *tw = NULL;
  g_autoptr(MaTable) table = ma_table_new (6, "PID", "COMM", "UNIT", "FDS", "BYTES", "E.G.");
  guint shown = 0;

  if (!ma_json_get_array (obj, "writers_by_process", &array, NULL) || array == NULL
      || json_array_get_length (array) == 0)
    return;
  for (guint i = 0; i < json_array_get_length (array) && shown < 10; i++)
    {
      JsonObject *g = as_object (json_array_get_element (array, i));
      JsonArray *examples = NULL;
      JsonObject *e = NULL;
      g_autofree char *pid = NULL;
      g_autofree char *fds = NULL;
      g_autofree char *bytes = NULL;
      if (g == NULL)
        continue;
      ma_json_get_array (g, "examples", &examples, NULL);
      if (examples != NULL && json_array_get_length (examples) > 0)
        e = as_object (json_array_get_element (examples, 0));
      pid = g_strdup_printf ("%" G_GINT64_FORMAT, int_member (g, "pid", 0));
      fds = g_strdup_printf ("%" G_GINT64_FORMAT, int_member (g, "fds", 0));
      bytes = g_format_size ((guint64) MAX (int_member (g, "bytes", 0), 0));
      ma_table_add (table, pid, str_member (g, "comm", "?"), str_member (g, "unit", "-"), fds,
                    bytes, e != NULL ? str_member (e, "path", "") : "");
      shown++;
    }
  if (ma_json_get_object (obj, "totals", &totals, NULL) && totals != NULL)
    ma_json_get_object (totals, "writers", &tw, NULL);
  printf ("\nwriters by process");
  if (tw != NULL)
    {
      g_autofree char *bytes = g_format_size ((guint64) MAX (int_member (tw, "bytes", 0), 0));
      printf (" (%" G_GINT64_FORMAT " fds in %" G_GINT64_FORMAT " processes, %s)",
              int_member (tw, "fds", 0), int_member (tw, "processes", 0), bytes);
    }
  printf (":\n");
  ma_table_print (table);
  if (tw != NULL && int_member (tw, "processes", 0) > shown)
    printf ("… and %" G_GINT64_FORMAT " more processes\n", int_member (tw, "processes", 0) - shown);
}

static void
format_blockers (JsonNode *ret)
{
  JsonObject *obj = as_object (ret);
  JsonObject *wb = NULL, *qga = NULL;
  JsonArray *array = NULL;
  g_autoptr(GHashTable) by_mp = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                                       (GDestroyNotify) blockers_mount_free);
  g_autoptr(GPtrArray) order = g_ptr_array_new ();
  g_autoptr(MaTable) unfreezable = ma_table_new (3, "MOUNTPOINT", "FSTYPE", "WHY NOT");
  GHashTableIter iter;
  gpointer value;
  double sync = 0;
  const char *kind;

  if (obj == NULL)
    return;
  kind = str_member (obj, "detail", "summary");
  if (g_strcmp0 (kind, "summary") != 0)
    {
      format_blockers_page (obj, kind);
      return;
    }
  printf ("verdict: %s\n", ma_out_status (str_member (obj, "verdict", "?")));
  if (ma_json_get_array (obj, "reasons", &array, NULL) && array != NULL)
    for (guint i = 0; i < json_array_get_length (array); i++)
      {
        JsonObject *r = as_object (json_array_get_element (array, i));
        const char *sev = r != NULL ? str_member (r, "severity", "info") : "info";
        if (r != NULL)
          printf ("  %s %s\n",
                  g_strcmp0 (sev, "info") == 0 ? ma_out_paint ("dim", "-") : ma_out_status (sev),
                  str_member (r, "message", ""));
      }

  if (ma_json_get_array (obj, "freeze_order", &array, NULL) && array != NULL)
    for (guint i = 0; i < json_array_get_length (array); i++)
      {
        JsonNode *n = json_array_get_element (array, i);
        if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
          blockers_mount (by_mp, json_node_get_string (n));
      }
  if (ma_json_get_array (obj, "stuck", &array, NULL) && array != NULL)
    for (guint i = 0; i < json_array_get_length (array); i++)
      {
        JsonObject *s = as_object (json_array_get_element (array, i));
        g_autofree char *detail = NULL;
        BlockersMount *m;
        if (s == NULL)
          continue;
        m = blockers_mount (by_mp, str_member (s, "mountpoint", NULL));
        m->stuck++;
        detail = g_strdup_printf ("D in %s (%s)", str_member (s, "wchan", "?"),
                                  str_member (s, "syscall", "no syscall"));
        blockers_row (m, ma_out_paint ("red", "stuck"), s, detail);
      }
  if (ma_json_get_array (obj, "writers", &array, NULL) && array != NULL)
    for (guint i = 0; i < json_array_get_length (array); i++)
      {
        JsonObject *w = as_object (json_array_get_element (array, i));
        g_autofree char *detail = NULL;
        BlockersMount *m;
        if (w == NULL)
          continue;
        m = blockers_mount (by_mp, str_member (w, "mountpoint", NULL));
        m->writers++;
        detail = g_strdup_printf ("fd %" G_GINT64_FORMAT, int_member (w, "fd", -1));
        blockers_row (m, ma_out_paint ("yellow", "writer"), w, detail);
      }
  /* the listed writers are the first few: the counts come from the aggregate */
  if (ma_json_get_array (obj, "writers_by_mount", &array, NULL) && array != NULL)
    for (guint i = 0; i < json_array_get_length (array); i++)
      {
        JsonObject *g = as_object (json_array_get_element (array, i));
        if (g != NULL)
          blockers_mount (by_mp, str_member (g, "mountpoint", NULL))->writers
            = (guint) int_member (g, "fds", 0);
      }
  if (ma_json_get_array (obj, "locks", &array, NULL) && array != NULL)
    for (guint i = 0; i < json_array_get_length (array); i++)
      {
        JsonObject *l = as_object (json_array_get_element (array, i));
        JsonArray *holders = NULL, *waiters = NULL;
        JsonObject *h = NULL;
        g_autofree char *detail = NULL;
        BlockersMount *m;
        if (l == NULL)
          continue;
        m = blockers_mount (by_mp, str_member (l, "mountpoint", NULL));
        m->locks++;
        ma_json_get_array (l, "holders", &holders, NULL);
        ma_json_get_array (l, "waiters", &waiters, NULL);
        if (holders != NULL && json_array_get_length (holders) > 0)
          h = as_object (json_array_get_element (holders, 0));
        detail = g_strdup_printf ("%s %s%s%s", str_member (l, "type", "?"),
                                  str_member (l, "mode", "?"),
                                  waiters != NULL && json_array_get_length (waiters) > 0
                                    ? ", waited for" : "",
                                  g_strcmp0 (str_member (l, "path", ""), "") != 0
                                      && json_object_has_member (l, "deleted")
                                      && json_object_get_boolean_member_with_default (l, "deleted",
                                                                                      FALSE)
                                    ? ", deleted" : "");
        if (h != NULL)
          {
            /* the holder's pid and comm with the lock's path */
            JsonObject *row = json_object_new ();
            json_object_set_int_member (row, "pid", int_member (h, "pid", 0));
            json_object_set_string_member (row, "comm", str_member (h, "comm", "(exited)"));
            json_object_set_string_member (row, "path", str_member (l, "path", ""));
            blockers_row (m, "lock", row, detail);
            json_object_unref (row);
          }
        else
          blockers_row (m, "lock", l, detail);
      }

  g_hash_table_iter_init (&iter, by_mp);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (order, value);
  g_ptr_array_sort (order, blockers_mount_compare);
  for (guint i = 0; i < order->len; i++)
    {
      BlockersMount *m = order->pdata[i];
      printf ("\n%s  %u stuck, %u writers, %u locks\n", ma_out_paint ("bold", m->mountpoint),
              m->stuck, m->writers, m->locks);
      if (m->rows > 0)
        ma_table_print (m->table);
      if (m->hidden > 0 || m->rows < m->stuck + m->writers + m->locks)
        printf ("… and %u more (migctl blockers detail=writers|locks|stuck lists every one)\n",
                MAX (m->hidden, m->stuck + m->writers + m->locks - m->rows));
    }
  format_writer_groups (obj);

  if (ma_json_get_array (obj, "mounts", &array, NULL) && array != NULL)
    {
      guint n = 0;
      for (guint i = 0; i < json_array_get_length (array); i++)
        {
          JsonObject *m = as_object (json_array_get_element (array, i));
          gboolean selected = FALSE, freezable = TRUE;
          if (m == NULL)
            continue;
          ma_json_get_bool (m, "selected", &selected, NULL);
          ma_json_get_bool (m, "freezable", &freezable, NULL);
          if (freezable || !selected)
            continue;
          ma_table_add (unfreezable, str_member (m, "mountpoint", "?"),
                        str_member (m, "fstype", "?"), str_member (m, "reason", ""));
          n++;
        }
      if (n > 0)
        {
          printf ("\nrequested but cannot be frozen:\n");
          ma_table_print (unfreezable);
        }
    }
  if (ma_json_get_array (obj, "freeze_order", &array, NULL) && array != NULL)
    {
      printf ("\nfreeze order:");
      for (guint i = 0; i < json_array_get_length (array); i++)
        {
          JsonNode *n = json_array_get_element (array, i);
          if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
            printf ("%s %s", i ? " →" : "", json_node_get_string (n));
        }
      printf ("\n");
    }
  if (ma_json_get_object (obj, "writeback", &wb, NULL) && wb != NULL)
    {
      g_autofree char *dirty = g_format_size ((guint64) MAX (int_member (wb, "dirty_bytes", 0), 0));
      g_autofree char *back = g_format_size ((guint64) MAX (int_member (wb, "writeback_bytes", 0), 0));
      ma_json_get_double (wb, "estimated_sync_seconds", &sync, NULL);
      printf ("writeback:    %s dirty, %s under writeback, about %.1f s to flush\n", dirty, back,
              sync);
    }
  if (ma_json_get_object (obj, "qemu_ga", &qga, NULL) && qga != NULL)
    {
      gboolean running = FALSE, port = FALSE, frozen = FALSE;
      ma_json_get_bool (qga, "running", &running, NULL);
      ma_json_get_bool (qga, "port_present", &port, NULL);
      ma_json_get_bool (qga, "frozen", &frozen, NULL);
      printf ("qemu-ga:      %s, port %s%s\n", running ? "running" : "not running",
              port ? "present" : "absent", frozen ? ma_out_paint ("red", ", believes it is frozen") : "");
    }
}

static const struct
{
  const char *command;
  MaFormatter func;
} formatters[] = {
  { "ping", format_ping },
  { "info", format_info },
  { "status", format_status },
  { "events", format_events },
  { "blockers", format_blockers },
  { "plugins", format_plugins },
  { "quiesce", format_quiesce },
  { "renew", format_renew },
  { "thaw", format_thaw },
  { "check", format_check },
  { "plugin-test", format_plugin_test },
  { "dirty-rate", format_dirty_rate },
  { "throttle", format_throttle },
  { "unthrottle", format_unthrottle },
  { "validate", format_validate },
  { "snapshot", format_snapshot },
};

MaFormatter
ma_out_find_formatter (const char *command)
{
  for (guint i = 0; i < G_N_ELEMENTS (formatters); i++)
    if (g_strcmp0 (formatters[i].command, command) == 0)
      return formatters[i].func;
  return NULL;
}
