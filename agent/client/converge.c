/* converge.c — the convergence controller's decisions: the guest's own throttle first (only
 * the classes its owner allowed), then post-copy or suspend when allowed, else abort. */
#include "converge.h"

struct _MaConverge
{
  MaConvergePolicy policy;
  double started, last_progress, last_action;
  guint64 best_remaining;
  guint64 iteration, iteration_start_remaining, previous_start_remaining;
  guint steps;
  gboolean throttle_exhausted, postcopy_done, suspend_done, abort_done;
};

MaConverge *
ma_converge_new (const MaConvergePolicy *policy, double now_s)
{
  MaConverge *self = g_new0 (MaConverge, 1);

  self->policy = *policy;
  if (self->policy.step_wait_s <= 0)
    self->policy.step_wait_s = MA_CONVERGE_DEFAULT_STEP_WAIT_S;
  self->started = self->last_progress = now_s;
  self->last_action = -G_MAXDOUBLE;
  self->best_remaining = G_MAXUINT64;
  return self;
}

void
ma_converge_free (MaConverge *self)
{
  g_free (self);
}

guint
ma_converge_steps (MaConverge *self)
{
  return self->steps;
}

void
ma_converge_took_step (MaConverge *self, double now_s)
{
  self->steps++;
  self->last_action = now_s;
}

void
ma_converge_throttle_exhausted (MaConverge *self)
{
  self->throttle_exhausted = TRUE;
}

void
ma_converge_action_failed (MaConverge *self, MaConvergeAction action)
{
  switch (action)
    {
    case MA_CONVERGE_THROTTLE:
      self->throttle_exhausted = TRUE;
      break;
    case MA_CONVERGE_POSTCOPY:
    case MA_CONVERGE_SUSPEND:
    case MA_CONVERGE_ABORT:
    case MA_CONVERGE_NOTHING:
    default:
      break;
    }
}

static void
set_why (char **why, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
set_why (char **why, const char *fmt, ...)
{
  va_list ap;

  if (why == NULL)
    return;
  va_start (ap, fmt);
  g_free (*why);
  *why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
}

MaConvergeAction
ma_converge_observe (MaConverge *self, double now_s, guint64 iteration, guint64 remaining,
                     guint64 dirty_rate, guint64 bandwidth, char **why)
{
  const double wait = self->policy.step_wait_s;
  double stalled;
  gboolean rate_too_high, passes_not_shrinking, not_converging;

  /* before the first pass (libvirt's setup, iteration 0) remaining reads 0: not a sample */
  if (iteration == 0)
    return MA_CONVERGE_NOTHING;
  if ((double) remaining < (double) self->best_remaining * MA_CONVERGE_PROGRESS_FRACTION)
    {
      self->best_remaining = remaining;
      self->last_progress = now_s;
    }
  stalled = now_s - self->last_progress;
  if (iteration > self->iteration)
    {
      /* what is left when a pass starts is what the previous pass let the guest dirty */
      self->previous_start_remaining = self->iteration_start_remaining;
      self->iteration_start_remaining = remaining;
      self->iteration = iteration;
    }
  if (!self->abort_done && stalled >= self->policy.progress_timeout_s)
    {
      self->abort_done = TRUE;
      set_why (why, "no progress for %.0f s (remaining never fell below %.1f MiB)", stalled,
               (double) self->best_remaining / 1048576.0);
      return MA_CONVERGE_ABORT;
    }
  /* the first pass copies everything once: judge from the second on */
  if (iteration < 2 || now_s - self->last_action < wait)
    return MA_CONVERGE_NOTHING;
  rate_too_high = bandwidth > 0 && (double) dirty_rate >= MA_CONVERGE_RATE_FRACTION * (double) bandwidth;
  passes_not_shrinking = iteration >= 3 && self->previous_start_remaining > 0
                         && (double) self->iteration_start_remaining
                              >= MA_CONVERGE_PASS_FRACTION * (double) self->previous_start_remaining;
  not_converging = rate_too_high || passes_not_shrinking || stalled >= wait;
  if (!not_converging)
    return MA_CONVERGE_NOTHING;
  if (self->policy.use_agent && !self->throttle_exhausted && self->steps < self->policy.max_steps)
    {
      self->steps++;
      self->last_action = now_s;
      if (rate_too_high)
        set_why (why, "dirty rate %.1f MiB/s is %.0f%% of the bandwidth %.1f MiB/s",
                 (double) dirty_rate / 1048576.0, 100.0 * (double) dirty_rate / (double) bandwidth,
                 (double) bandwidth / 1048576.0);
      else if (passes_not_shrinking)
        set_why (why, "pass %" G_GUINT64_FORMAT " started with %.1f MiB left, the one before "
                 "with %.1f MiB", iteration, (double) self->iteration_start_remaining / 1048576.0,
                 (double) self->previous_start_remaining / 1048576.0);
      else
        set_why (why, "remaining has not shrunk for %.0f s (%.1f MiB)", stalled,
                 (double) remaining / 1048576.0);
      return MA_CONVERGE_THROTTLE;
    }
  if (stalled < wait)
    return MA_CONVERGE_NOTHING;
  if (self->policy.postcopy_allowed && !self->postcopy_done)
    {
      self->postcopy_done = TRUE;
      self->last_action = now_s;
      set_why (why, "still not converging %.0f s after the last step: post-copy (--postcopy)",
               stalled);
      return MA_CONVERGE_POSTCOPY;
    }
  if (self->policy.suspend_after_s > 0 && !self->suspend_done
      && now_s - self->started >= self->policy.suspend_after_s)
    {
      self->suspend_done = TRUE;
      self->last_action = now_s;
      set_why (why, "not converged after %.0f s: pausing the guest to finish (--suspend-after)",
               now_s - self->started);
      return MA_CONVERGE_SUSPEND;
    }
  return MA_CONVERGE_NOTHING;
}
