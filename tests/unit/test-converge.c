/* test-converge.c — the convergence controller's decisions, sample by sample. */
#include "converge.h"

#define MIB (1024 * 1024)

static const MaConvergePolicy agent_policy = {
  .use_agent = TRUE, .progress_timeout_s = 150, .step_wait_s = 8, .max_steps = 3,
};

static void
test_first_pass_is_left_alone (void)
{
  g_autoptr(MaConverge) c = ma_converge_new (&agent_policy, 0);

  /* libvirt's setup phase reads iteration 0, remaining 0: it is no minimum to beat */
  for (int t = 0; t < 10; t++)
    g_assert_cmpint (ma_converge_observe (c, t * 0.2, 0, 0, 0, 0, NULL), ==, MA_CONVERGE_NOTHING);

  /* iteration 1 with a dirty rate above the bandwidth: the first pass copies everything */
  for (int t = 2; t < 20; t++)
    g_assert_cmpint (ma_converge_observe (c, t, 1, (guint64) (420 - 20 * t) * MIB, 100 * MIB,
                                          32 * MIB, NULL), ==, MA_CONVERGE_NOTHING);
  /* the second pass is judged: its rate is above the bandwidth, and the clock of progress
   * did not start at the setup phase's 0 */
  g_assert_cmpint (ma_converge_observe (c, 20, 2, 100 * MIB, 100 * MIB, 32 * MIB, NULL), ==,
                   MA_CONVERGE_THROTTLE);
}

static void
test_converging_is_left_alone (void)
{
  g_autoptr(MaConverge) c = ma_converge_new (&agent_policy, 0);
  guint64 remaining = 400 * MIB;

  for (int t = 1; t < 30; t++, remaining = remaining * 8 / 10)
    g_assert_cmpint (ma_converge_observe (c, t, 2 + t / 3, remaining, 5 * MIB, 32 * MIB, NULL),
                     ==, MA_CONVERGE_NOTHING);
}

static void
test_high_rate_throttles_step_by_step (void)
{
  g_autoptr(MaConverge) c = ma_converge_new (&agent_policy, 0);
  g_autofree char *why = NULL;
  guint throttles = 0;

  for (int t = 0; t <= 40; t++)
    {
      MaConvergeAction a = ma_converge_observe (c, t, 3, 100 * MIB, 50 * MIB, 32 * MIB, &why);
      g_assert_cmpint (a, !=, MA_CONVERGE_POSTCOPY);
      g_assert_cmpint (a, !=, MA_CONVERGE_ABORT);
      if (a == MA_CONVERGE_THROTTLE)
        {
          throttles++;
          g_assert_nonnull (strstr (why, "dirty rate 50.0 MiB/s"));
        }
    }
  /* one step, then one every step_wait, up to max_steps */
  g_assert_cmpuint (throttles, ==, 3);
  g_assert_cmpuint (ma_converge_steps (c), ==, 3);
}

static void
test_passes_not_shrinking_throttle (void)
{
  g_autoptr(MaConverge) c = ma_converge_new (&agent_policy, 0);
  g_autofree char *why = NULL;
  int throttled_at = -1;

  /* no dirty rate reported, remaining keeps falling within each pass (so no stall of 8 s)
   * but every pass starts again with 100 MiB left */
  for (int t = 0; t <= 20 && throttled_at < 0; t++)
    {
      guint64 iteration = 1 + (guint64) t / 2;
      guint64 remaining = (t % 2) ? 60 * MIB : 100 * MIB;
      if (ma_converge_observe (c, t, iteration, remaining, 0, 32 * MIB, &why)
          == MA_CONVERGE_THROTTLE)
        throttled_at = t;
    }
  /* pass 3 starts at t=4 with as much as pass 2 (t=2) */
  g_assert_cmpint (throttled_at, ==, 4);
  g_assert_nonnull (strstr (why, "pass 3 started with 100.0 MiB left"));
}

