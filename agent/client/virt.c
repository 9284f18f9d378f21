/* virt.c — libvirt glue for migctl: connections on GLib's main loop (libvirt-glib), domain
 * lookup, the agent's channel stream as a non-blocking transport, qemu-ga through libvirt. */
#include "virt.h"

#include <libvirt-glib/libvirt-glib.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include "migctl-error.h"

/* sync-delimited is sent again after this long, doubling from the first to the last (bytes
 * written before the guest's agent opened its port are lost, and it opens it within moments of
 * a boot or a migration's end: the first retries come soon) */
#define MA_VIRT_SYNC_FIRST_ATTEMPT_MS 100
#define MA_VIRT_SYNC_ATTEMPT_MS 1000

static void
ignore_libvirt_error (void *opaque, virErrorPtr err)
{
  /* errors are read with virGetLastError and reported by migctl itself */
}

void
ma_virt_init (void)
{
  static gsize done = 0;

  if (g_once_init_enter (&done))
    {
      virSetErrorFunc (NULL, ignore_libvirt_error);
      gvir_event_register ();
      g_once_init_leave (&done, 1);
    }
}

void
ma_virt_set_error (GError **error, int code, const char *what)
{
  const char *msg = virGetLastErrorMessage ();

  g_set_error (error, MIGCTL_ERROR, code, "%s: %s", what, msg != NULL ? msg : "unknown error");
}

virConnectPtr
ma_virt_open (const char *uri, gboolean keepalive, GError **error)
{
  virConnectPtr conn;

  ma_virt_init ();
  conn = virConnectOpen (uri);
  if (conn == NULL)
    {
      g_autofree char *what = g_strdup_printf ("cannot connect to libvirt at %s",
                                               uri != NULL ? uri : "its default URI");
      ma_virt_set_error (error, MIGCTL_EXIT_CONNECTION, what);
      return NULL;
    }
  /* a daemon that stops answering is declared lost instead of hanging every call (one
   * command is bounded by its own timeout and spares the round trip) */
  if (keepalive)
    virConnectSetKeepAlive (conn, MA_VIRT_KEEPALIVE_INTERVAL_S, MA_VIRT_KEEPALIVE_COUNT);
  /* No close callback (one round trip to the daemon): the connection's socket is watched by
   * the GLib loop through gvir_event_register, so a daemon that goes away wakes every wait,
   * which then asks virConnectIsAlive. */
  return conn;
}

gboolean
ma_virt_connection_lost (virConnectPtr conn)
{
  return conn == NULL || virConnectIsAlive (conn) != 1;
}

virDomainPtr
ma_virt_lookup (virConnectPtr conn, const char *name, GError **error)
{
  virDomainPtr dom = virDomainLookupByName (conn, name);

  if (dom == NULL)
    dom = virDomainLookupByUUIDString (conn, name);
  if (dom == NULL)
    {
      virErrorPtr err = virGetLastError ();
      if (err != NULL && err->code != VIR_ERR_NO_DOMAIN && err->code != VIR_ERR_INVALID_ARG)
        {
          ma_virt_set_error (error, MIGCTL_EXIT_CONNECTION, "cannot look up the domain");
          return NULL;
        }
      g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_NO_DOMAIN,
                   "no domain named '%s' on this libvirt connection (virsh list --all)", name);
    }
  return dom;
}

static gboolean
domain_not_running (virDomainPtr dom, GError **error)
{
  if (virDomainIsActive (dom) == 1)
    return FALSE;
  g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_DOMAIN_NOT_RUNNING,
               "domain '%s' is not running: its agent can only be reached while it runs "
               "(virsh start %s)", virDomainGetName (dom), virDomainGetName (dom));
  return TRUE;
}

virDomainPtr
ma_virt_lookup_running (virConnectPtr conn, const char *name, GError **error)
{
  virDomainPtr dom = ma_virt_lookup (conn, name, error);

  if (dom != NULL && domain_not_running (dom, error))
    g_clear_pointer (&dom, virDomainFree);
  return dom;
}

/* ---------------------------------------------------------------- the channel transport */

typedef struct
{
  MaTransport parent;
  virConnectPtr conn;
  virStreamPtr stream;
  int events; /* what the stream callback reported since the last wait */
  gboolean broken;
} ChannelTransport;

static void
channel_event (virStreamPtr stream, int events, void *opaque)
{
  ChannelTransport *self = opaque;

  self->events |= events;
  /* level-triggered: stop listening until the reader asks again, or the loop would spin */
  virStreamEventUpdateCallback (stream, 0);
}

