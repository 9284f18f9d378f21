#!/bin/sh
# build-guest.sh — build the proving-ground guest: a busybox initramfs that
# boots Debian's stock kernel, loads the virtio/ext4 modules, runs qemu-ga and
# (when a .deb is given) migration-agent, then an optional scenario script.
#
# usage: build-guest.sh OUTDIR [DEBFILE|-] [busybox|systemd]
#   flavour busybox (default): /init starts qemu-ga and the agent itself;
#   flavour systemd: /init hands over to the host's systemd (PID 1) with
#     udevd and journald, and udev starts qemu-ga and migration-agent through
#     their own rules and units: the packaging is what is under test.
#   OUTDIR/vmlinuz            the kernel to boot (copied from /boot)
#   OUTDIR/initramfs.cpio.gz  the guest root
#   OUTDIR/guest.key          cache key; nothing is rebuilt while it matches
#
# env: MA_VM_KVER  kernel version to use (default: newest in /lib/modules
#                  that has a /boot/vmlinuz-KVER)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-guest.sh OUTDIR [DEBFILE|-]}
deb=${2:--}
flavour=${3:-busybox}
case "$flavour" in busybox|systemd) ;; *) die_early=1 ;; esac
[ "$deb" = "-" ] || deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

die() { echo "build-guest: $*" >&2; exit 1; }
[ -z "${die_early:-}" ] || die "unknown flavour '$flavour' (busybox or systemd)"

if [ -n "${MA_VM_KVER:-}" ]; then
    kver=$MA_VM_KVER
else
    kver=
    for k in $(ls /lib/modules 2>/dev/null | sort -V); do
        [ -r "/boot/vmlinuz-$k" ] && kver=$k
    done
fi
[ -n "$kver" ] || die "no kernel: install linux-image-amd64 (need /boot/vmlinuz-KVER and /lib/modules/KVER)"
[ -r "/boot/vmlinuz-$kver" ] || die "/boot/vmlinuz-$kver is not readable"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox not found: install busybox-static"
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked: install busybox-static"
[ -x /usr/sbin/qemu-ga ] || die "/usr/sbin/qemu-ga not found: install qemu-guest-agent"

modules="virtio_pci virtio_console virtio_blk virtio_net ext4"

# --- cache key: everything that goes into the image -------------------------
key=$( {
    echo "kver=$kver flavour=$flavour"
    sha256sum "$0" "$here/guest-init.sh" "/boot/vmlinuz-$kver" "$busybox" /usr/sbin/qemu-ga
    find "$here/guest-scenarios" "$here/guest-tools" -type f | sort | xargs -r sha256sum
    [ "$deb" = "-" ] || sha256sum "$deb"
    if [ "$flavour" = systemd ]; then
        sha256sum /lib/systemd/systemd /bin/udevadm /bin/systemctl
        find "$here/guest-systemd" -type f | sort | xargs -r sha256sum
    fi
    for m in $modules; do modprobe --show-depends -S "$kver" "$m"; done
} | sha256sum | cut -d' ' -f1 )

mkdir -p "$out"
if [ -f "$out/guest.key" ] && [ "$(cat "$out/guest.key")" = "$key" ] \
   && [ -f "$out/initramfs.cpio.gz" ] && [ -f "$out/vmlinuz" ]; then
    echo "build-guest: $out is up to date"
    exit 0
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/ma-guest.XXXXXX")
trap 'rm -rf "$root"' EXIT

# merged /usr, as on Debian 12: /bin, /sbin, /lib, /lib64 point into /usr
mkdir -p "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib "$root"/usr/lib64 "$root"/etc/qemu \
         "$root"/proc "$root"/sys "$root"/dev "$root"/run "$root"/tmp "$root"/data \
         "$root"/var/log "$root"/var/lib "$root"/root "$root"/scenarios
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
ln -s ../run "$root/var/run"
mkdir -p "$root/lib/modules/$kver"
chmod 1777 "$root/tmp"

# --- busybox ------------------------------------------------------------------
cp "$busybox" "$root/usr/bin/busybox"
for applet in $("$busybox" --list); do
    case "$applet" in busybox) continue ;; esac
    [ -e "$root/usr/bin/$applet" ] || ln -s busybox "$root/usr/bin/$applet"
done

