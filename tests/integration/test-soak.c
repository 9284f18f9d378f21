/* test-soak.c — a soak of the real daemon: read-only requests of every kind (each answer compared),
 * prepare/quiesce/thaw cycles with real plugins, garbage, half-frames, clients that vanish; no growth. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "daemon-fixture.h"
#include "json.h"

/* `test-soak --long` (tests/bench/bench-soak.sh): the real length. The suite runs the short
 * form: same mix, same checks, fewer rounds, and an event ring of 16 so that the ring is full
 * (its steady state) within the warm-up. */
static gboolean soak_long;

#define READ_TIMEOUT_MS 120000
#define PIPELINE 64 /* requests in flight on the main connection (the agent queues 256) */

/* Growth allowed in the suite between the end of the warm-up and the end of the run, RSS and
 * private anonymous memory alike. The daemon's own structures must not grow at all; what
 * moves without being a leak is glibc's heap: the top of an arena is trimmed only past
 * M_TRIM_THRESHOLD (128 KiB), and the worker threads' arenas hold freed chunks of their last
 * job (a /proc scan for blockers or prepare). 256 KiB is two trim thresholds: a leak of even
 * 100 bytes a request would pass it within the first 3,000 requests of the short run. */
#define SHORT_GROWTH_BOUND_KIB 256

typedef struct
{
  int fd;
  GString *in;
} Conn;

typedef struct
{
  gint64 rss_kib;
  gint64 anon_kib;
  gint64 fds;
  gint64 events_buffered;
  gint64 events_bytes;
  gint64 state_bytes;
} Sample;

typedef struct
{
  MaTestDaemon *daemon;
  char *plugin_dir;
  Conn main;
  Conn noise;
  char *info_prefix; /* info's answer up to its id */
  guint64 next_id;
  guint64 requests;
  guint64 cycles;
  guint64 garbage;
  guint64 vanished;
  guint64 events_seen;
  gint64 last_seq;
  gint64 events_after; /* the `after` of this batch's events requests */
  char state[32];
} Soak;

static void
conn_open (Conn *c, const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };

  g_assert_cmpuint (strlen (path), <, sizeof addr.sun_path);
  strcpy (addr.sun_path, path);
  c->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_assert_cmpint (c->fd, >=, 0);
  g_assert_cmpint (connect (c->fd, (struct sockaddr *) &addr, sizeof addr), ==, 0);
  c->in = g_string_new (NULL);
}

static void
conn_close (Conn *c)
{
  if (c->fd >= 0)
    close (c->fd);
  c->fd = -1;
  if (c->in != NULL)
    g_string_free (c->in, TRUE);
  c->in = NULL;
}

static void
conn_write (Conn *c, const char *data, gsize len)
{
  while (len > 0)
    {
      ssize_t n = send (c->fd, data, len, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        g_error ("send: %s", g_strerror (errno));
      data += n;
      len -= (gsize) n;
    }
}

/* The next line (without its newline), events included; the caller frees it. */
static char *
conn_read_line (Conn *c)
{
  for (;;)
    {
      char *nl = memchr (c->in->str, '\n', c->in->len);
      char buf[65536];
      struct pollfd pfd = { c->fd, POLLIN, 0 };
      ssize_t n;

      if (nl != NULL)
        {
          char *line = g_strndup (c->in->str, (gsize) (nl - c->in->str));
          g_string_erase (c->in, 0, nl - c->in->str + 1);
          return line;
        }
      if (poll (&pfd, 1, READ_TIMEOUT_MS) != 1)
        g_error ("no answer within %d ms", READ_TIMEOUT_MS);
      n = recv (c->fd, buf, sizeof buf, 0);
      if (n <= 0)
        g_error ("the agent closed the connection (%s)", n < 0 ? g_strerror (errno) : "EOF");
      g_string_append_len (c->in, buf, n);
    }
}

static JsonObject *
parse_object (const char *line)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = ma_json_parse (line, strlen (line), &error);

  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    g_error ("not a JSON object (%s): %s", error ? error->message : "other type", line);
  return json_object_ref (json_node_get_object (node));
}

