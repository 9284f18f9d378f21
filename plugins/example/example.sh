#!/bin/sh
# example.sh — a complete oneshot quiesce plugin in shell, for the author guide
# (plugins/README.md). It "quiesces" a pretend application by creating a flag file
# that the application would honour, and removes it again on thaw.
#
# The agent runs it as `example.sh PHASE` with PHASE one of check, quiesce, thaw,
# validate; exit status 0 means success. The last line of stdout may be a JSON
# object with a "detail" the agent reports. Everything else on stdout/stderr goes
# to the agent's log under this plugin's name.
set -eu

flag="${MA_STATE_DIR:?run me from migration-agent}/paused"

case "${1:-}" in
  check)
    # Refuse when quiescing now would hurt (e.g. a long transaction is open).
    echo '{"detail": "nothing stops a quiesce"}'
    ;;
  quiesce)
    # Must finish before MA_DEADLINE_MS or the agent kills the whole process group.
    touch "$flag"
    echo "{\"detail\": \"paused for operation $MA_OPERATION, lease $MA_LEASE_SECONDS s\"}"
    ;;
  thaw)
    # Must succeed even if quiesce never ran or failed halfway: release what is held.
    rm -f "$flag"
    echo '{"detail": "resumed"}'
    ;;
  validate)
    # After the guest resumed: is the application healthy?
    [ ! -e "$flag" ] || { echo "still paused" >&2; exit 1; }
    ;;
  *)
    echo "usage: $0 check|quiesce|thaw|validate" >&2
    exit 2
    ;;
esac
