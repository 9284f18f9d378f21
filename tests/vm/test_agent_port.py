#!/usr/bin/env python3
"""VM scenario: the agent on its own virtio-serial port, around a migration.

The guest runs migration-agent installed from the .deb (packaging/build-deb.sh)
beside qemu-ga. From the host side, through the project's client:
`migctl --connect unix:HOST/ma.sock ping|info --json` answers on the source;
the agent keeps answering (no round trip stalls) while qemu-ga has the data disk
frozen; after a live migration, it answers on the destination's port."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402

# While qemu-ga's freeze holds, a command that touched the frozen disk would hang until the
# thaw: the test asserts that no round trip stalls (STALL_LIMIT, scaled with the machine);
# how fast the answers are (well under 100 ms on an idle host) is printed, and measured as a
# speed in tests/bench/bench-core.py, not asserted here.
STALL_LIMIT = 2.0 * vmlib.SCALE  # seconds
PINGS = 20
BURST = 40

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("agent-port")
st = {}


def build():
    st["deb"] = vmlib.ensure_deb()
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True, deb=st["deb"])
    vmlib.make_data_disk(h.disk)
    return os.path.basename(st["deb"])


def boot():
    g = st["src"] = h.guest("src", st["kernel"], st["initrd"]).start()
    m = g.wait_console(r"^MA-READY: uptime (\S+)s.*ma=(\S+)")
    if m.group(2) == "none":
        raise VMError("the guest has no org.migration_agent.0 port")
    _, dt = vmlib.wait_migctl(MIGCTL, g.ma_sock)
    return "userspace at %ss, agent port %s" % (m.group(1), m.group(2))


def ping_src():
    out, dt = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "ping")
    if out != {}:
        raise VMError("ping returned %r" % (out,))
    return "migctl ping in %.0f ms" % (dt * 1000)


def info_src():
    out, dt = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "info")
    if not isinstance(out, dict) or "version" not in out:
        raise VMError("info returned %r" % (out,))
    names = {c.get("name") for c in out.get("commands", []) if isinstance(c, dict)}
    if "ping" not in names or "info" not in names:
        raise VMError("info lists commands %r" % sorted(names))
    # the agent in the guest is the one from the .deb under test
    debver = re.match(r"migration-agent_([^-_+~]+)", os.path.basename(st["deb"])).group(1)
    if out["version"] != debver:
        raise VMError("agent version %r, .deb version %r" % (out["version"], debver))
    return "version %s, %d commands" % (out["version"], len(names))


def latencies(sock, n=PINGS):
    a = vmlib.Agent(sock)
    try:
        out = []
        for _ in range(n):
            t0 = vmlib.time.monotonic()
            if a.cmd("ping") != {}:
                raise VMError("ping over the raw protocol did not return {}")
            out.append(vmlib.time.monotonic() - t0)
        return out
    finally:
        a.close()


def baseline():
    lat = latencies(st["src"].ma_sock)
    st["baseline"] = max(lat)
    return "%d pings, max %.1f ms, median %.1f ms" % (
        len(lat), max(lat) * 1000, sorted(lat)[len(lat) // 2] * 1000)


def frozen():
    q = st["src"].qga()
    n = q.cmd("guest-fsfreeze-freeze", timeout=60)
    try:
        if q.cmd("guest-fsfreeze-status") != "frozen" or n < 1:
            raise VMError("qemu-ga did not freeze (%r)" % n)
        out, dt = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "ping", timeout=10)
        if out != {}:
            raise VMError("ping while frozen returned %r" % (out,))
        info, dt_info = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "info", timeout=10)
        lat = latencies(st["src"].ma_sock)
        worst = max(lat)
        if worst > STALL_LIMIT:
            raise VMError("a ping stalled %.1f ms while frozen (limit %.0f ms): %s" % (
                worst * 1000, STALL_LIMIT * 1000, ", ".join("%.1f" % (x * 1000) for x in lat)))
        still = q.cmd("guest-fsfreeze-status")
        if still != "frozen":
            raise VMError("the filesystems thawed during the measurement (%r)" % still)
    finally:
        q.cmd("guest-fsfreeze-thaw", timeout=60)
    if q.cmd("guest-fsfreeze-status") != "thawed":
        raise VMError("qemu-ga did not thaw")
    return ("%d fs frozen; migctl ping %.0f ms, info %.0f ms; %d raw pings max %.1f ms"
            % (n, dt * 1000, dt_info * 1000, len(lat), worst * 1000))


def migrate():
    st["dst"] = h.guest("dst", st["kernel"], st["initrd"], incoming=True).start()
    info = vmlib.migrate(st["src"], st["dst"])
    st["src"].stop()
    return "total %s ms, downtime %s ms" % (info.get("total-time"), info.get("downtime"))


def ping_dst():
    out, dt = vmlib.wait_migctl(MIGCTL, st["dst"].ma_sock, timeout=30 * vmlib.SCALE)
    info, _ = vmlib.migctl_ok(MIGCTL, st["dst"].ma_sock, "info")
    lat = latencies(st["dst"].ma_sock)
    return "migctl ping %.0f ms, version %s, raw pings max %.1f ms" % (
        dt * 1000, info.get("version"), max(lat) * 1000)


def burst_dst():
    # An orchestrator's calls right after the migration, each on a fresh
    # connection (as migctl makes one per call), must each be answered.
    # Each read-only command rides on its connection's sync, so a host that leaves and the
    # next one that writes at once test the agent's handling of a departure it sees late; an
    # answer must be the command's own (compared, not counted).
    fails = []
    for i in range(BURST):
        cmd = "ping" if i % 2 == 0 else "info"
        rc, out, err, dt = vmlib.migctl(MIGCTL, st["dst"].ma_sock, cmd, "--timeout", "3",
                                        timeout=15)
        if rc != 0:
            fails.append("call %d (%s): exit %d after %.1f s: %s" % (i + 1, cmd, rc, dt,
                                                                     err.strip()))
        elif (out != {}) if cmd == "ping" else not (isinstance(out, dict) and "version" in out):
            fails.append("call %d (%s): wrong answer %r" % (i + 1, cmd, out))
    if fails:
        raise VMError("%d of %d calls unanswered or answered wrongly: %s" % (len(fails), BURST, "; ".join(fails)))
    return "%d calls, all answered" % BURST


def qga_dst():
    q = st["dst"].qga(timeout=30)
    q.cmd("guest-ping")
    return None


def agent_alive():
    text = st["dst"].console_text()
    m = re.search(r"^MA-AGENT-EXIT: .*$", text, re.M)
    if m:
        raise VMError("the agent exited in the guest: %s" % m.group(0))
    for bad in ("CRITICAL", "Segmentation fault", "Trace/breakpoint trap"):
        if bad in text:
            raise VMError("%r on the guest console" % bad)
    return None


tap = vmlib.Tap([
    ("build the .deb, the guest image and the data disk", build),
    ("guest boots; the agent answers migctl on its port", boot),
    ("migctl ping over the virtio port on the source", ping_src),
    ("migctl info: the version of the .deb, core commands listed", info_src),
    ("ping round trip with the filesystems thawed (baseline)", baseline),
    ("with qemu-ga's freeze in force, the agent answers without stalling", frozen),
    ("live migration to a second QEMU on loopback completes", migrate),
    ("the agent answers on the destination's port", ping_dst),
    ("%d back-to-back migctl calls on the destination each answer" % BURST, burst_dst),
    ("every other call was answered on its first connection", vmlib.no_retries),
    ("qemu-ga answers on the destination too", qga_dst),
    ("the agent never exited nor logged a critical", agent_alive),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
