/* migctl.c — the command-line client: connects to the agent (control socket in the guest, the
 * virtio chardev's host end, or a libvirt domain's channel through the libvirt module),
 * resynchronises, runs one command and prints it; `migrate` runs in the libvirt module. */
#include "buildconfig.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <gmodule.h>

#include "client.h"
#include "error.h"
#include "json.h"
#include "migctl-error.h"
#include "migctl-libvirt.h"
#include "migctl-output.h"
#include "migrate-guard.h"
#include "migrate-options.h"

#define MIGCTL_DEFAULT_CONNECT "unix:" MA_STATEDIR "/control.sock"

static const char usage_text[] =
  "COMMAND [KEY=VALUE…]\n\n"
  "Commands (any agent command may be given; these have human output):\n"
  "  ping                 is the agent alive\n"
  "  info                 version, commands and capabilities\n"
  "  status               lifecycle state, clients, last operation\n"
  "  events [after=SEQ]   buffered events\n"
  "  watch [after=SEQ]    print events as they arrive (Ctrl-C to stop)\n"
  "  plugins              quiesce plugins, their state and last timings\n"
  "  quiesce [operation=ID] [lease_seconds=N] [plugins=[...]]\n"
  "  thaw [operation=ID] | renew [lease_seconds=N] | check [phase=validate]\n"
  "  plugin-test NAME     run every phase of one plugin and time each\n"
  "  blockers [mountpoints=[...]] [detail=locks|writers|stuck [limit=N] [cursor=C]]\n"
  "                       what would make a freeze slow or fail: a bounded summary, or\n"
  "                       every entry of one kind, a page at a time (--all-pages: all)\n"
  "  prepare operation=ID           snapshot + blockers + plugin checks: ready to migrate?\n"
  "  snapshot [take=true] | validate | resumed operation=ID | announce\n"
  "  dirty-rate [seconds=N] [top=N] | throttle class=NAME|auto | unthrottle\n"
  "  freeze-guard                   the frozen-filesystem watchdog's state\n"
  "  migrate DOMAIN DEST-URI [OPTIONS]   the whole live migration through libvirt\n"
  "                       (migctl migrate --help lists its options)\n\n"
  "With --domain NAME, --connect is a libvirt URI (qemu:///system, qemu+ssh://HOST/system…)\n"
  "and the agent is reached through the domain's org.migration_agent.0 channel; this needs\n"
  "the host package (migctl-libvirt).\n\n"
  "KEY=VALUE becomes an argument; VALUE is read as JSON when it parses (42, true,\n"
  "[\"a\",\"b\"]) and as a string otherwise. --args '{...}' gives all arguments at once.\n\n"
  "Exit status: 0 success, 1 the agent answered with an error, 2 usage or connection error,\n"
  "3 `validate` (or migrate's destination validation) returned the verdict \"fail\",\n"
  "4 no such domain, 5 the domain is not running, 6 the domain has no agent channel,\n"
  "7 another client holds the channel (--force), 8 nothing answered on the channel,\n"
  "9 the libvirt connection failed or was lost, 10 migrate: preflight verdict blocked,\n"
  "11 migrate: refused or failed (the guest runs on the source, thawed and released),\n"
  "12 migrate: interrupted (aborted, thawed, released), 13 migrate: the guest has no agent,\n"
  "14 no libvirt module installed.";

/* The libvirt module (host package), loaded only when a command needs libvirt. */
static const MigctlLibvirtModule *
load_libvirt_module (GError **error)
{
  const char *dir = g_getenv ("MIGCTL_MODULE_DIR");
  g_autofree char *path = g_build_filename (dir != NULL ? dir : MA_PKGLIBDIR "/migctl",
                                            MIGCTL_LIBVIRT_MODULE_NAME ".so", NULL);
  GModule *module;
  MigctlLibvirtEntry entry = NULL;
  const MigctlLibvirtModule *m;

  /* lazy: of libvirt's many symbols, a command binds only those it calls (saves ~1.5 ms of a
   * 40 ms `migctl --domain D ping`) */
  module = g_module_open (path, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
  if (module == NULL)
    {
      g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_NO_LIBVIRT,
                   "libvirt support is not installed (%s); install the migctl-libvirt "
                   "package on the host", g_module_error ());
      return NULL;
    }
  if (!g_module_symbol (module, MIGCTL_LIBVIRT_ENTRY, (gpointer *) &entry) || entry == NULL
      || (m = entry ()) == NULL || g_strcmp0 (m->version, MA_VERSION) != 0)
    {
      g_set_error (error, MIGCTL_ERROR, MIGCTL_EXIT_NO_LIBVIRT,
                   "%s is not the libvirt module of migctl %s", path, MA_VERSION);
      g_module_close (module);
      return NULL;
    }
  g_module_make_resident (module);
  return m;
}

