/* migrate-options.c — the options of `migctl migrate`: one table, parsed by the libvirt module
 * and listed by migctl's --help-all (from which the manual page is generated). */
#include "migrate-options.h"

#include <stdio.h>

#include "migctl-error.h"

#define MIGRATE_DEFAULT_LEASE_S 60
#define MIGRATE_DEFAULT_FREEZE_TIMEOUT_S 30
#define MIGRATE_DEFAULT_VALIDATION_TIMEOUT_S 180
#define MIGRATE_DEFAULT_PROGRESS_TIMEOUT_S 150 /* as KubeVirt's progressTimeout */

const char ma_migrate_description[] =
  "migctl [--connect SRC-URI] migrate DOMAIN DEST-URI [OPTIONS] migrates DOMAIN live to\n"
  "DEST-URI with the guest's agent: preflight (the agent's prepare: snapshot, blockers\n"
  "verdict, plugin checks; qemu-ga ping), application quiesce under a lease renewed while the\n"
  "migration runs, an optional late filesystem freeze (once the first pass is copied; thawed\n"
  "on the destination), libvirt's migration with its progress and a convergence controller,\n"
  "then thaw and release on the destination, the agent's own RESUMED and its validation,\n"
  "and a timeline. Every way out (a refused or failed migration, a lost connection, Ctrl-C or\n"
  "SIGTERM) leaves the guest running, thawed, unthrottled and released; a killed migctl is\n"
  "covered by the agent's leases and freeze watchdog.\n\n"
  "--converge POLICY: 'agent' (the default) throttles, step by step, only the throttle\n"
  "classes of the guest's configuration that hold its top memory writers, then escalates\n"
  "per --postcopy / --suspend-after, else aborts after --progress-timeout without progress;\n"
  "'none' only aborts after --progress-timeout.\n\n"
  "Exit status: 0 migrated and validated, 3 the destination's validation failed, 9 libvirt\n"
  "connection failed or lost, 10 the preflight verdict is blocked, 11 the migration was\n"
  "refused, failed or did not converge (the guest runs on the source), 12 interrupted,\n"
  "13 the guest has no agent.";

void
ma_migrate_options_init (MaMigrateOptions *o)
{
  *o = (MaMigrateOptions) { 0 };
  o->lease_s = MIGRATE_DEFAULT_LEASE_S;
  o->freeze_timeout_s = MIGRATE_DEFAULT_FREEZE_TIMEOUT_S;
  o->validation_timeout_s = MIGRATE_DEFAULT_VALIDATION_TIMEOUT_S;
  o->progress_timeout_s = MIGRATE_DEFAULT_PROGRESS_TIMEOUT_S;
}

static void
entries_for (MaMigrateOptions *o, GOptionEntry *out, gsize n_out)
{
  const GOptionEntry entries[] = {
    { "migrateuri", 0, 0, G_OPTION_ARG_STRING, &o->migrateuri,
      "migrate: migration URI (as virsh migrate)", "URI" },
    { "listen-address", 0, 0, G_OPTION_ARG_STRING, &o->listen_address,
      "migrate: address the destination listens on for the migration", "ADDR" },
    { "p2p", 0, 0, G_OPTION_ARG_NONE, &o->p2p, "migrate: peer-to-peer migration", NULL },
    { "unsafe", 0, 0, G_OPTION_ARG_NONE, &o->unsafe, "migrate: force it even if unsafe", NULL },
    { "copy-storage-all", 0, 0, G_OPTION_ARG_NONE, &o->copy_storage_all,
      "migrate: copy the non-shared disks", NULL },
    { "persistent", 0, 0, G_OPTION_ARG_NONE, &o->persistent,
      "migrate: persist the domain on the destination", NULL },
    { "undefinesource", 0, 0, G_OPTION_ARG_NONE, &o->undefinesource,
      "migrate: undefine the domain on the source", NULL },
    { "bandwidth", 0, 0, G_OPTION_ARG_INT, &o->bandwidth_mib,
      "migrate: bandwidth limit in MiB/s", "MiB" },
    { "downtime-limit", 0, 0, G_OPTION_ARG_INT, &o->downtime_limit_ms,
      "migrate: maximum tolerable downtime in milliseconds", "MS" },
    { "postcopy", 0, 0, G_OPTION_ARG_NONE, &o->postcopy,
      "migrate: allow the controller to switch to post-copy", NULL },
    { "suspend-after", 0, 0, G_OPTION_ARG_DOUBLE, &o->suspend_after_s,
      "migrate: allow the controller to pause the guest after S seconds without convergence",
      "S" },
    { "converge", 0, 0, G_OPTION_ARG_STRING, &o->converge,
      "migrate: convergence policy, agent (default) or none", "POLICY" },
    { "progress-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &o->progress_timeout_s,
      "migrate: abort after S seconds without progress (150)", "S" },
    { "quiesce", 0, 0, G_OPTION_ARG_NONE, &o->quiesce,
      "migrate: quiesce the applications (default when the guest has plugins)", NULL },
    { "no-quiesce", 0, 0, G_OPTION_ARG_NONE, &o->no_quiesce, "migrate: never quiesce", NULL },
    { "lease", 0, 0, G_OPTION_ARG_INT, &o->lease_s,
      "migrate: quiesce lease in seconds, renewed every third (60)", "S" },
    { "freeze", 0, 0, G_OPTION_ARG_NONE, &o->freeze,
      "migrate: freeze the filesystems through qemu-ga once the first pass is copied", NULL },
    { "freeze-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &o->freeze_timeout_s,
      "migrate: seconds a freeze may take before the agent's blockers are shown (30)", "S" },
    { "freeze-retries", 0, 0, G_OPTION_ARG_INT, &o->freeze_retries,
      "migrate: freezes tried again after a timeout before going on unfrozen (0)", "N" },
    { "validation-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &o->validation_timeout_s,
      "migrate: seconds to wait for the destination's validation (180)", "S" },
    { "operation", 0, 0, G_OPTION_ARG_STRING, &o->operation,
      "migrate: operation id (default migrate-DOMAIN-TIME-RANDOM)", "ID" },
    { "force", 0, 0, G_OPTION_ARG_NONE, &o->force,
      "migrate: go on despite a blocked preflight verdict", NULL },
    { "no-agent", 0, 0, G_OPTION_ARG_NONE, &o->no_agent,
      "migrate: migrate a guest without the agent plainly, with a warning", NULL },
    { "timeline", 0, 0, G_OPTION_ARG_FILENAME, &o->timeline_path,
      "migrate: write the timeline: FILE.svg a picture, else JSON", "FILE" },
    { NULL }
  };

  g_assert (n_out >= G_N_ELEMENTS (entries));
  memcpy (out, entries, sizeof entries);
}

