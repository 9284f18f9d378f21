"""libvirtlib — two real libvirt daemons on one machine, and the VM suite's guest as a libvirt
domain (Python 3 stdlib; drives the daemons with virsh).

Each daemon runs in its own mount namespace with its own /etc/libvirt, /run/libvirt,
/var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and /run/lock bound over the real ones,
a socket directory outside them (the client and the other daemon reach it), no
authentication on its UNIX socket, a host UUID of its own (libvirt refuses a migration
between hosts of the same UUID), its own migration port range, QEMU as root without
security driver, cgroups or namespaces. A small wrapper that is a child subreaper runs it:
libvirt waits for each QEMU it stops, and PID 1 here reaps orphans only about once a second.

    with LibvirtPair(workdir) as pair:
        xml = domain_xml("g1", kernel, initrd, disk, "ma.scenario=smoke", console_log)
        start_guest(pair, "src", xml, console_log)
        migctl(pair.src_uri, "--domain", "g1", "ping")

Environment: MA_VM_TIMEOUT_SCALE multiplies every deadline (vmlib).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import vmlib  # noqa: E402
from vmlib import VMError, log  # noqa: E402

DAEMON_TIMEOUT = 60 * vmlib.SCALE
VIRSH_TIMEOUT = 60 * vmlib.SCALE
BOUND = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt",
         "/var/log/libvirt", "/run/lock")
PORTS = {"src": (49152, 49183), "dst": (49184, 49215)}
AGENT_CHANNEL = "org.migration_agent.0"


def missing_tools():
    """What this host lacks to run libvirt tests (empty when nothing)."""
    missing = [t for t in ("libvirtd", "virsh", "unshare") if not shutil.which(t)]
    if not os.path.exists("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/"
                          "libvirt_driver_qemu.so"):
        missing.append("libvirt-daemon-driver-qemu")
    return missing


def require_migctl_module():
    """(migctl, the directory of its libvirt module) for a VM test, or skip the whole test
    (TAP `1..0 # SKIP`) when libvirt, migctl or the module is missing."""
    if missing_tools():
        vmlib.skip_all("libvirt is not installed: %s" % ", ".join(missing_tools()))
    migctl = vmlib.find_migctl()
    if not migctl:
        vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")
    module_dir = os.environ.get("MIGCTL_MODULE_DIR") or os.path.dirname(migctl)
    if not os.path.exists(os.path.join(module_dir, "migctl-libvirt.so")):
        vmlib.skip_all("migctl-libvirt.so not built in %s (meson -Dlibvirt)" % module_dir)
    return migctl, module_dir


def ensure_qemu_user():
    """libvirt's QEMU driver resolves its default user and group before it reads qemu.conf."""
    if subprocess.run(["getent", "group", "libvirt-qemu"], capture_output=True).returncode:
        subprocess.run(["groupadd", "-r", "libvirt-qemu"], check=True)
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode:
        subprocess.run(["useradd", "-r", "-g", "libvirt-qemu", "-d", "/var/lib/libvirt",
                        "-s", "/usr/sbin/nologin", "libvirt-qemu"], check=True)


# The wrapper: a child subreaper that runs the daemon and reaps every orphan (the QEMUs the
# daemon double-forked) at once; it forwards SIGTERM/SIGKILL-as-SIGTERM and exits with it.
REAPER = r"""
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda n, f: os.kill(pid, n))
status = 0
while True:
    try:
        p, st = os.wait()
    except ChildProcessError:
        break
    except InterruptedError:
        continue
    if p == pid:
        status = os.waitstatus_to_exitcode(st)
sys.exit(status if status >= 0 else 128 - status)
"""


