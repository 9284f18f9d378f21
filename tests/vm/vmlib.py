"""vmlib — host-side driver for the proving-ground guests (Python 3 stdlib only).

Owns: building/caching the guest image (tests/vm/build-guest.sh) and the .deb
(packaging/build-deb.sh), launching QEMU guests (TCG by default, KVM with
MA_VM_KVM=1), a QMP client, a qemu-ga client, live migration between two QEMU
processes on loopback, running `migctl` against the agent's virtio port from
the host side, and TAP output with diagnostics (guest console, agent log) on
failure.

Environment:
  MA_VM_CACHE   cache directory (default: $XDG_CACHE_HOME/migration-agent-vm)
  MA_VM_KVM=1   use KVM instead of TCG
  MA_VM_KEEP=1  keep each test's work directory (it is kept on failure anyway)
  MA_DEB        use this .deb instead of building one from the source tree
  MIGCTL        path of the migctl client (the build dir's agent/client/migctl)
  MA_VM_TIMEOUT_SCALE  multiply every deadline (slow machines)
  MA_VM_ATTEMPTS  how many times a test may run when a guest kernel crashed (default 2;
                1 turns the retry off; see retry_after_guest_crash)
"""

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCROOT = os.path.dirname(os.path.dirname(HERE))

SCALE = float(os.environ.get("MA_VM_TIMEOUT_SCALE", "1"))
BOOT_TIMEOUT = 120 * SCALE
CMD_TIMEOUT = 30 * SCALE
MIGRATE_TIMEOUT = 120 * SCALE


def log(msg):
    """Diagnostics go to stderr-free TAP comments on stdout."""
    for line in str(msg).splitlines() or [""]:
        print("# " + line, flush=True)


class VMError(Exception):
    pass


# --------------------------------------------------------------------------
# caches: the .deb and the guest image
# --------------------------------------------------------------------------

def cache_dir():
    d = os.environ.get("MA_VM_CACHE")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "migration-agent-vm")
    os.makedirs(d, exist_ok=True)
    return d


def _meson_build_dirs(root):
    out = set()
    for name in os.listdir(root):
        p = os.path.join(root, name)
        if os.path.isdir(os.path.join(p, "meson-private")) or \
           os.path.isdir(os.path.join(p, "meson-info")):
            out.add(name)
    return out


