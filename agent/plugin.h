/* plugin.h — quiesce plugins as described by their manifests: loading and validating
 * NAME.plugin files, the search path with overrides and masks, ownership checks, ordering. */
#pragma once

#include <json-glib/json-glib.h>

#include "config.h"

G_BEGIN_DECLS

#define MA_PLUGIN_SUFFIX ".plugin"
#define MA_PLUGIN_DEFAULT_ORDER 50
#define MA_PLUGIN_DEFAULT_TIMEOUT_SECONDS 30.0
#define MA_PLUGIN_MAX_TIMEOUT_SECONDS 3600.0
#define MA_PLUGIN_MAX_NAME 64
#define MA_PLUGIN_MAX_PLUGINS 256
#define MA_PLUGIN_MAX_MANIFEST_BYTES (64 * 1024)

typedef enum
{
  MA_PLUGIN_PHASE_CHECK,
  MA_PLUGIN_PHASE_QUIESCE,
  MA_PLUGIN_PHASE_THAW,
  MA_PLUGIN_PHASE_VALIDATE,
  MA_PLUGIN_PHASE_RENEW, /* optional: declared in Phases= only, never a default */
  MA_PLUGIN_N_PHASES,
} MaPluginPhase;

typedef enum
{
  MA_PLUGIN_ONESHOT,
  MA_PLUGIN_SESSION,
} MaPluginProtocol;

typedef enum
{
  MA_PLUGIN_USABLE,  /* loaded, may run */
  MA_PLUGIN_MASKED,  /* an empty manifest or Enabled=false */
  MA_PLUGIN_REFUSED, /* invalid, insecure, or part of an ordering cycle: see reason */
} MaPluginStatus;

typedef struct
{
  gint refcount;
  char *name; /* the file name without .plugin: the plugin's identity */
  char *description;
  char *manifest;  /* path of the manifest that won */
  char **argv;     /* Exec, argv[0] made absolute */
  MaPluginProtocol protocol;
  gint64 order;
  char **after;
  char **before;
  guint timeout_ms[MA_PLUGIN_N_PHASES];
  guint phases; /* bit (1 << MaPluginPhase) per phase the plugin implements */
  gboolean fsfreeze_hook;
  char *user;
  char **environment; /* KEY=VALUE from EnvironmentFile= */
  char *environment_file;
  MaPluginStatus status;
  char *reason; /* why it is masked or refused */
} MaPlugin;

MaPlugin *ma_plugin_ref (MaPlugin *plugin);
void ma_plugin_unref (MaPlugin *plugin);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaPlugin, ma_plugin_unref)

const char *ma_plugin_phase_to_string (MaPluginPhase phase);
gboolean ma_plugin_phase_from_string (const char *name, MaPluginPhase *out);
gboolean ma_plugin_has_phase (MaPlugin *plugin, MaPluginPhase phase);
/* The word passed to a oneshot plugin: the phase, or freeze/thaw for Hook=fsfreeze. */
const char *ma_plugin_phase_argument (MaPlugin *plugin, MaPluginPhase phase);

/* Whether a file may be run or read as plugin configuration: a regular file owned by
 * root (or by the agent's own uid when the agent is not root) and not writable by group
 * or others. The reason is set on refusal. */
gboolean ma_plugin_check_file (const char *path, gboolean executable, GError **error);

/* Load one manifest. Never NULL for a readable name: problems give a REFUSED plugin. */
MaPlugin *ma_plugin_load (const char *path);

/* ---- the set of plugins found on the search path ---- */

typedef struct _MaPluginSet MaPluginSet;

/* The search path: [plugins] dirs= when set, else MA_PKGLIBDIR/plugins.d then
 * MA_SYSCONFDIR/plugins.d. */
char **ma_plugin_search_path (MaConfig *config);

/* Scan dirs in order (a later same-named file overrides an earlier one), validate,
 * and order the usable plugins. Missing directories are skipped. */
MaPluginSet *ma_plugin_set_load (const char *const *dirs);
MaPluginSet *ma_plugin_set_ref (MaPluginSet *self);
void ma_plugin_set_unref (MaPluginSet *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaPluginSet, ma_plugin_set_unref)

/* Every plugin found, usable or not, sorted by name. */
GPtrArray *ma_plugin_set_get_all (MaPluginSet *self);
/* Usable plugins in a valid quiesce order (each after everything it must follow). */
GPtrArray *ma_plugin_set_get_ordered (MaPluginSet *self);
MaPlugin *ma_plugin_set_lookup (MaPluginSet *self, const char *name);
/* Whether a must have quiesced before b starts (directly or through others). */
gboolean ma_plugin_set_precedes (MaPluginSet *self, MaPlugin *a, MaPlugin *b);
const char *const *ma_plugin_set_get_dirs (MaPluginSet *self);

/* {"name", "description", "manifest", "status", "reason", "protocol", "exec", ...} */
JsonObject *ma_plugin_to_json (MaPlugin *plugin);

G_END_DECLS