#define MIGRATE_MAX_ENTRIES 32

GOptionGroup *
ma_migrate_options_group (MaMigrateOptions *o)
{
  GOptionEntry entries[MIGRATE_MAX_ENTRIES];
  GOptionGroup *group = g_option_group_new ("migrate", "Options of migrate (libvirt module):",
                                            "Show the options of migrate", NULL, NULL);

  entries_for (o, entries, G_N_ELEMENTS (entries));
  g_option_group_add_entries (group, entries);
  return group;
}

int
ma_migrate_options_parse (MaMigrateOptions *o, int argc, char **argv)
{
  g_autoptr(GOptionContext) context = g_option_context_new (NULL);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) rest = NULL;
  GOptionEntry entries[MIGRATE_MAX_ENTRIES];
  const GOptionEntry common[] = {
    { "json", 'j', 0, G_OPTION_ARG_NONE, &o->json, "One JSON document on stdout", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, "DOMAIN DEST-URI" },
    { NULL }
  };

  entries_for (o, entries, G_N_ELEMENTS (entries));
  g_option_context_set_summary (context, "migctl migrate: the whole live migration through "
                                         "libvirt, with the guest's agent.");
  g_option_context_set_description (context, ma_migrate_description);
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_add_main_entries (context, common, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("migctl migrate: %s\n", error->message);
      return MIGCTL_EXIT_USAGE;
    }
  if (rest == NULL || g_strv_length (rest) != 2)
    {
      g_autofree char *help = g_option_context_get_help (context, TRUE, NULL);
      g_printerr ("%s", help);
      return MIGCTL_EXIT_USAGE;
    }
  if ((o->quiesce && o->no_quiesce) || o->lease_s < 5 || o->lease_s > 3600
      || o->freeze_timeout_s <= 0 || o->freeze_retries < 0 || o->validation_timeout_s <= 0
      || o->progress_timeout_s <= 0 || o->suspend_after_s < 0 || o->bandwidth_mib < 0
      || o->downtime_limit_ms < 0)
    {
      g_printerr ("migctl migrate: conflicting or out-of-range options (--lease 5-3600, "
                  "timeouts > 0, counts >= 0)\n");
      return MIGCTL_EXIT_USAGE;
    }
  if (o->converge == NULL)
    o->converge = g_strdup ("agent");
  if (g_strcmp0 (o->converge, "agent") != 0 && g_strcmp0 (o->converge, "none") != 0)
    {
      g_printerr ("migctl migrate: --converge is agent or none, not '%s'\n", o->converge);
      return MIGCTL_EXIT_USAGE;
    }
  o->domain_name = g_strdup (rest[0]);
  o->dest_uri = g_strdup (rest[1]);
  if (o->operation == NULL)
    o->operation = g_strdup_printf ("migrate-%.64s-%" G_GINT64_FORMAT "-%04x", o->domain_name,
                                    g_get_real_time () / G_USEC_PER_SEC,
                                    (guint) g_random_int_range (0, 0x10000));
  return MIGCTL_EXIT_OK;
}

void
ma_migrate_options_clear (MaMigrateOptions *o)
{
  g_free (o->domain_name);
  g_free (o->dest_uri);
  g_free (o->migrateuri);
  g_free (o->listen_address);
  g_free (o->converge);
  g_free (o->timeline_path);
  g_free (o->operation);
}
