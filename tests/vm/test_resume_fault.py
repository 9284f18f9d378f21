#!/usr/bin/env python3
"""VM scenario: the validation after a resume catches a broken disk.

Same as test_resume.py up to the migration, but the destination QEMU opens
the data disk read-only (`-drive ...,readonly=on`): the guest's ext4 still
looks mounted read-write, yet every write to it fails with EIO. The agent,
after detecting the resume by itself, must fail its validation: the write
probe on /data fails and the kernel log shows the I/O errors; the lifecycle
ends in `failed`; `migctl validate` exits with status 3 ("fail"). Network
checks still pass: the verdict names storage, not everything."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402

OPERATION = "vm-fault-1"

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("resume-fault")
st = {}


def ctl(g, *args, **kw):
    return vmlib.migctl_retry(MIGCTL, g.ma_sock, *args, **kw)[0]


def build():
    st["deb"] = vmlib.ensure_deb()
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True, deb=st["deb"])
    vmlib.make_data_disk(h.disk)
    return os.path.basename(st["deb"])


def boot_prepare():
    g = st["src"] = h.guest("src", st["kernel"], st["initrd"]).start()
    g.wait_console(r"^MA-READY")
    vmlib.wait_migctl(MIGCTL, g.ma_sock)
    out = ctl(g, "prepare", "operation=" + OPERATION, attempt_timeout=20, timeout=90)
    if (out.get("snapshot") or {}).get("errors"):
        raise VMError("prepare: %r" % out)
    st["seq"] = ctl(g, "status").get("last-event-seq", 0)
    return "prepared; snapshot has %s mounts" % (out.get("snapshot") or {}).get("mounts")


def migrate_to_broken_disk():
    st["dst"] = h.guest("dst", st["kernel"], st["initrd"], incoming=True,
                        drive_opts="readonly=on").start()
    info = vmlib.migrate(st["src"], st["dst"])
    st["src"].stop()
    return "total %s ms, downtime %s ms; destination disk read-only" % (
        info.get("total-time"), info.get("downtime"))


def detected_and_failed():
    g = st["dst"]
    vmlib.wait_migctl(MIGCTL, g.ma_sock, timeout=30 * vmlib.SCALE)
    until = time.monotonic() + 60 * vmlib.SCALE
    while True:
        ev = ctl(g, "events", "after=%d" % st["seq"]).get("events", [])
        val = [e["data"] for e in ev if e.get("event") == "VALIDATION_COMPLETED"]
        if val:
            break
        if time.monotonic() > until:
            raise VMError("no VALIDATION_COMPLETED within 60 s: %r" % ev)
        time.sleep(0.3)
    if not any(e.get("event") == "RESUMED" for e in ev):
        raise VMError("validation without a RESUMED event: %r" % ev)
    v = val[0]
    if v.get("verdict") != "fail" or "write:/data" not in v.get("failed", []):
        raise VMError("validation on a disk that refuses writes: %r" % v)
    state = ctl(g, "status").get("state")
    if state != "failed":
        raise VMError("lifecycle %r (want failed)" % state)
    return "verdict fail; failed: %s" % ", ".join(v.get("failed", []))


def report_details():
    g = st["dst"]
    out = ctl(g, "resumed", "operation=" + OPERATION, "wait=true", attempt_timeout=15,
              timeout=120)
    checks = {c.get("name"): c for c in (out.get("report") or {}).get("checks", [])}
    w = checks.get("write:/data", {})
    if w.get("status") != "fail":
        raise VMError("write:/data: %r" % w)
    for n in ("link:eth0", "gateway:10.0.2.2"):
        if checks.get(n, {}).get("status") != "pass":
            raise VMError("%s should still pass: %r" % (n, checks.get(n)))
    return "write:/data: %s; network checks pass" % (w.get("detail") or "")[:80]


def validate_exit_status():
    # a fresh validation, through migctl's human output: exit status 3 = "fail"
    for attempt in range(3):
        rc, out, err, dt = vmlib.migctl(MIGCTL, st["dst"].ma_sock, "validate",
                                        "operation=" + OPERATION, "--timeout", "30",
                                        timeout=60)
        if rc != 2:  # 2: no answer (connection): retry
            break
        vmlib.RETRIED.append(("validate", attempt + 2))
    if rc != 3:
        raise VMError("migctl validate exited %d (want 3): %s %s" % (rc, out, err))
    failed = out.get("failed", []) if isinstance(out, dict) else []
    if "write:/data" not in failed:
        raise VMError("second validation: failed %r" % failed)
    return "exit status 3 after %.1f s; failed: %s" % (dt, ", ".join(failed))


tap = vmlib.Tap([
    ("build the .deb, the guest image and the data disk", build),
    ("guest boots; prepare takes the snapshot", boot_prepare),
    ("live migration to a QEMU whose data disk refuses writes", migrate_to_broken_disk),
    ("the agent detects the resume and its validation fails on /data", detected_and_failed),
    ("the report fails write:/data and still passes the network", report_details),
    ("migctl validate exits with status 3", validate_exit_status),
    ("every call was answered on its first connection", vmlib.no_retries),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
