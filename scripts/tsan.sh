#!/usr/bin/env bash
# ThreadSanitizer run: the provider and tests/tools/p11b-stress built with
# -fsanitize=thread; 16 threads load and sign with token keys (and forked
# children do too). Any ThreadSanitizer report fails the run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
scripts=$top/scripts
"$scripts/build.sh" "$top/_build-tsan" CFLAGS="-g -O1 -fsanitize=thread" \
    LDFLAGS="-fsanitize=thread"
make -C "$top/_build-tsan" tests/tools/p11b-stress >/dev/null

work=$(mktemp -d /tmp/p11b-tsan.XXXXXX)
trap 'rm -rf "$work"' EXIT
softhsm=$(sed -n 's/^SOFTHSM_LIB = //p' "$top/_build-tsan/Makefile")
pin=tsan-$$-pin
. "$scripts/token-lib.sh"
token_setup "$work" tsan "$pin" "$softhsm" "$top/_build-tsan/.libs/pkcs11.so"
token_keypair "$softhsm" tsan "$pin" rsa:2048 rsa 01
token_keypair "$softhsm" tsan "$pin" EC:prime256v1 ec 02
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 report_signal_unsafe=0"
for extra in "" "--forks 2 --fork-after-load"; do
    # shellcheck disable=SC2086
    "$top/_build-tsan/tests/tools/p11b-stress" --sign --threads 16 \
        --iterations 20 --uri "pkcs11:token=tsan;object=rsa;type=private" \
        --uri "pkcs11:token=tsan;object=ec;type=private" $extra \
        2>"$work/tsan.err" || { cat "$work/tsan.err"; echo "tsan: FAILED"; exit 1; }
    if grep -q "ThreadSanitizer" "$work/tsan.err"; then
        cat "$work/tsan.err"
        echo "tsan: FAILED"
        exit 1
    fi
done
echo "tsan: 16 threads signing (and forked children): no report"
