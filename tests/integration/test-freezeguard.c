/* test-freezeguard.c — the freeze watchdog against real frozen filesystems: ext4 on loop
 * devices frozen with fsfreeze, qemu-ga's marker file, blocked writers, renewals. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "daemon-fixture.h"
#include "error.h"
#include "json.h"

#define WAIT_MS 30000
#define POLL_US (20 * 1000)
#define MARKER "qga.state.isfrozen" /* qemu-ga's own name, qga/main.c */

/* validate probes the network on every interface: only inside a namespace of our own */
static gboolean in_private_netns;

typedef struct
{
  gint64 limit;
  gint64 poll;
  gboolean marker;  /* write qemu-ga's marker when the test freezes, as qemu-ga does */
  gboolean enabled;
  gboolean nested;  /* a second ext4 on a loop device backed by a file on the first */
  gboolean plugin;  /* a plugin directory with one oneshot test plugin, for quiesce */
  gboolean sibling; /* a second ext4 on its own loop device, image outside the first */
  gboolean guard_sibling; /* mounts= names the sibling too (else only the first) */
  const char *extra_config; /* appended to the agent's configuration */
  gboolean log_on_fs; /* the agent's stderr is a regular file on the first filesystem */
} Scenario;

typedef struct
{
  char *img;
  char *dev;
  char *mnt;
  gboolean mounted;
  gboolean frozen;
} LoopFs;

typedef struct
{
  char *dir;
  char *rundir;
  char *plugins; /* with Scenario.plugin */
  LoopFs outer;
  LoopFs inner; /* only with Scenario.nested */
  LoopFs sibling; /* only with Scenario.sibling */
  MaTestDaemon *daemon;
  MaClient *events; /* connected before anything can happen */
  GArray *children; /* pid_t of writers */
  gboolean skipped;
} Fixture;

/* ---- never leave a filesystem frozen ---- */

/* A failed assertion aborts the test before its teardown: the filesystems it froze would
 * stay frozen (and their writers stuck in the kernel). The handler thaws them with plain
 * syscalls (async-signal-safe) before the process dies. */
#define MAX_EMERGENCY 4
static char emergency_mounts[MAX_EMERGENCY][512];
static volatile sig_atomic_t n_emergency;

static void
emergency_thaw (int signo)
{
  for (int i = 0; i < n_emergency; i++)
    {
      int fd = open (emergency_mounts[i], O_RDONLY | O_CLOEXEC);
      if (fd >= 0)
        {
          ioctl (fd, FITHAW, 0);
          close (fd);
        }
    }
  signal (signo, SIG_DFL);
  raise (signo);
}

static void
emergency_add (const char *mnt)
{
  g_assert_cmpint (n_emergency, <, MAX_EMERGENCY);
  g_strlcpy (emergency_mounts[n_emergency], mnt, sizeof emergency_mounts[0]);
  n_emergency++;
}

static void
emergency_install (void)
{
  struct sigaction sa = { .sa_handler = emergency_thaw };

  sigemptyset (&sa.sa_mask);
  sigaction (SIGABRT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGSEGV, &sa, NULL);
  sigaction (SIGBUS, &sa, NULL);
  sigaction (SIGTRAP, &sa, NULL); /* g_error () on x86 */
}

/* ---- helpers ---- */

static int
run (char **out, char **err, const char *first, ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  va_list args;
  int status = 0;
  const char *arg;

  g_ptr_array_add (argv, (gpointer) first);
  va_start (args, first);
  while ((arg = va_arg (args, const char *)) != NULL)
    g_ptr_array_add (argv, (gpointer) arg);
  va_end (args);
  g_ptr_array_add (argv, NULL);
  if (!g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, out,
                     err, &status, NULL))
    return -1;
  return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static gboolean
