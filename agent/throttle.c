/* throttle.c — cooperative throttling during a migration: configured classes of cgroups or
 * units slowed with cgroup v2 cpu.max or frozen, leased, journalled, and undone exactly. */
#include "throttle.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "dirtyrate.h"
#include "json.h"
#include "paths.h"

#define THROTTLE_GROUP "throttle"
#define THROTTLE_CLASS_PREFIX "throttle:"
#define THROTTLE_VALUE_MAX 256

/* One file changed in one cgroup. */
typedef struct
{
  char *path;     /* absolute cgroup directory */
  char *file;     /* "cpu.max" or "cgroup.freeze" */
  char *previous; /* its content before, restored exactly */
  char *applied;
} ThrottleChange;

typedef struct
{
  MaThrottle *owner;
  char *klass;
  char *policy;
  char *operation;
  GPtrArray *changes; /* ThrottleChange* */
  gint64 expires_at;  /* realtime µs */
  guint lease_id;
  /* releasing it failed: `changes` holds only what could not be undone, retried when its
   * lease (MA_THROTTLE_RETRY_SECONDS) ends, by `unthrottle` and at the next start */
  gboolean undo_failed;
} ActiveThrottle;

struct _MaThrottle
{
  MaAgent *agent;
  char *root;
  char *journal_path;
  GPtrArray *classes;    /* MaThrottleClass* in configuration order */
  char **protected_units;
  gint64 default_lease;
  GHashTable *active;    /* class name → ActiveThrottle* */
  GError *config_error;  /* set when the configuration is invalid */
  /* bumped whenever every throttle is released for good (stop, resume): a `throttle auto`
   * whose measurement began before must not apply what that release undid */
  guint generation;
  const char *abandoned_why;
};

/* ---- records ---- */

static void
change_free (ThrottleChange *c)
{
  if (c == NULL)
    return;
  g_free (c->path);
  g_free (c->file);
  g_free (c->previous);
  g_free (c->applied);
  g_free (c);
}

static void
active_free (ActiveThrottle *a)
{
  if (a->lease_id != 0)
    g_source_remove (a->lease_id);
  g_free (a->klass);
  g_free (a->policy);
  g_free (a->operation);
  g_ptr_array_unref (a->changes);
  g_free (a);
}


static JsonNode *
changes_to_json (GPtrArray *changes, MaThrottle *self)
{
  JsonArray *arr = json_array_new ();

  for (guint i = 0; i < changes->len; i++)
    {
      ThrottleChange *c = changes->pdata[i];
      JsonObject *o = json_object_new ();
      const char *rel = c->path;
      g_autofree char *safe = NULL;

      if (self != NULL && g_str_has_prefix (c->path, self->root))
        rel = c->path + strlen (self->root);
      safe = ma_json_safe_string (rel[0] != '\0' ? rel : "/", -1, NULL);
      json_object_set_string_member (o, "cgroup", safe);
      json_object_set_string_member (o, "file", c->file);
      json_object_set_string_member (o, "previous", c->previous);
      json_object_set_string_member (o, "applied", c->applied);
      json_array_add_object_element (arr, o);
    }
  return ma_json_new_array_node (arr);
}

static JsonNode *
active_to_json (ActiveThrottle *a)
{
  JsonObject *o = json_object_new ();
  gint64 left = (a->expires_at - g_get_real_time ()) / G_USEC_PER_SEC;

  json_object_set_string_member (o, "class", a->klass);
  json_object_set_string_member (o, "policy", a->policy);
  if (a->operation != NULL)
    json_object_set_string_member (o, "operation", a->operation);
  json_object_set_int_member (o, "expires", a->expires_at / G_USEC_PER_SEC);
  json_object_set_int_member (o, "lease-seconds-left", MAX (left, 0));
  json_object_set_member (o, "cgroups", changes_to_json (a->changes, a->owner));
  return ma_json_new_object_node (o);
}

/* ---- the journal: every active change, rewritten atomically before and after each change ---- */

static gboolean
journal_save (MaThrottle *self, GError **error)
{
  JsonObject *root = json_object_new ();
  JsonArray *list = json_array_new ();
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *text = NULL;
  GHashTableIter iter;
  gpointer value;

  g_hash_table_iter_init (&iter, self->active);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      ActiveThrottle *a = value;
      JsonObject *o = json_object_new ();
      JsonArray *changes = json_array_new ();

      json_object_set_string_member (o, "class", a->klass);
      json_object_set_string_member (o, "policy", a->policy);
      if (a->operation != NULL)
        json_object_set_string_member (o, "operation", a->operation);
      for (guint i = 0; i < a->changes->len; i++)
        {
          ThrottleChange *c = a->changes->pdata[i];
          JsonObject *co = json_object_new ();
          json_object_set_string_member (co, "path", c->path);
          json_object_set_string_member (co, "file", c->file);
          json_object_set_string_member (co, "previous", c->previous);
          json_object_set_string_member (co, "applied", c->applied);
          json_array_add_object_element (changes, co);
        }
      json_object_set_array_member (o, "changes", changes);
      json_array_add_object_element (list, o);
    }
  json_object_set_int_member (root, "version", 1);
  json_object_set_array_member (root, "throttles", list);
  node = ma_json_new_object_node (root);
  text = ma_json_to_string (node);
  return g_file_set_contents_full (self->journal_path, text, -1,
                                   G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}

