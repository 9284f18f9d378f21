#!/usr/bin/env python3
"""VM scenario: quiescing applications around qemu-ga's freeze and a migration.

qemu-ga runs the agent's bridge as its fsfreeze hook (-F
/etc/qemu/fsfreeze-hook.d/migration-agent, from the .deb), so the
orchestrator's plain `guest-fsfreeze-freeze` quiesces every plugin first
(all or nothing), and `guest-fsfreeze-thaw` releases them after the thaw.
Plugins: the shipped example (enabled locally), a probe that logs each phase
with qemu-ga's freeze state, and one that can be armed to fail.

Proves, in a real guest with a real ext4 freeze: plugin discovery and order;
quiesce strictly before the freeze and thaw strictly after it; the agent
answers with plugins quiesced and the disk frozen; a failing plugin makes
guest-fsfreeze-freeze fail with nothing frozen and the others rolled back in
reverse order; a lease without renewal releases everything by itself; and a
guest frozen and quiesced on the source is thawed and released on the
destination after a live migration."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError, QMPError  # noqa: E402

BRIDGE = "/etc/qemu/fsfreeze-hook.d/migration-agent"
ORDER = ["vmprobe", "example", "vmfail"]

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("quiesce")
st = {"seq": 0}


def g():
    return st.get("dst") or st["src"]


def ctl(*args, **kw):
    return vmlib.migctl_ok(MIGCTL, g().ma_sock, *args, **kw)[0]


def new_events(*names):
    """Events since the last call (by sequence number)."""
    out = ctl("events", "after=%d" % st["seq"])
    ev = out.get("events", [])
    if ev:
        st["seq"] = max(e.get("seq", 0) for e in ev)
    return [e for e in ev if not names or e.get("event") in names]


def wait_events(names, timeout=30):
    """Collect events until every name in `names` has been seen once."""
    seen = []
    until = time.monotonic() + timeout * vmlib.SCALE
    while True:
        seen += new_events()
        got = [e.get("event") for e in seen]
        if all(n in got for n in names):
            return seen
        if time.monotonic() > until:
            raise VMError("events %r not all seen within %d s; got %r" % (names, timeout, seen))
        time.sleep(0.2)


def plugin_states():
    return {p["name"]: p.get("state") for p in ctl("plugins").get("plugins", [])}


def probe_log():
    return st["q"].read_file("/run/vmprobe.log").decode().splitlines()


def build():
    st["deb"] = vmlib.ensure_deb()
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True, deb=st["deb"])
    vmlib.make_data_disk(h.disk)
    return os.path.basename(st["deb"])


def boot():
    st["src"] = h.guest("src", st["kernel"], st["initrd"], "ma.qgahook=" + BRIDGE).start()
    st["src"].wait_console(r"^MA-READY")
    vmlib.wait_migctl(MIGCTL, st["src"].ma_sock)
    st["q"] = st["src"].qga()
    out = st["q"].sh("/scenarios/quiesce-setup.sh")
    st["seq"] = ctl("status").get("last-event-seq", 0)
    return out.strip()


def discovered():
    out = ctl("plugins")
    ready = {p["name"] for p in out.get("plugins", []) if p.get("status") == "ready"}
    order = [n for n in out.get("order", []) if n in ORDER]
    if not set(ORDER) <= ready or order != ORDER:
        raise VMError("plugins: ready %r, order %r (want %r)" % (sorted(ready), order, ORDER))
    chk = ctl("check")
    if not chk.get("ready"):
        raise VMError("check: %r" % chk)
    return "order %s; check ready" % " -> ".join(order)


def freeze_via_hook():
    q = st["q"]
    n = q.cmd("guest-fsfreeze-freeze", timeout=120)
    if q.cmd("guest-fsfreeze-status") != "frozen" or n < 1:
        raise VMError("qemu-ga froze %r" % n)
    status = ctl("status")
    if status.get("state") != "quiesced" or not str(status.get("operation", "")).startswith(
            "qemu-ga-"):
        raise VMError("agent while frozen: %r" % {k: status.get(k) for k in ("state", "operation")})
    states = plugin_states()
    if any(states.get(p) != "quiesced" for p in ORDER):
        raise VMError("plugin states while frozen: %r" % states)
    st["op"] = status["operation"]
    return "%d fs frozen; operation %s; %s quiesced" % (n, st["op"], ", ".join(ORDER))


def thaw_via_hook():
    q = st["q"]
    q.cmd("guest-fsfreeze-thaw", timeout=120)
    if q.cmd("guest-fsfreeze-status") != "thawed":
        raise VMError("qemu-ga did not thaw")
    ev = wait_events(["QUIESCED", "THAWED"])
    thawed = [e["data"] for e in ev if e["event"] == "THAWED"]
    if thawed[-1].get("reason") != "thaw" or thawed[-1].get("operation") != st["op"]:
        raise VMError("THAWED: %r" % thawed)
    if ctl("status").get("state") != "thawed":
        raise VMError("lifecycle after thaw: %r" % ctl("status").get("state"))
    log = [l.split() for l in probe_log() if st["op"] in l]
    phases = [(f[1], f[3]) for f in log]
    if phases != [("quiesce", "frozen=no"), ("thaw", "frozen=no")]:
        raise VMError("probe saw %r (want quiesce then thaw, both outside the freeze)" % log)
    return "quiesce before the freeze, thaw after it (probe log %s)" % phases


def failing_plugin():
    q = st["q"]
    q.write_file("/run/vmfail.armed", b"1\n")
    before = len(probe_log())
    try:
        n = q.cmd("guest-fsfreeze-freeze", timeout=120)
        q.cmd("guest-fsfreeze-thaw", timeout=120)
        raise VMError("guest-fsfreeze-freeze succeeded (froze %r) with a failing plugin" % n)
    except QMPError as e:
        err = str(e)
    status = q.cmd("guest-fsfreeze-status")
    if status != "thawed":
        q.cmd("guest-fsfreeze-thaw", timeout=120)
        raise VMError("filesystems %s after the refused freeze" % status)
    ev = wait_events(["PLUGIN_FAILED", "THAWED"])
    failed = [e["data"] for e in ev if e["event"] == "PLUGIN_FAILED"]
    thawed = [e["data"] for e in ev if e["event"] == "THAWED"]
    if failed[0].get("plugin") != "vmfail" or thawed[-1].get("reason") != "rollback":
        raise VMError("events: %r" % ev)
    rolled = thawed[-1].get("plugins", [])
    if not {"example", "vmprobe"} <= set(rolled):
        raise VMError("rolled back %r (want example and vmprobe)" % rolled)
    # the release order, from the agent's log of each plugin's thaw output
    log = q.read_file("/run/migration-agent.log").decode().splitlines()
    thaws = [l.split("plugin ", 1)[1].split(":", 1)[0] for l in log
             if "plugin " in l and ": thaw stdout" in l]
    last = [p for p in thaws if p in ("example", "vmprobe")][-2:]
    if last != ["example", "vmprobe"]:
        raise VMError("release order %r (want example, then vmprobe)" % thaws)
    phases = [l.split()[1] for l in probe_log()[before:]]
    if phases != ["quiesce", "thaw"]:
        raise VMError("probe phases during the refused freeze: %r" % phases)
    q.sh("rm -f /run/vmfail.armed")
    if ctl("status").get("state") != "failed":
        raise VMError("lifecycle after the rollback: %r" % ctl("status").get("state"))
    return "qemu-ga refused the freeze; nothing frozen; released %s (reverse order)" % (
        ", ".join(last))


def lease_expiry():
    out = ctl("quiesce", "operation=vm-lease-1", "lease_seconds=2", timeout=60)
    if out.get("state") != "quiesced":
        raise VMError("quiesce: %r" % out)
    t0 = time.monotonic()
    ev = wait_events(["QUIESCE_EXPIRED", "THAWED"], timeout=60)
    dt = time.monotonic() - t0
    thawed = [e["data"] for e in ev if e["event"] == "THAWED"]
    if thawed[-1].get("reason") != "lease expired":
        raise VMError("THAWED after the lease: %r" % thawed)
    states = plugin_states()
    if any(states.get(p) != "ready" for p in ORDER):
        raise VMError("plugin states after expiry: %r" % states)
    if ctl("status").get("state") != "expired":
        raise VMError("lifecycle: %r" % ctl("status").get("state"))
    return "2 s lease, released by the agent %.1f s after quiescing" % dt


def frozen_across_migration():
    q = st["q"]
    n = q.cmd("guest-fsfreeze-freeze", timeout=120)
    status = ctl("status")
    if status.get("state") != "quiesced":
        raise VMError("not quiesced before the migration: %r" % status.get("state"))
    st["op"] = status.get("operation")
    st["dst"] = h.guest("dst", st["kernel"], st["initrd"], "ma.qgahook=" + BRIDGE,
                        incoming=True).start()
    q.close()
    st["src"]._qga = None
    info = vmlib.migrate(st["src"], st["dst"])
    st["src"].stop()
    q = st["q"] = st["dst"].qga(timeout=30)
    if q.cmd("guest-fsfreeze-status") != "frozen":
        raise VMError("not frozen on the destination")
    if ctl("status").get("state") not in ("quiesced", "resumed"):
        raise VMError("agent on the destination: %r" % ctl("status").get("state"))
    q.cmd("guest-fsfreeze-thaw", timeout=120)
    ev = wait_events(["THAWED"])
    thawed = [e["data"] for e in ev if e["event"] == "THAWED"]
    if thawed[-1].get("operation") != st["op"] or thawed[-1].get("reason") != "thaw":
        raise VMError("THAWED on the destination: %r" % thawed)
    states = plugin_states()
    if any(states.get(p) != "ready" for p in ORDER):
        raise VMError("plugin states after the thaw: %r" % states)
    return "%d fs frozen + quiesced on the source, migrated (downtime %s ms), thawed and " \
           "released on the destination" % (n, info.get("downtime"))


tap = vmlib.Tap([
    ("build the .deb and the guest; qemu-ga's hook is the agent's bridge", build),
    ("guest boots; test plugins installed", boot),
    ("plugins discovered in order; check is ready", discovered),
    ("guest-fsfreeze-freeze quiesces every plugin, then freezes", freeze_via_hook),
    ("guest-fsfreeze-thaw thaws, then releases every plugin", thaw_via_hook),
    ("a failing plugin fails the freeze; the others roll back in reverse", failing_plugin),
    ("a lease without renewal releases everything by itself", lease_expiry),
    ("frozen and quiesced on the source, thawed on the destination", frozen_across_migration),
    ("every call was answered on its first connection", vmlib.no_retries),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
