#!/usr/bin/env bash
# Configure and build p11bridge out of tree: build.sh DIR [configure args]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
shift
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] ||
    autoreconf -fi >/dev/null
mkdir -p "$dir"
cd "$dir"
[ -f Makefile ] && [ config.status -nt "$top/configure" ] ||
    "$top/configure" -q "$@"
make -j2 >/dev/null
