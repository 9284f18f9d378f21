/* test-resume.c — resume detection fed with crafted RTM_NEWLINK messages through the link
 * monitor's own entry point (the one its netlink socket calls). A fake is needed here: the
 * kernel state "a virtio_net NIC receiving QEMU's announce" cannot be created on this host, so
 * the messages are crafted and the NIC's driver comes from a sysfs fixture (MA_SYSFS). */
#include <sys/socket.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "agent.h"
#include "json.h"
#include "resume.h"

#define WAIT_SECONDS 5

typedef struct
{
  char *root;
  MaAgent *agent;
  MaResume *resume;
} Fixture;

static void
add_driver (Fixture *f, const char *ifname, const char *driver)
{
  g_autofree char *dir = g_build_filename (f->root, "sys", "class", "net", ifname, "device", NULL);
  g_autofree char *link = g_build_filename (dir, "driver", NULL);
  g_autofree char *target = g_strdup_printf ("../../../../bus/virtio/drivers/%s", driver);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_assert_cmpint (symlink (target, link), ==, 0);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaConfig) config = ma_config_new_from_data (
    "[resume]\ncoalesce-ms=200\nvalidate=false\nannounce=never\n", &error);
  g_autofree char *sys = NULL, *state = NULL;

  g_assert_no_error (error);
  f->root = g_dir_make_tmp ("test-resume-XXXXXX", &error);
  g_assert_no_error (error);
  sys = g_build_filename (f->root, "sys", NULL);
  state = g_build_filename (f->root, "state", NULL);
  g_setenv ("MA_SYSFS", sys, TRUE);
  add_driver (f, "eth0", "virtio_net");
  add_driver (f, "eth1", "e1000");
  add_driver (f, "bond0", "virtio_net"); /* the bond filter must not depend on the driver */
  f->agent = ma_agent_new (g_steal_pointer (&config), state, &error);
  g_assert_no_error (error);
  f->resume = ma_resume_new (f->agent, &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->root);

  g_clear_pointer (&f->resume, ma_resume_free);
  g_clear_pointer (&f->agent, ma_agent_free);
  g_assert_cmpint (system (cmd), ==, 0);
  g_unsetenv ("MA_SYSFS");
  g_free (f->root);
}

static void
add_attr (GByteArray *msg, guint16 type, const void *data, gsize len)
{
  struct rtattr rta = { .rta_len = (unsigned short) RTA_LENGTH (len), .rta_type = type };
  static const guint8 pad[RTA_ALIGNTO] = { 0 };

  g_byte_array_append (msg, (const guint8 *) &rta, sizeof rta);
  g_byte_array_append (msg, data, (guint) len);
  g_byte_array_append (msg, pad, (guint) (RTA_ALIGN (len) - len));
}

/* One RTM_NEWLINK as the kernel sends it for a netdev notifier event. */
static GByteArray *
craft_newlink (GByteArray *buf, int ifindex, const char *ifname, guint32 event, const char *kind)
{
  GByteArray *msg = g_byte_array_new ();
  struct nlmsghdr hdr = { .nlmsg_type = RTM_NEWLINK };
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex,
                           .ifi_flags = 0x1043 /* UP|BROADCAST|RUNNING|MULTICAST */ };
  guint32 mtu = 1500;

  g_byte_array_append (msg, (const guint8 *) &hdr, sizeof hdr);
  g_byte_array_append (msg, (const guint8 *) &ifi, sizeof ifi);
  add_attr (msg, IFLA_IFNAME, ifname, strlen (ifname) + 1);
  add_attr (msg, IFLA_MTU, &mtu, sizeof mtu);
  if (kind != NULL)
    {
      GByteArray *nest = g_byte_array_new ();
      add_attr (nest, IFLA_INFO_KIND, kind, strlen (kind) + 1);
      add_attr (msg, IFLA_LINKINFO, nest->data, nest->len);
      g_byte_array_unref (nest);
    }
  if (event != 0)
    add_attr (msg, IFLA_EVENT, &event, sizeof event);
  ((struct nlmsghdr *) msg->data)->nlmsg_len = msg->len;
  g_byte_array_append (buf, msg->data, msg->len);
  g_byte_array_unref (msg);
  return buf;
}

static void
feed (Fixture *f, GByteArray *buf)
{
  ma_netlink_monitor_feed (ma_resume_get_monitor (f->resume), buf->data, buf->len);
  g_byte_array_unref (buf);
}

