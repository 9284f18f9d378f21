/* test-blockers-scale.c — `blockers` against a real population far too big to list: many
 * processes each holding thousands of real read-write files and shared POSIX locks, one lock
 * with a waiter; the default reply stays bounded, the totals are exact, pages cover it all. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "blockers-summary.h"
#include "client.h"
#include "daemon-fixture.h"
#include "error.h"
#include "json.h"
#include "protocol.h"

#define FILE_BYTES 100
/* more than a lock entry lists (16): the rest are counted in waiters_total */
#define N_WAITERS 20
/* the whole reply line around a return: {"return": …, "id": …} */
#define ENVELOPE_BYTES 64

typedef struct
{
  char *dir;           /* the population's files */
  char *mountpoint;    /* the filesystem they are on, as the agent names it */
  guint n_procs, n_files, n_locks;
  GArray *pids;        /* pid_t of the writers */
  pid_t holder;         /* a write lock, and N_WAITERS processes blocked on it */
  pid_t waiters[N_WAITERS];
  MaTestDaemon *daemon;
  MaClient *client;
} Population;

static Population pop;

/* A writer: every file read-write, the first n_locks of them read-locked (POSIX read locks
 * are shared, so every writer holds its own on the same files). */
static G_GNUC_NORETURN void
writer_main (int ready)
{
  struct rlimit rl = { pop.n_files + 64, pop.n_files + 64 };

  prctl (PR_SET_PDEATHSIG, SIGKILL);
  if (setrlimit (RLIMIT_NOFILE, &rl) != 0)
    _exit (2);
  for (guint i = 0; i < pop.n_files; i++)
    {
      char path[4096];
      struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
      int fd;

      g_snprintf (path, sizeof path, "%s/file-%u", pop.dir, i);
      fd = open (path, O_RDWR);
      if (fd < 0 || (i < pop.n_locks && fcntl (fd, F_SETLK, &fl) != 0))
        _exit (3);
    }
  if (write (ready, "r", 1) != 1)
    _exit (4);
  for (;;)
    pause ();
}

/* The holder takes a write lock on its own file; the waiter blocks on it. */
static G_GNUC_NORETURN void
locker_main (gboolean wait, int ready)
{
  g_autofree char *path = g_build_filename (pop.dir, "contended", NULL);
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int fd;

  prctl (PR_SET_PDEATHSIG, SIGKILL);
  fd = open (path, O_RDWR | O_CREAT, 0600);
  if (fd < 0)
    _exit (2);
  if (wait)
    {
      if (write (ready, "w", 1) != 1)
        _exit (4);
      fcntl (fd, F_SETLKW, &fl);
      for (;;)
        pause ();
    }
  if (fcntl (fd, F_SETLK, &fl) != 0 || write (ready, "r", 1) != 1)
    _exit (3);
  for (;;)
    pause ();
}

static pid_t
start (int kind)
{
  int pipefd[2];
  pid_t pid;
  char c = 0;

  g_assert_cmpint (pipe2 (pipefd, O_CLOEXEC), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      close (pipefd[0]);
      if (kind == 0)
        writer_main (pipefd[1]);
      locker_main (kind == 2, pipefd[1]);
    }
  close (pipefd[1]);
  g_assert_cmpint (read (pipefd[0], &c, 1), ==, 1);
  close (pipefd[0]);
  return pid;
}

static void
wait_until_waiting (pid_t pid)
{
  g_autofree char *needle = g_strdup_printf (" %d ", pid);

  for (guint tries = 0; tries < 2000; tries++)
    {
      g_autofree char *text = NULL;
      g_auto(GStrv) lines = NULL;
      g_assert_true (g_file_get_contents ("/proc/locks", &text, NULL, NULL));
      lines = g_strsplit (text, "\n", -1);
      for (guint i = 0; lines[i] != NULL; i++)
        if (strstr (lines[i], "->") != NULL && strstr (lines[i], needle) != NULL)
          return;
      g_usleep (10 * 1000);
    }
  g_error ("pid %d never showed up as a lock waiter", pid);
}

