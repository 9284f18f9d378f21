/* session.h — one client of the protocol on one channel: frames requests, answers them
 * strictly in order, delivers events, and applies backpressure so no client grows memory. */
#pragma once

#include "channel.h"
#include "commands.h"

G_BEGIN_DECLS

#define MA_SESSION_MAX_QUEUED 256               /* requests waiting behind the one running */
#define MA_SESSION_MAX_OUTPUT (4 * 1024 * 1024) /* unread reply bytes before reading stops */

typedef struct _MaSession MaSession;

/* What the session tells its owner; each may be NULL. */
typedef struct
{
  void (*closed) (MaSession *session, gpointer user_data);         /* the peer went away */
  void (*host_connected) (MaSession *session, gpointer user_data); /* virtio: a host opened it */
} MaSessionCallbacks;

/* Takes fd. Requests are dispatched through commands; agent is only handed to the calls.
 * uid is the peer's (-1 for the virtio port: the host). callbacks is copied. */
MaSession *ma_session_new (MaAgent *agent, MaCommands *commands, int fd, MaChannelKind kind,
                           const char *name, gint64 uid, const MaSessionCallbacks *callbacks,
                           gpointer user_data);
MaSession *ma_session_ref (MaSession *self);
void ma_session_unref (MaSession *self);
/* Stop serving: closes the channel; answers still running are dropped. */
void ma_session_close (MaSession *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaSession, ma_session_unref)

const char *ma_session_get_name (MaSession *self);
gboolean ma_session_is_connected (MaSession *self);
/* Write an event line unless the peer is not reading (then it is counted as dropped:
 * the peer can still fetch it with the events command). */
void ma_session_send_event (MaSession *self, const char *line);
guint64 ma_session_get_dropped_events (MaSession *self);
/* Virtio: re-check whether a host is connected (SIGIO). */
void ma_session_check_host (MaSession *self);

G_END_DECLS