class Daemon:
    def __init__(self, base, name):
        self.name = name
        self.dir = os.path.join(base, "libvirt-" + name)
        self.sock_dir = os.path.join(self.dir, "sock")
        self.uri = "qemu+unix:///system?socket=%s/libvirt-sock" % self.sock_dir
        self.host_uuid = str(uuidlib.uuid4())
        self.log_path = os.path.join(self.dir, "libvirtd.log")
        self.proc = None

    def caps_cache(self):
        return os.path.join(vmlib.cache_dir(), "libvirt-capabilities")

    def configure(self):
        for d in ("etc", "run", "lib", "cache", "log", "lock", "sock",
                  "lib/qemu/channel/target", "run/qemu"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        # QEMU's capabilities, probed once (about 8 s) and kept with the VM cache: libvirt
        # checks them against the binary's timestamps and probes again when they are stale
        if os.path.isdir(self.caps_cache()):
            shutil.copytree(self.caps_cache(), os.path.join(self.dir, "cache", "qemu",
                                                            "capabilities"), dirs_exist_ok=True)
        lo, hi = PORTS[self.name]
        with open(os.path.join(self.dir, "etc", "libvirtd.conf"), "w") as fp:
            fp.write('unix_sock_dir = "%s"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                     'host_uuid = "%s"\nlog_outputs = "3:file:%s"\n' % (
                         self.sock_dir, self.host_uuid, self.log_path))
        with open(os.path.join(self.dir, "etc", "qemu.conf"), "w") as fp:
            fp.write('user = "root"\ngroup = "root"\ndynamic_ownership = 0\nremember_owner = 0\n'
                     'security_driver = "none"\nstdio_handler = "file"\n'
                     'cgroup_controllers = [ ]\nnamespaces = [ ]\n'
                     'migration_port_min = %d\nmigration_port_max = %d\n' % (lo, hi))

    def start(self):
        for d in BOUND:
            os.makedirs(d, exist_ok=True)
        binds = " && ".join("mount --bind %s %s" % (os.path.join(self.dir, src), dst)
                            for src, dst in zip(("etc", "run", "lib", "cache", "log", "lock"),
                                                BOUND))
        script = "%s && exec libvirtd --pid-file %s" % (
            binds, os.path.join(self.dir, "libvirtd.pid"))
        out = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-c", REAPER, "unshare", "-m",
                                      "--propagation", "private", "sh", "-c", script],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT)
        until = time.monotonic() + DAEMON_TIMEOUT
        while True:
            r = subprocess.run(["virsh", "-c", self.uri, "uri"], capture_output=True, text=True)
            if r.returncode == 0:
                probed = os.path.join(self.dir, "cache", "qemu", "capabilities")
                if os.path.isdir(probed) and not os.path.isdir(self.caps_cache()):
                    shutil.copytree(probed, self.caps_cache(), dirs_exist_ok=True)
                return
            if self.proc.poll() is not None:
                raise VMError("libvirtd %s exited (%s): %s" % (self.name, self.proc.returncode,
                                                               self.log_tail()))
            if time.monotonic() > until:
                raise VMError("libvirtd %s did not answer in %d s: %s" % (
                    self.name, DAEMON_TIMEOUT, r.stderr.strip()))
            time.sleep(0.1)

    def stop(self, kill=False):
        """SIGTERM (a clean stop) or, with kill, SIGKILL to the daemon itself (a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            try:
                with open(os.path.join(self.dir, "libvirtd.pid")) as fp:
                    os.kill(int(fp.read().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                self.proc.kill()
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30 * vmlib.SCALE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as fp:
                return "".join(fp.readlines()[-n:])
        except OSError:
            return "(no log)"


class LibvirtPair:
    """Two libvirt daemons, "src" and "dst"; a context manager that tears down what it made."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.daemons = {n: Daemon(workdir, n) for n in ("src", "dst")}
        self.src_uri = self.daemons["src"].uri
        self.dst_uri = self.daemons["dst"].uri
        self.timings = {}

    def uri(self, side):
        return self.daemons[side].uri

    def __enter__(self):
        ensure_qemu_user()
        t0 = time.monotonic()
        try:
            for d in self.daemons.values():
                d.configure()
                d.start()
        except Exception:
            self.close()
            raise
        self.timings["daemons"] = time.monotonic() - t0
        return self

    def __exit__(self, *exc):
        self.close()

    def virsh(self, side, *args, timeout=VIRSH_TIMEOUT, check=True):
        """virsh against one daemon; returns its stdout (raises on failure with check)."""
        r = subprocess.run(["virsh", "-q", "-c", self.uri(side)] + list(args),
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise VMError("virsh %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                     (r.stderr or r.stdout).strip()))
        return r.stdout

    def running(self, side):
        return [n for n in self.virsh(side, "list", "--name").split() if n]

    def restart(self, side):
        """Stop (SIGKILL: a crash) and start a daemon again with the same configuration."""
        d = self.daemons[side]
        d.stop(kill=True)
        d.start()

    def qemu_pids(self):
        """This pair's QEMUs: those whose command line names a file of its work directory
        (the console log, the disks); never another pair's on the same machine."""
        r = subprocess.run(["pgrep", "-af", "qemu-system-x86_64 -name guest="],
                           capture_output=True, text=True)
        return [int(line.split()[0]) for line in r.stdout.splitlines()
                if self.workdir.rstrip("/") + "/" in line]

    def close(self):
        t0 = time.monotonic()
        for side, d in self.daemons.items():
            if d.proc is None or d.proc.poll() is not None:
                continue
            try:
                for name in self.virsh(side, "list", "--all", "--name", check=False).split():
                    self.virsh(side, "destroy", name, check=False)
                    self.virsh(side, "undefine", name, check=False)
            except Exception as e:  # noqa: BLE001
                log("teardown of %s: %s" % (side, e))
        for d in self.daemons.values():
            d.stop()
        until = time.monotonic() + 30 * vmlib.SCALE
        while self.qemu_pids() and time.monotonic() < until:
            time.sleep(0.1)
        left = self.qemu_pids()
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        self.timings["teardown"] = time.monotonic() - t0
        if left:
            raise VMError("QEMU processes left after the daemons stopped: %s" % left)

    def diagnostics(self):
        for side, d in self.daemons.items():
            log("---- libvirtd %s: %s ----" % (side, d.log_path))
            log(d.log_tail(80))


def run_steps(tap, harness, st, diagnostics):
    """Run a test's TAP steps, then close its pair of daemons (st["pair"], when one was
    started) and its harness, whatever happened; the exit status for the test."""
    rc = 1
    try:
        rc = tap.run(on_failure=diagnostics)
    finally:
        if "pair" in st:
            try:
                st["pair"].close()
                log("daemons %.1f s, teardown %.1f s" % (st["pair"].timings.get("daemons", 0),
                                                         st["pair"].timings.get("teardown", 0)))
            except VMError as e:
                log("teardown: %s" % e)
                rc = 1
        harness.close(rc != 0)
    return rc


def domain_xml(name, kernel, initrd, disk, cmdline, console_log, mem_mib=512,
               agent_channel=True, mac="52:54:00:12:34:56", disk_format="raw"):
    """The VM suite's guest as a TCG domain: direct kernel boot, the data disk (virtio,
    cache=none), the serial console to a file, qemu-ga's channel and (agent_channel) the
    agent's, and a NIC on QEMU's restricted user network (libvirt 9.0 cannot say
    restrict=on: the NIC is given as QEMU arguments)."""
    agent = ("    <channel type='unix'>\n      <target type='virtio' name='%s'/>\n"
             "    </channel>\n" % AGENT_CHANNEL) if agent_channel else ""
    return """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>%(name)s</name>
  <memory unit='MiB'>%(mem)d</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%(kernel)s</kernel>
    <initrd>%(initrd)s</initrd>
    <cmdline>console=ttyS0 panic=-1 %(cmdline)s</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='%(format)s' cache='none'/>
      <source file='%(disk)s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='%(console)s' append='on'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
%(agent)s    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=n0,restrict=on'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=n0,mac=%(mac)s,bus=pcie.0,addr=0x10'/>
  </qemu:commandline>
</domain>
""" % {"name": name, "mem": mem_mib, "kernel": kernel, "initrd": initrd, "cmdline": cmdline,
       "disk": disk, "console": console_log, "agent": agent, "mac": mac,
       "format": disk_format}


def wait_console(path, pattern, timeout=vmlib.BOOT_TIMEOUT, start=0):
    rx = re.compile(pattern, re.M)
    until = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as fp:
                text = fp.read().decode(errors="replace")
        except OSError:
            text = ""
        m = rx.search(text, start)
        if m:
            return m
        if time.monotonic() > until:
            raise VMError("%r not on the console %s after %d s" % (pattern, path, timeout))
        time.sleep(0.05)


def start_guest(pair, side, xml, console_log, ready=r"^MA-READY: uptime (\S+)", define=False):
    """Create (or define and start) the domain and wait for its console's ready line."""
    path = os.path.join(pair.workdir, "domain-%d.xml" % (len(os.listdir(pair.workdir))))
    with open(path, "w") as fp:
        fp.write(xml)
    if define:
        pair.virsh(side, "define", path)
        name = re.search(r"<name>([^<]+)</name>", xml).group(1)
        pair.virsh(side, "start", name)
    else:
        pair.virsh(side, "create", path)
    if ready:
        return wait_console(console_log, ready)
    return None


def domjobinfo(pair, side, domain, completed=False):
    """`virsh domjobinfo` as a dict (field -> text); empty when there is no job."""
    out = pair.virsh(side, "domjobinfo", domain, *(["--completed"] if completed else []),
                     check=False)
    info = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    return info


def mib(value):
    """'12.5 MiB' (domjobinfo's sizes) in MiB, or None."""
    try:
        num, unit = value.split()[:2]
        return float(num) * {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]
    except (AttributeError, ValueError, KeyError):
        return None


class VirshQGA(vmlib.QGA):
    """qemu-ga through libvirt (virsh qemu-agent-command): the file and exec helpers of
    vmlib.QGA over the domain wherever it runs now."""

    def __init__(self, pair, side, domain):
        self.pair, self.side, self.domain = pair, side, domain

    def cmd(self, name, timeout=vmlib.CMD_TIMEOUT, **args):
        import json
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        r = subprocess.run(["virsh", "-c", self.pair.uri(self.side), "qemu-agent-command",
                            self.domain, json.dumps(msg), "--timeout", str(int(timeout))],
                           capture_output=True, text=True, timeout=timeout + 30)
        if r.returncode != 0:
            raise vmlib.QMPError("%s: %s" % (name, r.stderr.strip()))
        return json.loads(r.stdout).get("return")

    def sync(self, timeout=vmlib.BOOT_TIMEOUT):
        until = time.monotonic() + timeout
        while True:
            try:
                return self.cmd("guest-ping", timeout=5)
            except vmlib.QMPError:
                if time.monotonic() > until:
                    raise
                time.sleep(0.5)

    def close(self):
        pass