static guint
env_uint (const char *name, guint fallback)
{
  const char *v = g_getenv (name);

  return v != NULL && *v != '\0' ? (guint) g_ascii_strtoull (v, NULL, 10) : fallback;
}

/* ---- asking ---- */

static JsonObject *
args_new (const char *detail, guint limit, const char *cursor)
{
  JsonObject *args = json_object_new ();
  JsonArray *mps = json_array_new ();

  json_array_add_string_element (mps, pop.mountpoint);
  json_object_set_array_member (args, "mountpoints", mps);
  if (detail != NULL)
    json_object_set_string_member (args, "detail", detail);
  if (limit > 0)
    json_object_set_int_member (args, "limit", limit);
  if (cursor != NULL)
    json_object_set_string_member (args, "cursor", cursor);
  return args;
}

/* The reply's return as the agent wrote it, its size checked against the bound, parsed. */
static JsonNode *
ask (const char *command, JsonObject *args, gsize bound, gsize *size)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *text = ma_client_execute_text (pop.client, command, args, &error);
  JsonNode *node;

  g_assert_no_error (error);
  g_assert_nonnull (text);
  g_assert_cmpuint (strlen (text) + ENVELOPE_BYTES, <=, bound);
  if (size != NULL)
    *size = strlen (text);
  node = ma_json_parse (text, strlen (text), &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  return node;
}

static JsonObject *
obj_member (JsonObject *obj, const char *member)
{
  JsonObject *value = NULL;

  g_assert_true (ma_json_get_object (obj, member, &value, NULL));
  g_assert_nonnull (value);
  return value;
}

static JsonArray *
array_member (JsonObject *obj, const char *member)
{
  JsonArray *value = NULL;

  g_assert_true (ma_json_get_array (obj, member, &value, NULL));
  g_assert_nonnull (value);
  return value;
}

static gint64
int_member (JsonObject *obj, const char *member)
{
  gint64 value = G_MININT64;

  g_assert_true (ma_json_get_int (obj, member, &value, NULL));
  g_assert_true (value != G_MININT64);
  return value;
}

static JsonObject *
element (JsonArray *array, guint i)
{
  return json_node_get_object (json_array_get_element (array, i));
}

static gboolean
is_population_pid (gint64 pid)
{
  for (guint i = 0; i < pop.pids->len; i++)
    if (g_array_index (pop.pids, pid_t, i) == pid)
      return TRUE;
  return FALSE;
}

/* ---- the cases ---- */

/* The default reply: under 1 MiB although the writers alone would take tens of MiB, every
 * question answered, the totals exact about what was summarised. */
