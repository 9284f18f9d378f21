/* main.c — the migration-agent daemon: parses options and wires the modules together.
 * All behaviour lives in the modules of libmigration-agent. */
#include "buildconfig.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <glib-unix.h>

#include "agent.h"
#include "blockers.h"
#include "protocol.h"
#include "corecmds.h"
#include "dirtyrate.h"
#include "freezeguard.h"
#include "heaptrim.h"
#include "json.h"
#include "log.h"
#include "prepare.h"
#include "protocol.h"
#include "quiesce.h"
#include "resume.h"
#include "sdnotify.h"
#include "throttle.h"

/* Every module of the agent, in the order they register: a module's shutdown hook runs
 * before those of the modules above it, and `info` lists capabilities in this order. */
static const MaModuleRegisterFunc modules[] = {
  ma_core_commands_register,
  ma_blockers_register,
  ma_dirtyrate_register,
  ma_throttle_register,
  ma_quiesce_register,
  ma_prepare_register,
  ma_resume_register,
  ma_freeze_guard_register,
};

typedef struct
{
  MaAgent *agent;
  GMainLoop *loop;
} MaMain;

static gboolean
on_signal (gpointer user_data)
{
  MaMain *m = user_data;

  ma_sd_notify ("STOPPING=1");
  ma_agent_shutdown (m->agent, m->loop);
  return G_SOURCE_CONTINUE;
}

static gboolean
daemonize (GError **error)
{
  pid_t pid = fork ();

  if (pid < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "fork: %s", g_strerror (errno));
      return FALSE;
    }
  if (pid > 0)
    _exit (EXIT_SUCCESS);
  setsid ();
  pid = fork ();
  if (pid > 0)
    _exit (EXIT_SUCCESS);
  if (chdir ("/") < 0 || freopen ("/dev/null", "r", stdin) == NULL)
    g_warning ("cannot detach: %s", g_strerror (errno));
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(MaAgent) agent = NULL;
  g_autoptr(GMainLoop) loop = NULL;
  g_autoptr(MaConfig) config = NULL;
  g_auto(GStrv) listen = NULL;
  g_autofree char *virtio_port = NULL;
  g_autofree char *config_path = NULL;
  g_autofree char *state_dir = NULL;
  g_autofree char *control = NULL;
  gboolean foreground = FALSE, version = FALSE, verbose = FALSE, no_virtio = FALSE;
  sigset_t mask;
  MaMain m;
  const GOptionEntry entries[] = {
    { "listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &listen,
      "Serve the protocol on unix:PATH (repeatable); replaces the default transports", "URI" },
    { "virtio-port", 'p', 0, G_OPTION_ARG_STRING, &virtio_port,
      "Name of the virtio-serial port to serve (default " MA_DEFAULT_VIRTIO_PORT ")", "NAME" },
    { "no-virtio", 0, 0, G_OPTION_ARG_NONE, &no_virtio, "Do not serve a virtio-serial port", NULL },
    { "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
      "Configuration file (default " MA_SYSCONFDIR "/agent.conf)", "FILE" },
    { "state-dir", 's', 0, G_OPTION_ARG_FILENAME, &state_dir,
      "Directory for everything the agent writes (default " MA_STATEDIR ")", "DIR" },
    { "foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground, "Do not detach", NULL },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Log debug messages", NULL },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { NULL }
  };

  /* One malloc arena for every thread: the agent's worker threads (a /proc scan, a snapshot)
   * would each keep an arena of their own with the freed chunks of their last job, 0.3-0.6 MiB
   * of private memory apiece that never goes back; they are few and rarely concurrent, so the
   * lock costs nothing measurable. Freed memory at the top of the heap goes back past 64 KiB. */
  mallopt (M_ARENA_MAX, 1);
  mallopt (M_TRIM_THRESHOLD, 64 * 1024);

  /* Before any thread exists: SIGIO is read from a signalfd, SIGPIPE is an error code. */
  sigemptyset (&mask);
  sigaddset (&mask, SIGIO);
  pthread_sigmask (SIG_BLOCK, &mask, NULL);
  signal (SIGPIPE, SIG_IGN);
  ma_log_install ();

  context = g_option_context_new ("- guest-side agent for live migration");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("migration-agent: %s\n", error->message);
      return 2;
    }
  if (version)
    {
      g_print ("migration-agent %s (protocol %d)\n", MA_VERSION, MA_PROTOCOL_VERSION);
      return EXIT_SUCCESS;
    }
  if (verbose)
    g_setenv ("G_MESSAGES_DEBUG", "all", TRUE);

  config = ma_config_load (config_path, &error);
  if (config == NULL)
    {
      g_printerr ("migration-agent: %s\n", error->message);
      return EXIT_FAILURE;
    }
  if (state_dir == NULL)
    state_dir = ma_config_get_string (config, "agent", "state-dir", MA_STATEDIR);
  if (virtio_port == NULL)
    virtio_port = ma_config_get_string (config, "agent", "virtio-port", MA_DEFAULT_VIRTIO_PORT);

  agent = ma_agent_new (g_steal_pointer (&config), state_dir, &error);
  if (agent == NULL)
    {
      g_printerr ("migration-agent: %s\n", error->message);
      return EXIT_FAILURE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (modules) && error == NULL; i++)
    modules[i] (agent, &error);
  if (error != NULL || !ma_agent_apply_command_config (agent, &error))
    {
      g_printerr ("migration-agent: %s\n", error->message);
      return EXIT_FAILURE;
    }

  if (listen != NULL)
    {
      for (guint i = 0; listen[i] != NULL; i++)
        if (!ma_agent_listen (agent, listen[i], &error))
          break;
    }
  else
    {
      control = g_strdup_printf ("unix:%s/control.sock", state_dir);
      if (ma_agent_listen (agent, control, &error) && !no_virtio)
        ma_agent_serve_virtio_port (agent, virtio_port, &error);
    }
  if (error != NULL)
    {
      g_printerr ("migration-agent: %s\n", error->message);
      return EXIT_FAILURE;
    }

  if (!foreground && g_getenv ("NOTIFY_SOCKET") == NULL && !daemonize (&error))
    {
      g_printerr ("migration-agent: %s\n", error->message);
      return EXIT_FAILURE;
    }

  loop = g_main_loop_new (NULL, FALSE);
  m.agent = agent;
  m.loop = loop;
  g_unix_signal_add (SIGTERM, on_signal, &m);
  g_unix_signal_add (SIGINT, on_signal, &m);
  ma_sd_watchdog_start ();
  ma_heap_trim_enable (TRUE);
  {
    JsonObject *data = json_object_new ();
    json_object_set_string_member (data, "version", MA_VERSION);
    json_object_set_int_member (data, "pid", getpid ());
    ma_agent_emit_event (agent, "AGENT_STARTED", ma_json_new_object_node (data));
  }
  ma_sd_notify ("READY=1");
  g_message ("migration-agent %s ready (state in %s)", MA_VERSION, state_dir);
  g_main_loop_run (loop);
  g_message ("stopped");
  ma_log_flush (MA_LOG_EXIT_FLUSH_MS);
  return EXIT_SUCCESS;
}
