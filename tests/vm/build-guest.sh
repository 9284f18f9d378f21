#!/bin/sh
# build-guest.sh — build the proving-ground guest: a busybox initramfs that
# boots Debian's stock kernel, loads the virtio/ext4 modules, runs qemu-ga and
# (when a .deb is given) migration-agent, then an optional scenario script.
#
# usage: build-guest.sh OUTDIR [DEBFILE|-]
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
[ "$deb" = "-" ] || deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

die() { echo "build-guest: $*" >&2; exit 1; }

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
    echo "kver=$kver"
    sha256sum "$0" "$here/guest-init.sh" "/boot/vmlinuz-$kver" "$busybox" /usr/sbin/qemu-ga
    find "$here/guest-scenarios" -type f -name '*.sh' | sort | xargs -r sha256sum
    [ "$deb" = "-" ] || sha256sum "$deb"
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

mkdir -p "$root"/bin "$root"/sbin "$root"/usr/bin "$root"/usr/sbin "$root"/etc/qemu \
         "$root"/proc "$root"/sys "$root"/dev "$root"/run "$root"/tmp "$root"/data \
         "$root"/var/log "$root"/root "$root"/scenarios "$root"/lib/modules/"$kver"
chmod 1777 "$root/tmp"

# --- busybox ------------------------------------------------------------------
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    case "$applet" in busybox) continue ;; esac
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
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

# --- identity files glib and friends expect -------------------------------------
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo 'guest' > "$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
[ -e "$root/etc/nsswitch.conf" ] || printf 'passwd: files\ngroup: files\nhosts: files\n' > "$root/etc/nsswitch.conf"

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