static void
test_summary_bounded (void)
{
  g_autoptr(JsonObject) args = args_new (NULL, 0, NULL);
  gsize size = 0;
  g_autoptr(JsonNode) node = ask ("blockers", args, MA_BLOCKERS_MAX_REPLY_BYTES, &size);
  JsonObject *ret = json_node_get_object (node);
  JsonObject *totals = obj_member (ret, "totals");
  JsonObject *tw = obj_member (totals, "writers");
  JsonObject *tl = obj_member (totals, "locks");
  JsonArray *by_process = array_member (ret, "writers_by_process");
  JsonArray *by_mount = array_member (ret, "writers_by_mount");
  JsonArray *locks = array_member (ret, "locks");
  JsonArray *holders = array_member (ret, "lock_holders");
  guint n_writers = pop.n_procs * pop.n_files, seen = 0, seen_holders = 0;
  gint64 mount_fds = 0, last_waited = G_MAXINT64;
  guint last_waiters = G_MAXUINT;
  gboolean complete = TRUE, holder_listed = FALSE;

  g_test_message ("default reply: %" G_GSIZE_FORMAT " bytes for %u writers and %u locks", size,
                  n_writers, pop.n_procs * pop.n_locks + 1);
  g_assert_nonnull (json_object_get_string_member (ret, "verdict"));
  g_assert_true (ma_json_get_bool (ret, "complete", &complete, NULL));
  g_assert_false (complete);

  /* writers: every one counted, the population's exactly */
  g_assert_cmpint (int_member (tw, "fds"), >=, n_writers);
  g_assert_cmpint (int_member (tw, "processes"), >=, pop.n_procs);
  g_assert_cmpint (int_member (tw, "listed"), <=, 64);
  g_assert_cmpuint (json_array_get_length (array_member (ret, "writers")), ==,
                    int_member (tw, "listed"));
  g_assert_cmpuint (json_array_get_length (by_process), ==, int_member (tw, "processes_listed"));
  for (guint i = 0; i < json_array_get_length (by_process); i++)
    {
      JsonObject *g = element (by_process, i);
      JsonArray *examples = array_member (g, "examples");
      if (!is_population_pid (int_member (g, "pid")))
        continue;
      seen++;
      g_assert_cmpint (int_member (g, "fds"), ==, pop.n_files);
      g_assert_cmpint (int_member (g, "bytes"), ==, (gint64) pop.n_files * FILE_BYTES);
      g_assert_cmpint (int_member (g, "mounts"), ==, 1);
      g_assert_cmpstr (json_object_get_string_member (g, "comm"), ==, "test-blockers-s");
      g_assert_cmpuint (json_array_get_length (examples), ==, MA_BLOCKERS_EXAMPLES);
      g_assert_true (g_str_has_prefix (json_object_get_string_member (element (examples, 0),
                                                                      "path"), pop.dir));
    }
  /* the biggest writers come first: all of the population fits */
  g_assert_cmpuint (seen, ==, pop.n_procs);
  for (guint i = 0; i < json_array_get_length (by_mount); i++)
    if (g_strcmp0 (json_object_get_string_member (element (by_mount, i), "mountpoint"),
                   pop.mountpoint) == 0)
      mount_fds = int_member (element (by_mount, i), "fds");
  g_assert_cmpint (mount_fds, ==, int_member (tw, "fds"));

  /* locks: more than fit; the waited-for one first, the counts exact */
  g_assert_cmpint (int_member (tl, "total"), >=, pop.n_procs * pop.n_locks + 1);
  g_assert_cmpint (int_member (tl, "with_waiters"), >=, 1);
  g_assert_cmpint (int_member (tl, "listed"), <, int_member (tl, "total"));
  g_assert_cmpuint (json_array_get_length (locks), ==, int_member (tl, "listed"));
  for (guint i = 0; i < json_array_get_length (locks); i++)
    {
      guint n_waiters = json_array_get_length (array_member (element (locks, i), "waiters"));
      JsonObject *h = element (array_member (element (locks, i), "holders"), 0);
      /* worst first: the waited-for locks before the others */
      g_assert_cmpuint (n_waiters, <=, last_waiters);
      last_waiters = n_waiters;
      if (int_member (h, "pid") == pop.holder)
        {
          /* sixteen listed, all counted */
          g_assert_cmpuint (n_waiters, ==, 16);
          g_assert_cmpint (int_member (element (locks, i), "waiters_total"), ==, N_WAITERS);
          holder_listed = TRUE;
        }
      else if (n_waiters < 16)
        g_assert_false (json_object_has_member (element (locks, i), "waiters_total"));
    }
  g_assert_true (holder_listed);
  g_assert_cmpint (int_member (tl, "holders_listed"), ==, int_member (tl, "holders"));
  for (guint i = 0; i < json_array_get_length (holders); i++)
    {
      JsonObject *h = element (holders, i);
      /* the holders that are waited for come first */
      g_assert_cmpint (int_member (h, "waited_for"), <=, last_waited);
      last_waited = int_member (h, "waited_for");
      if (int_member (h, "pid") == pop.holder)
        g_assert_cmpint (int_member (h, "waited_for"), ==, 1);
      if (is_population_pid (int_member (h, "pid")))
        {
          seen_holders++;
          g_assert_cmpint (int_member (h, "locks"), ==, pop.n_locks);
          g_assert_cmpint (int_member (h, "write_locks"), ==, 0);
        }
    }
  g_assert_cmpuint (seen_holders, ==, pop.n_procs);
  /* only what is reported was resolved: far fewer targets than fds on the population */
  g_assert_cmpint (int_member (obj_member (ret, "scan"), "fds"), >=, n_writers);
}