/* Undo one change: restore `previous` when the file still holds what we applied. */
static gboolean
change_restore (ThrottleChange *c, gboolean *gone, GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autofree char *current = ma_throttle_cgroup_read (c->path, c->file, &local);

  *gone = FALSE;
  if (current == NULL)
    {
      /* the cgroup is gone: nothing left to undo, nothing to retry */
      *gone = g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT);
      if (*gone)
        return TRUE;
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  if (g_str_equal (current, c->previous))
    return TRUE;
  if (!g_str_equal (current, c->applied))
    {
      g_warning ("%s/%s is '%s', neither what the agent applied ('%s') nor what it found "
                 "('%s'): someone else changed it; left as is", c->path, c->file, current,
                 c->applied, c->previous);
      return TRUE;
    }
  return ma_throttle_cgroup_write (c->path, c->file, c->previous, error);
}

static const char *
change_rel (MaThrottle *self, ThrottleChange *c)
{
  const char *rel = c->path;

  if (self != NULL && g_str_has_prefix (c->path, self->root))
    rel = c->path + strlen (self->root);
  return rel[0] != '\0' ? rel : "/";
}

/* Restores in reverse order. Returns the changes that could not be undone (still applied),
 * and lists them in `failed` ({cgroup, file, error}) and vanished cgroups in `gone`. */
static GPtrArray *
changes_restore (MaThrottle *self, GPtrArray *changes, JsonArray *failed, JsonArray *gone)
{
  GPtrArray *kept = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);

  for (guint i = changes->len; i > 0; i--)
    {
      ThrottleChange *c = changes->pdata[i - 1];
      g_autoptr(GError) error = NULL;
      g_autofree char *safe = ma_json_safe_string (change_rel (self, c), -1, NULL);
      JsonObject *o;
      gboolean vanished;

      if (change_restore (c, &vanished, &error))
        {
          if (!vanished)
            continue;
          o = json_object_new ();
          json_object_set_string_member (o, "cgroup", safe);
          json_object_set_string_member (o, "file", c->file);
          json_array_add_object_element (gone, o);
          continue;
        }
      g_warning ("cannot undo a throttle: %s", error->message);
      o = json_object_new ();
      json_object_set_string_member (o, "cgroup", safe);
      json_object_set_string_member (o, "file", c->file);
      json_object_set_string_member (o, "error", error->message);
      json_array_add_object_element (failed, o);
      g_ptr_array_insert (kept, 0, g_steal_pointer (&changes->pdata[i - 1]));
    }
  /* the kept ones were stolen: drop the empty slots */
  g_ptr_array_remove_range (changes, 0, changes->len);
  return kept;
}

static void
emit_unthrottled (MaThrottle *self, const char *klass, const char *operation, const char *reason,
                  JsonNode *cgroups, JsonArray *failed, JsonArray *gone)
{
  JsonObject *data = json_object_new ();

  json_object_set_string_member (data, "class", klass);
  if (operation != NULL)
    json_object_set_string_member (data, "operation", operation);
  json_object_set_string_member (data, "reason", reason);
  json_object_set_member (data, "cgroups", cgroups);
  json_object_set_array_member (data, "failed", json_array_ref (failed));
  json_object_set_array_member (data, "gone", json_array_ref (gone));
  ma_agent_emit_event (self->agent, "UNTHROTTLED", ma_json_new_object_node (data));
}

static void keep_undone (MaThrottle *self, ActiveThrottle *a, GPtrArray *kept);

