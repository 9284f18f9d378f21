/* plugin-reply.h — what a plugin answers on stdout: a session plugin's reply line
 * ({"status": …, "detail": …}) and a oneshot plugin's closing {"detail": …} line; bytes in, result out. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  gboolean ok;  /* status is "ok" */
  char *status; /* as the plugin wrote it */
  char *detail; /* NULL when the plugin gave none (or not as a string) */
} MaPluginReply;

void ma_plugin_reply_free (MaPluginReply *reply);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaPluginReply, ma_plugin_reply_free)

/* One session reply line (without its newline). A line that is not a JSON object with a
 * "status" string is not a reply (NULL, MA_ERROR_INVALID_ARGUMENT): the caller logs it and
 * keeps waiting. A "detail" that is not a string is ignored. */
MaPluginReply *ma_plugin_reply_parse (const char *data, gsize len, GError **error);

/* A oneshot plugin's last stdout line: the "detail" string of a JSON object, or NULL with
 * MA_ERROR_INVALID_ARGUMENT when the line carries none. */
char *ma_plugin_reply_parse_detail (const char *data, gsize len, GError **error);

G_END_DECLS
