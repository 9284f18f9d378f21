#!/usr/bin/env python3
"""Idle wakeups inside a real guest: migration-agent and qemu-ga side by side on
their virtio-serial ports with no host connected (the state a guest spends most
of its life in). qemu-ga re-reads its port every 100 ms while no host is
connected; the agent waits for the SIGIO that virtio_console sends on a host
connect. Boots one TCG guest built by tests/vm (the agent from the .deb), runs
the guest scenario `idle-wakeups` (context switches of both over 10 s, counted
in the guest from /proc/PID/status), prints both and their ratio.

usage: MIGCTL=BUILD/agent/client/migctl tests/bench/bench-idle-vm.py
(MA_VM_CACHE, MA_DEB and the other tests/vm variables apply.)
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vm"))
import vmlib  # noqa: E402


def main():
    vmlib.require_host_tools(agent=True)
    h = vmlib.Harness("bench-idle")
    failed = True
    try:
        deb = vmlib.ensure_deb()
        kernel, initrd = vmlib.ensure_guest(with_agent=True, deb=deb)
        vmlib.make_data_disk(h.disk)
        g = h.guest("idle", kernel, initrd, append="ma.scenario=idle-wakeups").start()
        m = g.wait_console(r"^MA-IDLE: seconds=(\d+) agent=(\d+) qemu-ga=(\d+)",
                           timeout=120 * vmlib.SCALE)
        secs, agent, qga = (int(x) for x in m.groups())
        print("idle guest, no host connected to either port, %d s:" % secs)
        print("%-40s %16s %12s %8s" % ("metric", "migration-agent", "qemu-ga", "ratio"))
        ratio = "%.2f" % (agent / qga) if qga else "n/a (peer 0)"
        print("%-40s %16d %12d %8s" % ("context switches (wakeups)", agent, qga, ratio))
        print("%-40s %16.1f %12.1f" % ("wakeups per second", agent / secs, qga / secs))
        print("goal: fewer wakeups than qemu-ga (ratio < 1.00)")
        failed = False
    except vmlib.VMError as e:
        print("bench failed: %s" % e, file=sys.stderr)
        h.dump()
    finally:
        h.close(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