static void
journal_replay (MaThrottle *self)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_autoptr(JsonNode) node = NULL;
  JsonArray *list = NULL;
  gsize len;

  if (!g_file_get_contents (self->journal_path, &text, &len, &error))
    return; /* no journal: nothing was left applied */
  node = ma_json_parse (text, len, &error);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node)
      || !ma_json_get_array (json_node_get_object (node), "throttles", &list, &error)
      || list == NULL)
    {
      g_warning ("throttle journal %s is unreadable (%s); removing it", self->journal_path,
                 error != NULL ? error->message : "no throttles list");
      g_unlink (self->journal_path);
      return;
    }
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonNode *en = json_array_get_element (list, i);
      JsonObject *eo;
      JsonArray *changes = NULL;
      const char *klass = "?", *operation = NULL, *policy = NULL;
      g_autoptr(GPtrArray) restored = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
      g_autoptr(GPtrArray) kept = NULL;
      g_autoptr(JsonArray) failed = json_array_new ();
      g_autoptr(JsonArray) gone = json_array_new ();
      JsonNode *cgroups;

      if (!JSON_NODE_HOLDS_OBJECT (en))
        continue;
      eo = json_node_get_object (en);
      if (!ma_json_get_string (eo, "class", &klass, NULL) || klass == NULL
          || !ma_json_get_string (eo, "policy", &policy, NULL)
          || !ma_json_get_string (eo, "operation", &operation, NULL)
          || !ma_json_get_array (eo, "changes", &changes, NULL) || changes == NULL)
        continue;
      for (guint j = 0; j < json_array_get_length (changes); j++)
        {
          JsonNode *cn = json_array_get_element (changes, j);
          const char *path = NULL, *file = NULL, *previous = NULL, *applied = NULL;
          ThrottleChange *c;
          JsonObject *co;

          if (!JSON_NODE_HOLDS_OBJECT (cn))
            continue;
          co = json_node_get_object (cn);
          if (!ma_json_get_string (co, "path", &path, NULL) || path == NULL
              || !ma_json_get_string (co, "file", &file, NULL) || file == NULL
              || !ma_json_get_string (co, "previous", &previous, NULL) || previous == NULL
              || !ma_json_get_string (co, "applied", &applied, NULL) || applied == NULL
              || (!g_str_equal (file, "cpu.max") && !g_str_equal (file, "cgroup.freeze")))
            continue;
          c = g_new0 (ThrottleChange, 1);
          c->path = g_strdup (path);
          c->file = g_strdup (file);
          c->previous = g_strdup (previous);
          c->applied = g_strdup (applied);
          g_ptr_array_add (restored, c);
        }
      cgroups = changes_to_json (restored, self);
      kept = changes_restore (self, restored, failed, gone);
      g_message ("undid throttle of class %s left by a previous agent (%u cgroups, %u failed)",
                 klass, json_array_get_length (json_node_get_array (cgroups)), kept->len);
      emit_unthrottled (self, klass, operation, "agent-restart", cgroups, failed, gone);
      if (kept->len > 0 && !g_hash_table_contains (self->active, klass))
        {
          ActiveThrottle *a = g_new0 (ActiveThrottle, 1);
          a->owner = self;
          a->klass = g_strdup (klass);
          a->policy = g_strdup (policy != NULL ? policy : "?");
          a->operation = g_strdup (operation);
          a->changes = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
          g_hash_table_insert (self->active, g_strdup (klass), a);
          keep_undone (self, a, g_steal_pointer (&kept));
        }
    }
  if (!journal_save (self, &error))
    g_warning ("cannot rewrite the throttle journal: %s", error->message);
}

/* ---- configuration ---- */

static gboolean
valid_relative_cgroup (const char *path)
{
  g_auto(GStrv) parts = g_strsplit (path, "/", -1);
  gboolean any = FALSE;

  for (guint i = 0; parts[i] != NULL; i++)
    {
      if (g_str_equal (parts[i], "..") || g_str_equal (parts[i], "."))
        return FALSE;
      any |= parts[i][0] != '\0';
    }
  return any;
}

static gboolean
load_config (MaThrottle *self, MaConfig *config, GError **error)
{
  GKeyFile *kf = ma_config_get_keyfile (config);
  g_auto(GStrv) groups = g_key_file_get_groups (kf, NULL);
  gint64 lease = MA_THROTTLE_DEFAULT_LEASE_SECONDS;

  if (!ma_config_get_int (config, THROTTLE_GROUP, "default-lease-seconds",
                          MA_THROTTLE_DEFAULT_LEASE_SECONDS, 1, MA_THROTTLE_MAX_LEASE_SECONDS,
                          &lease, error))
    return FALSE;
  self->default_lease = lease;
  self->protected_units = ma_config_get_strv (config, THROTTLE_GROUP, "protected");
  if (self->protected_units == NULL)
    self->protected_units = g_new0 (char *, 1);
  for (guint i = 0; groups[i] != NULL; i++)
    {
      static const char *const known[] = { "cgroups", "units", "policy", NULL };
      g_autoptr(MaThrottleClass) klass = NULL;
      g_auto(GStrv) keys = NULL;
      g_autofree char *policy = NULL;
      const char *name;

      if (!g_str_has_prefix (groups[i], THROTTLE_CLASS_PREFIX))
        continue;
      name = groups[i] + strlen (THROTTLE_CLASS_PREFIX);
      if (name[0] == '\0' || g_str_equal (name, "auto") || strchr (name, '/') != NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "[%s]: a throttle class needs a name other than 'auto', without '/'",
                       groups[i]);
          return FALSE;
        }
      keys = g_key_file_get_keys (kf, groups[i], NULL, NULL);
      for (guint k = 0; keys != NULL && keys[k] != NULL; k++)
        if (!g_strv_contains (known, keys[k]))
          {
            g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                         "[%s]: unknown key '%s' (cgroups, units, policy)", groups[i], keys[k]);
            return FALSE;
          }
      klass = g_new0 (MaThrottleClass, 1);
      klass->name = g_strdup (name);
      policy = ma_config_get_string (config, groups[i], "policy", NULL);
      if (policy == NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "[%s]: policy= is missing ('freeze' or 'cpu.max QUOTA [PERIOD]')",
                       groups[i]);
          return FALSE;
        }
      if (!ma_throttle_parse_policy (policy, &klass->policy, error))
        {
          g_prefix_error (error, "[%s]: ", groups[i]);
          return FALSE;
        }
      klass->cgroups = ma_config_get_strv (config, groups[i], "cgroups");
      klass->units = ma_config_get_strv (config, groups[i], "units");
      if (klass->cgroups == NULL)
        klass->cgroups = g_new0 (char *, 1);
      if (klass->units == NULL)
        klass->units = g_new0 (char *, 1);
      for (guint c = 0; klass->cgroups[c] != NULL; c++)
        if (!valid_relative_cgroup (klass->cgroups[c]))
          {
            g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                         "[%s]: cgroup '%s' must be a path below the cgroup2 root, without "
                         "'..'", groups[i], klass->cgroups[c]);
            return FALSE;
          }
      for (guint u = 0; klass->units[u] != NULL; u++)
        if (strchr (klass->units[u], '/') != NULL || klass->units[u][0] == '\0')
          {
            g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                         "[%s]: '%s' is not a unit name", groups[i], klass->units[u]);
            return FALSE;
          }
      if (klass->cgroups[0] == NULL && klass->units[0] == NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                       "[%s]: names neither cgroups= nor units=", groups[i]);
          return FALSE;
        }
      g_ptr_array_add (self->classes, g_steal_pointer (&klass));
    }
  return TRUE;
}