def source_files(root=SRCROOT):
    """The files of the source tree that a package build would copy
    (tracked + untracked-not-ignored; meson build dirs excluded)."""
    builds = _meson_build_dirs(root)
    try:
        raw = subprocess.run(
            ["git", "-C", root, "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            check=True, capture_output=True).stdout
        files = [f for f in raw.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dp, dns, fns in os.walk(root):
            rel = os.path.relpath(dp, root)
            dns[:] = [d for d in dns if d != ".git" and
                      not (rel == "." and d in builds)]
            files += [os.path.normpath(os.path.join(rel, f)) for f in fns]
    out = []
    for f in sorted(set(files)):
        top = f.split("/", 1)[0]
        if top in builds or top == ".git":
            continue
        if os.path.isfile(os.path.join(root, f)):
            out.append(f)
    return out


def source_hash(root=SRCROOT):
    """Hash of what goes into the .deb. The VM suite's own files (except its
    meson.build) do not change the package, so editing a test does not
    rebuild it."""
    h = hashlib.sha256()
    for f in source_files(root):
        if f.startswith("tests/vm/") and f != "tests/vm/meson.build":
            continue
        h.update(f.encode() + b"\0")
        with open(os.path.join(root, f), "rb") as fp:
            h.update(hashlib.sha256(fp.read()).digest())
    return h.hexdigest()[:16]


def ensure_deb():
    """Path of the agent's .deb: $MA_DEB, or one built from the current source
    tree by packaging/build-deb.sh and cached under its source hash."""
    env = os.environ.get("MA_DEB")
    if env:
        if not os.path.isfile(env):
            raise VMError("MA_DEB=%s does not exist" % env)
        return os.path.abspath(env)
    if not os.path.isfile(os.path.join(SRCROOT, "meson.build")):
        raise VMError("no meson.build at %s: nothing to package" % SRCROOT)
    key = source_hash()
    d = os.path.join(cache_dir(), "deb", key)
    debs = [f for f in os.listdir(d)] if os.path.isdir(d) else []
    debs = [f for f in debs if f.startswith("migration-agent_") and f.endswith(".deb")]
    if not debs:
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        logf = os.path.join(cache_dir(), "deb", key + ".log")
        log("building the .deb (source %s) -> %s" % (key, d))
        t0 = time.monotonic()
        with open(logf, "wb") as fp:
            r = subprocess.run([os.path.join(SRCROOT, "packaging", "build-deb.sh"), tmp],
                               stdout=fp, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            with open(logf, errors="replace") as fp:
                log("".join(fp.readlines()[-25:]))
            raise VMError("packaging/build-deb.sh failed (log: %s)" % logf)
        log("built the .deb in %.1f s" % (time.monotonic() - t0))
        shutil.rmtree(d, ignore_errors=True)
        os.rename(tmp, d)
        # keep the cache small: drop other source versions
        for other in os.listdir(os.path.dirname(d)):
            if other not in (key, key + ".log"):
                p = os.path.join(os.path.dirname(d), other)
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)
        debs = [f for f in os.listdir(d) if f.startswith("migration-agent_") and f.endswith(".deb")]
        if not debs:
            raise VMError("build-deb.sh produced no migration-agent_*.deb in %s" % d)
    return os.path.join(d, sorted(debs)[0])


def ensure_guest(with_agent, flavour="busybox", deb=None):
    """Build (or reuse) the guest image; returns (kernel, initrd).
    flavour 'systemd': systemd is PID 1 and udev starts the agents.
    deb: the agent's .deb (default: ensure_deb())."""
    if with_agent:
        deb = deb or ensure_deb()
    else:
        deb = "-"
    name = ("guest-agent" if with_agent else "guest-base") + \
        ("" if flavour == "busybox" else "-" + flavour)
    out = os.path.join(cache_dir(), name)
    r = subprocess.run([os.path.join(HERE, "build-guest.sh"), out, deb, flavour],
                       capture_output=True, text=True)
    if r.returncode != 0:
        log(r.stdout + r.stderr)
        raise VMError("build-guest.sh failed")
    return os.path.join(out, "vmlinuz"), os.path.join(out, "initramfs.cpio.gz")


def make_data_disk(path, size_mb=64):
    with open(path, "wb") as fp:
        fp.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "madata", path], check=True)


def find_migctl():
    p = os.environ.get("MIGCTL")
    if p:
        return p if os.access(p, os.X_OK) else None
    for cand in ("build/agent/client/migctl", "builddir/agent/client/migctl", "_build/agent/client/migctl"):
        q = os.path.join(SRCROOT, cand)
        if os.access(q, os.X_OK):
            return q
    return shutil.which("migctl")


# --------------------------------------------------------------------------
# line-oriented JSON over a UNIX socket (QMP and qemu-ga)
# --------------------------------------------------------------------------

def connect_unix(path, until):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError as e:
            s.close()
            if e.errno not in (errno.ENOENT, errno.ECONNREFUSED) or time.monotonic() > until:
                raise VMError("cannot connect to %s: %s" % (path, e))
            time.sleep(0.05)


class JsonStream:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, obj, prefix=b""):
        self.sock.sendall(prefix + json.dumps(obj).encode() + b"\n")

    def _fill(self, until):
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError
        if not data:
            raise VMError("connection closed by peer")
        self.buf += data

    def recv(self, until):
        """Next JSON object (one per line); raises TimeoutError."""
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                line = line.replace(b"\xff", b"").strip()
                if not line:
                    continue
                try:
                    return json.loads(line)
                except ValueError:
                    continue  # stale or partial bytes from before a resync
            self._fill(until)

    def skip_to_ff(self, until):
        """Discard input up to and including a 0xFF byte."""
        while True:
            i = self.buf.find(b"\xff")
            if i >= 0:
                self.buf = self.buf[i + 1:]
                return
            self.buf = b""
            self._fill(until)

    def close(self):
        self.sock.close()


