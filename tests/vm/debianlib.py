"""debianlib — the real Debian 12 guest (tests/vm/build-debian-image.sh) with PostgreSQL under a
write load, as a libvirt domain on the two daemons of libvirtlib; shared by the VM test
test_debian_postgresql.py (which `tests/vm/demo --real` runs) and the benchmark
tests/bench/bench-debian-postgresql.py.

The image is built from Debian's packages and cached under a content key in
$MA_DEBIAN_IMAGE_CACHE (default /var/cache/migration-agent-tests, one directory per key): the
key covers the build script, the .debs and the host's apt sources, so a clean clone of the same
tree reuses it. Each run boots a copy-on-write overlay of it, never the cached disk itself.

    img, note, seconds = ensure_image()
    with libvirtlib.LibvirtPair(workdir) as pair:
        g = DebianGuest(pair, workdir, img)
        g.boot(); g.start_load(); ...; g.stop_load(); g.check_acknowledged()
"""

import json
import shutil
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vmlib  # noqa: E402
from vmlib import VMError, log  # noqa: E402
import libvirtlib  # noqa: E402

S = vmlib.SCALE
PGBIN = "/usr/lib/postgresql/15/bin"
LOAD_DIR = "/run/pgload"
IMAGE_BUILD_TIMEOUT = 1800 * S


def image_cache():
    return os.environ.get("MA_DEBIAN_IMAGE_CACHE") or "/var/cache/migration-agent-tests"


def missing_tools():
    missing = [t for t in ("mmdebstrap", "qemu-img", "mkfs.ext4") if not shutil.which(t)]
    if os.geteuid() != 0:
        missing.append("root (mmdebstrap's root mode)")
    return missing


def ensure_image():
    """(the image's directory: debian12.qcow2, vmlinuz, initrd.img, packages.txt; what the
    build said; seconds), built when its key changed."""
    deb = vmlib.ensure_deb()
    t0 = time.monotonic()
    r = subprocess.run([os.path.join(HERE, "build-debian-image.sh"), image_cache(),
                        os.path.dirname(deb)],
                       capture_output=True, text=True, timeout=IMAGE_BUILD_TIMEOUT)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines or not lines[-1].startswith("image: "):
        log(r.stdout + r.stderr)
        raise VMError("build-debian-image.sh failed")
    note = lines[-2].replace("build-debian-image: ", "") if len(lines) > 1 else ""
    return lines[-1][len("image: "):], note, time.monotonic() - t0


