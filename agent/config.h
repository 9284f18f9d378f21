/* config.h — the agent's configuration: agent.conf plus agent.conf.d/NAME.conf (GKeyFile),
 * merged in order, with typed accessors and the built-in defaults. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _MaConfig MaConfig;

/* path NULL = the default MA_SYSCONFDIR/agent.conf, which may be absent.
 * An explicitly named file must exist. Drop-ins come from PATH.d/ (agent.conf.d/). */
MaConfig *ma_config_load (const char *path, GError **error);
MaConfig *ma_config_new_from_data (const char *data, GError **error);
void ma_config_free (MaConfig *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaConfig, ma_config_free)

/* Typed getters: the default when the key is absent; an error when malformed. */
char *ma_config_get_string (MaConfig *self, const char *group, const char *key, const char *def);
char **ma_config_get_strv (MaConfig *self, const char *group, const char *key);
gboolean ma_config_get_int (MaConfig *self, const char *group, const char *key, gint64 def,
                            gint64 min, gint64 max, gint64 *out, GError **error);
/* The booleans a key file may spell (true/false, yes/no, 1/0, any case, blanks around): TRUE with
 * *out set, or FALSE for anything else. Shared by the configuration and the plugin manifests. */
gboolean ma_keyfile_parse_bool (const char *raw, gboolean *out);
gboolean ma_config_get_bool (MaConfig *self, const char *group, const char *key, gboolean def,
                             gboolean *out, GError **error);
GKeyFile *ma_config_get_keyfile (MaConfig *self);
/* Files that were read, in order. */
const char *const *ma_config_get_sources (MaConfig *self);

G_END_DECLS