loopfs_create (LoopFs *fs, const char *dir, const char *name, const char *img_dir, char **why)
{
  g_autofree char *out = NULL, *err = NULL;
  int fd;

  fs->img = g_strdup_printf ("%s/%s.img", img_dir, name);
  fs->mnt = g_strdup_printf ("%s/%s", dir, name);
  g_assert_cmpint (g_mkdir (fs->mnt, 0755), ==, 0);
  fd = open (fs->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (ftruncate (fd, 48 * 1024 * 1024), ==, 0);
  close (fd);
  if (run (NULL, &err, "mkfs.ext4", "-q", "-F", fs->img, NULL) != 0)
    {
      *why = g_strdup_printf ("mkfs.ext4 failed: %s", err ? err : "not installed");
      return FALSE;
    }
  g_clear_pointer (&err, g_free);
  if (run (&out, &err, "losetup", "--find", "--show", fs->img, NULL) != 0)
    {
      *why = g_strdup_printf ("no loop device: %s", err ? err : "losetup not installed");
      return FALSE;
    }
  fs->dev = g_strdup (g_strstrip (out));
  g_clear_pointer (&err, g_free);
  if (run (NULL, &err, "mount", "-t", "ext4", fs->dev, fs->mnt, NULL) != 0)
    {
      *why = g_strdup_printf ("cannot mount %s: %s", fs->dev, err);
      return FALSE;
    }
  fs->mounted = TRUE;
  return TRUE;
}

static void
loopfs_freeze (LoopFs *fs)
{
  g_autofree char *err = NULL;

  if (run (NULL, &err, "fsfreeze", "--freeze", fs->mnt, NULL) != 0)
    g_error ("fsfreeze --freeze %s: %s", fs->mnt, err);
  fs->frozen = TRUE;
  emergency_add (fs->mnt);
}

/* What qemu-ga's guest-fsfreeze-freeze leaves behind: frozen filesystems and its marker. */
static void
freeze_like_qga (Fixture *f, const Scenario *sc, LoopFs *fs)
{
  loopfs_freeze (fs);
  if (sc->marker)
    {
      g_autofree char *marker = g_build_filename (f->rundir, MARKER, NULL);
      g_assert_true (g_file_set_contents (marker, "", 0, NULL));
    }
}

/* TRUE when the filesystem was frozen (fsfreeze --unfreeze fails with EINVAL otherwise). */
static gboolean
loopfs_unfreeze (LoopFs *fs)
{
  g_autofree char *err = NULL;
  gboolean was_frozen;

  if (fs->mnt == NULL || !fs->mounted)
    return FALSE;
  was_frozen = run (NULL, &err, "fsfreeze", "--unfreeze", fs->mnt, NULL) == 0;
  fs->frozen = FALSE;
  return was_frozen;
}

static void
loopfs_destroy (LoopFs *fs)
{
  if (fs->mounted)
    {
      if (run (NULL, NULL, "umount", fs->mnt, NULL) != 0)
        run (NULL, NULL, "umount", "--lazy", fs->mnt, NULL);
    }
  if (fs->dev != NULL)
    run (NULL, NULL, "losetup", "--detach", fs->dev, NULL);
  if (fs->img != NULL)
    g_unlink (fs->img);
  if (fs->mnt != NULL)
    g_rmdir (fs->mnt);
  g_free (fs->img);
  g_free (fs->dev);
  g_free (fs->mnt);
  memset (fs, 0, sizeof *fs);
}

/* A child process that writes and syncs a file there: it sleeps in the kernel while the
 * filesystem is frozen and exits 0 once it is thawed. */
static pid_t
start_writer (Fixture *f, const char *mnt)
{
  g_autofree char *path = g_strdup_printf ("%s/written-%d", mnt, g_random_int_range (0, 1 << 30));
  pid_t pid = fork ();

  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      /* a stuck child must not hold the test's output open */
      int null = open ("/dev/null", O_RDWR | O_CLOEXEC);
      int fd;

      dup2 (null, STDOUT_FILENO);
      dup2 (null, STDERR_FILENO);
      fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || write (fd, "thawed\n", 7) != 7 || fsync (fd) < 0)
        _exit (1);
      _exit (0);
    }
  g_array_append_val (f->children, pid);
  return pid;
}

/* Freeze fs with a child blocked writing through a file opened before the freeze: write(2) on
 * that descriptor is what sleeps (an open by name with O_CREAT would sleep instead, and the
 * guard cannot tell which filesystem a call by path waits on). The child exits 0 once thawed. */
static pid_t
start_fd_writer (Fixture *f, LoopFs *fs)
{
  g_autofree char *path = g_strdup_printf ("%s/written-%d", fs->mnt, g_random_int_range (0, 1 << 30));
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid;

  g_assert_cmpint (fd, >=, 0);
  loopfs_freeze (fs);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0)
    {
      int null = open ("/dev/null", O_RDWR | O_CLOEXEC);

      dup2 (null, STDOUT_FILENO);
      dup2 (null, STDERR_FILENO);
      if (write (fd, "thawed\n", 7) != 7 || fsync (fd) < 0)
        _exit (1);
      _exit (0);
    }
  /* the child holds the open file: this close only drops our reference */
  close (fd);
  g_array_append_val (f->children, pid);
  return pid;
}

static char *
read_wchan (pid_t pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/wchan", pid);
  g_autofree char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return g_strdup ("");
  return g_strdup (g_strstrip (text));
}

static void
wait_blocked (pid_t pid)
{
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *wchan = read_wchan (pid);
      if (g_strcmp0 (wchan, "percpu_rwsem_wait") == 0)
        return;
      g_usleep (POLL_US);
    }
  g_error ("writer %d never blocked on the frozen filesystem", pid);
}

/* Whether the child exited 0 within the deadline. */
static gboolean
wait_writer (Fixture *f, pid_t pid, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int status;

  while (g_get_monotonic_time () < deadline)
    {
      if (waitpid (pid, &status, WNOHANG) == pid)
        {
          for (guint i = 0; i < f->children->len; i++)
            if (g_array_index (f->children, pid_t, i) == pid)
              g_array_remove_index (f->children, i);
          return WIFEXITED (status) && WEXITSTATUS (status) == 0;
        }
      g_usleep (POLL_US);
    }
  return FALSE;
}

static JsonNode *
wait_event (Fixture *f, const char *name, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(JsonNode) event = ma_client_next_event (f->events, 500, &error);
      g_assert_no_error (error);
      if (event != NULL
          && g_strcmp0 (json_object_get_string_member (json_node_get_object (event), "event"),
                        name) == 0)
        return g_steal_pointer (&event);
    }
  return NULL;
}

static JsonObject *
guard_status (MaClient *client, const char *args)
{
  g_autoptr(JsonNode) ret = ma_test_execute (client, "freeze-guard", args);

  return json_object_ref (json_node_get_object (ret));
}

static gboolean
array_has_string (JsonArray *array, const char *s)
{
  for (guint i = 0; i < json_array_get_length (array); i++)
    if (g_strcmp0 (json_array_get_string_element (array, i), s) == 0)
      return TRUE;
  return FALSE;
}

/* A oneshot plugin that logs its phases and succeeds: quiesce and thaw only, so that a phase
 * added to the plugin contract later does not change what this test runs. Written the way
 * tests/integration/test-quiesce.c writes its plugins (root-owned, 0755 script, 0644 manifest). */