/* The exit status for an error from connecting or executing. */
static int
exit_status_for (const GError *error)
{
  if (error->domain == MIGCTL_ERROR)
    return error->code;
  return error->domain == MA_ERROR ? MIGCTL_EXIT_ERROR_REPLY : MIGCTL_EXIT_USAGE;
}

/* The index of the command word in argv (the first word that is not an option or an option's
 * value), or argc. */
static int
find_command_word (int argc, char **argv)
{
  static const char *const with_value[] = { "-c", "--connect", "-a", "--args", "-t", "--timeout",
                                            "-d", "--domain", NULL };
  for (int i = 1; i < argc; i++)
    {
      if (g_strcmp0 (argv[i], "--") == 0)
        return i + 1;
      if (argv[i][0] != '-')
        return i;
      if (g_strv_contains (with_value, argv[i]))
        i++;
    }
  return argc;
}

static gboolean
parse_arguments (char **words, const char *args_json, JsonObject *args, GError **error)
{
  if (args_json != NULL)
    {
      g_autoptr(JsonNode) node = ma_json_parse (args_json, strlen (args_json), error);
      if (node == NULL)
        return FALSE;
      if (!JSON_NODE_HOLDS_OBJECT (node))
        {
          g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                               "--args must be a JSON object");
          return FALSE;
        }
      g_autoptr(GList) members = json_object_get_members (json_node_get_object (node));
      for (GList *l = members; l != NULL; l = l->next)
        json_object_set_member (args, l->data,
                                json_node_copy (json_object_get_member (json_node_get_object (node),
                                                                        l->data)));
    }
  for (guint i = 0; words != NULL && words[i] != NULL; i++)
    {
      const char *eq = strchr (words[i], '=');
      g_autofree char *key = NULL;
      g_autoptr(JsonNode) value = NULL;

      if (eq == NULL || eq == words[i])
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "argument '%s' is not KEY=VALUE", words[i]);
          return FALSE;
        }
      key = g_strndup (words[i], (gsize) (eq - words[i]));
      value = ma_json_parse (eq + 1, strlen (eq + 1), NULL);
      if (value == NULL)
        {
          value = json_node_new (JSON_NODE_VALUE);
          json_node_set_string (value, eq + 1);
        }
      json_object_set_member (args, key, g_steal_pointer (&value));
    }
  return TRUE;
}

static int
run_watch (MaClient *client, JsonObject *args, gboolean json_output)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) backlog = NULL;
  JsonArray *events = NULL;

  /* first what is buffered after `after` (if given), then live events */
  if (json_object_has_member (args, "after"))
    {
      backlog = ma_client_execute (client, "events", args, &error);
      if (backlog == NULL)
        {
          g_printerr ("migctl: %s\n", error->message);
          return exit_status_for (error);
        }
      if (JSON_NODE_HOLDS_OBJECT (backlog)
          && ma_json_get_array (json_node_get_object (backlog), "events", &events, NULL) && events)
        for (guint i = 0; i < json_array_get_length (events); i++)
          {
            if (json_output)
              ma_out_print_json (json_array_get_element (events, i), FALSE);
            else
              ma_out_print_event (json_array_get_element (events, i));
          }
    }
  for (;;)
    {
      g_autoptr(JsonNode) event = ma_client_next_event (client, -1, &error);
      if (event == NULL)
        {
          g_printerr ("migctl: %s\n", error != NULL ? error->message : "connection lost");
          return error != NULL ? exit_status_for (error) : MIGCTL_EXIT_USAGE;
        }
      if (json_output)
        ma_out_print_json (event, FALSE);
      else
        ma_out_print_event (event);
      fflush (stdout);
    }
}

/* The page's next_cursor in a paged return, or NULL on the last page. */
static char *
next_cursor (JsonNode *ret)
{
  JsonObject *page = NULL;
  const char *next = NULL;

  if (JSON_NODE_HOLDS_OBJECT (ret)
      && ma_json_get_object (json_node_get_object (ret), "page", &page, NULL) && page != NULL)
    ma_json_get_string (page, "next_cursor", &next, NULL);
  return g_strdup (next);
}