static MaThrottleClass *
find_class (MaThrottle *self, const char *name)
{
  for (guint i = 0; i < self->classes->len; i++)
    {
      MaThrottleClass *c = self->classes->pdata[i];
      if (g_str_equal (c->name, name))
        return c;
    }
  return NULL;
}

/* ---- applying and releasing ---- */

static void release_active (MaThrottle *self, ActiveThrottle *a, const char *reason,
                            JsonObject *report);

static gboolean
on_lease_expired (gpointer user_data)
{
  ActiveThrottle *a = user_data;

  a->lease_id = 0;
  if (a->undo_failed)
    {
      g_message ("class %s: retrying what could not be undone", a->klass);
      release_active (a->owner, a, "retry", NULL);
      return G_SOURCE_REMOVE;
    }
  g_message ("throttle lease of class %s expired", a->klass);
  release_active (a->owner, a, "lease-expired", NULL);
  return G_SOURCE_REMOVE;
}

static void
arm_lease (ActiveThrottle *a, gint64 lease_seconds)
{
  if (a->lease_id != 0)
    g_source_remove (a->lease_id);
  a->expires_at = g_get_real_time () + lease_seconds * G_USEC_PER_SEC;
  a->lease_id = g_timeout_add_seconds ((guint) lease_seconds, on_lease_expired, a);
}

/* What could not be undone stays applied: keep it (and only it) active and journalled, with
 * a retry lease; drop the record when everything was undone. kept is taken. */
static void
keep_undone (MaThrottle *self, ActiveThrottle *a, GPtrArray *kept)
{
  g_autoptr(GError) error = NULL;

  if (kept->len == 0)
    {
      g_ptr_array_unref (kept);
      g_hash_table_remove (self->active, a->klass);
    }
  else
    {
      g_warning ("class %s: %u changes could not be undone; retried in %d s, by unthrottle "
                 "and at the next start", a->klass, kept->len, MA_THROTTLE_RETRY_SECONDS);
      g_ptr_array_unref (a->changes);
      a->changes = kept;
      a->undo_failed = TRUE;
      arm_lease (a, MA_THROTTLE_RETRY_SECONDS);
    }
  if (!journal_save (self, &error))
    g_warning ("cannot rewrite the throttle journal: %s", error->message);
}

/* Undo, emit UNTHROTTLED (with what failed and what was gone), then drop the record or keep
 * what failed; `report` (may be NULL) gets the same `failed` and `gone` lists. */
static void
release_active (MaThrottle *self, ActiveThrottle *a, const char *reason, JsonObject *report)
{
  g_autoptr(JsonArray) failed = json_array_new ();
  g_autoptr(JsonArray) gone = json_array_new ();
  JsonNode *cgroups = changes_to_json (a->changes, self);
  GPtrArray *kept = changes_restore (self, a->changes, failed, gone);

  emit_unthrottled (self, a->klass, a->operation, reason, cgroups, failed, gone);
  if (report != NULL)
    {
      json_object_set_array_member (report, "failed", json_array_ref (failed));
      json_object_set_array_member (report, "gone", json_array_ref (gone));
    }
  keep_undone (self, a, kept);
}