static void
write_oneshot_plugin (Fixture *f, const char *name)
{
  g_autofree char *script_path = g_strdup_printf ("%s/%s.sh", f->plugins, name);
  g_autofree char *manifest_path = g_strdup_printf ("%s/%s.plugin", f->plugins, name);
  g_autofree char *script = g_strdup_printf ("#!/bin/sh\necho \"$MA_PLUGIN $1\" >> '%s/plugin.log'\n",
                                             f->dir);
  g_autofree char *manifest = g_strdup_printf ("[Plugin]\nName=%s\nExec=%s.sh\n"
                                               "Protocol=oneshot\nPhases=quiesce;thaw\n",
                                               name, name);

  g_assert_true (g_file_set_contents (script_path, script, -1, NULL));
  g_assert_cmpint (chmod (script_path, 0755), ==, 0);
  g_assert_true (g_file_set_contents (manifest_path, manifest, -1, NULL));
  g_assert_cmpint (chmod (manifest_path, 0644), ==, 0);
}

static char *
plugin_log (Fixture *f)
{
  g_autofree char *path = g_build_filename (f->dir, "plugin.log", NULL);
  char *text = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return g_strdup ("");
  return text;
}

/* ---- fixture ---- */

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *why = NULL;
  g_autoptr(GString) config = g_string_new (NULL);

  f->children = g_array_new (FALSE, FALSE, sizeof (pid_t));
  if (geteuid () != 0 || !g_file_test ("/dev/loop-control", G_FILE_TEST_EXISTS))
    {
      g_test_message ("skipped: needs root and loop devices (/dev/loop-control)");
      g_test_skip ("needs root and loop devices");
      f->skipped = TRUE;
      return;
    }
  f->dir = g_dir_make_tmp ("ma-freezeguard-XXXXXX", &error);
  g_assert_no_error (error);
  f->rundir = g_build_filename (f->dir, "run", NULL);
  g_assert_cmpint (g_mkdir (f->rundir, 0755), ==, 0);
  if (!loopfs_create (&f->outer, f->dir, "outer", f->dir, &why)
      || (sc->nested && !loopfs_create (&f->inner, f->dir, "inner", f->outer.mnt, &why))
      || (sc->sibling && !loopfs_create (&f->sibling, f->dir, "sibling", f->dir, &why)))
    {
      g_test_message ("skipped: %s", why);
      g_test_skip (why);
      f->skipped = TRUE;
      return;
    }

  g_string_append_printf (config, "[freeze-guard]\nenabled=%s\nlimit-seconds=%" G_GINT64_FORMAT
                          "\npoll-seconds=%" G_GINT64_FORMAT "\nmounts=%s%s%s%s%s\n",
                          sc->enabled ? "true" : "false", sc->limit, sc->poll, f->outer.mnt,
                          sc->nested ? ";" : "", sc->nested ? f->inner.mnt : "",
                          sc->guard_sibling ? ";" : "", sc->guard_sibling ? f->sibling.mnt : "");
  if (sc->plugin)
    {
      f->plugins = g_build_filename (f->dir, "plugins", NULL);
      g_assert_cmpint (g_mkdir (f->plugins, 0755), ==, 0);
      write_oneshot_plugin (f, "app");
      g_string_append_printf (config, "[plugins]\ndirs=%s\n", f->plugins);
    }
  if (sc->extra_config != NULL)
    g_string_append (config, sc->extra_config);
  /* qemu-ga's state directory is under the run dir of paths.h */
  g_setenv ("MA_RUNDIR", f->rundir, TRUE);
  f->daemon = ma_test_daemon_new (config->str);
  if (sc->log_on_fs)
    {
      g_free (f->daemon->log_path);
      f->daemon->log_path = g_build_filename (f->outer.mnt, "agent.log", NULL);
    }
  ma_test_daemon_start (f->daemon, NULL);
  f->events = ma_test_daemon_connect (f->daemon);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  /* always thaw first: blocked writers and umount need it */
  loopfs_unfreeze (&f->sibling);
  loopfs_unfreeze (&f->inner);
  loopfs_unfreeze (&f->outer);
  for (guint i = 0; i < f->children->len; i++)
    {
      pid_t pid = g_array_index (f->children, pid_t, i);
      waitpid (pid, NULL, 0);
    }
  g_array_unref (f->children);
  n_emergency = 0;
  g_clear_pointer (&f->events, ma_client_free);
  if (f->daemon != NULL)
    g_assert_cmpint (ma_test_daemon_stop (f->daemon), ==, 0);
  g_clear_pointer (&f->daemon, ma_test_daemon_free);
  g_unsetenv ("MA_RUNDIR");
  loopfs_destroy (&f->sibling);
  loopfs_destroy (&f->inner);
  loopfs_destroy (&f->outer);
  if (f->plugins != NULL)
    {
      g_autofree char *script = g_build_filename (f->plugins, "app.sh", NULL);
      g_autofree char *manifest = g_build_filename (f->plugins, "app.plugin", NULL);
      g_autofree char *log = g_build_filename (f->dir, "plugin.log", NULL);
      g_unlink (script);
      g_unlink (manifest);
      g_unlink (log);
      g_rmdir (f->plugins);
    }
  if (f->rundir != NULL)
    {
      g_autofree char *marker = g_build_filename (f->rundir, MARKER, NULL);
      g_unlink (marker);
      g_rmdir (f->rundir);
    }
  if (f->dir != NULL)
    g_rmdir (f->dir);
  g_free (f->plugins);
  g_free (f->rundir);
  g_free (f->dir);
}

/* ---- tests ---- */

