#!/bin/bash
# bench-blockers.sh — `migctl blockers --json` side by side with util-linux lslocks, lsof -n,
# fuser -m and a bare lstat() pass over every /proc/PID/fd entry, on a synthetic population
# built here: 1,000 processes x 100 open files, 10,000 locks (flock and POSIX), some writers.
#
# usage: tests/bench/bench-blockers.sh [BUILD_DIR]   (default: ./build; needs root)
# env:   NPROC (1000) NFILES (100) NLOCKS (10 per process) RUNS (3, the best is kept)
set -euo pipefail

src=$(cd "$(dirname "$0")" && pwd)
build=${1:-${MA_BUILD_DIR:-build}}
agent=${MIGRATION_AGENT:-$build/agent/migration-agent}
migctl=${MIGCTL:-$build/agent/migctl}
nproc=${NPROC:-1000}
nfiles=${NFILES:-100}
nlocks=${NLOCKS:-10}
runs=${RUNS:-3}

[ "$(id -u)" = 0 ] || { echo "bench-blockers: needs root (it reads every process's fds)" >&2; exit 2; }
[ -x "$agent" ] && [ -x "$migctl" ] || { echo "bench-blockers: build first ($agent, $migctl)" >&2; exit 2; }
need=()
command -v lsof >/dev/null || need+=(lsof)
command -v fuser >/dev/null || need+=(psmisc)
command -v lslocks >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    apt-get install -y -q "${need[@]}" >/dev/null
fi

work=$(mktemp -d /var/tmp/bench-blockers.XXXXXX)
pop_pid=
agent_pid=
cleanup() {
    # end the population (its children die with it) and the agent, then remove the files
    [ -n "$pop_pid" ] && { exec 7>&- 2>/dev/null || true; kill -TERM -- "-$pop_pid" 2>/dev/null || true; wait "$pop_pid" 2>/dev/null || true; }
    [ -n "$agent_pid" ] && { kill -TERM "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

cc -O2 -o "$work/bare-fd-scan" "$src/bare-fd-scan.c"
cc -O2 -o "$work/bench-population" "$src/bench-population.c"
mkdir "$work/files"
ulimit -n $((nfiles + 64))

# the population: holds until its stdin (fd 7 here) closes
mkfifo "$work/hold" "$work/out"
setsid "$work/bench-population" "$work/files" "$nproc" "$nfiles" "$nlocks" <"$work/hold" >"$work/out" &
pop_pid=$!
exec 7>"$work/hold"
read -r -t 300 line <"$work/out" || true
[ "${line:-}" = ready ] || { echo "bench-blockers: population did not come up" >&2; exit 1; }
echo "population: $nproc processes x $nfiles files, $((nproc * nlocks)) locks; $(wc -l </proc/locks) lines in /proc/locks"

touch "$work/empty.conf"
"$agent" --listen "unix:$work/agent.sock" --state-dir "$work/state" --config "$work/empty.conf" \
    --foreground 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 200); do "$migctl" -c "unix:$work/agent.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

mountpoint=$(stat -c %m "$work/files")

# best of $runs wall-clock seconds for a command
best() {
    local best_t= t s e
    for _ in $(seq "$runs"); do
        s=$(date +%s.%N)
        "$@" >/dev/null 2>&1 || true
        e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc -l)
        if [ -z "$best_t" ] || [ "$(echo "$t < $best_t" | bc -l)" = 1 ]; then best_t=$t; fi
    done
    printf '%.3f' "$best_t"
}

t_lslocks=$(best lslocks)
t_lsof=$(best lsof -n)
t_fuser=$(best fuser -m "$mountpoint")
t_bare=$(best "$work/bare-fd-scan")
t_blockers=$(best "$migctl" -c "unix:$work/agent.sock" --json blockers)

# the report really covers the population
"$migctl" -c "unix:$work/agent.sock" --json blockers >"$work/report.json"
python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("blockers report: %d locks, %d writers, verdict %s, scan %s" % (
    len(r["locks"]), len(r["writers"]), r["verdict"],
    {k: r["scan"][k] for k in ("processes", "fds", "fds_resolved", "scan_seconds")}))
PY

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
printf '\n%-34s %8s\n' "tool" "seconds"
printf '%-34s %8s\n' "lslocks (util-linux)" "$t_lslocks"
printf '%-34s %8s\n' "lsof -n" "$t_lsof"
printf '%-34s %8s\n' "fuser -m $mountpoint" "$t_fuser"
printf '%-34s %8s\n' "bare lstat pass over /proc/*/fd" "$t_bare"
printf '%-34s %8s\n' "migctl blockers --json" "$t_blockers"
echo
echo "lslocks / blockers: $(ratio "$t_lslocks" "$t_blockers")x   (goal >= 5)"
echo "lsof    / blockers: $(ratio "$t_lsof" "$t_blockers")x"
echo "fuser   / blockers: $(ratio "$t_fuser" "$t_blockers")x   (goal >= 3)"
echo "blockers / bare:    $(ratio "$t_blockers" "$t_bare")x   (goal <= 1.5)"
