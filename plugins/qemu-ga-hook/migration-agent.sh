#!/bin/sh
# migration-agent — qemu-ga fsfreeze hook: quiesce the applications through migration-agent
# before qemu-ga freezes the filesystems, and release them after it thaws.
#
# Installed as /etc/qemu/fsfreeze-hook.d/migration-agent, run by qemu-ga's fsfreeze-hook
# with `freeze` or `thaw`; it can also be qemu-ga's hook itself (qemu-ga -F PATH), which
# makes a failed quiesce fail guest-fsfreeze-freeze. Exits non-zero when the agent refuses.
#
# Settings (environment, or /etc/default/migration-agent-qemu-ga-hook):
#   MA_QGA_LEASE_SECONDS  lease of the quiesce (default 300): if no thaw comes within it,
#                         migration-agent releases the applications by itself
#   MA_QGA_TIMEOUT        seconds migctl waits for the agent's answer (default 120)
#   MIGCTL                the client (default migctl in PATH)
set -u

[ -r /etc/default/migration-agent-qemu-ga-hook ] && . /etc/default/migration-agent-qemu-ga-hook

MIGCTL="${MIGCTL:-migctl}"
LEASE="${MA_QGA_LEASE_SECONDS:-300}"
TIMEOUT="${MA_QGA_TIMEOUT:-120}"

case "${1:-}" in
  freeze)
    # seconds and the hook's pid: unique per freeze, and portable (busybox date has no %N)
    operation="qemu-ga-$(date +%s)-$$"
    "$MIGCTL" --no-color --timeout "$TIMEOUT" quiesce "operation=$operation" \
      "lease_seconds=$LEASE"
    status=$?
    [ $status -eq 0 ] || echo "migration-agent quiesce failed (status $status)" >&2
    exit $status
    ;;
  thaw)
    "$MIGCTL" --no-color --timeout "$TIMEOUT" thaw
    status=$?
    [ $status -eq 0 ] || echo "migration-agent thaw failed (status $status)" >&2
    exit $status
    ;;
  *)
    # qemu-ga's hook runner passes only freeze and thaw; anything else is not for us
    exit 0
    ;;
esac
