/* events.c — the event journal: numbered asynchronous events, kept in a bounded
 * in-memory ring so a reconnecting orchestrator can replay what it missed. */
#include "events.h"

#include <string.h>

#include "json.h"
#include "protocol.h"

/* The ring keeps each event as its text, not its tree, and all of them in one buffer.
 *  - Text, not trees: a json-glib tree of a small event costs about 3 KiB of heap (an object,
 *    a hash table and a node for every member), its text about 190 bytes. Measured in the
 *    soak, the default ring of 1,024 events held 3.3 MiB as trees.
 *  - One buffer, not a block per event: no 1,024 small blocks that live for hundreds of
 *    operations among every request's short-lived ones (in the soak the difference is within
 *    its noise, about 50 KiB). The buffer is records [seq][length][text NUL] from `head` to
 *    `tail`; when the tail reaches its end the live records move to the start, and it grows
 *    (to a sixteenth more than they need) only when they would fill more than sixteen
 *    seventeenths of it: every byte of it is touched, so slack is memory.
 *  - `events` writes its reply from the texts (a raw node): no tree for up to 1,000 events.
 */
typedef struct
{
  guint64 seq;
  guint32 len; /* of the text, without its NUL */
} MaEventRecord;

#define RECORD_ALIGN 8
#define RECORD_SIZE(len) (((sizeof (MaEventRecord) + (len) + 1) + RECORD_ALIGN - 1) \
                          & ~(gsize) (RECORD_ALIGN - 1))
#define MA_EVENTS_INITIAL_BYTES 4096

struct _MaEvents
{
  guint8 *buf;
  gsize size;  /* allocated */
  gsize head;  /* first live record */
  gsize tail;  /* end of the last one */
  guint count; /* live records */
  guint capacity;
  guint64 next_seq;
  MaEventFunc func;
  gpointer user_data;
};

static MaEventRecord *
record_at (MaEvents *self, gsize offset)
{
  return (MaEventRecord *) (self->buf + offset);
}

static const char *
record_text (MaEventRecord *record)
{
  return (const char *) (record + 1);
}

MaEvents *
ma_events_new (guint capacity)
{
  MaEvents *self = g_new0 (MaEvents, 1);

  self->capacity = MAX (capacity, 1);
  self->next_seq = 1;
  return self;
}

void
ma_events_free (MaEvents *self)
{
  if (self == NULL)
    return;
  g_free (self->buf);
  g_free (self);
}

void
ma_events_set_listener (MaEvents *self, MaEventFunc func, gpointer user_data)
{
  self->func = func;
  self->user_data = user_data;
}

static void
drop_oldest (MaEvents *self)
{
  self->head += RECORD_SIZE (record_at (self, self->head)->len);
  self->count--;
  if (self->count == 0)
    self->head = self->tail = 0;
}

/* Room for `need` more bytes at the tail: move the live records to the start, and grow (to a
 * sixteenth more than they need) when they would fill more than sixteen seventeenths of the
 * buffer, so that a move frees at least a seventeenth and a buffer just grown is not grown
 * again at its next move. With the default ring: one move of about 200 KiB, some 20
 * microseconds, per 60 or so events. Every page of the buffer is written in turn, so its
 * slack is private memory. */
static void
make_room (MaEvents *self, gsize need)
{
  gsize live = self->tail - self->head;

  if (self->tail + need <= self->size)
    return;
  if (self->head > 0)
    {
      memmove (self->buf, self->buf + self->head, live);
      self->head = 0;
      self->tail = live;
    }
  if ((live + need) * 17 > self->size * 16)
    {
      gsize size = MAX ((live + need) * 17 / 16, MA_EVENTS_INITIAL_BYTES);

      size = (size + MA_EVENTS_INITIAL_BYTES - 1) & ~(gsize) (MA_EVENTS_INITIAL_BYTES - 1);
      self->buf = g_realloc (self->buf, size);
      self->size = size;
    }
}

guint64
ma_events_emit (MaEvents *self, const char *name, JsonNode *data)
{
  guint64 seq = self->next_seq++;
  g_autoptr(JsonNode) event = ma_event_new (name, data, seq, g_get_real_time ());
  g_autofree char *text = ma_json_to_string (event);
  gsize len = strlen (text);
  MaEventRecord *record;

  while (self->count >= self->capacity)
    drop_oldest (self);
  make_room (self, RECORD_SIZE (len));
  record = record_at (self, self->tail);
  record->seq = seq;
  record->len = (guint32) len;
  memcpy ((char *) record_text (record), text, len + 1);
  self->tail += RECORD_SIZE (len);
  self->count++;
  g_debug ("event %" G_GUINT64_FORMAT " %s", seq, name);
  if (self->func != NULL)
    self->func (event, self->user_data);
  return seq;
}

guint64
ma_events_last_seq (MaEvents *self)
{
  return self->next_seq - 1;
}

char *
ma_events_since_text (MaEvents *self, guint64 after, guint limit)
{
  GString *out = g_string_new ("{\"events\":[");
  guint64 first = self->count > 0 ? record_at (self, self->head)->seq : self->next_seq;
  guint64 missed = after + 1 < first ? first - (after + 1) : 0;
  gboolean more = FALSE;
  guint listed = 0;

  for (gsize at = self->head; at < self->tail;)
    {
      MaEventRecord *record = record_at (self, at);

      at += RECORD_SIZE (record->len);
      if (record->seq <= after)
        continue;
      if (listed >= limit)
        {
          more = TRUE;
          break;
        }
      if (listed++ > 0)
        g_string_append_c (out, ',');
      /* the agent wrote it: it is JSON */
      g_string_append_len (out, record_text (record), record->len);
    }
  g_string_append_printf (out,
                          "],\"first-seq\":%" G_GUINT64_FORMAT ",\"last-seq\":%" G_GUINT64_FORMAT
                          ",\"missed\":%" G_GUINT64_FORMAT ",\"more\":%s}",
                          first, self->next_seq - 1, missed, more ? "true" : "false");
  return g_string_free (out, FALSE);
}

JsonNode *
ma_events_since (MaEvents *self, guint64 after, guint limit)
{
  g_autofree char *text = ma_events_since_text (self, after, limit);
  g_autoptr(GError) error = NULL;
  JsonNode *node = ma_json_parse (text, strlen (text), &error);

  if (node == NULL)
    g_warning ("the event ring does not parse back: %s", error->message);
  return node;
}