def sync_delimited(stream, command, who, timeout):
    """COMMAND (guest-sync-delimited or sync-delimited) until the peer answers
    with our id: the 0xFF it sends first marks where its reply starts, after
    whatever stale bytes a previous connection left. The peer may not be
    listening yet, so retry with short waits."""
    until = time.monotonic() + timeout
    while True:
        sid = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        stream.send({"execute": command, "arguments": {"id": sid}}, prefix=b"\xff")
        try:
            step = min(until, time.monotonic() + 2)
            while True:
                stream.skip_to_ff(step)
                r = stream.recv(step)
                if r.get("return") == sid:
                    return
        except TimeoutError:
            if time.monotonic() > until:
                raise VMError("%s did not answer %s in %d s" % (who, command, timeout))


class QMPError(VMError):
    pass


class IdClient:
    """A QMP-style connection whose requests carry an id: events that arrive
    meanwhile are kept in self.events, replies to other ids are skipped.
    Subclasses set self.s (a JsonStream), self.events and self._id."""

    def cmd(self, name, timeout=CMD_TIMEOUT, **args):
        self._id += 1
        msg = {"execute": name, "id": self._id}
        if args:
            msg["arguments"] = args
        self.s.send(msg)
        until = time.monotonic() + timeout
        while True:
            r = self.s.recv(until)
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") != self._id:
                continue
            if "error" in r:
                raise QMPError("%s: %s" % (name, r["error"].get("desc")))
            return r.get("return")

    def close(self):
        self.s.close()


class QMP(IdClient):
    def __init__(self, path, timeout=BOOT_TIMEOUT):
        until = time.monotonic() + timeout
        self.s = JsonStream(connect_unix(path, until))
        self.events = []
        self._id = 0
        greeting = self.s.recv(until)
        if "QMP" not in greeting:
            raise VMError("no QMP greeting: %r" % greeting)
        self.cmd("qmp_capabilities")


