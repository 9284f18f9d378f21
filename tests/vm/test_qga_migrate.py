#!/usr/bin/env python3
"""VM scenario: the proving ground itself, with qemu-ga only (no agent).

Boots a guest, qemu-ga answers guest-ping, freezes and thaws the ext4 data
disk, the guest is live-migrated to a second QEMU on loopback, and qemu-ga
answers on the destination's socket with the data disk intact."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError, log  # noqa: E402

vmlib.require_host_tools()
vmlib.retry_after_guest_crash()
h = vmlib.Harness("qga-migrate")
st = {}


def build():
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=False)
    vmlib.make_data_disk(h.disk)


def boot():
    g = st["src"] = h.guest("src", st["kernel"], st["initrd"], "ma.scenario=smoke").start()
    m = g.wait_console(r"^MA-READY: uptime (\S+)")
    g.wait_console(r"^MA-SCENARIO-END: smoke rc=0", timeout=60)
    return "guest userspace ready at %s guest uptime" % m.group(1)


def ping():
    q = st["src"].qga()
    q.cmd("guest-ping")
    info = q.cmd("guest-info")
    return "qemu-ga %s" % info.get("version")


def freeze():
    q = st["src"].qga()
    fs = q.cmd("guest-get-fsinfo")
    if not any(f.get("mountpoint") == "/data" and f.get("type") == "ext4" for f in fs):
        raise VMError("/data (ext4) not in guest-get-fsinfo: %r" % fs)
    n = q.cmd("guest-fsfreeze-freeze", timeout=60)
    if not isinstance(n, int) or n < 1:
        raise VMError("guest-fsfreeze-freeze froze %r filesystems" % n)
    s = q.cmd("guest-fsfreeze-status")
    if s != "frozen":
        raise VMError("status after freeze: %r" % s)
    return "%d filesystem(s) frozen" % n


def thaw():
    q = st["src"].qga()
    n = q.cmd("guest-fsfreeze-thaw", timeout=60)
    s = q.cmd("guest-fsfreeze-status")
    if s != "thawed":
        raise VMError("status after thaw: %r" % s)
    return "%d filesystem(s) thawed" % n


def migrate():
    st["dst"] = h.guest("dst", st["kernel"], st["initrd"], "ma.scenario=smoke",
                        incoming=True).start()
    info = vmlib.migrate(st["src"], st["dst"])
    st["src"].stop()
    return "total %s ms, downtime %s ms" % (info.get("total-time"), info.get("downtime"))


def ping_dst():
    q = st["dst"].qga(timeout=30)
    q.cmd("guest-ping")
    s = q.cmd("guest-fsfreeze-status")
    if s != "thawed":
        raise VMError("status on the destination: %r" % s)
    data = q.read_file("/data/smoke.txt")
    if not data.startswith(b"hello from guest"):
        raise VMError("/data/smoke.txt on the destination: %r" % data)
    return "qemu-ga answers, /data readable"


def freeze_dst():
    q = st["dst"].qga()
    n = q.cmd("guest-fsfreeze-freeze", timeout=60)
    s1 = q.cmd("guest-fsfreeze-status")
    q.cmd("guest-fsfreeze-thaw", timeout=60)
    s2 = q.cmd("guest-fsfreeze-status")
    if (s1, s2) != ("frozen", "thawed"):
        raise VMError("freeze/thaw on the destination: %r, %r" % (s1, s2))
    return "%d filesystem(s) frozen and thawed" % n


tap = vmlib.Tap([
    ("build the guest image and data disk", build),
    ("guest boots to userspace and runs its scenario", boot),
    ("qemu-ga answers guest-ping on the source", ping),
    ("qemu-ga freezes the ext4 data disk (status frozen)", freeze),
    ("qemu-ga thaws it (status thawed)", thaw),
    ("live migration to a second QEMU on loopback completes", migrate),
    ("qemu-ga answers on the destination's socket", ping_dst),
    ("freeze and thaw work on the destination", freeze_dst),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
