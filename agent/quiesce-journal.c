/* quiesce-journal.c — the quiesce journal (which oneshot plugins may be quiesced, kept
 * under the state dir) and, at start, the thaw of what a previous run left quiesced. */
#include "quiesce-private.h"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "error.h"
#include "json.h"

char *
quiesce_journal_path (MaQuiesce *q)
{
  return g_build_filename (ma_agent_get_state_dir (q->agent), MA_QUIESCE_JOURNAL, NULL);
}

gboolean
ma_quiesce_journal_save (const char *path, const char *operation, GPtrArray *plugin_names,
                         gboolean thaw_failed, GError **error)
{
  g_autofree char *text = NULL;
  g_autofree char *tmp = NULL;
  g_autoptr(JsonNode) node = NULL;
  JsonObject *obj = json_object_new ();
  JsonArray *names = json_array_new ();

  for (guint i = 0; i < plugin_names->len; i++)
    json_array_add_string_element (names, plugin_names->pdata[i]);
  json_object_set_string_member (obj, "operation", operation);
  json_object_set_array_member (obj, "plugins", names);
  if (thaw_failed)
    json_object_set_boolean_member (obj, "thaw-failed", TRUE);
  node = ma_json_new_object_node (obj);
  text = ma_json_to_string (node);
  /* Written to a new file, then renamed over the old one: whenever the agent dies, the
   * journal is the old or the new one, whole. No fsync: the journal has to outlive the
   * agent's process, not the kernel (it lives on /run, a tmpfs; after a reboot nothing is
   * quiesced), and an fsync on a disk-backed state dir cost 2-4 ms a write (measured, 2 CPUs),
   * once per plugin started. */
  tmp = g_strconcat (path, ".new", NULL);
  if (!g_file_set_contents_full (tmp, text, -1, G_FILE_SET_CONTENTS_NONE, 0600, error))
    return FALSE;
  if (g_rename (tmp, path) < 0)
    {
      int saved = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "cannot rename %s: %s",
                   tmp, g_strerror (saved));
      g_unlink (tmp);
      return FALSE;
    }
  return TRUE;
}

gboolean
ma_quiesce_journal_load (const char *path, char **operation, char ***plugin_names,
                         GError **error)
{
  g_autofree char *text = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_auto(GStrv) names = NULL;
  const char *id = "unknown";

  if (!g_file_get_contents (path, &text, NULL, error))
    return FALSE;
  node = ma_json_parse (text, strlen (text), error);
  if (node == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error_literal (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT, "not an object");
      return FALSE;
    }
  if (!ma_json_get_string (json_node_get_object (node), "operation", &id, error)
      || !ma_json_get_strv (json_node_get_object (node), "plugins", &names, error))
    return FALSE;
  *operation = g_strdup (id);
  *plugin_names = g_steal_pointer (&names);
  return TRUE;
}

/* thaw_failed: these plugins were released once and their thaw failed (informative only:
 * a restarted agent thaws whatever the journal names either way) */
void
quiesce_journal_write_names (MaQuiesce *q, const char *operation, GPtrArray *plugin_names,
                             gboolean thaw_failed)
{
  g_autofree char *path = quiesce_journal_path (q);
  g_autoptr(GError) error = NULL;

  /* the state dir is under /run: never a filesystem that may be frozen */
  if (!ma_quiesce_journal_save (path, operation, plugin_names, thaw_failed, &error))
    g_warning ("cannot write the quiesce journal: %s", error->message);
}

void
quiesce_journal_write (MaOperation *op)
{
  quiesce_journal_write_names (op->q, op->id, op->journaled, FALSE);
}

void
quiesce_journal_remove (MaQuiesce *q)
{
  g_autofree char *path = quiesce_journal_path (q);

  if (g_unlink (path) < 0 && errno != ENOENT)
    g_warning ("cannot remove %s: %s", path, g_strerror (errno));
}

