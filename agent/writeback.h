/* writeback.h — how much a freeze will have to flush: dirty and writeback bytes (system-wide
 * from meminfo, per device from the bdi stats when debugfs has them), recent write throughput. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Below this measured rate the estimate assumes this rate (an idle disk is not a slow disk). */
#define MA_WRITEBACK_ASSUMED_BYTES_PER_SECOND (200.0 * 1024 * 1024)
/* Throughput needs two samples at least this far apart… */
#define MA_WRITEBACK_MIN_INTERVAL_US (100 * 1000)
/* …and a remembered sample older than this is not "recent". */
#define MA_WRITEBACK_MAX_INTERVAL_US (60 * G_USEC_PER_SEC)

typedef struct _MaWritebackSample MaWritebackSample;

/* Read meminfo, /sys/block/STAR/stat and debugfs bdi stats now (blocking, small files). */
MaWritebackSample *ma_writeback_sample_new (void);
void ma_writeback_sample_free (MaWritebackSample *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaWritebackSample, ma_writeback_sample_free)

/* The earlier sample to measure against: the one remembered from a previous call when it is
 * recent, else `start`; sleeps (in the calling worker thread) until MIN_INTERVAL has passed
 * since it. Remembers `now` for the next call. Returns the report object. */
JsonNode *ma_writeback_report (MaWritebackSample *start, GCancellable *cancellable);

/* {"dirty_bytes","writeback_bytes","estimated_sync_seconds",...} pieces used by the verdict. */
double ma_writeback_report_get_sync_seconds (JsonNode *report);

G_END_DECLS
