/* migrate-options.h — the options of `migctl migrate`, one table for parsing (in the libvirt
 * module) and for migctl's --help-all (and so its manual page), which has no libvirt. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  char *domain_name, *dest_uri;
  /* what libvirt does, named as virsh names it */
  char *migrateuri, *listen_address;
  gboolean p2p, unsafe, copy_storage_all, persistent, undefinesource, postcopy;
  int bandwidth_mib, downtime_limit_ms;
  /* the agent's additions */
  gboolean quiesce, no_quiesce, freeze, force, no_agent, json;
  int lease_s, freeze_retries;
  double freeze_timeout_s, validation_timeout_s, progress_timeout_s, suspend_after_s;
  char *converge, *timeline_path, *operation;
} MaMigrateOptions;

extern const char ma_migrate_description[];

/* Defaults set; the group points into o (which must outlive it). */
void ma_migrate_options_init (MaMigrateOptions *o);
GOptionGroup *ma_migrate_options_group (MaMigrateOptions *o);
/* argv[0] is "migrate". Returns 0, or the exit status after printing why. */
int ma_migrate_options_parse (MaMigrateOptions *o, int argc, char **argv);
void ma_migrate_options_clear (MaMigrateOptions *o);

G_END_DECLS
