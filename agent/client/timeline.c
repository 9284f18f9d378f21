/* timeline.c — a migration's timeline: host steps, guest events and job samples on one wall
 * clock (the agent's events carry the guest's realtime), as a table, JSON and SVG. */
#include "timeline.h"

#include <stdio.h>

#include "json.h"

#define SVG_WIDTH 900
#define SVG_HEIGHT 360
#define SVG_MARGIN 60

typedef struct
{
  gint64 wall_us;
  char *who;
  char *what;
  char *detail;
} Step;

typedef struct
{
  char *name;
  gint64 start_us, end_us;
} Phase;

typedef struct
{
  gint64 wall_us;
  guint64 remaining, dirty_rate, iteration, downtime_ms;
} Sample;

struct _MaTimeline
{
  GArray *steps;   /* Step */
  GArray *phases;  /* Phase */
  GArray *samples; /* Sample */
};

static void
step_clear (Step *s)
{
  g_free (s->who);
  g_free (s->what);
  g_free (s->detail);
}

static void
phase_clear (Phase *p)
{
  g_free (p->name);
}

MaTimeline *
ma_timeline_new (void)
{
  MaTimeline *self = g_new0 (MaTimeline, 1);

  self->steps = g_array_new (FALSE, TRUE, sizeof (Step));
  g_array_set_clear_func (self->steps, (GDestroyNotify) step_clear);
  self->phases = g_array_new (FALSE, TRUE, sizeof (Phase));
  g_array_set_clear_func (self->phases, (GDestroyNotify) phase_clear);
  self->samples = g_array_new (FALSE, TRUE, sizeof (Sample));
  return self;
}

void
ma_timeline_free (MaTimeline *self)
{
  if (self == NULL)
    return;
  g_array_unref (self->steps);
  g_array_unref (self->phases);
  g_array_unref (self->samples);
  g_free (self);
}

void
ma_timeline_add (MaTimeline *self, gint64 wall_us, const char *who, const char *what,
                 const char *detail)
{
  Step s = { wall_us, g_strdup (who), g_strdup (what), g_strdup (detail != NULL ? detail : "") };

  g_array_append_val (self->steps, s);
}

gint64
ma_timeline_event_time (JsonNode *event)
{
  JsonObject *ts = NULL;
  gint64 seconds = 0, micro = 0;

  if (event == NULL || !JSON_NODE_HOLDS_OBJECT (event)
      || !ma_json_get_object (json_node_get_object (event), "timestamp", &ts, NULL) || ts == NULL
      || !ma_json_get_int (ts, "seconds", &seconds, NULL))
    return -1;
  ma_json_get_int (ts, "microseconds", &micro, NULL);
  return seconds * G_USEC_PER_SEC + micro;
}

void
ma_timeline_add_event (MaTimeline *self, const char *who, JsonNode *event,
                       gint64 guest_offset_us)
{
  JsonObject *obj, *data = NULL;
  const char *name = NULL;
  gint64 wall_us = ma_timeline_event_time (event);
  g_autofree char *detail = NULL;

  if (wall_us < 0)
    return;
  obj = json_node_get_object (event);
  if (!ma_json_get_string (obj, "event", &name, NULL) || name == NULL)
    return;
  if (ma_json_get_object (obj, "data", &data, NULL) && data != NULL)
    {
      g_autoptr(JsonNode) node = ma_json_new_object_node (json_object_ref (data));
      detail = ma_json_to_string (node);
      if (strlen (detail) > 120)
        strcpy (detail + 117, "...");
    }
  ma_timeline_add (self, wall_us - guest_offset_us, who, name, detail);
}

void
ma_timeline_phase (MaTimeline *self, const char *name, gint64 start_us, gint64 end_us)
{
  Phase p = { g_strdup (name), start_us, end_us };

  g_array_append_val (self->phases, p);
}

void
ma_timeline_sample (MaTimeline *self, gint64 wall_us, guint64 remaining_bytes,
                    guint64 dirty_bytes_per_s, guint64 iteration, guint64 expected_downtime_ms)
{
  Sample s = { wall_us, remaining_bytes, dirty_bytes_per_s, iteration, expected_downtime_ms };

  g_array_append_val (self->samples, s);
}

guint
ma_timeline_n_samples (MaTimeline *self)
{
  return self->samples->len;
}

