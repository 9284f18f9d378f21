"""convergence_guest — host side of the convergence scenario, shared by
tests/vm/test_convergence.py and tests/bench/bench-convergence.py.

The guest boots with `ma.agent=0 ma.scenario=convergence`; the scenario
(guest-scenarios/convergence.sh) waits for the workload binary, which the host
builds static from convergence-load.c and pushes through qemu-ga, then starts a
memory dirtier in cgroup /batch, a service loop in /service, and the agent
configured with a `batch` throttle class."""

import hashlib
import os
import shutil
import subprocess
import time

import vmlib
from vmlib import VMError

HERE = os.path.dirname(os.path.abspath(__file__))
LOAD_SRC = os.path.join(HERE, "convergence-load.c")
GUEST_LOAD = "/run/convergence-load"
SERVICE_FILE = "/run/service.count"
BATCH_FILE = "/run/batch.count"
CHUNK = 192 * 1024


def build_load():
    """The static workload binary (cached under a hash of its source); None
    when the host cannot build static binaries."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    with open(LOAD_SRC, "rb") as fp:
        key = hashlib.sha256(fp.read()).hexdigest()[:16]
    out = os.path.join(vmlib.cache_dir(), "convergence-load-" + key)
    if not os.path.exists(out):
        r = subprocess.run([cc, "-static", "-O2", "-o", out + ".tmp", LOAD_SRC],
                           capture_output=True, text=True)
        if r.returncode != 0:
            vmlib.log(r.stderr)
            return None
        os.rename(out + ".tmp", out)
    return out


def append(quota=2000, mib=128, period=100000):
    return ("ma.agent=0 ma.scenario=convergence ma.cv.quota=%d ma.cv.period=%d ma.cv.mib=%d"
            % (quota, period, mib))


def push_load_qga(q, binary, chunk=CHUNK):
    """Copy the workload into the guest through a qemu-ga client (vmlib.QGA, or
    libvirtlib.VirshQGA with chunks under the 128 KiB of one command-line argument); the
    scenario starts once it is executable."""
    with open(binary, "rb") as fp:
        data = fp.read()
    tmp = GUEST_LOAD + ".part"
    for off in range(0, len(data), chunk):
        q.write_file(tmp, data[off:off + chunk], mode="w" if off == 0 else "a")
    q.sh("chmod 755 %s && mv %s %s" % (tmp, tmp, GUEST_LOAD))


def push_load(guest, binary):
    push_load_qga(guest.qga(), binary)


def start(harness, name, kernel, initrd, binary, quota=2000, mib=128, period=100000):
    """Boot a source guest running the scenario; returns it once the scenario is up."""
    g = harness.guest(name, kernel, initrd, append=append(quota, mib, period)).start()
    g.wait_console(r"^MA-READY:")
    push_load(g, binary)
    g.wait_console(r"^MA-CONVERGENCE-READY:")
    return g


def read_service(guest):
    """(iterations, guest monotonic ns) of the service loop."""
    until = time.monotonic() + vmlib.CMD_TIMEOUT
    while True:
        text = guest.qga().read_file(SERVICE_FILE).decode(errors="replace").split()
        if len(text) >= 2:
            return int(text[0]), int(text[1])
        if time.monotonic() > until:
            raise VMError("the service never reported in %s" % SERVICE_FILE)
        time.sleep(0.1)


def service_rate(a, b):
    """Iterations per second between two read_service() samples."""
    dt = (b[1] - a[1]) / 1e9
    if dt <= 0:
        raise VMError("service samples out of order: %r %r" % (a, b))
    return (b[0] - a[0]) / dt


def read_history(q, path=SERVICE_FILE):
    """[(count, guest monotonic ns)] of a workload's counter, every 100 ms since it started
    (FILE.log), through any qemu-ga client."""
    rows = []
    for line in q.read_file(path + ".log").decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            rows.append((int(parts[0]), int(parts[1])))
    return rows


def count_at(history, guest_ns):
    """The counter at a guest time, interpolated between the two reports around it."""
    before = [r for r in history if r[1] <= guest_ns]
    after = [r for r in history if r[1] > guest_ns]
    if not before or not after:
        return (before or after)[-1 if before else 0]
    (c0, t0), (c1, t1) = before[-1], after[0]
    return (c0 + (c1 - c0) * (guest_ns - t0) / (t1 - t0), guest_ns)


def read_counter(q, path=SERVICE_FILE):
    """(count, guest monotonic ns) of a workload's counter file, through any qemu-ga client
    (vmlib.QGA or libvirtlib.VirshQGA)."""
    until = time.monotonic() + vmlib.CMD_TIMEOUT
    while True:
        text = q.read_file(path).decode(errors="replace").split()
        if len(text) >= 2:
            return int(text[0]), int(text[1])
        if time.monotonic() > until:
            raise VMError("nothing reported in %s" % path)
        time.sleep(0.1)
