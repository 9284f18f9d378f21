#!/bin/sh
# build-deb.sh — build the migration-agent .deb from this source tree.
#
# usage: packaging/build-deb.sh OUTDIR [--check]
#
# Copies the source tree (files git knows about plus untracked, not ignored
# ones; meson build directories excluded) to a temporary directory with
# packaging/debian/ as its debian/, sets the package version from meson's
# project() version (plus +gitN.HASH on a git checkout), runs
# `dpkg-buildpackage -b -us -uc` and moves the .deb (and .buildinfo/.changes)
# to OUTDIR. Unit tests run only with --check (the VM suite never does).
#
# env: MA_DEB_VERSION  full Debian version to use instead (e.g. 1.2.0-1)
#      MA_DEB_MAINTAINER "Name <address>" for Maintainer: and the changelog entry
#                        (a distributor sets its own; the default is a placeholder)
#      DEB_BUILD_OPTIONS  passed through (parallel=N is added if missing)
set -eu

out=${1:?usage: build-deb.sh OUTDIR [--check]}
check=no
[ "${2:-}" = "--check" ] && check=yes

src=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$src/meson.build" ] || { echo "build-deb: no meson.build in $src" >&2; exit 1; }
for tool in dpkg-buildpackage dh meson; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-deb: $tool not found (apt-get install dpkg-dev debhelper meson)" >&2; exit 1; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ma-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/migration-agent"
dst=$tmp/migration-agent

# --- copy the source tree --------------------------------------------------------
builddirs=
for d in "$src"/*/; do
    d=${d%/}
    if [ -d "$d/meson-private" ] || [ -d "$d/meson-info" ]; then
        builddirs="$builddirs ${d##*/}"
    fi
done
list_files() {
    if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$src" ls-files --cached --others --exclude-standard
    else
        (cd "$src" && find . -path ./.git -prune -o -type f -print | sed 's|^\./||')
    fi
}
list_files | while read -r f; do
    top=${f%%/*}
    case " $builddirs " in *" $top "*) continue ;; esac
    case "$top" in .git|debian) continue ;; esac
    [ -f "$src/$f" ] || [ -L "$src/$f" ] || continue   # deleted but still tracked
    printf '%s\n' "$f"
done | (cd "$src" && cpio -pdm --quiet "$dst")
cp -a "$src/packaging/debian" "$dst/debian"

# --- version ------------------------------------------------------------------------
if [ -n "${MA_DEB_VERSION:-}" ]; then
    version=$MA_DEB_VERSION
else
    # project()'s version: keyword (not meson_version:)
    upstream=$(sed -n "/project(/,/^)/p" "$src/meson.build" \
        | sed -n "s/^\(.*[^_[:alnum:]]\)\{0,1\}version[[:space:]]*:[[:space:]]*'\([^']*\)'.*/\2/p" \
        | head -n1)
    [ -n "$upstream" ] || upstream=0.0.0
    if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
        n=$(git -C "$src" rev-list --count HEAD)
        h=$(git -C "$src" rev-parse --short=8 HEAD)
        dirty=
        [ -z "$(git -C "$src" status --porcelain 2>/dev/null)" ] || dirty=.dirty
        version="$upstream+git$n.$h$dirty-1"
    else
        version="$upstream-1"
    fi
fi
if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct)}
else
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}
fi
export SOURCE_DATE_EPOCH
maintainer=${MA_DEB_MAINTAINER:-$(sed -n 's/^Maintainer: *//p' "$src/packaging/debian/control")}
sed -i "s|^Maintainer: .*|Maintainer: $maintainer|" "$dst/debian/control"
{
    echo "migration-agent ($version) unstable; urgency=medium"
    echo
    echo "  * Built from the source tree by packaging/build-deb.sh."
    echo
    echo " -- $maintainer  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
    echo
    cat "$src/packaging/debian/changelog"
} > "$dst/debian/changelog"

# --- build ------------------------------------------------------------------------
opts=${DEB_BUILD_OPTIONS:-}
case " $opts " in *" parallel="*) ;; *) opts="$opts parallel=$(nproc 2>/dev/null || echo 1)" ;; esac
[ "$check" = yes ] || opts="$opts nocheck"
export DEB_BUILD_OPTIONS="${opts# }"
echo "build-deb: building migration-agent $version (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS)"
(cd "$dst" && dpkg-buildpackage -b -us -uc)

found=no
for f in "$tmp"/*.deb "$tmp"/*.buildinfo "$tmp"/*.changes; do
    [ -e "$f" ] || continue
    mv "$f" "$out/"
    case "$f" in *.deb) found=yes; echo "build-deb: $out/${f##*/}" ;; esac
done
[ "$found" = yes ] || { echo "build-deb: no .deb produced" >&2; exit 1; }
