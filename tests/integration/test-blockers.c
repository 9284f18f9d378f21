/* test-blockers.c — the `blockers` command against real processes: children of this test hold
 * a flock, a POSIX lock (with a blocked waiter), an OFD lock, a lease, a lock on a deleted file
 * and on a name with a newline and invalid UTF-8, locks in a multi-threaded process and one
 * whose owner exited (a child inherited it), and one writes; the real daemon reports them. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "client.h"
#include "error.h"
#include "json.h"

#define DEADLINE_US (20 * G_USEC_PER_SEC)
#define ODD_NAME "odd\nname\xff.lock"

typedef enum
{
  HOLD_FLOCK,
  HOLD_POSIX,
  HOLD_POSIX_WAITER,
  HOLD_OFD,
  HOLD_LEASE,
  HOLD_WRITER,
  HOLD_DELETED,
  HOLD_THREADED, /* a POSIX lock and a written file in a process with several threads */
} HoldKind;

typedef struct
{
  char *dir;
  char *sock;
  GPid daemon;
  GArray *children; /* pid_t */
  MaClient *client;
} Fixture;

static char *
path_in (Fixture *f, const char *name)
{
  return g_build_filename (f->dir, name, NULL);
}

static gpointer
sleeping_thread (gpointer data)
{
  for (;;)
    pause ();
  return NULL;
}

/* The child: take the lock, say so on `ready`, then wait until the test kills it. */
static G_GNUC_NORETURN void
child_main (HoldKind kind, const char *path, int ready)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
  int fd = -1;
  gboolean ok = FALSE;

  prctl (PR_SET_PDEATHSIG, SIGKILL);
  switch (kind)
    {
    case HOLD_FLOCK:
      fd = open (path, O_RDONLY | O_CREAT, 0600);
      ok = fd >= 0 && flock (fd, LOCK_EX) == 0;
      break;
    case HOLD_POSIX:
      fd = open (path, O_RDWR | O_CREAT, 0600);
      ok = fd >= 0 && fcntl (fd, F_SETLK, &fl) == 0;
      break;
    case HOLD_POSIX_WAITER:
      fd = open (path, O_RDWR | O_CREAT, 0600);
      ok = fd >= 0;
      if (ok && write (ready, "w", 1) != 1)
        _exit (3);
      /* blocks until the holder dies */
      fcntl (fd, F_SETLKW, &fl);
      pause ();
      _exit (0);
    case HOLD_OFD:
      fl.l_start = 100;
      fl.l_len = 50;
      fd = open (path, O_RDWR | O_CREAT, 0600);
      ok = fd >= 0 && fcntl (fd, F_OFD_SETLK, &fl) == 0;
      break;
    case HOLD_LEASE:
      fd = open (path, O_RDONLY);
      ok = fd >= 0 && fcntl (fd, F_SETLEASE, F_RDLCK) == 0;
      break;
    case HOLD_WRITER:
      fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ok = fd >= 0 && write (fd, "data\n", 5) == 5;
      break;
    case HOLD_DELETED:
      fd = open (path, O_RDWR | O_CREAT, 0600);
      ok = fd >= 0 && flock (fd, LOCK_SH) == 0 && unlink (path) == 0;
      break;
    case HOLD_THREADED:
      {
        g_autofree char *written = g_strconcat (path, ".log", NULL);
        g_thread_unref (g_thread_new ("sleeper", sleeping_thread, NULL));
        g_thread_unref (g_thread_new ("sleeper", sleeping_thread, NULL));
        fd = open (path, O_RDWR | O_CREAT, 0600);
        ok = fd >= 0 && fcntl (fd, F_SETLK, &fl) == 0
             && open (written, O_WRONLY | O_CREAT | O_APPEND, 0600) >= 0;
        break;
      }
    default:
      break;
    }
  if (!ok || write (ready, "r", 1) != 1)
    _exit (2);
  for (;;)
    pause ();
}

static pid_t
start_child (Fixture *f, HoldKind kind, const char *name)
{
  g_autofree char *path = path_in (f, name);
  int pipefd[2];
  pid_t pid;
  char c = 0;

  g_assert_cmpint (pipe2 (pipefd, O_CLOEXEC), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      close (pipefd[0]);
      child_main (kind, path, pipefd[1]);
    }
  close (pipefd[1]);
  g_array_append_val (f->children, pid);
  g_assert_cmpint (read (pipefd[0], &c, 1), ==, 1);
  close (pipefd[0]);
  g_assert_true (c == 'r' || c == 'w');
  return pid;
}

