#!/bin/sh
# quiesce-setup: install the plugins test_quiesce.py drives (run through
# qemu-ga's guest-exec). The agent rereads plugins.d at every command.
#   example  the shipped example plugin, enabled by a local manifest
#   vmprobe  Order=10: logs each phase to /run/vmprobe.log with the uptime and
#            whether qemu-ga's freeze was in force (qga.state.isfrozen)
#   vmfail   Order=60: fails its quiesce while /run/vmfail.armed exists
set -eu
d=/etc/migration-agent/plugins.d
mkdir -p "$d"
sed 's/^Enabled=false/Enabled=true/' /usr/lib/migration-agent/plugins.d/example.plugin \
    > "$d/example.plugin"

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

cat > "$d/vmfail.sh" <<'EOS'
#!/bin/sh
if [ "$MA_PHASE" = quiesce ] && [ -e /run/vmfail.armed ]; then
    echo "armed: refusing to quiesce" >&2
    exit 1
fi
echo "{\"detail\": \"$MA_PHASE ok\"}"
EOS
cat > "$d/vmfail.plugin" <<'EOS'
[Plugin]
Description=VM test plugin: fails quiesce while /run/vmfail.armed exists
Exec=/etc/migration-agent/plugins.d/vmfail.sh
Protocol=oneshot
Order=60
Timeout=10
EOS
chmod 0755 "$d/vmprobe.sh" "$d/vmfail.sh"
chmod 0644 "$d"/*.plugin
: > /run/vmprobe.log
echo "quiesce-setup: $(ls "$d" | tr '\n' ' ')"