static ActiveThrottle *
throttle_class (MaThrottle *self, MaThrottleClass *klass, MaThrottleTargets *resolved,
                gint64 lease_seconds, const char *operation, gboolean *renewed, JsonArray *missing,
                GError **error)
{
  GPtrArray *targets;
  g_autoptr(GPtrArray) changes = g_ptr_array_new_with_free_func ((GDestroyNotify) change_free);
  g_autofree char *value = ma_throttle_policy_value (&klass->policy);
  const char *file = ma_throttle_policy_file (&klass->policy);
  ActiveThrottle *a = g_hash_table_lookup (self->active, klass->name);
  GHashTableIter iter;
  gpointer other;

  if (a != NULL && a->undo_failed)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_BUSY,
                   "class %s: the agent could not undo its previous throttle (see its "
                   "UNTHROTTLED event); `unthrottle` retries that", klass->name);
      return NULL;
    }
  if (a != NULL)
    {
      *renewed = TRUE;
      g_free (a->operation);
      a->operation = g_strdup (operation);
      arm_lease (a, lease_seconds);
      if (!journal_save (self, error))
        return NULL;
      return a;
    }
  *renewed = FALSE;
  g_return_val_if_fail (resolved != NULL, NULL);
  targets = resolved->targets;
  for (guint i = 0; i < resolved->missing->len; i++)
    json_array_add_string_element (missing, resolved->missing->pdata[i]);
  if (targets->len == 0)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_NOT_FOUND,
                   "class %s: none of its cgroups or units exists now", klass->name);
      return NULL;
    }
  for (guint i = 0; i < targets->len; i++)
    {
      const char *rel = targets->pdata[i];
      const char *why = resolved->why_not->pdata[i];
      g_autofree char *abs = g_build_filename (self->root, rel, NULL);
      g_autofree char *previous = NULL;
      g_autoptr(GError) local = NULL;
      ThrottleChange *c;

      if (why != NULL)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_PERMISSION, "class %s: cgroup %s is not "
                       "touched: %s", klass->name, rel, why);
          return NULL;
        }
      /* one owner per cgroup: two classes must not stack on one file */
      g_hash_table_iter_init (&iter, self->active);
      while (g_hash_table_iter_next (&iter, NULL, &other))
        {
          ActiveThrottle *oa = other;
          for (guint j = 0; j < oa->changes->len; j++)
            {
              ThrottleChange *oc = oa->changes->pdata[j];
              if (g_str_equal (oc->path, abs) && g_str_equal (oc->file, file))
                {
                  g_set_error (error, MA_ERROR, MA_ERROR_BUSY,
                               "class %s: cgroup %s is already throttled by class %s",
                               klass->name, rel, oa->klass);
                  return NULL;
                }
            }
        }
      previous = ma_throttle_cgroup_read (abs, file, &local);
      if (previous == NULL)
        {
          if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            g_set_error (error, MA_ERROR, MA_ERROR_UNSUPPORTED,
                         "class %s: cgroup %s has no %s (%s)", klass->name, rel, file,
                         klass->policy.kind == MA_THROTTLE_POLICY_CPU_MAX
                           ? "the cpu controller is not enabled in its parent's "
                             "cgroup.subtree_control"
                           : "not a cgroup v2 non-root cgroup");
          else
            g_set_error (error, MA_ERROR, MA_ERROR_GENERIC, "class %s: %s", klass->name,
                         local->message);
          return NULL;
        }
      if (strlen (previous) > THROTTLE_VALUE_MAX)
        {
          g_set_error (error, MA_ERROR, MA_ERROR_GENERIC, "class %s: %s/%s is unexpectedly long",
                       klass->name, rel, file);
          return NULL;
        }
      c = g_new0 (ThrottleChange, 1);
      c->path = g_steal_pointer (&abs);
      c->file = g_strdup (file);
      c->previous = g_steal_pointer (&previous);
      c->applied = g_strdup (value);
      g_ptr_array_add (changes, c);
    }

  /* journal first, so a crash in the middle is undone at the next start */
  a = g_new0 (ActiveThrottle, 1);
  a->owner = self;
  a->klass = g_strdup (klass->name);
  a->policy = ma_throttle_policy_to_string (&klass->policy);
  a->operation = g_strdup (operation);
  a->changes = g_steal_pointer (&changes);
  g_hash_table_insert (self->active, g_strdup (klass->name), a);
  if (!journal_save (self, error))
    {
      g_hash_table_remove (self->active, klass->name);
      g_prefix_error (error, "not throttled: cannot write the journal: ");
      return NULL;
    }
  for (guint i = 0; i < a->changes->len; i++)
    {
      ThrottleChange *c = a->changes->pdata[i];
      if (!ma_throttle_cgroup_write (c->path, c->file, c->applied, error))
        {
          g_autoptr(JsonArray) failed = json_array_new ();
          g_autoptr(JsonArray) gone = json_array_new ();
          /* all or nothing: undo what was applied (what cannot be undone stays tracked) */
          g_ptr_array_set_size (a->changes, i + 1);
          keep_undone (self, a, changes_restore (self, a->changes, failed, gone));
          g_prefix_error (error, "class %s: ", klass->name);
          return NULL;
        }
    }
  arm_lease (a, lease_seconds);
  ma_agent_emit_event (self->agent, "THROTTLED", active_to_json (a));
  g_message ("throttled class %s (%s) on %u cgroups for %" G_GINT64_FORMAT " s", a->klass,
             a->policy, a->changes->len, lease_seconds);
  return a;
}

void
ma_throttle_release_all (MaThrottle *self, const char *reason)
{
  g_autoptr(GList) values = NULL;

  if (self == NULL)
    return;
  values = g_hash_table_get_values (self->active);
  for (GList *l = values; l != NULL; l = l->next)
    release_active (self, l->data, reason, NULL);
}

guint
ma_throttle_active_count (MaThrottle *self)
{
  return self != NULL ? g_hash_table_size (self->active) : 0;
}

MaThrottle *
ma_throttle_new (MaAgent *agent, GError **error)
{
  g_autoptr(MaThrottle) self = g_new0 (MaThrottle, 1);

  self->agent = agent;
  self->classes = g_ptr_array_new_with_free_func ((GDestroyNotify) ma_throttle_class_free);
  self->active = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify) active_free);
  self->root = ma_throttle_find_cgroup_root (ma_agent_get_config (agent));
  self->journal_path = g_build_filename (ma_agent_get_state_dir (agent), MA_THROTTLE_JOURNAL,
                                         NULL);
  /* the journal is replayed even when the configuration is now invalid */
  journal_replay (self);
  if (!load_config (self, ma_agent_get_config (agent), error))
    return NULL;
  return g_steal_pointer (&self);
}