/* Every page of a paged command, one request each, each printed as it comes. */
static int
run_all_pages (MaClient *client, const char *command, JsonObject *args, gboolean json_output)
{
  MaFormatter formatter = ma_out_find_formatter (command);
  g_autofree char *cursor = NULL;

  if (!json_object_has_member (args, "detail"))
    {
      g_printerr ("migctl: --all-pages needs a paged request (blockers detail=locks|writers|"
                  "stuck)\n");
      return MIGCTL_EXIT_USAGE;
    }
  do
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *text = NULL;
      g_autoptr(JsonNode) ret = NULL;

      if (cursor != NULL)
        json_object_set_string_member (args, "cursor", cursor);
      text = ma_client_execute_text (client, command, args, &error);
      if (text != NULL)
        ret = ma_json_parse (text, strlen (text), &error);
      if (ret == NULL)
        {
          g_printerr ("migctl: %s\n", error->message);
          return exit_status_for (error);
        }
      if (json_output)
        {
          fputs (text, stdout);
          fputc ('\n', stdout);
        }
      else if (formatter != NULL)
        formatter (ret);
      else
        ma_out_print_json (ret, TRUE);
      fflush (stdout);
      g_free (cursor);
      cursor = next_cursor (ret);
    }
  while (cursor != NULL);
  return MIGCTL_EXIT_OK;
}

