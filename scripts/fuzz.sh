#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan+UBSan) and run each one for a
# bounded time over its seed corpus. A crash, leak or sanitizer report
# fails the run.   scripts/fuzz.sh [SECONDS per target, default 30]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
out=$top/_build-fuzz
mkdir -p "$out"
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
inc="-I$top/src -I$top/_build $(pkg-config --cflags p11-kit-1)"

declare -A sources=(
    [fuzz_uri]="tests/fuzz/fuzz_uri.c src/pkcs11/uri.c src/pkcs11/uri_parse.c src/pkcs11/uri_info.c"
    [fuzz_uri_pem]="tests/fuzz/fuzz_uri_pem.c src/provider/uri_pem.c"
    [fuzz_ecconv]="tests/fuzz/fuzz_ecconv.c src/provider/ecconv.c"
)
declare -A corpora=(
    [fuzz_uri]=tests/fuzz/corpus_uri
    [fuzz_uri_pem]=tests/fuzz/corpus_uri_pem
    [fuzz_ecconv]=tests/fuzz/corpus_ecconv
)

for t in "${!sources[@]}"; do
    srcs=()
    for s in ${sources[$t]}; do srcs+=("$top/$s"); done
    # shellcheck disable=SC2086
    clang $cflags $inc "${srcs[@]}" -lcrypto -o "$out/$t"
    rm -rf "$out/$t.corpus"
    cp -r "$top/${corpora[$t]}" "$out/$t.corpus"
    echo "== $t: ${secs}s"
    "$out/$t" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$out/$t-" "$out/$t.corpus" 2>"$out/$t.log" ||
        { tail -50 "$out/$t.log"; echo "$t: FAILED"; exit 1; }
    grep -E "stat::number_of_executed_units" "$out/$t.log" || true
done