/* A flock taken by a process that then exits, its fd inherited by a child that keeps it:
 * /proc/locks names the dead owner, so the holder is found through fdinfo. Returns the
 * child that holds it (the test kills it). */
static pid_t
start_inherited (Fixture *f, const char *name)
{
  g_autofree char *path = path_in (f, name);
  int pipefd[2];
  pid_t test = getpid (), owner, holder = 0;

  g_assert_cmpint (pipe2 (pipefd, O_CLOEXEC), ==, 0);
  owner = fork ();
  g_assert_cmpint (owner, >=, 0);
  if (owner == 0)
    {
      int fd = open (path, O_RDONLY | O_CREAT, 0600);
      pid_t child;

      close (pipefd[0]);
      if (fd < 0 || flock (fd, LOCK_EX) != 0)
        _exit (2);
      child = fork ();
      if (child < 0)
        _exit (3);
      if (child == 0)
        {
          /* no parent-death signal here (its parent exits at once): outlive the test no more */
          while (kill (test, 0) == 0)
            g_usleep (G_USEC_PER_SEC);
          _exit (0);
        }
      if (write (pipefd[1], &child, sizeof child) != sizeof child)
        _exit (4);
      _exit (0);
    }
  close (pipefd[1]);
  g_assert_cmpint (read (pipefd[0], &holder, sizeof holder), ==, sizeof holder);
  close (pipefd[0]);
  /* reaped: its pid is gone from /proc, as an exited owner's is */
  g_assert_cmpint (waitpid (owner, NULL, 0), ==, owner);
  g_array_append_val (f->children, holder);
  return holder;
}

/* The waiter says it is about to block: wait until /proc/locks shows it blocked. */
static void
wait_until_waiting (pid_t pid)
{
  g_autofree char *needle = g_strdup_printf (" %d ", pid);
  gint64 deadline = g_get_monotonic_time () + DEADLINE_US;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *text = NULL;
      g_assert_true (g_file_get_contents ("/proc/locks", &text, NULL, NULL));
      for (char **lines = g_strsplit (text, "\n", -1), **l = lines; l != NULL; l = NULL)
        {
          gboolean found = FALSE;
          for (guint i = 0; lines[i] != NULL; i++)
            if (strstr (lines[i], "->") != NULL && strstr (lines[i], needle) != NULL)
              found = TRUE;
          g_strfreev (lines);
          if (found)
            return;
        }
      g_usleep (10 * 1000);
    }
  g_error ("pid %d never showed up as a lock waiter", pid);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  const char *agent = g_getenv ("MIGRATION_AGENT");
  g_autofree char *config = NULL;
  g_autofree char *state = NULL;
  g_autofree char *uri = NULL;
  g_autoptr(GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + DEADLINE_US;

  g_assert_nonnull (agent);
  f->dir = g_dir_make_tmp ("blockers-XXXXXX", &error);
  g_assert_no_error (error);
  f->children = g_array_new (FALSE, FALSE, sizeof (pid_t));
  f->sock = path_in (f, "agent.sock");
  config = path_in (f, "empty.conf");
  state = path_in (f, "state");
  g_assert_true (g_file_set_contents (config, "", 0, NULL));
  uri = g_strdup_printf ("unix:%s", f->sock);
  {
    const char *argv[] = { agent, "--listen", uri, "--state-dir", state, "--config", config,
                           "--foreground", NULL };
    g_spawn_async (NULL, (char **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &f->daemon,
                   &error);
    g_assert_no_error (error);
  }
  while (f->client == NULL)
    {
      g_clear_error (&error);
      f->client = ma_client_connect (uri, 5000, &error);
      if (f->client == NULL)
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_usleep (20 * 1000);
        }
    }
  ma_client_set_timeout (f->client, 120000);
}

