#!/usr/bin/env bash
# Run the plain test suite (build with -Werror, C unit tests, pytest) in a
# fresh Debian root, with that release's OpenSSL, Python and servers:
#
#   scripts/distro-test.sh [--prepare] bookworm|trixie|sid [ROOT_DIR]
#
# Needs root and the Debian mirror (P11B_MIRROR, default
# http://deb.debian.org/debian), nothing else: debootstrap, unshare and ip
# are installed with apt-get when missing. Without ROOT_DIR the root is made
# in a temporary directory and removed at the end. With ROOT_DIR an existing
# root there is reused (packages already installed are not fetched again)
# and kept. --prepare only makes the root and installs the packages (for CI,
# which prepares the roots while the host build runs); ROOT_DIR is required
# then.
#
# The whole run happens in a private mount namespace, so the mounts the
# chroot needs (/proc, /sys, /dev, /dev/pts, /dev/shm, a tmpfs /tmp) vanish
# with it even if the script is killed; they are also unmounted on exit.
# The tests run in a network namespace of their own (loopback only), so
# several releases can be tested at once without port clashes.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
self=$top/scripts/distro-test.sh
mirror=${P11B_MIRROR:-http://deb.debian.org/debian}

usage() {
    echo "usage: $0 [--prepare] bookworm|trixie|sid [ROOT_DIR]" >&2
    exit 2
}
prepare_only=0
if [ "${1:-}" = --prepare ]; then
    prepare_only=1
    shift
fi
[ $# -ge 1 ] && [ $# -le 2 ] || usage
release=$1
root=${2:-}
case $release in bookworm | trixie | sid) ;; *) usage ;; esac
[ "$(id -u)" -eq 0 ] || { echo "distro-test.sh: needs root" >&2; exit 2; }
[ $prepare_only -eq 0 ] || [ -n "$root" ] || usage

say() { echo "distro-test[$release]: $*"; }

inner() {
    local t0 t1 t2 t3 rc=0
    local made="reused"
    t0=$(date +%s)
    if [ ! -x "$root/usr/bin/apt-get" ]; then
        made="made"
        say "debootstrap --variant=minbase $release $root $mirror"
        debootstrap --variant=minbase "$release" "$root" "$mirror" \
            > "$root.debootstrap.log" 2>&1 ||
            { tail -30 "$root.debootstrap.log"; say "debootstrap FAILED"; return 1; }
        rm -f "$root.debootstrap.log"
    fi
    # sid on the mirror is a snapshot whose Release file has expired.
    if [ "$release" = sid ]; then
        echo 'Acquire::Check-Valid-Until "false";' \
            > "$root/etc/apt/apt.conf.d/99p11b-no-valid-until"
    fi
    # Packages must not start their services (apache2, nginx...) in the root.
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    # A throw-away root: dpkg need not fsync every file it unpacks.
    echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/p11b-unsafe-io"
    [ -L "$root/etc/resolv.conf" ] || cp /etc/resolv.conf "$root/etc/resolv.conf"

    # The root bound onto itself: inside the chroot "/" is then a mount
    # point, which `unshare --mount` (the token matrix's namespaces) needs.
    mountpoint -q "$root" || mount --bind "$root" "$root"
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --bind /dev "$root/dev"
    mount --bind /dev/pts "$root/dev/pts"
    mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
    mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"

    # The checkout as it is (tracked and untracked files, not ignored ones:
    # no _build directories), or the tree itself outside git.
    local dest=$root/root/p11bridge
    rm -rf "$dest"
    mkdir -p "$dest"
    if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$top" ls-files -z --cached --others --exclude-standard |
            (cd "$top" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) |
            tar -xf - -C "$dest"
    else
        tar -C "$top" --exclude='./_build*' -cf - . | tar -xf - -C "$dest"
    fi

    local path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    local envs=(env -i PATH=$path HOME=/root LANG=C.UTF-8 TERM=dumb
                DEBIAN_FRONTEND=noninteractive P11B_STAGES=plain)
    [ -z "${PYTEST_ARGS:-}" ] || envs+=("PYTEST_ARGS=$PYTEST_ARGS")
    t1=$(date +%s)
    say "installing packages (scripts/deps.sh)"
    chroot "$root" "${envs[@]}" /root/p11bridge/scripts/deps.sh --tokens || {
        say "package installation FAILED"
        return 1
    }
    t2=$(date +%s)
    say "root ready: $made in $((t1 - t0)) s, packages $((t2 - t1)) s"
    say "$(chroot "$root" openssl version), $(chroot "$root" python3 --version)"
    [ $prepare_only -eq 0 ] || return 0

    say "P11B_STAGES=plain scripts/test.sh in the root"
    unshare --net sh -c 'ip link set lo up && exec "$@"' sh \
        chroot "$root" "${envs[@]}" /bin/bash -c 'cd /root/p11bridge && scripts/test.sh' ||
        rc=$?
    t3=$(date +%s)
    say "tests $((t3 - t2)) s; total $((t3 - t0)) s; exit status $rc"
    return $rc
}

unmount_all() {
    # Deepest first; everything under the root we mounted.
    local m
    for m in tmp dev/shm dev/pts dev sys proc ""; do
        ! mountpoint -q "$root/$m" || umount -l "$root/$m" || true
    done
}

mounts_under() {
    awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo
}

if [ "${P11B_DISTRO_INNER:-}" = 1 ]; then
    trap unmount_all EXIT
    inner
    exit
fi

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi

keep=1
if [ -z "$root" ]; then
    root=$(mktemp -d "${TMPDIR:-/var/tmp}/p11b-$release.XXXXXX")
    keep=0
fi
mkdir -p "$root"
root=$(cd "$root" && pwd -P)
cleanup() {
    [ $keep -eq 0 ] || return 0
    if [ -n "$(mounts_under "$root")" ]; then
        say "mounts left under $root, not removing it:"
        mounts_under "$root"
        return 1
    fi
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT
prep_arg=()
[ $prepare_only -eq 0 ] || prep_arg=(--prepare)
P11B_DISTRO_INNER=1 unshare --mount --propagation private \
    "$self" "${prep_arg[@]}" "$release" "$root"
