#!/bin/sh
# blockers-setup (ma.setup=, before the agent starts): a short freeze guard so
# that test_blockers.py can watch it thaw a freeze nobody ended, and no
# periodic writeback, so that dirty data stays dirty until the freeze.
mkdir -p /etc/migration-agent/agent.conf.d
cat > /etc/migration-agent/agent.conf.d/50-vm-blockers.conf <<'EOS'
[freeze-guard]
limit-seconds=6
poll-seconds=1
EOS
echo 0 > /proc/sys/vm/dirty_writeback_centisecs
echo 360000 > /proc/sys/vm/dirty_expire_centisecs
echo $((400 << 20)) > /proc/sys/vm/dirty_background_bytes
echo $((450 << 20)) > /proc/sys/vm/dirty_bytes
