/* timeline.h — a migration's timeline: host steps, the guest agent's events and libvirt's job
 * samples on one wall clock; printed as a table, as JSON, and drawn as an SVG picture. */
#pragma once

#include <stdio.h>

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _MaTimeline MaTimeline;

MaTimeline *ma_timeline_new (void);
void ma_timeline_free (MaTimeline *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaTimeline, ma_timeline_free)

/* A step at wall-clock time wall_us (g_get_real_time ()): who is "host", "source guest"... */
void ma_timeline_add (MaTimeline *self, gint64 wall_us, const char *who, const char *what,
                      const char *detail);
/* A guest event as the agent sent it ({"event", "data", "timestamp"}); who names the side;
 * guest_offset_us (the guest's clock minus the host's) is taken off its timestamp. */
void ma_timeline_add_event (MaTimeline *self, const char *who, JsonNode *event,
                            gint64 guest_offset_us);
/* The guest's timestamp of an event (µs), or -1. */
gint64 ma_timeline_event_time (JsonNode *event);
/* A phase [start, end) drawn as a band in the picture. */
void ma_timeline_phase (MaTimeline *self, const char *name, gint64 start_us, gint64 end_us);
/* One libvirt job sample. */
void ma_timeline_sample (MaTimeline *self, gint64 wall_us, guint64 remaining_bytes,
                         guint64 dirty_bytes_per_s, guint64 iteration, guint64 expected_downtime_ms);

guint ma_timeline_n_samples (MaTimeline *self);
void ma_timeline_print (MaTimeline *self, FILE *out);
JsonNode *ma_timeline_to_json (MaTimeline *self);
gboolean ma_timeline_write_svg (MaTimeline *self, const char *path, GError **error);

G_END_DECLS
