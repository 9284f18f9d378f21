#!/bin/sh
# build-debian-image.sh — a real Debian 12 guest disk, as an image builder makes one: a
# bookworm root from Debian's packages (mmdebstrap), its own kernel and initramfs
# (linux-image-amd64, initramfs-tools), systemd as PID 1, udev, qemu-guest-agent, then
# inside the image (chroot)
#     apt-get install ./migration-agent_*.deb ./migration-agent-plugin-postgresql_*.deb postgresql
# and the PostgreSQL plugin enabled exactly as plugins/postgresql/README.md says. Nothing
# else is copied into the image: the agent's files all come from its package.
#
# usage: build-debian-image.sh CACHEDIR DEBDIR
#   DEBDIR                 holds migration-agent_*.deb and migration-agent-plugin-postgresql_*.deb
#   the image goes to CACHEDIR/debian12-KEY/ (KEY: a hash of this script, the .debs and the
#   host's apt sources), whose path is the last line of the output ("image: DIR"):
#     debian12.qcow2       the disk (ext4 on the whole disk, root=/dev/vda)
#     vmlinuz, initrd.img  the image's own kernel and initramfs, taken out of its /boot
#                          (libvirt boots them directly: the disk has no bootloader)
#     image.key            the key; written last, so a directory without it is incomplete
#     build.log            mmdebstrap's output
#     packages.txt         what the image has installed (name version)
#
# The apt sources are the host's own (/etc/apt/sources.list.d/*.sources and
# /etc/apt/sources.list): the image uses the mirror this machine uses. Downloaded packages are
# kept in CACHEDIR/apt-archives, so a rebuild for a new .deb downloads nothing. Builds are
# serialized by a lock on CACHEDIR (several checkouts may share it); images not used for two
# days are removed.
#
# Needs root (mmdebstrap's root mode), mmdebstrap, mkfs.ext4 (-d), qemu-img.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: build-debian-image.sh CACHEDIR DEBDIR}
debdir=${2:?usage: build-debian-image.sh CACHEDIR DEBDIR}
die() { echo "build-debian-image: $*" >&2; exit 1; }

SUITE=bookworm
SIZE=3G
# what the image has besides Essential and apt, before the package is installed
INCLUDE=systemd-sysv,udev,linux-image-amd64,initramfs-tools,qemu-guest-agent,procps,iproute2

command -v mmdebstrap >/dev/null || die "mmdebstrap not found: install mmdebstrap (tests/vm/PACKAGES)"
command -v qemu-img >/dev/null || die "qemu-img not found: install qemu-utils"
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap's root mode)"
agent_deb=$(ls "$debdir"/migration-agent_*.deb 2>/dev/null | head -n1)
pg_deb=$(ls "$debdir"/migration-agent-plugin-postgresql_*.deb 2>/dev/null | head -n1)
[ -n "$agent_deb" ] || die "no migration-agent_*.deb in $debdir"
[ -n "$pg_deb" ] || die "no migration-agent-plugin-postgresql_*.deb in $debdir"

# the host's apt sources, as they are
sources=
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    [ -s "$f" ] || continue
    grep -qE '^[[:space:]]*(deb[[:space:]]|Types:)' "$f" || continue
    sources="$sources $f"
done
[ -n "$sources" ] || die "no apt sources on this host (/etc/apt/sources.list.d/*.sources, /etc/apt/sources.list)"

key=$( {
    echo "suite=$SUITE size=$SIZE include=$INCLUDE"
    # shellcheck disable=SC2086
    sha256sum "$0" "$agent_deb" "$pg_deb" $sources
} | sha256sum | cut -d' ' -f1 )

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
out=$cache/debian12-$(echo "$key" | cut -c1-16)
exec 9>"$cache/.lock"
flock 9
# images nobody used for two days (a running guest keeps its backing file open)
find "$cache" -mindepth 2 -maxdepth 2 -name image.key -mtime +2 2>/dev/null | while read -r k; do
    [ "$(dirname "$k")" = "$out" ] || rm -rf "$(dirname "$k")"
