#!/usr/bin/env python3
"""VM scenario: migctl on real libvirt. Two libvirt daemons on this machine (libvirtlib), the
VM suite's guest as a TCG domain with qemu-ga's channel and the agent's.

- `migctl --connect URI --domain NAME` for every command class (read-only, state-changing,
  validate), and each error with its own exit status: no such domain (4), not running (5), no
  channel (6), the channel held by another client (7, then --force), nothing answering on
  the channel (8);
- `migctl migrate` with real plugins (the dance scenario's session plugin stops an
  application) and --freeze: the freeze lands before the switch-over, the destination is
  thawed and released, the agent's own RESUMED and a passing validation come from the
  destination, the timeline merges host and guest;
- every way out leaves the guest running, thawed and released: a refused migration (no
  --unsafe: 11), SIGINT mid-migration (12), a blocked preflight (10: someone else froze the
  guest; nothing is changed), a killed migctl (SIGKILL: the lease releases the guest), the
  source's libvirt daemon killed mid-migration (9), a guest without the agent (13, or a plain
  migration with --no-agent).
"""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError, log  # noqa: E402
import libvirtlib  # noqa: E402

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL, MODULE_DIR = libvirtlib.require_migctl_module()

S = vmlib.SCALE
LEASE = 8            # the lease of the killed-migctl step
# qemu-ga's fsfreeze hook: it sleeps for the seconds written in SLOW_FREEZE, if that exists
FREEZE_HOOK = "/run/slow-freeze-hook"
SLOW_FREEZE = "/run/slow-freeze"
HOOK_SLEEP = 20
MIGRATE_TIMEOUT = 240 * S
h = vmlib.Harness("libvirt-migctl")
st = {"side": "src"}
PLUGINS = ["vmprobe", "vmsession"]


def migctl(*args, timeout=60 * S, uri=None):
    """migctl against a libvirt URI; returns the CompletedProcess."""
    env = dict(os.environ, MIGCTL_MODULE_DIR=MODULE_DIR)
    argv = [MIGCTL, "--connect", uri or st["pair"].uri(st["side"])] + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def on_domain(*args, side=None, json_out=True, expect=0, timeout=60 * S):
    r = migctl("--domain", "g1", *(list(args) + (["--json"] if json_out else [])),
               uri=st["pair"].uri(side or st["side"]), timeout=timeout)
    if r.returncode != expect:
        raise VMError("migctl --domain g1 %s: exit %d (want %d): %s %s" % (
            " ".join(args), r.returncode, expect, r.stdout[-2000:], r.stderr.strip()))
    return json.loads(r.stdout) if json_out and expect == 0 else r


def other(side):
    return "dst" if side == "src" else "src"


def qga(side=None):
    return libvirtlib.VirshQGA(st["pair"], side or st["side"], "g1")


def migrate_argv(*extra, to=None):
    to = to or other(st["side"])
    return ["migrate", "g1", st["pair"].uri(to), "--p2p", "--migrateuri", "tcp://127.0.0.1",
            "--listen-address", "127.0.0.1"] + list(extra)


def app_count(side=None):
    return int(qga(side).read_file("/run/vmapp.count").decode().split()[0])


def app_runs(side=None, timeout=30):
    until = time.monotonic() + timeout * S
    first = app_count(side)
    while app_count(side) == first:
        if time.monotonic() > until:
            raise VMError("the application does not run (counter stays at %d)" % first)
        time.sleep(0.3)


class Dirtier:
    """A process that rewrites 256 KiB of guest memory without pause, for the steps that hold
    the switch-over: QEMU completes a migration when nothing at all is left to send, whatever
    the downtime limit, so a guest that dirties nothing can switch over during the hold (migctl
    then thaws it on the destination); these steps need the hold to hold."""

    def __enter__(self):
        qga().sh("dd if=/dev/zero of=/dev/null bs=256k </dev/null >/dev/null 2>&1 & "
                 "echo $! > /run/dirtier.pid")
        return self

    def __exit__(self, *exc):
        # wherever the guest runs now (the step may have migrated it)
        side = next((s for s in ("src", "dst") if "g1" in st["pair"].running(s)), st["side"])
        try:
            qga(side).sh("kill $(cat /run/dirtier.pid); rm -f /run/dirtier.pid")
        except (vmlib.QMPError, VMError) as e:
            log("stopping the dirtier: %s" % e)