/* The same daemon resolving each fd with its own system call (no io_uring batches). */
static void
fixture_setup_one_by_one (Fixture *f, gconstpointer data)
{
  g_setenv ("MA_PROC_SCAN_NO_URING", "1", TRUE);
  fixture_setup (f, data);
  g_unsetenv ("MA_PROC_SCAN_NO_URING");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  g_clear_pointer (&f->client, ma_client_free);
  for (guint i = 0; i < f->children->len; i++)
    {
      pid_t pid = g_array_index (f->children, pid_t, i);
      kill (pid, SIGKILL);
      waitpid (pid, NULL, 0);
    }
  g_array_unref (f->children);
  kill (f->daemon, SIGTERM);
  waitpid (f->daemon, NULL, 0);
  g_spawn_close_pid (f->daemon);
  dir = g_dir_open (f->dir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *p = path_in (f, name);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        {
          g_autoptr(GDir) sub = g_dir_open (p, 0, NULL);
          const char *n2;
          while (sub != NULL && (n2 = g_dir_read_name (sub)) != NULL)
            {
              g_autofree char *p2 = g_build_filename (p, n2, NULL);
              g_unlink (p2);
            }
          g_rmdir (p);
        }
      else
        g_unlink (p);
    }
  g_rmdir (f->dir);
  g_free (f->dir);
  g_free (f->sock);
}

static JsonObject *
run_blockers (Fixture *f, const char *mountpoint, JsonNode **keep, GError **error)
{
  g_autoptr(JsonObject) args = json_object_new ();

  if (mountpoint != NULL)
    {
      JsonArray *list = json_array_new ();
      json_array_add_string_element (list, mountpoint);
      json_object_set_array_member (args, "mountpoints", list);
    }
  *keep = ma_client_execute (f->client, "blockers", args, error);
  if (*keep == NULL)
    return NULL;
  g_assert_true (JSON_NODE_HOLDS_OBJECT (*keep));
  return json_node_get_object (*keep);
}

static JsonArray *
array_member (JsonObject *obj, const char *member)
{
  JsonArray *array = NULL;

  g_assert_true (ma_json_get_array (obj, member, &array, NULL));
  g_assert_nonnull (array);
  return array;
}

static const char *
string_member (JsonObject *obj, const char *member)
{
  const char *value = NULL;

  g_assert_true (ma_json_get_string (obj, member, &value, NULL));
  return value;
}

static gint64
int_member (JsonObject *obj, const char *member)
{
  gint64 value = G_MININT64;

  g_assert_true (ma_json_get_int (obj, member, &value, NULL));
  return value;
}

static gboolean
bool_member (JsonObject *obj, const char *member)
{
  gboolean value = FALSE;

  g_assert_true (ma_json_get_bool (obj, member, &value, NULL));
  return value;
}

/* The entry of `array` whose `member` is `path` (compared in its escaped form). */
static JsonObject *
find_by_path (JsonArray *array, const char *path, const char *type)
{
  g_autofree char *safe = ma_json_safe_string (path, -1, NULL);

  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonObject *obj = json_node_get_object (json_array_get_element (array, i));
      const char *p = NULL;
      ma_json_get_string (obj, "path", &p, NULL);
      if (g_strcmp0 (p, safe) == 0 && (type == NULL || g_strcmp0 (string_member (obj, "type"), type) == 0))
        return obj;
    }
  g_error ("no entry for %s (%s)", safe, type ? type : "any");
}

static JsonObject *
only_holder (JsonObject *lock)
{
  JsonArray *holders = array_member (lock, "holders");

  g_assert_cmpuint (json_array_get_length (holders), ==, 1);
  return json_node_get_object (json_array_get_element (holders, 0));
}

/* The mountpoint the daemon reports for the test's directory. */
static char *
mountpoint_of (JsonObject *ret, const char *dir)
{
  JsonArray *mounts = array_member (ret, "mounts");
  const char *best = NULL;

  for (guint i = 0; i < json_array_get_length (mounts); i++)
    {
      JsonObject *m = json_node_get_object (json_array_get_element (mounts, i));
      const char *mp = string_member (m, "mountpoint");
      gsize n = strlen (mp);
      gboolean under = g_strcmp0 (mp, "/") == 0
                       || (strncmp (dir, mp, n) == 0 && (dir[n] == '/' || dir[n] == '\0'));
      if (under && (best == NULL || strlen (mp) >= strlen (best)))
        best = mp;
    }
  g_assert_nonnull (best);
  return g_strdup (best);
}

