/* daemon-fixture.c — starts the real migration-agent binary on a temporary UNIX socket
 * and state dir for black-box tests, and stops it; shared by every integration test. */
#include "daemon-fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "error.h"
#include "json.h"

guint
ma_test_timeout_ms (guint ms)
{
  const char *scale = g_getenv ("MA_TEST_TIMEOUT_SCALE");
  guint64 factor = scale != NULL ? g_ascii_strtoull (scale, NULL, 10) : 1;

  return (guint) MIN ((guint64) ms * CLAMP (factor, 1, 100), G_MAXINT);
}

MaTestDaemon *
ma_test_daemon_new (const char *config_text)
{
  MaTestDaemon *d = g_new0 (MaTestDaemon, 1);
  g_autoptr(GError) error = NULL;

  d->dir = g_dir_make_tmp ("ma-test-XXXXXX", &error);
  g_assert_no_error (error);
  d->socket = g_build_filename (d->dir, "agent.sock", NULL);
  d->state_dir = g_build_filename (d->dir, "state", NULL);
  d->config = g_build_filename (d->dir, "agent.conf", NULL);
  d->log_path = g_build_filename (d->dir, "agent.log", NULL);
  g_assert_true (g_file_set_contents (d->config, config_text ? config_text : "", -1, NULL));
  return d;
}

static void
child_setup (gpointer user_data)
{
  /* the daemon's stderr goes to the log file; it dies with the test, even one that aborts */
  int fd = open (user_data, O_WRONLY | O_CREAT | O_APPEND, 0600);

  prctl (PR_SET_PDEATHSIG, SIGKILL);

  if (fd >= 0)
    {
      dup2 (fd, STDERR_FILENO);
      close (fd);
    }
}

void
ma_test_daemon_start (MaTestDaemon *d, const char *const *extra_args)
{
  const char *binary = g_getenv ("MIGRATION_AGENT");
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *listen = g_strdup_printf ("unix:%s", d->socket);
  gint64 deadline;

  g_assert_nonnull (binary);
  g_ptr_array_add (argv, g_strdup (binary));
  g_ptr_array_add (argv, g_strdup ("--foreground"));
  g_ptr_array_add (argv, g_strdup ("--verbose"));
  g_ptr_array_add (argv, g_strdup ("--listen"));
  g_ptr_array_add (argv, g_strdup (listen));
  g_ptr_array_add (argv, g_strdup ("--state-dir"));
  g_ptr_array_add (argv, g_strdup (d->state_dir));
  g_ptr_array_add (argv, g_strdup ("--config"));
  g_ptr_array_add (argv, g_strdup (d->config));
  for (guint i = 0; extra_args != NULL && extra_args[i] != NULL; i++)
    g_ptr_array_add (argv, g_strdup (extra_args[i]));
  g_ptr_array_add (argv, NULL);

  g_unlink (d->socket);
  g_assert_true (g_spawn_async (NULL, (char **) argv->pdata, NULL,
                                G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL,
                                child_setup, d->log_path, &d->pid, &error));
  g_assert_no_error (error);
  d->running = TRUE;

  deadline = g_get_monotonic_time ()
             + (gint64) ma_test_timeout_ms (MA_TEST_START_TIMEOUT_MS) * 1000;
  while (g_get_monotonic_time () < deadline)
    {
      g_autoptr(GError) sync_error = NULL;
      g_autoptr(MaClient) client = ma_client_connect (d->socket, 2000, NULL);
      /* up when it answers — even if the answer refuses us (access-control tests) */
      if (client != NULL
          && (ma_client_sync (client, &sync_error) || sync_error->domain == MA_ERROR))
        return;
      if (waitpid (d->pid, NULL, WNOHANG) == d->pid)
        {
          d->running = FALSE;
          ma_test_daemon_dump_log (d);
          g_error ("the agent exited during start");
        }
      g_usleep (20 * 1000);
    }
  ma_test_daemon_dump_log (d);
  g_error ("the agent did not answer within %u ms", ma_test_timeout_ms (MA_TEST_START_TIMEOUT_MS));
}