static void
assert_thaw_event (JsonNode *event, const char *mnt, const char *evidence, double min_seconds)
{
  JsonObject *data;

  g_assert_nonnull (event);
  data = json_object_get_object_member (json_node_get_object (event), "data");
  g_assert_true (array_has_string (json_object_get_array_member (data, "mounts"), mnt));
  g_assert_true (array_has_string (json_object_get_array_member (data, "evidence"), evidence));
  g_assert_cmpfloat (json_object_get_double_member (data, "seconds_frozen"), >=, min_seconds);
  g_assert_nonnull (strstr (json_object_get_string_member (data, "reason"), "no renewal"));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (data, "errors")), ==, 0);
}

/* qemu-ga's marker, no renewal: the guard thaws, a blocked write completes. */
static void
test_marker_thaws (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  g_autoptr(JsonNode) event = NULL;
  g_autoptr(JsonObject) status = NULL;
  g_autofree char *log = NULL;
  pid_t writer;

  if (f->skipped)
    return;
  freeze_like_qga (f, data, &f->outer);
  writer = start_writer (f, f->outer.mnt);
  wait_blocked (writer);

  event = wait_event (f, "FREEZE_GUARD_THAWED", WAIT_MS);
  assert_thaw_event (event, f->outer.mnt, "qemu-ga-marker", (double) sc->limit - 1);
  g_assert_true (wait_writer (f, writer, WAIT_MS));
  /* really thawed: unfreezing again is refused by the kernel (EINVAL) */
  g_assert_false (loopfs_unfreeze (&f->outer));

  status = guard_status (f->events, NULL);
  g_assert_cmpint (json_object_get_int_member (status, "thaws"), ==, 1);
  g_assert_true (json_object_get_boolean_member (status, "marker-present"));
  /* the marker stays (it is qemu-ga's), but the guard acts on it only once */
  g_assert_false (json_object_get_boolean_member (status, "frozen"));
  g_assert_true (g_file_get_contents (f->daemon->log_path, &log, NULL, NULL));
  g_assert_nonnull (strstr (log, "WARNING"));
  g_assert_nonnull (strstr (log, "freeze guard"));
}

/* No marker (someone ran fsfreeze by hand): a writer stuck in percpu_rwsem_wait is the sign. */
static void
test_blocked_writers_thaw (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  g_autoptr(JsonNode) event = NULL;
  JsonObject *d;
  pid_t writer;

  if (f->skipped)
    return;
  freeze_like_qga (f, data, &f->outer);
  writer = start_writer (f, f->outer.mnt);
  wait_blocked (writer);

  event = wait_event (f, "FREEZE_GUARD_THAWED", WAIT_MS);
  assert_thaw_event (event, f->outer.mnt, "blocked-writers", (double) sc->limit - 1);
  d = json_object_get_object_member (json_node_get_object (event), "data");
  g_assert_false (array_has_string (json_object_get_array_member (d, "evidence"),
                                    "qemu-ga-marker"));
  g_assert_true (wait_writer (f, writer, WAIT_MS));
  g_assert_false (loopfs_unfreeze (&f->outer));
}

/* Renewals keep the freeze for longer than the limit; when they stop, the guard acts. */
static void
test_renewal_defers (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(JsonNode) event = NULL;
  g_autoptr(JsonObject) first = NULL;
  gint64 start, renew_until;
  pid_t writer;

  if (f->skipped)
    return;
  freeze_like_qga (f, data, &f->outer);
  /* the orchestrator renews from the start */
  start = g_get_monotonic_time ();
  first = guard_status (client, "{\"renew\": true}");
  g_assert_cmpint (json_object_get_int_member (first, "thaws"), ==, 0);
  writer = start_writer (f, f->outer.mnt);
  wait_blocked (writer);
  /* renew until the guard has seen the freeze (it notices the marker asynchronously) */
  while (TRUE)
    {
      g_autoptr(JsonObject) status = guard_status (client, "{\"renew\": true}");
      g_assert_cmpint (json_object_get_int_member (status, "thaws"), ==, 0);
      if (json_object_get_boolean_member (status, "frozen"))
        break;
      g_assert_cmpint (g_get_monotonic_time () - start, <, WAIT_MS * 1000);
      g_usleep (50 * 1000);
    }
  start = g_get_monotonic_time ();
  renew_until = start + (sc->limit * 2 + 1) * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < renew_until)
    {
      g_autoptr(JsonObject) status = guard_status (client, "{\"renew\": true}");
      g_assert_cmpint (json_object_get_int_member (status, "thaws"), ==, 0);
      g_assert_true (json_object_get_boolean_member (status, "frozen"));
      g_assert_true (json_object_has_member (status, "last-renewal"));
      g_usleep (200 * 1000);
    }
  /* the writer is still stuck: nothing was thawed while the orchestrator renewed */
  {
    g_autofree char *wchan = read_wchan (writer);
    g_assert_cmpstr (wchan, ==, "percpu_rwsem_wait");
  }

  event = wait_event (f, "FREEZE_GUARD_THAWED", WAIT_MS);
  /* frozen for the whole renewal period and one more limit */
  assert_thaw_event (event, f->outer.mnt, "qemu-ga-marker", (double) sc->limit * 2);
  g_assert_true (wait_writer (f, writer, WAIT_MS));
}

/* The orchestrator quiesced the applications and keeps renewing the quiesce lease (the
 * `renew` command, not `freeze-guard {"renew": true}`) while qemu-ga's freeze is in force:
 * each lease renewal restarts the guard's clock, so nothing is thawed while the orchestrator
 * renews; one limit after its last renewal the guard thaws. */
