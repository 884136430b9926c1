#!/usr/bin/env bash
# Set everything up and run every test: the C unit tests and the pytest
# suite against a fresh SoftHSMv2 token, first with the normal build, then
# with the ASan+UBSan build.
#
# P11B_STAGES picks the stages (default: all of them, in this order):
#   plain  -Werror build, C unit tests and pytest
#   asan   the same on the ASan+UBSan build
#   tsan   ThreadSanitizer stress run
#   bench  benchmark smoke run (needs the plain build)
#   fuzz   libFuzzer targets
# e.g. P11B_STAGES=plain scripts/test.sh (what scripts/distro-test.sh runs).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
stages=" ${P11B_STAGES:-plain asan tsan bench fuzz} "
stages=${stages//,/ }
for s in $stages; do
    case $s in
    plain | asan | tsan | bench | fuzz) ;;
    *) echo "test.sh: unknown stage '$s' in P11B_STAGES" >&2; exit 2 ;;
    esac
done
want() { [[ $stages == *" $1 "* ]]; }

# The tokens of the compatibility matrix too: tests/test_token_matrix.py
# runs on every token it finds (and says which it could not set up).
P11B_STAGES=$stages scripts/deps.sh --tokens

start=$(date +%s)
if want plain || want bench; then
    echo "== build (-Werror)"
    scripts/build.sh _build --enable-werror
fi
if want plain; then
    echo "== make check (C unit tests and pytest)"
    make -C _build check -j2 PYTEST_ARGS="${PYTEST_ARGS:--q -rfEs}"
fi

if want asan; then
    echo "== sanitizer build (ASan+UBSan) and make check"
    scripts/build.sh _build-asan --enable-werror --enable-sanitizers
    # Run in the plain stage only: valgrind cannot run an ASan build, and
    # Debian's curl hangs at start-up with libasan preloaded (no provider
    # involved), so it cannot load the ASan-built provider.
    make -C _build-asan check -j2 \
        PYTEST_ARGS="${PYTEST_ARGS:--q -rfE} --ignore=$PWD/tests/test_valgrind.py \
 -k 'not test_curl_presents_a_client_certificate_from_the_token'"
fi

if want tsan; then
    echo "== ThreadSanitizer: 16 threads signing"
    scripts/tsan.sh
fi

if want bench; then
    echo "== benchmark smoke run (checks it works; no timing is asserted)"
    bench/run --smoke --no-build --build _build > _build/bench-smoke.log 2>&1 ||
        { tail -40 _build/bench-smoke.log; echo "bench smoke: FAILED"; exit 1; }
    tail -3 _build/bench-smoke.log
fi

if want fuzz; then
    echo "== fuzzing (libFuzzer, bounded)"
    scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi

echo "== all tests passed ($(echo $stages)) in $(( $(date +%s) - start )) s"
