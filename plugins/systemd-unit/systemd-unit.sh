#!/bin/sh
# systemd-unit — quiesce plugin (oneshot): freezes the cgroup v2 of configured systemd units
# (cgroup.freeze), so any writer holds still without its cooperation; thaw unfreezes.
#
# Configuration (EnvironmentFile): SYSTEMD_UNITS (unit names) and/or SYSTEMD_CGROUPS (cgroup
# paths below the cgroup v2 mount), ';' or space separated. MA_CGROUPFS: the mount
# (default /sys/fs/cgroup). MA_DEADLINE_MS bounds the wait for the freeze to take hold.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

CGROUPFS=${MA_CGROUPFS:-/sys/fs/cgroup}
PROCFS=${MA_PROCFS:-/proc}
DEADLINE_MS=${MA_DEADLINE_MS:-30000}
POLL_MS=20
MARGIN_MS=500

json_detail() {
  printf '{"detail": "%s"}\n' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  ')"
}

fail() {
  echo "systemd-unit: $1" >&2
  json_detail "$1"
  exit 1
}

# The cgroup directories to act on, one per line, each checked to be a cgroup v2 directory
# with a freezer that does not contain this plugin (the agent) itself.
resolve_cgroups() {
  old_ifs=$IFS
  IFS='; '
  set -f
  for unit in ${SYSTEMD_UNITS:-}; do
    path=$(systemctl show -p ControlGroup --value -- "$unit" 2>&1) ||
      { IFS=$old_ifs; echo "unit $unit: systemctl failed: $path"; return 1; }
    [ -n "$path" ] || { IFS=$old_ifs; echo "unit $unit is not running (it has no control group)"; return 1; }
    echo "=$path"
  done
  for path in ${SYSTEMD_CGROUPS:-}; do
    echo "=$path"
  done
  set +f
  IFS=$old_ifs
}

check_cgroup() {
  rel=$1
  case "$rel" in
    /*) ;;
    *) echo "cgroup $rel: not an absolute cgroup path"; return 1 ;;
  esac
  case "$rel" in
    */../*|*/..|*/./*|*/.) echo "cgroup $rel: '.' and '..' are not allowed"; return 1 ;;
  esac
  [ "$rel" != "/" ] || { echo "refusing to freeze the root cgroup"; return 1; }
  dir=$CGROUPFS$rel
  [ -f "$dir/cgroup.freeze" ] ||
    { echo "cgroup $rel: no $dir/cgroup.freeze (not a cgroup v2 directory with a freezer)"; return 1; }
  own=$(sed -n 's/^0:://p' "$PROCFS/self/cgroup" 2>/dev/null)
  case "$own/" in
    "$rel"/*) echo "cgroup $rel contains the agent itself: freezing it would never thaw"; return 1 ;;
  esac
  return 0
}

frozen_state() {
  sed -n 's/^frozen //p' "$CGROUPFS$1/cgroup.events" 2>/dev/null
}

# Wait until cgroup $1 reports frozen $2, at most $3 ms.
wait_state() {
  waited=0
  while [ "$(frozen_state "$1")" != "$2" ]; do
    [ "$waited" -lt "$3" ] || return 1
    sleep 0.02
    waited=$((waited + POLL_MS))
  done
  return 0
}

thaw_one() {
  [ -f "$CGROUPFS$1/cgroup.freeze" ] || return 0
  echo 0 > "$CGROUPFS$1/cgroup.freeze"
}

phase=${1:-}
[ $# -eq 1 ] || fail "usage: $0 check|quiesce|thaw|validate"
[ "$phase" = freeze ] && phase=quiesce
case "$phase" in
  check|quiesce|thaw|validate) ;;
  *) fail "unknown phase '$phase' (expected check, quiesce, thaw or validate)" ;;
esac

if ! list=$(resolve_cgroups); then
  if [ "$phase" = thaw ]; then
    # Nothing resolvable to thaw (unit gone): released by definition.
    json_detail "nothing to thaw: $list"
    exit 0
  fi
  fail "$list"
fi
cgroups=$(printf '%s\n' "$list" | sed -n 's/^=//p')
[ -n "$cgroups" ] || fail "neither SYSTEMD_UNITS nor SYSTEMD_CGROUPS names anything to freeze"

count=$(printf '%s\n' "$cgroups" | wc -l)
case "$phase" in
  check)
    for cg in $cgroups; do
      why=$(check_cgroup "$cg") || fail "$why"
      [ "$(frozen_state "$cg")" = 0 ] || fail "cgroup $cg is already frozen"
    done
    json_detail "$count cgroup(s) can be frozen"
    ;;
  quiesce)
    for cg in $cgroups; do
      why=$(check_cgroup "$cg") || fail "$why"
    done
    budget=$((DEADLINE_MS - MARGIN_MS))
    [ "$budget" -gt 0 ] || budget=$POLL_MS
    done_list=""
    for cg in $cgroups; do
      if ! echo 1 > "$CGROUPFS$cg/cgroup.freeze"; then
        for undo in $done_list $cg; do thaw_one "$undo"; done
        fail "cgroup $cg: cannot write cgroup.freeze"
      fi
      done_list="$done_list $cg"
    done
    for cg in $cgroups; do
      if ! wait_state "$cg" 1 "$budget"; then
        for undo in $done_list; do thaw_one "$undo"; done
        fail "cgroup $cg did not freeze within $budget ms (a task stuck in the kernel?); thawed again"
      fi
    done
    json_detail "$count cgroup(s) frozen"
    ;;
  thaw)
    status=0
    for cg in $cgroups; do
      thaw_one "$cg" || status=1
    done
    for cg in $cgroups; do
      [ -f "$CGROUPFS$cg/cgroup.freeze" ] || continue
      wait_state "$cg" 0 "$((DEADLINE_MS - MARGIN_MS))" || status=1
    done
    [ "$status" -eq 0 ] || fail "some cgroups did not thaw"
    json_detail "$count cgroup(s) thawed"
    ;;
  validate)
    for cg in $cgroups; do
      why=$(check_cgroup "$cg") || fail "$why"
      [ "$(frozen_state "$cg")" = 0 ] || fail "cgroup $cg is still frozen"
    done
    json_detail "$count cgroup(s) running"
    ;;
esac
exit 0
