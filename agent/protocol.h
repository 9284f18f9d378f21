/* protocol.h — the wire format: framing of the byte stream into requests, request
 * validation (QMP conventions), and the encoding of replies and events. No I/O here. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MA_PROTOCOL_VERSION 1
#define MA_PROTOCOL_MAX_REQUEST_BYTES (1024 * 1024)
/* No reply line is longer (newline included): under migctl's 16 MiB and under the 10 MB a
 * libvirt guest-agent client reads. A longer one is answered with an error instead. */
#define MA_PROTOCOL_MAX_REPLY_BYTES (8 * 1024 * 1024)
#define MA_PROTOCOL_RESET_BYTE 0xFF

/* ---- framing ---- */

typedef enum
{
  MA_FRAME_REQUEST,   /* text holds one candidate request */
  MA_FRAME_TOO_LARGE, /* a request passed MA_PROTOCOL_MAX_REQUEST_BYTES: skipped to its line end */
  MA_FRAME_TOO_DEEP,  /* nesting passed MA_JSON_MAX_DEPTH: skipped to its line end */
} MaFrameKind;

typedef void (*MaFrameFunc) (MaFrameKind kind, const char *text, gsize len, gpointer user_data);

typedef struct _MaFramer MaFramer;

MaFramer *ma_framer_new (gsize max_bytes);
void ma_framer_free (MaFramer *self);
/* Feed bytes; calls func once per complete frame. A request ends at a newline or
 * where its top-level object closes; 0xFF discards everything pending. */
void ma_framer_feed (MaFramer *self, const char *data, gsize len, MaFrameFunc func, gpointer user_data);
void ma_framer_reset (MaFramer *self);
gsize ma_framer_pending (MaFramer *self);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaFramer, ma_framer_free)

/* ---- requests ---- */

typedef struct
{
  char *execute;
  JsonObject *arguments; /* never NULL once parsed */
  JsonNode *id;          /* NULL when the request had none */
} MaRequest;

void ma_request_free (MaRequest *request);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaRequest, ma_request_free)

/* Parse one frame. On failure returns NULL and, if the id could be read,
 * stores a copy in *id_out so the error reply can carry it. */
MaRequest *ma_request_parse (const char *text, gsize len, JsonNode **id_out, GError **error);

/* ---- replies and events: one line each, newline included ---- */

char *ma_reply_return (JsonNode *id, JsonNode *ret);
char *ma_reply_error (JsonNode *id, const GError *error);
char *ma_reply_error_class (JsonNode *id, const char *klass, const char *desc);
/* {"event": NAME, "data": DATA, "seq": SEQ, "timestamp": {...}} */
JsonNode *ma_event_new (const char *name, JsonNode *data, guint64 seq, gint64 realtime_us);
char *ma_event_to_line (JsonNode *event);

G_END_DECLS