/* last (may be NULL): the data of the last such event, a reference the caller drops */
static guint
count_events (Fixture *f, const char *name, JsonObject **last)
{
  g_autoptr(JsonNode) since = ma_events_since (ma_agent_get_events (f->agent), 0, 1000);
  JsonArray *events = NULL;
  guint count = 0;

  g_assert_true (ma_json_get_array (json_node_get_object (since), "events", &events, NULL));
  for (guint i = 0; i < json_array_get_length (events); i++)
    {
      JsonObject *event = json_node_get_object (json_array_get_element (events, i));
      const char *event_name = NULL;
      ma_json_get_string (event, "event", &event_name, NULL);
      if (g_strcmp0 (event_name, name) != 0)
        continue;
      count++;
      if (last != NULL)
        {
          JsonObject *data = NULL;
          ma_json_get_object (event, "data", &data, NULL);
          /* the answer is the caller's only copy: keep the data past it */
          g_clear_pointer (last, json_object_unref);
          *last = data != NULL ? json_object_ref (data) : NULL;
        }
    }
  return count;
}

static void
wait_until_not_gathering (Fixture *f)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_SECONDS * G_USEC_PER_SEC;

  while (ma_resume_is_gathering (f->resume) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (ma_resume_is_gathering (f->resume));
}

static void
test_notify_peers_coalesced (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) keep = NULL;
  g_autoptr(JsonObject) resumed = NULL;
  JsonArray *signals = NULL, *interfaces = NULL;

  /* QEMU's announce: NOTIFY_PEERS then IGMP_RESEND, in rounds; a round may share a datagram */
  for (guint round = 0; round < 5; round++)
    {
      GByteArray *buf = g_byte_array_new ();
      craft_newlink (buf, 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL);
      craft_newlink (buf, 2, "eth0", IFLA_EVENT_IGMP_RESEND, NULL);
      feed (f, buf);
      g_assert_true (ma_resume_is_gathering (f->resume));
      g_assert_cmpuint (ma_resume_get_count (f->resume), ==, 0);
    }
  wait_until_not_gathering (f);
  g_assert_cmpuint (ma_resume_get_count (f->resume), ==, 1);
  g_assert_cmpuint (count_events (f, "RESUMED", &resumed), ==, 1);
  g_assert_true (ma_json_get_array (resumed, "signals", &signals, NULL));
  g_assert_cmpuint (json_array_get_length (signals), ==, 1);
  g_assert_cmpstr (json_array_get_string_element (signals, 0), ==, "notify-peers");
  g_assert_true (ma_json_get_array (resumed, "interfaces", &interfaces, NULL));
  g_assert_cmpstr (json_array_get_string_element (interfaces, 0), ==, "eth0");
  /* no operation in flight (idle): the event names none */
  g_assert_false (json_object_has_member (resumed, "operation"));

  /* a late round after the window belongs to the same resume */
  feed (f, craft_newlink (g_byte_array_new (), 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL));
  g_assert_false (ma_resume_is_gathering (f->resume));
  g_assert_cmpuint (ma_resume_get_count (f->resume), ==, 1);
}

static void
test_names_operation (Fixture *f, gconstpointer data)
{
  MaLifecycle *lc = ma_agent_get_lifecycle (f->agent);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) resumed = NULL;
  const char *operation = NULL;

  /* detected by itself, the resume belongs to the operation prepared on the source */
  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_PREPARED, "op-7", "test", &error));
  g_assert_no_error (error);
  feed (f, craft_newlink (g_byte_array_new (), 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL));
  wait_until_not_gathering (f);
  g_assert_cmpuint (count_events (f, "RESUMED", &resumed), ==, 1);
  g_assert_true (ma_json_get_string (resumed, "operation", &operation, NULL));
  g_assert_cmpstr (operation, ==, "op-7");
  g_assert_cmpint (ma_lifecycle_get_state (lc), ==, MA_STATE_RESUMED);
  g_assert_cmpstr (ma_lifecycle_get_operation (lc), ==, "op-7");
}

static void
test_holdoff_new_operation (Fixture *f, gconstpointer data)
{
  MaLifecycle *lc = ma_agent_get_lifecycle (f->agent);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) resumed = NULL;
  const char *operation = NULL;

  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_PREPARED, "op-1", "test", &error));
  feed (f, craft_newlink (g_byte_array_new (), 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL));
  wait_until_not_gathering (f);
  g_assert_cmpuint (ma_resume_get_count (f->resume), ==, 1);
  /* within the holdoff, the same operation: a late round of the same resume */
  feed (f, craft_newlink (g_byte_array_new (), 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL));
  g_assert_false (ma_resume_is_gathering (f->resume));
  g_assert_cmpuint (ma_resume_get_count (f->resume), ==, 1);
  /* a migration back at once: another operation prepared, its resume is a new one */
  g_assert_true (ma_lifecycle_enter (lc, MA_STATE_PREPARED, "op-2", "test", &error));
  g_assert_no_error (error);
  feed (f, craft_newlink (g_byte_array_new (), 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL));
  g_assert_true (ma_resume_is_gathering (f->resume));
  wait_until_not_gathering (f);
  g_assert_cmpuint (ma_resume_get_count (f->resume), ==, 2);
  g_assert_cmpuint (count_events (f, "RESUMED", &resumed), ==, 2);
  g_assert_true (ma_json_get_string (resumed, "operation", &operation, NULL));
  g_assert_cmpstr (operation, ==, "op-2");
}

