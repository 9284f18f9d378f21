/* client.h — the client side of the protocol, used by migctl, the qemu-ga hook bridge and
 * the tests: connect, resynchronise with sync-delimited, execute, and collect events. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MA_CLIENT_DEFAULT_TIMEOUT_MS 60000
#define MA_CLIENT_MAX_REPLY_BYTES (16 * 1024 * 1024)

typedef struct _MaClient MaClient;

/* A transport carries the protocol's bytes to one agent: a UNIX socket (below) or a libvirt
 * channel stream (virt-channel.h). read () returns bytes read, 0 at end of stream, -1 on an
 * error or when the deadline (monotonic µs, -1 = none) passed (then *timed_out is TRUE). */
typedef struct _MaTransport MaTransport;
typedef struct
{
  const char *name;
  gssize (*read) (MaTransport *self, guint8 *buf, gsize len, gint64 deadline,
                  gboolean *timed_out, GError **error);
  gboolean (*write) (MaTransport *self, const char *data, gsize len, GError **error);
  void (*free) (MaTransport *self);
} MaTransportClass;
struct _MaTransport
{
  const MaTransportClass *klass;
};
void ma_transport_free (MaTransport *transport);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaTransport, ma_transport_free)

/* A client over any transport (it takes ownership). */
MaClient *ma_client_new (MaTransport *transport, guint timeout_ms);

/* uri: unix:PATH (or a bare path). Connection errors are G_IO_ERROR. */
MaClient *ma_client_connect (const char *uri, guint timeout_ms, GError **error);
void ma_client_free (MaClient *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaClient, ma_client_free)

void ma_client_set_timeout (MaClient *self, guint timeout_ms);

/* Send 0xFF and sync-delimited with a random id, and discard everything until its reply. */
gboolean ma_client_sync (MaClient *self, GError **error);

/* A request sent with every sync, in the same round trip: the next ma_client_execute (_text)
 * of this command with these very args (the same pointer) waits for its reply instead of
 * sending it. Only for a request that changes nothing: a sync that is not answered in time is
 * sent again with it. */
void ma_client_set_pipelined (MaClient *self, const char *command, JsonObject *args);

/* Whether a command only reads (ping, info, status, blockers, plugins, events): the ones a
 * client may pipeline behind a sync. */
gboolean ma_client_command_only_reads (const char *command);

/* Execute a command; args may be NULL. Returns the "return" member. An error reply
 * becomes MA_ERROR with the code of its class (ma_error_from_class) and its desc. */
JsonNode *ma_client_execute (MaClient *self, const char *command, JsonObject *args, GError **error);

/* The same, but the "return" member as the agent wrote it (one line of JSON text, checked
 * strictly, never built into a tree): for large replies printed as they are. */
char *ma_client_execute_text (MaClient *self, const char *command, JsonObject *args,
                              GError **error);

/* Next event (queued while executing, or read now), or NULL at timeout (no error)
 * or on a connection error (error set). timeout_ms < 0 waits forever. */
JsonNode *ma_client_next_event (MaClient *self, int timeout_ms, GError **error);

/* Raw access for tests: write bytes, read one line (without the newline). */
gboolean ma_client_write_raw (MaClient *self, const char *data, gsize len, GError **error);
char *ma_client_read_line (MaClient *self, int timeout_ms, GError **error);

G_END_DECLS