/* The next answer on c (events are counted and checked in order, then skipped). */
static char *
read_answer (Soak *s, Conn *c)
{
  for (;;)
    {
      g_autofree char *line = conn_read_line (c);
      if (g_str_has_prefix (line, "{\"event\":"))
        {
          g_autoptr(JsonObject) ev = parse_object (line);
          if (c == &s->main)
            {
              gint64 seq = json_object_get_int_member (ev, "seq");
              if (seq <= s->last_seq)
                g_error ("event seq %" G_GINT64_FORMAT " after %" G_GINT64_FORMAT ": %s", seq,
                         s->last_seq, line);
              s->last_seq = seq;
              s->events_seen++;
            }
          continue;
        }
      return g_steal_pointer (&line);
    }
}

/* {"return": …, "id": id} → the return member; anything else fails the run. */
static JsonObject *
expect_return_object (const char *line, guint64 id)
{
  g_autoptr(JsonObject) obj = parse_object (line);
  JsonNode *ret = json_object_get_member (obj, "return");

  if (ret == NULL || !JSON_NODE_HOLDS_OBJECT (ret) || !json_object_has_member (obj, "id")
      || json_object_get_int_member (obj, "id") != (gint64) id)
    g_error ("expected an object answer with id %" G_GUINT64_FORMAT ", got: %s", id, line);
  return json_object_ref (json_node_get_object (ret));
}

static gint64
kib_field (const char *path, const char *field)
{
  g_autofree char *text = NULL;
  const char *p;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return -1;
  p = strstr (text, field);
  if (p == NULL)
    return -1;
  return g_ascii_strtoll (p + strlen (field), NULL, 10);
}

static gint64
dir_bytes (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;
  gint64 total = 0;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      struct stat st;
      if (lstat (child, &st) < 0)
        continue;
      total += S_ISDIR (st.st_mode) ? dir_bytes (child) : st.st_size;
    }
  return total;
}

/* Every request kind that reads only, in a fixed order; each answer is compared. */
typedef enum
{
  REQ_PING,
  REQ_PING_STRING_ID,
  REQ_SYNC,
  REQ_GUEST_SYNC,
  REQ_SYNC_DELIMITED,
  REQ_GUEST_SYNC_DELIMITED,
  REQ_INFO,
  REQ_STATUS,
  REQ_EVENTS,
  REQ_PLUGINS,
  REQ_SNAPSHOT,
  REQ_FREEZE_GUARD,
  REQ_CHEAP_KINDS,
  /* scans of /proc or plugin runs: once a batch */
  REQ_BLOCKERS = REQ_CHEAP_KINDS,
  REQ_CHECK,
  REQ_DIRTY_RATE,
  REQ_KINDS,
} ReqKind;

