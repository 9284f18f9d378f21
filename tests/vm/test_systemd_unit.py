#!/usr/bin/env python3
"""VM scenario: the packaging in a systemd guest.

systemd is PID 1 with udevd and journald; nothing starts the agents but
their own udev rules and units: 60-migration-agent.rules and
migration-agent.service from the .deb, qemu-guest-agent's from the host.
Proves: udev pulls the unit in when the port appears; Type=notify reaches
"running"; the unit's hardening is in force (capability bounding set, no new
privileges, seccomp) and the agent still serves the port and its control
socket (/run/migration-agent 0700, control.sock 0600); it answers while
qemu-ga has the filesystems frozen; it pings the systemd watchdog (checked
with a short WatchdogSec= drop-in, as an administrator would set one); a
restarted agent serves the host again; after a live migration it is the
same process, answering on the destination's port; and the sandbox lets its
resume validation probe the gateway with ARP and send its announcements."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402

UNIT = "migration-agent.service"
DEVICE_UNIT = r"dev-virtio\x2dports-org.migration_agent.0.device"

CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
for tool in ("/lib/systemd/systemd", "/bin/udevadm", "/bin/systemctl"):
    if not os.path.exists(tool):
        vmlib.skip_all("%s not on the host (the guest borrows the host's systemd)" % tool)
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("systemd-unit")
st = {}


def show(q, unit, *props):
    out = q.exec(["/bin/systemctl", "show", unit, "-p", ",".join(props)])[1]
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_setting(key):
    """The words of every KEY= line of the unit in packaging/."""
    with open(os.path.join(vmlib.SRCROOT, "packaging", "migration-agent.service.in")) as fp:
        return [word for line in re.findall(r"^%s=(.*)$" % key, fp.read(), re.M)
                for word in line.split()]


def unit_caps():
    """The capability bounding set the unit in packaging/ declares."""
    mask = 0
    for name in unit_setting("CapabilityBoundingSet"):
        mask |= 1 << CAPS.index(name)
    return mask


def unit_environment():
    """The environment the unit in packaging/ gives the agent (its Environment= lines)."""
    return unit_setting("Environment")


def build():
    st["deb"] = vmlib.ensure_deb()
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True, flavour="systemd", deb=st["deb"])
    vmlib.make_data_disk(h.disk)
    return os.path.basename(st["deb"])


def boot():
    g = st["src"] = h.guest("src", st["kernel"], st["initrd"], "ma.scenario=smoke").start()
    g.wait_console(r"Started migration-agent\.service")
    m = g.wait_console(r"Startup finished in .* = (\S+)s\.")
    vmlib.wait_migctl(MIGCTL, g.ma_sock)
    st["q"] = g.qga()
    return "systemd startup finished in %ss (guest time)" % m.group(1)


def pulled_by_udev():
    q = st["q"]
    # systemd hangs SYSTEMD_WANTS on the port's sysfs device unit; the
    # /dev/virtio-ports/NAME unit (BindsTo=) is the same device by its link
    link = show(q, DEVICE_UNIT, "ActiveState", "SysFSPath")
    svc = show(q, UNIT, "BindsTo", "WantedBy")
    wanted_by = svc.get("WantedBy", "").replace('"', "").replace("\\\\", "\\").split()
    if link.get("ActiveState") != "active" or not wanted_by:
        raise VMError("device %r, service %r" % (link, svc))
    dev = show(q, wanted_by[0], "SysFSPath", "Wants")
    if dev.get("SysFSPath") != link.get("SysFSPath") or UNIT not in dev.get("Wants", ""):
        raise VMError("%s is wanted by %r (%r), the port is %r" % (UNIT, wanted_by, dev, link))
    if DEVICE_UNIT not in svc.get("BindsTo", "").replace("\\\\", "\\"):
        raise VMError("unit BindsTo=%r" % svc.get("BindsTo"))
    rc, out, err = q.exec(["/bin/udevadm", "info", "-q", "property",
                           "/dev/virtio-ports/org.migration_agent.0"])
    if not re.search(r"^SYSTEMD_WANTS=.*migration-agent\.service", out, re.M):
        raise VMError("udev properties of the port: %s %s" % (out, err))
    return "SYSTEMD_WANTS on %s" % link.get("SysFSPath")


def running():
    s = show(st["q"], UNIT, "ActiveState", "SubState", "Type", "MainPID", "NRestarts",
             "WatchdogUSec", "StatusText")
    want = {"ActiveState": "active", "SubState": "running", "Type": "notify",
            "NRestarts": "0", "WatchdogUSec": "30s"}
    bad = {k: s.get(k) for k, v in want.items() if s.get(k) != v}
    if bad:
        raise VMError("systemctl show %s: %r (all: %r)" % (UNIT, bad, s))
    st["pid"] = s["MainPID"]
    return "active (running), Type=notify, MainPID %s, watchdog 30s" % s["MainPID"]


def hardening():
    q = st["q"]
    status = q.read_file("/proc/%s/status" % st["pid"]).decode()
    f = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    capbnd = int(f["CapBnd"].strip(), 16)
    if capbnd != unit_caps():
        raise VMError("CapBnd %x, the unit declares %x" % (capbnd, unit_caps()))
    if f.get("NoNewPrivs", "").strip() != "1":
        raise VMError("NoNewPrivs=%r" % f.get("NoNewPrivs"))
    if f.get("Seccomp", "").strip() != "2":
        raise VMError("Seccomp=%r (2 = filter)" % f.get("Seccomp"))
    # same mount namespace as PID 1: mount IDs must match the applications'
    ns_agent = q.exec(["/bin/readlink", "/proc/%s/ns/mnt" % st["pid"]])[1].strip()
    ns_init = q.exec(["/bin/readlink", "/proc/1/ns/mnt"])[1].strip()
    if ns_agent != ns_init:
        raise VMError("the agent has its own mount namespace (%s vs %s)" % (ns_agent, ns_init))
    names = [n for i, n in enumerate(CAPS) if capbnd >> i & 1]
    return "CapBnd=%s, NoNewPrivs, seccomp filter, host mount namespace" % ",".join(
        n[4:].lower() for n in names)


def environment():
    # the unit's malloc settings reach the agent (they keep its private memory near half a
    # MiB idle); the figure is the agent's own, read in the guest
    q = st["q"]
    env = q.read_file("/proc/%s/environ" % st["pid"]).decode(errors="replace").split("\0")
    want = unit_environment()
    if not want:
        raise VMError("the unit declares no Environment= (the test expects the malloc settings)")
    missing = [kv for kv in want if kv not in env]
    if missing:
        raise VMError("the agent's environment lacks %r (it has %r)" % (missing, env))
    rollup = q.read_file("/proc/%s/smaps_rollup" % st["pid"]).decode()
    anon = int(re.search(r"^Anonymous:\s+(\d+) kB", rollup, re.M).group(1))
    return "%s; private anonymous memory %d KiB" % (" ".join(want), anon)


def state_dir():
    q = st["q"]
    out = q.sh("stat -c '%a %U %F' /run/migration-agent /run/migration-agent/control.sock")
    lines = out.strip().splitlines()
    if lines[0] != "700 root directory" or not lines[1].startswith("600 root socket"):
        raise VMError("state dir: %r" % lines)
    rc, out, err = q.exec(["/usr/bin/migctl", "ping", "--json"])
    if rc != 0 or out.strip() != "{}":
        raise VMError("migctl in the guest: exit %s: %s %s" % (rc, out, err))
    return "/run/migration-agent 0700, control.sock 0600, migctl in the guest answers"


PLUGIN_SH = b"""#!/bin/sh
echo "{\\"detail\\": \\"$MA_PHASE as uid $(id -u)\\"}"
"""
PLUGIN_MANIFEST = b"""[Plugin]
Description=VM test: a plugin that runs as another user
Exec=/etc/migration-agent/plugins.d/vmuser.sh
User=nobody
Timeout=10
"""


def plugins_under_unit():
    # plugins are the agent's children: they inherit the sandbox; a User=
    # plugin needs CAP_SETUID/CAP_SETGID in the bounding set
    q = st["q"]
    q.write_file("/etc/migration-agent/plugins.d/vmuser.sh", PLUGIN_SH)
    q.write_file("/etc/migration-agent/plugins.d/vmuser.plugin", PLUGIN_MANIFEST)
    q.sh("chmod 0755 /etc/migration-agent/plugins.d/vmuser.sh; "
         "chmod 0644 /etc/migration-agent/plugins.d/vmuser.plugin; "
         "sed 's/^Enabled=false/Enabled=true/' /usr/lib/migration-agent/plugins.d/example.plugin"
         " > /etc/migration-agent/plugins.d/example.plugin")
    out = []
    for name in ("example", "vmuser"):
        r, _ = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "plugin-test", name, timeout=60)
        if not r.get("ok"):
            raise VMError("plugin-test %s under the unit: %r" % (name, r))
        out.append(r)
    details = [p.get("detail", "") for p in out[1].get("phases", [])]
    if not any("as uid 65534" in d for d in details):
        raise VMError("vmuser did not run as nobody: %r" % details)
    q.sh("rm -f /etc/migration-agent/plugins.d/vmuser.* /etc/migration-agent/plugins.d/example.plugin")
    return "example and a User=nobody plugin pass every phase (%s)" % "; ".join(details)


VMAPP_UNIT = b"""[Unit]
Description=VM test application: counts in /run/vmapp.count
[Service]
ExecStart=/bin/sh -c 'n=0; while :; do n=$((n+1)); echo $n > /run/vmapp.count; usleep 50000; done'
"""


def app_count():
    return int(st["q"].read_file("/run/vmapp.count").decode().strip() or 0)


def count_moves(seconds=1.0):
    a = app_count()
    time.sleep(seconds)
    return app_count() - a


def systemd_unit_plugin():
    # the shipped systemd-unit plugin freezes a service's cgroup (cgroup v2
    # freezer) under the agent's sandbox, and thaws it
    q = st["q"]
    q.write_file("/etc/systemd/system/vmapp.service", VMAPP_UNIT)
    q.write_file("/etc/migration-agent/systemd-unit.env", b"SYSTEMD_UNITS=vmapp.service\n")
    q.sh("chmod 0600 /etc/migration-agent/systemd-unit.env; "
         "sed 's/^Enabled=false/Enabled=true/' "
         "/usr/lib/migration-agent/plugins.d/systemd-unit.plugin "
         "> /etc/migration-agent/plugins.d/systemd-unit.plugin; "
         "systemctl daemon-reload && systemctl start vmapp.service", timeout=60)
    until = time.monotonic() + 30 * vmlib.SCALE
    while True:  # wait for the application to be counting
        try:
            if count_moves(0.5) > 0:
                break
        except Exception:  # noqa: BLE001 -- the count file appears once it runs
            pass
        if time.monotonic() > until:
            raise VMError("vmapp.service never counted")
    try:
        r, _ = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "quiesce", "operation=sd-unit-1",
                               "lease_seconds=60", 'plugins=["systemd-unit"]', timeout=60)
        if r.get("state") != "quiesced":
            raise VMError("quiesce: %r" % r)
        cg = show(q, "vmapp.service", "ControlGroup")["ControlGroup"]
        events = q.read_file("/sys/fs/cgroup%s/cgroup.events" % cg).decode()
        frozen_moves = count_moves(1.0)
        if "frozen 1" not in events or frozen_moves != 0:
            raise VMError("vmapp while quiesced: %r, counted %d" % (events, frozen_moves))
    finally:
        vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "thaw", "operation=sd-unit-1", timeout=60)
    # running again: wait for it (a loaded host slows the guest, and the
    # cgroup thaws asynchronously), never judge from one fixed interval
    t0 = time.monotonic()
    until = t0 + 30 * vmlib.SCALE
    first = app_count()
    while True:
        events = q.read_file("/sys/fs/cgroup%s/cgroup.events" % cg).decode()
        moved = app_count() - first
        if "frozen 0" in events and moved > 0:
            break
        if time.monotonic() > until:
            raise VMError("vmapp did not resume after the thaw: %r, counted %d in %.0f s" % (
                events, moved, time.monotonic() - t0))
        time.sleep(0.2)
    dt = time.monotonic() - t0
    q.sh("systemctl stop vmapp.service; rm -f /etc/migration-agent/plugins.d/systemd-unit.plugin")
    return "vmapp.service frozen (cgroup.events frozen 1, 0 counts in 1 s), then counting " \
           "again %.1f s after the thaw (frozen 0)" % dt


FLAG = "/run/migration-agent/plugins/example/paused"


def flag_present():
    rc, out, err = st["q"].exec(["/bin/sh", "-c", "test -e %s" % FLAG])
    return rc == 0


def agent_pid():
    return show(st["q"], UNIT, "MainPID")["MainPID"]


def wait_new_agent(old_pid):
    until = time.monotonic() + 60 * vmlib.SCALE
    while True:
        s = show(st["q"], UNIT, "MainPID", "ActiveState", "SubState", "NRestarts")
        if s.get("MainPID") not in ("0", old_pid) and s.get("SubState") == "running":
            vmlib.wait_migctl(MIGCTL, st["src"].ma_sock, timeout=30 * vmlib.SCALE)
            return s
        if time.monotonic() > until:
            raise VMError("the agent did not come back: %r" % s)
        time.sleep(0.3)


def enable_example():
    st["q"].sh("sed 's/^Enabled=false/Enabled=true/' "
               "/usr/lib/migration-agent/plugins.d/example.plugin "
               "> /etc/migration-agent/plugins.d/example.plugin")


def stop_while_quiesced():
    # SIGTERM (systemctl restart; KillMode=mixed signals only the agent): the
    # agent itself releases what it holds before it exits
    enable_example()
    vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "quiesce", "operation=sd-stop-1",
                    "lease_seconds=300", 'plugins=["example"]', timeout=60)
    if not flag_present():
        raise VMError("the example plugin did not quiesce (no %s)" % FLAG)
    old = agent_pid()
    st["q"].sh("systemctl restart %s" % UNIT, timeout=90)
    s = wait_new_agent(old)
    if flag_present():
        raise VMError("restart left the example plugin quiesced")
    rc, out, err = st["q"].exec(["/bin/journalctl", "-b", "-q", "--no-pager", "-u", UNIT,
                                 "-g", "agent stopping"])
    return "released before exit (%s); new MainPID %s" % (
        (out.strip().splitlines() or ["no journal line"])[-1].split(": ", 1)[-1][:70],
        s.get("MainPID"))


def killed_while_quiesced():
    # SIGKILL: nothing can be released by the dying agent. Restart=on-failure
    # brings it back and, from the quiesce journal kept in the preserved
    # RuntimeDirectory, it thaws the oneshot plugins the old one left quiesced
    vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "quiesce", "operation=sd-kill-1",
                    "lease_seconds=300", 'plugins=["example"]', timeout=60)
    if not flag_present():
        raise VMError("the example plugin did not quiesce")
    old = agent_pid()
    n0 = int(show(st["q"], UNIT, "NRestarts")["NRestarts"])
    st["q"].sh("systemctl kill -s KILL %s" % UNIT)
    s = wait_new_agent(old)
    until = time.monotonic() + 30 * vmlib.SCALE
    while True:
        ev = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "events")[0].get("events", [])
        replay = [e["data"] for e in ev if e.get("event") == "THAWED"
                  and e.get("data", {}).get("replayed")]
        if replay:
            break
        if time.monotonic() > until:
            raise VMError("no replayed THAWED after the restart: %r" % ev)
        time.sleep(0.3)
    if flag_present():
        raise VMError("the example plugin is still quiesced after the replay")
    if int(s.get("NRestarts", 0)) != n0 + 1:
        raise VMError("NRestarts %s (was %d): not restarted by Restart=on-failure" % (
            s.get("NRestarts"), n0))
    st["q"].sh("rm -f /etc/migration-agent/plugins.d/example.plugin")
    st["pid"] = s["MainPID"]
    return "restarted by systemd (NRestarts %s); THAWED replayed: %s (%s)" % (
        s.get("NRestarts"), ",".join(replay[0].get("plugins", [])), replay[0].get("reason"))


def frozen():
    q = st["q"]
    n = q.cmd("guest-fsfreeze-freeze", timeout=60)
    try:
        if q.cmd("guest-fsfreeze-status") != "frozen" or n < 1:
            raise VMError("qemu-ga did not freeze (%r)" % n)
        _, dt = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "ping", timeout=10)
        a = vmlib.Agent(st["src"].ma_sock)
        try:
            lat = []
            for _ in range(10):
                t0 = time.monotonic()
                a.cmd("ping")
                lat.append(time.monotonic() - t0)
        finally:
            a.close()
        # a stall (a command that touched the frozen disk) is the failure; the speed is printed
        if max(lat) > 2.0 * vmlib.SCALE:
            raise VMError("a ping round trip stalled while frozen: %r" % lat)
    finally:
        q.cmd("guest-fsfreeze-thaw", timeout=60)
    return "%d fs frozen; migctl %.0f ms; raw ping max %.1f ms" % (n, dt * 1000, max(lat) * 1000)


def watchdog():
    q = st["q"]
    d = "/etc/systemd/system/%s.d" % UNIT
    q.sh("mkdir -p %s" % d)
    q.write_file(d + "/50-test-watchdog.conf", b"[Service]\nWatchdogSec=2\n")
    q.sh("systemctl daemon-reload && systemctl restart %s" % UNIT, timeout=60)
    s0 = show(q, UNIT, "MainPID", "WatchdogUSec", "ActiveState", "NRestarts")
    if s0.get("WatchdogUSec") != "2s" or s0.get("ActiveState") != "active":
        raise VMError("after the drop-in: %r" % s0)
    # three watchdog periods: a missing ping would have killed it by then
    deadline = time.monotonic() + 30 * vmlib.SCALE
    stamps = set()
    while len(stamps) < 3 and time.monotonic() < deadline:
        stamps.add(show(q, UNIT, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
        time.sleep(0.3)
    s1 = show(q, UNIT, "MainPID", "ActiveState", "NRestarts", "Result")
    if len(stamps) < 3:
        raise VMError("the watchdog timestamp did not move: %r" % stamps)
    if s1.get("MainPID") != s0.get("MainPID") or s1.get("ActiveState") != "active":
        raise VMError("the agent was restarted by the watchdog: %r -> %r" % (s0, s1))
    q.sh("rm -f %s/50-test-watchdog.conf && systemctl daemon-reload && systemctl restart %s"
         % (d, UNIT), timeout=60)
    st["pid"] = show(q, UNIT, "MainPID")["MainPID"]
    return "WatchdogSec=2: %d pings seen, same MainPID" % len(stamps)


def restarted():
    # the agent was restarted twice above: the host side must be served again
    out, dt = vmlib.wait_migctl(MIGCTL, st["src"].ma_sock, timeout=30 * vmlib.SCALE)
    return "migctl ping answered %.0f ms after asking" % (dt * 1000)


def prepared():
    out, _ = vmlib.migctl_ok(MIGCTL, st["src"].ma_sock, "prepare", "operation=sd-1",
                             timeout=60)
    if (out.get("snapshot") or {}).get("errors"):
        raise VMError("prepare under the unit: %r" % out)
    return "ready=%s" % out.get("ready")


def migrate():
    st["dst"] = h.guest("dst", st["kernel"], st["initrd"], "ma.scenario=smoke",
                        incoming=True).start()
    st["q"].close()
    st["src"]._qga = None
    info = vmlib.migrate(st["src"], st["dst"])
    st["src"].stop()
    return "total %s ms, downtime %s ms" % (info.get("total-time"), info.get("downtime"))


def after_migration():
    vmlib.wait_migctl(MIGCTL, st["dst"].ma_sock, timeout=30 * vmlib.SCALE)
    q = st["q"] = st["dst"].qga(timeout=30)
    s = show(q, UNIT, "ActiveState", "SubState", "MainPID")
    if s.get("ActiveState") != "active" or s.get("MainPID") != st["pid"]:
        raise VMError("after migration: %r (MainPID was %s)" % (s, st["pid"]))
    return "same agent process (MainPID %s) answers on the destination" % s["MainPID"]


def network_under_unit():
    # validation and announce use AF_PACKET (ARP), raw ICMPv6 and netlink:
    # the unit's RestrictAddressFamilies= and capabilities must allow them
    out = vmlib.migctl_retry(MIGCTL, st["dst"].ma_sock, "resumed", "operation=sd-1",
                             "wait=true", attempt_timeout=15, timeout=120)[0]
    checks = {c.get("name"): c for c in (out.get("report") or {}).get("checks", [])}
    want = ["link:eth0", "gateway:10.0.2.2", "mount:/data", "write:/data"]
    bad = {n: checks.get(n) for n in want if checks.get(n, {}).get("status") != "pass"}
    if bad:
        raise VMError("checks under the unit: %r" % bad)
    ann, _ = vmlib.migctl_ok(MIGCTL, st["dst"].ma_sock, "announce")
    sent = [a for a in ann.get("sent", []) if a.get("interface") == "eth0"]
    if not sent or not all(a.get("sent") for a in sent):
        raise VMError("announce under the unit: %r" % ann)
    return "validation %s (%s pass); announce sent on eth0" % (
        (out.get("report") or {}).get("verdict"), ", ".join(want))


def journal_clean():
    q = st["q"]
    rc, out, err = q.exec(["/bin/journalctl", "-b", "-q", "--no-pager", "-u", UNIT,
                           "-p", "err"])
    if out.strip():
        raise VMError("errors in the agent's journal:\n" + out)
    rc, out, err = q.exec(["/bin/journalctl", "-b", "-q", "--no-pager", "-u", UNIT])
    lines = len(out.splitlines())
    # the agent's records come through journald's native protocol (agent/log.c: its own
    # datagram socket, never a blocking send), which carries fields a stream line has not
    rc, out, err = q.exec(["/bin/journalctl", "-b", "-q", "--no-pager", "-u", UNIT,
                           "-o", "verbose", "SYSLOG_IDENTIFIER=migration-agent"])
    if "CODE_FUNC=" not in out or "CODE_FILE=" not in out:
        raise VMError("no native journal record from the agent (CODE_FILE, CODE_FUNC):\n"
                      + out[-2000:])
    return "%d journal lines, none at priority err or worse; native records with " \
        "CODE_FILE and CODE_FUNC" % lines


tap = vmlib.Tap([
    ("build the .deb and a systemd guest", build),
    ("systemd boots; udev starts qemu-ga and the agent; migctl answers", boot),
    ("udev's rule pulls the unit in from the port's device unit", pulled_by_udev),
    ("Type=notify unit active (running), watchdog 30 s, no restarts", running),
    ("the unit's hardening is in force on the running agent", hardening),
    ("the unit's environment reaches the agent", environment),
    ("state dir 0700, control socket 0600, migctl works inside the guest", state_dir),
    ("plugins, one as User=nobody, run all phases under the unit", plugins_under_unit),
    ("the shipped systemd-unit plugin freezes and thaws a service", systemd_unit_plugin),
    ("the agent answers while qemu-ga has the filesystems frozen", frozen),
    ("the agent pings the systemd watchdog (WatchdogSec=2 drop-in)", watchdog),
    ("after restarts, the agent serves the host's port again", restarted),
    ("stopped while quiesced, the agent releases the plugins first", stop_while_quiesced),
    ("killed while quiesced, the restarted agent replays the thaw", killed_while_quiesced),
    ("prepare (snapshot, blockers) works under the unit", prepared),
    ("live migration to a second QEMU completes", migrate),
    ("the same agent process answers on the destination", after_migration),
    ("resume validation (ARP to the gateway) and announce work under the unit",
     network_under_unit),
    ("no error in the agent's journal", journal_clean),
    ("every call was answered on its first connection", vmlib.no_retries),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