static void
test_quiesce_renewal_defers (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(JsonNode) quiesced = NULL;
  g_autoptr(JsonNode) event = NULL;
  g_autoptr(JsonObject) status = NULL;
  g_autofree char *log = NULL;
  gint64 start, renew_until, last_renewal = 0, waited;
  gint64 first_renewal_real = 0, last_renewal_real = 0;
  guint renewals = 0;
  pid_t writer;

  if (f->skipped)
    return;
  /* the lease is far longer than the test: only renewals can matter to the guard */
  quiesced = ma_test_execute (client, "quiesce",
                              "{\"operation\": \"op-guard\", \"lease_seconds\": 300}");
  log = plugin_log (f);
  g_assert_cmpstr (log, ==, "app quiesce\n");
  freeze_like_qga (f, data, &f->outer);
  writer = start_writer (f, f->outer.mnt);
  wait_blocked (writer);

  /* renew until the guard has seen the freeze, then for twice the limit and one second */
  start = g_get_monotonic_time ();
  renew_until = 0;
  while (renew_until == 0 || g_get_monotonic_time () < renew_until)
    {
      g_autoptr(JsonNode) renewed = NULL;
      g_autoptr(JsonObject) guard = NULL;
      gint64 before = g_get_monotonic_time ();
      gint64 renewal_real;

      renewed = ma_test_execute (client, "renew", "{\"operation\": \"op-guard\"}");
      g_assert_cmpstr (json_object_get_string_member (json_node_get_object (renewed), "operation"),
                       ==, "op-guard");
      last_renewal = before;
      renewals++;
      /* the status call does not renew; it shows what the renewal did to the guard */
      guard = guard_status (client, NULL);
      g_assert_cmpint (json_object_get_int_member (guard, "thaws"), ==, 0);
      g_assert_true (json_object_has_member (guard, "last-renewal"));
      renewal_real = json_object_get_int_member (guard, "last-renewal");
      g_assert_cmpint (renewal_real, >=, last_renewal_real);
      if (first_renewal_real == 0)
        first_renewal_real = renewal_real;
      last_renewal_real = renewal_real;
      if (json_object_get_boolean_member (guard, "frozen"))
        {
          /* the clock restarted at this renewal: the guard counts from no earlier than
           * `before`, so at least a limit minus the time since then is left */
          double since = (double) (g_get_monotonic_time () - before) / G_USEC_PER_SEC;
          g_assert_cmpfloat (json_object_get_double_member (guard, "seconds-until-thaw"), >=,
                             (double) sc->limit - since - 0.001);
          if (renew_until == 0)
            renew_until = g_get_monotonic_time () + (sc->limit * 2 + 1) * G_USEC_PER_SEC;
        }
      g_assert_cmpint (g_get_monotonic_time () - start, <,
                       WAIT_MS * 1000 + (sc->limit * 2 + 1) * G_USEC_PER_SEC);
      g_usleep (200 * 1000);
    }
  /* the writer is still stuck: nothing was thawed while the orchestrator renewed */
  {
    g_autofree char *wchan = read_wchan (writer);
    g_assert_cmpstr (wchan, ==, "percpu_rwsem_wait");
  }
  /* renewals over more than two limits moved the guard's last-renewal (whole seconds) */
  g_assert_cmpint (last_renewal_real, >, first_renewal_real);
  g_test_message ("%u lease renewals over %.1f s, the limit is %" G_GINT64_FORMAT " s", renewals,
                  (double) (last_renewal - start) / G_USEC_PER_SEC, sc->limit);

  event = wait_event (f, "FREEZE_GUARD_THAWED", WAIT_MS);
  waited = g_get_monotonic_time () - last_renewal;
  /* frozen for the whole renewal period, and thawed no sooner than one limit after the last
   * renewal (the agent noted it after `before` was read, and thaws a limit after that) */
  assert_thaw_event (event, f->outer.mnt, "qemu-ga-marker", (double) sc->limit * 2);
  g_assert_cmpint (waited, >=, sc->limit * G_USEC_PER_SEC);
  g_assert_true (wait_writer (f, writer, WAIT_MS));
  /* the guard thaws filesystems, not applications: the plugin is still quiesced */
  g_clear_pointer (&log, g_free);
  log = plugin_log (f);
  g_assert_cmpstr (log, ==, "app quiesce\n");
  status = guard_status (client, NULL);
  g_assert_cmpint (json_object_get_int_member (status, "thaws"), ==, 1);
  g_clear_pointer (&quiesced, json_node_unref);
  quiesced = ma_test_execute (client, "thaw", "{\"operation\": \"op-guard\"}");
  g_clear_pointer (&log, g_free);
  log = plugin_log (f);
  g_assert_cmpstr (log, ==, "app quiesce\napp thaw\n");
}

/* Frozen, but no marker and nobody waiting: no evidence, no thaw, however long. */
static void
test_no_evidence_no_thaw (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  gint64 first_checks = -1;
  gint64 start = g_get_monotonic_time ();

  if (f->skipped)
    return;
  freeze_like_qga (f, data, &f->outer);
  /* wait for polls spanning more than twice the limit */
  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(JsonObject) status = guard_status (f->events, NULL);
      gint64 checks = json_object_get_int_member (status, "checks");

      g_assert_cmpint (json_object_get_int_member (status, "thaws"), ==, 0);
      g_assert_false (json_object_get_boolean_member (status, "frozen"));
      if (first_checks < 0)
        first_checks = checks;
      if (checks >= first_checks + 3
          && g_get_monotonic_time () - start > 2 * sc->limit * G_USEC_PER_SEC)
        break;
      g_usleep (100 * 1000);
    }
  g_assert_cmpint (g_get_monotonic_time (), <, deadline);
  /* still frozen: the kernel accepts the unfreeze */
  g_assert_true (loopfs_unfreeze (&f->outer));
}

