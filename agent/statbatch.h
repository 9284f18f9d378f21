/* statbatch.h — statx calls in batches: a whole batch in one io_uring round trip, or one call
 * at a time where the kernel refuses io_uring (MA_PROC_SCAN_NO_URING=1 asks for that too). */
#pragma once

#include <glib.h>
#include <linux/io_uring.h>
#include <sys/stat.h>

G_BEGIN_DECLS

#define MA_STAT_BATCH_SIZE 256

typedef struct
{
  int dirfd;
  const char *name;
  int flags;
  unsigned mask;
  struct statx *out;
  int *res; /* 0 or -errno */
} MaStatCall;

typedef struct
{
  int ring; /* -1: one by one */
  void *sq_map, *cq_map, *sqe_map;
  gsize sq_map_size, cq_map_size, sqe_map_size;
  unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe *sqes;
  struct io_uring_cqe *cqes;
  guint n;
  MaStatCall calls[MA_STAT_BATCH_SIZE];
} MaStatBatch;

void ma_stat_batch_init (MaStatBatch *b);
void ma_stat_batch_clear (MaStatBatch *b);
/* Queues statx (dirfd, name, flags, mask, out); *res is G_MININT until the batch runs, then 0
 * or -errno. name and out must stay valid until then. */
void ma_stat_batch_add (MaStatBatch *b, int dirfd, const char *name, int flags, unsigned mask,
                        struct statx *out, int *res);
/* Run every call added since the last run. */
void ma_stat_batch_run (MaStatBatch *b);

G_END_DECLS