/* The writers_by_process entry of a pid in a default reply, or NULL. */
static JsonObject *
find_writer_group (JsonObject *ret, gint64 pid)
{
  JsonArray *groups = array_member (ret, "writers_by_process");

  for (guint i = 0; i < json_array_get_length (groups); i++)
    {
      JsonObject *g = json_node_get_object (json_array_get_element (groups, i));
      if (int_member (g, "pid") == pid)
        {
          g_assert_cmpint (int_member (g, "fds"), >=, 1);
          g_assert_cmpuint (json_array_get_length (array_member (g, "examples")), >=, 1);
          return g;
        }
    }
  return NULL;
}

/* Every entry of one kind (detail) on a mountpoint, page after page (small pages): what a
 * default reply may summarise when the machine holds more than it lists. */
static JsonArray *
all_entries (Fixture *f, const char *mountpoint, const char *detail, JsonArray **keep)
{
  g_autofree char *cursor = NULL;

  *keep = json_array_new ();
  do
    {
      g_autoptr(JsonObject) args = json_object_new ();
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) node = NULL;
      JsonArray *list = json_array_new ();
      JsonArray *entries;
      JsonObject *page = NULL;
      const char *next = NULL;

      json_array_add_string_element (list, mountpoint);
      json_object_set_array_member (args, "mountpoints", list);
      json_object_set_string_member (args, "detail", detail);
      json_object_set_int_member (args, "limit", 7);
      if (cursor != NULL)
        json_object_set_string_member (args, "cursor", cursor);
      node = ma_client_execute (f->client, "blockers", args, &error);
      g_assert_no_error (error);
      entries = array_member (json_node_get_object (node), detail);
      for (guint i = 0; i < json_array_get_length (entries); i++)
        json_array_add_element (*keep, json_node_copy (json_array_get_element (entries, i)));
      g_assert_true (ma_json_get_object (json_node_get_object (node), "page", &page, NULL));
      g_assert_nonnull (page);
      ma_json_get_string (page, "next_cursor", &next, NULL);
      g_free (cursor);
      cursor = g_strdup (next);
    }
  while (cursor != NULL);
  return *keep;
}

static JsonArray *
all_writers (Fixture *f, const char *mountpoint, JsonArray **keep)
{
  return all_entries (f, mountpoint, "writers", keep);
}

/* The locks of the default reply when it lists them all, else every lock from the pages. */
static JsonArray *
all_locks (Fixture *f, JsonObject *ret, const char *mountpoint, JsonArray **keep)
{
  JsonObject *totals = NULL, *tl = NULL;

  g_assert_true (ma_json_get_object (ret, "totals", &totals, NULL));
  g_assert_true (ma_json_get_object (totals, "locks", &tl, NULL));
  g_assert_cmpint (int_member (tl, "listed"), <=, int_member (tl, "total"));
  g_assert_cmpuint (json_array_get_length (array_member (ret, "locks")), ==,
                    int_member (tl, "listed"));
  if (int_member (tl, "listed") == int_member (tl, "total"))
    {
      *keep = json_array_ref (array_member (ret, "locks"));
      return *keep;
    }
  /* another test's population shares the filesystem: the rest are in the pages */
  return all_entries (f, mountpoint, "locks", keep);
}