class DebianGuest:
    """One Debian guest, domain `name`, booted on `side` from an overlay of the cached image."""

    def __init__(self, pair, workdir, image_dir, name="g1", side="src", mem_mib=1024,
                 mac="52:54:00:12:34:56", disk=None):
        self.pair, self.workdir, self.image_dir = pair, workdir, image_dir
        self.name, self.side, self.mem_mib, self.mac = name, side, mem_mib, mac
        self.disk = disk or os.path.join(workdir, name + ".qcow2")
        self.console = os.path.join(workdir, name + "-console.log")

    # -- the domain ------------------------------------------------------------------------

    def make_overlay(self):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        os.path.join(self.image_dir, "debian12.qcow2"), self.disk], check=True)

    def xml(self):
        return libvirtlib.domain_xml(
            self.name, os.path.join(self.image_dir, "vmlinuz"),
            os.path.join(self.image_dir, "initrd.img"), self.disk, "root=/dev/vda ro",
            self.console, mem_mib=self.mem_mib, mac=self.mac, disk_format="qcow2")

    def qga(self):
        return libvirtlib.VirshQGA(self.pair, self.side, self.name)

    def sh(self, script, timeout=60 * S):
        return self.qga().sh(script, timeout=timeout)

    def boot(self, overlay=True):
        """Start the domain; wait until systemd reports the boot finished. Returns seconds."""
        if overlay:
            self.make_overlay()
        t0 = time.monotonic()
        libvirtlib.start_guest(self.pair, self.side, self.xml(), self.console, ready=None)
        self.qga().sync(timeout=vmlib.BOOT_TIMEOUT * 3)
        # `is-system-running --wait` ends when the boot job queue is empty
        rc, out, err = self.qga().exec(["systemctl", "is-system-running", "--wait"],
                                       timeout=vmlib.BOOT_TIMEOUT * 3)
        state = out.strip()
        if state not in ("running", "degraded"):
            raise VMError("systemd: %r %s" % (state, err))
        if state == "degraded":
            failed = self.sh("systemctl --failed --no-legend --plain || true")
            raise VMError("the boot is degraded; failed units: %s" % failed)
        return time.monotonic() - t0

    def wait_ready(self, timeout=180):
        """Until PostgreSQL accepts connections (pg_isready)."""
        until = time.monotonic() + timeout * S
        while True:
            rc, out, err = self.qga().exec(["runuser", "-u", "postgres", "--",
                                            PGBIN + "/pg_isready", "-q"], timeout=60 * S)
            if rc == 0:
                return
            if time.monotonic() > until:
                raise VMError("PostgreSQL does not accept connections: %s" % self.sh(
                    "systemctl status postgresql@15-main --no-pager; tail -n 30 "
                    "/var/log/postgresql/postgresql-15-main.log || true"))
            time.sleep(1)

    def units(self):
        """How the three services came up: {unit: (ActiveState, how it was started)}."""
        out = self.sh("for u in postgresql@15-main qemu-guest-agent migration-agent; do "
                      "echo $u $(systemctl show -P ActiveState $u) "
                      "$(systemctl show -P UnitFileState $u) "
                      "$(systemctl show -P WantedBy $u | tr ' ' ,) "
                      "$(systemctl show -P RequiredBy $u | tr ' ' ,); done")
        res = {}
        for line in out.splitlines():
            f = line.split()
            res[f[0]] = f[1:]
        return res

    def check_offline(self):
        """Nothing in the guest reaches for the network: no address beyond loopback, no route,
        no unit of apt's timers ran, no network configuration unit exists."""
        routes = self.sh("ip -o route show; ip -o -6 route show | grep -v '^fe80\\|^::1' "
                         "|| true").strip()
        addrs = self.sh("ip -o addr show scope global").strip()
        ran = self.sh("for u in apt-daily.service apt-daily-upgrade.service "
                      "systemd-timesyncd.service systemd-networkd.service networking.service "
                      "NetworkManager.service; do s=$(systemctl show -P ActiveEnterTimestamp"
                      "Monotonic $u 2>/dev/null); [ \"${s:-0}\" = 0 ] || echo $u; done").split()
        if routes or addrs or ran:
            raise VMError("the guest reaches for a network: routes %r, addresses %r, units %r"
                          % (routes, addrs, ran))
        timers = self.sh("systemctl list-timers --all --no-legend --plain | "
                         "awk '{for (i=1;i<=NF;i++) if ($i ~ /\\.timer$/) print $i}'").split()
        return timers

    # -- PostgreSQL and the load -------------------------------------------------------------

    def psql(self, sql, db="loaddb", timeout=60 * S):
        return self.sh("runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -d %s -c %s"
                       % (db, shquote(sql)), timeout=timeout)

    def prepare_load(self):
        self.sh("runuser -u postgres -- createdb loaddb")
        self.psql("CREATE TABLE acked (id integer PRIMARY KEY, at timestamptz DEFAULT now())")
        with open(os.path.join(HERE, "guest-debian", "pgload.sh"), "rb") as fp:
            self.qga().write_file("/run/pgload.sh", fp.read())
        self.sh("install -d -o postgres -g postgres %s && chmod 755 /run/pgload.sh" % LOAD_DIR)

    def start_load(self):
        """The client runs as a transient unit (User=postgres) and logs to /run (tmpfs)."""
        self.sh("systemd-run --unit=pgload -p User=postgres -E OUT=%s /bin/bash /run/pgload.sh"
                % LOAD_DIR)
        return self.wait_acked(50)

    def restart_load(self):
        """A new client after stop_load: it goes on from the table's highest id; the log of
        acknowledged ids is kept (appended to)."""
        self.sh("rm -f %s/stop %s/status; systemctl reset-failed pgload 2>/dev/null; true"
                % (LOAD_DIR, LOAD_DIR))
        self.sh("systemd-run --unit=pgload-%d -p User=postgres -E OUT=%s /bin/bash "
                "/run/pgload.sh" % (int(time.time()), LOAD_DIR))
        return self.wait_acked(self.acked_count() + 20)

    def acked_count(self):
        out = self.sh("cat %s/acked 2>/dev/null | wc -l" % LOAD_DIR).strip()
        return int(out or 0)

    def wait_acked(self, n, timeout=120):
        until = time.monotonic() + timeout * S
        while True:
            c = self.acked_count()
            if c >= n:
                return c
            st = self.sh("cat %s/status 2>/dev/null || true" % LOAD_DIR).strip()
            if st or time.monotonic() > until:
                raise VMError("the load acknowledged %d rows (want %d); status %r; errors %r"
                              % (c, n, st, self.sh("cat %s/errors" % LOAD_DIR)))
            time.sleep(1)

    def stop_load(self):
        self.sh("touch %s/stop" % LOAD_DIR)
        until = time.monotonic() + 120 * S
        while True:
            st = self.sh("cat %s/status 2>/dev/null || true" % LOAD_DIR).strip()
            if st:
                return st
            if time.monotonic() > until:
                raise VMError("the load did not stop: %s" % self.sh(
                    "systemctl status pgload --no-pager || true"))
            time.sleep(0.5)

    def acked(self):
        """[(guest time, id)] the server acknowledged; raises on any other line."""
        data = self.qga().read_file("%s/acked" % LOAD_DIR, limit=64 << 20).decode()
        rows = []
        for line in data.splitlines():
            f = line.split()
            if len(f) != 2 or not f[1].isdigit():
                raise VMError("the client logged %r" % line)
            rows.append((float(f[0]), int(f[1])))
        return rows

    def check_acknowledged(self):
        """Every acknowledged id is in the table (sets compared); what the table has beyond
        them can only be the one row in flight when the client stopped; no client error."""
        status = self.sh("cat %s/status" % LOAD_DIR).split()
        errors = self.sh("cat %s/errors" % LOAD_DIR).strip()
        rows = self.acked()
        acked = [i for _, i in rows]
        if status[:2] != ["exit", "0"] or errors:
            raise VMError("the client saw an error: status %r, stderr %r" % (status, errors))
        if acked != list(range(1, len(acked) + 1)):
            raise VMError("the client's log is not 1..N in order")
        table = set(int(x) for x in self.psql("SELECT id FROM acked").split())
        missing = sorted(set(acked) - table)
        extra = sorted(table - set(acked))
        if missing:
            raise VMError("%d acknowledged ids are not in the table: %s" % (
                len(missing), missing[:20]))
        if extra and extra != [len(acked) + 1]:
            raise VMError("the table has ids nobody acknowledged: %s" % extra[:20])
        return rows, len(table)

    def amcheck(self):
        """pg_amcheck over the load's database: heap and B-tree (with every heap tuple in
        the index); the amcheck extension is installed by pg_amcheck itself."""
        rc, out, err = self.qga().exec(
            ["runuser", "-u", "postgres", "--", PGBIN + "/pg_amcheck", "--install-missing",
             "--heapallindexed", "--rootdescend", "--progress", "-d", "loaddb"],
            timeout=300 * S)
        if rc != 0:
            raise VMError("pg_amcheck: exit %s: %s %s" % (rc, out[-3000:], err[-3000:]))
        return (err.strip().splitlines() or [""])[-1]

    # -- the agent -----------------------------------------------------------------------------

    def diagnostics(self):
        log("---- %s: console (%s) ----" % (self.name, self.console))
        try:
            with open(self.console, errors="replace") as fp:
                log(fp.read()[-40000:])
        except OSError:
            pass
        for side in (self.side, "dst" if self.side == "src" else "src"):
            if self.name not in self.pair.running(side):
                continue
            q = libvirtlib.VirshQGA(self.pair, side, self.name)
            try:
                if q.cmd("guest-fsfreeze-status", timeout=10) == "frozen":
                    q.cmd("guest-fsfreeze-thaw", timeout=30)
            except Exception:  # noqa: BLE001
                pass
            for title, script in (
                    ("agent log (journal)", "journalctl -b --no-pager -u migration-agent "
                     "| tail -n 300"),
                    ("journal", "journalctl -b --no-pager -o short-monotonic | tail -n 300"),
                    ("load", "cat %s/status %s/errors; tail -n 5 %s/acked" % (
                        LOAD_DIR, LOAD_DIR, LOAD_DIR))):
                try:
                    rc, out, err = q.exec(["/bin/sh", "-c", script], timeout=60)
                    log("---- %s on %s: %s ----" % (self.name, side, title))
                    log(out + err)
                except Exception as e:  # noqa: BLE001
                    log("---- %s on %s: %s unavailable: %s" % (self.name, side, title, e))