static gboolean
timeout_reached (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

gboolean
ma_virt_wait_flag (virConnectPtr conn, const gboolean *flag, gint64 deadline)
{
  gboolean expired = FALSE;
  guint timer = 0;

  if (deadline >= 0)
    {
      gint64 left = deadline - g_get_monotonic_time ();
      if (left <= 0)
        return g_atomic_int_get (flag);
      timer = g_timeout_add ((guint) ((left + 999) / 1000), timeout_reached, &expired);
    }
  /* the flag may be set by another thread, which then wakes the context up */
  while (!g_atomic_int_get (flag) && !expired && !ma_virt_connection_lost (conn))
    g_main_context_iteration (NULL, TRUE);
  if (timer != 0 && !expired)
    g_source_remove (timer);
  return g_atomic_int_get (flag);
}

/* Wait for one of `want` (VIR_STREAM_EVENT_*) or an error/hangup. FALSE at the deadline. */
static gboolean
channel_wait (ChannelTransport *self, int want, gint64 deadline)
{
  gboolean fired = FALSE;

  self->events = 0;
  if (virStreamEventUpdateCallback (self->stream,
                                    want | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP) < 0)
    return TRUE; /* the stream is gone: the next call says why */
  while (self->events == 0)
    {
      /* the flag is the event mask: ma_virt_wait_flag reads it as a gboolean */
      fired = ma_virt_wait_flag (self->conn, &self->events, deadline);
      if (!fired)
        break;
    }
  virStreamEventUpdateCallback (self->stream, 0);
  return fired || ma_virt_connection_lost (self->conn);
}

static gboolean
channel_set_error (ChannelTransport *self, GError **error, const char *what)
{
  /* read libvirt's error first: every later API call resets it */
  g_autofree char *msg = g_strdup (virGetLastErrorMessage ());

  if (ma_virt_connection_lost (self->conn))
    g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_CONNECTION,
                 "the libvirt connection was lost (%s)", what);
  else
    g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_CONNECTION, "%s: %s%s", what, msg,
                 strstr (msg, "I/O") != NULL ? " (another client may have taken the channel "
                                               "over with --force)" : "");
  self->broken = TRUE;
  return FALSE;
}

static gssize
channel_read (MaTransport *transport, guint8 *buf, gsize len, gint64 deadline,
              gboolean *timed_out, GError **error)
{
  ChannelTransport *self = (ChannelTransport *) transport;

  *timed_out = FALSE;
  for (;;)
    {
      int n;

      if (self->broken || ma_virt_connection_lost (self->conn))
        return channel_set_error (self, error, "reading the agent's channel") ? 0 : -1;
      n = virStreamRecv (self->stream, (char *) buf, len);
      if (n >= 0)
        return n;
      if (n != -2)
        return channel_set_error (self, error, "reading the agent's channel") ? 0 : -1;
      if (!channel_wait (self, VIR_STREAM_EVENT_READABLE, deadline))
        {
          *timed_out = TRUE;
          return -1;
        }
    }
}

static gboolean
channel_write (MaTransport *transport, const char *data, gsize len, GError **error)
{
  ChannelTransport *self = (ChannelTransport *) transport;

  while (len > 0)
    {
      int n;

      if (self->broken || ma_virt_connection_lost (self->conn))
        return channel_set_error (self, error, "writing to the agent's channel");
      n = virStreamSend (self->stream, data, len);
      if (n == -2)
        {
          channel_wait (self, VIR_STREAM_EVENT_WRITABLE, -1);
          continue;
        }
      if (n < 0)
        return channel_set_error (self, error, "writing to the agent's channel");
      data += n;
      len -= (gsize) n;
    }
  return TRUE;
}

static void
channel_free (MaTransport *transport)
{
  ChannelTransport *self = (ChannelTransport *) transport;

  if (self->stream != NULL)
    {
      virStreamEventRemoveCallback (self->stream);
      if (!self->broken)
        virStreamAbort (self->stream);
      virStreamFree (self->stream);
    }
  if (self->conn != NULL)
    virConnectClose (self->conn);
  g_free (self);
}

static const MaTransportClass channel_transport_class = {
  .name = "libvirt-channel",
  .read = channel_read,
  .write = channel_write,
  .free = channel_free,
};

