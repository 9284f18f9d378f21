/* test-plugin-systemd-unit.c — the systemd-unit plugin on a real cgroup v2 this test creates
 * (the plugin is pointed at it with SYSTEMD_CGROUPS): a writer inside stops until thaw. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "plugin-harness.h"

static char *plugin;
static char *cgroupfs;

typedef struct
{
  HarnessTmpdir *dir;
  char *name;     /* "/ma-plugin-test-…", relative to cgroupfs */
  char *path;     /* absolute */
  char *output;   /* what the writer appends to */
  GSubprocess *writer;
} Fixture;

/* The first cgroup2 mount in our mount table, or NULL. */
static char *
find_cgroup2_mount (void)
{
  g_autofree char *mountinfo = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents ("/proc/self/mountinfo", &mountinfo, NULL, NULL))
    return NULL;
  lines = g_strsplit (mountinfo, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_auto(GStrv) halves = g_strsplit (lines[i], " - ", 2);
      g_auto(GStrv) fields = NULL;
      if (g_strv_length (halves) != 2 || !g_str_has_prefix (halves[1], "cgroup2 "))
        continue;
      fields = g_strsplit (halves[0], " ", -1);
      if (g_strv_length (fields) >= 5)
        return g_strdup (fields[4]);
    }
  return NULL;
}