/* Every writer of the population exactly once across the pages, each page bounded. */
static void
test_writer_pages (void)
{
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *cursor = NULL;
  guint pages = 0, population = 0;
  gint64 total = -1;

  do
    {
      g_autoptr(JsonObject) args = args_new ("writers", 5000, cursor);
      g_autoptr(JsonNode) node = ask ("blockers", args, MA_BLOCKERS_MAX_REPLY_BYTES, NULL);
      JsonObject *ret = json_node_get_object (node);
      JsonArray *writers = array_member (ret, "writers");
      JsonObject *page = obj_member (ret, "page");
      const char *next = NULL;

      g_assert_cmpstr (json_object_get_string_member (page, "detail"), ==, "writers");
      g_assert_cmpuint (json_array_get_length (writers), ==, int_member (page, "returned"));
      g_assert_cmpint (int_member (page, "returned"), <=, 5000);
      if (total < 0)
        total = int_member (page, "total");
      for (guint i = 0; i < json_array_get_length (writers); i++)
        {
          JsonObject *w = element (writers, i);
          g_autofree char *key = g_strdup_printf ("%" G_GINT64_FORMAT ":%" G_GINT64_FORMAT,
                                                  int_member (w, "pid"), int_member (w, "fd"));
          g_assert_false (g_hash_table_contains (seen, key));
          g_hash_table_add (seen, g_steal_pointer (&key));
          if (is_population_pid (int_member (w, "pid")))
            {
              population++;
              g_assert_true (g_str_has_prefix (json_object_get_string_member (w, "path"),
                                               pop.dir));
              g_assert_cmpint (int_member (w, "size"), ==, FILE_BYTES);
            }
        }
      ma_json_get_string (page, "next_cursor", &next, NULL);
      g_free (cursor);
      cursor = g_strdup (next);
      pages++;
      g_assert_cmpuint (pages, <, 10000);
    }
  while (cursor != NULL);
  g_assert_cmpuint (population, ==, pop.n_procs * pop.n_files);
  g_assert_cmpuint (pages, >=, pop.n_procs * pop.n_files / 5000);
  g_test_message ("%u writer pages, %u entries", pages, g_hash_table_size (seen));
}

/* The largest page asked for is cut by bytes, not by the count. */
static void
test_page_bytes_bound (void)
{
  g_autoptr(JsonObject) args = args_new ("writers", MA_BLOCKERS_PAGE_MAX, NULL);
  gsize size = 0;
  g_autoptr(JsonNode) node = ask ("blockers", args, MA_BLOCKERS_MAX_REPLY_BYTES, &size);
  JsonObject *page = obj_member (json_node_get_object (node), "page");
  const char *next = NULL;

  g_test_message ("a page of limit %d: %" G_GSIZE_FORMAT " bytes, %" G_GINT64_FORMAT
                  " entries", MA_BLOCKERS_PAGE_MAX, size, int_member (page, "returned"));
  g_assert_cmpint (int_member (page, "returned"), <, int_member (page, "total"));
  g_assert_true (ma_json_get_string (page, "next_cursor", &next, NULL));
  g_assert_nonnull (next);
}

