#!/usr/bin/env python3
"""demo_libvirt — the product as its users run it: two local libvirt daemons (libvirtlib), the
VM suite's guest as a libvirt domain with an application and two quiesce plugins (the dance
scenario), and one `migctl migrate` with its progress, timeline and the destination's
validation. Every command is printed before it runs, and its output as it comes.

Exit status 0 when the migration succeeded and validated; otherwise 1 after the daemons'
logs, the guest console and the agent's log. tests/vm/demo runs it."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402
import libvirtlib  # noqa: E402


def main():
    migctl = vmlib.find_migctl()
    if not migctl:
        print("migctl not found: set MIGCTL=BUILD/agent/client/migctl (tests/vm/demo does)")
        return 2
    module_dir = os.environ.get("MIGCTL_MODULE_DIR") or os.path.dirname(migctl)
    env = dict(os.environ, MIGCTL_MODULE_DIR=module_dir)
    h = vmlib.Harness("demo-libvirt")
    console = os.path.join(h.workdir, "g1-console.log")
    pair = None
    failed = True

    def run(*argv, check=True):
        shown = " ".join(a if " " not in a else "'%s'" % a for a in argv)
        print("\n$ " + shown.replace(migctl, "migctl"), flush=True)
        r = subprocess.run(list(argv), env=env)
        if check and r.returncode != 0:
            raise VMError("%s: exit %d" % (argv[1] if len(argv) > 1 else argv[0], r.returncode))
        return r.returncode

    try:
        print("== building the guest image (cached) and starting two libvirt daemons", flush=True)
        kernel, initrd = vmlib.ensure_guest(with_agent=True)
        vmlib.make_data_disk(h.disk)
        pair = libvirtlib.LibvirtPair(h.workdir).__enter__()
        print("source      %s\ndestination %s" % (pair.src_uri, pair.dst_uri), flush=True)
        print("\n== the guest g1 as a libvirt domain (TCG, 512 MiB; both channels)", flush=True)
        t0 = time.monotonic()
        libvirtlib.start_guest(pair, "src", libvirtlib.domain_xml(
            "g1", kernel, initrd, h.disk, "ma.scenario=smoke", console), console)
        q = libvirtlib.VirshQGA(pair, "src", "g1")
        q.sync()
        q.sh("/scenarios/dance-setup.sh", timeout=60 * vmlib.SCALE)
        print("booted in %.1f s; an application ticks in the guest, two plugins (vmprobe, "
              "vmsession) are installed, and a process holds a lock on /data" % (
                  time.monotonic() - t0), flush=True)
        print("\n== the agent, by domain name, through libvirt", flush=True)
        run(migctl, "--connect", pair.src_uri, "--domain", "g1", "status")
        run(migctl, "--connect", pair.src_uri, "--domain", "g1", "plugins")
        print("\n== the whole migration, one command", flush=True)
        svg = os.environ.get("MA_DEMO_TIMELINE") or os.path.join(os.getcwd(), "timeline.svg")
        run(migctl, "--connect", pair.src_uri, "migrate", "g1", pair.dst_uri, "--p2p", "--unsafe",
            "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1", "--freeze",
            "--bandwidth", "64", "--timeline", svg)
        print("\n== on the destination", flush=True)
        run(migctl, "--connect", pair.dst_uri, "--domain", "g1", "status")
        print("\nThe timeline as a picture: %s" % svg, flush=True)
        failed = False
    except Exception as e:  # noqa: BLE001 -- any failure ends the demo
        print("\nFAILED: %s: %s\n" % (type(e).__name__, e), flush=True)
        if pair is not None:
            pair.diagnostics()
        try:
            with open(console, errors="replace") as fp:
                print(fp.read()[-20000:])
        except OSError:
            pass
    finally:
        if pair is not None:
            pair.close()
        h.close(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
