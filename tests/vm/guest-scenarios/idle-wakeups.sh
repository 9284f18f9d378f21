#!/bin/sh
# idle-wakeups: with no host connected to either port, count the context
# switches of qemu-ga and of the agent over an idle period (tests/bench/
# bench-idle-vm.py reads the MA-IDLE line from the console).
secs=${1:-10}
ctxt() {
    awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { n += $2 } END { print n }' "/proc/$1/status"
}
sleep 3   # let both finish starting
qga=$(pidof qemu-ga)
ma=$(pidof migration-agent)
q0=$(ctxt "$qga"); m0=$(ctxt "$ma")
sleep "$secs"
q1=$(ctxt "$qga"); m1=$(ctxt "$ma")
echo "MA-IDLE: seconds=$secs agent=$((m1 - m0)) qemu-ga=$((q1 - q0))"
