#!/usr/bin/env python3
"""Convergence on real libvirt: the same bandwidth-capped live migration of the convergence
guest (tests/vm scenario `convergence`: a 128 MiB memory dirtier in cgroup /batch, a CPU-bound
service loop in /service; TCG, 512 MiB, 1 vCPU) between two libvirt daemons
(tests/vm/libvirtlib.py), the way each peer steers it, in one run:

  precopy        virsh migrate --live (pre-copy alone)
  auto-converge  virsh migrate --live --auto-converge
  proxmox        auto-converge and XBZRLE always on; the downtime limit doubled whenever the
                 remaining memory made no progress for 2 s (QemuMigrate.pm's habit)
  vdsm           oVirt's convergence schedule: downtime limit 100, 150, 200, 300, 400, 500 ms
                 a step every 5 s of no progress, then post-copy
  kubevirt       job stats every 400 ms; abort when remaining made no progress for 150 s
                 (progressTimeout), post-copy past 150 s/GiB (completionTimeoutPerGiB)
  postcopy       --postcopy, switched once the first pass is copied
  migctl         migctl migrate (the agent throttles only the batch class)

Each is given up after --limit seconds (aborted). For each: converged, total seconds, libvirt's
downtime, bytes sent against the floor (bytes / bandwidth), the service's throughput during the
migration and in the 5 s after the switch (post-copy's page faults hurt there), and the batch
job's passes per second during the migration. Ratios against auto-converge, the named peer.

Measured 2026-12-04 on this 2-CPU Debian 12 machine (load 1-2), every mode in one run:

    mode           converged  total s  downtime ms  sent MiB  x floor  service/s during
    precopy        no         47.2     -            -         -        155981
    auto-converge  no         47.3     -            -         -        82879
    proxmox        yes        19.0     70           609       0.98     140941
    vdsm           no         47.3     -            -         -        155407
    kubevirt       no         46.2     -            -         -        162697
    postcopy       yes        9.2      -            -         -        140906
    migctl         yes        27.1     -            -         -        225853

(vdsm's and KubeVirt's schedules act after 150 s or more, past this run's 45 s.) Service in
the 5 s after the switch: migctl 165769/s, post-copy 158228/s (1.05x). With the guest's own
dirty-rate at the start (the controller's first step when the guest already dirties over
70% of a capped bandwidth), a second run of auto-converge and migctl: migctl converged in
20.1 s, 50 ms downtime, 488 MiB sent = 1.09x the floor of bytes / bandwidth, the service at
2.52x its throughput under auto-converge (goal 3x: not met in this run; the same guest
throttled before the migration started reached 3.12x in bench-convergence.py). migctl's
convergence never passes through post-copy.

Since then the service is measured up to the switch-over for every mode (migctl's from its
own timeline: its thaw, release and validation came after and counted against it before), and
migctl throttles before the first pass when the guest's dirty-rate already exceeds 70% of the
bandwidth. Measured 2026-12-04 under a heavy load (load average about 10, other suites running):

    mode           converged  total s  downtime ms  sent MiB  x floor  service/s during
    auto-converge  no         50.5     -            -         -        58058
    migctl         yes        21.9     858          325       1.55     146695

service migctl / auto-converge 2.53 (another run 2.49; goal 3x: not met). migctl's service
during the migration ran at the speed of the whole vCPU (twice its 70730/s in the 5 s after,
when the batch runs again on the destination): the ratio is bounded by how much auto-converge
slows the guest within 45 s, which a loaded host makes less (its passes are slower).

The same two modes on a quiet machine (load below 1), later the same day:

    mode           converged  total s  downtime ms  sent MiB  x floor  service/s during
    auto-converge  no         46.7     -            -         -        116536
    migctl         yes        22.3     40           569       1.05     319900

service migctl / auto-converge 2.75 (goal 3x: not met); bytes sent 1.05x the floor (goal
<= 1.1: met). This is the ceiling of this guest, not of the controller: in the 5 s after
the switch, with the batch running again beside it, the service does 158587/s; during
migctl's migration, with the batch throttled to 1%, it does 319900/s, the whole vCPU
(2.02x). Auto-converge slowed the vCPU by 27% on average over its 45 s (service 116536/s
against the 160000/s it gets beside the batch), so the best any controller can reach here
is 2 / 0.73 = 2.74-2.75x: the 3x goal needs a peer that slows the guest more than
auto-converge does in 45 s, or a guest where the service has less than half the vCPU.

usage: MIGCTL=BUILD/agent/client/migctl tests/bench/bench-convergence-libvirt.py [--limit 45]
           [--bandwidth-mib 32] [--modes precopy,auto-converge,...]
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "vm"))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402
import libvirtlib  # noqa: E402
import convergence_guest as cg  # noqa: E402

OPTS = ["--p2p", "--unsafe", "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"]
QUOTA, PERIOD = 1000, 1000000
AFTER_SECONDS = 5
MODES = "precopy,auto-converge,proxmox,vdsm,kubevirt,postcopy,migctl"


def rate(a, b):
    dt = (b[1] - a[1]) / 1e9
    return (b[0] - a[0]) / dt if dt > 0 else float("nan")


def job(pair, side):
    return libvirtlib.domjobinfo(pair, side, "g1")


mib = libvirtlib.mib


class Steer(threading.Thread):
    """A peer's controller: reads domjobinfo every `period` s and acts on the source."""

    def __init__(self, pair, mode, args):
        super().__init__(daemon=True)
        self.pair, self.mode, self.args = pair, mode, args
        self.stop = threading.Event()
        self.actions = []

    def act(self, *virsh_args):
        self.actions.append(" ".join(virsh_args[:2]))
        self.pair.virsh("src", *virsh_args, check=False)

    def run(self):
        period = 0.4 if self.mode == "kubevirt" else 1.0
        best, best_at, t0 = None, time.monotonic(), time.monotonic()
        downtime = 300
        schedule = [100, 150, 200, 300, 400, 500]
        step = 0
        postcopy_done = False
        if self.mode == "vdsm":
            self.act("migrate-setmaxdowntime", "g1", str(schedule[0]))
        while not self.stop.wait(period):
            info = job(self.pair, "src")
            rem = mib(info.get("Memory remaining", ""))
            if rem is None:
                continue
            now = time.monotonic()
            if best is None or rem < best * 0.95:
                best, best_at = rem, now
            stalled = now - best_at
            it = int(info.get("Iteration", "0") or 0)
            if self.mode == "proxmox" and stalled >= 2:
                downtime *= 2
                best_at = now
                self.act("migrate-setmaxdowntime", "g1", str(downtime))
            elif self.mode == "vdsm" and stalled >= 5:
                best_at = now
                step += 1
                if step < len(schedule):
                    self.act("migrate-setmaxdowntime", "g1", str(schedule[step]))
                elif not postcopy_done:
                    postcopy_done = True
                    self.act("migrate-postcopy", "g1")
            elif self.mode == "kubevirt":
                if stalled >= 150:
                    self.act("domjobabort", "g1")
                    return
                if now - t0 >= 150 * 0.5 and not postcopy_done:  # 150 s/GiB x 0.5 GiB
                    postcopy_done = True
                    self.act("migrate-postcopy", "g1")
            elif self.mode == "postcopy" and it >= 2 and not postcopy_done:
                postcopy_done = True
                self.act("migrate-postcopy", "g1")