def released(side, operation):
    """The guest on `side` runs, is thawed, its applications released for this operation."""
    if "g1" not in st["pair"].running(side):
        raise VMError("g1 does not run on %s: %r" % (side, st["pair"].running(side)))
    fs = qga(side).cmd("guest-fsfreeze-status")
    if fs != "thawed":
        raise VMError("filesystems on %s: %s" % (side, fs))
    status = on_domain("status", side=side)
    if status.get("state") in ("quiesced", "prepared") or \
            status.get("operation") not in (operation, None):
        raise VMError("agent on %s: %r" % (side, status))
    plugins = {p["name"]: p.get("state") for p in on_domain("plugins", side=side)["plugins"]}
    if any(plugins.get(n) == "quiesced" for n in PLUGINS):
        raise VMError("plugins still quiesced: %r" % plugins)
    app_runs(side)
    return "g1 runs on %s, thawed, lifecycle %s, application running" % (
        side, status.get("state"))


# ---------------------------------------------------------------- steps

def build():
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True)
    st["base_kernel"], st["base_initrd"] = vmlib.ensure_guest(with_agent=False)
    vmlib.make_data_disk(h.disk)
    st["pair"] = libvirtlib.LibvirtPair(h.workdir).__enter__()
    return "two daemons up in %.1f s; host UUIDs %s" % (
        st["pair"].timings["daemons"],
        " / ".join(d.host_uuid[:8] for d in st["pair"].daemons.values()))


def boot():
    st["console"] = os.path.join(h.workdir, "g1-console.log")
    xml = libvirtlib.domain_xml("g1", st["kernel"], st["initrd"], h.disk,
                                "ma.scenario=smoke ma.qgahook=" + FREEZE_HOOK, st["console"])
    t0 = time.monotonic()
    m = libvirtlib.start_guest(st["pair"], "src", xml, st["console"])
    libvirtlib.wait_console(st["console"], r"^MA-SCENARIO-END: smoke rc=0", timeout=60 * S)
    qga().sync()
    # a freeze is instant unless a step asks for a slow one (qemu-ga runs the hook first)
    qga().write_file(FREEZE_HOOK, b'#!/bin/sh\n[ "$1" = freeze ] && [ -f %s ] && '
                     b'sleep "$(cat %s)"\nexit 0\n' % (SLOW_FREEZE.encode(), SLOW_FREEZE.encode()))
    qga().sh("chmod 755 " + FREEZE_HOOK)
    return "guest ready in %.1f s (guest uptime %s)" % (time.monotonic() - t0, m.group(1))


def domain_commands():
    """Every command class by domain name through libvirt."""
    t0 = time.monotonic()
    r = migctl("--domain", "g1", "ping", timeout=60 * S)
    if r.returncode != 0 or "answers" not in r.stdout:
        raise VMError("ping: %d %s %s" % (r.returncode, r.stdout, r.stderr))
    ping_s = time.monotonic() - t0
    info = on_domain("info")
    if "migrate" in [c.get("name") for c in info.get("commands", [])] or not info.get("version"):
        raise VMError("info: %r" % info)
    blockers = on_domain("blockers")
    if blockers.get("verdict") not in ("ready", "slow"):
        raise VMError("blockers: %r" % blockers.get("verdict"))
    prep = on_domain("prepare", "operation=lv-1")
    if not prep.get("ready"):
        raise VMError("prepare: %r" % prep.get("not-ready"))
    q = on_domain("quiesce", "operation=lv-1", "lease_seconds=30")
    if q.get("operation") != "lv-1":
        raise VMError("quiesce: %r" % q)
    t = on_domain("thaw", "operation=lv-1")
    if t.get("operation") != "lv-1":
        raise VMError("thaw: %r" % t)
    v = on_domain("validate", json_out=False)
    if "verdict: pass" not in v.stdout:
        raise VMError("validate: %s" % v.stdout)
    events = on_domain("events", "after=0")["events"]
    names = [e.get("event") for e in events]
    if "QUIESCED" not in names or "THAWED" not in names or "HOST_CONNECTED" not in names:
        raise VMError("events: %r" % names)
    return "ping %.0f ms as a whole process; info, blockers (%s), prepare, quiesce, thaw, " \
        "validate (pass), events (%d)" % (ping_s * 1000, blockers.get("verdict"), len(events))


