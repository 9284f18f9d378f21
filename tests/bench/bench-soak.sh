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
#
# Figures (issue 17's goals: no growth after warm-up, private anonymous memory <= 1 MiB), the
# default length, this 2-CPU machine, quiet; anonymous memory at start / middle / end:
#   before (tcache, GLib 2.74's slice magazines, ring slack a quarter, no trim)
#                                        1,644 / 1,648 / 1,652 KiB   (goal: NOT met)
#   trim after replies, ring slack a sixteenth, without the unit's environment (MA_BENCH_UNIT_ENV=0)
#                                        1,484 / 1,524 / 1,540 KiB   (goal: NOT met)
#   the same with the unit's environment (GLIBC_TUNABLES tcache_count=0, G_SLICE=always-malloc)
#                                        1,020 / 1,024 / 1,012 KiB   (goal: met, no margin)
#   again, the trim waiting for quiet when much is free (agent/heaptrim.h)
#                                        1,044 /   956 / 1,000 KiB   (goal: met at the end)
#   again, a scan's writers kept as small values (agent/procscan.c), 2026-12-04
#                                        1,000 /   996 /   944 KiB   (goal: met throughout)
#   (with glibc.malloc.arena_max=1 added to GLIBC_TUNABLES, tried that day beside an ASan test
#   run: 1,108 / 1,024 / 1,020 KiB, no better, so the unit does not set it)
#   growth after warm-up -8 and -44 KiB, fds 11 throughout, 100,035 requests and 1,000 cycles all
#   answered as expected. Of about 1,020 KiB: the heap about 620 (the event ring's buffer
#   about 220 of it), the libraries' written data and relocations about 230, five threads'
#   stacks and the main stack about 85, small anonymous mappings (TLS, libc) about 90. The same agent under systemd in a guest (tests/vm
#   test_systemd_unit.py), idle: 512 KiB.
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
# The agent as shipped: with the environment its systemd unit gives it (GLIBC_TUNABLES and
# G_SLICE, see the unit's memory note). MA_BENCH_UNIT_ENV=0 measures it without.
unit_env=$("$(dirname "$0")/unit-env.sh")
for kv in $unit_env; do export "${kv?}"; done
echo "the agent's environment, from the systemd unit: $(echo ${unit_env:-none})"
export MIGRATION_AGENT="$AGENT" G_DEBUG=fatal-criticals
# --long makes the program print its samples on stdout; the shorter default passes it too
exec "$TEST" --long