static void
test_real_locks (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) first = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(JsonArray) all = NULL;
  g_autoptr(JsonArray) all_lock_entries = NULL;
  g_autofree char *mp = NULL;
  g_autofree char *flock_path = path_in (f, "flock.lock");
  g_autofree char *posix_path = path_in (f, "posix.lock");
  g_autofree char *ofd_path = path_in (f, "ofd.lock");
  g_autofree char *lease_path = path_in (f, "lease.file");
  g_autofree char *writer_path = path_in (f, "written.log");
  g_autofree char *deleted_path = path_in (f, "deleted.lock");
  g_autofree char *odd_path = path_in (f, ODD_NAME);
  JsonObject *ret, *lock, *holder, *waiter, *writer = NULL;
  JsonArray *locks, *writers, *waiters, *reasons;
  pid_t flock_pid, posix_pid, waiter_pid, ofd_pid, lease_pid, writer_pid, deleted_pid, odd_pid;
  const char *verdict;

  g_assert_true (g_file_set_contents (lease_path, "lease me", -1, NULL));
  flock_pid = start_child (f, HOLD_FLOCK, "flock.lock");
  posix_pid = start_child (f, HOLD_POSIX, "posix.lock");
  waiter_pid = start_child (f, HOLD_POSIX_WAITER, "posix.lock");
  wait_until_waiting (waiter_pid);
  ofd_pid = start_child (f, HOLD_OFD, "ofd.lock");
  lease_pid = start_child (f, HOLD_LEASE, "lease.file");
  writer_pid = start_child (f, HOLD_WRITER, "written.log");
  deleted_pid = start_child (f, HOLD_DELETED, "deleted.lock");
  odd_pid = start_child (f, HOLD_FLOCK, ODD_NAME);

  /* the whole-system report first, then only the test directory's filesystem */
  ret = run_blockers (f, NULL, &first, &error);
  g_assert_no_error (error);
  mp = mountpoint_of (ret, f->dir);
  ret = run_blockers (f, mp, &node, &error);
  g_assert_no_error (error);
  locks = all_locks (f, ret, mp, &all_lock_entries);

  lock = find_by_path (locks, flock_path, "FLOCK");
  g_assert_cmpstr (string_member (lock, "mode"), ==, "WRITE");
  g_assert_false (bool_member (lock, "deleted"));
  g_assert_cmpstr (string_member (lock, "mountpoint"), ==, mp);
  holder = only_holder (lock);
  g_assert_cmpint (int_member (holder, "pid"), ==, flock_pid);
  g_assert_cmpstr (string_member (holder, "comm"), ==, "test-blockers");
  g_assert_cmpint (int_member (holder, "fd"), >=, 0);
  g_assert_nonnull (strstr (string_member (holder, "cmdline"), "test-blockers"));

  lock = find_by_path (locks, posix_path, "POSIX");
  g_assert_cmpint (int_member (only_holder (lock), "pid"), ==, posix_pid);
  waiters = array_member (lock, "waiters");
  g_assert_cmpuint (json_array_get_length (waiters), ==, 1);
  waiter = json_node_get_object (json_array_get_element (waiters, 0));
  g_assert_cmpint (int_member (waiter, "pid"), ==, waiter_pid);
  g_assert_cmpstr (string_member (waiter, "mode"), ==, "WRITE");

  /* OFD: pid -1 in /proc/locks, the holder comes from fdinfo */
  lock = find_by_path (locks, ofd_path, "OFD");
  g_assert_cmpint (int_member (lock, "start"), ==, 100);
  g_assert_cmpint (int_member (lock, "end"), ==, 149);
  g_assert_cmpint (int_member (only_holder (lock), "pid"), ==, ofd_pid);

  lock = find_by_path (locks, lease_path, "LEASE");
  g_assert_cmpstr (string_member (lock, "mode"), ==, "READ");
  g_assert_cmpint (int_member (only_holder (lock), "pid"), ==, lease_pid);

  lock = find_by_path (locks, deleted_path, "FLOCK");
  g_assert_true (bool_member (lock, "deleted"));
  g_assert_cmpstr (string_member (lock, "mode"), ==, "READ");
  g_assert_cmpint (int_member (only_holder (lock), "pid"), ==, deleted_pid);

  lock = find_by_path (locks, odd_path, "FLOCK");
  g_assert_true (bool_member (lock, "path_escaped"));
  g_assert_nonnull (strstr (string_member (lock, "path"), "odd\nname\\xff.lock"));
  g_assert_cmpint (int_member (only_holder (lock), "pid"), ==, odd_pid);

  /* the default reply aggregates the writers (and lists the first few); every one of them
   * is in the detail pages */
  g_assert_nonnull (find_writer_group (ret, writer_pid));
  writers = all_writers (f, mp, &all);
  for (guint i = 0; i < json_array_get_length (writers); i++)
    {
      JsonObject *w = json_node_get_object (json_array_get_element (writers, i));
      if (int_member (w, "pid") == writer_pid)
        writer = w;
    }
  g_assert_nonnull (writer);
  g_assert_cmpstr (string_member (writer, "path"), ==, writer_path);
  g_assert_cmpint (int_member (writer, "fd"), >=, 0);

  /* the readers and lock holders that only read are not writers */
  for (guint i = 0; i < json_array_get_length (writers); i++)
    {
      JsonObject *w = json_node_get_object (json_array_get_element (writers, i));
      g_assert_cmpint (int_member (w, "pid"), !=, flock_pid);
      g_assert_cmpint (int_member (w, "pid"), !=, lease_pid);
    }

  verdict = string_member (ret, "verdict");
  reasons = array_member (ret, "reasons");
  g_assert_true (g_strcmp0 (verdict, "ready") == 0 || g_strcmp0 (verdict, "slow") == 0
                 || g_strcmp0 (verdict, "blocked") == 0);
  /* the lock and writer reasons are there, as information */
  {
    gboolean has_locks = FALSE, has_writers = FALSE;
    for (guint i = 0; i < json_array_get_length (reasons); i++)
      {
        JsonObject *r = json_node_get_object (json_array_get_element (reasons, i));
        has_locks |= g_strcmp0 (string_member (r, "code"), "locks") == 0;
        has_writers |= g_strcmp0 (string_member (r, "code"), "writers") == 0;
        if (g_strcmp0 (verdict, "ready") == 0)
          g_assert_cmpstr (string_member (r, "severity"), ==, "info");
      }
    g_assert_true (has_locks);
    g_assert_true (has_writers);
  }
  g_assert_cmpint (int_member (json_node_get_object (json_object_get_member (ret, "scan")),
                               "processes"), >=, 8);
}

