#!/usr/bin/env python3
"""VM scenario: the product where its users run it. A real Debian 12 image built from Debian's
packages (build-debian-image.sh: mmdebstrap, then `apt-get install ./migration-agent_*.deb
./migration-agent-plugin-postgresql_*.deb postgresql` inside it and the PostgreSQL plugin
enabled as its README says), booting its own kernel and initramfs with systemd, as a TCG
domain on the first of two real libvirt daemons (libvirtlib), NIC on QEMU's restricted user
network.

- PostgreSQL comes up by its own unit, qemu-ga and the agent by udev when their ports appear;
  nothing in the guest reaches for a network;
- a client in the guest commits numbered rows one at a time and logs every acknowledged id
  on /run (tmpfs, never frozen);
- `migctl migrate --freeze` to the second daemon: preflight, quiesce (the PostgreSQL plugin's
  CHECKPOINT), freeze after the first pass, switch-over, thaw, release, the agent's RESUMED
  and a passing validation from the destination;
- on the destination: every acknowledged id is in the table (sets compared), the client saw
  no error, its longest stall is printed against the frozen window, and pg_amcheck passes;
- application consistency, still under the load: two copies of the disk taken while frozen
  (qemu-img on the host), first with qemu-ga's freeze alone, then with the agent's quiesce
  before the freeze; each booted as a third guest: every id acknowledged before its freeze is
  in it, pg_amcheck passes, and the quiesced copy replays less WAL (both printed, with the
  time to accept connections). The benchmark (tests/bench/bench-debian-postgresql.py) is the
  long form with the stall and commit rate of three kinds of migration.

Environment: MA_DEBIAN_IMAGE_CACHE (the image's cache, default
/var/cache/migration-agent-tests), MA_VM_TIMEOUT_SCALE (every deadline).
tests/vm/demo --real runs this same scenario.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402
import libvirtlib  # noqa: E402
import debianlib  # noqa: E402

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL, MODULE_DIR = libvirtlib.require_migctl_module()
if debianlib.missing_tools():
    vmlib.skip_all("cannot build the Debian image: %s" % ", ".join(debianlib.missing_tools()))

S = vmlib.SCALE
h = vmlib.Harness("debian-postgresql")
st = {}


def image():
    st["image"], note, secs = debianlib.ensure_image()
    st["pair"] = libvirtlib.LibvirtPair(h.workdir).__enter__()
    st["g"] = debianlib.DebianGuest(st["pair"], h.workdir, st["image"])
    with open(os.path.join(st["image"], "packages.txt")) as fp:
        pkgs = dict(line.split()[:2] for line in fp if line.strip())
    return "%s (%.0f s); postgresql-15 %s, migration-agent %s; two daemons up" % (
        note, secs, pkgs.get("postgresql-15"),
        pkgs.get("migration-agent"))


def boot():
    secs = st["g"].boot()
    kernel = st["g"].sh("uname -r").strip()
    init = st["g"].sh("readlink /proc/1/exe").strip()
    if not init.endswith("/systemd"):
        raise VMError("PID 1 is %s" % init)
    return "systemd finished the boot in %.0f s (TCG), kernel %s, PID 1 %s" % (secs, kernel, init)


def services():
    u = st["g"].units()
    for name in ("postgresql@15-main", "qemu-guest-agent", "migration-agent"):
        if u.get(name, ["?"])[0] != "active":
            raise VMError("%s: %r" % (name, u.get(name)))
    # the agent has no [Install]: only its port's device unit wants it (the udev rule's
    # SYSTEMD_WANTS); that device is the one udev linked as org.migration_agent.0
    if u["migration-agent"][1] != "static":
        raise VMError("migration-agent is %s, not static" % u["migration-agent"][1])
    port = st["g"].sh("basename $(readlink /dev/virtio-ports/org.migration_agent.0)").strip()
    wanted_by = " ".join(u["migration-agent"][2:])
    if not port or "virtio\\x2dports-%s.device" % port not in wanted_by:
        raise VMError("migration-agent is not wanted by its port's device (%s): %r" % (
            port, u["migration-agent"]))
    ping = st["g"].sh("migctl ping").strip()
    return "postgresql@15-main %s; qemu-ga %s; migration-agent %s (%s)" % (
        " ".join(u["postgresql@15-main"][:2]), " ".join(u["qemu-guest-agent"][:2]),
        " ".join(u["migration-agent"]), ping)


def offline():
    timers = st["g"].check_offline()
    return "no global address, no route, no network or apt unit ran; timers (not fired): %s" \
        % (", ".join(timers) or "none")


def plugin():
    r, doc = debianlib.migctl_json(MIGCTL, MODULE_DIR, st["pair"].src_uri, "--domain", "g1",
                                   "plugins", "--json", timeout=60 * S)
    pl = {p["name"]: p for p in doc.get("plugins", [])}
    if r.returncode != 0 or "postgresql" not in pl:
        raise VMError("plugins: exit %d: %s %s" % (r.returncode, r.stdout, r.stderr))
    if pl["postgresql"].get("enabled") is False:
        raise VMError("the postgresql plugin is not enabled: %r" % pl["postgresql"])
    out = st["g"].sh("migctl plugin-test postgresql", timeout=120 * S)
    return "plugins %s; `migctl plugin-test postgresql` in the guest: %s" % (
        ", ".join(sorted(pl)), " / ".join(l.strip() for l in out.strip().splitlines()[-3:]))


def load():
    st["g"].prepare_load()
    n = st["g"].start_load()
    t0 = time.monotonic()
    n2 = st["g"].wait_acked(n + 50)
    return "the client commits one row at a time: %d acknowledged (%.0f rows/s under TCG)" % (
        n2, (n2 - n) / max(time.monotonic() - t0, 0.1))


def migrate():
    pair, g = st["pair"], st["g"]
    before = g.acked_count()
    t0 = time.monotonic()
    svg = os.path.join(h.workdir, "timeline.svg")
    r, doc = debianlib.migctl_json(
        MIGCTL, MODULE_DIR, pair.src_uri, "migrate", "g1", pair.dst_uri, "--p2p", "--unsafe",
        "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1", "--freeze",
        "--bandwidth", "64", "--timeline", svg, "--json", timeout=900 * S)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise VMError("migctl migrate: exit %d\nstdout: %s\nstderr: %s" % (
            r.returncode, r.stdout[-4000:], r.stderr[-4000:]))
    g.side = "dst"
    if "g1" in pair.running("src") or "g1" not in pair.running("dst"):
        raise VMError("g1 runs on src %r, dst %r" % (pair.running("src"), pair.running("dst")))
    steps = doc["timeline"]["steps"]
    whats = [(s["who"], s["what"]) for s in steps]
    for want in (("host", "quiesced"), ("host", "frozen"), ("host", "migration completed"),
                 ("host", "thawed"), ("host", "released"), ("guest", "QUIESCED"),
                 ("guest", "RESUMED"), ("guest", "VALIDATION_COMPLETED")):
        if want not in whats:
            raise VMError("timeline lacks %s %s: %r" % (want[0], want[1], whats))
    t = {s["what"]: s["t"] for s in steps}
    if not t["frozen"] < t["RESUMED"]:
        raise VMError("frozen at %.3f, resumed at %.3f" % (t["frozen"], t["RESUMED"]))
    if doc["validation"].get("verdict") != "pass":
        raise VMError("validation: %r" % doc["validation"])
    phases = {p["name"]: p for p in doc["timeline"]["phases"]}
    st["frozen_s"] = phases["frozen"]["seconds"]
    st["quiesced_s"] = phases.get("quiesced", {}).get("seconds")
    st["doc"] = doc
    # the PostgreSQL plugin quiesced (its CHECKPOINT) and was released, for this operation
    ev = debianlib.migctl_json(MIGCTL, MODULE_DIR, pair.dst_uri, "--domain", "g1", "events",
                               "after=0", "--json", timeout=60 * S)[1].get("events", [])
    quiesced = [e for e in ev if e.get("event") == "QUIESCED"
                and e.get("data", {}).get("operation") == doc["operation"]]
    if not quiesced or "postgresql" not in str(quiesced[-1].get("data")):
        raise VMError("no QUIESCED with the postgresql plugin: %r" % quiesced)
    fs = g.qga().cmd("guest-fsfreeze-status")
    if fs != "thawed":
        raise VMError("filesystems on the destination: %s" % fs)
    # the agent read the kernel log (snapshot, validation) with its own capability
    kmsg = g.sh("dmesg | grep -i 'syslog with CAP_SYS_ADMIN' || true").strip()
    if kmsg:
        raise VMError("the agent reads the kernel log without CAP_SYSLOG: %s" % kmsg)
    after = g.wait_acked(g.acked_count() + 50)
    return "%.1f s; quiesced %.2f s, frozen %.2f s of the %.2f s migration; validation pass " \
        "(%d checks); the client went on from %d to %d acknowledged rows" % (
            wall, st["quiesced_s"] or 0, st["frozen_s"], phases["migration"]["seconds"],
            len(doc["validation"].get("checks", [])), before, after)


def nothing_lost():
    g = st["g"]
    status = g.stop_load()
    rows, in_table = g.check_acknowledged()
    st["rows"] = rows
    stall, i0, i1 = debianlib.longest_stall(rows)
    st["stall"] = stall
    return "%s; %d acknowledged ids all in the table (%d rows); no client error; longest " \
        "stall %.2f s (between ids %d and %d) against a frozen window of %.2f s" % (
            status, len(rows), in_table, stall, i0, i1, st["frozen_s"])


def amcheck():
    return "pg_amcheck --heapallindexed --rootdescend: %s" % st["g"].amcheck()


def frozen_copies():
    """Still under the load (started again on the destination after the check), the plain
    copy first: it replays what was written since the last checkpoint (the migration's
    quiesce, seconds ago); then the quiesced copy, right after the plugin's CHECKPOINT."""
    g = st["g"]
    g.restart_load()
    g.wait_acked(g.acked_count() + 200)
    st["copies"] = {}
    for label, op in (("qemu-ga freeze", None), ("agent quiesce + freeze", "copy-1")):
        path = os.path.join(h.workdir, "copy-%s.qcow2" % ("agent" if op else "qga"))
        before = g.acked_count()
        frozen = debianlib.frozen_copy(g, path, MIGCTL, MODULE_DIR, operation=op)
        st["copies"][label] = {"path": path, "before": before, "frozen": frozen}
        g.wait_acked(g.acked_count() + 100)
    status = g.stop_load()
    rows, _ = g.check_acknowledged()
    return "%s; copies frozen %s; %d ids acknowledged in all, none lost" % (status, ", ".join(
        "%.2f s (%s)" % (c["frozen"], l) for l, c in st["copies"].items()), len(rows))


