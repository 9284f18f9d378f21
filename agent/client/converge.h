/* converge.h — the convergence controller's decisions (no I/O): from libvirt's job samples,
 * when to ask the guest's agent to throttle its top writers, when to escalate, when to abort. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MA_CONVERGE_PROGRESS_FRACTION 0.95 /* a new minimum of remaining by 5% is progress */
#define MA_CONVERGE_RATE_FRACTION 0.7      /* dirty rate >= 70% of bandwidth: not converging */
#define MA_CONVERGE_PASS_FRACTION 0.9      /* a pass that starts with >= 90% of what the one
                                            * before started with: not converging */
#define MA_CONVERGE_DEFAULT_STEP_WAIT_S 8.0 /* what one step gets to show its effect */
#define MA_CONVERGE_DEFAULT_MAX_STEPS 3

typedef enum
{
  MA_CONVERGE_NOTHING,
  MA_CONVERGE_THROTTLE, /* ask the agent to throttle the classes of its top writers */
  MA_CONVERGE_POSTCOPY, /* switch to post-copy (allowed by --postcopy) */
  MA_CONVERGE_SUSPEND,  /* pause the guest and finish offline (allowed by --suspend-after) */
  MA_CONVERGE_ABORT,    /* no progress within the progress timeout */
} MaConvergeAction;

typedef struct
{
  gboolean use_agent;        /* policy "agent" */
  gboolean postcopy_allowed;
  double suspend_after_s;    /* 0: never */
  double progress_timeout_s;
  double step_wait_s;
  guint max_steps;
} MaConvergePolicy;

typedef struct _MaConverge MaConverge;

MaConverge *ma_converge_new (const MaConvergePolicy *policy, double now_s);
void ma_converge_free (MaConverge *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaConverge, ma_converge_free)

/* One job sample at time now_s (seconds on any monotonic clock); bandwidth in bytes/s (0:
 * unknown). Returns what to do now; *why (may be NULL) says why, for the user and the
 * timeline. An action is returned once; the caller reports what it achieved below. */
MaConvergeAction ma_converge_observe (MaConverge *self, double now_s, guint64 iteration,
                                      guint64 remaining, guint64 dirty_rate, guint64 bandwidth,
                                      char **why);
/* A throttle step taken outside observe () (the guest's own measurement at the start). */
void ma_converge_took_step (MaConverge *self, double now_s);
/* The agent throttled nothing new: no more throttle steps. */
void ma_converge_throttle_exhausted (MaConverge *self);
/* A step failed (the call was refused): it does not count as done. */
void ma_converge_action_failed (MaConverge *self, MaConvergeAction action);
guint ma_converge_steps (MaConverge *self);

G_END_DECLS