static char *
events_field (Fixture *f, const char *key)
{
  g_autofree char *events_path = g_build_filename (f->path, "cgroup.events", NULL);
  g_autofree char *events = NULL;
  g_auto(GStrv) lines = NULL;
  gsize len = strlen (key);

  g_assert_true (g_file_get_contents (events_path, &events, NULL, NULL));
  lines = g_strsplit (events, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    if (strncmp (lines[i], key, len) == 0 && lines[i][len] == ' ')
      return g_strdup (lines[i] + len + 1);
  return NULL;
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autofree char *procs = NULL;
  g_autofree char *pid = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *base = NULL;
  const char *argv[] = { "/bin/sh", "-c", "while read -r line; do echo \"$line\" >> \"$0\"; done",
                         NULL, NULL };

  f->dir = harness_tmpdir_new (NULL);

  base = g_path_get_basename (f->dir->path);
  f->name = g_strdup_printf ("/%s", base);
  f->path = g_build_filename (cgroupfs, f->name, NULL);
  g_assert_cmpint (g_mkdir (f->path, 0755), ==, 0);
  f->output = g_build_filename (f->dir->path, "written", NULL);
  argv[3] = f->output;
  f->writer = harness_spawn_piped (argv, NULL, &error);
  g_assert_no_error (error);
  procs = g_build_filename (f->path, "cgroup.procs", NULL);
  pid = g_strdup (g_subprocess_get_identifier (f->writer));
  g_assert_true (g_file_set_contents_full (procs, pid, -1, G_FILE_SET_CONTENTS_NONE, 0644, &error));
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *freeze = g_build_filename (f->path, "cgroup.freeze", NULL);

  /* Thaw whatever a failed test left frozen, then empty and remove the cgroup. */
  g_file_set_contents_full (freeze, "0", -1, G_FILE_SET_CONTENTS_NONE, 0644, NULL);
  harness_kill (f->writer);
  g_clear_object (&f->writer);
  g_assert_cmpint (g_rmdir (f->path), ==, 0);
  g_free (f->name);
  g_free (f->path);
  g_free (f->output);
  harness_tmpdir_free (f->dir);
}

static int
run_phase (Fixture *f, const char *phase, const char *cgroups, char **detail)
{
  g_autofree char *root = g_strdup_printf ("MA_CGROUPFS=%s", cgroupfs);
  g_autofree char *list = g_strdup_printf ("SYSTEMD_CGROUPS=%s", cgroups != NULL ? cgroups
                                                                                 : f->name);
  g_auto(GStrv) env = harness_plugin_env ("systemd-unit", phase, f->dir->path, root, list,
                                          "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL);

  return harness_oneshot (plugin, phase, (const char *const *) env, detail);
}

static void
send_line (Fixture *f, const char *line)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (g_output_stream_write_all (g_subprocess_get_stdin_pipe (f->writer), line,
                                            strlen (line), NULL, NULL, &error));
  g_assert_no_error (error);
}

typedef struct
{
  const char *path;
  const char *expected;
} FileWait;

static gboolean
file_has (gpointer data)
{
  FileWait *wait = data;
  g_autofree char *contents = NULL;

  return g_file_get_contents (wait->path, &contents, NULL, NULL)
         && g_strcmp0 (contents, wait->expected) == 0;
}

static void
test_freeze_blocks_writer_until_thaw (Fixture *f, gconstpointer data)
{
  g_autofree char *detail = NULL;
  g_autofree char *again = NULL;
  g_autofree char *thawed = NULL;
  g_autofree char *frozen = NULL;
  g_autofree char *running = NULL;
  FileWait first = { f->output, "before\n" };
  FileWait second = { f->output, "before\nduring\n" };

  send_line (f, "before\n");
  g_assert_true (harness_wait_for (file_has, &first, HARNESS_EXIT_MS));

  g_assert_cmpint (run_phase (f, "quiesce", NULL, &detail), ==, 0);
  g_assert_cmpstr (detail, ==, "1 cgroup(s) frozen");
  frozen = events_field (f, "frozen");
  g_assert_cmpstr (frozen, ==, "1");
  /* Idempotent. */
  g_assert_cmpint (run_phase (f, "freeze", NULL, &again), ==, 0);

  send_line (f, "during\n");
  g_assert_false (harness_wait_for (file_has, &second, HARNESS_BLOCKED_MS));
  g_assert_true (file_has (&first));

  g_assert_cmpint (run_phase (f, "thaw", NULL, &thawed), ==, 0);
  g_assert_cmpstr (thawed, ==, "1 cgroup(s) thawed");
  running = events_field (f, "frozen");
  g_assert_cmpstr (running, ==, "0");
  g_assert_true (harness_wait_for (file_has, &second, HARNESS_EXIT_MS));
}

static void
test_check_validate (Fixture *f, gconstpointer data)
{
  g_autofree char *check = NULL;
  g_autofree char *quiesced = NULL;
  g_autofree char *validate_frozen = NULL;
  g_autofree char *check_frozen = NULL;
  g_autofree char *thawed = NULL;
  g_autofree char *thawed_again = NULL;
  g_autofree char *validate = NULL;

  g_assert_cmpint (run_phase (f, "check", NULL, &check), ==, 0);
  g_assert_cmpstr (check, ==, "1 cgroup(s) can be frozen");
  g_assert_cmpint (run_phase (f, "quiesce", NULL, &quiesced), ==, 0);
  g_assert_cmpint (run_phase (f, "validate", NULL, &validate_frozen), ==, 1);
  g_assert_nonnull (strstr (validate_frozen, "still frozen"));
  g_assert_cmpint (run_phase (f, "check", NULL, &check_frozen), ==, 1);
  g_assert_nonnull (strstr (check_frozen, "already frozen"));
  g_assert_cmpint (run_phase (f, "thaw", NULL, &thawed), ==, 0);
  g_assert_cmpint (run_phase (f, "thaw", NULL, &thawed_again), ==, 0);
  g_assert_cmpint (run_phase (f, "validate", NULL, &validate), ==, 0);
}

static void
test_all_or_nothing (Fixture *f, gconstpointer data)
{
  g_autofree char *both = g_strdup_printf ("%s;/ma-plugin-test-missing", f->name);
  g_autofree char *detail = NULL;
  g_autofree char *frozen = NULL;

  g_assert_cmpint (run_phase (f, "quiesce", both, &detail), ==, 1);
  g_assert_nonnull (strstr (detail, "/ma-plugin-test-missing"));
  frozen = events_field (f, "frozen");
  g_assert_cmpstr (frozen, ==, "0");
}

static void
test_refusals (Fixture *f, gconstpointer data)
{
  g_autofree char *root_detail = NULL;
  g_autofree char *dotdot = NULL;
  g_autofree char *nothing = NULL;
  g_autofree char *unit = NULL;
  g_autofree char *root = g_strdup_printf ("MA_CGROUPFS=%s", cgroupfs);
  g_auto(GStrv) unit_env = harness_plugin_env ("systemd-unit", "quiesce", f->dir->path, root,
                                               "SYSTEMD_UNITS=ma-no-such-unit.service",
                                               "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL);

  g_assert_cmpint (run_phase (f, "quiesce", "/", &root_detail), ==, 1);
  g_assert_nonnull (strstr (root_detail, "root cgroup"));
  g_assert_cmpint (run_phase (f, "quiesce", "/../etc", &dotdot), ==, 1);
  g_assert_cmpint (run_phase (f, "quiesce", "", &nothing), ==, 1);
  g_assert_nonnull (strstr (nothing, "names anything to freeze"));
  /* Without systemd (or with no such unit running) a unit cannot be resolved: said so. */
  g_assert_cmpint (harness_oneshot (plugin, "quiesce", (const char *const *) unit_env, &unit),
                   ==, 1);
  g_assert_nonnull (strstr (unit, "ma-no-such-unit.service"));
}

static const char *
usable_cgroupfs (void)
{
  g_autofree char *probe = NULL;
  g_autofree char *freeze = NULL;

  cgroupfs = find_cgroup2_mount ();
  if (cgroupfs == NULL)
    return "no cgroup v2 hierarchy is mounted";
  probe = g_strdup_printf ("%s/ma-plugin-probe-%d", cgroupfs, getpid ());
  if (g_mkdir (probe, 0755) != 0)
    return "the cgroup v2 hierarchy is not writable here";
  freeze = g_build_filename (probe, "cgroup.freeze", NULL);
  if (!g_file_test (freeze, G_FILE_TEST_EXISTS))
    {
      g_rmdir (probe);
      return "the kernel's cgroup v2 has no freezer (cgroup.freeze)";
    }
  g_rmdir (probe);
  return NULL;
}

int
main (int argc, char **argv)
{
  const char *skip;
  const char *srcdir = g_getenv ("MA_PLUGINS_SRCDIR");

  g_test_init (&argc, &argv, NULL);
  plugin = srcdir != NULL ? g_build_filename (srcdir, "systemd-unit", "systemd-unit.sh", NULL)
                          : NULL;
  skip = plugin == NULL ? "MA_PLUGINS_SRCDIR is not set" : usable_cgroupfs ();
  if (skip != NULL)
    {
      g_print ("1..0 # SKIP %s\n", skip);
      return 0;
    }
  g_test_message ("cgroup v2 hierarchy: %s", cgroupfs);

  g_test_add ("/plugins/systemd-unit/freeze-blocks-writer-until-thaw", Fixture, NULL,
              fixture_setup, test_freeze_blocks_writer_until_thaw, fixture_teardown);
  g_test_add ("/plugins/systemd-unit/check-validate", Fixture, NULL, fixture_setup,
              test_check_validate, fixture_teardown);
  g_test_add ("/plugins/systemd-unit/all-or-nothing", Fixture, NULL, fixture_setup,
              test_all_or_nothing, fixture_teardown);
  g_test_add ("/plugins/systemd-unit/refusals", Fixture, NULL, fixture_setup, test_refusals,
              fixture_teardown);
  return g_test_run ();
}