static void
test_escalates_to_postcopy_only_when_allowed (void)
{
  MaConvergePolicy p = agent_policy;
  g_autoptr(MaConverge) denied = ma_converge_new (&p, 0);
  g_autoptr(MaConverge) allowed = NULL;
  gboolean postcopy = FALSE;

  for (int t = 0; t <= 100; t++)
    g_assert_cmpint (ma_converge_observe (denied, t, 3, 100 * MIB, 50 * MIB, 32 * MIB, NULL), !=,
                     MA_CONVERGE_POSTCOPY);
  p.postcopy_allowed = TRUE;
  allowed = ma_converge_new (&p, 0);
  ma_converge_throttle_exhausted (allowed);
  for (int t = 0; t <= 100; t++)
    if (ma_converge_observe (allowed, t, 3, 100 * MIB, 50 * MIB, 32 * MIB, NULL)
        == MA_CONVERGE_POSTCOPY)
      {
        g_assert_false (postcopy); /* once */
        postcopy = TRUE;
        g_assert_cmpint (t, >=, 8); /* not before the progress stalled for a step */
      }
  g_assert_true (postcopy);
}

static void
test_suspend_after (void)
{
  MaConvergePolicy p = agent_policy;
  g_autoptr(MaConverge) c = NULL;
  int suspended_at = -1;

  p.use_agent = FALSE;
  p.suspend_after_s = 30;
  c = ma_converge_new (&p, 0);
  for (int t = 0; t <= 60; t++)
    if (ma_converge_observe (c, t, 3, 100 * MIB, 50 * MIB, 32 * MIB, NULL) == MA_CONVERGE_SUSPEND)
      {
        g_assert_cmpint (suspended_at, ==, -1);
        suspended_at = t;
      }
  g_assert_cmpint (suspended_at, ==, 30);
}

static void
test_abort_without_progress (void)
{
  MaConvergePolicy p = agent_policy;
  g_autoptr(MaConverge) c = NULL;
  g_autofree char *why = NULL;
  g_autofree char *abort_why = NULL;
  int aborted_at = -1;

  p.progress_timeout_s = 20;
  c = ma_converge_new (&p, 0);
  for (int t = 0; t <= 40; t++)
    {
      /* remaining shrinks a little (under 5%) then jumps back: no new minimum */
      guint64 remaining = (t % 2) ? 98 * MIB : 100 * MIB;
      if (ma_converge_observe (c, t, 3, remaining, 1 * MIB, 32 * MIB, &why) == MA_CONVERGE_ABORT)
        {
          g_assert_cmpint (aborted_at, ==, -1);
          aborted_at = t;
          abort_why = g_strdup (why);
        }
    }
  g_assert_cmpint (aborted_at, ==, 20);
  g_assert_nonnull (strstr (abort_why, "no progress for 20 s"));
}

static void
test_progress_resets_the_clock (void)
{
  MaConvergePolicy p = agent_policy;
  g_autoptr(MaConverge) c = NULL;

  p.progress_timeout_s = 20;
  c = ma_converge_new (&p, 0);
  for (int t = 0; t <= 60; t++)
    {
      /* a new minimum every 15 s */
      guint64 remaining = (guint64) (100 - 10 * (t / 15)) * MIB;
      g_assert_cmpint (ma_converge_observe (c, t, 3, remaining, 1 * MIB, 32 * MIB, NULL), !=,
                       MA_CONVERGE_ABORT);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/converge/first-pass-is-left-alone", test_first_pass_is_left_alone);
  g_test_add_func ("/converge/converging-is-left-alone", test_converging_is_left_alone);
  g_test_add_func ("/converge/high-rate-throttles-step-by-step",
                   test_high_rate_throttles_step_by_step);
  g_test_add_func ("/converge/passes-not-shrinking-throttle", test_passes_not_shrinking_throttle);
  g_test_add_func ("/converge/postcopy-only-when-allowed",
                   test_escalates_to_postcopy_only_when_allowed);
  g_test_add_func ("/converge/suspend-after", test_suspend_after);
  g_test_add_func ("/converge/abort-without-progress", test_abort_without_progress);
  g_test_add_func ("/converge/progress-resets-the-clock", test_progress_resets_the_clock);
  return g_test_run ();
}
