#!/usr/bin/env python3
"""VM scenario: the whole migration dance, end to end, on one pair of guests.

The steps live in dance.py (tests/vm/demo narrates the same ones): prepare,
blockers (a flock holder on the data disk named with path and pid), quiesce
(a oneshot probe and a session plugin holding an application stopped, with
timings), qemu-ga's freeze, every read-only command within 100 ms while
frozen, a live migration, on the destination qemu-ga's thaw then the agent's
thaw (plugins released, the application runs again), RESUMED detected by the
agent itself and an all-pass VALIDATION_COMPLETED received on the
orchestrator's connection to the destination port, and the agent's
/proc/PID/io showing nothing written while frozen.

Then, on the destination, the session plugin's safety net: the agent is
SIGKILLed while it holds the application quiesced, the plugin's stdin reaches
EOF and it releases the application (which runs again long before the lease
would have ended)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmlib  # noqa: E402
from vmlib import VMError  # noqa: E402
import dance  # noqa: E402

KILL_LEASE = 600

vmlib.require_host_tools(agent=True)
vmlib.retry_after_guest_crash()
MIGCTL = vmlib.find_migctl()
if not MIGCTL:
    vmlib.skip_all("migctl not found (set MIGCTL=BUILD/agent/client/migctl)")

h = vmlib.Harness("full-dance")
d = dance.Dance(h, MIGCTL, dance.Narrator(vmlib.log, h.workdir))


def kill_setup():
    d.close_connection()
    op = "dance-kill-1"
    out = d.ctl("quiesce", "operation=" + op, "lease_seconds=%d" % KILL_LEASE, timeout=180)
    if out.get("state") != "quiesced":
        raise VMError("quiesce: %r" % out)
    count = d.app_stopped()
    starts = d.log_lines("/run/vmsession.log", " start")
    d.session_pid = int(starts[-1].split("pid=")[1].split()[0])
    if d.proc_state(d.session_pid) in (None, "Z"):
        raise VMError("the session plugin (pid %d) is not running" % d.session_pid)
    return "operation %s quiesced (lease %d s); application stopped at %d; session plugin " \
           "pid %d holds it" % (op, KILL_LEASE, count, d.session_pid)


def kill_agent():
    pid = int(d.q.sh("pidof migration-agent").split()[0])
    if pid != d.agent_pid:
        raise VMError("the agent's pid changed: %d, was %d" % (pid, d.agent_pid))
    console = len(d.dst.console_text())
    t0 = time.monotonic()
    d.q.sh("kill -KILL %d" % pid)
    d.dst.wait_console(r"^MA-AGENT-EXIT: rc=137", timeout=30 * vmlib.SCALE, start=console)
    state, count = d.app_running()
    dt = time.monotonic() - t0
    until = time.monotonic() + 30 * vmlib.SCALE
    while d.proc_state(d.session_pid) not in (None, "Z"):
        if time.monotonic() > until:
            raise VMError("the session plugin (pid %d) still runs after the agent died" %
                          d.session_pid)
        time.sleep(0.2)
    released = d.log_lines("/run/vmsession.log", "pid=%d eof while holding" % d.session_pid)
    if not released:
        raise VMError("the session plugin did not log a release on EOF: %r" %
                      d.q.read_file("/run/vmsession.log").decode())
    return "agent %d SIGKILLed; the session plugin saw EOF, released the application and " \
           "exited; the application runs again within %.1f s (state %s, counter %d; the " \
           "lease had %d s left)" % (pid, dt, state, count, KILL_LEASE)


tap = vmlib.Tap(d.steps() + [
    ("RESUMED and VALIDATION_COMPLETED name the prepared operation", d.operation_named),
    ("destination: quiesce again, the session plugin holds the application", kill_setup),
    ("agent SIGKILLed while quiesced: the session plugin releases the application",
     kill_agent),
    ("every call was answered on its first connection", vmlib.no_retries),
])
rc = tap.run(on_failure=h.dump)
h.close(rc != 0)
sys.exit(rc)
