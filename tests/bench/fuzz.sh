#!/bin/bash
# tests/bench/fuzz.sh — fuzz every libFuzzer target of tests/fuzz/ for a given time each and
# report executions and crashes per target. Goal: 600 s per target, 0 crashes, 0 leaks.
#
#   tests/bench/fuzz.sh [SECONDS] [TARGET...]     (default 60 s, every target)
#
# Builds with clang, ASan and UBSan (needs clang and libclang-rt-14-dev) in
# $MA_FUZZ_BUILD_DIR (default build-fuzz/). Each target starts from its checked-in seed corpus
# (tests/fuzz/corpus/NAME, never modified) plus what earlier runs found (build-fuzz/corpus/NAME).
# Crash and leak reproducers land in build-fuzz/artifacts/NAME/; replay one with
#   build-fuzz/tests/fuzz/fuzz-NAME-libfuzzer FILE
# Exit status: 0 when no target crashed or leaked, 1 otherwise, 2 on a build failure.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${MA_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
SECONDS_PER_TARGET=${1:-60}
shift || true
GOAL_SECONDS=600

if ! command -v clang >/dev/null; then
  echo "fuzz.sh: clang is not installed (apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" "$ROOT" -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized >"$BUILD.setup.log" 2>&1 \
    || { cat "$BUILD.setup.log" >&2; exit 2; }
fi
ninja -C "$BUILD" >"$BUILD/fuzz-build.log" 2>&1 || { tail -40 "$BUILD/fuzz-build.log" >&2; exit 2; }

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  mapfile -t TARGETS < <(find "$BUILD/tests/fuzz" -maxdepth 1 -name 'fuzz-*-libfuzzer' -type f \
    | sed 's|.*/fuzz-||; s|-libfuzzer$||' | sort)
fi
if [ ${#TARGETS[@]} -eq 0 ]; then
  echo "fuzz.sh: no libFuzzer binaries were built (is CC clang?)" >&2
  exit 2
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export G_DEBUG=fatal-criticals
export G_SLICE=always-malloc

printf '%-12s %8s %12s %10s %8s  %s\n' target seconds executions exec/s crashes result
failed=0
for t in "${TARGETS[@]}"; do
  bin="$BUILD/tests/fuzz/fuzz-$t-libfuzzer"
  seeds="$ROOT/tests/fuzz/corpus/$t"
  work="$BUILD/corpus/$t"
  artifacts="$BUILD/artifacts/$t"
  log="$BUILD/fuzz-$t.log"
  if [ ! -x "$bin" ]; then
    printf '%-12s %8s %12s %10s %8s  %s\n' "$t" - - - - "no such target"
    failed=1
    continue
  fi
  mkdir -p "$work" "$artifacts"
  before=$(find "$artifacts" -type f | wc -l)
  start=$(date +%s.%N)
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="$artifacts/" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
  elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  rate=$(awk -v n="$execs" -v s="$elapsed" 'BEGIN { printf "%.0f", n / (s + 0.001) }')
  if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ]; then
    result="FAILED (exit $rc; see $log)"
    [ "$crashes" -eq 0 ] && crashes=1
    failed=1
  else
    result=ok
  fi
  printf '%-12s %8.0f %12s %10s %8s  %s\n' "$t" "$elapsed" "$execs" "$rate" "$crashes" "$result"
done
if [ "$SECONDS_PER_TARGET" -lt "$GOAL_SECONDS" ]; then
  echo "(a short run: the goal is $GOAL_SECONDS s per target with 0 crashes and 0 leaks)"
fi
exit $failed
