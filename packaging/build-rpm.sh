#!/bin/sh
# build-rpm.sh — build the migration-agent RPMs from this source tree.
#
# usage: packaging/build-rpm.sh OUTDIR [--check]
#
# Makes migration-agent-VERSION.tar.xz from the source tree (the same files
# build-deb.sh takes) and runs `rpmbuild -bb packaging/migration-agent.spec`
# in a private top dir, then moves the RPMs to OUTDIR. On an RPM-based system
# the spec's build requirements are checked as usual. Elsewhere (to check the
# spec from a Debian machine) it passes --nodeps and supplies the few
# distribution macros the spec uses (%meson*, %systemd_*, %udev_rules_update,
# %tmpfiles_create) when rpm does not define them. The spec's %check (unit
# tests, never the VM suite) runs only with --check.
set -eu

out=${1:?usage: build-rpm.sh OUTDIR [--check]}
check=no
[ "${2:-}" = "--check" ] && check=yes
src=$(cd "$(dirname "$0")/.." && pwd)
command -v rpmbuild >/dev/null 2>&1 || { echo "build-rpm: rpmbuild not found" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n "/project(/,/^)/p" "$src/meson.build" \
    | sed -n "s/^\(.*[^_[:alnum:]]\)\{0,1\}version[[:space:]]*:[[:space:]]*'\([^']*\)'.*/\2/p" \
    | head -n1)
[ -n "$version" ] || { echo "build-rpm: no version in meson.build" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ma-rpm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/SOURCES" "$tmp/BUILD" "$tmp/RPMS" "$tmp/SPECS" "$tmp/SRPMS" "$tmp/src/migration-agent-$version"

# --- the tarball: same file selection as build-deb.sh ------------------------------
builddirs=
for d in "$src"/*/; do
    d=${d%/}
    if [ -d "$d/meson-private" ] || [ -d "$d/meson-info" ]; then builddirs="$builddirs ${d##*/}"; fi
done
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$src" ls-files --cached --others --exclude-standard
else
    (cd "$src" && find . -path ./.git -prune -o -type f -print | sed 's|^\./||')
fi | while read -r f; do
    top=${f%%/*}
    case " $builddirs " in *" $top "*) continue ;; esac
    case "$top" in .git|debian) continue ;; esac
    [ -f "$src/$f" ] || [ -L "$src/$f" ] || continue
    printf '%s\n' "$f"
done | (cd "$src" && cpio -pdm --quiet "$tmp/src/migration-agent-$version")
tar -C "$tmp/src" -cJf "$tmp/SOURCES/migration-agent-$version.tar.xz" "migration-agent-$version"
sed "s/^Version:.*/Version:        $version/" "$src/packaging/migration-agent.spec" \
    > "$tmp/SPECS/migration-agent.spec"

# --- macros a non-RPM host lacks ------------------------------------------------------
set -- --define "_topdir $tmp"
[ "$check" = yes ] || set -- "$@" --nocheck
if [ "$(rpm --eval '%{?meson:yes}')" != yes ]; then
    b=%{_vpath_builddir}
    set -- "$@" --nodeps \
        --define "_vpath_srcdir ." --define "_vpath_builddir redhat-linux-build" \
        --define "meson CFLAGS=\"%{optflags}\" LDFLAGS=\"%{?build_ldflags}\" meson setup --buildtype=plain --prefix=%{_prefix} --bindir=%{_bindir} --sbindir=%{_sbindir} --libdir=%{_libdir} --libexecdir=%{_libexecdir} --sysconfdir=%{_sysconfdir} --localstatedir=%{_localstatedir} --datadir=%{_datadir} --wrap-mode=nodownload %{_vpath_srcdir} $b" \
        --define "meson_build meson compile -C $b" \
        --define "meson_install DESTDIR=%{buildroot} meson install -C $b --no-rebuild" \
        --define "meson_test meson test -C $b --print-errorlogs"
fi
for m in systemd_post systemd_preun systemd_postun_with_restart udev_rules_update tmpfiles_create; do
    [ "$(rpm --eval "%{?$m:yes}")" = yes ] || set -- "$@" --define "$m(-) :"
done
[ "$(rpm --eval '%{?systemd_requires:yes}')" = yes ] || set -- "$@" --define "systemd_requires %{nil}"

rpmbuild "$@" -bb "$tmp/SPECS/migration-agent.spec"
find "$tmp/RPMS" -name '*.rpm' -exec mv {} "$out/" \;
ls "$out"/*.rpm
