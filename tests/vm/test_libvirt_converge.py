#!/usr/bin/env python3
"""VM scenario: migctl migrate's convergence controller on real libvirt.

The convergence guest (a 128 MiB memory dirtier in cgroup /batch, a service loop in /service,
the agent's throttle class `batch` and `protected=service`) as a libvirt domain, migrated
with the bandwidth capped at 32 MiB/s and a 300 ms downtime limit:

- plain pre-copy (`virsh migrate --live --bandwidth 32`) is still running after 30 s, with
  as much left to send as after its first pass (the dirtier outruns the cap), and is aborted;
- `migctl migrate` converges: from the second pass it sees the dirty rate above the
  bandwidth, asks the agent to throttle (class=auto), the agent throttles `batch` only (never
  the service), the migration completes, and the class is unthrottled on the destination
  (cpu.max back to what it was), with the reason in the timeline;
- with the guest's throttle off (`--converge none`), the escalations allowed by the user:
  `--suspend-after` pauses the guest so that the migration finishes (the guest runs again on
  the destination), `--postcopy` switches a stalled migration to post-copy.
Speed comparisons (against auto-converge and the peers' schedules) are in
tests/bench/bench-convergence.py, not here."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError, log  # noqa: E402
import libvirtlib  # noqa: E402
import convergence_guest as cg  # noqa: E402

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL, MODULE_DIR = libvirtlib.require_migctl_module()

S = vmlib.SCALE
BANDWIDTH = 32
PLAIN_SECONDS = 30
QUOTA, PERIOD = 1000, 1000000  # the batch class: 0.1 % of a CPU (bench-convergence.py)
h = vmlib.Harness("libvirt-converge")
st = {}
OPTS = ["--p2p", "--unsafe", "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"]


def build():
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True)
    vmlib.make_data_disk(h.disk)
    st["load"] = cg.build_load()
    if not st["load"]:
        raise VMError("cannot build tests/vm/convergence-load.c statically (cc, libc.a)")
    st["pair"] = libvirtlib.LibvirtPair(h.workdir).__enter__()
    return "two daemons in %.1f s" % st["pair"].timings["daemons"]


def boot():
    st["console"] = os.path.join(h.workdir, "console.log")
    xml = libvirtlib.domain_xml("g1", st["kernel"], st["initrd"], h.disk,
                                cg.append(QUOTA, 128, PERIOD), st["console"])
    libvirtlib.start_guest(st["pair"], "src", xml, st["console"], ready=r"^MA-READY:")
    q = libvirtlib.VirshQGA(st["pair"], "src", "g1")
    q.sync()
    cg.push_load_qga(q, st["load"], chunk=48 * 1024)
    m = libvirtlib.wait_console(st["console"], r"^MA-CONVERGENCE-READY: (.*)$")
    r = run_migctl("src", "--domain", "g1", "info", "--json", timeout=120 * S)
    caps = json.loads(r.stdout).get("capabilities", [])
    if "throttle" not in caps or "dirty-rate" not in caps:
        raise VMError("capabilities: %r" % caps)
    return m.group(1)


def run_migctl(side, *args, timeout=300 * S, check=True):
    env = dict(os.environ, MIGCTL_MODULE_DIR=MODULE_DIR)
    r = subprocess.run([MIGCTL, "--connect", st["pair"].uri(side)] + list(args),
                       capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise VMError("migctl %s: exit %d\n%s\n%s" % (" ".join(args[:2]), r.returncode,
                                                     r.stdout[-4000:], r.stderr[-4000:]))
    return r


def job_info(side):
    return libvirtlib.domjobinfo(st["pair"], side, "g1")


def plain_does_not_converge():
    pair = st["pair"]
    p = subprocess.Popen(["virsh", "-c", pair.src_uri, "migrate", "--live", "g1", pair.dst_uri,
                          "--bandwidth", str(BANDWIDTH)] + OPTS,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        until = time.monotonic() + 60 * S
        while "Memory remaining" not in job_info("src"):
            if p.poll() is not None or time.monotonic() > until:
                raise VMError("no migration job: %s" % (p.communicate()[1] if p.poll() is not None
                                                         else "timeout"))
            time.sleep(0.2)
        samples = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < PLAIN_SECONDS * S:
            info = job_info("src")
            if p.poll() is not None:
                raise VMError("plain pre-copy ended: exit %s %s (the dirtier should outrun "
                              "%d MiB/s)" % (p.returncode, p.communicate()[1], BANDWIDTH))
            if "Memory remaining" in info:
                samples.append((info.get("Iteration", "?"),
                                libvirtlib.mib(info["Memory remaining"])))
            time.sleep(1)
        last = samples[-1]
        if p.poll() is not None:
            raise VMError("plain pre-copy ended")
        st["pair"].virsh("src", "domjobabort", "g1")
        p.communicate(timeout=60 * S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if "g1" not in pair.running("src"):
        raise VMError("g1 left the source")
    return "after %d s: iteration %s, %.0f MiB remaining; aborted" % (PLAIN_SECONDS, last[0],
                                                                      last[1])


def migctl_converges():
    r = run_migctl("src", "migrate", "g1", st["pair"].dst_uri, *OPTS, "--bandwidth",
                   str(BANDWIDTH), "--downtime-limit", "300", "--progress-timeout", "120",
                   "--no-quiesce", "--json", timeout=400 * S)
    doc = json.loads(r.stdout)
    steps = doc["timeline"]["steps"]
    throttled = [s for s in steps if s["what"] == "throttled"]
    if not throttled or not all("class batch" in s["detail"] for s in throttled):
        raise VMError("throttled: %r\n%s" % (throttled, r.stderr[-3000:]))
    if "service" in json.dumps(throttled):
        raise VMError("the service was throttled: %r" % throttled)
    if not any(s["what"] == "unthrottled" and s["detail"] == "destination" for s in steps):
        raise VMError("no unthrottle on the destination: %r" % [s["what"] for s in steps])
    unthrottled = [s for s in steps if s["what"] == "UNTHROTTLED"]
    if "g1" not in st["pair"].running("dst"):
        raise VMError("g1 not on the destination")
    q = libvirtlib.VirshQGA(st["pair"], "dst", "g1")
    cpu_max = q.read_file("/sys/fs/cgroup/batch/cpu.max").decode().strip()
    if cpu_max.split()[0] != "max":
        raise VMError("batch cpu.max after the migration: %r" % cpu_max)
    svc = q.read_file("/sys/fs/cgroup/service/cpu.max").decode().strip()
    if svc.split()[0] != "max":
        raise VMError("service cpu.max: %r" % svc)
    phases = {p["name"]: p["seconds"] for p in doc["timeline"]["phases"]}
    why = throttled[0]["detail"].split(": ", 1)[-1]
    for smp in doc["timeline"]["samples"][::5]:
        log("sample t=%.1f iteration %d remaining %.1f MiB dirty %.1f MiB/s" % (
            smp["t"], smp["iteration"], smp["memory-remaining"] / 2**20,
            smp["memory-dirty-rate"] / 2**20))
    return "converged in %.1f s (downtime %s ms, %.0f MiB sent: %.2fx the floor of bytes / " \
        "bandwidth); throttled batch because %s; UNTHROTTLED events %d; cpu.max back to %r" % (
            phases["migration"], doc.get("downtime-ms"), doc.get("data-bytes", 0) / 2**20,
            phases["migration"] / (doc.get("data-bytes", 0) / 2**20 / BANDWIDTH),
            why, len(unthrottled), cpu_max)


def escalation(src, dst, extra, want_step):
    """migctl migrate with the guest's throttle off (--converge none) and one escalation
    allowed: the step is taken, the migration completes, the guest runs on the destination
    (not paused) and its service advances."""
    r = run_migctl(src, "migrate", "g1", st["pair"].uri(dst), *OPTS, "--bandwidth",
                   str(BANDWIDTH), "--converge", "none", "--no-quiesce", "--json", *extra,
                   timeout=400 * S)
    doc = json.loads(r.stdout)
    steps = [s for s in doc["timeline"]["steps"] if s["who"] == "host"]
    taken = [s for s in steps if s["what"] == want_step]
    if not taken:
        raise VMError("no %s step: %r\n%s" % (want_step, [s["what"] for s in steps],
                                                r.stderr[-3000:]))
    if any(s["what"] == "throttled" for s in doc["timeline"]["steps"]):
        raise VMError("--converge none throttled")
    if "g1" not in st["pair"].running(dst):
        raise VMError("g1 not running on %s" % dst)
    state = st["pair"].virsh(dst, "domstate", "g1").strip()
    if state != "running":
        raise VMError("g1 on %s is %s" % (dst, state))
    q = libvirtlib.VirshQGA(st["pair"], dst, "g1")
    a = cg.read_counter(q)
    time.sleep(1)
    b = cg.read_counter(q)
    if b[0] <= a[0]:
        raise VMError("the service does not advance on %s" % dst)
    phases = {p["name"]: p["seconds"] for p in doc["timeline"]["phases"]}
    return "%s at T+%.1f s (%s); completed in %.1f s, downtime %s ms; the service runs" % (
        want_step, taken[0]["t"], taken[0]["detail"], phases["migration"],
        doc.get("downtime-ms"))


def suspend_after():
    return escalation("dst", "src", ["--suspend-after", "12"], "suspend")


def postcopy():
    return escalation("src", "dst", ["--postcopy"], "post-copy")


def diagnostics():
    if "pair" in st:
        st["pair"].diagnostics()
    try:
        with open(st.get("console", ""), errors="replace") as fp:
            log("---- guest console ----")
            log(fp.read()[-40000:])
    except OSError:
        pass


tap = vmlib.Tap([
    ("two libvirt daemons; the guest image and the workload", build),
    ("the convergence guest as a libvirt domain", boot),
    ("plain pre-copy does not converge under the cap", plain_does_not_converge),
    ("migctl migrate converges by throttling only the batch class, then releases it",
     migctl_converges),
    ("--suspend-after: a stalled migration is finished paused, and the guest runs on",
     suspend_after),
    ("--postcopy: a stalled migration switches to post-copy and completes", postcopy),
])
sys.exit(libvirtlib.run_steps(tap, h, st, diagnostics))