void
ma_throttle_free (MaThrottle *self)
{
  if (self == NULL)
    return;
  g_hash_table_unref (self->active);
  g_ptr_array_unref (self->classes);
  g_strfreev (self->protected_units);
  g_free (self->root);
  g_free (self->journal_path);
  g_clear_error (&self->config_error);
  g_free (self);
}

/* ---- commands ---- */

typedef struct
{
  MaThrottle *self;
  MaCall *call;
  gint64 lease;
  char *operation;
  char *klass;      /* the class named, or NULL for `auto` */
  guint top;
  guint generation; /* MaThrottle.generation when the command began */
  MaDirtySample *sample; /* auto: the measurement */
} ThrottleCall;

static void
throttle_call_free (ThrottleCall *tc)
{
  ma_call_unref (tc->call);
  g_free (tc->operation);
  g_free (tc->klass);
  g_clear_pointer (&tc->sample, ma_dirty_sample_free);
  g_free (tc);
}

/* Whether every throttle was released for good (stop, resume) since the command began: then
 * it applies nothing (it is answered with why; stage says what it was doing meanwhile). */
static gboolean
throttle_call_abandoned (ThrottleCall *tc, const char *stage)
{
  if (tc->generation == tc->self->generation)
    return FALSE;
  ma_call_return_new_error (tc->call, MA_ERROR_GENERIC,
                            "nothing throttled: %s while %s, and every throttle was released "
                            "then", tc->self->abandoned_why, stage);
  throttle_call_free (tc);
  return TRUE;
}

static gboolean
get_lease (MaThrottle *self, JsonObject *args, gint64 *lease, GError **error)
{
  *lease = self->default_lease;
  if (!ma_json_get_int (args, "lease_seconds", lease, error))
    return FALSE;
  if (*lease < 1 || *lease > MA_THROTTLE_MAX_LEASE_SECONDS)
    {
      g_set_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT,
                   "Parameter 'lease_seconds' must be from 1 to %d", MA_THROTTLE_MAX_LEASE_SECONDS);
      return FALSE;
    }
  return TRUE;
}

static JsonObject *
class_report (ActiveThrottle *a, gboolean renewed, JsonArray *missing)
{
  JsonNode *node = active_to_json (a);
  JsonObject *o = json_object_ref (json_node_get_object (node));

  json_node_unref (node);
  json_object_set_boolean_member (o, "renewed", renewed);
  if (missing != NULL && json_array_get_length (missing) > 0)
    json_object_set_array_member (o, "missing", json_array_ref (missing));
  return o;
}

/* The first class (configuration order) whose cgroups contain this process's cgroup. */
static MaThrottleTargets *
class_of_cgroup (GPtrArray *resolved, const char *cgroup)
{
  g_autofree char *rel = ma_throttle_rel_normalize (cgroup);

  for (guint i = 0; i < resolved->len; i++)
    {
      MaThrottleTargets *targets = resolved->pdata[i];
      for (guint t = 0; t < targets->targets->len; t++)
        if (ma_throttle_rel_contains (targets->targets->pdata[t], rel))
          return targets;
    }
  return NULL;
}

static void
throttle_auto_apply (ThrottleCall *tc, GPtrArray *resolved)
{
  MaThrottle *self = tc->self;
  MaDirtySample *sample = tc->sample;
  g_autoptr(GHashTable) done = g_hash_table_new (g_str_hash, g_str_equal);
  JsonObject *ret = json_object_new ();
  JsonArray *throttled = json_array_new ();
  JsonArray *skipped = json_array_new ();
  JsonArray *errors = json_array_new ();

  for (guint i = 0; i < sample->processes->len && i < tc->top; i++)
    {
      MaDirtyProcess *p = sample->processes->pdata[i];
      MaThrottleTargets *targets = p->cgroup != NULL ? class_of_cgroup (resolved, p->cgroup)
                                                     : NULL;
      MaThrottleClass *klass = targets != NULL ? find_class (self, targets->klass) : NULL;
      g_autoptr(GError) local = NULL;
      g_autoptr(JsonArray) missing = json_array_new ();
      ActiveThrottle *a;
      gboolean renewed = FALSE;

      if (p->dirty_bytes == 0)
        break;
      if (klass == NULL)
        {
          JsonObject *s = json_object_new ();
          g_autofree char *comm = ma_json_safe_string (p->comm, -1, NULL);
          json_object_set_int_member (s, "pid", p->pid);
          json_object_set_string_member (s, "comm", comm);
          json_object_set_double_member (s, "dirty-mib-per-s", p->dirty_mib_per_s);
          json_object_set_string_member (s, "reason", "not in a throttle class");
          json_array_add_object_element (skipped, s);
          continue;
        }
      if (g_hash_table_contains (done, klass->name))
        continue;
      g_hash_table_add (done, klass->name);
      a = throttle_class (self, klass, targets, tc->lease, tc->operation, &renewed, missing,
                          &local);
      if (a == NULL)
        {
          JsonObject *e = json_object_new ();
          json_object_set_string_member (e, "class", klass->name);
          json_object_set_string_member (e, "error", local->message);
          json_array_add_object_element (errors, e);
          continue;
        }
      json_array_add_object_element (throttled, class_report (a, renewed, missing));
    }
  json_object_set_array_member (ret, "throttled", throttled);
  json_object_set_array_member (ret, "skipped", skipped);
  json_object_set_array_member (ret, "errors", errors);
  json_object_set_member (ret, "dirty-rate", ma_dirty_sample_to_json (sample, tc->top));
  if (tc->operation != NULL)
    ma_agent_set_last_operation (self->agent, "throttle", tc->operation,
                                 json_array_get_length (throttled) > 0 ? "throttled" : "none");
  ma_call_return (tc->call, ma_json_new_object_node (ret));
}