/* Holders found the other ways: an owner with several threads (its one stat says so, its
 * threads are read one by one), and a lock whose owner exited while a child kept the file. */
static void
test_other_owners (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) first = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(JsonArray) all = NULL;
  g_autoptr(JsonArray) all_lock_entries = NULL;
  g_autofree char *mp = NULL;
  g_autofree char *threaded_path = path_in (f, "threaded.lock");
  g_autofree char *written_path = path_in (f, "threaded.lock.log");
  g_autofree char *inherited_path = path_in (f, "inherited.lock");
  g_autofree char *status = NULL;
  g_autofree char *status_path = NULL;
  JsonObject *ret, *lock, *holder, *writer = NULL;
  JsonArray *writers, *locks;
  pid_t threaded_pid, inherited_pid;

  threaded_pid = start_child (f, HOLD_THREADED, "threaded.lock");
  inherited_pid = start_inherited (f, "inherited.lock");
  status_path = g_strdup_printf ("/proc/%d/status", threaded_pid);
  g_assert_true (g_file_get_contents (status_path, &status, NULL, NULL));
  g_assert_nonnull (strstr (status, "\nThreads:\t3\n"));

  ret = run_blockers (f, NULL, &first, &error);
  g_assert_no_error (error);
  mp = mountpoint_of (ret, f->dir);
  ret = run_blockers (f, mp, &node, &error);
  g_assert_no_error (error);

  locks = all_locks (f, ret, mp, &all_lock_entries);
  lock = find_by_path (locks, threaded_path, "POSIX");
  holder = only_holder (lock);
  g_assert_cmpint (int_member (holder, "pid"), ==, threaded_pid);
  g_assert_cmpstr (string_member (holder, "comm"), ==, "test-blockers");
  g_assert_cmpint (int_member (holder, "fd"), >=, 0);
  g_assert_nonnull (find_writer_group (ret, threaded_pid));
  writers = all_writers (f, mp, &all);
  for (guint i = 0; i < json_array_get_length (writers); i++)
    {
      JsonObject *w = json_node_get_object (json_array_get_element (writers, i));
      if (int_member (w, "pid") == threaded_pid
          && g_strcmp0 (string_member (w, "path"), written_path) == 0)
        writer = w;
    }
  g_assert_nonnull (writer);
  g_assert_cmpstr (string_member (writer, "comm"), ==, "test-blockers");

  /* /proc/locks still names the exited owner; the report names the child that holds it */
  lock = find_by_path (locks, inherited_path, "FLOCK");
  holder = only_holder (lock);
  g_assert_cmpint (int_member (holder, "pid"), ==, inherited_pid);
  g_assert_cmpint (int_member (holder, "fd"), >=, 0);
  g_assert_nonnull (strstr (string_member (holder, "cmdline"), "test-blockers"));
  g_assert_false (json_object_has_member (holder, "exited"));
}