/* One walk over the lock pages: every lock at most once; how many are the population's. */
static guint
walk_lock_pages (guint *n_seen)
{
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *cursor = NULL;
  guint population = 0;

  do
    {
      g_autoptr(JsonObject) args = args_new ("locks", 2000, cursor);
      g_autoptr(JsonNode) node = ask ("blockers", args, MA_BLOCKERS_MAX_REPLY_BYTES, NULL);
      JsonObject *ret = json_node_get_object (node);
      JsonArray *locks = array_member (ret, "locks");
      JsonObject *page = obj_member (ret, "page");
      const char *next = NULL;

      g_assert_cmpint (int_member (page, "total"), ==,
                       int_member (obj_member (obj_member (ret, "totals"), "locks"), "total"));
      for (guint i = 0; i < json_array_get_length (locks); i++)
        {
          JsonObject *l = element (locks, i);
          JsonObject *h = element (array_member (l, "holders"), 0);
          g_autofree char *key = g_strdup_printf (
            "%s/%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT,
            json_object_get_string_member (l, "type"), int_member (l, "inode"),
            int_member (l, "start"), int_member (h, "pid"));
          /* the population's locks are told apart by this key; other processes of the
           * machine (QEMU's OFD locks on its images) can hold several locks it cannot tell
           * apart, so only the population's are held to "once" */
          if (is_population_pid (int_member (h, "pid")))
            {
              g_assert_false (g_hash_table_contains (seen, key));
              population++;
            }
          g_hash_table_add (seen, g_steal_pointer (&key));
        }
      ma_json_get_string (page, "next_cursor", &next, NULL);
      g_free (cursor);
      cursor = g_strdup (next);
    }
  while (cursor != NULL);
  *n_seen = g_hash_table_size (seen);
  return population;
}

/* Every lock exactly once across the pages. /proc/locks is not read atomically by the
 * kernel: while other processes take and drop locks, one read can miss a line that stayed;
 * such a walk is done again (never a duplicate of the population's, in any walk). */
static void
test_lock_pages (void)
{
  guint population = 0, n_seen = 0;

  for (guint attempt = 0; attempt < 3 && population != pop.n_procs * pop.n_locks; attempt++)
    {
      if (attempt > 0)
        g_test_message ("lock walk %u saw %u of the population's %u locks: again", attempt,
                        population, pop.n_procs * pop.n_locks);
      population = walk_lock_pages (&n_seen);
    }
  g_assert_cmpuint (population, ==, pop.n_procs * pop.n_locks);
  g_assert_cmpuint (n_seen, >=, pop.n_procs * pop.n_locks + 1);
}

/* prepare carries the default report: bounded the same way, under the protocol's limit. */
static void
test_prepare_bounded (void)
{
  g_autoptr(JsonObject) args = json_object_new ();
  gsize size = 0;
  g_autoptr(JsonNode) node = NULL;
  JsonObject *blockers = NULL;

  json_object_set_string_member (args, "operation", "scale-test");
  node = ask ("prepare", args, MA_BLOCKERS_MAX_REPLY_BYTES + 256 * 1024, &size);
  g_test_message ("prepare reply: %" G_GSIZE_FORMAT " bytes", size);
  g_assert_true (ma_json_get_object (json_node_get_object (node), "blockers", &blockers, NULL));
  g_assert_nonnull (blockers);
  g_assert_cmpint (int_member (obj_member (obj_member (blockers, "totals"), "writers"), "fds"),
                   >=, pop.n_procs * pop.n_files);
}

/* migctl --all-pages: one return per line, every page bounded, every writer of the
 * population once; and the human table of one page says where the next one starts. */