done
if [ -f "$out/image.key" ] && [ "$(cat "$out/image.key")" = "$key" ]; then
    touch "$out/image.key"
    echo "build-debian-image: up to date"
    echo "image: $out"
    exit 0
fi
rm -rf "$out"
mkdir -p "$out"

archives=$cache/apt-archives
mkdir -p "$archives"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/ma-debian.XXXXXX")
chmod 755 "$work"   # apt's sandbox user reads the lists under it
# never remove a tree that still has something mounted in it (mmdebstrap unmounts its own)
trap 'grep -q " $work/" /proc/mounts || rm -rf "$work"' EXIT
mkdir -p "$work/debs"
cp "$agent_deb" "$pg_deb" "$work/debs/"

t0=$(date +%s)
# The customize hooks are what an image builder's recipe does after the base system:
# install the package with apt (its dependencies from Debian alone), enable the plugin as
# its README says, and the few lines any disk image needs (fstab, hostname).
# shellcheck disable=SC2086
mmdebstrap --mode=root --variant=apt --format=directory --skip=essential/unlink \
    --include="$INCLUDE" \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $archives /var/cache/apt/archives/" \
    --customize-hook="copy-in $work/debs /root" \
    --customize-hook='chroot "$1" sh -c "cd /root/debs && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ./migration-agent_*.deb ./migration-agent-plugin-postgresql_*.deb postgresql"' \
    --customize-hook='chroot "$1" sh -ec "
        cp /usr/lib/migration-agent/plugins.d/postgresql.plugin /etc/migration-agent/plugins.d/
        sed -i s/^Enabled=false/Enabled=true/ /etc/migration-agent/plugins.d/postgresql.plugin
        cp /usr/share/doc/migration-agent/plugins/postgresql.env /etc/migration-agent/
        chmod 0600 /etc/migration-agent/postgresql.env"' \
    --customize-hook='rm -rf "$1"/root/debs' \
    --customize-hook='echo "/dev/vda / ext4 errors=remount-ro 0 1" > "$1"/etc/fstab' \
    --customize-hook='echo debian12 > "$1"/etc/hostname' \
    --customize-hook='printf "127.0.0.1 localhost\n127.0.1.1 debian12\n::1 localhost\n" > "$1"/etc/hosts' \
    --customize-hook='chroot "$1" passwd --delete root' \
    --customize-hook="sync-out /var/cache/apt/archives $archives" \
    "$SUITE" "$work/root" $sources > "$out/build.log" 2>&1 \
    || { tail -40 "$out/build.log" >&2; die "mmdebstrap failed (log: $out/build.log)"; }

kernel=$(ls "$work/root/boot"/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "$work/root/boot"/initrd.img-* | sort -V | tail -n1)
[ -r "$kernel" ] && [ -r "$initrd" ] || die "the image has no kernel or initramfs in /boot"
dpkg --root="$work/root" -s migration-agent migration-agent-plugin-postgresql postgresql \
    >/dev/null || die "the packages are not installed in the image"

rm -f "$work/root.raw"
truncate -s "$SIZE" "$work/root.raw"
mkfs.ext4 -q -F -L debian12 -d "$work/root" "$work/root.raw" >>"$out/build.log" 2>&1 \
    || die "mkfs.ext4 -d failed (log: $out/build.log)"
qemu-img convert -f raw -O qcow2 "$work/root.raw" "$out/debian12.qcow2.tmp"
mv "$out/debian12.qcow2.tmp" "$out/debian12.qcow2"
cp "$kernel" "$out/vmlinuz"
cp "$initrd" "$out/initrd.img"
dpkg --root="$work/root" -l | awk '/^ii/ {print $2, $3}' > "$out/packages.txt"
echo "$key" > "$out/image.key"
echo "build-debian-image: built in $(( $(date +%s) - t0 )) s" \
     "($(du -m "$out/debian12.qcow2" | cut -f1) MiB, kernel $(basename "$kernel"), $(wc -l < "$out/packages.txt") packages)"
echo "image: $out"