/* One named class: renewed at once when active, else applied to what resolved holds. */
static void
throttle_named_apply (ThrottleCall *tc, MaThrottleTargets *resolved)
{
  MaThrottle *self = tc->self;
  MaThrottleClass *klass = find_class (self, tc->klass);
  g_autoptr(JsonArray) missing = json_array_new ();
  GError *error = NULL;
  gboolean renewed = FALSE;
  ActiveThrottle *a;
  JsonObject *ret;
  JsonArray *throttled;

  a = throttle_class (self, klass, resolved, tc->lease, tc->operation, &renewed, missing, &error);
  if (a == NULL)
    {
      ma_call_return_error (tc->call, error);
      return;
    }
  if (tc->operation != NULL)
    ma_agent_set_last_operation (self->agent, "throttle", tc->operation, "throttled");
  ret = json_object_new ();
  throttled = json_array_new ();
  json_array_add_object_element (throttled, class_report (a, renewed, missing));
  json_object_set_array_member (ret, "throttled", throttled);
  ma_call_return (tc->call, ma_json_new_object_node (ret));
}

static void
on_resolved (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ThrottleCall *tc = user_data;
  g_autoptr(GPtrArray) resolved = ma_throttle_resolve_finish (result);

  if (throttle_call_abandoned (tc, "the throttle classes were looked up"))
    return;
  if (tc->klass != NULL)
    throttle_named_apply (tc, resolved->pdata[0]);
  else
    throttle_auto_apply (tc, resolved);
  throttle_call_free (tc);
}

/* klass: one class, or NULL for every configured class; on_resolved applies the command. */
static void
resolve_async (MaThrottle *self, MaThrottleClass *klass, ThrottleCall *tc)
{
  g_autoptr(GPtrArray) classes = g_ptr_array_new ();

  for (guint i = 0; i < self->classes->len; i++)
    if (klass == NULL || self->classes->pdata[i] == klass)
      g_ptr_array_add (classes, self->classes->pdata[i]);
  ma_throttle_resolve_async (self->root, self->protected_units, classes, on_resolved, tc);
}

static void
on_auto_sampled (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ThrottleCall *tc = user_data;
  g_autoptr(GError) error = NULL;

  tc->sample = ma_dirty_sample_finish (result, &error);
  if (tc->sample == NULL)
    {
      ma_call_return_error (tc->call, g_steal_pointer (&error));
      throttle_call_free (tc);
      return;
    }
  if (throttle_call_abandoned (tc, "the dirty rate was measured"))
    return;
  resolve_async (tc->self, NULL, tc);
}

