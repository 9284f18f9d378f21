/* statbatch.c — statx calls in batches: a whole batch in one io_uring round trip, or one call
 * at a time where the kernel refuses io_uring (old, disabled, filtered). */
#include "statbatch.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A /proc scan makes one statx per fd (the open mode, from the link) and one more per fd it
 * resolves; system calls are most of its cost. Through an io_uring a whole batch is one
 * system call. Where the kernel refuses one, each runs on its own; MA_PROC_SCAN_NO_URING=1
 * asks for that too (the tests run both). */

void
ma_stat_batch_clear (MaStatBatch *b)
{
  if (b->sqe_map != NULL && b->sqe_map != MAP_FAILED)
    munmap (b->sqe_map, b->sqe_map_size);
  if (b->cq_map != NULL && b->cq_map != MAP_FAILED && b->cq_map != b->sq_map)
    munmap (b->cq_map, b->cq_map_size);
  if (b->sq_map != NULL && b->sq_map != MAP_FAILED)
    munmap (b->sq_map, b->sq_map_size);
  if (b->ring >= 0)
    close (b->ring);
  b->sq_map = b->cq_map = b->sqe_map = NULL;
  b->ring = -1;
}

void
ma_stat_batch_init (MaStatBatch *b)
{
  struct io_uring_params p = { 0 };
  char *sq, *cq;

  memset (b, 0, sizeof *b);
  b->ring = -1;
  if (g_strcmp0 (g_getenv ("MA_PROC_SCAN_NO_URING"), "1") == 0)
    return;
  b->ring = (int) syscall (__NR_io_uring_setup, MA_STAT_BATCH_SIZE, &p);
  if (b->ring < 0)
    return;
  b->sq_map_size = p.sq_off.array + p.sq_entries * sizeof (unsigned);
  b->cq_map_size = p.cq_off.cqes + p.cq_entries * sizeof (struct io_uring_cqe);
  if (p.features & IORING_FEAT_SINGLE_MMAP)
    b->sq_map_size = b->cq_map_size = MAX (b->sq_map_size, b->cq_map_size);
  b->sqe_map_size = p.sq_entries * sizeof (struct io_uring_sqe);
  b->sq_map = mmap (NULL, b->sq_map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    b->ring, IORING_OFF_SQ_RING);
  b->cq_map = (p.features & IORING_FEAT_SINGLE_MMAP)
                ? b->sq_map
                : mmap (NULL, b->cq_map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                        b->ring, IORING_OFF_CQ_RING);
  b->sqe_map = mmap (NULL, b->sqe_map_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                     b->ring, IORING_OFF_SQES);
  if (b->sq_map == MAP_FAILED || b->cq_map == MAP_FAILED || b->sqe_map == MAP_FAILED
      || p.sq_entries < MA_STAT_BATCH_SIZE || p.cq_entries < MA_STAT_BATCH_SIZE)
    {
      ma_stat_batch_clear (b);
      return;
    }
  sq = b->sq_map;
  cq = b->cq_map;
  b->sq_tail = (unsigned *) (gpointer) (sq + p.sq_off.tail);
  b->sq_mask = (unsigned *) (gpointer) (sq + p.sq_off.ring_mask);
  b->sq_array = (unsigned *) (gpointer) (sq + p.sq_off.array);
  b->cq_head = (unsigned *) (gpointer) (cq + p.cq_off.head);
  b->cq_tail = (unsigned *) (gpointer) (cq + p.cq_off.tail);
  b->cq_mask = (unsigned *) (gpointer) (cq + p.cq_off.ring_mask);
  b->cqes = (struct io_uring_cqe *) (gpointer) (cq + p.cq_off.cqes);
  b->sqes = b->sqe_map;
}

void
ma_stat_batch_add (MaStatBatch *b, int dirfd, const char *name, int flags, unsigned mask,
                struct statx *out, int *res)
{
  g_assert (b->n < MA_STAT_BATCH_SIZE);
  *res = G_MININT; /* not run yet */
  b->calls[b->n++] = (MaStatCall){ dirfd, name, flags, mask, out, res };
}

static void
stat_call_now (const MaStatCall *c)
{
  *c->res = statx (c->dirfd, c->name, c->flags, c->mask, c->out) == 0 ? 0 : -errno;
}

/* Run every call added since the last run; each one's res says how it went. */
void
ma_stat_batch_run (MaStatBatch *b)
{
  guint n = b->n, submitted = 0, completed = 0;
  unsigned tail;

  b->n = 0;
  if (b->ring < 0)
    {
      for (guint i = 0; i < n; i++)
        stat_call_now (&b->calls[i]);
      return;
    }
  tail = *b->sq_tail;
  for (guint i = 0; i < n; i++, tail++)
    {
      unsigned idx = tail & *b->sq_mask;
      struct io_uring_sqe *sqe = &b->sqes[idx];

      memset (sqe, 0, sizeof *sqe);
      sqe->opcode = IORING_OP_STATX;
      sqe->fd = b->calls[i].dirfd;
      sqe->addr = (guint64) (guintptr) b->calls[i].name;
      sqe->len = b->calls[i].mask;
      sqe->statx_flags = (guint32) b->calls[i].flags;
      sqe->off = (guint64) (guintptr) b->calls[i].out;
      sqe->user_data = i;
      b->sq_array[idx] = idx;
    }
  __atomic_store_n (b->sq_tail, tail, __ATOMIC_RELEASE);
  while (completed < n)
    {
      long ret = syscall (__NR_io_uring_enter, b->ring, n - submitted, n - completed,
                          IORING_ENTER_GETEVENTS, NULL, 0);
      unsigned head;

      if (ret < 0 && (errno == EINTR || errno == EAGAIN || errno == EBUSY))
        continue;
      if (ret < 0)
        {
          /* not expected with these arguments: the rest one by one, and no ring after */
          g_warning ("io_uring_enter: %s; resolving fds one at a time", g_strerror (errno));
          for (guint i = 0; i < n; i++)
            if (*b->calls[i].res == G_MININT)
              stat_call_now (&b->calls[i]);
          ma_stat_batch_clear (b);
          return;
        }
      submitted += (guint) ret;
      head = *b->cq_head;
      while (head != __atomic_load_n (b->cq_tail, __ATOMIC_ACQUIRE))
        {
          const struct io_uring_cqe *cqe = &b->cqes[head & *b->cq_mask];
          if (cqe->user_data < n)
            {
              *b->calls[cqe->user_data].res = cqe->res;
              completed++;
            }
          head++;
        }
      __atomic_store_n (b->cq_head, head, __ATOMIC_RELEASE);
    }
}