# --- shared libraries of an ELF, resolved on the host --------------------------
copy_libs() {
    # $1: ELF file; copies its dependencies (and the dynamic loader) into $root
    ldd "$1" 2>/dev/null | while read -r a b c d; do
        case "$a" in
            linux-vdso*|linux-gate*) continue ;;
        esac
        lib=
        if [ "$b" = "=>" ]; then lib=$c; else lib=$a; fi
        case "$lib" in /*) ;; *) continue ;; esac
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    if ldd "$1" 2>&1 | grep -q 'not found'; then
        ldd "$1" | grep 'not found' >&2
        die "missing shared libraries for $1"
    fi
}

is_elf() { [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = "177ELF" ]; }

# --- kernel modules, in dependency order ---------------------------------------
: > "$root/etc/modules.order"
for m in $modules; do
    modprobe --show-depends -S "$kver" "$m" | while read -r verb path rest; do
        [ "$verb" = "insmod" ] || continue
        if ! grep -qx "$path" "$root/etc/modules.order"; then
            mkdir -p "$root$(dirname "$path")"
            case "$path" in
                *.ko.xz)  xz -dc "$path" > "$root${path%.xz}"; path=${path%.xz} ;;
                *.ko.zst) zstd -qdc "$path" > "$root${path%.zst}"; path=${path%.zst} ;;
                *.ko.gz)  gzip -dc "$path" > "$root${path%.gz}"; path=${path%.gz} ;;
                *)        cp "$path" "$root$path" ;;
            esac
            grep -qx "$path" "$root/etc/modules.order" || echo "$path" >> "$root/etc/modules.order"
        fi
    done
done

# --- qemu-ga --------------------------------------------------------------------
cp /usr/sbin/qemu-ga "$root/usr/sbin/qemu-ga"
copy_libs /usr/sbin/qemu-ga

# --- the agent, from its .deb ---------------------------------------------------
if [ "$deb" != "-" ]; then
    [ -r "$deb" ] || die "$deb not readable"
    dpkg-deb -x "$deb" "$root"
    find "$root/usr" "$root/etc" -type f 2>/dev/null | while read -r f; do
        if [ -x "$f" ] && is_elf "$f"; then copy_libs "$f"; fi
    done
    [ -x "$root/usr/sbin/migration-agent" ] || die "$deb has no /usr/sbin/migration-agent"
fi

# --- systemd flavour: PID 1, udevd, journald from the host ------------------------
if [ "$flavour" = systemd ]; then
    for f in /lib/systemd/systemd /lib/systemd/systemd-journald /bin/udevadm \
             /bin/systemctl /bin/journalctl /bin/systemd-tmpfiles; do
        [ -x "$f" ] || die "$f not found: install systemd (and udev)"
        rm -f "$root$f"
        cp "$f" "$root$f"
        copy_libs "$f"
    done
    ln -sf /bin/udevadm "$root/lib/systemd/systemd-udevd"
    mkdir -p "$root/lib/systemd/system" "$root/lib/udev/rules.d" "$root/etc/systemd/system" \
             "$root/etc/udev"
    # every target and slice (dependency anchors), but only the services we run
    cp /lib/systemd/system/*.target /lib/systemd/system/*.slice "$root/lib/systemd/system/"
    for u in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
             systemd-udev-trigger.service systemd-journald.service systemd-journald.socket \
             systemd-journald-dev-log.socket systemd-tmpfiles-setup.service; do
        cp "/lib/systemd/system/$u" "$root/lib/systemd/system/"
    done
    # qemu-ga, started by its own udev rule and unit, as in a real image
    if [ -f /lib/systemd/system/qemu-guest-agent.service ]; then
        cp /lib/systemd/system/qemu-guest-agent.service "$root/lib/systemd/system/"
        cp /lib/udev/rules.d/60-qemu-guest-agent.rules "$root/lib/udev/rules.d/"
    fi
    for r in 50-udev-default.rules 99-systemd.rules; do
        cp "/lib/udev/rules.d/$r" "$root/lib/udev/rules.d/"
    done
    # the test's own units (default target, scenario runner)
    cp "$here"/guest-systemd/* "$root/etc/systemd/system/"
    ln -sf ma-guest.target "$root/etc/systemd/system/default.target"
    : > "$root/etc/machine-id"
    [ -r /usr/lib/os-release ] && cp /usr/lib/os-release "$root/usr/lib/os-release"
    echo systemd > "$root/etc/ma-flavour"
else
    echo busybox > "$root/etc/ma-flavour"
fi

# --- identity files glib and friends expect -------------------------------------
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo 'guest' > "$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
[ -e "$root/etc/nsswitch.conf" ] || printf 'passwd: files\ngroup: files\nhosts: files\n' > "$root/etc/nsswitch.conf"

# --- guest helpers (busybox lacks them): tests/vm/guest-tools/*.c, static ----------
mkdir -p "$root/usr/local/bin"
for c in "$here"/guest-tools/*.c; do
    [ -e "$c" ] || continue
    cc=$(command -v cc || command -v gcc || true)
    [ -n "$cc" ] || die "no C compiler for $c (install build-essential)"
    "$cc" -static -O2 -o "$root/usr/local/bin/$(basename "$c" .c)" "$c" \
        || die "cannot build $c statically (needs libc6-dev's libc.a)"
done

# --- /init and scenarios --------------------------------------------------------
cp "$here/guest-init.sh" "$root/init"
chmod 755 "$root/init"
for s in "$here"/guest-scenarios/*.sh; do
    [ -e "$s" ] || continue
    cp "$s" "$root/scenarios/"
    chmod 755 "$root/scenarios/$(basename "$s")"
done

# --- pack -----------------------------------------------------------------------
( cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0 ) \
    | gzip -1 > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
cp "/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "$key" > "$out/guest.key"
echo "build-guest: built $out/initramfs.cpio.gz ($(du -k "$out/initramfs.cpio.gz" | cut -f1) KiB, kernel $kver, agent: $([ "$deb" = "-" ] && echo none || basename "$deb"))"