static int
step_compare (gconstpointer a, gconstpointer b)
{
  gint64 x = ((const Step *) a)->wall_us, y = ((const Step *) b)->wall_us;

  return x < y ? -1 : x > y;
}

static gint64
timeline_origin (MaTimeline *self)
{
  gint64 t0 = G_MAXINT64;

  for (guint i = 0; i < self->steps->len; i++)
    t0 = MIN (t0, g_array_index (self->steps, Step, i).wall_us);
  for (guint i = 0; i < self->samples->len; i++)
    t0 = MIN (t0, g_array_index (self->samples, Sample, i).wall_us);
  return t0 == G_MAXINT64 ? 0 : t0;
}

void
ma_timeline_print (MaTimeline *self, FILE *out)
{
  gint64 t0;

  g_array_sort (self->steps, step_compare);
  t0 = timeline_origin (self);
  fprintf (out, "%9s  %-18s %-24s %s\n", "T+SECONDS", "WHO", "WHAT", "DETAIL");
  for (guint i = 0; i < self->steps->len; i++)
    {
      const Step *s = &g_array_index (self->steps, Step, i);
      fprintf (out, "%9.3f  %-18s %-24s %s\n", (double) (s->wall_us - t0) / G_USEC_PER_SEC,
               s->who, s->what, s->detail);
    }
  for (guint i = 0; i < self->phases->len; i++)
    {
      const Phase *p = &g_array_index (self->phases, Phase, i);
      fprintf (out, "phase %-22s %8.3f s (from T+%.3f)\n", p->name,
               (double) (p->end_us - p->start_us) / G_USEC_PER_SEC,
               (double) (p->start_us - t0) / G_USEC_PER_SEC);
    }
}

JsonNode *
ma_timeline_to_json (MaTimeline *self)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  gint64 t0;

  g_array_sort (self->steps, step_compare);
  t0 = timeline_origin (self);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "origin-us");
  json_builder_add_int_value (b, t0);
  json_builder_set_member_name (b, "steps");
  json_builder_begin_array (b);
  for (guint i = 0; i < self->steps->len; i++)
    {
      const Step *s = &g_array_index (self->steps, Step, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "t");
      json_builder_add_double_value (b, (double) (s->wall_us - t0) / G_USEC_PER_SEC);
      json_builder_set_member_name (b, "who");
      json_builder_add_string_value (b, s->who);
      json_builder_set_member_name (b, "what");
      json_builder_add_string_value (b, s->what);
      json_builder_set_member_name (b, "detail");
      json_builder_add_string_value (b, s->detail);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "phases");
  json_builder_begin_array (b);
  for (guint i = 0; i < self->phases->len; i++)
    {
      const Phase *p = &g_array_index (self->phases, Phase, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, p->name);
      json_builder_set_member_name (b, "start");
      json_builder_add_double_value (b, (double) (p->start_us - t0) / G_USEC_PER_SEC);
      json_builder_set_member_name (b, "seconds");
      json_builder_add_double_value (b, (double) (p->end_us - p->start_us) / G_USEC_PER_SEC);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "samples");
  json_builder_begin_array (b);
  for (guint i = 0; i < self->samples->len; i++)
    {
      const Sample *s = &g_array_index (self->samples, Sample, i);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "t");
      json_builder_add_double_value (b, (double) (s->wall_us - t0) / G_USEC_PER_SEC);
      json_builder_set_member_name (b, "memory-remaining");
      json_builder_add_int_value (b, (gint64) s->remaining);
      json_builder_set_member_name (b, "memory-dirty-rate");
      json_builder_add_int_value (b, (gint64) s->dirty_rate);
      json_builder_set_member_name (b, "iteration");
      json_builder_add_int_value (b, (gint64) s->iteration);
      json_builder_set_member_name (b, "expected-downtime-ms");
      json_builder_add_int_value (b, (gint64) s->downtime_ms);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static char *
xml_escape (const char *text)
{
  return g_markup_escape_text (text, -1);
}

