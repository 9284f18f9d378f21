#!/bin/sh
# blockers-load (run through qemu-ga's guest-exec): what a freeze runs into.
#   vm-lockhold holding an exclusive flock on /data/locked.db
#   a writer appending to /data/app.log every 0.2 s (it blocks while /data is frozen)
#   48 MiB of dirty page cache in /data/dirty.bin (writeback is off: see blockers-setup)
# Detached from guest-exec (setsid, no inherited pipes); pids in /run/blockers.pids.
set -eu
setsid /usr/local/bin/vm-lockhold flock /data/locked.db </dev/null >/dev/null 2>&1 &
echo "lock $!" > /run/blockers.pids
setsid sh -c 'exec 3>>/data/app.log; while :; do echo tick >&3; usleep 200000; done' \
    </dev/null >/dev/null 2>&1 &
echo "writer $!" >> /run/blockers.pids
dd if=/dev/zero of=/data/dirty.bin bs=1M count=48 2>/dev/null
grep -E '^(Dirty|Writeback):' /proc/meminfo | tr -s ' ' | tr '\n' ' '
echo