static void
append_request (Soak *s, GString *out, ReqKind kind, guint64 id)
{
  switch (kind)
    {
    case REQ_PING:
      g_string_append_printf (out, "{\"execute\":\"ping\",\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_PING_STRING_ID:
      /* a string id is echoed as sent too */
      g_string_append_printf (out, "{\"execute\":\"ping\",\"id\":\"p-%" G_GUINT64_FORMAT "\"}\n",
                              id);
      break;
    case REQ_SYNC:
    case REQ_GUEST_SYNC:
    case REQ_SYNC_DELIMITED:
    case REQ_GUEST_SYNC_DELIMITED:
      {
        static const char *const names[] = { "sync", "guest-sync", "sync-delimited",
                                             "guest-sync-delimited" };
        g_string_append_printf (out,
                                "{\"execute\":\"%s\",\"arguments\":{\"id\":%" G_GUINT64_FORMAT
                                "},\"id\":%" G_GUINT64_FORMAT "}\n",
                                names[kind - REQ_SYNC], id * 7 + 3, id);
        break;
      }
    case REQ_INFO:
      g_string_append_printf (out, "{\"execute\":\"info\",\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_STATUS:
      g_string_append_printf (out, "{\"execute\":\"status\",\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_EVENTS:
      /* the last twenty or so: the whole ring is read at every sample */
      g_string_append_printf (out,
                              "{\"execute\":\"events\",\"arguments\":{\"after\":%" G_GINT64_FORMAT
                              ",\"limit\":1000},\"id\":%" G_GUINT64_FORMAT "}\n", s->events_after,
                              id);
      break;
    case REQ_PLUGINS:
      g_string_append_printf (out, "{\"execute\":\"plugins\",\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_SNAPSHOT:
      g_string_append_printf (out, "{\"execute\":\"snapshot\",\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_FREEZE_GUARD:
      g_string_append_printf (out, "{\"execute\":\"freeze-guard\",\"id\":%" G_GUINT64_FORMAT "}\n",
                              id);
      break;
    case REQ_BLOCKERS:
      g_string_append_printf (out, "{\"execute\":\"blockers\",\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_CHECK:
      g_string_append_printf (out, "{\"execute\":\"check\",\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_DIRTY_RATE:
      g_string_append_printf (out,
                              "{\"execute\":\"dirty-rate\",\"arguments\":{\"seconds\":0.1,\"top\":"
                              "3},\"id\":%" G_GUINT64_FORMAT "}\n", id);
      break;
    case REQ_KINDS:
    default:
      g_assert_not_reached ();
    }
}

static void
check_answer (Soak *s, ReqKind kind, guint64 id, const char *line)
{
  g_autofree char *expected = NULL;
  g_autoptr(JsonObject) ret = NULL;

  switch (kind)
    {
    case REQ_PING:
      expected = g_strdup_printf ("{\"return\":{},\"id\":%" G_GUINT64_FORMAT "}", id);
      break;
    case REQ_PING_STRING_ID:
      expected = g_strdup_printf ("{\"return\":{},\"id\":\"p-%" G_GUINT64_FORMAT "\"}", id);
      break;
    case REQ_SYNC:
    case REQ_GUEST_SYNC:
      expected = g_strdup_printf ("{\"return\":%" G_GUINT64_FORMAT ",\"id\":%" G_GUINT64_FORMAT
                                  "}", id * 7 + 3, id);
      break;
    case REQ_SYNC_DELIMITED:
    case REQ_GUEST_SYNC_DELIMITED:
      expected = g_strdup_printf ("\xff{\"return\":%" G_GUINT64_FORMAT ",\"id\":%" G_GUINT64_FORMAT
                                  "}", id * 7 + 3, id);
      break;
    case REQ_INFO:
      expected = g_strdup_printf ("%s%" G_GUINT64_FORMAT "}", s->info_prefix, id);
      break;
    case REQ_STATUS:
      ret = expect_return_object (line, id);
      if (g_strcmp0 (json_object_get_string_member_with_default (ret, "state", ""), s->state)
          != 0)
        g_error ("status says state %s, expected %s: %s",
                 json_object_get_string_member_with_default (ret, "state", "?"), s->state, line);
      if (json_object_get_int_member_with_default (ret, "last-event-seq", -1) < s->last_seq)
        g_error ("status's last-event-seq is behind the events seen (%" G_GINT64_FORMAT "): %s",
                 s->last_seq, line);
      return;
    case REQ_EVENTS:
      {
        JsonArray *events;
        gint64 first, last, prev = 0;
        ret = expect_return_object (line, id);
        events = json_object_get_array_member (ret, "events");
        first = json_object_get_int_member (ret, "first-seq");
        last = json_object_get_int_member (ret, "last-seq");
        if (json_object_get_boolean_member (ret, "more") || last < s->last_seq)
          g_error ("events: last-seq %" G_GINT64_FORMAT " (seen up to %" G_GINT64_FORMAT
                   "), more %d", last, s->last_seq,
                   json_object_get_boolean_member (ret, "more"));
        /* from the first after `after` that the ring still holds */
        first = MAX (first, s->events_after + 1);
        if ((gint64) json_array_get_length (events) != last - first + 1)
          g_error ("events after %" G_GINT64_FORMAT ": %u events for seq %" G_GINT64_FORMAT
                   "..%" G_GINT64_FORMAT, s->events_after, json_array_get_length (events), first,
                   last);
        for (guint i = 0; i < json_array_get_length (events); i++)
          {
            gint64 seq = json_object_get_int_member (json_array_get_object_element (events, i),
                                                     "seq");
            if (seq != (i == 0 ? first : prev + 1))
              g_error ("events: seq %" G_GINT64_FORMAT " after %" G_GINT64_FORMAT, seq, prev);
            prev = seq;
          }
        return;
      }
    case REQ_PLUGINS:
      {
        JsonArray *list;
        ret = expect_return_object (line, id);
        list = json_object_get_array_member (ret, "plugins");
        if (json_array_get_length (list) != 2)
          g_error ("plugins: expected 2: %s", line);
        for (guint i = 0; i < 2; i++)
          {
            JsonObject *p = json_array_get_object_element (list, i);
            const char *want = strcmp (s->state, "quiesced") == 0 ? "quiesced" : "ready";
            if (g_strcmp0 (json_object_get_string_member (p, "state"), want) != 0)
              g_error ("plugins: %s is not %s: %s", json_object_get_string_member (p, "name"),
                       want, line);
          }
        return;
      }
    case REQ_SNAPSHOT:
      ret = expect_return_object (line, id);
      if (json_object_get_int_member_with_default (ret, "version", 0) != 1
          || !json_object_has_member (ret, "network"))
        g_error ("snapshot: not a snapshot: %.300s", line);
      return;
    case REQ_FREEZE_GUARD:
      ret = expect_return_object (line, id);
      if (json_object_get_boolean_member_with_default (ret, "frozen", TRUE))
        g_error ("freeze-guard: says frozen: %s", line);
      return;
    case REQ_BLOCKERS:
      ret = expect_return_object (line, id);
      if (!json_object_has_member (ret, "verdict"))
        g_error ("blockers: no verdict: %.300s", line);
      return;
    case REQ_CHECK:
      {
        JsonArray *results;
        ret = expect_return_object (line, id);
        results = json_object_get_array_member (ret, "plugins");
        if (!json_object_get_boolean_member (ret, "ready") || json_array_get_length (results) != 2)
          g_error ("check: expected two plugins ready: %s", line);
        return;
      }
    case REQ_DIRTY_RATE:
      ret = expect_return_object (line, id);
      if (!json_object_has_member (ret, "processes"))
        g_error ("dirty-rate: no processes: %.300s", line);
      return;
    case REQ_KINDS:
    default:
      g_assert_not_reached ();
    }
  if (strcmp (line, expected) != 0)
    g_error ("answer %" G_GUINT64_FORMAT ": expected %.200s, got %.400s", id, expected, line);
}

/* count read-only requests on the main connection, PIPELINE at a time, every answer checked;
 * with_heavy adds one blockers, check and dirty-rate */
static void
run_requests (Soak *s, guint count, gboolean with_heavy)
{
  g_autoptr(GArray) kinds = g_array_new (FALSE, FALSE, sizeof (ReqKind));
  guint done = 0;

  for (guint i = 0; i < count; i++)
    {
      ReqKind kind = (ReqKind) ((s->requests + i) % REQ_CHEAP_KINDS);
      g_array_append_val (kinds, kind);
    }
  if (with_heavy)
    for (ReqKind k = REQ_CHEAP_KINDS; k < REQ_KINDS; k++)
      g_array_append_val (kinds, k);

  while (done < kinds->len)
    {
      g_autoptr(GString) out = g_string_new (NULL);
      guint n = MIN (PIPELINE, kinds->len - done);
      guint64 first_id = s->next_id;

      s->events_after = MAX (0, s->last_seq - 20);

      for (guint i = 0; i < n; i++)
        append_request (s, out, g_array_index (kinds, ReqKind, done + i), s->next_id++);
      conn_write (&s->main, out->str, out->len);
      for (guint i = 0; i < n; i++)
        {
          g_autofree char *line = read_answer (s, &s->main);
          check_answer (s, g_array_index (kinds, ReqKind, done + i), first_id + i, line);
        }
      done += n;
    }
  s->requests += kinds->len;
}

/* The second client: garbage, then a half request that a 0xFF discards, then a
 * sync-delimited, whose answer must be the next one after the garbage's error. */
static void
run_noise (Soak *s, guint round)
{
  static const char *const garbage[] = {
    "garbage\n", "[1,2,3]\n", "{\"execute\":42}\n", "{'execute':'ping'}\n", "1[]\n",
    "{\"execute\":\"p\xc3\x28\"}\n", "{\"execute\":\"ping\",\"bogus\":1}\n",
  };
  const char *junk = garbage[round % G_N_ELEMENTS (garbage)];
  g_autofree char *sync = g_strdup_printf ("{\"execute\":\"sync-delimited\",\"arguments\":{\"id\":%u},"
                                           "\"id\":%u}\n", round, round);
  g_autofree char *expected = g_strdup_printf ("\xff{\"return\":%u,\"id\":%u}", round, round);
  g_autofree char *error_line = NULL;
  g_autofree char *sync_line = NULL;
  g_autoptr(JsonObject) err = NULL;

  conn_write (&s->noise, junk, strlen (junk));
  conn_write (&s->noise, "{\"execute\":\"status\",\"argu", 25);
  conn_write (&s->noise, "\xff", 1);
  conn_write (&s->noise, sync, strlen (sync));
  error_line = read_answer (s, &s->noise);
  err = parse_object (error_line);
  if (!json_object_has_member (err, "error") || json_object_has_member (err, "return"))
    g_error ("garbage %s was answered %s", junk, error_line);
  sync_line = read_answer (s, &s->noise);
  if (strcmp (sync_line, expected) != 0)
    g_error ("after garbage and a half frame: expected %s, got %s", expected, sync_line);
  s->garbage++;
}

/* Hosts that come and go: one leaves half-way through a request, one without reading its
 * answers, one half-way through reading a long answer (once the first byte has come, the
 * work behind it is over: nothing of it is left running when the run is measured). */
static void
run_vanishing (Soak *s, guint round)
{
  static const char *const sends[] = {
    "{\"execute\":\"status\",\"id\":1",
    "{\"execute\":\"ping\",\"id\":1}\n{\"execute\":\"info\",\"id\":2}\n",
    "{\"execute\":\"blockers\",\"id\":3}\n",
  };
  Conn c = { -1, NULL };
  const char *text = sends[round % G_N_ELEMENTS (sends)];

  conn_open (&c, s->daemon->socket);
  conn_write (&c, text, strlen (text));
  if (round % G_N_ELEMENTS (sends) == 2)
    {
      char byte;
      struct pollfd pfd = { c.fd, POLLIN, 0 };
      if (poll (&pfd, 1, READ_TIMEOUT_MS) != 1 || recv (c.fd, &byte, 1, 0) != 1)
        g_error ("no answer to blockers");
    }
  conn_close (&c);
  s->vanished++;
}

static gboolean
held (Soak *s, const char *plugin)
{
  g_autofree char *path = g_build_filename (s->daemon->state_dir, "plugins", plugin, "held", NULL);
  return g_file_test (path, G_FILE_TEST_EXISTS);
}

static JsonObject *
call (Soak *s, const char *command, const char *args)
{
  guint64 id = s->next_id++;
  g_autofree char *req = g_strdup_printf ("{\"execute\":\"%s\"%s%s,\"id\":%" G_GUINT64_FORMAT "}\n",
                                          command, args ? ",\"arguments\":" : "", args ? args : "",
                                          id);
  g_autofree char *line = NULL;

  conn_write (&s->main, req, strlen (req));
  line = read_answer (s, &s->main);
  s->requests++;
  return expect_return_object (line, id);
}

static void
run_cycle (Soak *s)
{
  g_autofree char *op = g_strdup_printf ("soak-%" G_GUINT64_FORMAT, s->cycles);
  g_autofree char *args = g_strdup_printf ("{\"operation\":\"%s\"}", op);
  g_autofree char *qargs = g_strdup_printf ("{\"operation\":\"%s\",\"lease_seconds\":600}", op);
  g_autoptr(JsonObject) prepared = call (s, "prepare", args);
  g_autoptr(JsonObject) quiesced = NULL;
  g_autoptr(JsonObject) thawed = NULL;

  g_assert_cmpstr (json_object_get_string_member (prepared, "operation"), ==, op);
  quiesced = call (s, "quiesce", qargs);
  g_assert_cmpstr (json_object_get_string_member (quiesced, "state"), ==, "quiesced");
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (quiesced, "plugins")), ==,
                    2);
  g_assert_true (held (s, "soak-oneshot"));
  g_assert_true (held (s, "soak-session"));
  g_strlcpy (s->state, "quiesced", sizeof s->state);
  run_requests (s, 2 * REQ_CHEAP_KINDS - 1, FALSE);
  thawed = call (s, "thaw", NULL);
  g_assert_cmpstr (json_object_get_string_member (thawed, "operation"), ==, op);
  g_assert_cmpstr (json_object_get_string_member (thawed, "reason"), ==, "thaw");
  g_assert_false (held (s, "soak-oneshot"));
  g_assert_false (held (s, "soak-session"));
  g_strlcpy (s->state, "thawed", sizeof s->state);
  s->cycles++;
}

/* "0 -> /dev/null, 1 -> pipe:[…], …": what an fd count is made of */
static char *
fd_list (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/fd", pid);
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  g_autoptr(GString) text = g_string_new (NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *link = g_build_filename (path, name, NULL);
      g_autofree char *target = g_file_read_link (link, NULL);
      g_string_append_printf (text, "%s%s -> %s", text->len ? ", " : "", name,
                              target ? target : "?");
    }
  return g_string_free (g_steal_pointer (&text), FALSE);
}

static gint64
fd_count (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/fd", pid);
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  gint64 n = 0;

  g_assert_nonnull (dir);
  while (g_dir_read_name (dir) != NULL)
    n++;
  return n;
}

/* Once the vanished hosts are gone from the agent's side: the main and the noise client. */
static void
wait_two_clients (Soak *s)
{
  gint64 deadline = g_get_monotonic_time () + READ_TIMEOUT_MS * 1000;

  for (;;)
    {
      g_autoptr(JsonObject) st = call (s, "status", NULL);
      JsonObject *clients = json_object_get_object_member (st, "clients");
      if (json_object_get_int_member (clients, "unix-clients") == 2)
        return;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10 * 1000);
    }
}

static Sample
take_sample (Soak *s)
{
  g_autofree char *status = g_strdup_printf ("/proc/%d/status", s->daemon->pid);
  g_autofree char *rollup = g_strdup_printf ("/proc/%d/smaps_rollup", s->daemon->pid);
  guint64 id;
  Sample sample;

  wait_two_clients (s);
  /* memory and fds first: the whole ring asked for below is built as a tree of a few MiB for
   * the answer, which would be measured instead of the steady state */
  sample.rss_kib = kib_field (status, "VmRSS:");
  sample.anon_kib = kib_field (rollup, "Anonymous:");
  sample.fds = fd_count (s->daemon->pid);
  /* the ring, 50 events an answer: one answer of the whole ring would be built as a tree of
   * a few MiB, whose high-water mark the heap keeps */
  sample.events_buffered = 0;
  sample.events_bytes = 0;
  for (gint64 after = 0;;)
    {
      g_autofree char *page_req = NULL;
      g_autofree char *page = NULL;
      g_autoptr(JsonObject) page_ret = NULL;
      JsonArray *events;
      guint n;

      id = s->next_id++;
      page_req = g_strdup_printf ("{\"execute\":\"events\",\"arguments\":{\"after\":%"
                                  G_GINT64_FORMAT ",\"limit\":50},\"id\":%" G_GUINT64_FORMAT
                                  "}\n", after, id);
      conn_write (&s->main, page_req, strlen (page_req));
      page = read_answer (s, &s->main);
      page_ret = expect_return_object (page, id);
      events = json_object_get_array_member (page_ret, "events");
      n = json_array_get_length (events);
      for (guint i = 0; i < n; i++)
        {
          JsonNode *node = json_array_get_element (events, i);
          g_autofree char *text = ma_json_to_string (node);
          sample.events_bytes += (gint64) strlen (text);
        }
      sample.events_buffered += n;
      if (!json_object_get_boolean_member (page_ret, "more") || n == 0)
        break;
      after = json_object_get_int_member (json_array_get_object_element (events, n - 1), "seq");
    }
  sample.state_bytes = dir_bytes (s->daemon->state_dir);
  return sample;
}

static void
print_sample (const char *when, const Sample *x, Soak *s)
{
  g_test_message ("%-8s requests %9" G_GUINT64_FORMAT " cycles %6" G_GUINT64_FORMAT
                  "  RSS %6" G_GINT64_FORMAT " KiB  anon %6" G_GINT64_FORMAT " KiB  fds %3"
                  G_GINT64_FORMAT "  events %4" G_GINT64_FORMAT " (%" G_GINT64_FORMAT
                  " B)  state dir %" G_GINT64_FORMAT " B", when, s->requests, s->cycles,
                  x->rss_kib, x->anon_kib, x->fds, x->events_buffered, x->events_bytes,
                  x->state_bytes);
  if (soak_long)
    {
      printf ("%-8s requests %9" G_GUINT64_FORMAT " cycles %6" G_GUINT64_FORMAT "  RSS %6"
              G_GINT64_FORMAT " KiB  anon %6" G_GINT64_FORMAT " KiB  fds %3" G_GINT64_FORMAT
              "  events %4" G_GINT64_FORMAT " (%" G_GINT64_FORMAT " B)  state dir %"
              G_GINT64_FORMAT " B\n", when, s->requests, s->cycles, x->rss_kib, x->anon_kib,
              x->fds, x->events_buffered, x->events_bytes, x->state_bytes);
      fflush (stdout);
    }
}

static const char oneshot_script[] =
  "#!/bin/sh\n"
  "case \"$1\" in\n"
  "  quiesce) : > \"$MA_STATE_DIR/held\" ;;\n"
  "  thaw) rm -f \"$MA_STATE_DIR/held\" ;;\n"
  "esac\n";

static const char session_script[] =
  "#!/bin/sh\n"
  "while read -r line; do\n"
  "  case \"$line\" in\n"
  "    *'\"quiesce\"'*) : > \"$MA_STATE_DIR/held\" ;;\n"
  "    *'\"thaw\"'*) rm -f \"$MA_STATE_DIR/held\" ;;\n"
  "  esac\n"
  "  echo '{\"status\": \"ok\"}'\n"
  "done\n"
  "rm -f \"$MA_STATE_DIR/held\"\n";

static void
write_plugin (const char *dir, const char *name, const char *script, const char *protocol)
{
  g_autofree char *exe = g_strdup_printf ("%s/%s.sh", dir, name);
  g_autofree char *manifest = g_strdup_printf ("%s/%s.plugin", dir, name);
  g_autofree char *text = g_strdup_printf ("[Plugin]\nExec=%s\nProtocol=%s\n", exe, protocol);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (exe, script, -1, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_chmod (exe, 0755), ==, 0);
  g_file_set_contents (manifest, text, -1, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_chmod (manifest, 0644), ==, 0);
}

static void
test_soak (void)
{
  /* long: a million read-only requests and 10,000 cycles; short: the suite's few seconds */
  guint cycles = soak_long ? 10000 : 24;
  guint64 total_requests = soak_long ? 1000000 : 12000;
  guint warmup;
  guint ring = soak_long ? 1024 : 16;
  guint per_cycle;
  g_autoptr(GError) error = NULL;
  g_autofree char *config = NULL;
  g_autofree char *info_line = NULL;
  Soak s = { 0 };
  Sample start, middle, end;
  gint64 t0 = g_get_monotonic_time ();

  /* MA_SOAK_CYCLES, MA_SOAK_REQUESTS and MA_SOAK_EVENTS change the length (bench-soak.sh) */
  if (g_getenv ("MA_SOAK_CYCLES") != NULL)
    cycles = (guint) MAX (4, g_ascii_strtoull (g_getenv ("MA_SOAK_CYCLES"), NULL, 10));
  if (g_getenv ("MA_SOAK_REQUESTS") != NULL)
    total_requests = g_ascii_strtoull (g_getenv ("MA_SOAK_REQUESTS"), NULL, 10);
  if (g_getenv ("MA_SOAK_EVENTS") != NULL)
    ring = (guint) g_ascii_strtoull (g_getenv ("MA_SOAK_EVENTS"), NULL, 10);
  /* a third of the run, at most 500 cycles: the event ring full, every kind of work done */
  warmup = MIN (500, cycles / 3);
  s.plugin_dir = g_dir_make_tmp ("ma-soak-plugins-XXXXXX", &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_chmod (s.plugin_dir, 0755), ==, 0);
  write_plugin (s.plugin_dir, "soak-oneshot", oneshot_script, "oneshot");
  write_plugin (s.plugin_dir, "soak-session", session_script, "session");
  config = g_strdup_printf ("[plugins]\ndirs=%s\n[events]\nbuffer-size=%u\n", s.plugin_dir, ring);
  s.daemon = ma_test_daemon_new (config);
  ma_test_daemon_start (s.daemon, NULL);
  conn_open (&s.main, s.daemon->socket);
  conn_open (&s.noise, s.daemon->socket);
  g_strlcpy (s.state, "idle", sizeof s.state);

  /* info's answer is the same every time: keep it up to its id */
  conn_write (&s.main, "{\"execute\":\"info\",\"id\":0}\n", 26);
  info_line = read_answer (&s, &s.main);
  g_assert_true (g_str_has_suffix (info_line, ",\"id\":0}"));
  s.info_prefix = g_strndup (info_line, strlen (info_line) - 2);
  s.next_id = 1;

  per_cycle = (guint) (total_requests / cycles);
  /* the rest of a cycle's share: each cycle makes 2 × REQ_CHEAP_KINDS - 1 requests while
   * quiesced and three calls (prepare, quiesce, thaw) */
  per_cycle = per_cycle > 2 * REQ_CHEAP_KINDS + 2 ? per_cycle - (2 * REQ_CHEAP_KINDS + 2) : 1;
  for (guint c = 0; c < cycles; c++)
    {
      /* the cycle first: the first one stores the snapshot that `snapshot` reads */
      run_cycle (&s);
      run_requests (&s, per_cycle, c % (soak_long ? 100 : 4) == 0);
      run_noise (&s, c);
      run_vanishing (&s, c);
      if (c + 1 == warmup)
        {
          start = take_sample (&s);
          print_sample ("start", &start, &s);
        }
      else if (c + 1 == warmup + (cycles - warmup) / 2)
        {
          middle = take_sample (&s);
          print_sample ("middle", &middle, &s);
        }
    }
  end = take_sample (&s);
  print_sample ("end", &end, &s);
  g_test_message ("%" G_GUINT64_FORMAT " requests and %" G_GUINT64_FORMAT " cycles answered "
                  "correctly, %" G_GUINT64_FORMAT " garbage rounds, %" G_GUINT64_FORMAT
                  " vanished hosts, %" G_GUINT64_FORMAT " events, in %.1f s", s.requests,
                  s.cycles, s.garbage, s.vanished, s.events_seen,
                  (double) (g_get_monotonic_time () - t0) / G_USEC_PER_SEC);
  if (soak_long)
    printf ("growth after warm-up: RSS %+" G_GINT64_FORMAT " KiB, anon %+" G_GINT64_FORMAT
            " KiB, fds %+" G_GINT64_FORMAT ", events %+" G_GINT64_FORMAT ", state dir %+"
            G_GINT64_FORMAT " B; %" G_GUINT64_FORMAT " requests, %" G_GUINT64_FORMAT
            " cycles, all answers as expected, %.1f s\n", end.rss_kib - start.rss_kib,
            end.anon_kib - start.anon_kib, end.fds - start.fds,
            end.events_buffered - start.events_buffered, end.state_bytes - start.state_bytes,
            s.requests, s.cycles, (double) (g_get_monotonic_time () - t0) / G_USEC_PER_SEC);

  if (end.fds != start.fds)
    {
      g_autofree char *fds = fd_list (s.daemon->pid);
      g_test_message ("the agent's fds at the end: %s", fds);
    }
  g_assert_cmpint (end.fds, ==, start.fds);
  g_assert_cmpint (middle.fds, ==, start.fds);
  g_assert_cmpint (end.events_buffered, ==, start.events_buffered);
  /* the stored snapshot and journal name the operation: "soak-99" is a byte longer than
   * "soak-9"; nothing else may grow */
  g_assert_cmpint (end.state_bytes - start.state_bytes, <=, 64);
  if (ma_test_daemon_rss_meaningful ())
    {
      gint64 bound = soak_long ? 64 : SHORT_GROWTH_BOUND_KIB;
      g_assert_cmpint (end.rss_kib - start.rss_kib, <=, bound);
      g_assert_cmpint (end.anon_kib - start.anon_kib, <=, bound);
    }

  conn_close (&s.main);
  conn_close (&s.noise);
  g_assert_cmpint (ma_test_daemon_stop (s.daemon), ==, 0);
  ma_test_daemon_free (s.daemon);
  {
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", s.plugin_dir);
    g_assert_cmpint (system (cmd), ==, 0);
  }
  g_free (s.plugin_dir);
  g_free (s.info_prefix);
}

/* The run happens in a PID namespace of its own with its own /proc: `blockers`, `prepare`,
 * `dirty-rate` and the freeze guard then see the soak's processes only, not whatever else the
 * machine runs (another test's thousand processes would make every blockers answer megabytes
 * and the memory figures meaningless). The parent waits and exits with the run's status. */
static void
enter_private_pid_namespace (void)
{
  pid_t child;
  int status;

  if (unshare (CLONE_NEWPID | CLONE_NEWNS) != 0)
    {
      g_printerr ("# test-soak: no PID namespace of its own (%s): the agent sees every process\n",
                  g_strerror (errno));
      return;
    }
  child = fork ();
  if (child < 0)
    g_error ("fork: %s", g_strerror (errno));
  if (child > 0)
    {
      while (waitpid (child, &status, 0) < 0 && errno == EINTR)
        ;
      _exit (WIFEXITED (status) ? WEXITSTATUS (status) : 1);
    }
  if (mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0
      || mount ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
    g_error ("cannot mount a /proc of its own: %s", g_strerror (errno));
}

int
main (int argc, char **argv)
{
  /* --long is ours; GTest must not see it */
  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], "--long") == 0)
      {
        soak_long = TRUE;
        memmove (&argv[i], &argv[i + 1], (size_t) (argc - i) * sizeof (char *));
        argc--;
        i--;
      }
  enter_private_pid_namespace ();
  g_test_init (&argc, &argv, NULL);
  g_test_add_func (soak_long ? "/soak/long" : "/soak/short", test_soak);
  return g_test_run ();
}
