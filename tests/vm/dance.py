"""dance — issue 6's scenario 1, the whole migration dance, as shared steps.

test_full_dance.py asserts these steps (each one raises VMError when the
product does not do what it must) and tests/vm/demo narrates the very same
steps for a person. One pair of guests, in this order:

  prepare     the orchestrator opens an operation: snapshot, blockers scan,
              plugin checks
  blockers    a guest process holding a flock on the data disk is named, with
              its path and pid
  quiesce     the agent quiesces the plugins (a oneshot probe and a session
              plugin that SIGSTOPs an application) and reports timings
  freeze      qemu-ga's guest-fsfreeze-freeze (no hook: this orchestrator
              talks to the agent itself)
  frozen      every read-only command answers within 100 ms over one raw
              protocol connection
  migrate     live migration to a second QEMU on loopback
  thaw        on the destination: qemu-ga's guest-fsfreeze-thaw, then the
              agent's `thaw` (PROTOCOL.md: quiesce just before the freeze,
              release after the thaw); the application runs again
  resume      an orchestrator connected to the destination's port receives
              RESUMED (the agent noticed QEMU's announce by itself) and an
              all-pass VALIDATION_COMPLETED
  no writes   /proc/AGENT/io write_bytes across the frozen phase grew only by
              the validation's own write probes

The orchestrator uses the project's client (`migctl --connect
unix:HOST/ma.sock`) where a person would, and one raw protocol connection
where it measures or listens for events (the host end of a virtio port takes
one connection at a time, so a listener holds it)."""

import json
import os
import re
import statistics
import subprocess
import time

import vmlib
from vmlib import VMError

FROZEN_LATENCY_LIMIT = 0.100  # s: issue 7, every command while frozen (median)
STALL_LIMIT = 1.0  # s: no single call while frozen may take longer (x MA_VM_TIMEOUT_SCALE)
FROZEN_ROUNDS = 5
BLOCKERS_SPACING = 0.25  # s between blockers calls (see frozen_commands)
LEASE = 300
PLUGINS = ["vmprobe", "vmsession"]  # quiesce order
LOCK_PATH = "/data/app.db"
MUST_PASS = ["link:eth0", "addresses:eth0", "default-route:ipv4", "gateway:10.0.2.2",
             "mount:/data", "write:/data", "kmsg"]
PAGE = 4096

# Commands that only read: each must answer within FROZEN_LATENCY_LIMIT while
# every disk filesystem is frozen. Arguments as an orchestrator sends them.
READ_ONLY = {
    "ping": {}, "sync": {"id": 1}, "sync-delimited": {"id": 2}, "guest-sync": {"id": 3},
    "guest-sync-delimited": {"id": 4}, "info": {}, "status": {}, "events": None,
    "blockers": {}, "plugins": {}, "snapshot": {}, "freeze-guard": {},
}
# Every other command the agent lists, and why it is not timed here; a command
# in neither table fails the step, so that the lists stay complete.
NOT_READ_ONLY = {
    "prepare": "takes and stores a snapshot, runs the plugins' check",
    "quiesce": "quiesces plugins", "thaw": "releases plugins", "renew": "extends the lease",
    "check": "runs the plugins' check phase (application code)",
    "plugin-test": "runs every phase of a plugin",
    "resumed": "starts a resume and its validation",
    "validate": "write probes on every disk filesystem",
    "announce": "sends packets",
    "dirty-rate": "measures over an interval of at least 0.1 s (clears soft-dirty bits)",
    "throttle": "changes cgroup limits", "unthrottle": "changes cgroup limits",
}


class Narrator:
    """Where a step tells what happens. The test writes TAP comments, the demo
    plain text for a person."""

    def __init__(self, write, workdir=None):
        self.write = write
        self.workdir = workdir

    def _short(self, text):
        return text.replace(self.workdir, "$WORK") if self.workdir else text

    def asks(self, who, text):
        self.write("  %s asks:  %s" % (who, self._short(text)))

    def answer(self, text, who="agent"):
        lines = str(text).rstrip("\n").splitlines() or [""]
        self.write("  %s answers:" % who)
        for line in lines:
            self.write("      " + line)

    def event(self, name, data):
        self.write("  agent tells, unasked:  %s %s" % (name, json.dumps(data)))

    def note(self, text):
        for line in str(text).splitlines():
            self.write("  " + line)