static int
wait_exit (MaTestDaemon *d, guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  int status = 0;

  while (g_get_monotonic_time () < deadline)
    {
      pid_t rc = waitpid (d->pid, &status, WNOHANG);
      if (rc == d->pid)
        {
          d->running = FALSE;
          return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
        }
      g_usleep (10 * 1000);
    }
  kill (d->pid, SIGKILL);
  waitpid (d->pid, &status, 0);
  d->running = FALSE;
  ma_test_daemon_dump_log (d);
  g_error ("the agent did not exit within %u ms", timeout_ms);
  return -1;
}

int
ma_test_daemon_stop (MaTestDaemon *d)
{
  if (!d->running)
    return -1;
  kill (d->pid, SIGTERM);
  return wait_exit (d, ma_test_timeout_ms (90000));
}

void
ma_test_daemon_kill (MaTestDaemon *d, int signo)
{
  int status;

  if (!d->running)
    return;
  kill (d->pid, signo);
  if (signo == SIGKILL)
    {
      waitpid (d->pid, &status, 0);
      d->running = FALSE;
    }
}

void
ma_test_daemon_dump_log (MaTestDaemon *d)
{
  g_autofree char *log = NULL;

  if (g_file_get_contents (d->log_path, &log, NULL, NULL))
    g_test_message ("---- agent log (%s) ----\n%s---- end of agent log ----", d->log_path, log);
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir != NULL)
    while ((name = g_dir_read_name (dir)) != NULL)
      {
        g_autofree char *child = g_build_filename (path, name, NULL);
        if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
          remove_tree (child);
        else
          g_unlink (child);
      }
  g_rmdir (path);
}

void
ma_test_daemon_free (MaTestDaemon *d)
{
  int status = 0;

  if (d == NULL)
    return;
  /* every agent still running is stopped as its service manager stops it, and must exit
   * cleanly: under ASan or valgrind that exit is where a leak or an error is reported */
  if (d->running)
    status = ma_test_daemon_stop (d);
  if (g_test_failed () || status != 0)
    ma_test_daemon_dump_log (d);
  if (status != 0)
    g_test_message ("the agent exited with status %d at SIGTERM (a leak or an error report "
                    "under a sanitizer or valgrind makes it non-zero)", status);
  remove_tree (d->dir);
  g_free (d->dir);
  g_free (d->socket);
  g_free (d->state_dir);
  g_free (d->config);
  g_free (d->log_path);
  g_free (d);
  g_assert_cmpint (status, ==, 0);
}

MaClient *
ma_test_daemon_connect (MaTestDaemon *d)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaClient) client = ma_client_connect (d->socket, ma_test_timeout_ms (30000), &error);

  g_assert_no_error (error);
  g_assert_true (ma_client_sync (client, &error));
  g_assert_no_error (error);
  return g_steal_pointer (&client);
}

gboolean
ma_test_daemon_rss_meaningful (void)
{
#if defined(__SANITIZE_ADDRESS__)
  return FALSE;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return FALSE;
#endif
#endif
  return g_getenv ("MA_TEST_AGENT_UNDER_VALGRIND") == NULL;
}

gint64
ma_test_daemon_rss_kib (MaTestDaemon *d)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", d->pid);
  g_autofree char *text = NULL;
  const char *line;

  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  line = strstr (text, "VmRSS:");
  g_assert_nonnull (line);
  return g_ascii_strtoll (line + 6, NULL, 10);
}

JsonNode *
ma_test_execute (MaClient *client, const char *command, const char *args_json)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) args = NULL;
  JsonNode *ret;

  if (args_json != NULL)
    {
      args = ma_json_parse (args_json, strlen (args_json), &error);
      g_assert_no_error (error);
    }
  ret = ma_client_execute (client, command, args ? json_node_get_object (args) : NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ret);
  return ret;
}