static void
cmd_throttle (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "class", "lease_seconds", "operation", "seconds", "top",
                                         NULL };
  MaThrottle *self = *(MaThrottle **) user_data;
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  const char *name = NULL, *operation = NULL;
  gint64 lease = 0, top = MA_THROTTLE_AUTO_DEFAULT_TOP;
  double seconds = MA_DIRTY_DEFAULT_SECONDS;
  MaThrottleClass *klass;
  ThrottleCall *tc;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (self == NULL)
    {
      ma_call_return_new_error (call, MA_ERROR_UNSUPPORTED,
                                "throttling is unavailable: the [throttle] configuration is "
                                "invalid (see the agent log)");
      return;
    }
  /* its release has run already: what it applied now would stay */
  if (ma_agent_is_shutting_down (self->agent))
    {
      ma_call_return_new_error (call, MA_ERROR_BUSY, "nothing throttled: the agent is stopping");
      return;
    }
  if (!ma_json_require_string (args, "class", &name, &error)
      || !ma_json_get_string (args, "operation", &operation, &error)
      || !ma_json_get_double (args, "seconds", &seconds, &error)
      || !ma_json_get_int (args, "top", &top, &error) || !get_lease (self, args, &lease, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (g_str_equal (name, "auto")
      && (!(seconds >= MA_DIRTY_MIN_SECONDS && seconds <= MA_DIRTY_MAX_SECONDS) || top < 1
          || top > MA_DIRTY_MAX_TOP))
    {
      ma_call_return_new_error (call, MA_ERROR_INVALID_ARGUMENT,
                                "Parameters 'seconds' (%.1f to %.0f) and 'top' (1 to %d) "
                                "are out of range", MA_DIRTY_MIN_SECONDS, MA_DIRTY_MAX_SECONDS,
                                MA_DIRTY_MAX_TOP);
      return;
    }
  klass = g_str_equal (name, "auto") ? NULL : find_class (self, name);
  if (!g_str_equal (name, "auto") && klass == NULL)
    {
      ma_call_return_new_error (call, MA_ERROR_NOT_FOUND,
                                "no throttle class '%s' is configured ([throttle:%s])", name,
                                name);
      return;
    }
  tc = g_new0 (ThrottleCall, 1);
  tc->self = self;
  tc->call = ma_call_ref (call);
  tc->lease = lease;
  tc->operation = g_strdup (operation);
  tc->top = (guint) top;
  tc->generation = self->generation;
  if (klass == NULL)
    {
      g_message ("throttle auto: measuring the dirty rate for %.1f s", seconds);
      ma_dirty_sample_async (seconds, NULL, on_auto_sampled, tc);
      return;
    }
  tc->klass = g_strdup (klass->name);
  /* an active class is renewed without looking at the cgroup tree */
  if (g_hash_table_contains (self->active, klass->name))
    {
      throttle_named_apply (tc, NULL);
      throttle_call_free (tc);
      return;
    }
  resolve_async (self, klass, tc);
}

static void
cmd_unthrottle (MaCall *call, gpointer user_data)
{
  static const char *const allowed[] = { "class", "operation", NULL };
  MaThrottle *self = *(MaThrottle **) user_data;
  JsonObject *args = ma_call_get_arguments (call);
  GError *error = NULL;
  const char *name = NULL, *operation = NULL;
  JsonArray *released;
  JsonObject *ret;
  g_autoptr(GList) values = NULL;

  if (!ma_call_check_arguments (call, allowed))
    return;
  if (self == NULL)
    {
      ma_call_return_new_error (call, MA_ERROR_UNSUPPORTED,
                                "throttling is unavailable: the [throttle] configuration is "
                                "invalid (see the agent log)");
      return;
    }
  if (!ma_json_get_string (args, "class", &name, &error)
      || !ma_json_get_string (args, "operation", &operation, &error))
    {
      ma_call_return_error (call, error);
      return;
    }
  if (name != NULL && !g_str_equal (name, "all") && find_class (self, name) == NULL)
    {
      ma_call_return_new_error (call, MA_ERROR_NOT_FOUND, "no throttle class '%s' is configured",
                                name);
      return;
    }
  released = json_array_new ();
  values = g_hash_table_get_values (self->active);
  for (GList *l = values; l != NULL; l = l->next)
    {
      ActiveThrottle *a = l->data;
      JsonNode *report;

      if (name != NULL && !g_str_equal (name, "all") && !g_str_equal (a->klass, name))
        continue;
      report = active_to_json (a);
      json_object_remove_member (json_node_get_object (report), "lease-seconds-left");
      json_array_add_element (released, report);
      release_active (self, a, "unthrottle", json_node_get_object (report));
    }
  if (operation != NULL)
    ma_agent_set_last_operation (self->agent, "unthrottle", operation, "released");
  ret = json_object_new ();
  json_object_set_array_member (ret, "released", released);
  json_object_set_int_member (ret, "still-throttled", g_hash_table_size (self->active));
  ma_call_return (call, ma_json_new_object_node (ret));
}

static void
on_agent_shutdown (MaAgent *agent, gpointer user_data)
{
  MaThrottle **slot = user_data;

  /* a stopping agent leaves nothing throttled behind */
  if (*slot != NULL)
    {
      (*slot)->generation++;
      (*slot)->abandoned_why = "the agent began to stop";
    }
  ma_throttle_release_all (*slot, "agent-stopping");
}

static void
on_guest_resumed (MaAgent *agent, const char *operation, gpointer user_data)
{
  MaThrottle **slot = user_data;

  /* on the destination the migration is over: nothing needs slowing any more */
  if (*slot != NULL)
    {
      (*slot)->generation++;
      (*slot)->abandoned_why = "the guest resumed on the destination";
    }
  ma_throttle_release_all (*slot, "resumed");
}

static void
throttle_slot_free (MaThrottle **slot)
{
  g_clear_pointer (slot, ma_throttle_free);
  g_free (slot);
}

static const MaCommandSpec throttle_commands[] = {
  { "throttle", cmd_throttle,
    "slow a configured class (or 'auto': the top writers' classes) for a lease" },
  { "unthrottle", cmd_unthrottle, "undo throttles exactly (one class or all)" },
  { NULL }
};

static const char *const throttle_capabilities[] = { "throttle", NULL };

/* the state is a slot: NULL when the configuration is invalid (the commands say why) */
static const MaModuleClass throttle_module = {
  .name = "throttle",
  .commands = throttle_commands,
  .capabilities = throttle_capabilities,
  .shutdown = on_agent_shutdown,
  .resumed = on_guest_resumed,
  .free = (GDestroyNotify) throttle_slot_free,
};

gboolean
ma_throttle_register (MaAgent *agent, GError **error)
{
  MaThrottle **slot = g_new0 (MaThrottle *, 1);
  g_autoptr(GError) config_error = NULL;

  *slot = ma_throttle_new (agent, &config_error);
  if (*slot == NULL)
    g_warning ("throttling disabled: %s", config_error->message);
  ma_agent_add_module (agent, &throttle_module, slot);
  return TRUE;
}