/* The check `name` of a `validate` report. */
static JsonObject *
validate_check (JsonNode *report, const char *name)
{
  JsonArray *checks = NULL;

  g_assert_true (ma_json_get_array (json_node_get_object (report), "checks", &checks, NULL));
  g_assert_nonnull (checks);
  for (guint i = 0; i < json_array_get_length (checks); i++)
    {
      JsonObject *c = json_array_get_object_element (checks, i);
      const char *n = NULL;
      if (ma_json_get_string (c, "name", &n, NULL) && g_strcmp0 (n, name) == 0)
        return c;
    }
  {
    g_autofree char *text = ma_json_to_string (report);
    g_error ("no check %s in the validate report: %s", name, text);
  }
  return NULL;
}

static guint
agent_threads (Fixture *f)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", (int) f->daemon->pid);
  g_autofree char *text = NULL;
  const char *line;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  line = strstr (text, "\nThreads:");
  g_assert_nonnull (line);
  return (guint) g_ascii_strtoull (line + strlen ("\nThreads:"), NULL, 10);
}

/* A write probe stuck on a filesystem is not started again beside it: the filesystem is frozen
 * here without qemu-ga's marker or a quiesce, which is how a hung device looks to validate (it
 * does not wait for a thaw), so repeated validations would each leave one more thread behind. */
static void
test_stuck_probe_not_repeated (Fixture *f, gconstpointer data)
{
  g_autofree char *name = NULL;
  g_autoptr(JsonNode) prepared = NULL;
  g_autoptr(JsonNode) first = NULL;
  gint64 deadline;
  guint threads;
  const char *detail = NULL;

  if (f->skipped)
    return;
  if (!in_private_netns)
    {
      g_test_skip ("needs a network namespace of its own (validate probes the network)");
      return;
    }
  name = g_strdup_printf ("write:%s", f->outer.mnt);
  /* the snapshot validate compares with (the one at start may still be under way) */
  prepared = ma_test_execute (f->events, "prepare", "{\"operation\": \"op-probe\"}");
  loopfs_freeze (&f->outer);
  first = ma_test_execute (f->events, "validate", NULL);
  g_assert_cmpstr (json_object_get_string_member (validate_check (first, name), "status"), ==,
                   "fail");
  g_assert_true (ma_json_get_string (validate_check (first, name), "detail", &detail, NULL));
  g_assert_nonnull (strstr (detail, "did not complete"));
  threads = agent_threads (f);
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr(JsonNode) again = ma_test_execute (f->events, "validate", NULL);
      JsonObject *check = validate_check (again, name);
      g_assert_cmpstr (json_object_get_string_member (check, "status"), ==, "fail");
      g_assert_true (ma_json_get_string (check, "detail", &detail, NULL));
      g_assert_nonnull (strstr (detail, "has still not completed"));
    }
  g_assert_cmpuint (agent_threads (f), <=, threads);

  /* thawed, the stuck probe completes and the next validation probes again */
  g_assert_true (loopfs_unfreeze (&f->outer));
  deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  for (;;)
    {
      g_autoptr(JsonNode) later = ma_test_execute (f->events, "validate", NULL);
      if (g_strcmp0 (json_object_get_string_member (validate_check (later, name), "status"),
                     "pass") == 0)
        break;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (100 * 1000);
    }
}

/* The agent's stderr is a regular file whose filesystem gets frozen (an init without a journal
 * redirecting it to /var/log): writing a log record there waits until the thaw, so the log
 * writer must not do it on the main loop. Every state change below logs a message; every
 * answer has to come while the filesystem stays frozen. */
static void
test_log_on_frozen_fs (Fixture *f, gconstpointer data)
{
  g_autofree char *log = NULL;
  gint64 deadline;

  if (f->skipped)
    return;
  loopfs_freeze (&f->outer);
  /* four messages each: more than the writer's queue holds, so some are dropped */
  for (guint i = 0; i < 25; i++)
    {
      g_autofree char *args = g_strdup_printf ("{\"operation\": \"op-log-%u\"}", i);
      g_autoptr(JsonNode) quiesced = ma_test_execute (f->events, "quiesce", args);
      g_autoptr(JsonNode) thawed = ma_test_execute (f->events, "thaw", NULL);
    }
  /* nobody thawed it meanwhile (the guard is off): the kernel still holds it frozen */
  g_assert_true (loopfs_unfreeze (&f->outer));

  /* the records queued land after the thaw; the ones dropped meanwhile are counted in a
   * notice before the next record */
  deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  for (;;)
    {
      g_autoptr(JsonNode) quiesced = ma_test_execute (f->events, "quiesce", NULL);
      g_autoptr(JsonNode) thawed = ma_test_execute (f->events, "thaw", NULL);
      g_clear_pointer (&log, g_free);
      g_assert_true (g_file_get_contents (f->daemon->log_path, &log, NULL, NULL));
      if (strstr (log, "log messages dropped while the log output was not writable") != NULL)
        break;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (100 * 1000);
    }
  g_assert_nonnull (strstr (log, "op-log-"));
}

static gboolean
array_is_one_string (JsonArray *array, const char *s)
{
  return json_array_get_length (array) == 1
         && g_strcmp0 (json_array_get_string_element (array, 0), s) == 0;
}