static void
test_corroborated (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonObject) resumed = NULL;
  JsonArray *signals = NULL;

  ma_resume_note_signal (f->resume, "host-reconnect");
  g_assert_false (ma_resume_is_gathering (f->resume)); /* not a resume on its own */
  feed (f, craft_newlink (g_byte_array_new (), 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL));
  wait_until_not_gathering (f);
  g_assert_cmpuint (count_events (f, "RESUMED", &resumed), ==, 1);
  g_assert_true (ma_json_get_array (resumed, "signals", &signals, NULL));
  g_assert_cmpuint (json_array_get_length (signals), ==, 2);
  g_assert_cmpstr (json_array_get_string_element (signals, 1), ==, "host-reconnect");
}

static void
test_ignored (Fixture *f, gconstpointer data)
{
  GByteArray *buf = g_byte_array_new ();

  craft_newlink (buf, 3, "eth1", IFLA_EVENT_NOTIFY_PEERS, NULL);   /* not virtio_net */
  craft_newlink (buf, 4, "bond0", IFLA_EVENT_NOTIFY_PEERS, "bond"); /* a bonding failover */
  craft_newlink (buf, 5, "veth9", IFLA_EVENT_NOTIFY_PEERS, "veth"); /* no driver at all */
  craft_newlink (buf, 2, "eth0", IFLA_EVENT_IGMP_RESEND, NULL);     /* not NOTIFY_PEERS */
  craft_newlink (buf, 2, "eth0", 0, NULL);                          /* a plain change */
  feed (f, buf);
  g_assert_false (ma_resume_is_gathering (f->resume));
  g_assert_cmpuint (ma_resume_get_count (f->resume), ==, 0);
  g_assert_cmpuint (count_events (f, "RESUMED", NULL), ==, 0);

  /* truncated and foreign messages are skipped, the stream goes on */
  {
    struct nlmsghdr bad = { .nlmsg_len = sizeof bad, .nlmsg_type = RTM_NEWLINK };
    struct nlmsghdr done = { .nlmsg_len = sizeof done, .nlmsg_type = NLMSG_DONE };
    buf = g_byte_array_new ();
    g_byte_array_append (buf, (const guint8 *) &bad, sizeof bad);
    g_byte_array_append (buf, (const guint8 *) &done, sizeof done);
    craft_newlink (buf, 2, "eth0", IFLA_EVENT_NOTIFY_PEERS, NULL);
    feed (f, buf);
  }
  g_assert_true (ma_resume_is_gathering (f->resume));
  wait_until_not_gathering (f);
  g_assert_cmpuint (count_events (f, "RESUMED", NULL), ==, 1);
}

static void
test_parse_link (void)
{
  g_autoptr(GByteArray) buf = craft_newlink (g_byte_array_new (), 7, "eth0",
                                             IFLA_EVENT_NOTIFY_PEERS, "bond");
  MaNlLink link;

  g_assert_true (ma_netlink_parse_link ((const struct nlmsghdr *) buf->data, &link));
  g_assert_cmpint (link.ifindex, ==, 7);
  g_assert_cmpstr (link.name, ==, "eth0");
  g_assert_cmpstr (link.kind, ==, "bond");
  g_assert_cmpint (link.event, ==, IFLA_EVENT_NOTIFY_PEERS);
  g_assert_cmpuint (link.mtu, ==, 1500);
  g_assert_cmpint (link.carrier, ==, -1);
  ma_nl_link_clear (&link);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/resume/parse-link", test_parse_link);
  g_test_add ("/resume/notify-peers-coalesced", Fixture, NULL, fixture_setup,
              test_notify_peers_coalesced, fixture_teardown);
  g_test_add ("/resume/names-operation", Fixture, NULL, fixture_setup, test_names_operation,
              fixture_teardown);
  g_test_add ("/resume/holdoff-new-operation", Fixture, NULL, fixture_setup,
              test_holdoff_new_operation, fixture_teardown);
  g_test_add ("/resume/corroborated", Fixture, NULL, fixture_setup, test_corroborated,
              fixture_teardown);
  g_test_add ("/resume/ignored", Fixture, NULL, fixture_setup, test_ignored, fixture_teardown);
  return g_test_run ();
}
