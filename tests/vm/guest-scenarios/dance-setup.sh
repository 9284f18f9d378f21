#!/bin/sh
# dance-setup (run through qemu-ga's guest-exec): what test_full_dance.py and
# tests/vm/demo migrate.
#   an "application": a counter in /run/vmapp.count, ticking every 0.1 s (pid in
#     /run/vmapp.pid); it lives on /run so that it keeps running while /data is
#     frozen, unless someone stops it
#   vm-lockhold holding an exclusive flock on /data/app.db (pid in /run/vmlock.pid)
#   plugins (in /etc/migration-agent/plugins.d):
#     vmprobe    oneshot, Order=10: logs each phase to /run/vmprobe.log with
#                whether qemu-ga's freeze was in force (qga.state.isfrozen)
#     vmsession  session, Order=20: holds the application stopped (SIGSTOP) from
#                quiesce to thaw, and releases it (SIGCONT) when its stdin
#                reaches EOF (the agent died); logs to /run/vmsession.log
# Background processes are detached from guest-exec (setsid, no inherited pipes).
set -eu
d=/etc/migration-agent/plugins.d
mkdir -p "$d"

setsid sh -c 'n=0; while :; do n=$((n + 1)); echo $n > /run/vmapp.count; usleep 100000; done' \
    </dev/null >/dev/null 2>&1 &
echo $! > /run/vmapp.pid
setsid /usr/local/bin/vm-lockhold flock /data/app.db </dev/null >/dev/null 2>&1 &
echo $! > /run/vmlock.pid

cat > "$d/vmprobe.sh" <<'EOS'
#!/bin/sh
frozen=no
[ -e /run/qga.state.isfrozen ] && frozen=yes
echo "$(cut -d' ' -f1 /proc/uptime) $MA_PHASE $MA_OPERATION frozen=$frozen" >> /run/vmprobe.log
echo "{\"detail\": \"$MA_PHASE logged (frozen=$frozen)\"}"
EOS
cat > "$d/vmprobe.plugin" <<'EOS'
[Plugin]
Description=VM test probe: logs every phase and qemu-ga's freeze state
Exec=/etc/migration-agent/plugins.d/vmprobe.sh
Protocol=oneshot
Order=10
Timeout=10
EOS

cat > "$d/vmsession.sh" <<'EOS'
#!/bin/sh
# A session plugin: one JSON line per phase on stdin, one answer per line on
# stdout. The application stays stopped only while this process holds it.
app=$(cat /run/vmapp.pid)
held=no
say() { echo "$(cut -d' ' -f1 /proc/uptime) pid=$$ $*" >> /run/vmsession.log; }
say "start"
while read -r line; do
    case "$line" in
        *'"phase": "quiesce"'*|*'"phase":"quiesce"'*)
            if kill -STOP "$app"; then
                held=yes
                say "quiesce: application $app stopped"
                echo '{"status": "ok", "detail": "application stopped"}'
            else
                say "quiesce: cannot stop $app"
                echo '{"status": "fail", "detail": "cannot stop the application"}'
            fi ;;
        *'"phase": "thaw"'*|*'"phase":"thaw"'*)
            kill -CONT "$app"
            held=no
            say "thaw: application $app running"
            echo '{"status": "ok", "detail": "application running"}' ;;
        *)
            say "other phase: $line"
            echo '{"status": "ok"}' ;;
    esac
done
if [ "$held" = yes ]; then
    kill -CONT "$app"
    say "eof while holding: application $app released"
else
    say "eof"
fi
EOS
cat > "$d/vmsession.plugin" <<'EOS'
[Plugin]
Description=VM test session: holds the application stopped from quiesce to thaw
Exec=/etc/migration-agent/plugins.d/vmsession.sh
Protocol=session
Order=20
Timeout=10
EOS
chmod 0755 "$d/vmprobe.sh" "$d/vmsession.sh"
chmod 0644 "$d"/*.plugin
: > /run/vmprobe.log
: > /run/vmsession.log
echo "dance-setup: app $(cat /run/vmapp.pid), lock holder $(cat /run/vmlock.pid); plugins $(ls "$d" | tr '\n' ' ')"
