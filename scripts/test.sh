#!/usr/bin/env bash
# Set everything up and run every test: the C unit tests and the pytest
# suite against a fresh SoftHSMv2 token, first with the normal build, then
# with the ASan+UBSan build.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/deps.sh

start=$(date +%s)
echo "== build (-Werror) and make check"
scripts/build.sh _build --enable-werror
make -C _build check -j2 PYTEST_ARGS="${PYTEST_ARGS:--q -rfE}"

echo "== sanitizer build (ASan+UBSan) and make check"
scripts/build.sh _build-asan --enable-werror --enable-sanitizers
# valgrind cannot run an ASan build: its tests run in the plain stage.
make -C _build-asan check -j2 \
    PYTEST_ARGS="${PYTEST_ARGS:--q -rfE} --ignore=$PWD/tests/test_valgrind.py"

echo "== ThreadSanitizer: 16 threads signing"
scripts/tsan.sh

echo "== fuzzing (libFuzzer, bounded)"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

echo "== all tests passed in $(( $(date +%s) - start )) s"
