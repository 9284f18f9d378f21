/* fuzz-plugin-reply.c — fuzz target for the parser of what plugins answer: a session reply
 * line and a oneshot's closing detail line, on arbitrary bytes. */
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "plugin-reply.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *text = (const char *) data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) detail_error = NULL;
  g_autoptr(MaPluginReply) reply = ma_plugin_reply_parse (text, size, &error);
  g_autofree char *detail = ma_plugin_reply_parse_detail (text, size, &detail_error);

  if (reply != NULL)
    {
      g_assert (error == NULL);
      g_assert (reply->status != NULL);
      g_assert (g_utf8_validate (reply->status, -1, NULL));
      g_assert (reply->ok == (strcmp (reply->status, "ok") == 0));
      /* the reply's detail is what the detail parser finds in the same line */
      g_assert (g_strcmp0 (reply->detail, detail) == 0);
    }
  else
    g_assert (error != NULL && error->domain == MA_ERROR);

  if (detail != NULL)
    g_assert (detail_error == NULL && g_utf8_validate (detail, -1, NULL));
  else
    g_assert (detail_error != NULL && detail_error->domain == MA_ERROR);
  return 0;
}