/* Two guarded filesystems; the sibling is frozen (no marker) with a writer blocked on it, the
 * first is not frozen. The evidence names the sibling only, and the thaw acts on it alone:
 * no thaw attempt (not-frozen entry) and no warning for the first. */
static void
test_writers_name_their_mount (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  g_autoptr(MaClient) client = ma_test_daemon_connect (f->daemon);
  g_autoptr(JsonNode) event = NULL;
  g_autofree char *log = NULL;
  g_auto(GStrv) lines = NULL;
  gint64 deadline;
  JsonObject *d;
  pid_t writer;
  guint warnings = 0;

  if (f->skipped)
    return;
  writer = start_fd_writer (f, &f->sibling);
  wait_blocked (writer);

  /* the guard notices the freeze (it thaws one limit later: the window is that wide) */
  deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  while (TRUE)
    {
      g_autoptr(JsonObject) status = guard_status (client, NULL);
      JsonArray *named = json_object_get_array_member (status, "blocked-writer-mounts");

      g_assert_cmpint (json_object_get_int_member (status, "thaws"), ==, 0);
      g_assert_false (array_has_string (named, f->outer.mnt));
      if (json_object_get_boolean_member (status, "frozen"))
        {
          g_assert_true (array_is_one_string (named, f->sibling.mnt));
          g_assert_true (array_is_one_string (json_object_get_array_member (status, "evidence"),
                                              "blocked-writers"));
          g_assert_cmpint (json_object_get_int_member (status, "blocked-writers"), >=, 1);
          break;
        }
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50 * 1000);
    }

  event = wait_event (f, "FREEZE_GUARD_THAWED", WAIT_MS);
  assert_thaw_event (event, f->sibling.mnt, "blocked-writers", (double) sc->limit - 1);
  d = json_object_get_object_member (json_node_get_object (event), "data");
  /* thawed the sibling only: the first was never tried (no not-frozen entry for it) */
  g_assert_true (array_is_one_string (json_object_get_array_member (d, "mounts"), f->sibling.mnt));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (d, "not-frozen")), ==, 0);
  g_assert_true (array_is_one_string (json_object_get_array_member (d, "blocked-writer-mounts"),
                                      f->sibling.mnt));
  g_assert_true (wait_writer (f, writer, WAIT_MS));
  g_assert_false (loopfs_unfreeze (&f->sibling));

  /* the guard's warnings name the sibling, never the first */
  g_assert_true (g_file_get_contents (f->daemon->log_path, &log, NULL, NULL));
  lines = g_strsplit (log, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    if (strstr (lines[i], "WARNING") != NULL && strstr (lines[i], "freeze guard") != NULL)
      {
        g_assert_null (strstr (lines[i], f->outer.mnt));
        if (strstr (lines[i], f->sibling.mnt) != NULL)
          warnings++;
      }
  g_assert_cmpuint (warnings, >=, 1);
}

/* A writer blocked on a frozen filesystem the guard does not guard (mounts= names only the
 * first): seen, attributed to that filesystem, and not evidence. No freeze, no thaw, however
 * long; the other filesystem stays frozen until the test thaws it. */
static void
test_unguarded_writer_no_thaw (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  gint64 first_checks = -1, seen = 0;
  pid_t writer;

  if (f->skipped)
    return;
  writer = start_fd_writer (f, &f->sibling);
  wait_blocked (writer);
  /* from the scan that attributed the writer elsewhere, polls over more than twice the limit */
  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(JsonObject) status = guard_status (f->events, NULL);
      gint64 checks = json_object_get_int_member (status, "checks");

      g_assert_cmpint (json_object_get_int_member (status, "thaws"), ==, 0);
      g_assert_false (json_object_get_boolean_member (status, "frozen"));
      g_assert_cmpuint (
        json_array_get_length (json_object_get_array_member (status, "blocked-writer-mounts")), ==,
        0);
      if (seen == 0 && json_object_get_int_member (status, "blocked-writers-elsewhere") >= 1)
        {
          seen = g_get_monotonic_time ();
          first_checks = checks;
        }
      if (seen != 0 && checks >= first_checks + 3
          && g_get_monotonic_time () - seen > 2 * sc->limit * G_USEC_PER_SEC)
        break;
      g_usleep (100 * 1000);
    }
  g_assert_cmpint (g_get_monotonic_time (), <, deadline);
  {
    g_autofree char *wchan = read_wchan (writer);
    g_assert_cmpstr (wchan, ==, "percpu_rwsem_wait");
  }
  /* still frozen: the kernel accepts the unfreeze, and the write completes */
  g_assert_true (loopfs_unfreeze (&f->sibling));
  g_assert_true (wait_writer (f, writer, WAIT_MS));
}

static void
test_disabled (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonObject) status = NULL;
  g_autoptr(JsonNode) info = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;

  if (f->skipped)
    return;
  freeze_like_qga (f, data, &f->outer);
  status = guard_status (f->events, NULL);
  g_assert_false (json_object_get_boolean_member (status, "enabled"));
  g_assert_cmpint (json_object_get_int_member (status, "checks"), ==, 0);
  json_object_set_boolean_member (args, "renew", TRUE);
  ret = ma_client_execute (f->events, "freeze-guard", args, &error);
  g_assert_null (ret);
  g_assert_error (error, MA_ERROR, MA_ERROR_UNSUPPORTED);
  info = ma_test_execute (f->events, "info", NULL);
  g_assert_true (array_has_string (json_object_get_array_member (json_node_get_object (info),
                                                                 "capabilities"),
                                   "freeze-guard"));
  g_assert_true (loopfs_unfreeze (&f->outer));
}