/* Does the domain's XML declare the agent's channel? */
static gboolean
domain_has_agent_channel (virDomainPtr dom)
{
  g_autofree char *xml = virDomainGetXMLDesc (dom, 0);

  return xml == NULL || strstr (xml, "name='" MA_VIRT_AGENT_CHANNEL "'") != NULL
         || strstr (xml, "name=\"" MA_VIRT_AGENT_CHANNEL "\"") != NULL;
}

MaTransport *
ma_virt_open_agent_channel (virDomainPtr dom, gboolean force, GError **error)
{
  g_autoptr(MaTransport) transport = NULL;
  ChannelTransport *self = g_new0 (ChannelTransport, 1);
  virConnectPtr conn = virDomainGetConnect (dom);

  self->parent.klass = &channel_transport_class;
  transport = &self->parent;
  virConnectRef (conn);
  self->conn = conn;
  self->stream = virStreamNew (conn, VIR_STREAM_NONBLOCK);
  if (self->stream == NULL)
    {
      self->broken = TRUE;
      ma_virt_set_error (error, MIGCTL_EXIT_CONNECTION, "cannot create a libvirt stream");
      return NULL;
    }
  if (virDomainOpenChannel (dom, MA_VIRT_AGENT_CHANNEL, self->stream,
                            force ? VIR_DOMAIN_CHANNEL_FORCE : 0) < 0)
    {
      g_autofree char *msg = g_strdup (virGetLastErrorMessage ());

      self->broken = TRUE;
      if (domain_not_running (dom, error))
        return NULL;
      if (strstr (msg, "Active channel stream exists") != NULL)
        g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_CHANNEL_BUSY,
                     "another client holds the agent's channel of '%s' (%s); --force takes it "
                     "over and that client's stream fails",
                     virDomainGetName (dom), msg);
      else if (!domain_has_agent_channel (dom))
        g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_NO_CHANNEL,
                     "domain '%s' has no " MA_VIRT_AGENT_CHANNEL " channel; add this to its "
                     "<devices> (virsh edit %s), then restart it:\n"
                     "  <channel type='unix'>\n"
                     "    <target type='virtio' name='" MA_VIRT_AGENT_CHANNEL "'/>\n"
                     "  </channel>",
                     virDomainGetName (dom), virDomainGetName (dom));
      else
        g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_CONNECTION,
                     "cannot open the agent's channel of '%s': %s", virDomainGetName (dom), msg);
      return NULL;
    }
  if (virStreamEventAddCallback (self->stream, 0, channel_event, self, NULL) < 0)
    {
      ma_virt_set_error (error, MIGCTL_EXIT_CONNECTION, "cannot watch the agent's channel");
      return NULL;
    }
  return g_steal_pointer (&transport);
}

MaClient *
ma_virt_agent_connect (virDomainPtr dom, gboolean force, guint timeout_ms,
                       const char *first_command, JsonObject *first_args, GError **error)
{
  g_autoptr(MaClient) client = NULL;
  MaTransport *transport = ma_virt_open_agent_channel (dom, force, error);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  guint attempt_ms = MA_VIRT_SYNC_FIRST_ATTEMPT_MS;

  if (transport == NULL)
    return NULL;
  client = ma_client_new (transport, timeout_ms);
  if (first_command != NULL)
    ma_client_set_pipelined (client, first_command, first_args);
  for (;;)
    {
      g_autoptr(GError) local = NULL;
      gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;

      ma_client_set_timeout (client, (guint) CLAMP (left_ms, 1, attempt_ms));
      attempt_ms = MIN (attempt_ms * 2, MA_VIRT_SYNC_ATTEMPT_MS);
      if (ma_client_sync (client, &local))
        break;
      if (!g_error_matches (local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        {
          g_propagate_error (error, g_steal_pointer (&local));
          return NULL;
        }
      if (g_get_monotonic_time () >= deadline)
        {
          g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_AGENT_SILENT,
                       "nothing answered on the " MA_VIRT_AGENT_CHANNEL " channel of '%s' "
                       "within %u s: is the migration-agent package installed and running in "
                       "the guest?",
                       virDomainGetName (dom), (timeout_ms + 999) / 1000);
          return NULL;
        }
    }
  ma_client_set_timeout (client, timeout_ms);
  return g_steal_pointer (&client);
}

char *
ma_virt_qga_command (virDomainPtr dom, const char *json, int timeout_s, GError **error)
{
  char *reply = virDomainQemuAgentCommand (dom, json, timeout_s, 0);

  if (reply == NULL)
    ma_virt_set_error (error, MIGCTL_EXIT_ERROR_REPLY, "qemu-ga");
  return reply;
}