def shquote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def longest_stall(rows):
    """(seconds, id before, id after) of the longest gap between two acknowledged commits."""
    best = (0.0, 0, 0)
    for (t0, i0), (t1, i1) in zip(rows, rows[1:]):
        if t1 - t0 > best[0]:
            best = (t1 - t0, i0, i1)
    return best


def migctl_json(migctl, module_dir, uri, *args, timeout=600 * S):
    env = dict(os.environ, MIGCTL_MODULE_DIR=module_dir)
    r = subprocess.run([migctl, "--connect", uri] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {})


# -- application consistency: a copy of the disk taken while frozen, and its recovery --------

def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def frozen_copy(guest, dest, migctl=None, module_dir=None, operation=None):
    """Copy the guest's disk while its filesystems are frozen: with `operation`, the agent
    quiesces first (the PostgreSQL plugin's CHECKPOINT) as `migctl migrate` does, then qemu-ga
    freezes; without it, qemu-ga's freeze alone. The overlay is read while QEMU holds it
    (`qemu-img convert -U`): the freeze made the guest flush, so the file is consistent.
    Returns the seconds the filesystems stayed frozen."""
    uri = guest.pair.uri(guest.side)
    if operation:
        r, doc = migctl_json(migctl, module_dir, uri, "--domain", guest.name, "quiesce",
                             "operation=" + operation, "lease_seconds=120", "--json",
                             timeout=180 * S)
        if r.returncode != 0:
            raise VMError("quiesce: exit %d: %s %s" % (r.returncode, r.stdout, r.stderr))
    q = guest.qga()
    try:
        t0 = time.monotonic()
        q.cmd("guest-fsfreeze-freeze", timeout=120 * S)
        try:
            subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "qcow2",
                            "-B", os.path.join(guest.image_dir, "debian12.qcow2"),
                            "-F", "qcow2", guest.disk, dest], check=True, timeout=300 * S)
        finally:
            q.cmd("guest-fsfreeze-thaw", timeout=120 * S)
        frozen = time.monotonic() - t0
    finally:
        if operation:
            migctl_json(migctl, module_dir, uri, "--domain", guest.name, "thaw",
                        "operation=" + operation, "--json", timeout=120 * S)
    return frozen


