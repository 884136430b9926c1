#!/usr/bin/env bash
# Configure and build p11bridge out of tree: build.sh DIR [configure args]
#
# - Runs autoreconf when configure or Makefile.in is missing or older than
#   its source.
# - Configures DIR when it has no Makefile, when configure is newer than
#   its last run there, or when the configure args differ from those of
#   that run (kept in DIR/.build-args; a changed set cleans DIR first, so
#   that every object is compiled with the new flags); otherwise it only
#   runs make.
# - A source tree configured in place (README's Quick start: ./configure &&
#   make in the checkout) gets `make distclean` there first, and says so:
#   automake builds in the source tree or out of it, never both (configure
#   refuses, and make would pick up the in-tree objects).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
shift
cd "$top"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ "$dir" != "$top" ] && [ -f config.status ]; then
    echo "build.sh: $top was configured in place (./configure there);" \
        "running 'make distclean' in it to build out of tree in $dir" >&2
    make -s distclean >/dev/null 2>&1 || {
        echo "build.sh: 'make distclean' in $top failed: remove its build" \
            "files by hand (config.status, Makefile, *.o, *.lo, .libs)" >&2
        exit 1
    }
fi
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] ||
    autoreconf -fi >/dev/null
cd "$dir"
args=$(printf '%q ' "$@")
if ! [ -f Makefile ] || ! [ config.status -nt "$top/configure" ] ||
    [ "$(cat .build-args 2>/dev/null)" != "$args" ]; then
    if [ -f Makefile ]; then
        echo "build.sh: configuring $dir again (configure or its args" \
            "changed; now: $args)" >&2
        [ "$(cat .build-args 2>/dev/null)" = "$args" ] || make -s clean >/dev/null 2>&1 || true
    fi
    rm -f .build-args
    "$top/configure" -q "$@"
    printf '%s\n' "$args" > .build-args
fi
make -j2 >/dev/null
