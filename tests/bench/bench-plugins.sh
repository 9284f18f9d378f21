#!/bin/bash
# bench-plugins.sh — quiesce+thaw time of migration-agent's plugin engine against qemu-ga's
# stock fsfreeze-hook (/etc/qemu/fsfreeze-hook from Debian's qemu-guest-agent) running the
# same scripts, measured in the same run, printed as ratios (agent / hook), and the agent's
# own cost per plugin.
#
#   tests/bench/bench-plugins.sh [BUILD_DIR] [ROUNDS]
#
# Workloads: 10 no-op scripts, and 10 scripts that each take 100 ms. The hook runs its
# hook.d scripts one after the other; the agent runs the same scripts as Hook=fsfreeze
# plugins, independent of each other, so in parallel. Each round is one freeze and one
# thaw; the agent side includes starting migctl twice (as the qemu-ga bridge does).
# The only change to the stock hook is its log file, moved into the temporary directory.
# The agent runs with its systemd unit's environment (tests/bench/unit-env.sh;
# MA_BENCH_UNIT_ENV=0 for none), as in a guest.
#
# Columns: "agent ms" is freeze+thaw as a caller sees it (two migctl runs); "phase ms" is
# one phase inside the agent (the `seconds` of its quiesce and thaw answers, median of
# both); "floor ms" is the same 10 scripts started with posix_spawn one after the other and
# all reaped, by a bare C program (spawn-floor.c): what starting them costs on this machine,
# whoever starts them; "per plugin" is (phase − floor) / 10, the agent's own overhead.
#
# Measured 2026-12-04 on this 2-CPU Debian 12 machine, quiet (load about 1), 20 rounds:
#   workload (freeze+thaw)  hook ms agent ms  ratio  speedup phase ms floor ms per plugin
#   10 no-op scripts          180.9     59.9   0.33     3.0x     17.4     16.1    0.13 ms
#   10 x 100 ms scripts      2298.5    318.9   0.14     7.2x    142.2    136.2    0.60 ms
# Issue 17's goals: a no-op phase <= 20 ms: met (17.4 ms; 31-57 ms under a load of 10-14).
# The 10 x 100 ms case >= 8x the hook: not met (7.2x). Its phase is the floor plus 0.6 ms a
# plugin: ten shells each starting `sleep` on 2 CPUs take 136 ms whoever spawns them; the
# rest of the agent's 319 ms is two migctl processes (about 7 ms each) and this script's
# clock readings. 8x would need the agent's freeze+thaw under 287 ms, 13 ms under two floors.
# Again later (load 0.2): no-op 19.3 ms a phase (floor 25.7); 10 x 100 ms 7.0x the hook, its
# phase 150.3 ms against a floor of 147.6 ms (0.27 ms a plugin).
set -euo pipefail

BUILD="${1:-$(dirname "$0")/../../build}"
ROUNDS="${2:-20}"
AGENT="$BUILD/agent/migration-agent"
MIGCTL="$BUILD/agent/client/migctl"
HOOK=/etc/qemu/fsfreeze-hook

[ -x "$AGENT" ] && [ -x "$MIGCTL" ] || { echo "build first: $AGENT, $MIGCTL" >&2; exit 2; }
[ -r "$HOOK" ] || { echo "$HOOK missing: install qemu-guest-agent" >&2; exit 2; }

TMP=$(mktemp -d /tmp/bench-plugins-XXXXXX)
chmod 755 "$TMP"
AGENT_PID=
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

now_ns() { date +%s%N; }

# median of the numbers on stdin
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

setup_workload() { # NAME SCRIPT_BODY
  local dir="$TMP/$1"
  mkdir -p "$dir/fsfreeze-hook.d" "$dir/plugins" "$dir/state"
  sed "s|^LOGFILE=.*|LOGFILE=$dir/hook.log|" "$HOOK" > "$dir/fsfreeze-hook"
  chmod 755 "$dir/fsfreeze-hook"
  for i in $(seq -w 1 10); do
    printf '#!/bin/sh\n%s\n' "$2" > "$dir/fsfreeze-hook.d/s$i"
    chmod 755 "$dir/fsfreeze-hook.d/s$i"
    printf '[Plugin]\nExec=%s\nHook=fsfreeze\n' "$dir/fsfreeze-hook.d/s$i" > "$dir/plugins/s$i.plugin"
    chmod 644 "$dir/plugins/s$i.plugin"
  done
  printf '[plugins]\ndirs=%s\n' "$dir/plugins" > "$dir/agent.conf"
}