gboolean
ma_timeline_write_svg (MaTimeline *self, const char *path, GError **error)
{
  g_autoptr(GString) svg = g_string_new (NULL);
  gint64 t0 = timeline_origin (self), t1 = t0 + 1;
  guint64 max_remaining = 1, max_rate = 1;
  const double plot_w = SVG_WIDTH - 2 * SVG_MARGIN, plot_h = SVG_HEIGHT - 2 * SVG_MARGIN;

  g_array_sort (self->steps, step_compare);
  for (guint i = 0; i < self->steps->len; i++)
    t1 = MAX (t1, g_array_index (self->steps, Step, i).wall_us);
  for (guint i = 0; i < self->samples->len; i++)
    {
      const Sample *s = &g_array_index (self->samples, Sample, i);
      t1 = MAX (t1, s->wall_us);
      max_remaining = MAX (max_remaining, s->remaining);
      max_rate = MAX (max_rate, s->dirty_rate);
    }
#define X(t) (SVG_MARGIN + plot_w * (double) ((t) - t0) / (double) (t1 - t0))
  g_string_append_printf (svg,
                          "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
                          "font-family='sans-serif' font-size='11'>\n"
                          "<rect width='100%%' height='100%%' fill='white'/>\n",
                          SVG_WIDTH, SVG_HEIGHT);
  for (guint i = 0; i < self->phases->len; i++)
    {
      const Phase *p = &g_array_index (self->phases, Phase, i);
      g_autofree char *name = xml_escape (p->name);
      g_string_append_printf (svg,
                              "<rect x='%.1f' y='%d' width='%.1f' height='%.1f' fill='%s' "
                              "fill-opacity='0.25'/><text x='%.1f' y='%d'>%s</text>\n",
                              X (p->start_us), SVG_MARGIN, MAX (1.0, X (p->end_us) - X (p->start_us)),
                              plot_h, i % 2 ? "#f4a261" : "#8ecae6", X (p->start_us) + 2,
                              SVG_MARGIN - 6 - 12 * (int) (i % 3), name);
    }
  g_string_append_printf (svg,
                          "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n"
                          "<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='black'/>\n",
                          SVG_MARGIN, SVG_HEIGHT - SVG_MARGIN, SVG_WIDTH - SVG_MARGIN,
                          SVG_HEIGHT - SVG_MARGIN, SVG_MARGIN, SVG_MARGIN, SVG_MARGIN,
                          SVG_HEIGHT - SVG_MARGIN);
  for (int series = 0; series < 2 && self->samples->len > 0; series++)
    {
      g_string_append_printf (svg, "<polyline fill='none' stroke='%s' stroke-width='2' points='",
                              series == 0 ? "#1d3557" : "#e63946");
      for (guint i = 0; i < self->samples->len; i++)
        {
          const Sample *s = &g_array_index (self->samples, Sample, i);
          double v = series == 0 ? (double) s->remaining / (double) max_remaining
                                 : (double) s->dirty_rate / (double) max_rate;
          g_string_append_printf (svg, "%.1f,%.1f ", X (s->wall_us),
                                  SVG_HEIGHT - SVG_MARGIN - v * plot_h);
        }
      g_string_append (svg, "'/>\n");
    }
  g_string_append_printf (svg,
                          "<text x='%d' y='%d' fill='#1d3557'>memory remaining (max %.1f MiB)"
                          "</text><text x='%d' y='%d' fill='#e63946'>dirty rate (max %.1f MiB/s)"
                          "</text><text x='%d' y='%d'>%.1f s</text>\n",
                          SVG_MARGIN, SVG_HEIGHT - 30, (double) max_remaining / 1048576.0,
                          SVG_MARGIN + 300, SVG_HEIGHT - 30, (double) max_rate / 1048576.0,
                          SVG_WIDTH - SVG_MARGIN - 30, SVG_HEIGHT - SVG_MARGIN + 14,
                          (double) (t1 - t0) / G_USEC_PER_SEC);
  for (guint i = 0; i < self->steps->len; i++)
    {
      const Step *s = &g_array_index (self->steps, Step, i);
      g_autofree char *what = xml_escape (s->what);
      g_string_append_printf (svg,
                              "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#999' "
                              "stroke-dasharray='2,2'><title>%s</title></line>\n",
                              X (s->wall_us), SVG_MARGIN, X (s->wall_us), SVG_HEIGHT - SVG_MARGIN,
                              what);
    }
  g_string_append (svg, "</svg>\n");
#undef X
  return g_file_set_contents (path, svg->str, (gssize) svg->len, error);
}