static void
test_migctl_all_pages (void)
{
  g_autofree char *connect = g_strdup_printf ("unix:%s", pop.daemon->socket);
  g_autofree char *mps = g_strdup_printf ("mountpoints=[\"%s\"]", pop.mountpoint);
  const char *argv[] = { g_getenv ("MIGCTL"), "--connect", connect, "--json", "--all-pages",
                         "--timeout", "600", "blockers", "detail=writers", "limit=20000", mps,
                         NULL };
  const char *argv_page[] = { g_getenv ("MIGCTL"), "--connect", connect, "--no-color",
                              "blockers", "detail=writers", "limit=3", mps, NULL };
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *out_page = NULL;
  g_auto(GStrv) lines = NULL;
  guint population = 0, pages = 0;
  int status = -1;

  g_assert_nonnull (argv[0]);
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                               NULL, &status, &error));
  g_assert_no_error (error);
  g_assert_cmpint (status, ==, 0);
  lines = g_strsplit (out, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autoptr(JsonNode) node = NULL;
      JsonArray *writers;

      if (lines[i][0] == '\0')
        continue;
      g_assert_cmpuint (strlen (lines[i]) + ENVELOPE_BYTES, <=, MA_BLOCKERS_MAX_REPLY_BYTES);
      node = ma_json_parse (lines[i], strlen (lines[i]), &error);
      g_assert_no_error (error);
      writers = array_member (json_node_get_object (node), "writers");
      for (guint j = 0; j < json_array_get_length (writers); j++)
        population += is_population_pid (int_member (element (writers, j), "pid"));
      pages++;
    }
  g_assert_cmpuint (population, ==, pop.n_procs * pop.n_files);
  g_assert_cmpuint (pages, >=, pop.n_procs * pop.n_files / 20000);

  g_assert_true (g_spawn_sync (NULL, (char **) argv_page, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &out_page, NULL, &status, &error));
  g_assert_no_error (error);
  g_assert_cmpint (status, ==, 0);
  g_assert_nonnull (strstr (out_page, "writers 1–3 of "));
  g_assert_nonnull (strstr (out_page, "next page: migctl blockers detail=writers cursor=writers:"));
}

/* The limit every reply keeps is announced, and is under libvirt's 10 MB. */
static void
test_info_reply_limit (void)
{
  g_autoptr(JsonNode) info = ma_test_execute (pop.client, "info", NULL);

  g_assert_cmpint (int_member (json_node_get_object (info), "max-reply-bytes"), ==,
                   MA_PROTOCOL_MAX_REPLY_BYTES);
  g_assert_cmpint (MA_PROTOCOL_MAX_REPLY_BYTES, <, 10 * 1000 * 1000);
  g_assert_cmpint (MA_BLOCKERS_MAX_REPLY_BYTES, <, MA_PROTOCOL_MAX_REPLY_BYTES);
}

static void
test_bad_page_arguments (void)
{
  const char *const bad[][2] = {
    { "{\"detail\": \"everything\"}", "detail" },
    { "{\"detail\": \"writers\", \"limit\": 0}", "limit" },
    { "{\"detail\": \"writers\", \"cursor\": \"locks:1.2\"}", "cursor" },
    { "{\"detail\": \"writers\", \"cursor\": \"writers:1\"}", "cursor" },
    { "{\"cursor\": \"writers:1.2\"}", "cursor" },
    { "{\"limit\": 5}", "limit" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) args = ma_json_parse (bad[i][0], strlen (bad[i][0]), NULL);
      g_autoptr(JsonNode) ret = ma_client_execute (pop.client, "blockers",
                                                   json_node_get_object (args), &error);
      g_assert_null (ret);
      g_assert_error (error, MA_ERROR, MA_ERROR_GENERIC);
      g_assert_nonnull (strstr (error->message, bad[i][1]));
    }
}

/* ---- the population ---- */