def run_mode(pair, st, args, mode, migctl, env):
    console = os.path.join(pair.workdir, "console-%s.log" % mode)
    libvirtlib.start_guest(pair, "src", libvirtlib.domain_xml(
        "g1", st["kernel"], st["initrd"], st["disk"], cg.append(QUOTA, 128, PERIOD), console),
        console, ready=r"^MA-READY:")
    q = libvirtlib.VirshQGA(pair, "src", "g1")
    q.sync()
    cg.push_load_qga(q, st["load"], chunk=48 * 1024)
    libvirtlib.wait_console(console, r"^MA-CONVERGENCE-READY:")
    time.sleep(3)  # steady state
    s0, b0 = cg.read_counter(q), cg.read_counter(q, cg.BATCH_FILE)
    s0_wall = time.time()  # the host's clock when the guest's s0 was at most 100 ms old
    row = {"mode": mode}
    t0 = time.monotonic()
    if mode == "migctl":
        argv = [migctl, "--connect", pair.src_uri, "migrate", "g1", pair.dst_uri] + OPTS + [
            "--bandwidth", str(args.bandwidth_mib), "--downtime-limit", str(args.downtime_ms),
            "--progress-timeout", str(args.limit), "--no-quiesce", "--json"]
    else:
        argv = ["virsh", "-c", pair.src_uri, "migrate", "--live", "g1", pair.dst_uri] + OPTS + [
            "--bandwidth", str(args.bandwidth_mib)]
        if mode in ("auto-converge", "proxmox"):
            argv.append("--auto-converge")
        if mode == "proxmox":
            argv += ["--comp-methods", "xbzrle", "--compressed"]
        if mode in ("vdsm", "kubevirt", "postcopy"):
            argv.append("--postcopy")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    steer = None
    if mode not in ("migctl",):
        if mode != "auto-converge" and mode != "precopy":
            steer = Steer(pair, mode, args)
            steer.start()
        while "Memory remaining" not in job(pair, "src") and p.poll() is None:
            time.sleep(0.1)
        if mode != "proxmox" and mode != "vdsm":
            pair.virsh("src", "migrate-setmaxdowntime", "g1", str(args.downtime_ms), check=False)
        elif mode == "proxmox":
            pair.virsh("src", "migrate-setmaxdowntime", "g1", str(args.downtime_ms), check=False)
    try:
        out, err = p.communicate(timeout=args.limit)
        aborted = False
        end_wall = time.time()
    except subprocess.TimeoutExpired:
        end_wall = time.time()
        pair.virsh("src", "domjobabort", "g1", check=False)
        out, err = p.communicate(timeout=120)
        aborted = True
    if steer:
        steer.stop.set()
        steer.join(5)
        row["actions"] = ", ".join(sorted(set(steer.actions)))
    total = time.monotonic() - t0
    converged = p.returncode == 0 and not aborted and "g1" in pair.running("dst")
    side = "dst" if converged else "src"
    qs = libvirtlib.VirshQGA(pair, side, "g1")
    b1 = cg.read_counter(qs, cg.BATCH_FILE)
    doc = json.loads(out) if mode == "migctl" and out.strip() else None
    if doc is not None and converged:
        # the switch-over, from migctl's own timeline: the service is measured up to there,
        # as for the others (migctl's thaw, release and validation come after)
        steps = {st_["what"]: st_["t"] for st_ in doc["timeline"]["steps"]}
        end_wall = doc["timeline"]["origin-us"] / 1e6 + steps.get("migration completed", 0)
    # the service's history (every 100 ms, guest clock), read once the 5 s after have passed
    time.sleep(max(0.0, end_wall + AFTER_SECONDS + 0.5 - time.time()))
    history = cg.read_history(qs)
    switch_ns = s0[1] + (end_wall - s0_wall) * 1e9
    s1 = cg.count_at(history, switch_ns)
    s2 = cg.count_at(history, switch_ns + AFTER_SECONDS * 1e9)
    row.update(converged=converged, total=total, service_before=None,
               service_during=rate(s0, s1), service_after=rate(s1, s2),
               batch_during=rate(b0, b1))
    if converged:
        info = job(pair, "dst") if mode != "migctl" else {}
        done = pair.virsh("dst", "domjobinfo", "g1", "--completed", check=False)
        for line in done.splitlines():
            if line.startswith("Total downtime:"):
                row["downtime"] = float(line.split(":")[1].split()[0])
            if line.startswith("Data processed:"):
                row["sent_mib"] = mib(line.split(":", 1)[1].strip())
            if line.startswith("Time elapsed:"):
                row["libvirt_s"] = float(line.split(":")[1].split()[0]) / 1000
        del info
    if doc is not None:
        if "downtime-ms" in doc:
            row["downtime"] = doc["downtime-ms"]
            row["sent_mib"] = doc.get("data-bytes", 0) / 2**20
            row["libvirt_s"] = doc.get("libvirt-total-ms", 0) / 1000
        row["actions"] = "; ".join(s["detail"] for s in doc["timeline"]["steps"]
                                   if s["what"] == "throttled")
    for side_name in ("src", "dst"):
        pair.virsh(side_name, "destroy", "g1", check=False)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=float, default=45)
    ap.add_argument("--bandwidth-mib", type=int, default=32)
    ap.add_argument("--downtime-ms", type=int, default=300)
    ap.add_argument("--modes", default=MODES)
    args = ap.parse_args()
    migctl = vmlib.find_migctl()
    if not migctl:
        raise SystemExit("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")
    env = dict(os.environ, MIGCTL_MODULE_DIR=os.environ.get("MIGCTL_MODULE_DIR")
               or os.path.dirname(migctl))
    h = vmlib.Harness("bench-convergence-libvirt")
    st = {"disk": h.disk}
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True)
    st["load"] = cg.build_load()
    rows = []
    with libvirtlib.LibvirtPair(h.workdir) as pair:
        for mode in args.modes.split(","):
            vmlib.make_data_disk(h.disk)
            print("# %s" % mode, flush=True)
            rows.append(run_mode(pair, st, args, mode, migctl, env))
    h.close(False)
    print("\nconvergence on libvirt: 128 MiB dirtier, bandwidth %d MiB/s, downtime limit %d ms, "
          "given up after %.0f s (TCG, 1 vCPU)\n" % (args.bandwidth_mib, args.downtime_ms,
                                                    args.limit))
    hdr = ("mode", "converged", "total s", "downtime ms", "sent MiB", "x floor",
           "service/s during", "service/s 5 s after", "batch passes/s")
    table = [hdr]
    for r in rows:
        floor = (r.get("sent_mib") or 0) / args.bandwidth_mib
        table.append((r["mode"], "yes" if r["converged"] else "no", "%.1f" % r["total"],
                      "%.0f" % r["downtime"] if "downtime" in r else "-",
                      "%.0f" % r["sent_mib"] if "sent_mib" in r else "-",
                      "%.2f" % (r["libvirt_s"] / floor) if floor and "libvirt_s" in r else "-",
                      "%.0f" % r["service_during"], "%.0f" % r["service_after"],
                      "%.2f" % r["batch_during"]))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(hdr))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    by = {r["mode"]: r for r in rows}
    if "migctl" in by and "auto-converge" in by:
        print("\nservice during the migration, migctl / auto-converge: %.2f (goal >= 3)" % (
            by["migctl"]["service_during"] / by["auto-converge"]["service_during"]))
    if "migctl" in by and "postcopy" in by and by["postcopy"]["converged"]:
        print("service in the 5 s after the switch, migctl / post-copy: %.2f (goal >= 1)" % (
            by["migctl"]["service_after"] / by["postcopy"]["service_after"]))
    for r in rows:
        if r.get("actions"):
            print("%s: %s" % (r["mode"], r["actions"]))


if __name__ == "__main__":
    main()
