#!/usr/bin/env python3
"""bench-debian-postgresql — the long form of tests/vm/test_debian_postgresql.py: what the
agent's quiesce buys a real PostgreSQL in a real Debian 12 guest (tests/vm/build-debian-image.sh),
on two real libvirt daemons, under TCG.

One guest, one client committing numbered rows one at a time the whole run (the VM suite's
pgload.sh), and, in one run:

1. application consistency: two copies of the disk taken while frozen, one with qemu-ga's
   freeze alone, one with the agent's quiesce (the PostgreSQL plugin's CHECKPOINT) before the
   freeze, each booted later as a guest of its own: the WAL PostgreSQL replays and the time
   from the server's start to accepting connections;
2. three migrations under the load, back and forth between the daemons: `migctl migrate` with
   the agent's quiesce and --freeze, with --no-quiesce --freeze (qemu-ga's freeze alone), and
   with --no-quiesce and no freeze: the client's worst stall and its commits per second during
   each migration (guest clock), the frozen window (host clock);
3. every acknowledged row is in the table at the end, and pg_amcheck passes on every copy.

Prints a table and the ratios. Needs root, libvirt, mmdebstrap, a built tree:
    MIGCTL=build/agent/client/migctl MIGCTL_MODULE_DIR=build/agent/client \\
        MA_VM_CACHE=build/tests/vm/cache python3 tests/bench/bench-debian-postgresql.py
Environment: LOAD_SECONDS (load before the first copy, 60), MA_DEBIAN_IMAGE_CACHE,
MA_VM_TIMEOUT_SCALE. Exit status 0 when every run completed and nothing acknowledged was lost.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "vm"))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402
import libvirtlib  # noqa: E402
import debianlib  # noqa: E402

S = vmlib.SCALE
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))


def say(msg):
    print(msg, flush=True)


def guest_now(g):
    """The guest's clock (the client's timestamps are on it)."""
    return float(g.sh("date +%s.%N", timeout=60 * S))


def migrate(pair, g, migctl, module_dir, extra, label, workdir):
    to = "dst" if g.side == "src" else "src"
    n0, t0 = g.acked_count(), guest_now(g)
    w0 = time.monotonic()
    r, doc = debianlib.migctl_json(
        migctl, module_dir, pair.uri(g.side), "migrate", g.name, pair.uri(to), "--p2p",
        "--unsafe", "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1",
        "--bandwidth", "64", "--json", "--timeline",
        os.path.join(workdir, "timeline-%s.svg" % label.replace(" ", "-")), *extra,
        timeout=900 * S)
    wall = time.monotonic() - w0
    if r.returncode != 0:
        raise VMError("%s: migctl migrate exit %d: %s %s" % (label, r.returncode,
                                                           r.stdout[-3000:], r.stderr[-3000:]))
    g.side = to
    if doc.get("validation", {}).get("verdict") != "pass":
        raise VMError("%s: validation %r" % (label, doc.get("validation")))
    g.wait_acked(g.acked_count() + 20)
    n1, t1 = g.acked_count(), guest_now(g)
    rows = [(t, i) for t, i in g.acked() if t0 <= t <= t1]
    stall = debianlib.longest_stall(rows)[0] if len(rows) > 1 else t1 - t0
    phases = {p["name"]: p["seconds"] for p in doc["timeline"]["phases"]}
    return {"label": label, "wall": wall, "migration": phases.get("migration", 0),
            "frozen": phases.get("frozen", 0.0), "quiesced": phases.get("quiesced", 0.0),
            "stall": stall, "tps": (n1 - n0) / max(t1 - t0, 0.001), "rows": n1 - n0}


def main():
    migctl = vmlib.find_migctl()
    if not migctl:
        say("migctl not found: set MIGCTL=BUILD/agent/client/migctl")
        return 2
    module_dir = os.environ.get("MIGCTL_MODULE_DIR") or os.path.dirname(migctl)
    missing = libvirtlib.missing_tools() + debianlib.missing_tools()
    if missing:
        say("missing: %s" % ", ".join(missing))
        return 2
    h = vmlib.Harness("bench-debian-postgresql")
    failed = True
    pair = None
    g = None
    try:
        image, note, secs = debianlib.ensure_image()
        say("image: %s (%.0f s)" % (note, secs))
        pair = libvirtlib.LibvirtPair(h.workdir).__enter__()
        g = debianlib.DebianGuest(pair, h.workdir, image)
        say("boot: %.0f s" % g.boot())
        g.prepare_load()
        g.start_load()
        say("load: %.0f s before the first copy" % LOAD_SECONDS)
        time.sleep(LOAD_SECONDS)

        copies = {}
        for label, op in (("qemu-ga freeze", None), ("agent quiesce + freeze", "bench-copy")):
            path = os.path.join(h.workdir, "copy-%s.qcow2" % ("agent" if op else "qga"))
            acked = g.acked_count()
            frozen = debianlib.frozen_copy(g, path, migctl, module_dir, operation=op)
            copies[label] = {"path": path, "frozen": frozen, "acked": acked}
            say("copy (%s): frozen %.2f s, %d rows acknowledged before the freeze" % (
                label, frozen, copies[label]["acked"]))
            time.sleep(15)

        runs = []
        for label, extra in (("agent quiesce + freeze", ["--freeze"]),
                             ("qemu-ga freeze", ["--no-quiesce", "--freeze"]),
                             ("no freeze", ["--no-quiesce"])):
            res = migrate(pair, g, migctl, module_dir, extra, label, h.workdir)
            runs.append(res)
            say("migration (%s): %.1f s, frozen %.2f s, worst stall %.2f s, %.1f commits/s" % (
                label, res["migration"], res["frozen"], res["stall"], res["tps"]))

        status = g.stop_load()
        rows, in_table = g.check_acknowledged()
        say("load: %s; %d acknowledged ids all in the table (%d rows)" % (status, len(rows),
                                                                       in_table))
        say("pg_amcheck (guest): %s" % g.amcheck())
        pair.virsh(g.side, "destroy", g.name)

        for n, (label, c) in enumerate(copies.items()):
            cg, rec = debianlib.boot_copy(pair, h.workdir, image, c["path"], "copy%d" % n,
                                          side=g.side)
            rec["amcheck"] = cg.amcheck()
            have = set(int(x) for x in cg.psql("SELECT id FROM acked").split())
            lost = sorted(set(range(1, c["acked"] + 1)) - have)
            if lost:
                raise VMError("%s: %d ids acknowledged before the freeze are not in the copy: "
                              "%s" % (label, len(lost), lost[:20]))
            c.update(rec)
            say("recovery (%s): %d bytes of WAL replayed, redo %s s, accepting connections "
                "%.2f s after the start; %d rows, every acknowledged one; pg_amcheck passes" % (
                    label, rec["replayed"], rec["redo_s"], rec["ready_s"], rec["rows"]))
            pair.virsh(g.side, "destroy", cg.name)

        say("\n| migration | total s | frozen s | worst client stall s | commits/s |")
        say("|---|---|---|---|---|")
        for r in runs:
            say("| %s | %.1f | %.2f | %.2f | %.1f |" % (r["label"], r["migration"], r["frozen"],
                                                       r["stall"], r["tps"]))
        say("\n| frozen copy | WAL replayed (bytes) | redo s | start to accepting s |")
        say("|---|---|---|---|")
        for label, c in copies.items():
            say("| %s | %d | %s | %.2f |" % (label, c["replayed"], c["redo_s"], c["ready_s"]))
        a, q, n = runs
        qa, qq = copies["agent quiesce + freeze"], copies["qemu-ga freeze"]
        say("\nratios: worst stall agent/qemu-ga %.2f, agent/no-freeze %.2f; commits/s "
            "agent/qemu-ga %.2f, agent/no-freeze %.2f; WAL replayed agent/qemu-ga %.3f; "
            "time to accept connections agent/qemu-ga %.2f" % (
                a["stall"] / max(q["stall"], 1e-6), a["stall"] / max(n["stall"], 1e-6),
                a["tps"] / max(q["tps"], 1e-6), a["tps"] / max(n["tps"], 1e-6),
                qa["replayed"] / max(qq["replayed"], 1), qa["ready_s"] / max(qq["ready_s"], 1e-6)))
        failed = False
    except Exception as e:  # noqa: BLE001
        say("FAILED: %s: %s" % (type(e).__name__, e))
        if pair is not None:
            pair.diagnostics()
        if g is not None:
            g.diagnostics()
    finally:
        if pair is not None:
            pair.close()
        h.close(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
