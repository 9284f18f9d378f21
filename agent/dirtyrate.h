/* dirtyrate.h — per-process dirty-page rates: soft-dirty tracking (clear_refs, pagemap bit 55)
 * where the kernel has it, a labelled proxy (minor faults, write_bytes) where it does not. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define MA_DIRTY_DEFAULT_SECONDS 1.0
#define MA_DIRTY_MIN_SECONDS 0.1
#define MA_DIRTY_MAX_SECONDS 60.0
#define MA_DIRTY_DEFAULT_TOP 10
#define MA_DIRTY_MAX_TOP 1000
/* pagemap entries read per pread (8 bytes each: 512 KiB per read). */
#define MA_DIRTY_PAGEMAP_CHUNK 65536

#define MA_PAGEMAP_SOFT_DIRTY (G_GUINT64_CONSTANT (1) << 55)
#define MA_PAGEMAP_SWAPPED (G_GUINT64_CONSTANT (1) << 62)
#define MA_PAGEMAP_PRESENT (G_GUINT64_CONSTANT (1) << 63)

typedef enum
{
  MA_DIRTY_METHOD_SOFT_DIRTY,
  MA_DIRTY_METHOD_PROXY,
} MaDirtyMethod;

const char *ma_dirty_method_to_string (MaDirtyMethod method);

/* ---- parsers (exposed for the unit tests) ---- */

/* One line of /proc/PID/maps. */
typedef struct
{
  guint64 start;
  guint64 end;
  gboolean readable;
  gboolean writable;
  gboolean shared; /* 's' rather than 'p' */
  guint64 inode;
  char path[256];  /* pathname or [heap]/[stack]/…, "" for anonymous; truncated */
} MaMapping;

gboolean ma_dirty_parse_maps_line (const char *line, MaMapping *out);
/* Whether the measurement reads pagemap for this mapping: writable private (anonymous or
 * copy-on-write file) and shared mappings; not device mappings nor [vsyscall]-like ones. */
gboolean ma_dirty_mapping_tracked (const MaMapping *mapping);
/* Entries with the soft-dirty bit that are present or swapped (a hole in a newly
 * created mapping reports soft-dirty without being a page). */
guint64 ma_dirty_count_pagemap (const guint64 *entries, gsize n);

/* The fields of /proc/PID/stat the measurement needs. */
typedef struct
{
  char comm[64];
  char state;
  guint64 flags;
  guint64 minflt;
  guint64 starttime;
  gint64 rss_pages;
} MaProcStat;

#define MA_PF_KTHREAD 0x00200000

gboolean ma_dirty_parse_stat (const char *text, MaProcStat *out);
/* write_bytes from /proc/PID/io. */
gboolean ma_dirty_parse_io_write_bytes (const char *text, guint64 *out);
/* The cgroup v2 path ("0::PATH" line) of /proc/PID/cgroup, or NULL. */
char *ma_dirty_parse_cgroup (const char *text);
/* The systemd unit a cgroup path belongs to (innermost .service/.scope/.socket…,
 * not a .slice), or NULL. */
char *ma_dirty_unit_from_cgroup (const char *cgroup);

/* Soft-dirty pages of one process now: maps, then pagemap in chunks for tracked mappings.
 * procfs is the /proc root (ma_path_procfs () in the agent; fixtures in tests). */
gboolean ma_dirty_count_process (const char *procfs, gint pid, guint64 *dirty_pages,
                                 guint64 *tracked_pages, GError **error);

/* Whether soft-dirty tracking works here: clears the agent's own bits, writes one of its
 * pages and checks bit 55 (and that an untouched page stayed clean). Blocking; cached
 * after the first call. *why says what failed when it returns FALSE. */
gboolean ma_dirty_soft_dirty_works (char **why);

/* ---- a measurement ---- */

typedef struct
{
  gint pid;
  char *comm;
  char *cgroup;          /* cgroup v2 path, or NULL */
  char *unit;            /* systemd unit, or NULL */
  guint64 rss_bytes;
  guint64 dirty_bytes;   /* soft-dirty pages × page size, or the proxy estimate */
  guint64 minor_faults;  /* delta over the interval */
  guint64 write_bytes;   /* delta over the interval (storage writes, page cache) */
  double dirty_mib_per_s;
} MaDirtyProcess;

typedef struct
{
  MaDirtyMethod method;
  char *method_note;       /* why the proxy, or what soft-dirty counts */
  double seconds;          /* the interval actually measured */
  GPtrArray *processes;    /* MaDirtyProcess*, highest rate first */
  double total_mib_per_s;  /* sum over every measured process */
  double page_cache_mib_per_s; /* /proc/vmstat nr_dirtied over the interval */
  guint scanned;
  guint kernel_threads;
  guint vanished;
  guint unreadable;
  double cost_ms;          /* CPU-side time spent clearing and reading */
} MaDirtySample;

void ma_dirty_sample_free (MaDirtySample *sample);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaDirtySample, ma_dirty_sample_free)

/* Measure for `seconds` without blocking the caller's main loop: the clearing and the reading
 * run in worker threads, the wait is a main-loop timeout. One measurement at a time per
 * process (clear_refs is global per target): a second one fails with MA_ERROR_BUSY. */
void ma_dirty_sample_async (double seconds, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data);
MaDirtySample *ma_dirty_sample_finish (GAsyncResult *result, GError **error);

/* The `dirty-rate` reply: the top `top` processes and the totals. */
JsonNode *ma_dirty_sample_to_json (MaDirtySample *sample, guint top);

typedef struct _MaAgent MaAgent;
/* An MaModuleRegisterFunc: the `dirty-rate` command and capability; never fails. */
gboolean ma_dirtyrate_register (MaAgent *agent, GError **error);

G_END_DECLS