bench_hook() { # NAME → median ms of freeze+thaw
  local dir="$TMP/$1" t0 t1
  for _ in $(seq "$ROUNDS"); do
    t0=$(now_ns); "$dir/fsfreeze-hook" freeze; "$dir/fsfreeze-hook" thaw; t1=$(now_ns)
    echo $(( (t1 - t0) / 1000 ))
  done | median | awk '{ printf "%.1f", $1 / 1000 }'
}

bench_agent() { # NAME → "total_ms phase_ms" (medians): quiesce+thaw through migctl, one phase
  local dir="$TMP/$1" t0 t1 sock="$TMP/$1/agent.sock" q t
  # shellcheck disable=SC2046  # the agent as shipped: its systemd unit's environment
  env $("$(dirname "$0")/unit-env.sh") "$AGENT" --foreground --listen "unix:$sock" --state-dir "$dir/state" --config "$dir/agent.conf" \
    2> "$dir/agent.log" &
  AGENT_PID=$!
  for _ in $(seq 200); do "$MIGCTL" -c "unix:$sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
  [ "$("$MIGCTL" -c "unix:$sock" --json plugins | grep -o '"status":"ready"' | wc -l)" -eq 10 ] \
    || { echo "agent did not load 10 plugins" >&2; exit 1; }
  : > "$dir/rounds"
  for r in $(seq "$ROUNDS"); do
    t0=$(now_ns)
    q=$("$MIGCTL" -c "unix:$sock" --json quiesce "operation=bench-$r" lease_seconds=60)
    t=$("$MIGCTL" -c "unix:$sock" --json thaw)
    t1=$(now_ns)
    # the answer's first "seconds" is the phase's (the plugins' own follow in "results")
    echo "$(( (t1 - t0) / 1000 )) $(grep -o '"seconds":[0-9.e-]*' <<< "$q" | head -1 | cut -d: -f2)" \
      "$(grep -o '"seconds":[0-9.e-]*' <<< "$t" | head -1 | cut -d: -f2)" >> "$dir/rounds"
  done
  kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=
  printf '%s %s\n' "$(awk '{ print $1 }' "$dir/rounds" | median | awk '{ printf "%.1f", $1 / 1000 }')" \
    "$(awk '{ print $2; print $3 }' "$dir/rounds" | median | awk '{ printf "%.1f", $1 * 1000 }')"
}

exec_floor() { # NAME → ms to start the 10 scripts with posix_spawn and reap them (median)
  local dir="$TMP/$1"
  for _ in $(seq "$ROUNDS"); do
    "$TMP/spawn-floor" freeze "$dir"/fsfreeze-hook.d/s*
  done | median | awk '{ printf "%.1f", $1 }'
}

cc -O2 -o "$TMP/spawn-floor" "$(dirname "$0")/spawn-floor.c"
setup_workload noop 'exit 0'
setup_workload slow 'sleep 0.1'

printf '%-22s %8s %8s %6s %8s %8s %8s %10s\n' "workload (freeze+thaw)" "hook ms" "agent ms" \
  "ratio" "speedup" "phase ms" "floor ms" "per plugin"
for w in noop slow; do
  hook=$(bench_hook "$w")
  read -r agent phase < <(bench_agent "$w")
  floor=$(exec_floor "$w")
  label=$([ "$w" = noop ] && echo "10 no-op scripts" || echo "10 x 100 ms scripts")
  printf '%-22s %8s %8s %6s %7sx %8s %8s %7s ms\n' "$label" "$hook" "$agent" \
    "$(awk -v a="$agent" -v h="$hook" 'BEGIN { printf "%.2f", a / h }')" \
    "$(awk -v a="$agent" -v h="$hook" 'BEGIN { printf "%.1f", h / a }')" "$phase" "$floor" \
    "$(awk -v p="$phase" -v f="$floor" 'BEGIN { printf "%.2f", (p - f) / 10 }')"
done
echo "ratio = agent / qemu-ga fsfreeze-hook, speedup = hook / agent, median of $ROUNDS rounds."
echo "phase ms: one quiesce or thaw inside the agent (its answer's seconds); floor ms: the same"
echo "10 scripts started with posix_spawn one after the other and reaped (spawn-floor.c), the least"
echo "any plugin runner pays here; per plugin = (phase - floor) / 10, the agent's own overhead."
