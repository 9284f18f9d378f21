/* fuzz-protocol.c — fuzz target for the wire format: framing, request validation and
 * reply encoding of arbitrary bytes, exactly as a session processes them. */
#include <stdint.h>

#include "protocol.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
on_frame (MaFrameKind kind, const char *text, gsize len, gpointer user_data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) id = NULL;
  g_autoptr(MaRequest) request = NULL;
  g_autofree char *reply = NULL;

  if (kind != MA_FRAME_REQUEST)
    return;
  request = ma_request_parse (text, len, &id, &error);
  if (request == NULL)
    reply = ma_reply_error (id, error);
  else
    reply = ma_reply_return (request->id, NULL);
  g_assert (reply != NULL && reply[strlen (reply) - 1] == '\n');
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autoptr(MaFramer) framer = ma_framer_new (4096);

  /* feed in two pieces to exercise state kept across reads */
  ma_framer_feed (framer, (const char *) data, size / 2, on_frame, NULL);
  ma_framer_feed (framer, (const char *) data + size / 2, size - size / 2, on_frame, NULL);
  ma_framer_feed (framer, "\n", 1, on_frame, NULL);
  return 0;
}
