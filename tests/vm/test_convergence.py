#!/usr/bin/env python3
"""VM scenario: dirty-rate with soft-dirty and throttling with cpu.max in a real guest.

The Debian guest kernel has CONFIG_MEM_SOFT_DIRTY and cgroup v2 with the cpu controller
(the development host has neither). The guest (scenario `convergence`) runs a 128 MiB memory
dirtier in cgroup /batch and a service loop in /service; the agent's `batch` class throttles
/batch with cpu.max. Through the virtio port, from the host: `migctl dirty-rate` ranks the
dirtier first with method soft-dirty; `migctl throttle class=batch` writes cpu.max and the
dirtier slows down while the service does not stop; `migctl unthrottle` restores cpu.max
exactly."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402
import convergence_guest as cg  # noqa: E402

QUOTA = 2000           # µs per 100 ms: 2 % of a CPU
MIN_DIRTY_MIBS = 20.0  # the dirtier rewrites 128 MiB in a loop: far above this even under TCG
SLOWDOWN = 0.25        # throttled rate must be below this fraction of the free rate
SHORT = 0.5            # seconds: the interval for the free/throttled comparison

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("convergence")
st = {}


def build():
    st["deb"] = vmlib.ensure_deb()
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True)
    vmlib.make_data_disk(h.disk)
    st["load"] = cg.build_load()
    if not st["load"]:
        raise VMError("cannot build tests/vm/convergence-load.c statically (cc, libc.a)")
    return os.path.basename(st["deb"])


def boot():
    g = st["g"] = cg.start(h, "src", st["kernel"], st["initrd"], st["load"], quota=QUOTA)
    vmlib.wait_migctl(MIGCTL, g.ma_sock)
    info, _ = vmlib.migctl_ok(MIGCTL, g.ma_sock, "info")
    caps = info.get("capabilities", [])
    if "dirty-rate" not in caps or "throttle" not in caps:
        raise VMError("capabilities %r lack dirty-rate/throttle" % caps)
    return "capabilities %s" % ", ".join(caps)


def batch_entry(out):
    for p in out.get("processes", []):
        if p.get("cgroup") == "/batch":
            return p
    return None


def dirty_rate():
    out, dt = vmlib.migctl_ok(MIGCTL, st["g"].ma_sock, "dirty-rate", "seconds=2", "top=5",
                              timeout=60)
    if out.get("method") != "soft-dirty":
        raise VMError("method %r (%s)" % (out.get("method"), out.get("method-note")))
    first = out["processes"][0]
    if first.get("cgroup") != "/batch" or not first.get("comm", "").startswith("convergence"):
        raise VMError("the dirtier is not ranked first: %r" % out["processes"])
    if first["dirty-mib-per-s"] < MIN_DIRTY_MIBS:
        raise VMError("dirtier at %.1f MiB/s (expected > %.0f)" % (first["dirty-mib-per-s"],
                                                                  MIN_DIRTY_MIBS))
    # soft-dirty counts distinct pages: over 2 s the free dirtier covers its whole 128 MiB,
    # so compare free and throttled over a short interval where it is CPU-bound
    short, _ = vmlib.migctl_ok(MIGCTL, st["g"].ma_sock, "dirty-rate", "seconds=%s" % SHORT,
                               "top=20", timeout=60)
    st["free_rate"] = batch_entry(short)["dirty-mib-per-s"]
    # the human table, as an operator sees it
    r = subprocess.run([MIGCTL, "--connect", "unix:" + st["g"].ma_sock, "--no-color",
                        "dirty-rate", "seconds=1", "top=4"], capture_output=True, text=True,
                       timeout=60)
    vmlib.log(r.stdout)
    return ("method soft-dirty; dirtier %.1f MiB/s of guest %.1f MiB/s over 2 s (cost %.1f ms),"
            " %.1f MiB/s over %s s" % (first["dirty-mib-per-s"], out["guest-total-mib-per-s"],
                                        out["cost-ms"], st["free_rate"], SHORT))


def throttle():
    g = st["g"]
    st["cpu_max_before"] = g.qga().sh("cat /sys/fs/cgroup/batch/cpu.max").strip()
    out, _ = vmlib.migctl_ok(MIGCTL, g.ma_sock, "throttle", "class=batch", "lease_seconds=300",
                             "operation=vm-convergence")
    t = out["throttled"][0]
    c = t["cgroups"][0]
    want = "%d 100000" % QUOTA
    if c["file"] != "cpu.max" or c["applied"] != want or c["previous"] != st["cpu_max_before"]:
        raise VMError("throttle reported %r (cpu.max was %r)" % (c, st["cpu_max_before"]))
    now = g.qga().sh("cat /sys/fs/cgroup/batch/cpu.max").strip()
    if now != want:
        raise VMError("cpu.max in the guest is %r, expected %r" % (now, want))
    return "cpu.max %r -> %r" % (st["cpu_max_before"], now)


def throttled_rate():
    g = st["g"]
    s0 = cg.read_service(g)
    out, _ = vmlib.migctl_ok(MIGCTL, g.ma_sock, "dirty-rate", "seconds=%s" % SHORT, "top=20",
                             timeout=60)
    s1 = cg.read_service(g)
    b = batch_entry(out)
    rate = b["dirty-mib-per-s"] if b else 0.0
    if rate > st["free_rate"] * SLOWDOWN:
        raise VMError("throttled dirtier at %.1f MiB/s, free %.1f MiB/s" % (rate, st["free_rate"]))
    throttled = g.qga().sh("grep nr_throttled /sys/fs/cgroup/batch/cpu.stat").split()[1]
    if int(throttled) == 0:
        raise VMError("cpu.stat shows no throttled period")
    svc = cg.service_rate(s0, s1)
    if svc <= 0:
        raise VMError("the service made no progress while the batch class was throttled")
    return "dirtier %.1f -> %.1f MiB/s; %s throttled periods; service %.0f it/s" % (
        st["free_rate"], rate, throttled, svc)


def unthrottle():
    g = st["g"]
    out, _ = vmlib.migctl_ok(MIGCTL, g.ma_sock, "unthrottle", "class=batch")
    if len(out.get("released", [])) != 1 or out.get("still-throttled") != 0:
        raise VMError("unthrottle returned %r" % out)
    now = g.qga().sh("cat /sys/fs/cgroup/batch/cpu.max").strip()
    if now != st["cpu_max_before"]:
        raise VMError("cpu.max is %r after unthrottle, was %r" % (now, st["cpu_max_before"]))
    ev, _ = vmlib.migctl_ok(MIGCTL, g.ma_sock, "events", "after=0")
    names = [(e.get("event"), e.get("data", {}).get("reason")) for e in ev.get("events", [])]
    if ("THROTTLED", None) not in names or ("UNTHROTTLED", "unthrottle") not in names:
        raise VMError("events %r" % names)
    return "cpu.max restored to %r; THROTTLED and UNTHROTTLED sent" % now


def agent_alive():
    text = st["g"].console_text()
    for bad in ("MA-AGENT-EXIT", "CRITICAL", "Segmentation fault"):
        if bad in text:
            raise VMError("%r on the guest console" % bad)
    return None


tap = vmlib.Tap([
    ("build the .deb, the guest image and the static workload", build),
    ("guest runs a dirtier in /batch and a service in /service; the agent answers", boot),
    ("dirty-rate over the virtio port: soft-dirty, the dirtier ranked first", dirty_rate),
    ("throttle class=batch writes cpu.max in the guest", throttle),
    ("the throttled dirtier slows down; the service keeps running", throttled_rate),
    ("unthrottle restores cpu.max exactly", unthrottle),
    ("the agent never exited nor logged a critical", agent_alive),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