class QGA:
    """qemu-ga client over the host end of the org.qemu.guest_agent.0 port."""

    def __init__(self, path, timeout=BOOT_TIMEOUT):
        self.path = path
        self.s = JsonStream(connect_unix(path, time.monotonic() + timeout))
        self.sync(timeout)

    def sync(self, timeout=BOOT_TIMEOUT):
        sync_delimited(self.s, "guest-sync-delimited", "qemu-ga", timeout)

    def cmd(self, name, timeout=CMD_TIMEOUT, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.send(msg)
        until = time.monotonic() + timeout
        r = self.s.recv(until)
        if "error" in r:
            raise QMPError("%s: %s" % (name, r["error"].get("desc")))
        return r.get("return")

    def read_file(self, path, limit=1 << 20):
        import base64
        h = self.cmd("guest-file-open", path=path, mode="r")
        data = b""
        try:
            while len(data) < limit:
                r = self.cmd("guest-file-read", handle=h, count=65536)
                data += base64.b64decode(r.get("buf-b64", ""))
                if r.get("eof") or not r.get("count"):
                    break
        finally:
            self.cmd("guest-file-close", handle=h)
        return data

    def write_file(self, path, data, mode="w"):
        import base64
        h = self.cmd("guest-file-open", path=path, mode=mode)
        try:
            self.cmd("guest-file-write", handle=h, **{"buf-b64": base64.b64encode(data).decode()})
        finally:
            self.cmd("guest-file-close", handle=h)

    def sh(self, script, timeout=CMD_TIMEOUT):
        """Run a shell snippet in the guest; returns stdout; raises on failure."""
        rc, out, err = self.exec(["/bin/sh", "-c", script], timeout)
        if rc != 0:
            raise VMError("guest command %r: exit %s: %s %s" % (script, rc, out, err))
        return out

    def exec(self, argv, timeout=CMD_TIMEOUT):
        """Run argv in the guest; returns (exitcode, stdout, stderr)."""
        import base64
        r = self.cmd("guest-exec", path=argv[0], arg=list(argv[1:]), **{"capture-output": True})
        pid = r["pid"]
        until = time.monotonic() + timeout
        while True:
            st = self.cmd("guest-exec-status", pid=pid)
            if st.get("exited"):
                dec = lambda k: base64.b64decode(st.get(k, "")).decode(errors="replace")
                return st.get("exitcode"), dec("out-data"), dec("err-data")
            if time.monotonic() > until:
                raise VMError("guest-exec %s did not finish in %d s" % (argv, timeout))
            time.sleep(0.05)

    def close(self):
        self.s.close()


# --------------------------------------------------------------------------
# a QEMU guest
# --------------------------------------------------------------------------

class Guest:
    def __init__(self, workdir, name, kernel, initrd, disk, append="", incoming=False,
                 mem=512, drive_opts=""):
        self.workdir = workdir
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.console = os.path.join(self.dir, "console.log")
        self.qga_sock = os.path.join(self.dir, "qga.sock")
        self.ma_sock = os.path.join(self.dir, "ma.sock")
        self.qmp_sock = os.path.join(self.dir, "qmp.sock")
        kvm = os.environ.get("MA_VM_KVM") == "1"
        self.argv = [
            "qemu-system-x86_64",
            "-machine", "q35", "-accel", "kvm" if kvm else "tcg",
            "-m", str(mem), "-smp", "1",
            "-kernel", kernel, "-initrd", initrd,
            "-append", ("console=ttyS0 panic=-1 " + append).strip(),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "file:" + self.console,
            "-device", "virtio-serial-pci",
            "-chardev", "socket,id=qga,path=%s,server=on,wait=off" % self.qga_sock,
            "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
            "-chardev", "socket,id=ma,path=%s,server=on,wait=off" % self.ma_sock,
            "-device", "virtserialport,chardev=ma,name=org.migration_agent.0,id=maport",
            "-drive", "file=%s,if=none,id=d0,format=raw,file.locking=off%s" % (
                disk, ("," + drive_opts) if drive_opts else ""),
            "-device", "virtio-blk-pci,drive=d0",
            "-netdev", "user,id=n0,restrict=on",
            "-device", "virtio-net-pci,netdev=n0",
            "-qmp", "unix:%s,server=on,wait=off" % self.qmp_sock,
        ]
        if kvm:
            self.argv += ["-cpu", "host"]
        if incoming:
            self.argv += ["-incoming", "defer"]
        self.stderr_path = os.path.join(self.dir, "qemu.stderr")
        self.proc = None
        self.qmp = None
        self._qga = None

    def start(self):
        with open(os.path.join(self.dir, "cmdline"), "w") as fp:
            fp.write(" ".join(self.argv) + "\n")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=open(self.stderr_path, "wb"),
                                     stderr=subprocess.STDOUT)
        until = time.monotonic() + 30 * SCALE
        while not os.path.exists(self.qmp_sock):
            if self.proc.poll() is not None:
                raise VMError("%s: qemu exited (%s): %s" % (self.name, self.proc.returncode,
                                                           self.qemu_stderr()))
            if time.monotonic() > until:
                raise VMError("%s: no QMP socket" % self.name)
            time.sleep(0.02)
        self.qmp = QMP(self.qmp_sock)
        return self

    def qemu_stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as fp:
                return fp.read()
        except OSError:
            return ""

    def console_text(self):
        try:
            with open(self.console, "rb") as fp:
                return fp.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_console(self, pattern, timeout=BOOT_TIMEOUT, start=0):
        """Wait until the console log matches regex; returns the match."""
        rx = re.compile(pattern, re.M)
        until = time.monotonic() + timeout
        while True:
            m = rx.search(self.console_text(), start)
            if m:
                return m
            if self.proc.poll() is not None:
                raise VMError("%s: qemu exited (%s) while waiting for %r" %
                              (self.name, self.proc.returncode, pattern))
            if time.monotonic() > until:
                raise VMError("%s: %r not on the console after %d s" %
                              (self.name, pattern, timeout))
            time.sleep(0.05)

    def qga(self, timeout=BOOT_TIMEOUT):
        if self._qga is None:
            self._qga = QGA(self.qga_sock, timeout)
        return self._qga

    def stop(self):
        if self._qga:
            try:
                self._qga.close()
            except OSError:
                pass
            self._qga = None
        if self.proc and self.proc.poll() is None:
            try:
                self.qmp.cmd("quit", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.qmp:
            try:
                self.qmp.close()
            except OSError:
                pass


def migrate(src, dst, timeout=MIGRATE_TIMEOUT, **caps):
    """Live-migrate src to dst (started with incoming=True) over loopback TCP.
    Returns src's final query-migrate dict (total-time, downtime in ms)."""
    dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")
    port = None
    for a in dst.qmp.cmd("query-migrate").get("socket-address", []):
        if a.get("type") == "inet":
            port = a["port"]
    if not port:
        raise VMError("destination did not report its listening port")
    if caps:
        cl = [{"capability": k, "state": v} for k, v in caps.items()]
        src.qmp.cmd("migrate-set-capabilities", capabilities=cl)
        dst.qmp.cmd("migrate-set-capabilities", capabilities=cl)
    src.qmp.cmd("migrate", uri="tcp:127.0.0.1:%s" % port)
    until = time.monotonic() + timeout
    while True:
        info = src.qmp.cmd("query-migrate")
        st = info.get("status")
        if st == "completed":
            break
        if st in ("failed", "cancelled"):
            raise VMError("migration %s: %s" % (st, info.get("error-desc", info)))
        if time.monotonic() > until:
            src.qmp.cmd("migrate_cancel")
            raise VMError("migration did not complete in %d s: %r" % (timeout, info))
        time.sleep(0.05)
    until = time.monotonic() + 30 * SCALE
    while dst.qmp.cmd("query-status").get("status") != "running":
        if time.monotonic() > until:
            raise VMError("destination not running after migration")
        time.sleep(0.05)
    return info


class Agent(IdClient):
    """A raw protocol connection to the agent's port (host side), for
    latency measurements without the client's process start-up."""

    def __init__(self, path, timeout=CMD_TIMEOUT, attempt_timeout=5):
        self.events = []
        self._id = 0
        until = time.monotonic() + timeout
        attempts = 0
        while True:
            attempts += 1
            self.s = JsonStream(connect_unix(path, until))
            try:
                self.sync(min(attempt_timeout, max(until - time.monotonic(), 0.1)))
                break
            except VMError:
                self.s.close()
                if time.monotonic() >= until:
                    raise
        if attempts > 1:
            RETRIED.append(("sync-delimited (raw connection)", attempts))

    def sync(self, timeout=CMD_TIMEOUT):
        sync_delimited(self.s, "sync-delimited", "the agent", timeout)


# --------------------------------------------------------------------------
# the project's client, from the host side
# --------------------------------------------------------------------------

def migctl(binary, sock, *args, timeout=CMD_TIMEOUT):
    """Run `migctl --connect unix:SOCK ARGS --json`; returns (rc, parsed-or-text,
    stderr, seconds)."""
    argv = [binary, "--connect", "unix:" + sock] + list(args) + ["--json"]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    dt = time.monotonic() - t0
    out = r.stdout.strip()
    try:
        out = json.loads(out)
    except ValueError:
        pass
    return r.returncode, out, r.stderr, dt


def migctl_ok(binary, sock, *args, timeout=CMD_TIMEOUT):
    """migctl that must succeed; returns (parsed JSON, seconds). Unanswered
    calls are retried on a fresh connection (see STALE_HUP) and recorded in
    RETRIED, so a test can still report them."""
    out, dt, attempts = migctl_retry(binary, sock, *args,
                                     attempt_timeout=min(timeout, 10),
                                     timeout=max(timeout, 60 * SCALE))
    if not isinstance(out, (dict, list)):
        # --json prints the return, always a JSON value: anything else is a finding, said
        # as such rather than as a step's AttributeError further on
        raise VMError("migctl %s exited 0 but printed no JSON: %r" % (" ".join(args), out))
    return out, dt


# Fixed in the agent (a hangup on the port now re-asks whether a host is
# connected): a request sent right after the host side of the virtio port
# reconnected could go unread when the SIGIO of the reconnect coalesced with
# the one of the disconnect. The steps that tracked it as a known issue are
# plain checks again; the name stays for steps that still cite it.
STALE_HUP = "a request right after a host reconnect can go unread (stale HUP after SIGIO)"
RETRIED = []  # (command, attempts) of every call that needed a fresh connection


def no_retries():
    """A step for the end of a test: every call was answered at once.
    Register it with STALE_HUP as its known issue."""
    if RETRIED:
        raise VMError("calls that went unanswered and were retried on a fresh connection: %r"
                      % RETRIED)
    return "every call answered on its first connection"


def migctl_retry(binary, sock, *args, attempt_timeout=5, timeout=60 * SCALE):
    """migctl as a careful orchestrator runs it: a call that gets no answer
    within attempt_timeout is retried on a fresh connection (only for
    idempotent commands). Returns (parsed JSON, seconds of the answering
    attempt, attempts)."""
    until = time.monotonic() + timeout
    attempts = 0
    last = None
    while time.monotonic() < until:
        attempts += 1
        try:
            rc, out, err, dt = migctl(binary, sock, *args, "--timeout", str(attempt_timeout),
                                      timeout=attempt_timeout + 10)
        except subprocess.TimeoutExpired:
            last = "migctl did not exit"
            continue
        if rc == 0:
            if attempts > 1:
                RETRIED.append((args[0] if args else "?", attempts))
            return out, dt, attempts
        if rc != 2:  # the agent answered with an error: no retry
            raise VMError("migctl %s: exit %d: %s %s" % (" ".join(args), rc, out, err.strip()))
        last = "exit %d: %s" % (rc, err.strip())
    raise VMError("migctl %s: no answer in %d attempts (%s)" % (" ".join(args), attempts, last))


def wait_migctl(binary, sock, timeout=BOOT_TIMEOUT):
    """Retry `migctl ping` until the agent answers (it starts after boot)."""
    until = time.monotonic() + timeout
    last = None
    while time.monotonic() < until:
        try:
            rc, out, err, dt = migctl(binary, sock, "ping", "--timeout", "5", timeout=15)
            if rc == 0:
                return out, dt
            last = "exit %d: %s %s" % (rc, out, err.strip())
        except subprocess.TimeoutExpired:
            last = "migctl timed out"
        time.sleep(0.2)
    raise VMError("the agent did not answer migctl ping in %d s (%s)" % (timeout, last))


# --------------------------------------------------------------------------
# TAP
# --------------------------------------------------------------------------

class Tap:
    """Ordered steps; the first failure stops the run (later steps are
    reported as not ok, since they depend on the earlier ones).

    A step given as (desc, fn, "known issue text") checks a known, reported
    product bug: while it fails it is reported as `not ok ... # TODO text`
    (an expected failure; later steps still run); once the bug is fixed it
    passes as a plain `ok`, and the marker should be removed."""

    def __init__(self, steps):
        self.steps = steps
        self.n = 0
        self.failed = False
        print("1..%d" % len(steps), flush=True)

    def run(self, on_failure=None):
        for step in self.steps:
            desc, fn = step[0], step[1]
            known = step[2] if len(step) > 2 else None
            self.n += 1
            if self.failed:
                print("not ok %d - %s # not run: an earlier step failed" % (self.n, desc),
                      flush=True)
                continue
            t0 = time.monotonic()
            try:
                note = fn()
                dt = time.monotonic() - t0
                print("ok %d - %s (%.2f s)%s" % (self.n, desc, dt,
                                                 (": " + note) if note else ""), flush=True)
            except Exception as e:  # noqa: BLE001 -- any failure is a test failure
                dt = time.monotonic() - t0
                if known:
                    print("not ok %d - %s (%.2f s) # TODO known issue: %s" % (
                        self.n, desc, dt, known), flush=True)
                    log("%s: %s" % (type(e).__name__, e))
                    continue
                print("not ok %d - %s (%.2f s)" % (self.n, desc, dt), flush=True)
                log("%s: %s" % (type(e).__name__, e))
                self.failed = True
                if on_failure:
                    try:
                        on_failure()
                    except Exception as e2:  # noqa: BLE001
                        log("(while collecting diagnostics: %s)" % e2)
        return 1 if self.failed else 0


class Harness:
    """Work directory, guests and the failure dump shared by the VM tests."""

    def __init__(self, name):
        self.name = name
        self.workdir = tempfile.mkdtemp(prefix="ma-vm-%s-" % name)
        self.guests = []
        self.disk = os.path.join(self.workdir, "data.img")
        self.t0 = time.monotonic()

    def guest(self, name, kernel, initrd, append="", incoming=False, drive_opts=""):
        """drive_opts: extra -drive options for the data disk (e.g. readonly=on
        to give a destination a disk that refuses writes)."""
        g = Guest(self.workdir, name, kernel, initrd, self.disk, append, incoming,
                  drive_opts=drive_opts)
        self.guests.append(g)
        return g

    def dump(self):
        log("---- work directory: %s (kept)" % self.workdir)
        os.environ["MA_VM_KEEP"] = "1"
        for g in self.guests:
            log("---- %s: qemu stderr ----" % g.name)
            log(g.qemu_stderr())
            log("---- %s: guest console (%s) ----" % (g.name, g.console))
            log(g.console_text()[-60000:])
        for g in self.guests:
            if not g.proc or g.proc.poll() is not None:
                continue
            try:
                q = g.qga(timeout=10)
                q.sync(10)
                try:  # file access is refused while frozen
                    if q.cmd("guest-fsfreeze-status", timeout=5) == "frozen":
                        q.cmd("guest-fsfreeze-thaw", timeout=10)
                except Exception:
                    pass
                try:
                    rc, out, err = q.exec(["/bin/sh", "-c",
                                           "command -v journalctl >/dev/null || exit 3; "
                                           "journalctl -b --no-pager -q -o short-monotonic "
                                           "| tail -n 400"], timeout=30)
                    if rc != 3:
                        log("---- %s: journal ----" % g.name)
                        log(out + err)
                except Exception as e:  # noqa: BLE001
                    log("---- %s: journal unavailable: %s" % (g.name, e))
                for p in ("/run/migration-agent.log", "/run/qemu-ga.log"):
                    try:
                        data = q.read_file(p)
                        log("---- %s: %s ----" % (g.name, p))
                        log(data.decode(errors="replace")[-30000:])
                    except Exception as e:  # noqa: BLE001
                        log("---- %s: %s unavailable: %s" % (g.name, p, e))
            except Exception as e:  # noqa: BLE001
                log("---- %s: qemu-ga unavailable for the log dump: %s" % (g.name, e))

    def close(self, failed):
        for g in self.guests:
            g.stop()
        log("%s: %.1f s in all" % (self.name, time.monotonic() - self.t0))
        if not failed and os.environ.get("MA_VM_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


# A guest kernel that crashed, as its console says it (x86 Linux's own words).
GUEST_KERNEL_CRASH = re.compile(r"Kernel panic - not syncing|BUG: unable to handle|"
                                r"kernel BUG at|general protection fault|Oops: 0")


def guest_kernel_crash(tap_text):
    """The first console line of a test's output that says a guest kernel crashed, or None."""
    for line in tap_text.splitlines():
        if GUEST_KERNEL_CRASH.search(line):
            return line.lstrip("# ").strip()
    return None


def retry_after_guest_crash():
    """Run this test in a child process, and once more if it failed and a guest kernel
    crashed (its console, dumped into the output on failure, shows a panic or an oops).

    Why: under TCG, a migrated guest's kernel now and then faults in its own code right
    after the move (seen: a page fault in timerqueue_add in the idle task, then a panic,
    6.5 s after an incoming migration), with no agent involved: the agent is a user process
    and cannot corrupt the kernel's timer queue. Such a run proves nothing either way. Any
    other failure is final on its first attempt. The first attempt's whole output is kept
    as TAP comments (`# attempt 1| ...`) ahead of the second's, with the crash line named.

    Call it first in a test, before anything is started: the parent only waits."""
    if os.environ.get("MA_VM_ATTEMPT"):
        return
    attempts = max(1, int(os.environ.get("MA_VM_ATTEMPTS", "2")))
    earlier, crash = [], None
    for attempt in range(1, attempts + 1):
        env = dict(os.environ, MA_VM_ATTEMPT=str(attempt))
        child = subprocess.run([sys.executable] + sys.argv, env=env, stdout=subprocess.PIPE,
                               text=True, errors="replace")
        if child.returncode == 0 and earlier:
            child.stdout += ("# passed on attempt %d; attempt %d had failed after a guest "
                             "kernel crash: %s\n" % (attempt, attempt - 1, crash))
        crash = guest_kernel_crash(child.stdout) if child.returncode != 0 else None
        if crash is None or attempt == attempts:
            sys.stdout.write("".join(earlier) + child.stdout)
            sys.stdout.flush()
            sys.exit(child.returncode)
        earlier.append("# attempt %d failed after a guest kernel crash (%s); the test runs "
                       "again\n" % (attempt, crash))
        earlier += ["# attempt %d| %s\n" % (attempt, line)
                    for line in child.stdout.splitlines()]


def skip_all(reason):
    print("1..0 # SKIP %s" % reason, flush=True)
    sys.exit(0)


def require_host_tools(agent=False):
    """Skip the whole test (TAP `1..0 # SKIP`) when the host cannot run it."""
    missing = [t for t in ("qemu-system-x86_64", "mkfs.ext4", "cpio", "busybox", "dpkg-deb",
                           "modprobe") if not shutil.which(t)]
    if not os.path.exists("/usr/sbin/qemu-ga"):
        missing.append("qemu-ga (qemu-guest-agent)")
    import glob
    kernels = [k for k in glob.glob("/boot/vmlinuz-*")
               if os.path.isdir("/lib/modules/" + k[len("/boot/vmlinuz-"):])]
    if not kernels:
        missing.append("a kernel with modules (linux-image-amd64)")
    if agent and not os.environ.get("MA_DEB"):
        missing += [t for t in ("dpkg-buildpackage", "dh", "meson") if not shutil.which(t)]
        if shutil.which("dpkg-checkbuilddeps"):
            r = subprocess.run(["dpkg-checkbuilddeps", "-B",
                                os.path.join(SRCROOT, "packaging", "debian", "control")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                missing.append("build dependencies of the .deb (%s)" % r.stderr.strip())
    if missing:
        skip_all("missing on the host: " + ", ".join(missing))