int
main (int argc, char **argv)
{
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(MaClient) client = NULL;
  g_autoptr(JsonObject) args = json_object_new ();
  g_autoptr(JsonNode) ret = NULL;
  g_autofree char *connect_uri = NULL;
  g_autofree char *args_json = NULL;
  g_autofree char *domain = NULL;
  g_auto(GStrv) rest = NULL;
  gboolean json_output = FALSE, no_color = FALSE, version = FALSE, force = FALSE;
  gboolean all_pages = FALSE;
  int command_at = find_command_word (argc, argv);
  MaMigrateOptions help_options = { 0 };
  int global_argc = command_at;
  double timeout = MA_CLIENT_DEFAULT_TIMEOUT_MS / 1000.0;
  const char *command, *pipelined;
  MaFormatter formatter;
  const GOptionEntry entries[] = {
    { "connect", 'c', 0, G_OPTION_ARG_STRING, &connect_uri,
      "Agent address (default " MIGCTL_DEFAULT_CONNECT "); with --domain or migrate, a libvirt "
      "URI", "unix:PATH|URI" },
    { "domain", 'd', 0, G_OPTION_ARG_STRING, &domain,
      "Reach the agent of this libvirt domain through its channel", "NAME" },
    { "force", 0, 0, G_OPTION_ARG_NONE, &force,
      "With --domain: take the channel over from another client", NULL },
    { "json", 'j', 0, G_OPTION_ARG_NONE, &json_output, "Print the raw return as JSON", NULL },
    { "args", 'a', 0, G_OPTION_ARG_STRING, &args_json, "Arguments as one JSON object", "JSON" },
    { "timeout", 't', 0, G_OPTION_ARG_DOUBLE, &timeout, "Seconds to wait for the answer (60)",
      "SECONDS" },
    { "all-pages", 0, 0, G_OPTION_ARG_NONE, &all_pages,
      "With a paged reply (blockers detail=…): follow next_cursor to the last page (--json: "
      "one return per line)", NULL },
    { "no-color", 0, 0, G_OPTION_ARG_NONE, &no_color, "Never colour the output", NULL },
    { "version", 'V', 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, "COMMAND [KEY=VALUE…]" },
    { NULL }
  };

  /* a peer that went away (libvirtd killed, the agent's socket closed) is an error to report,
   * not a signal to die of: for every command, migrate and its guard included (libvirt's
   * client writes to its socket without MSG_NOSIGNAL) */
  signal (SIGPIPE, SIG_IGN);
  context = g_option_context_new (NULL);
  g_option_context_set_summary (context, "Talk to migration-agent.");
  g_option_context_set_description (context, usage_text);
  g_option_context_add_main_entries (context, entries, NULL);
  /* migrate's options are parsed by the libvirt module; --help-all lists them too */
  for (int i = 1; i < argc; i++)
    if (g_strcmp0 (argv[i], "--help-all") == 0 || g_strcmp0 (argv[i], "--help-migrate") == 0)
      {
        ma_migrate_options_init (&help_options);
        g_option_context_add_group (context, ma_migrate_options_group (&help_options));
        break;
      }
  /* the child of migrate --freeze that undoes what a dead migctl held (migrate-guard.h) */
  if (argc == 5 && g_strcmp0 (argv[1], MA_GUARD_COMMAND) == 0)
    {
      const MigctlLibvirtModule *m = load_libvirt_module (&error);
      if (m == NULL)
        {
          g_printerr ("migctl: %s\n", error->message);
          return exit_status_for (error);
        }
      return m->migrate_guard (argc - 1, argv + 1);
    }
  /* `migrate` has options of its own: only what precedes it is migctl's */
  if (command_at < argc && g_strcmp0 (argv[command_at], "migrate") == 0)
    {
      if (!g_option_context_parse (context, &global_argc, &argv, &error))
        {
          g_printerr ("migctl: %s\n", error->message);
          return MIGCTL_EXIT_USAGE;
        }
      if (domain != NULL)
        {
          g_printerr ("migctl: migrate takes the domain as its first argument, not --domain\n");
          return MIGCTL_EXIT_USAGE;
        }
      const MigctlLibvirtModule *m = load_libvirt_module (&error);
      if (m == NULL)
        {
          g_printerr ("migctl: %s\n", error->message);
          return exit_status_for (error);
        }
      return m->migrate (connect_uri, argc - command_at, argv + command_at);
    }
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("migctl: %s\n", error->message);
      return MIGCTL_EXIT_USAGE;
    }
  if (version)
    {
      printf ("migctl %s\n", MA_VERSION);
      return MIGCTL_EXIT_OK;
    }
  if (rest == NULL || rest[0] == NULL)
    {
      g_autofree char *help = g_option_context_get_help (context, TRUE, NULL);
      g_printerr ("%s", help);
      return MIGCTL_EXIT_USAGE;
    }
  if (no_color)
    ma_out_set_color (FALSE);
  if (timeout <= 0 || timeout > 86400)
    {
      g_printerr ("migctl: --timeout must be between 0 and 86400 seconds\n");
      return MIGCTL_EXIT_USAGE;
    }
  command = rest[0];
  /* `migctl plugin-test NAME`: the one command with a positional argument */
  if (g_strcmp0 (command, "plugin-test") == 0 && rest[1] != NULL && strchr (rest[1], '=') == NULL)
    json_object_set_string_member (args, "name", rest[1]);
  if (!parse_arguments (json_object_has_member (args, "name") ? rest + 2 : rest + 1, args_json,
                        args, &error))
    {
      g_printerr ("migctl: %s\n", error->message);
      return MIGCTL_EXIT_USAGE;
    }

  if (force && domain == NULL)
    {
      g_printerr ("migctl: --force is for --domain\n");
      return MIGCTL_EXIT_USAGE;
    }
  /* a command that only reads is sent with the sync: one round trip to the guest, not two */
  pipelined = ma_client_command_only_reads (command) ? command : NULL;
  if (domain != NULL)
    {
      const MigctlLibvirtModule *m = load_libvirt_module (&error);
      if (m != NULL)
        client = m->agent_connect (connect_uri, domain, force, (guint) (timeout * 1000),
                                   pipelined, args, &error);
    }
  else
    {
      client = ma_client_connect (connect_uri != NULL ? connect_uri : MIGCTL_DEFAULT_CONNECT,
                                  (guint) (timeout * 1000), &error);
      if (client != NULL && pipelined != NULL)
        ma_client_set_pipelined (client, pipelined, args);
      if (client != NULL && !ma_client_sync (client, &error))
        g_clear_pointer (&client, ma_client_free);
    }
  if (client == NULL)
    {
      g_printerr ("migctl: %s\n", error->message);
      return exit_status_for (error);
    }

  if (g_strcmp0 (command, "watch") == 0)
    return run_watch (client, args, json_output);
  if (all_pages)
    return run_all_pages (client, command, args, json_output);

  /* --json prints the return as the agent wrote it: a blockers report of megabytes needs no
   * tree (validate's verdict is read for the exit status) */
  if (json_output && g_strcmp0 (command, "validate") != 0)
    {
      g_autofree char *text = ma_client_execute_text (client, command, args, &error);
      if (text == NULL)
        {
          g_printerr ("migctl: %s\n", error->message);
          return exit_status_for (error);
        }
      fputs (text, stdout);
      fputc ('\n', stdout);
      return MIGCTL_EXIT_OK;
    }
  ret = ma_client_execute (client, command, args, &error);
  if (ret == NULL)
    {
      g_printerr ("migctl: %s\n", error->message);
      return exit_status_for (error);
    }
  formatter = ma_out_find_formatter (command);
  if (json_output || formatter == NULL)
    ma_out_print_json (ret, !json_output);
  else
    formatter (ret);
  /* validate answers normally with its report: a failing verdict is exit status 3 */
  if (g_strcmp0 (command, "validate") == 0 && JSON_NODE_HOLDS_OBJECT (ret))
    {
      const char *verdict = NULL;
      if (ma_json_get_string (json_node_get_object (ret), "verdict", &verdict, NULL)
          && g_strcmp0 (verdict, "fail") == 0)
        return MIGCTL_EXIT_VALIDATION_FAILED;
    }
  return MIGCTL_EXIT_OK;
}
