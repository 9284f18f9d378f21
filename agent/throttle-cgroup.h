/* throttle-cgroup.h — what the throttle writes and where: policies (cpu.max, freeze), cgroup v2
 * control files, and classes resolved to the cgroups that exist now (a blocking /proc walk). */
#pragma once

#include <gio/gio.h>

#include "config.h"

G_BEGIN_DECLS

#define MA_THROTTLE_CPU_MAX_DEFAULT_PERIOD 100000
#define MA_THROTTLE_CPU_MAX_MIN_QUOTA 1000
#define MA_THROTTLE_CPU_MAX_MAX_PERIOD 1000000

typedef enum
{
  MA_THROTTLE_POLICY_CPU_MAX,
  MA_THROTTLE_POLICY_FREEZE,
} MaThrottlePolicyKind;

typedef struct
{
  MaThrottlePolicyKind kind;
  gint64 quota;  /* µs per period (cpu.max) */
  gint64 period; /* µs (cpu.max) */
} MaThrottlePolicy;

/* "freeze", "cpu.max QUOTA" or "cpu.max QUOTA PERIOD" (µs). */
gboolean ma_throttle_parse_policy (const char *text, MaThrottlePolicy *out, GError **error);
/* What the policy writes: "cgroup.freeze" / "1", or "cpu.max" / "QUOTA PERIOD". */
const char *ma_throttle_policy_file (const MaThrottlePolicy *policy);
char *ma_throttle_policy_value (const MaThrottlePolicy *policy);
char *ma_throttle_policy_to_string (const MaThrottlePolicy *policy);

/* The cgroup2 root: [throttle] cgroup-root=, else ma_path_cgroupfs () when it is a cgroup2
 * hierarchy, else its unified/ subdirectory. */
char *ma_throttle_find_cgroup_root (MaConfig *config);

/* A control file of a cgroup directory: read (trailing newline removed), written. */
char *ma_throttle_cgroup_read (const char *dir, const char *file, GError **error);
gboolean ma_throttle_cgroup_write (const char *dir, const char *file, const char *value,
                                   GError **error);

/* "a//b/" → "a/b"; whether relative cgroup a is b or an ancestor of b (both normalised). */
char *ma_throttle_rel_normalize (const char *path);
gboolean ma_throttle_rel_contains (const char *a, const char *b);

/* A class of [throttle:NAME]: what to slow and how. */
typedef struct
{
  char *name;
  MaThrottlePolicy policy;
  char **cgroups; /* relative to the cgroup2 root */
  char **units;
} MaThrottleClass;

void ma_throttle_class_free (MaThrottleClass *klass);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaThrottleClass, ma_throttle_class_free)

/* One class resolved against the cgroup tree as it is now. */
typedef struct
{
  char *klass;
  GPtrArray *targets; /* char*: relative cgroups of its cgroups= and units= that exist now */
  GPtrArray *why_not; /* char* or NULL, one per target: why it must not be touched */
  GPtrArray *missing; /* char*: its cgroups and units that do not exist now */
} MaThrottleTargets;

/* Blocking (a worker thread): a unit not under system.slice is found through /proc. Touches
 * nothing but its arguments, the cgroup tree and /proc. */
MaThrottleTargets *ma_throttle_resolve (const char *root, const char *klass, char **cgroups,
                                        char **units, char **protected_units);
void ma_throttle_targets_free (MaThrottleTargets *targets);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaThrottleTargets, ma_throttle_targets_free)

/* ma_throttle_resolve of each class (copied) in a worker thread; finish gives a GPtrArray of
 * MaThrottleTargets*, in the order of classes. */
void ma_throttle_resolve_async (const char *root, char **protected_units, GPtrArray *classes,
                                GAsyncReadyCallback callback, gpointer user_data);
GPtrArray *ma_throttle_resolve_finish (GAsyncResult *result);

G_END_DECLS
