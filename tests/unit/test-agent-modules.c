/* test-agent-modules.c — the one way a module plugs into the agent: ma_agent_add_module adds
 * its commands and capabilities, ma_agent_get_module finds its state by class, and the hooks
 * run as documented (resumed in registration order, shutdown and free newest first). */
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "agent.h"
#include "json.h"

typedef struct
{
  const char *name;
  GString *trace; /* "NAME:HOOK " in call order, shared by the modules of one test */
} Probe;

static void
probe_cmd (MaCall *call, gpointer user_data)
{
  Probe *probe = user_data;
  JsonObject *obj = json_object_new ();

  json_object_set_string_member (obj, "module", probe->name);
  ma_call_return (call, ma_json_new_object_node (obj));
}

static void
probe_shutdown (MaAgent *agent, gpointer state)
{
  Probe *probe = state;

  g_string_append_printf (probe->trace, "%s:shutdown ", probe->name);
}

static void
probe_resumed (MaAgent *agent, const char *operation, gpointer state)
{
  Probe *probe = state;

  g_string_append_printf (probe->trace, "%s:resumed(%s) ", probe->name, operation);
}

static void
probe_free (gpointer state)
{
  Probe *probe = state;

  g_string_append_printf (probe->trace, "%s:free ", probe->name);
  g_free (probe);
}

static const MaCommandSpec first_commands[] = {
  { "first-cmd", probe_cmd, "answers with its module's name" },
  { NULL }
};
static const char *const first_capabilities[] = { "cap-a", "cap-b", NULL };
static const MaModuleClass first_module = {
  .name = "first",
  .commands = first_commands,
  .capabilities = first_capabilities,
  .shutdown = probe_shutdown,
  .resumed = probe_resumed,
  .free = probe_free,
};

static const MaCommandSpec second_commands[] = {
  { "second-cmd", probe_cmd, "answers with its module's name" },
  { NULL }
};
static const char *const second_capabilities[] = { "cap-c", NULL };
static const MaModuleClass second_module = {
  .name = "second",
  .commands = second_commands,
  .capabilities = second_capabilities,
  .shutdown = probe_shutdown,
  .resumed = probe_resumed,
  .free = probe_free,
};

/* no hooks, no commands: only its state */
static const MaModuleClass bare_module = {
  .name = "bare",
};

static const MaModuleClass unregistered_module = {
  .name = "unregistered",
};

typedef struct
{
  char *state_dir;
  MaAgent *agent;
  GString *trace;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaConfig) config = ma_config_new_from_data ("", &error);

  g_assert_no_error (error);
  f->state_dir = g_dir_make_tmp ("test-agent-modules-XXXXXX", &error);
  g_assert_no_error (error);
  f->agent = ma_agent_new (g_steal_pointer (&config), f->state_dir, &error);
  g_assert_no_error (error);
  f->trace = g_string_new (NULL);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_clear_pointer (&f->agent, ma_agent_free);
  g_assert_cmpint (g_rmdir (f->state_dir), ==, 0);
  g_free (f->state_dir);
  g_string_free (f->trace, TRUE);
}

static Probe *
add_probe (Fixture *f, const MaModuleClass *klass)
{
  Probe *probe = g_new0 (Probe, 1);

  probe->name = klass->name;
  probe->trace = f->trace;
  ma_agent_add_module (f->agent, klass, probe);
  return probe;
}

static void
on_reply (MaCall *call, const char *line, gpointer user_data)
{
  char **out = user_data;

  *out = g_strdup (line);
}

/* Dispatch NAME through the agent's command table as a client's request would be. */
static char *
dispatch (Fixture *f, const char *name)
{
  MaRequest *request = g_new0 (MaRequest, 1);
  g_autoptr(MaCall) call = NULL;
  char *line = NULL;

  request->execute = g_strdup (name);
  request->arguments = json_object_new ();
  call = ma_call_new (f->agent, request, on_reply, &line, NULL);
  ma_commands_dispatch (ma_agent_get_commands (f->agent), call);
  g_assert_true (ma_call_is_done (call));
  return line;
}

