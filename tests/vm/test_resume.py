#!/usr/bin/env python3
"""VM scenario: the agent notices the migration by itself and validates.

Source: `migctl prepare operation=ID` takes the pre-migration snapshot (network,
storage, clock) and reports readiness; no resume is reported while the guest
merely runs. Live migration to a second QEMU. Destination: without being told,
the agent reports RESUMED from QEMU's announce (RTM_NEWLINK IFLA_EVENT
NOTIFY_PEERS on virtio_net), tied to the prepared operation, runs a validation
against the snapshot (link, addresses, routes, gateway ARP through slirp, the
ext4 data disk still mounted rw and writable, kernel log clean) and the
lifecycle ends in `validated`; `migctl resumed` afterwards joins the same
resume (new=false)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402

OPERATION = "vm-resume-1"
MUST_PASS = ["link:eth0", "addresses:eth0", "default-route:ipv4", "gateway:10.0.2.2",
             "mount:/data", "write:/data", "kmsg"]

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("resume")
st = {}


def ctl(g, *args, **kw):
    """An idempotent call, retried on a fresh connection when unanswered
    (see vmlib.migctl_retry); retries are reported by the last step, not hidden."""
    return vmlib.migctl_retry(MIGCTL, g.ma_sock, *args, **kw)[0]


def events(g, after=0):
    out = ctl(g, "events", "after=%d" % after)
    return out.get("events", []) if isinstance(out, dict) else []


def build():
    st["deb"] = vmlib.ensure_deb()
    st["kernel"], st["initrd"] = vmlib.ensure_guest(with_agent=True, deb=st["deb"])
    vmlib.make_data_disk(h.disk)
    return os.path.basename(st["deb"])


def boot():
    g = st["src"] = h.guest("src", st["kernel"], st["initrd"]).start()
    g.wait_console(r"^MA-READY")
    vmlib.wait_migctl(MIGCTL, g.ma_sock)
    info = ctl(g, "info")
    caps = info.get("capabilities", [])
    missing = [c for c in ("resume-detection", "validation") if c not in caps]
    if missing:
        raise VMError("capabilities %r lack %r" % (caps, missing))
    return "capabilities: %s" % ", ".join(caps)


def prepare():
    g = st["src"]
    out = ctl(g, "prepare", "operation=" + OPERATION, attempt_timeout=20, timeout=90)
    snap = out.get("snapshot") or {}
    if out.get("operation") != OPERATION or snap.get("errors"):
        raise VMError("prepare: %r" % (out,))
    status = ctl(g, "status")
    if status.get("state") != "prepared":
        raise VMError("lifecycle after prepare: %r" % status.get("state"))
    stored = ctl(g, "snapshot")
    mounts = [m.get("target") for m in stored.get("storage", {}).get("mounts", [])]
    links = [l.get("name") for l in stored.get("network", {}).get("links", [])]
    if "/data" not in mounts or "eth0" not in links:
        raise VMError("snapshot lacks /data or eth0: mounts %r links %r" % (mounts, links))
    st["seq"] = status.get("last-event-seq", 0)
    return "ready=%s%s; snapshot: %d links, %d mounts, %d devices" % (
        out.get("ready"), (" not-ready=%r" % out.get("not-ready")) if not out.get("ready") else "",
        snap.get("links", 0), snap.get("mounts", 0), snap.get("devices", 0))


def no_false_resume():
    # the guest runs on; nothing may look like a resume (a few seconds of
    # TCG time include timer interrupts, RTC updates and the host's polling)
    g = st["src"]
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        ctl(g, "ping")
        time.sleep(0.25)
    ev = [e for e in events(g) if e.get("event") in ("RESUMED", "ANNOUNCED")]
    if ev:
        raise VMError("resume reported without a migration: %r" % ev)
    if ctl(g, "status").get("state") != "prepared":
        raise VMError("lifecycle left 'prepared' by itself")
    return "no RESUMED/ANNOUNCED event on the source"


def migrate():
    st["dst"] = h.guest("dst", st["kernel"], st["initrd"], incoming=True).start()
    info = vmlib.migrate(st["src"], st["dst"])
    st["src"].stop()
    st["t_migrated"] = time.monotonic()
    return "total %s ms, downtime %s ms" % (info.get("total-time"), info.get("downtime"))


def detected():
    g = st["dst"]
    vmlib.wait_migctl(MIGCTL, g.ma_sock, timeout=30 * vmlib.SCALE)
    until = time.monotonic() + 60 * vmlib.SCALE
    while True:
        ev = events(g, st["seq"])
        res = [e for e in ev if e.get("event") == "RESUMED"]
        val = [e for e in ev if e.get("event") == "VALIDATION_COMPLETED"]
        if res and val:
            break
        if time.monotonic() > until:
            raise VMError("no RESUMED + VALIDATION_COMPLETED within 60 s: %r" % ev)
        time.sleep(0.2)
    if len(res) != 1:
        raise VMError("one migration, %d resumes: %r" % (len(res), res))
    d = res[0].get("data", {})
    st["resume"] = d.get("resume")
    st["validation"] = val[0].get("data", {})
    if "notify-peers" not in d.get("signals", []) or "eth0" not in d.get("interfaces", []):
        raise VMError("RESUMED without NOTIFY_PEERS on eth0: %r" % d)
    # the resume belongs to the prepared operation (the lifecycle carries it)
    status = ctl(g, "status")
    if status.get("operation") != OPERATION:
        raise VMError("status after the resume: operation %r, prepared %r" % (
            status.get("operation"), OPERATION))
    return "RESUMED #%s signals %s on %s, operation %s" % (
        d.get("resume"), ",".join(d.get("signals", [])), ",".join(d.get("interfaces", [])),
        status.get("operation"))


def validated():
    g = st["dst"]
    v = st["validation"]
    # the full report is stored; `validate` would start a new run, so read the
    # report through `resumed` (joins the detected resume) below, and here the
    # event's summary plus the lifecycle
    if v.get("verdict") == "fail":
        raise VMError("validation failed: %r" % v)
    state = ctl(g, "status").get("state")
    if state != "validated":
        raise VMError("lifecycle after validation: %r" % state)
    return "verdict %s (%d checks; warned: %s)" % (
        v.get("verdict"), v.get("checks", 0), ", ".join(v.get("warned", [])) or "none")


def joined():
    g = st["dst"]
    out = ctl(g, "resumed", "operation=" + OPERATION, "wait=true", attempt_timeout=15, timeout=120)
    if out.get("new") is not False or out.get("resume") != st["resume"]:
        raise VMError("resumed after detection: %r" % ({k: out.get(k) for k in
                                                       ("resume", "new", "validation")},))
    report = out.get("report") or {}
    checks = {c.get("name"): c for c in report.get("checks", [])}
    bad = {n: checks.get(n, {}).get("status", "missing") for n in MUST_PASS
           if checks.get(n, {}).get("status") != "pass"}
    if bad:
        raise VMError("checks that must pass after a clean migration: %r\n%r" % (
            bad, [checks.get(n) for n in bad]))
    return "resume #%s joined (new=false); %s pass" % (out.get("resume"), ", ".join(MUST_PASS))


tap = vmlib.Tap([
    ("build the .deb, the guest image and the data disk", build),
    ("guest boots; the agent has resume detection and validation", boot),
    ("prepare takes the pre-migration snapshot (eth0, /data)", prepare),
    ("no resume is reported while the guest just runs", no_false_resume),
    ("live migration to a second QEMU on loopback completes", migrate),
    ("on the destination the agent reports RESUMED by itself (NOTIFY_PEERS)", detected),
    ("the automatic validation does not fail; lifecycle validated", validated),
    ("`resumed` joins the detected resume and its report", joined),
    ("every call was answered on its first connection", vmlib.no_retries),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
