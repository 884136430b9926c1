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
# Run in the plain stage only: valgrind cannot run an ASan build, and
# Debian's curl hangs at start-up with libasan preloaded (no provider
# involved), so it cannot load the ASan-built provider.
make -C _build-asan check -j2 \
    PYTEST_ARGS="${PYTEST_ARGS:--q -rfE} --ignore=$PWD/tests/test_valgrind.py \
 -k 'not test_curl_presents_a_client_certificate_from_the_token'"

echo "== ThreadSanitizer: 16 threads signing"
scripts/tsan.sh

echo "== benchmark smoke run (checks it works; no timing is asserted)"
bench/run --smoke --no-build --build _build > _build/bench-smoke.log 2>&1 ||
    { tail -40 _build/bench-smoke.log; echo "bench smoke: FAILED"; exit 1; }
tail -3 _build/bench-smoke.log

echo "== fuzzing (libFuzzer, bounded)"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"

echo "== all tests passed in $(( $(date +%s) - start )) s"