/* A tmpfs asked for explicitly cannot be frozen: the verdict says blocked, and why. */
static void
test_unfreezable (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;
  JsonObject *ret = run_blockers (f, "/dev/shm", &node, &error);
  JsonArray *reasons;
  gboolean found = FALSE;

  if (ret == NULL && g_error_matches (error, MA_ERROR, MA_ERROR_NOT_FOUND))
    {
      g_test_skip ("/dev/shm is not a mountpoint here");
      return;
    }
  g_assert_no_error (error);
  g_assert_cmpstr (string_member (ret, "verdict"), ==, "blocked");
  reasons = array_member (ret, "reasons");
  for (guint i = 0; i < json_array_get_length (reasons); i++)
    {
      JsonObject *r = json_node_get_object (json_array_get_element (reasons, i));
      if (g_strcmp0 (string_member (r, "code"), "not-freezable") == 0)
        {
          found = TRUE;
          g_assert_cmpstr (string_member (r, "severity"), ==, "blocked");
          g_assert_nonnull (strstr (string_member (r, "message"), "/dev/shm"));
        }
    }
  g_assert_true (found);
  g_assert_cmpuint (json_array_get_length (array_member (ret, "freeze_order")), ==, 0);
}

static void
test_bad_arguments (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) error2 = NULL;
  g_autoptr(GError) error3 = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonObject) args2 = json_object_new ();
  g_autoptr(JsonNode) r2 = NULL;
  g_autoptr(JsonNode) r3 = NULL;
  g_autoptr(JsonNode) info = NULL;
  JsonArray *caps = NULL;
  gboolean has_cap = FALSE;

  g_assert_null (run_blockers (f, "/no/such/mountpoint", &node, &error));
  g_assert_error (error, MA_ERROR, MA_ERROR_NOT_FOUND);

  json_object_set_int_member (args, "mountpoints", 5);
  r2 = ma_client_execute (f->client, "blockers", args, &error2);
  g_assert_null (r2);
  /* the protocol class of a bad argument is GenericError */
  g_assert_error (error2, MA_ERROR, MA_ERROR_GENERIC);
  g_assert_nonnull (strstr (error2->message, "mountpoints"));

  json_object_set_boolean_member (args2, "bogus", TRUE);
  r3 = ma_client_execute (f->client, "blockers", args2, &error3);
  g_assert_null (r3);
  g_assert_error (error3, MA_ERROR, MA_ERROR_GENERIC);
  g_assert_nonnull (strstr (error3->message, "bogus"));

  info = ma_client_execute (f->client, "info", NULL, &error);
  g_assert_nonnull (info);
  g_assert_true (ma_json_get_array (json_node_get_object (info), "capabilities", &caps, NULL));
  for (guint i = 0; caps != NULL && i < json_array_get_length (caps); i++)
    has_cap |= g_strcmp0 (json_array_get_string_element (caps, i), "blockers") == 0;
  g_assert_true (has_cap);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (geteuid () != 0)
    {
      /* /proc/PID/fd of other users and leases need root, as the agent has */
      g_test_skip ("needs root");
    }
  g_test_add ("/blockers/real-locks", Fixture, NULL, fixture_setup, test_real_locks,
              fixture_teardown);
  g_test_add ("/blockers/other-owners", Fixture, NULL, fixture_setup, test_other_owners,
              fixture_teardown);
  g_test_add ("/blockers/real-locks/one-by-one", Fixture, NULL, fixture_setup_one_by_one,
              test_real_locks, fixture_teardown);
  g_test_add ("/blockers/other-owners/one-by-one", Fixture, NULL, fixture_setup_one_by_one,
              test_other_owners, fixture_teardown);
  g_test_add ("/blockers/unfreezable", Fixture, NULL, fixture_setup, test_unfreezable,
              fixture_teardown);
  g_test_add ("/blockers/bad-arguments", Fixture, NULL, fixture_setup, test_bad_arguments,
              fixture_teardown);
  return g_test_run ();
}
