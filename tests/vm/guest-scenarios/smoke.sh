#!/bin/sh
# smoke: write a file to the data disk and flush it, so that the host's
# freeze/thaw has real data under it; print what the guest sees.
set -e
echo "hello from $(hostname) at $(cut -d' ' -f1 /proc/uptime)s" > /data/smoke.txt
sync
grep ' /data ' /proc/mounts
cat /sys/class/virtio-ports/*/name | tr '\n' ' '; echo