def recoveries():
    pair, g = st["pair"], st["g"]
    pair.virsh(g.side, "destroy", g.name)
    notes = []
    for n, (label, c) in enumerate(st["copies"].items()):
        cg, rec = debianlib.boot_copy(pair, h.workdir, st["image"], c["path"], "copy%d" % n,
                                      side=g.side, mac="52:54:00:12:34:6%d" % n)
        st["g_copy"] = cg
        if not rec["interrupted"]:
            raise VMError("%s: the copy's server was not interrupted: %r" % (label, rec))
        have = set(int(x) for x in cg.psql("SELECT id FROM acked").split())
        missing = sorted(set(range(1, c["before"] + 1)) - have)
        if missing:
            raise VMError("%s: %d ids acknowledged before the freeze are not in the copy: %s"
                          % (label, len(missing), missing[:20]))
        cg.amcheck()
        c.update(rec)
        notes.append("%s: %d bytes of WAL replayed (redo %s s), accepting connections %.2f s "
                     "after the start, %d rows (>= %d acknowledged before the freeze)" % (
                         label, rec["replayed"], rec["redo_s"], rec["ready_s"], rec["rows"],
                         c["before"]))
        pair.virsh(g.side, "destroy", cg.name)
        st.pop("g_copy")
    plain, quiesced = st["copies"]["qemu-ga freeze"], st["copies"]["agent quiesce + freeze"]
    if not quiesced["replayed"] < plain["replayed"]:
        raise VMError("the quiesced copy replays no less WAL: %s" % "; ".join(notes))
    return "; ".join(notes) + "; pg_amcheck passes on both"


def diagnostics():
    if "pair" in st:
        st["pair"].diagnostics()
    if "g" in st:
        st["g"].diagnostics()
    if "g_copy" in st:
        st["g_copy"].diagnostics()


tap = vmlib.Tap([
    ("the Debian 12 image (mmdebstrap, apt-get install of the .debs and postgresql); two "
     "libvirt daemons", image),
    ("the image boots its own kernel with systemd under TCG", boot),
    ("PostgreSQL by its unit, qemu-ga and the agent by udev", services),
    ("nothing in the guest reaches for a network", offline),
    ("the PostgreSQL plugin, enabled as documented, passes its own test", plugin),
    ("a client commits numbered rows and logs each acknowledged id on tmpfs", load),
    ("migctl migrate --freeze between the two daemons, under the load", migrate),
    ("on the destination every acknowledged id is in the table; the client saw only a stall",
     nothing_lost),
    ("pg_amcheck passes on the destination", amcheck),
    ("two copies taken while frozen under the load, with qemu-ga's freeze and with the "
     "agent's quiesce", frozen_copies),
    ("each copy boots and recovers with every acknowledged row; the quiesced one replays "
     "less WAL", recoveries),
])
sys.exit(libvirtlib.run_steps(tap, h, st, diagnostics))