static void
on_replayed (MaBatch *batch, gpointer user_data)
{
  MaQuiesce *q = user_data;
  JsonObject *data = json_object_new ();
  g_autoptr(GString) failures = g_string_new (NULL);
  g_autoptr(GPtrArray) failed = quiesce_thaw_failures (batch, failures);
  g_autofree char *dropped = ma_quiesce_join_names (batch->dropped);
  g_autofree char *message = NULL;
  JsonArray *names = json_array_new ();

  for (guint i = 0; i < batch->items->len; i++)
    json_array_add_string_element (names, ((MaBatchItem *) batch->items->pdata[i])->plugin->name);
  /* a plugin that could not run its thaw now has not thawed: it is retried like a failure */
  for (guint i = 0; i < batch->held_back->len; i++)
    g_ptr_array_add (failed, batch->held_back->pdata[i]);
  if (batch->held_back_failures->len > 0)
    g_string_append_printf (failures, "%s%s", failures->len ? "; " : "",
                            batch->held_back_failures->str);
  /* what still fails to thaw stays journaled and is retried like any failed thaw */
  if (failed->len > 0)
    quiesce_thaw_retry_begin (q, batch->operation, failed, failures->str);
  else
    quiesce_journal_remove (q);
  json_object_set_string_member (data, "operation", batch->operation);
  json_object_set_string_member (data, "reason", "agent restarted while quiesced");
  json_object_set_array_member (data, "plugins", names);
  json_object_set_boolean_member (data, "replayed", TRUE);
  if (failures->len > 0)
    json_object_set_string_member (data, "failures", failures->str);
  if (failed->len > 0)
    json_object_set_array_member (data, "pending", ma_quiesce_names_to_json (q->retry->names));
  if (batch->dropped->len > 0)
    json_object_set_array_member (data, "dropped", ma_quiesce_names_to_json (batch->dropped));
  if (failed->len > 0 && q->retry->timer_id != 0)
    json_object_set_double_member (data, "next_retry_seconds", quiesce_thaw_retry_next_in (q));
  ma_agent_emit_event (q->agent, "THAWED", ma_json_new_object_node (data));
  g_message ("thawed %u plugins left quiesced by the previous run (operation %s)%s",
             batch->items->len, batch->operation,
             failed->len || batch->dropped->len ? "; some did not thaw" : "");

  if (failures->len > 0 || batch->dropped->len > 0)
    {
      g_autofree char *retried = failed->len > 0 ? quiesce_thaw_retry_names (q->retry) : NULL;
      g_autoptr(GString) text = g_string_new (NULL);
      g_string_append_printf (text, "thaw of operation %s, left quiesced by the previous run, "
                              "failed", batch->operation);
      if (failures->len > 0)
        g_string_append_printf (text, " for %s", failures->str);
      if (retried != NULL)
        g_string_append_printf (text, "; the agent retries the thaw of %s%s", retried,
                                q->retry->timer_id != 0 ? " (`thaw` retries at once)"
                                                        : " at its next start");
      if (batch->dropped->len > 0)
        g_string_append_printf (text, "; dropped (plugin removed, its thaw did not run): %s",
                                dropped);
      message = g_string_free (g_steal_pointer (&text), FALSE);
      /* like a failed thaw while running: the retry's success moves it to `thawed` */
      quiesce_enter_state (q, MA_STATE_FAILED, batch->operation, message);
      quiesce_remember (q, batch->operation, "failed", message);
      ma_agent_set_last_operation (q->agent, "thaw", batch->operation, "fail");
    }
  else
    quiesce_remember (q, batch->operation, "thawed", NULL);
  q->replaying = FALSE;
  ma_batch_free (batch);
  quiesce_shutdown_done (q);
}

gboolean
quiesce_replay_journal (gpointer user_data)
{
  MaQuiesce *q = user_data;
  g_autofree char *path = quiesce_journal_path (q);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) names = NULL;
  g_autofree char *operation = NULL;
  MaPluginSet *set;
  MaBatch *batch;

  if (!ma_quiesce_journal_load (path, &operation, &names, &error)
      && g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    {
      q->replaying = FALSE;
      return G_SOURCE_REMOVE;
    }
  if (error != NULL)
    {
      g_warning ("quiesce journal %s is unreadable (%s); cannot replay its thaw", path,
                 error->message);
      quiesce_journal_remove (q);
      q->replaying = FALSE;
      return G_SOURCE_REMOVE;
    }
  set = quiesce_reload (q);
  batch = quiesce_batch_new (q, set, MA_PLUGIN_PHASE_THAW, operation, 0);
  batch->reverse = TRUE;
  for (guint i = 0; names != NULL && names[i] != NULL; i++)
    ma_batch_add_named_thaw (batch, set, names[i]);
  g_message ("the previous run left operation %s quiesced: thawing %u plugins", operation,
             batch->items->len);
  ma_batch_start (batch, on_replayed, q);
  return G_SOURCE_REMOVE;
}