static char *
mountpoint_for (const char *dir)
{
  g_autoptr(JsonNode) node = ma_test_execute (pop.client, "blockers", NULL);
  JsonArray *mounts = array_member (json_node_get_object (node), "mounts");
  const char *best = NULL;

  for (guint i = 0; i < json_array_get_length (mounts); i++)
    {
      const char *mp = json_object_get_string_member (element (mounts, i), "mountpoint");
      gsize n = strlen (mp);
      gboolean under = g_strcmp0 (mp, "/") == 0
                       || (strncmp (dir, mp, n) == 0 && (dir[n] == '/' || dir[n] == '\0'));
      if (under && (best == NULL || strlen (mp) >= strlen (best)))
        best = mp;
    }
  g_assert_nonnull (best);
  return g_strdup (best);
}

static void
population_start (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *data = g_malloc0 (FILE_BYTES);

  pop.n_procs = env_uint ("MA_TEST_SCALE_PROCS", 48);
  pop.n_files = env_uint ("MA_TEST_SCALE_FILES", 2000);
  pop.n_locks = env_uint ("MA_TEST_SCALE_LOCKS", 200);
  /* a disk filesystem, as the writers of a database would be (not a tmpfs) */
  pop.dir = g_dir_make_tmp ("blockers-scale-XXXXXX", &error);
  g_assert_no_error (error);
  for (guint i = 0; i < pop.n_files; i++)
    {
      g_autofree char *path = g_strdup_printf ("%s/file-%u", pop.dir, i);
      g_assert_true (g_file_set_contents (path, data, FILE_BYTES, NULL));
    }
  pop.pids = g_array_new (FALSE, FALSE, sizeof (pid_t));
  for (guint i = 0; i < pop.n_procs; i++)
    {
      pid_t pid = start (0);
      g_array_append_val (pop.pids, pid);
    }
  pop.holder = start (1);
  for (guint i = 0; i < N_WAITERS; i++)
    {
      pop.waiters[i] = start (2);
      wait_until_waiting (pop.waiters[i]);
    }
  pop.daemon = ma_test_daemon_new (NULL);
  ma_test_daemon_start (pop.daemon, NULL);
  pop.client = ma_test_daemon_connect (pop.daemon);
  ma_client_set_timeout (pop.client, ma_test_timeout_ms (300000));
  pop.mountpoint = mountpoint_for (pop.dir);
}

static void
population_stop (void)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  g_clear_pointer (&pop.client, ma_client_free);
  g_clear_pointer (&pop.daemon, ma_test_daemon_free);
  for (guint i = 0; i < pop.pids->len; i++)
    kill (g_array_index (pop.pids, pid_t, i), SIGKILL);
  kill (pop.holder, SIGKILL);
  for (guint i = 0; i < N_WAITERS; i++)
    kill (pop.waiters[i], SIGKILL);
  while (waitpid (-1, NULL, 0) > 0 || errno == EINTR)
    ;
  dir = g_dir_open (pop.dir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (pop.dir, name, NULL);
      g_unlink (path);
    }
  g_rmdir (pop.dir);
  g_free (pop.dir);
  g_free (pop.mountpoint);
  g_array_unref (pop.pids);
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  if (geteuid () != 0)
    {
      /* /proc/PID/fd of other users needs root, as the agent has */
      g_test_skip ("needs root");
      return g_test_run ();
    }
  g_test_add_func ("/blockers-scale/summary-bounded", test_summary_bounded);
  g_test_add_func ("/blockers-scale/writer-pages", test_writer_pages);
  g_test_add_func ("/blockers-scale/page-bytes-bound", test_page_bytes_bound);
  g_test_add_func ("/blockers-scale/lock-pages", test_lock_pages);
  g_test_add_func ("/blockers-scale/prepare-bounded", test_prepare_bounded);
  g_test_add_func ("/blockers-scale/bad-page-arguments", test_bad_page_arguments);
  g_test_add_func ("/blockers-scale/info-reply-limit", test_info_reply_limit);
  g_test_add_func ("/blockers-scale/migctl-all-pages", test_migctl_all_pages);
  population_start ();
  status = g_test_run ();
  population_stop ();
  return status;
}