def domain_errors():
    pair = st["pair"]
    r = migctl("--domain", "nosuch", "ping")
    if r.returncode != 4 or "no domain named 'nosuch'" not in r.stderr:
        raise VMError("no such domain: %d %s" % (r.returncode, r.stderr))
    # defined, not running
    xml = libvirtlib.domain_xml("g2", st["base_kernel"], st["base_initrd"], h.disk + ".2",
                                "", os.path.join(h.workdir, "g2-console.log"),
                                agent_channel=False, mac="52:54:00:12:34:57")
    with open(h.disk + ".2", "wb") as fp:
        fp.truncate(16 << 20)
    path = os.path.join(h.workdir, "g2.xml")
    with open(path, "w") as fp:
        fp.write(xml)
    pair.virsh("src", "define", path)
    r = migctl("--domain", "g2", "ping")
    if r.returncode != 5 or "not running" not in r.stderr:
        raise VMError("not running: %d %s" % (r.returncode, r.stderr))
    # running, without the agent's channel: the message gives the XML to add
    pair.virsh("src", "start", "g2")
    r = migctl("--domain", "g2", "ping")
    if r.returncode != 6 or "<target type='virtio' name='org.migration_agent.0'/>" not in r.stderr:
        raise VMError("no channel: %d %s" % (r.returncode, r.stderr))
    pair.virsh("src", "destroy", "g2")
    pair.virsh("src", "undefine", "g2")
    # a channel whose guest has no agent: nothing answers
    xml = libvirtlib.domain_xml("g3", st["base_kernel"], st["base_initrd"], h.disk + ".2",
                                "", os.path.join(h.workdir, "g3-console.log"),
                                mac="52:54:00:12:34:58")
    libvirtlib.start_guest(pair, "src", xml, os.path.join(h.workdir, "g3-console.log"),
                           ready=r"^MA-READY")
    r = migctl("--timeout", "3", "--domain", "g3", "ping")
    if r.returncode != 8 or "migration-agent package" not in r.stderr:
        raise VMError("silent agent: %d %s" % (r.returncode, r.stderr))
    st["g3_xml"] = xml
    # the channel held by another client, then taken over
    env = dict(os.environ, MIGCTL_MODULE_DIR=MODULE_DIR)
    holder = subprocess.Popen([MIGCTL, "--connect", pair.src_uri, "--domain", "g1", "watch"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        until = time.monotonic() + 30 * S
        while True:  # the holder has the channel once its first event arrived
            line = holder.stdout.readline()
            if "HOST_CONNECTED" in line or time.monotonic() > until:
                break
        r = migctl("--domain", "g1", "ping")
        if r.returncode != 7 or "--force" not in r.stderr:
            raise VMError("held channel: %d %s" % (r.returncode, r.stderr))
        r = migctl("--domain", "g1", "--force", "ping")
        if r.returncode != 0:
            raise VMError("--force: %d %s" % (r.returncode, r.stderr))
        rc = holder.wait(30 * S)
        err = holder.stderr.read()
        if rc != 9 or "I/O" not in err:
            raise VMError("the client whose channel was taken: exit %s: %s" % (rc, err))
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    return "4 no domain, 5 not running, 6 no channel (XML printed), 8 silent, 7 held; " \
        "--force took it (the holder exited 9)"


def dance_setup():
    qga().sh("/scenarios/dance-setup.sh", timeout=60 * S)
    names = sorted(p["name"] for p in on_domain("plugins")["plugins"])
    if not set(PLUGINS) <= set(names):
        raise VMError("plugins: %r" % names)
    app_runs()
    return "application ticking, plugins %s" % ", ".join(names)


def run_migrate(*extra, expect=0, timeout=MIGRATE_TIMEOUT):
    r = migctl(*migrate_argv(*extra, "--json"), timeout=timeout)
    if r.returncode != expect:
        raise VMError("migctl migrate: exit %d (want %d)\nstdout: %s\nstderr: %s" % (
            r.returncode, expect, r.stdout[-4000:], r.stderr[-4000:]))
    return json.loads(r.stdout) if r.stdout.strip() else {}, r


def migrate_happy():
    src, dst = st["side"], other(st["side"])
    t0 = time.monotonic()
    try:
        with Dirtier():
            doc, r = run_migrate("--unsafe", "--freeze", "--bandwidth", "64", "--timeline",
                                 os.path.join(h.workdir, "timeline.svg"))
    finally:
        st["side"] = dst if "g1" in st["pair"].running(dst) else src
    wall = time.monotonic() - t0
    steps = doc["timeline"]["steps"]
    whats = [(s["who"], s["what"]) for s in steps]
    phases = {p["name"]: p for p in doc["timeline"]["phases"]}
    if "g1" in st["pair"].running(src):
        raise VMError("g1 still runs on the source: %r" % st["pair"].running(src))
    for want in (("host", "quiesced"), ("host", "frozen"), ("host", "migration completed"),
                 ("host", "thawed"), ("host", "released"), ("guest", "QUIESCED"),
                 ("guest", "RESUMED"), ("guest", "VALIDATION_COMPLETED"), ("guest", "THAWED")):
        if want not in whats:
            raise VMError("timeline lacks %s %s: %r" % (want[0], want[1], whats))
    resumed = [s for s in steps if s["what"] == "RESUMED"]
    if "notify-peers" not in resumed[0]["detail"] or len(resumed) != 1:
        raise VMError("RESUMED: %r" % resumed)
    # the freeze came before the switch-over: frozen before the guest resumed on the destination
    t = {w: s["t"] for s in steps for w in [s["what"]]}
    if not t["frozen"] < t["RESUMED"]:
        raise VMError("frozen at %.3f, resumed at %.3f" % (t["frozen"], t["RESUMED"]))
    if doc["validation"].get("verdict") != "pass":
        raise VMError("validation: %r" % doc["validation"])
    if "frozen" not in phases or "quiesced" not in phases:
        raise VMError("phases: %r" % phases)
    if not os.path.getsize(os.path.join(h.workdir, "timeline.svg")) > 1000:
        raise VMError("no SVG timeline")
    probe = qga().read_file("/run/vmprobe.log").decode().split("\n")
    ops = [l.split()[1] for l in probe if doc["operation"] in l]
    if ops != ["quiesce", "thaw"]:
        raise VMError("vmprobe log: %r" % probe)
    note = released(dst, doc["operation"])
    return "%.1f s; frozen window %.2f s of the %.2f s migration; validation pass " \
        "(%d checks); %s" % (wall, phases["frozen"]["seconds"], phases["migration"]["seconds"],
                             len(doc["validation"].get("checks", [])), note)


def migrate_freeze_timeout():
    """A freeze slower than --freeze-timeout (qemu-ga's hook sleeps): migctl says what holds
    it (the agent's blockers), gives up the freeze (--freeze-retries 0), releases the hold so
    that the migration completes unfrozen, and thaws the freeze that finished late."""
    dst = other(st["side"])
    qga().write_file(SLOW_FREEZE, b"10\n")
    try:
        with Dirtier():
            doc, r = run_migrate("--unsafe", "--freeze", "--freeze-timeout", "3",
                                 "--freeze-retries", "0", "--bandwidth", "64")
    finally:
        st["side"] = dst if "g1" in st["pair"].running(dst) else st["side"]
        qga().sh("rm -f " + SLOW_FREEZE)
    whats = [s["what"] for s in doc["timeline"]["steps"]]
    for want in ("freeze", "freeze timeout", "switch-over released", "migration completed",
                 "thawed"):
        if want not in whats:
            raise VMError("timeline lacks %r: %r\n%s" % (want, whats, r.stderr[-2000:]))
    said = r.stdout + r.stderr
    if "did not finish within 3 s" not in said or "going on unfrozen" not in said:
        raise VMError("the timeout was not explained: %s" % said[-3000:])
    return "exit 0 unfrozen after the 3 s timeout; %s" % released(st["side"], doc["operation"])


def migrate_refused():
    side = st["side"]
    doc, r = run_migrate("--freeze", expect=11)  # no --unsafe: libvirt refuses
    if "unsafe" not in r.stderr.lower():
        raise VMError("refusal not explained: %s" % r.stderr)
    return "exit 11 (%s); %s" % ([l for l in r.stderr.splitlines() if "failed" in l][0][:90],
                                 released(side, doc.get("operation")))


def migrate_interrupted():
    side = st["side"]
    env = dict(os.environ, MIGCTL_MODULE_DIR=MODULE_DIR)
    p = subprocess.Popen([MIGCTL, "--connect", st["pair"].uri(side)]
                         + migrate_argv("--unsafe", "--freeze", "--bandwidth", "5", "--json"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_job(side, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=MIGRATE_TIMEOUT)
    if p.returncode != 12 or "interrupted" not in err:
        raise VMError("SIGINT: exit %s: %s" % (p.returncode, err))
    doc = json.loads(out)
    return "exit 12; %s" % released(side, doc["operation"])


def wait_job(side, proc, timeout=60):
    """Until libvirt's migration job of g1 runs on `side` (domjobinfo)."""
    until = time.monotonic() + timeout * S
    while "Unbounded" not in st["pair"].virsh(side, "domjobinfo", "g1", check=False):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise VMError("migctl ended (exit %s) before the job was seen: %s %s" % (
                proc.returncode, out[-3000:], err[-3000:]))
        if time.monotonic() > until:
            raise VMError("no migration job on %s" % side)
        time.sleep(0.2)


def migrate_blocked():
    side = st["side"]
    n = qga().cmd("guest-fsfreeze-freeze", timeout=60)
    try:
        doc, r = run_migrate("--unsafe", expect=10)
        if "blocked" not in r.stderr:
            raise VMError("blocked not explained: %s" % r.stderr)
        if qga().cmd("guest-fsfreeze-status") != "frozen":
            raise VMError("migctl thawed what someone else froze")
    finally:
        qga().cmd("guest-fsfreeze-thaw", timeout=60)
    if "g1" not in st["pair"].running(side):
        raise VMError("g1 moved")
    return "someone else froze %d filesystem(s): exit 10, nothing changed" % n


def migrate_killed():
    """SIGKILL mid-migration: libvirt finishes the migration (peer to peer) by itself; the
    agent's lease releases the applications where the guest runs."""
    side = st["side"]
    env = dict(os.environ, MIGCTL_MODULE_DIR=MODULE_DIR)
    p = subprocess.Popen([MIGCTL, "--connect", st["pair"].uri(side)]
                         + migrate_argv("--unsafe", "--bandwidth", "20", "--lease", str(LEASE)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_job(side, p)
    p.kill()
    p.wait()
    until = time.monotonic() + MIGRATE_TIMEOUT
    while True:
        where = [s for s in ("src", "dst") if "g1" in st["pair"].running(s)]
        if len(where) == 1 and "Unbounded" not in st["pair"].virsh(where[0], "domjobinfo", "g1",
                                                                    check=False):
            break
        if time.monotonic() > until:
            raise VMError("the migration did not end: g1 on %r" % where)
        time.sleep(0.5)
    st["side"] = where[0]
    lease_released()
    events = on_domain("events", "after=0")["events"]
    quiesced = [e for e in events if e["event"] == "QUIESCED"]
    expired = [e for e in events if e["event"] == "THAWED" and "lease" in json.dumps(e["data"])]
    if not expired or not quiesced or \
            expired[-1]["data"].get("operation") != quiesced[-1]["data"].get("operation"):
        raise VMError("no THAWED by the lease of the last quiesce: %r" % events[-6:])
    app_runs()
    return "libvirt finished the migration to %s; the %d s lease released the plugins (%s)" % (
        st["side"], LEASE, expired[-1]["data"].get("reason"))


def migrate_killed_held():
    """SIGKILL while the switch-over is held for a freeze that takes long (qemu-ga's hook
    sleeps HOOK_SLEEP s): migctl's guard restores the downtime limit and the bandwidth, so that
    libvirt finishes the migration instead of iterating at 1 ms forever, then thaws the guest
    where it runs; the lease releases the applications."""
    side = st["side"]
    qga().write_file(SLOW_FREEZE, b"%d\n" % HOOK_SLEEP)
    env = dict(os.environ, MIGCTL_MODULE_DIR=MODULE_DIR)
    err_path = os.path.join(h.workdir, "killed-held.stderr")
    dirtier = Dirtier().__enter__()
    with open(err_path, "w") as err:
        p = subprocess.Popen([MIGCTL, "--connect", st["pair"].uri(side)]
                             + migrate_argv("--unsafe", "--freeze", "--bandwidth", "20",
                                            "--freeze-timeout", "120", "--lease", str(LEASE)),
                             stdout=subprocess.DEVNULL, stderr=err, env=env)
    # the freeze runs (the hook sleeps) and the switch-over is held: the downtime limit reads
    # 1 ms from the migration's start, the bandwidth 1 MiB/s once the freeze was asked for
    until = time.monotonic() + MIGRATE_TIMEOUT
    while st["pair"].virsh(side, "migrate-getspeed", "g1", check=False).strip() != "1" or \
            st["pair"].virsh(side, "migrate-getmaxdowntime", "g1", check=False).strip() != "1":
        if p.poll() is not None:
            raise VMError("migctl ended (exit %s) before the hold: %s" % (
                p.returncode, open(err_path).read()[-3000:]))
        if time.monotonic() > until:
            raise VMError("the switch-over was never held")
        time.sleep(0.1)
    held_at = time.monotonic()
    p.kill()
    p.wait()
    while True:
        where = [s for s in ("src", "dst") if "g1" in st["pair"].running(s)]
        if len(where) == 1 and "Unbounded" not in st["pair"].virsh(where[0], "domjobinfo", "g1",
                                                                    check=False):
            break
        if time.monotonic() > until:
            raise VMError("the held migration did not end: g1 on %r; %s" % (
                where, open(err_path).read()[-2000:]))
        time.sleep(0.5)
    ended = time.monotonic() - held_at
    st["side"] = where[0]
    until = time.monotonic() + (HOOK_SLEEP + 120) * S
    while True:
        try:
            if qga().cmd("guest-fsfreeze-status", timeout=10) == "thawed" \
                    and "thawed" in open(err_path).read():
                break
        except vmlib.QMPError:
            pass  # qemu-ga is busy in the hook
        if time.monotonic() > until:
            raise VMError("the guest was not thawed: %s" % open(err_path).read()[-2000:])
        time.sleep(1)
    dirtier.__exit__(None, None, None)
    qga().sh("rm -f " + SLOW_FREEZE)
    said = open(err_path).read()
    if "downtime limit is back" not in said:
        raise VMError("the guard did not restore the limits: %s" % said[-2000:])
    lease_released()
    app_runs()
    return "the migration ended %.1f s after the kill, on %s; %s" % (
        ended, st["side"], " / ".join(l.split(": ", 1)[1][:70] for l in said.splitlines()
                                      if "migration guard" in l))


def lease_released():
    """Until the agent's journal says the last quiesce ended by its lease (the plugins
    released): QUIESCE_EXPIRED, then THAWED with reason "lease expired"."""
    until = time.monotonic() + (LEASE + 30) * S
    while True:
        events = on_domain("events", "after=0")["events"]
        quiesced = [e for e in events if e["event"] == "QUIESCED"]
        thawed = [e for e in events if e["event"] == "THAWED"
                  and e["data"].get("operation") == quiesced[-1]["data"].get("operation")]
        if thawed:
            if thawed[-1]["data"].get("reason") != "lease expired":
                raise VMError("released otherwise: %r" % thawed[-1])
            return
        if time.monotonic() > until:
            raise VMError("the lease did not release the guest: %r" % events[-6:])
        time.sleep(0.5)


def migrate_daemon_lost():
    side = st["side"]
    env = dict(os.environ, MIGCTL_MODULE_DIR=MODULE_DIR)
    p = subprocess.Popen([MIGCTL, "--connect", st["pair"].uri(side)]
                         + migrate_argv("--unsafe", "--bandwidth", "5", "--lease", str(LEASE)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_job(side, p)
    st["pair"].daemons[side].stop(kill=True)
    out, err = p.communicate(timeout=MIGRATE_TIMEOUT)
    if p.returncode != 9 or "lost" not in err:
        raise VMError("daemon lost: exit %s: %s" % (p.returncode, err))
    st["pair"].daemons[side].start()
    until = time.monotonic() + MIGRATE_TIMEOUT
    while True:
        where = [s for s in ("src", "dst") if "g1" in st["pair"].running(s)]
        if len(where) == 1:
            break
        if time.monotonic() > until:
            raise VMError("g1 runs on %r" % where)
        time.sleep(0.5)
    st["side"] = where[0]
    lease_released()
    app_runs()
    fs = qga().cmd("guest-fsfreeze-status")
    if fs != "thawed":
        raise VMError("filesystems: %s" % fs)
    return "exit 9 at once; after the daemon's restart g1 runs on %s, thawed, released by " \
        "the lease" % st["side"]


def migrate_no_agent():
    pair = st["pair"]
    doc, r = None, migctl("migrate", "g3", pair.dst_uri, "--p2p", "--unsafe", "--migrateuri",
                          "tcp://127.0.0.1", "--listen-address", "127.0.0.1",
                          uri=pair.src_uri, timeout=MIGRATE_TIMEOUT)
    if r.returncode != 13 or "--no-agent" not in r.stderr:
        raise VMError("no agent: exit %d: %s" % (r.returncode, r.stderr))
    r = migctl("migrate", "g3", pair.dst_uri, "--p2p", "--unsafe", "--migrateuri",
               "tcp://127.0.0.1", "--listen-address", "127.0.0.1", "--no-agent",
               uri=pair.src_uri, timeout=MIGRATE_TIMEOUT)
    if r.returncode != 0 or "warning" not in r.stdout + r.stderr:
        raise VMError("--no-agent: exit %d: %s %s" % (r.returncode, r.stdout, r.stderr))
    if pair.running("dst").count("g3") != 1:
        raise VMError("g3 not on the destination")
    pair.virsh("dst", "destroy", "g3")
    return "exit 13 refused; with --no-agent a plain migration with a warning"


def diagnostics():
    if "pair" in st:
        st["pair"].diagnostics()
    log("---- guest console ----")
    try:
        with open(st.get("console", ""), errors="replace") as fp:
            log(fp.read()[-40000:])
    except OSError:
        pass
    try:
        log("---- agent log ----")
        log(qga().read_file("/run/migration-agent.log").decode(errors="replace")[-30000:])
    except Exception as e:  # noqa: BLE001
        log("(agent log unavailable: %s)" % e)


tap = vmlib.Tap([
    ("two libvirt daemons; the guest image", build),
    ("the guest boots as a libvirt domain", boot),
    ("migctl --domain: every command class", domain_commands),
    ("migctl --domain: each error has its exit status", domain_errors),
    ("the dance scenario: an application and two plugins", dance_setup),
    ("migctl migrate --freeze: quiesce, late freeze, RESUMED and validation on the destination",
     migrate_happy),
    ("a freeze past --freeze-timeout: explained, given up, migrated unfrozen, thawed",
     migrate_freeze_timeout),
    ("a refused migration leaves the guest running, thawed, released", migrate_refused),
    ("SIGINT mid-migration aborts, thaws and releases", migrate_interrupted),
    ("a blocked preflight changes nothing", migrate_blocked),
    ("a killed migctl: the lease releases the guest", migrate_killed),
    ("migctl killed while the switch-over is held: its guard restores the limits and thaws",
     migrate_killed_held),
    ("the source's libvirt daemon killed mid-migration", migrate_daemon_lost),
    ("a guest without the agent: refused, or migrated plainly with --no-agent", migrate_no_agent),
])
sys.exit(libvirtlib.run_steps(tap, h, st, diagnostics))