static void
test_commands_and_capabilities (Fixture *f, gconstpointer data)
{
  g_autoptr(JsonNode) caps = NULL;
  g_autofree char *caps_text = NULL;
  g_autofree char *first = NULL;
  g_autofree char *second = NULL;
  g_autofree char *unknown = NULL;

  add_probe (f, &first_module);
  add_probe (f, &second_module);

  /* each command gets its own module's state */
  first = dispatch (f, "first-cmd");
  g_assert_cmpstr (first, ==, "{\"return\":{\"module\":\"first\"}}\n");
  second = dispatch (f, "second-cmd");
  g_assert_cmpstr (second, ==, "{\"return\":{\"module\":\"second\"}}\n");
  unknown = dispatch (f, "third-cmd");
  g_assert_nonnull (strstr (unknown, "CommandNotFound"));
  g_assert_true (ma_commands_is_enabled (ma_agent_get_commands (f->agent), "first-cmd"));

  /* capabilities in registration order */
  caps = ma_agent_capabilities_to_json (f->agent);
  caps_text = ma_json_to_string (caps);
  g_assert_cmpstr (caps_text, ==, "[\"cap-a\",\"cap-b\",\"cap-c\"]");
}

static void
test_lookup (Fixture *f, gconstpointer data)
{
  Probe *first = add_probe (f, &first_module);
  Probe *second = add_probe (f, &second_module);
  int bare_state = 7;

  ma_agent_add_module (f->agent, &bare_module, &bare_state);
  g_assert_true (ma_agent_get_module (f->agent, &first_module) == first);
  g_assert_true (ma_agent_get_module (f->agent, &second_module) == second);
  g_assert_true (ma_agent_get_module (f->agent, &bare_module) == &bare_state);
  g_assert_null (ma_agent_get_module (f->agent, &unregistered_module));
}

static void
test_hook_order (Fixture *f, gconstpointer data)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  add_probe (f, &first_module);
  ma_agent_add_module (f->agent, &bare_module, NULL);
  add_probe (f, &second_module);

  ma_agent_notify_resumed (f->agent, "op-1");
  g_assert_cmpstr (f->trace->str, ==, "first:resumed(op-1) second:resumed(op-1) ");
  g_string_truncate (f->trace, 0);

  /* shutdown: newest first, once */
  ma_agent_shutdown (f->agent, loop);
  ma_agent_shutdown (f->agent, loop);
  g_assert_true (ma_agent_is_shutting_down (f->agent));
  g_assert_cmpstr (f->trace->str, ==, "second:shutdown first:shutdown ");
  g_string_truncate (f->trace, 0);

  /* free: newest first, before the rest of the agent goes */
  g_clear_pointer (&f->agent, ma_agent_free);
  g_assert_cmpstr (f->trace->str, ==, "second:free first:free ");
}

/* No answer passes the protocol's reply limit: one that would is answered with an error
 * saying so, with the request's id; one just under it goes out whole. */
static void
test_reply_bound (Fixture *f, gconstpointer data)
{
  const gsize sizes[] = { MA_PROTOCOL_MAX_REPLY_BYTES - 256, MA_PROTOCOL_MAX_REPLY_BYTES + 1024 };

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      MaRequest *request = g_new0 (MaRequest, 1);
      g_autoptr(MaCall) call = NULL;
      g_autofree char *line = NULL;
      GString *text = g_string_sized_new (sizes[i]);

      request->execute = g_strdup ("big");
      request->arguments = json_object_new ();
      request->id = json_node_init_int (json_node_alloc (), 7);
      call = ma_call_new (f->agent, request, on_reply, &line, NULL);
      /* a string of that many bytes, as a raw reply as blockers makes them */
      g_string_append_c (text, '"');
      while (text->len < sizes[i] - 32)
        g_string_append (text, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
      g_string_append_c (text, '"');
      {
        /* the over-long one is logged as a warning: not fatal here */
        GLogLevelFlags fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK);
        ma_call_return (call, ma_json_new_raw_node (g_string_free (text, FALSE)));
        g_log_set_always_fatal (fatal);
      }
      g_assert_nonnull (line);
      g_assert_cmpuint (strlen (line), <=, MA_PROTOCOL_MAX_REPLY_BYTES);
      if (i == 0)
        g_assert_true (g_str_has_prefix (line, "{\"return\":\"xxx"));
      else
        {
          g_assert_nonnull (strstr (line, "GenericError"));
          g_assert_nonnull (strstr (line, "over the protocol's limit"));
          g_assert_nonnull (strstr (line, "\"id\":7"));
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/agent/modules/commands-and-capabilities", Fixture, NULL, fixture_setup,
              test_commands_and_capabilities, fixture_teardown);
  g_test_add ("/agent/modules/lookup", Fixture, NULL, fixture_setup, test_lookup,
              fixture_teardown);
  g_test_add ("/agent/modules/hook-order", Fixture, NULL, fixture_setup, test_hook_order,
              fixture_teardown);
  g_test_add ("/agent/modules/reply-bound", Fixture, NULL, fixture_setup, test_reply_bound,
              fixture_teardown);
  return g_test_run ();
}