/* A loop device whose backing file lives on another frozen filesystem: the outer one must
 * thaw first, or the inner thaw would wait on writes to the frozen outer one. */
static void
test_nested_order (Fixture *f, gconstpointer data)
{
  const Scenario *sc = data;
  g_autoptr(JsonNode) event = NULL;
  JsonArray *mounts;
  pid_t writer;

  if (f->skipped)
    return;
  /* freeze as qemu-ga's order would: inner first, then the filesystem holding its image */
  loopfs_freeze (&f->inner);
  freeze_like_qga (f, data, &f->outer);
  writer = start_writer (f, f->inner.mnt);
  wait_blocked (writer);

  event = wait_event (f, "FREEZE_GUARD_THAWED", WAIT_MS);
  assert_thaw_event (event, f->outer.mnt, "qemu-ga-marker", (double) sc->limit - 1);
  mounts = json_object_get_array_member (
    json_object_get_object_member (json_node_get_object (event), "data"), "mounts");
  g_assert_cmpuint (json_array_get_length (mounts), ==, 2);
  g_assert_cmpstr (json_array_get_string_element (mounts, 0), ==, f->outer.mnt);
  g_assert_cmpstr (json_array_get_string_element (mounts, 1), ==, f->inner.mnt);
  g_assert_true (wait_writer (f, writer, WAIT_MS));
  g_assert_false (loopfs_unfreeze (&f->inner));
  g_assert_false (loopfs_unfreeze (&f->outer));
}

static void
test_bad_config (void)
{
  static const char *const configs[] = {
    "[freeze-guard]\nlimit-seconds=0\n",
    "[freeze-guard]\nlimit-seconds=ten\n",
    "[freeze-guard]\npoll-seconds=-1\n",
    "[freeze-guard]\nenabled=perhaps\n",
  };

  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    {
      g_autoptr(MaTestDaemon) d = ma_test_daemon_new (configs[i]);
      g_autofree char *sock = g_strdup_printf ("unix:%s", d->socket);
      const char *argv[] = { g_getenv ("MIGRATION_AGENT"), "--foreground", "--state-dir",
                             d->state_dir, "--config", d->config, "--listen", sock, NULL };
      g_autofree char *err = NULL;
      int status = 0;

      g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                                   NULL, NULL, &err, &status, NULL));
      g_assert_false (g_spawn_check_wait_status (status, NULL));
      if (strstr (err, "freeze-guard") == NULL)
        g_error ("config %u: the error does not name the group: %s", i, err);
    }
}

int
main (int argc, char **argv)
{
  static const Scenario marker = { .limit = 2, .poll = 0, .marker = TRUE, .enabled = TRUE };
  static const Scenario writers = { .limit = 2, .poll = 1, .marker = FALSE, .enabled = TRUE };
  static const Scenario renewal = { .limit = 2, .poll = 1, .marker = TRUE, .enabled = TRUE };
  static const Scenario quiesce = { .limit = 2, .poll = 1, .marker = TRUE, .enabled = TRUE,
                                    .plugin = TRUE };
  static const Scenario quiet = { .limit = 1, .poll = 1, .marker = FALSE, .enabled = TRUE };
  static const Scenario disabled = { .limit = 1, .poll = 1, .marker = TRUE, .enabled = FALSE };
  static const Scenario nested = { .limit = 2, .poll = 0, .marker = TRUE, .enabled = TRUE,
                                   .nested = TRUE };
  static const Scenario siblings = { .limit = 3, .poll = 1, .marker = FALSE, .enabled = TRUE,
                                     .sibling = TRUE, .guard_sibling = TRUE };
  static const Scenario unguarded = { .limit = 1, .poll = 1, .marker = FALSE, .enabled = TRUE,
                                      .sibling = TRUE };
  static const Scenario logging = { .limit = 600, .poll = 1, .marker = FALSE, .enabled = FALSE,
                                    .log_on_fs = TRUE };
  static const Scenario probing = { .limit = 600, .poll = 1, .marker = FALSE, .enabled = FALSE,
                                    .extra_config = "[validate]\nwrite-timeout-ms=500\n"
                                                    "[resume]\nannounce=never\n" };

  g_test_init (&argc, &argv, NULL);
  emergency_install ();
  in_private_netns = geteuid () == 0 && unshare (CLONE_NEWNET) == 0;
#define ADD(path, func, sc) \
  g_test_add (path, Fixture, &sc, fixture_setup, func, fixture_teardown)
  ADD ("/freeze-guard/marker-thaws", test_marker_thaws, marker);
  ADD ("/freeze-guard/blocked-writers-thaw", test_blocked_writers_thaw, writers);
  ADD ("/freeze-guard/renewal-defers", test_renewal_defers, renewal);
  ADD ("/freeze-guard/quiesce-renewal-defers", test_quiesce_renewal_defers, quiesce);
  ADD ("/freeze-guard/no-evidence-no-thaw", test_no_evidence_no_thaw, quiet);
  ADD ("/freeze-guard/disabled", test_disabled, disabled);
  ADD ("/freeze-guard/nested-order", test_nested_order, nested);
  ADD ("/freeze-guard/writers-name-their-mount", test_writers_name_their_mount, siblings);
  ADD ("/freeze-guard/unguarded-writer-no-thaw", test_unguarded_writer_no_thaw, unguarded);
  ADD ("/freeze-guard/stuck-write-probe-not-repeated", test_stuck_probe_not_repeated, probing);
  ADD ("/freeze-guard/log-on-frozen-fs", test_log_on_frozen_fs, logging);
  g_test_add_func ("/freeze-guard/bad-config", test_bad_config);
#undef ADD
  return g_test_run ();
}
