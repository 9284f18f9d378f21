/* events.h — the event journal: numbered asynchronous events, kept in a bounded
 * in-memory ring so a reconnecting orchestrator can replay what it missed. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MA_EVENTS_DEFAULT_CAPACITY 1024

typedef struct _MaEvents MaEvents;
typedef void (*MaEventFunc) (JsonNode *event, gpointer user_data);

MaEvents *ma_events_new (guint capacity);
void ma_events_free (MaEvents *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaEvents, ma_events_free)

/* The single listener (the agent) that broadcasts every new event. */
void ma_events_set_listener (MaEvents *self, MaEventFunc func, gpointer user_data);

/* Record an event; data is taken (NULL = {}). Returns its sequence number (from 1). */
guint64 ma_events_emit (MaEvents *self, const char *name, JsonNode *data);

/* {"events": [...], "first-seq": N, "last-seq": N, "missed": N, "more": B} for seq > after,
 * at most `limit` events: as JSON text (what `events` sends), or parsed. */
char *ma_events_since_text (MaEvents *self, guint64 after, guint limit);
JsonNode *ma_events_since (MaEvents *self, guint64 after, guint limit);
guint64 ma_events_last_seq (MaEvents *self);

G_END_DECLS