class Dance:
    def __init__(self, harness, migctl, narrator, operation="dance-1"):
        self.h = harness
        self.migctl = migctl
        self.say = narrator
        self.op = operation
        self.src = self.dst = None
        self.q = None          # qemu-ga of the guest currently running
        self.agent = None      # raw connection to the destination's port
        self.events = []       # every event the destination connection got
        self.seq = 0

    # ------------------------------------------------------------------ helpers

    @property
    def g(self):
        return self.dst or self.src

    def ctl(self, *args, human=False, attempt_timeout=20, timeout=120):
        """migctl against the current guest's port, as an orchestrator runs it:
        an unanswered call gets a fresh connection (every command used here
        is idempotent for the same arguments and operation id) and is
        recorded in vmlib.RETRIED, which the test's last step reports. Returns the JSON return, or
        migctl's human output with human=True."""
        argv = [self.migctl, "--connect", "unix:" + self.g.ma_sock] + list(args)
        argv += ["--no-color"] if human else ["--json"]
        until = time.monotonic() + timeout * vmlib.SCALE
        attempts = 0
        while True:
            attempts += 1
            try:
                r = subprocess.run(argv + ["--timeout", str(attempt_timeout)],
                                   capture_output=True, text=True, timeout=attempt_timeout + 15)
            except subprocess.TimeoutExpired:
                r = None
            if r is not None and r.returncode != 2:
                break
            if time.monotonic() > until:
                raise VMError("migctl %s: no answer in %d attempts (%s)" % (
                    " ".join(args), attempts, r.stderr.strip() if r else "did not exit"))
        if attempts > 1:
            vmlib.RETRIED.append((args[0], attempts))
        if r.returncode != 0:
            raise VMError("migctl %s: exit %d: %s%s" % (" ".join(args), r.returncode,
                                                       r.stdout, r.stderr.strip()))
        if human:
            return r.stdout
        return json.loads(r.stdout)

    def cmdline(self, *args):
        return "migctl --connect unix:%s %s" % (self.g.ma_sock, " ".join(args))

    def guest_int(self, path):
        return int(self.q.read_file(path).decode().split()[0])

    def proc_state(self, pid):
        """The state letter of /proc/PID/stat, or None when the process is gone."""
        try:
            stat = self.q.read_file("/proc/%d/stat" % pid).decode()
        except vmlib.QMPError:
            return None
        return stat.rsplit(")", 1)[1].split()[0]

    def app_running(self, timeout=30):
        """The application's counter advances (waits for it); returns (state, count)."""
        until = time.monotonic() + timeout * vmlib.SCALE
        first = self.guest_int("/run/vmapp.count")
        while True:
            now = self.guest_int("/run/vmapp.count")
            state = self.proc_state(self.app)
            if now > first and state not in ("T", None):
                return state, now
            if time.monotonic() > until:
                raise VMError("the application does not run: state %r, counter %d -> %d" % (
                    state, first, now))
            time.sleep(0.2)

    def app_stopped(self):
        """The application is stopped (state T) and its counter stands still."""
        state = self.proc_state(self.app)
        c1 = self.guest_int("/run/vmapp.count")
        time.sleep(0.5)  # ten of its ticks: a running counter would have moved
        c2 = self.guest_int("/run/vmapp.count")
        if state != "T" or c1 != c2:
            raise VMError("the application is not stopped: state %r, counter %d -> %d" % (
                state, c1, c2))
        return c2

    def agent_io(self):
        text = self.q.read_file("/proc/%d/io" % self.agent_pid).decode()
        return {k: int(v) for k, v in (l.split(":") for l in text.splitlines() if ":" in l)}

    def log_lines(self, path, needle):
        return [l for l in self.q.read_file(path).decode().splitlines() if needle in l]

    def pump(self, timeout):
        """Read events from the destination connection for up to `timeout` s."""
        until = time.monotonic() + timeout
        while True:
            try:
                m = self.agent.s.recv(until)
            except TimeoutError:
                return
            if "event" in m:
                self.agent.events.append(m)

    def dst_events(self, name):
        seen = {e.get("seq") for e in self.events}
        for e in self.agent.events:
            if e.get("seq") not in seen:
                seen.add(e.get("seq"))
                self.events.append(e)
        self.agent.events = []
        return [e for e in self.events if e.get("event") == name]

    def wait_dst_event(self, name, timeout=90):
        until = time.monotonic() + timeout * vmlib.SCALE
        while True:
            got = self.dst_events(name)
            if got:
                return got
            if time.monotonic() > until:
                raise VMError("no %s on the destination connection within %d s; got %s" % (
                    name, timeout, [e.get("event") for e in self.events]))
            self.pump(min(1.0, max(until - time.monotonic(), 0.01)))

    # -------------------------------------------------------------------- steps

    def build(self):
        self.deb = vmlib.ensure_deb()
        self.kernel, self.initrd = vmlib.ensure_guest(with_agent=True, deb=self.deb)
        vmlib.make_data_disk(self.h.disk)
        self.say.note("package %s; guest image: Debian's kernel %s, busybox, qemu-ga" % (
            os.path.basename(self.deb), os.path.basename(os.path.dirname(self.kernel))))
        return os.path.basename(self.deb)

    def boot(self):
        self.src = self.h.guest("src", self.kernel, self.initrd).start()
        m = self.src.wait_console(r"^MA-READY: uptime (\S+)s")
        vmlib.wait_migctl(self.migctl, self.src.ma_sock)
        self.q = self.src.qga()
        out = self.q.sh("/scenarios/dance-setup.sh").strip()
        self.app = self.guest_int("/run/vmapp.pid")
        self.lock_pid = self.guest_int("/run/vmlock.pid")
        self.agent_pid = int(self.q.sh("pidof migration-agent").split()[0])
        self.app_running()
        self.say.note("source guest up (userspace at %s s of guest time); qemu-ga and the agent "
                      "(pid %d) run on their virtio ports" % (m.group(1), self.agent_pid))
        self.say.note("in the guest: an application (pid %d) counting in /run/vmapp.count, "
                      "a process (pid %d) holding a flock on %s,\nplugins vmprobe (oneshot: "
                      "logs each phase) and vmsession (session: stops the application while "
                      "quiesced)" % (self.app, self.lock_pid, LOCK_PATH))
        return out

    def prepare(self):
        self.say.asks("orchestrator", self.cmdline("prepare", "operation=" + self.op))
        r = self.ctl("prepare", "operation=" + self.op)
        snap = r.get("snapshot") or {}
        bl = r.get("blockers") or {}
        checks = {p.get("plugin"): p.get("status") for p in (r.get("plugins") or {}).get(
            "plugins", [])}
        self.say.answer("ready: %s%s\nsnapshot: %d links, %d addresses, %d routes, %d mounts, "
                        "%d block devices\nblockers verdict: %s\nplugin checks: %s" % (
                            r.get("ready"), (" (not ready: %s)" % r.get("not-ready"))
                            if r.get("not-ready") else "", snap.get("links", 0),
                            snap.get("addresses", 0), snap.get("routes", 0),
                            snap.get("mounts", 0), snap.get("devices", 0), bl.get("verdict"),
                            ", ".join("%s %s" % kv for kv in sorted(checks.items()))))
        if r.get("operation") != self.op or not r.get("ready") or snap.get("errors"):
            raise VMError("prepare: %r" % {k: r.get(k) for k in ("operation", "ready",
                                                                  "not-ready")})
        if any(checks.get(p) != "ok" for p in PLUGINS):
            raise VMError("plugin checks: %r" % checks)
        status = self.ctl("status")
        if status.get("state") != "prepared" or status.get("operation") != self.op:
            raise VMError("lifecycle after prepare: %r" % status)
        self.seq = status.get("last-event-seq", 0)
        return "ready; snapshot of %d links and %d mounts; checks %s; lifecycle prepared" % (
            snap.get("links", 0), snap.get("mounts", 0), ", ".join(
                "%s %s" % kv for kv in sorted(checks.items())))

    def blockers(self):
        self.say.asks("orchestrator", self.cmdline("blockers"))
        self.say.answer(self.ctl("blockers", human=True))
        r = self.ctl("blockers")
        self.blockers_at = time.monotonic()
        locks = [l for l in r.get("locks", []) if l.get("path") == LOCK_PATH]
        holders = [x for l in locks for x in l.get("holders", [])]
        if not locks or locks[0].get("type") != "FLOCK" or \
                [x.get("pid") for x in holders] != [self.lock_pid]:
            raise VMError("the lock on %s (holder pid %d): %r" % (LOCK_PATH, self.lock_pid,
                                                                  r.get("locks")))
        if holders[0].get("comm") != "vm-lockhold":
            raise VMError("lock holder: %r" % holders[0])
        if locks[0].get("mountpoint") != "/data" or r.get("verdict") == "blocked":
            raise VMError("verdict %r, lock %r" % (r.get("verdict"), locks[0]))
        return "%s %s on %s held by pid %d (%s); verdict %s" % (
            locks[0]["type"], locks[0].get("mode"), LOCK_PATH, self.lock_pid,
            holders[0].get("comm"), r.get("verdict"))

    def quiesce(self):
        args = ("quiesce", "operation=" + self.op, "lease_seconds=%d" % LEASE)
        self.say.asks("orchestrator", self.cmdline(*args))
        out = self.ctl(*args, human=True, timeout=180)
        self.say.answer(out)
        if not out.startswith("quiesced operation %s" % self.op):
            raise VMError("quiesce answered %r" % out)
        plugins = {p["name"]: p for p in self.ctl("plugins").get("plugins", [])}
        states = {n: plugins.get(n, {}).get("state") for n in PLUGINS}
        if any(s != "quiesced" for s in states.values()):
            raise VMError("plugin states: %r" % states)
        status = self.ctl("status")
        if status.get("state") != "quiesced" or status.get("operation") != self.op:
            raise VMError("lifecycle: %r" % status)
        ev = [e for e in self.ctl("events", "after=%d" % self.seq).get("events", [])
              if e.get("event") == "QUIESCED"]
        if not ev or ev[-1]["data"].get("operation") != self.op or \
                ev[-1]["data"].get("plugins") != PLUGINS:
            raise VMError("QUIESCED event: %r" % ev)
        self.seq = status.get("last-event-seq", self.seq)
        count = self.app_stopped()
        probe = self.log_lines("/run/vmprobe.log", " %s " % self.op)
        if len(probe) != 1 or "quiesce" not in probe[0] or "frozen=no" not in probe[0]:
            raise VMError("vmprobe log: %r" % probe)
        timing = ", ".join("%s %.3f s" % (n, plugins[n]["last"]["quiesce"]["seconds"])
                           for n in PLUGINS)
        self.say.note("the application is stopped (state T, counter at %d); vmprobe logged "
                      "the quiesce outside any freeze" % count)
        return "QUIESCED in %.3f s (%s); application stopped; lease %d s" % (
            ev[-1]["data"].get("seconds", -1), timing, LEASE)

    def measure(self, a, frozen):
        """Every read-only command FROZEN_ROUNDS times over the raw connection
        `a`, checking each answer; returns {command: [seconds...]}."""
        times = {n: [] for n in READ_ONLY}
        for _ in range(FROZEN_ROUNDS):
            for n in READ_ONLY:
                args = READ_ONLY[n]
                if args is None:  # events: what is new since the quiesce
                    args = {"after": self.seq}
                if n == "blockers":
                    # blockers measures the disks' write rate since the previous
                    # blockers call when that is 0.1-60 s old, and otherwise
                    # sleeps out a 0.1 s sample (PROTOCOL.md, `writeback`); an
                    # orchestrator polls it seconds apart, not back to back
                    wait = self.blockers_at + BLOCKERS_SPACING - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                t0 = time.monotonic()
                ret = a.cmd(n, **args)
                times[n].append(time.monotonic() - t0)
                if n == "ping" and ret != {}:
                    raise VMError("ping returned %r" % ret)
                if "sync" in n and ret != args["id"]:
                    raise VMError("%s returned %r" % (n, ret))
                if n == "status" and ret.get("state") != "quiesced":
                    raise VMError("status: %r" % ret.get("state"))
                if n == "blockers":
                    self.blockers_at = t0
                    codes = {x.get("code") for x in ret.get("reasons", [])}
                    if frozen != ("qemu-ga-frozen" in codes):
                        raise VMError("blockers (frozen=%s): %r" % (frozen, ret.get("reasons")))
                if n == "freeze-guard" and bool(ret.get("frozen")) != frozen:
                    raise VMError("freeze-guard (frozen=%s): %r" % (frozen, ret))
        return times

    def freeze(self):
        # the same measurement with the filesystems thawed, for comparison
        self.raw = vmlib.Agent(self.src.ma_sock)
        listed = {c["name"] for c in self.raw.cmd("info").get("commands", [])
                  if c.get("enabled")}
        unknown = listed - set(READ_ONLY) - set(NOT_READ_ONLY)
        if unknown:
            raise VMError("commands neither read-only nor known to change state: %s "
                          "(classify them in dance.py)" % sorted(unknown))
        if set(READ_ONLY) - listed:
            raise VMError("read-only commands missing from info: %s" % sorted(
                set(READ_ONLY) - listed))
        self.not_timed = sorted(n for n in listed if n in NOT_READ_ONLY)
        self.thawed_times = self.measure(self.raw, frozen=False)
        self.say.note("timed every read-only command %d times with /data thawed (the "
                      "comparison for the next step)" % FROZEN_ROUNDS)
        self.io_before = self.agent_io()
        self.say.note("agent's /proc/%d/io before the freeze: write_bytes %d" % (
            self.agent_pid, self.io_before["write_bytes"]))
        self.say.asks("orchestrator", 'qemu-ga {"execute": "guest-fsfreeze-freeze"}')
        n = self.q.cmd("guest-fsfreeze-freeze", timeout=120)
        self.frozen_at = time.monotonic()
        st = self.q.cmd("guest-fsfreeze-status")
        self.say.answer("%s filesystem(s) frozen; guest-fsfreeze-status: %s" % (n, st),
                        who="qemu-ga")
        if n < 1 or st != "frozen":
            raise VMError("qemu-ga froze %r, status %r" % (n, st))
        return "%d filesystem frozen (/data)" % n

    def frozen_commands(self):
        """Issue 7: with every disk filesystem frozen every command answers
        within 100 ms. Asserted per command: no call takes STALL_LIMIT (a
        command that touched a frozen filesystem would hang until the thaw),
        and the median of its calls is under 100 ms. A TCG guest's CPU slows
        with the host's load, frozen or not (blockers, a /proc scan, takes
        35 ms idle and 60-90 ms at a load average of 6 on 2 cores), so a median
        over 100 ms is accepted only while it is at most twice the same
        command's median with the filesystems thawed: the freeze did not slow
        it. Single calls over 100 ms are listed beside the thawed figures."""
        try:
            frozen = self.measure(self.raw, frozen=True)
        finally:
            self.raw.close()
            self.raw = None
        if self.q.cmd("guest-fsfreeze-status") != "frozen":
            raise VMError("the filesystems thawed during the measurement")
        limit, stall = FROZEN_LATENCY_LIMIT, STALL_LIMIT * vmlib.SCALE
        rows, bad, over = [], [], []
        med = statistics.median
        for n, t in frozen.items():
            base = self.thawed_times[n]
            if max(t) >= stall or (med(t) >= limit and med(t) > 2 * med(base)):
                bad.append("%s median %.1f ms, max %.1f ms (thawed median %.1f ms)" % (
                    n, med(t) * 1000, max(t) * 1000, med(base) * 1000))
            elif max(t) >= limit:
                over.append("%s %s" % (n, "/".join("%.0f" % (x * 1000) for x in t)))
            rows.append("%-22s %8.1f %8.1f %12.1f %10.1f" % (
                n, med(t) * 1000, max(t) * 1000, med(base) * 1000, max(base) * 1000))
        self.say.note("over one raw protocol connection to the agent's port, every read-only "
                      "command %d times with /data thawed, then %d times frozen (ms):" % (
                          FROZEN_ROUNDS, FROZEN_ROUNDS))
        self.say.answer("%-22s %8s %8s %12s %10s\n" % (
            "COMMAND", "MEDIAN", "MAX", "THAWED MED", "THAWED MAX") + "\n".join(rows))
        self.say.note("not timed (they change state, run application code or measure over "
                      "an interval): " + ", ".join(self.not_timed))
        if over:
            self.say.note("single calls over 100 ms (a loaded host slows the emulated guest): "
                          + "; ".join(over))
        if bad:
            raise VMError("while frozen (median < %d ms, or at most twice the thawed median "
                          "on a loaded host; every call < %.0f s): %s" % (
                              limit * 1000, stall, "; ".join(bad)))
        worst = max((med(t), n) for n, t in frozen.items())
        return "%d read-only commands x %d while frozen; slowest median %s %.1f ms " \
            "(%s)%s" % (len(frozen), FROZEN_ROUNDS, worst[1], worst[0] * 1000,
                        "< 100 ms" if worst[0] < limit else "thawed %.1f ms: a loaded host" % (
                            med(self.thawed_times[worst[1]]) * 1000),
                        ("; single calls over 100 ms: " + "; ".join(over)) if over
                        else "; every call < 100 ms")

    def migrate(self):
        self.dst = self.h.guest("dst", self.kernel, self.initrd, incoming=True).start()
        self.say.asks("orchestrator", 'QMP {"execute": "migrate", "arguments": {"uri": '
                      '"tcp:127.0.0.1:PORT"}} (destination: -incoming defer, migrate-incoming)')
        self.q.close()
        self.src._qga = None
        self.q = None
        info = vmlib.migrate(self.src, self.dst)
        self.src.stop()
        self.migration = info
        ram = info.get("ram", {})
        self.say.answer("status %s; total time %s ms, downtime %s ms, setup %s ms; "
                        "%.1f MiB transferred" % (
                            info.get("status"), info.get("total-time"), info.get("downtime"),
                            info.get("setup-time"), ram.get("transferred", 0) / 2**20),
                        who="QEMU (query-migrate)")
        # the orchestrator connects to the destination's port at once, to hear
        # what the agent has to say there
        self.agent = vmlib.Agent(self.dst.ma_sock, timeout=60 * vmlib.SCALE)
        backlog = self.agent.cmd("events", after=self.seq).get("events", [])
        self.backlog_resumes = {e["data"].get("resume") for e in backlog
                                if e.get("event") == "RESUMED"}
        self.agent.events += backlog
        return "total %s ms, downtime %s ms" % (info.get("total-time"), info.get("downtime"))

    def dst_thaw(self):
        self.q = self.dst.qga(timeout=60 * vmlib.SCALE)
        st = self.q.cmd("guest-fsfreeze-status")
        if st != "frozen":
            raise VMError("not frozen on the destination: %r" % st)
        self.say.asks("orchestrator", 'qemu-ga (destination) {"execute": "guest-fsfreeze-thaw"}')
        n = self.q.cmd("guest-fsfreeze-thaw", timeout=120)
        st = self.q.cmd("guest-fsfreeze-status")
        self.say.answer("%s filesystem(s) thawed; guest-fsfreeze-status: %s" % (n, st),
                        who="qemu-ga")
        if st != "thawed":
            raise VMError("qemu-ga did not thaw: %r" % st)
        return "%s filesystem thawed after %.1f s frozen" % (n, time.monotonic() - self.frozen_at)

    def agent_thaw(self):
        self.say.asks("orchestrator", '{"execute": "thaw", "arguments": {"operation": "%s"}} '
                      '(on its connection to the destination port)' % self.op)
        r = self.agent.cmd("thaw", operation=self.op, timeout=120)
        results = r.get("results", [])
        self.say.answer("thawed operation %s in %.3f s: %s" % (
            r.get("operation"), r.get("seconds", -1), ", ".join(
                "%s %s %.3f s (%s)" % (x.get("plugin"), x.get("status"), x.get("seconds", -1),
                                       x.get("detail", "")) for x in results)))
        if r.get("operation") != self.op or r.get("already") or \
                sorted(x.get("plugin") for x in results) != sorted(PLUGINS) or \
                any(x.get("status") != "ok" for x in results):
            raise VMError("thaw: %r" % r)
        th = [e["data"] for e in self.wait_dst_event("THAWED", timeout=30)]
        if th[-1].get("operation") != self.op or th[-1].get("reason") != "thaw" or \
                sorted(th[-1].get("plugins", [])) != sorted(PLUGINS):
            raise VMError("THAWED: %r" % th)
        state, count = self.app_running()
        probe = self.log_lines("/run/vmprobe.log", " %s " % self.op)
        if [l.split()[1:] for l in probe] != [["quiesce", self.op, "frozen=no"],
                                              ["thaw", self.op, "frozen=no"]]:
            raise VMError("vmprobe log: %r" % probe)
        sess = self.log_lines("/run/vmsession.log", "thaw: application")
        if not sess:
            raise VMError("the session plugin did not log its thaw")
        self.say.note("THAWED (reason thaw) released %s; the application runs again "
                      "(state %s, counter %d)" % (", ".join(th[-1]["plugins"]), state, count))
        return "THAWED %s (reason thaw); application running again" % " -> ".join(
            th[-1]["plugins"])

    def resumed(self):
        ev = self.wait_dst_event("RESUMED", timeout=60)
        if len(ev) != 1:
            raise VMError("one migration, %d RESUMED: %r" % (len(ev), ev))
        d = ev[0]["data"]
        self.resume = d
        self.say.event("RESUMED", d)
        if "notify-peers" not in d.get("signals", []) or "eth0" not in d.get("interfaces", []) \
                or not d.get("validation") or d.get("operation") != self.op:
            raise VMError("RESUMED: %r" % d)
        # the event and the lifecycle both tie the resume to the operation
        status = self.agent.cmd("status")
        if status.get("operation") != self.op:
            raise VMError("status after the resume: operation %r (want %r)" % (
                status.get("operation"), self.op))
        how = "as it happened" if d.get("resume") not in self.backlog_resumes else \
            "from the event buffer (it came before the connection)"
        self.say.note("received %s; the orchestrator never sent `resumed`: the agent noticed "
                      "QEMU's announce (RTM_NEWLINK NOTIFY_PEERS on eth0) by itself" % how)
        return "resume #%s from %s on %s; lifecycle operation %s" % (
            d.get("resume"), ", ".join(d["signals"]), ", ".join(d["interfaces"]),
            status.get("operation"))

    def operation_named(self):
        """RESUMED and VALIDATION_COMPLETED of a prepared, quiesced operation
        should name it: an orchestrator listening for events should not have
        to ask `status` which operation a resume belongs to."""
        named = {e["event"]: e["data"].get("operation") for e in self.events
                 if e.get("event") in ("RESUMED", "VALIDATION_COMPLETED")}
        if any(v != self.op for v in named.values()):
            raise VMError("operation in the events: %r (want %r)" % (named, self.op))
        return "both name %s" % self.op

    def validated(self):
        ev = self.wait_dst_event("VALIDATION_COMPLETED", timeout=90)
        d = ev[-1]["data"]
        self.say.event("VALIDATION_COMPLETED", d)
        if d.get("verdict") != "pass" or d.get("failed") or d.get("warned") or \
                d.get("resume") != self.resume.get("resume") or d.get("trigger") != "resume" \
                or d.get("operation") != self.op:
            raise VMError("VALIDATION_COMPLETED: %r" % d)
        # the full report the agent stored (in /run; `validate` would start a new run)
        state_dir = self.q.sh("ls -d /run/migration-agent").strip()
        report = json.loads(self.q.read_file(state_dir + "/validation.json"))
        if report.get("run") != d.get("run"):
            raise VMError("stored report is run %r, the event run %r" % (report.get("run"),
                                                                     d.get("run")))
        checks = report.get("checks", [])
        self.say.note("its report, as the agent stored it (%s/validation.json, read through "
                      "qemu-ga):" % state_dir)
        self.say.answer("%-6s %-20s %8s  %s\n" % ("STATUS", "CHECK", "SECONDS", "DETAIL")
                        + "\n".join("%-6s %-20s %8.3f  %s" % (
                            c.get("status"), c.get("name"), c.get("duration", 0),
                            c.get("detail", "")) for c in checks))
        bad = [c for c in checks if c.get("status") != "pass"]
        names = [c.get("name") for c in checks]
        missing = [n for n in MUST_PASS if n not in names]
        if bad or missing or len(checks) != d.get("checks"):
            raise VMError("checks not passing: %r; missing: %r" % (bad, missing))
        self.report = report
        self.lifecycle = self.agent.cmd("status").get("state")
        return "verdict pass: %d checks, every one pass (%s); lifecycle %s" % (
            len(checks), ", ".join(MUST_PASS), self.lifecycle)

    def no_writes(self):
        after = self.agent_io()
        probes = [c for c in self.report["checks"] if c["name"].startswith("write:")]
        delta = after["write_bytes"] - self.io_before["write_bytes"]
        expected = PAGE * len(probes)
        self.say.note("agent's /proc/%d/io after the thaw and the validation: write_bytes %d "
                      "(+%d; the validation's %d write probe(s) dirty one page each: %d)" % (
                          self.agent_pid, after["write_bytes"], delta, len(probes), expected))
        if delta != expected:
            raise VMError("write_bytes %d -> %d (+%d); the %d write probe(s) account for %d" % (
                self.io_before["write_bytes"], after["write_bytes"], delta, len(probes),
                expected))
        return "write_bytes +%d across freeze, migration and thaw = %d write probe(s) after " \
               "the thaw; nothing while frozen" % (delta, len(probes))

    def close_connection(self):
        if self.agent:
            self.agent.close()
            self.agent = None

    def steps(self):
        return [
            ("build the .deb, the guest image and the data disk", self.build),
            ("source guest boots; application, lock holder and plugins set up", self.boot),
            ("prepare opens the operation: ready, snapshot, plugin checks", self.prepare),
            ("blockers names the lock on the data disk with its path and pid", self.blockers),
            ("quiesce: both plugins quiesced, timings reported, application stopped",
             self.quiesce),
            ("read-only commands timed, then qemu-ga guest-fsfreeze-freeze", self.freeze),
            ("frozen: every read-only command answers within 100 ms", self.frozen_commands),
            ("live migration to a second QEMU on loopback", self.migrate),
            ("destination: qemu-ga guest-fsfreeze-thaw", self.dst_thaw),
            ("destination: the agent's thaw releases the plugins (THAWED)", self.agent_thaw),
            ("destination: RESUMED by itself (NOTIFY_PEERS) on the orchestrator's connection",
             self.resumed),
            ("destination: VALIDATION_COMPLETED, every check passes", self.validated),
            ("the agent wrote nothing to disk while frozen (/proc/PID/io)", self.no_writes),
        ]



