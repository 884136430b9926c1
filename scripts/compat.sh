#!/usr/bin/env bash
# Run the token compatibility matrix and write docs/COMPATIBILITY.md.
#   scripts/compat.sh [BUILD_DIR]      (default _build, made by scripts/build.sh)
# Needs root (private mount/IPC namespaces) and the token packages:
#   scripts/deps.sh --tokens
# Exits non-zero when a check fails; the document is written either way.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/_build}" && pwd)
make -C "$build" -j2 >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
soft=$(sed -n 's/^SOFTHSM_LIB = //p' "$build/Makefile")
start=$(date +%s.%N)
rc=0
P11BRIDGE_PROVIDER="$build/.libs/pkcs11.so" SOFTHSM_LIB="$soft" \
P11BRIDGE_MATRIX_REPORT="$out/rigs.json" \
    /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider \
    --junitxml="$out/matrix.xml" "$top/tests/test_token_matrix.py" || rc=$?
end=$(date +%s.%N)
/usr/bin/python3 "$top/scripts/compat_table.py" "$out/matrix.xml" "$out/rigs.json" \
    "$(echo "$end - $start" | bc)" > "$top/docs/COMPATIBILITY.md"
echo "compat.sh: wrote docs/COMPATIBILITY.md ($(echo "$end - $start" | bc) s)"
exit $rc