def recovery(guest):
    """PostgreSQL's crash recovery in a guest booted from a frozen copy, from its server log:
    {'replayed': WAL bytes redone, 'redo_s': redo time (the server's own figure, or None),
     'ready_s': from the server's start to accepting connections (log timestamps)}."""
    log_text = guest.sh("cat /var/log/postgresql/postgresql-15-main.log")
    rx_ts = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)"
    import datetime
    import re

    def ts(line):
        m = re.match(rx_ts, line)
        return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f") if m else None

    # the last start in the log is this boot's
    lines = log_text.splitlines()
    starts = [i for i, l in enumerate(lines) if "starting PostgreSQL" in l]
    if not starts:
        raise VMError("no server start in the log: %s" % log_text[-2000:])
    lines = lines[starts[-1]:]
    start = ts(lines[0])
    res = {"replayed": 0, "redo_s": None, "ready_s": None, "interrupted": False}
    redo_start = None
    for line in lines:
        if "was interrupted" in line or "was not properly shut down" in line:
            res["interrupted"] = True
        m = re.search(r"redo starts at ([0-9A-F]+/[0-9A-F]+)", line)
        if m:
            redo_start = lsn(m.group(1))
        m = re.search(r"redo done at ([0-9A-F]+/[0-9A-F]+).*elapsed: ([0-9.]+) s", line)
        if m and redo_start is not None:
            res["replayed"] = lsn(m.group(1)) - redo_start
            res["redo_s"] = float(m.group(2))
        if "ready to accept connections" in line and res["ready_s"] is None:
            res["ready_s"] = (ts(line) - start).total_seconds()
    if res["ready_s"] is None:
        raise VMError("the server never accepted connections: %s" % "\n".join(lines[-30:]))
    return res


def boot_copy(pair, workdir, image_dir, disk, name, side="dst", mac="52:54:00:12:34:60"):
    """Boot a frozen copy as a third guest; returns (guest, recovery figures)."""
    g = DebianGuest(pair, workdir, image_dir, name=name, side=side, mac=mac, disk=disk)
    g.boot(overlay=False)
    g.wait_ready()
    rec = recovery(g)
    rows = int(g.psql("SELECT count(*) FROM acked").strip())
    rec["rows"] = rows
    return g, rec
