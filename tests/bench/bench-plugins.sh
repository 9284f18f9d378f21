#!/bin/bash
# bench-plugins.sh — quiesce+thaw time of migration-agent's plugin engine against qemu-ga's
# stock fsfreeze-hook (/etc/qemu/fsfreeze-hook from Debian's qemu-guest-agent) running the
# same scripts, measured in the same run, printed as ratios (agent / hook).
#
#   tests/bench/bench-plugins.sh [BUILD_DIR] [ROUNDS]
#
# Workloads: 10 no-op scripts, and 10 scripts that each take 100 ms. The hook runs its
# hook.d scripts one after the other; the agent runs the same scripts as Hook=fsfreeze
# plugins, independent of each other, so in parallel. Each round is one freeze and one
# thaw; the agent side includes starting migctl twice (as the qemu-ga bridge does).
# The only change to the stock hook is its log file, moved into the temporary directory.
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

bench_agent() { # NAME → median ms of quiesce+thaw through migctl
  local dir="$TMP/$1" t0 t1 sock="$TMP/$1/agent.sock"
  "$AGENT" --foreground --listen "unix:$sock" --state-dir "$dir/state" --config "$dir/agent.conf" \
    2> "$dir/agent.log" &
  AGENT_PID=$!
  for _ in $(seq 200); do "$MIGCTL" -c "unix:$sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
  [ "$("$MIGCTL" -c "unix:$sock" --json plugins | grep -o '"status":"ready"' | wc -l)" -eq 10 ] \
    || { echo "agent did not load 10 plugins" >&2; exit 1; }
  for r in $(seq "$ROUNDS"); do
    t0=$(now_ns)
    "$MIGCTL" -c "unix:$sock" quiesce "operation=bench-$r" lease_seconds=60 >/dev/null
    "$MIGCTL" -c "unix:$sock" thaw >/dev/null
    t1=$(now_ns)
    echo $(( (t1 - t0) / 1000 ))
  done | median | awk '{ printf "%.1f", $1 / 1000 }'
  kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=
}

setup_workload noop 'exit 0'
setup_workload slow 'sleep 0.1'

printf '%-28s %12s %12s %8s\n' "workload (freeze+thaw)" "hook ms" "agent ms" "ratio"
for w in noop slow; do
  hook=$(bench_hook "$w")
  agent=$(bench_agent "$w")
  label=$([ "$w" = noop ] && echo "10 no-op scripts" || echo "10 x 100 ms scripts")
  printf '%-28s %12s %12s %8s\n' "$label" "$hook" "$agent" \
    "$(awk -v a="$agent" -v h="$hook" 'BEGIN { printf "%.2f", a / h }')"
done
echo "ratio = agent / qemu-ga fsfreeze-hook, median of $ROUNDS rounds (below 1: the agent is faster)"
