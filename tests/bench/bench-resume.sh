#!/bin/bash
# bench-resume.sh — time from a resume signal to a complete validation report, median over
# runs, against a peer measured in the same run: the same facts gathered by the standard tools
# an orchestrator would run in the guest (iproute2 `ip -j link/addr/route/neigh` and util-linux
# `findmnt -J`), which only dump state and compare nothing.
#
#   tests/bench/bench-resume.sh [BUILD_DIR] [RUNS]
#
# The signal is the `resumed` command (migctl resumed operation=… wait=true): NOTIFY_PEERS
# cannot be produced without a hypervisor (no `ip link` command fakes it), so the timed path
# is command → RESUMED → validation → report, with migctl's own start included. It runs in a
# network namespace this script creates (a veth pair, the gateway in a second namespace), so
# the gateway probe gets a real ARP answer. Write probes are off: they measure the disk.
set -euo pipefail

BUILD="${1:-$(dirname "$0")/../../build}"
RUNS="${2:-21}"
AGENT="$BUILD/agent/migration-agent"
MIGCTL="$BUILD/agent/client/migctl"
[ -x "$AGENT" ] && [ -x "$MIGCTL" ] || { echo "build first: $AGENT, $MIGCTL" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }

NS=ma-bench-guest-$$
GW=ma-bench-gw-$$
TMP=$(mktemp -d /run/bench-resume-XXXXXX)
AGENT_PID=
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$GW" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$NS"
ip netns add "$GW"
ip netns exec "$NS" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1
ip netns exec "$NS" sysctl -q -w net.ipv6.conf.default.disable_ipv6=1
ip -n "$NS" link add veth0 type veth peer name veth1 netns "$GW"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 10.79.0.2/24 dev veth0
ip -n "$NS" link set veth0 up
ip -n "$GW" addr add 10.79.0.1/24 dev veth1
ip -n "$GW" link set veth1 up
ip -n "$NS" route add default via 10.79.0.1

cat > "$TMP/agent.conf" <<CONF
[validate]
write-probe=false
[resume]
announce=never
holdoff-seconds=0
CONF
ip netns exec "$NS" "$AGENT" -f --no-virtio -c "$TMP/agent.conf" -s "$TMP/state" \
  -l "unix:$TMP/s.sock" 2>"$TMP/agent.log" &
AGENT_PID=$!
for _ in $(seq 100); do "$MIGCTL" -c "unix:$TMP/s.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
"$MIGCTL" -c "unix:$TMP/s.sock" --json snapshot take=true >/dev/null

now_ns() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

agent_ms=()
peer_ms=()
for i in $(seq "$RUNS"); do
  t0=$(now_ns)
  out=$("$MIGCTL" -c "unix:$TMP/s.sock" --json resumed operation="bench-$i" wait=true)
  t1=$(now_ns)
  grep -q '"new":true' <<<"$out" || { echo "run $i was not a new resume: $out" >&2; exit 1; }
  grep -q "\"verdict\":" <<<"$out" || { echo "run $i has no report: $out" >&2; exit 1; }
  verdict=$(grep -o "\"verdict\":\"[a-z]*\"" <<<"$out" | head -1)
  agent_ms+=("$(( (t1 - t0) / 1000 ))")

  t0=$(now_ns)
  ip netns exec "$NS" sh -c 'ip -j link show; ip -j addr show; ip -j route show; ip -j neigh show; findmnt -J' >/dev/null
  t1=$(now_ns)
  peer_ms+=("$(( (t1 - t0) / 1000 ))")
done

a=$(printf '%s\n' "${agent_ms[@]}" | median)
p=$(printf '%s\n' "${peer_ms[@]}" | median)
printf "runs: %s (last %s; a fail here is the host's own state, e.g. a frozen filesystem)\n" "$RUNS" "$verdict"
printf 'resumed -> complete validation report (agent):       median %8.1f ms\n' "$(echo "$a / 1000" | bc -l)"
printf 'state dump only (ip -j x4 + findmnt -J, the peer):   median %8.1f ms\n' "$(echo "$p / 1000" | bc -l)"
printf 'ratio agent / peer: %.2f\n' "$(echo "$a / $p" | bc -l)"
