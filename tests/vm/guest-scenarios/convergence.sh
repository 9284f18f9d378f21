#!/bin/sh
# convergence: a "batch" memory dirtier and a "service" loop in two cgroup v2 groups, and the
# agent configured to throttle the batch class (cpu.max) and never touch the service.
# Boot with ma.agent=0: this script starts the agent once its configuration is written.
# The host pushes the static workload binary to /run/convergence-load through qemu-ga first.
# Kernel command line: ma.cv.mib=N (dirtier size, 128), ma.cv.quota=US and ma.cv.period=US
# (the batch class's cpu.max, default 2000 100000).
cmdline_get() {
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1="*) echo "${w#*=}"; return 0 ;; esac
    done
    return 1
}

n=0
while [ ! -x /run/convergence-load ]; do
    n=$((n + 1))
    if [ "$n" -gt 2400 ]; then echo "MA-WARN: /run/convergence-load never arrived"; exit 1; fi
    usleep 50000
done
mib=$(cmdline_get ma.cv.mib || echo 128)
quota=$(cmdline_get ma.cv.quota || echo 2000)
period=$(cmdline_get ma.cv.period || echo 100000)

cg=/sys/fs/cgroup
echo +cpu > $cg/cgroup.subtree_control || { echo "MA-WARN: no cpu controller"; exit 1; }
mkdir -p $cg/batch $cg/service
mkdir -p /etc/migration-agent/agent.conf.d
cat > /etc/migration-agent/agent.conf.d/convergence.conf <<EOC
[throttle]
protected=service
[throttle:batch]
cgroups=batch
policy=cpu.max $quota $period
EOC

sh -c "echo \$\$ > $cg/service/cgroup.procs && exec /run/convergence-load service /run/service.count" &
sh -c "echo \$\$ > $cg/batch/cgroup.procs && exec /run/convergence-load dirty $mib /run/batch.count" &

( export G_DEBUG=fatal-criticals
  /usr/sbin/migration-agent --foreground 2>&1; echo "MA-AGENT-EXIT: rc=$?" ) \
    | tee -a /run/migration-agent.log &
echo "MA-CONVERGENCE-READY: dirtier ${mib} MiB, batch policy cpu.max $quota $period"
