/* commands.h — the command table (name → handler), allow/block configuration, and
 * MaCall: one request in flight, answered exactly once, possibly from a later main-loop turn. */
#pragma once

#include <json-glib/json-glib.h>

#include "error.h"
#include "protocol.h"

G_BEGIN_DECLS

typedef struct _MaAgent MaAgent; /* agent.h; a call only carries it */
typedef struct _MaCall MaCall;
typedef struct _MaCommands MaCommands;

typedef void (*MaCallReplyFunc) (MaCall *call, const char *line, gpointer user_data);
typedef void (*MaCommandFunc) (MaCall *call, gpointer user_data);

/* ---- calls ---- */

MaCall *ma_call_new (MaAgent *agent, MaRequest *request /* transfer full */,
                     MaCallReplyFunc reply_func, gpointer user_data, GDestroyNotify notify);
MaCall *ma_call_ref (MaCall *call);
void ma_call_unref (MaCall *call);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaCall, ma_call_unref)

const char *ma_call_get_name (MaCall *call);
JsonObject *ma_call_get_arguments (MaCall *call); /* never NULL */
JsonNode *ma_call_get_id (MaCall *call);
MaAgent *ma_call_get_agent (MaCall *call);
/* Peer uid of the client (-1 for the virtio port, i.e. the host). */
gint64 ma_call_get_peer_uid (MaCall *call);
void ma_call_set_peer_uid (MaCall *call, gint64 uid);
const char *ma_call_get_peer (MaCall *call);
void ma_call_set_peer (MaCall *call, const char *peer);
/* The reply is written with a leading 0xFF (sync-delimited). */
void ma_call_set_delimited (MaCall *call, gboolean delimited);
gboolean ma_call_is_done (MaCall *call);

/* Arguments must only contain these members (NULL-terminated). On failure the
 * call is answered with the error and FALSE is returned. */
gboolean ma_call_check_arguments (MaCall *call, const char *const *allowed);

/* The optional (or required) "operation" argument: 1 to MA_OPERATION_ID_MAX characters.
 * On failure the call is answered with the error and FALSE is returned. */
#define MA_OPERATION_ID_MAX 128
gboolean ma_call_get_operation (MaCall *call, gboolean required, const char **operation);

/* Answer once: ret/error are taken; a second answer is a programming error. */
void ma_call_return (MaCall *call, JsonNode *ret);
void ma_call_return_error (MaCall *call, GError *error);
void ma_call_return_new_error (MaCall *call, MaError code, const char *format, ...)
  G_GNUC_PRINTF (3, 4);

/* ---- command table ---- */

MaCommands *ma_commands_new (void);
void ma_commands_free (MaCommands *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaCommands, ma_commands_free)

void ma_commands_add (MaCommands *self, const char *name, MaCommandFunc func,
                      gpointer user_data, const char *summary);
/* allow: when non-empty, only these commands run (sync commands always do).
 * block: these never run. Unknown names are reported in the error. */
gboolean ma_commands_configure (MaCommands *self, const char *const *allow,
                                const char *const *block, GError **error);
gboolean ma_commands_is_enabled (MaCommands *self, const char *name);
/* Run the handler or answer CommandNotFound. */
void ma_commands_dispatch (MaCommands *self, MaCall *call);

/* [{"name", "enabled", "summary"}] sorted by name. */
JsonNode *ma_commands_to_json (MaCommands *self);

G_END_DECLS