# ---------------------------------------------------------------------------
# the demo: tests/vm/demo builds, then runs this
# ---------------------------------------------------------------------------

INTRO = """\
migration-agent: the migration dance, narrated
==============================================

Two QEMU processes on this machine play the hypervisors: a source guest and a
destination waiting for an incoming migration. Each guest is Debian's kernel
with a busybox userland, qemu-ga, and migration-agent installed from the .deb
built from this tree. The agent listens on its own virtio-serial port
(org.migration_agent.0); on the host that port is a UNIX socket, which is
where the orchestrator (this script) talks to it, with the project's client
migctl or with the protocol itself. qemu-ga and QMP are driven as libvirt
would drive them. The guests' network is QEMU's user mode with restrict=on:
nothing leaves this machine.

Work directory ($WORK): %s
"""


def main():
    import sys
    migctl = vmlib.find_migctl()
    if not migctl:
        print("migctl not found: set MIGCTL=BUILD/agent/client/migctl (tests/vm/demo does)")
        return 2
    h = vmlib.Harness("demo")

    def write(line):
        print(line, flush=True)

    say = Narrator(write, h.workdir)
    d = Dance(h, migctl, say, operation="demo-1")
    print(INTRO % h.workdir, flush=True)
    steps = d.steps()
    failed = False
    t0 = time.monotonic()
    for n, (desc, fn) in enumerate(steps, 1):
        print("[%d/%d] %s" % (n, len(steps), desc), flush=True)
        t = time.monotonic()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 -- any failure ends the demo
            print("  FAILED: %s: %s" % (type(e).__name__, e), flush=True)
            print("\nThe guests' consoles and the agent's log follow.\n", flush=True)
            h.dump()
            failed = True
            break
        print("  => %s (%.1f s)\n" % (result or "done", time.monotonic() - t), flush=True)
    d.close_connection()
    if not failed:
        m = d.migration
        print("Done in %.0f s. The orchestrator prepared, learnt what blocks a freeze, quiesced "
              "the applications,\nfroze, migrated (QEMU: %s ms in all, %s ms downtime), "
              "thawed on the destination, released the\napplications, and heard from the "
              "agent itself that the guest had resumed and that its network\nand storage "
              "checks all passed." % (time.monotonic() - t0, m.get("total-time"),
                                        m.get("downtime")), flush=True)
        if vmlib.RETRIED:
            print("(calls that had to be retried on a fresh connection: %r)" % vmlib.RETRIED)
    h.close(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
