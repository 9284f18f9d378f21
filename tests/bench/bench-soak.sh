#!/bin/bash
# bench-soak.sh — the long soak: the real migration-agent under read-only requests of every kind
# (each answer compared with what it must be), prepare/quiesce/thaw cycles with real plugins (a
# oneshot and a session script), garbage and half-frames from a second client, and hosts that
# connect and vanish; RSS, private anonymous memory (smaps_rollup), open fds, the event ring and
# the state dir measured after the warm-up, in the middle and at the end.
#
#   tests/bench/bench-soak.sh [BUILD_DIR] [--long]
#
# Without --long: 100,000 requests and 1,000 cycles (a few minutes). With --long: 1,000,000
# requests and 10,000 cycles (most of an hour on 2 CPUs: a cycle runs prepare, which scans /proc,
# and two plugins twice). MA_SOAK_CYCLES, MA_SOAK_REQUESTS and MA_SOAK_EVENTS (the event ring,
# default 1024) override the length. The run happens in a PID namespace of its own (with its own
# /proc), so the agent's scans see the soak's processes, not the rest of the machine. The program is the suite's test-soak (its short form runs
# in `meson test --suite integration`); it fails on any wrong answer, any fd more at the end
# than after the warm-up, or memory growth over 64 KiB.
set -euo pipefail

BUILD="${1:-$(dirname "$0")/../../build}"
LONG=
[ "${2:-}" = --long ] || [ "${1:-}" = --long ] && LONG=--long
[ "${1:-}" = --long ] && BUILD="$(dirname "$0")/../../build"
TEST="$BUILD/tests/integration/test-soak"
AGENT="$BUILD/agent/migration-agent"
[ -x "$TEST" ] && [ -x "$AGENT" ] || { echo "build first: $TEST, $AGENT" >&2; exit 2; }

if [ -z "$LONG" ]; then
  export MA_SOAK_CYCLES="${MA_SOAK_CYCLES:-1000}" MA_SOAK_REQUESTS="${MA_SOAK_REQUESTS:-100000}"
fi
export MA_SOAK_EVENTS="${MA_SOAK_EVENTS:-1024}"
export MIGRATION_AGENT="$AGENT" G_DEBUG=fatal-criticals
# --long makes the program print its samples on stdout; the shorter default passes it too
exec "$TEST" --long
