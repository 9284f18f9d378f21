#!/usr/bin/env python3
"""VM scenario: what a freeze runs into, and a freeze nobody ends.

The guest (ma.setup=blockers-setup) has periodic writeback off and the
agent's freeze guard set to a 6 s limit; guest-scenarios/blockers-load.sh
starts a flock holder on /data/locked.db, a writer appending to /data/app.log
every 0.2 s, and leaves 48 MiB dirty in /data/dirty.bin.

Proves, on a real ext4 virtio-blk disk: `migctl blockers` (over the virtio
port) names the lock and its holder, the writer and the dirty data, knows /data
is freezable and / (the initramfs) is not, and can be narrowed to /data; while
qemu-ga holds the freeze it still answers, now "blocked", with the writer
stuck in percpu_rwsem_wait on /data/app.log; after the thaw the writer is no
longer stuck; and when the orchestrator never thaws, the freeze guard thaws
/data by itself after its limit (FREEZE_GUARD_THAWED) and the writer runs
again."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402

DIRTY_MIN = 40 << 20
GUARD_LIMIT = 6

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("blockers")
st = {}


def ctl(*args, **kw):
    return vmlib.migctl_ok(MIGCTL, st["g"].ma_sock, *args, **kw)[0]


def pids():
    return dict(l.split() for l in st["q"].read_file("/run/blockers.pids").decode().splitlines())


def build():
    st["deb"] = vmlib.ensure_deb()
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True, deb=st["deb"])
    vmlib.make_data_disk(h.disk, size_mb=256)
    return os.path.basename(st["deb"])


def boot():
    g = st["g"] = h.guest("src", st["kernel"], st["initrd"], "ma.setup=blockers-setup").start()
    g.wait_console(r"^MA-SETUP-END: blockers-setup rc=0")
    g.wait_console(r"^MA-READY")
    vmlib.wait_migctl(MIGCTL, g.ma_sock)
    st["q"] = g.qga()
    out = st["q"].sh("/scenarios/blockers-load.sh")
    st["pids"] = pids()
    caps = ctl("info").get("capabilities", [])
    if "blockers" not in caps or "freeze-guard" not in caps:
        raise VMError("capabilities: %r" % caps)
    return "load started (%s); %s" % (", ".join("%s %s" % kv for kv in st["pids"].items()),
                                      out.strip())


def report():
    r = ctl("blockers", timeout=60)
    mounts = {m["mountpoint"]: m for m in r.get("mounts", [])}
    if not mounts.get("/data", {}).get("freezable"):
        raise VMError("/data not freezable: %r" % mounts.get("/data"))
    if mounts.get("/", {}).get("freezable"):
        raise VMError("/ (rootfs) reported freezable: %r" % mounts.get("/"))
    if "/data" not in r.get("freeze_order", []):
        raise VMError("freeze_order %r" % r.get("freeze_order"))
    locks = [l for l in r.get("locks", []) if l.get("path") == "/data/locked.db"]
    holders = {str(x.get("pid")) for l in locks for x in l.get("holders", [])}
    if not locks or locks[0].get("type") != "FLOCK" or st["pids"]["lock"] not in holders:
        raise VMError("lock on /data/locked.db: %r (holder pid %s)" % (locks, st["pids"]["lock"]))
    writers = [w for w in r.get("writers", []) if w.get("path") == "/data/app.log"]
    if not writers or str(writers[0].get("pid")) != st["pids"]["writer"]:
        raise VMError("writer of /data/app.log: %r" % r.get("writers"))
    wb = r.get("writeback", {})
    if wb.get("dirty_bytes", 0) < DIRTY_MIN:
        raise VMError("dirty data %r (wrote 48 MiB with writeback off)" % wb)
    codes = {x.get("code") for x in r.get("reasons", [])}
    if not {"locks", "writers"} <= codes or r.get("verdict") == "blocked":
        raise VMError("verdict %r reasons %r" % (r.get("verdict"), r.get("reasons")))
    qga = r.get("qemu_ga", {})
    if not qga.get("running") or qga.get("frozen"):
        raise VMError("qemu_ga: %r" % qga)
    return "verdict %s (%s); %.0f MiB dirty, est. sync %.2f s; scan %.2f s" % (
        r.get("verdict"), ", ".join(sorted(codes)), wb.get("dirty_bytes", 0) / 2**20,
        wb.get("estimated_sync_seconds", 0), r.get("scan", {}).get("seconds", 0))


def narrowed():
    r = ctl("blockers", 'mountpoints=["/data"]', timeout=60)
    sel = [m["mountpoint"] for m in r.get("mounts", []) if m.get("selected")]
    if sel != ["/data"] or r.get("freeze_order") != ["/data"]:
        raise VMError("selected %r, freeze_order %r" % (sel, r.get("freeze_order")))
    rc, out, err, _ = vmlib.migctl(MIGCTL, st["g"].ma_sock, "blockers",
                                   'mountpoints=["/no/such"]')
    if rc != 1 or "not a mountpoint" not in (str(out) + err):
        raise VMError("a path that is not a mountpoint: exit %d %s %s" % (rc, out, err))
    return "only /data selected; a non-mountpoint is refused (%s)" % err.strip()


def stuck_writers(r):
    return [s for s in r.get("stuck", []) if s.get("waits_for_freeze")
            and s.get("path") == "/data/app.log"]


def while_frozen():
    q = st["q"]
    t0 = time.monotonic()
    n = q.cmd("guest-fsfreeze-freeze", timeout=120)
    st["freeze_seconds"] = time.monotonic() - t0
    try:
        until = time.monotonic() + 30 * vmlib.SCALE
        while True:
            r = ctl("blockers", timeout=60)
            if stuck_writers(r):
                break
            if time.monotonic() > until:
                raise VMError("the writer never showed as stuck: %r" % r.get("stuck"))
            time.sleep(0.3)
        codes = {x.get("code") for x in r.get("reasons", [])}
        if r.get("verdict") != "blocked" or "qemu-ga-frozen" not in codes:
            raise VMError("while frozen: verdict %r reasons %r" % (r.get("verdict"), codes))
        s = stuck_writers(r)[0]
    finally:
        q.cmd("guest-fsfreeze-thaw", timeout=120)
    return "%d fs frozen in %.2f s (48 MiB flushed); verdict blocked (%s); writer pid %s " \
           "stuck in %s" % (n, st["freeze_seconds"], ", ".join(sorted(codes)), s.get("pid"),
                            s.get("wchan"))


def after_thaw():
    until = time.monotonic() + 30 * vmlib.SCALE
    while True:
        r = ctl("blockers", timeout=60)
        if not stuck_writers(r) and r.get("verdict") != "blocked":
            return "verdict %s, nothing stuck" % r.get("verdict")
        if time.monotonic() > until:
            raise VMError("still blocked after the thaw: %r %r" % (r.get("verdict"),
                                                                    r.get("stuck")))
        time.sleep(0.3)


def guard():
    q = st["q"]
    fg = ctl("freeze-guard")
    if not fg.get("enabled") or fg.get("limit-seconds") != GUARD_LIMIT:
        raise VMError("freeze-guard: %r" % fg)
    seq = ctl("status").get("last-event-seq", 0)
    q.cmd("guest-fsfreeze-freeze", timeout=120)
    t0 = time.monotonic()
    # the orchestrator "dies" here: nobody thaws; the guard must
    until = time.monotonic() + (GUARD_LIMIT + 60) * vmlib.SCALE
    while True:
        ev = [e for e in ctl("events", "after=%d" % seq).get("events", [])
              if e.get("event") == "FREEZE_GUARD_THAWED"]
        if ev:
            break
        if time.monotonic() > until:
            q.cmd("guest-fsfreeze-thaw", timeout=120)
            raise VMError("the freeze guard did not thaw within %d s: %r" % (
                GUARD_LIMIT + 60, ctl("freeze-guard")))
        time.sleep(0.5)
    dt = time.monotonic() - t0
    d = ev[0]["data"]
    if "/data" not in d.get("mounts", []):
        q.cmd("guest-fsfreeze-thaw", timeout=120)
        raise VMError("FREEZE_GUARD_THAWED: %r" % d)
    # the writer runs again although qemu-ga still believes the guest frozen
    r = ctl("blockers", timeout=60)
    was_frozen = q.cmd("guest-fsfreeze-status")
    q.cmd("guest-fsfreeze-thaw", timeout=120)  # clears qemu-ga's own state, harmless
    if stuck_writers(r):
        raise VMError("writer still stuck after the guard's thaw: %r" % r.get("stuck"))
    return "thawed %s after %.1f s (limit %d s; evidence %s); qemu-ga said %r until told" % (
        ", ".join(d.get("mounts", [])), dt, GUARD_LIMIT, ",".join(d.get("evidence", [])),
        was_frozen)


tap = vmlib.Tap([
    ("build the .deb, the guest and a 256 MiB data disk", build),
    ("guest boots with a 6 s freeze guard; lock holder, writer, dirty data", boot),
    ("blockers names the lock holder, the writer and the dirty data", report),
    ("blockers narrowed to /data; a non-mountpoint is refused", narrowed),
    ("while qemu-ga holds the freeze: blocked, the writer stuck on /data", while_frozen),
    ("after the thaw nothing is stuck", after_thaw),
    ("a freeze nobody ends is thawed by the freeze guard", guard),
    ("every call was answered on its first connection", vmlib.no_retries),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
