#!/bin/sh
# /init of the proving-ground guest (see tests/vm/build-guest.sh).
# Brings the guest up, starts qemu-ga and migration-agent on their virtio
# ports (found by name), then hands PID 1 to busybox init, which runs the
# scenario named by ma.scenario=NAME (/scenarios/NAME.sh) once and reaps.
# Lines starting with "MA-" on the console are read by tests/vm/vmlib.py.
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /sys/fs/cgroup /dev/pts /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
exec </dev/console >/dev/console 2>&1

echo "MA-BOOT: userspace $(cut -d' ' -f1 /proc/uptime)s"

cmdline_get() {
    # cmdline_get KEY -> value of KEY=VALUE on the kernel command line
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
    done
    return 1
}

hostname -F /etc/hostname
while read -r ko; do
    case "$ko" in
        # CPU-specific accelerations: absent under TCG, the generic ones follow
        */arch/x86/crypto/*) insmod "$ko" 2>/dev/null || true ;;
        *) insmod "$ko" || echo "MA-WARN: insmod $ko failed" ;;
    esac
done < /etc/modules.order

# wait_for CONDITION-COMMAND SECONDS DESCRIPTION
wait_for() {
    n=0
    while ! eval "$1"; do
        n=$((n + 1))
        if [ "$n" -ge $(($2 * 20)) ]; then echo "MA-WARN: timed out waiting for $3"; return 1; fi
        usleep 50000
    done
}

# --- network: slirp's fixed addresses; traffic never leaves QEMU (restrict=on)
ip link set lo up
if wait_for '[ -e /sys/class/net/eth0 ]' 20 eth0; then
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
    ip route add default via 10.0.2.2
fi

# --- data disk ----------------------------------------------------------------
if wait_for '[ -b /dev/vda ]' 20 /dev/vda; then
    mount -t ext4 /dev/vda /data && echo "MA-DATA: mounted /dev/vda on /data" \
        || echo "MA-WARN: mounting /dev/vda failed"
fi

# --- the scenario, run once by busybox init or by ma-scenario.service ----------
scenario=$(cmdline_get ma.scenario || true)
cat > /etc/ma-scenario.sh <<EOS
#!/bin/sh
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
if [ -n "$scenario" ]; then
    if [ -x "/scenarios/$scenario.sh" ]; then
        echo "MA-SCENARIO-START: $scenario"
        /scenarios/$scenario.sh
        echo "MA-SCENARIO-END: $scenario rc=\$?"
    else
        echo "MA-SCENARIO-END: $scenario rc=127 (no /scenarios/$scenario.sh)"
    fi
fi
EOS
chmod 755 /etc/ma-scenario.sh

# --- ma.setup=NAME: /scenarios/NAME.sh runs now, before the agents start (for
#     configuration they read at start) ---------------------------------------------
setup=$(cmdline_get ma.setup || true)
if [ -n "$setup" ]; then
    /scenarios/"$setup".sh
    echo "MA-SETUP-END: $setup rc=$?"
fi

# --- systemd flavour: PID 1 becomes systemd; udev starts both agents ---------------
if [ "$(cat /etc/ma-flavour 2>/dev/null)" = systemd ]; then
    echo "MA-SYSTEMD: handing over to systemd at $(cut -d' ' -f1 /proc/uptime)s"
    exec /lib/systemd/systemd --log-target=kmsg --show-status=false
fi

# --- virtio-serial ports by name ----------------------------------------------
port_by_name() {
    for d in /sys/class/virtio-ports/*; do
        [ -r "$d/name" ] || continue
        if [ "$(cat "$d/name")" = "$1" ]; then echo "/dev/${d##*/}"; return 0; fi
    done
    return 1
}

qga_port=
if wait_for 'port_by_name org.qemu.guest_agent.0 >/dev/null' 20 "qemu-ga port"; then
    qga_port=$(port_by_name org.qemu.guest_agent.0)
    # ma.qgahook=PATH: qemu-ga runs PATH as its fsfreeze hook (-F); its state
    # dir stays the default /var/run (= /run), where the agent looks for
    # qga.state.isfrozen
    hook=$(cmdline_get ma.qgahook || true)
    qemu-ga -m virtio-serial -p "$qga_port" -l /run/qemu-ga.log ${hook:+-F"$hook"} &
    echo "MA-QGA: started on $qga_port pid $!"
fi

ma_port=$(port_by_name org.migration_agent.0 || true)
if [ -x /usr/sbin/migration-agent ] && [ "$(cmdline_get ma.agent || echo 1)" != 0 ]; then
    wait_for 'port_by_name org.migration_agent.0 >/dev/null' 20 "agent port" || true
    ma_port=$(port_by_name org.migration_agent.0 || true)
    # Log to a file in /run (never frozen) and to the console.
    # A GLib critical is a bug: make it fatal (ma.gdebug= overrides).
    ( export G_DEBUG="$(cmdline_get ma.gdebug || echo fatal-criticals)"
      /usr/sbin/migration-agent --foreground 2>&1; echo "MA-AGENT-EXIT: rc=$?" ) \
        | tee -a /run/migration-agent.log &
    echo "MA-AGENT: started (port ${ma_port:-none})"
else
    echo "MA-AGENT: not installed or disabled"
fi

echo "MA-READY: uptime $(cut -d' ' -f1 /proc/uptime)s qga=${qga_port:-none} ma=${ma_port:-none}"

# --- hand over to busybox init: it reaps orphans and runs the scenario once ----
printf '::once:/etc/ma-scenario.sh\n::ctrlaltdel:/bin/poweroff -f\n' > /etc/inittab
exec /bin/busybox init
