#!/usr/bin/env bash
# The main job on an embedded default: build p11bridge, create a SoftHSMv2
# token of its own in a temporary directory, generate keys on it, and run a
# small CA with them through the `openssl` command and pkcs11: URIs: a
# self-signed CA whose key is on the token, a server certificate issued
# with that key, the chain verified by OpenSSL's default provider alone,
# and a TLS 1.3 handshake with the token key.
#   scripts/demo.sh [WORKDIR]     (default: a new temporary directory)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
"$top/scripts/build.sh" "$top/_build"

work=${1:-$(mktemp -d /tmp/p11bridge-demo.XXXXXX)}
softhsm=$(sed -n 's/^SOFTHSM_LIB = //p' "$top/_build/Makefile")
label=p11bridge-demo
pin=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

. "$top/scripts/token-lib.sh"
umask 077
step() { printf '\n== %s\n' "$*"; }

step "token '$label' in $work/tokens"
token_setup "$work" "$label" "$pin" "$softhsm" "$top/_build/.libs/pkcs11.so"
for spec in "rsa:2048 server-rsa 01" "EC:prime256v1 server-ec 02" \
    "EC:prime256v1 ca-key 10"; do
    set -- $spec
    token_keypair "$softhsm" "$label" "$pin" "$1" "$2" "$3"
    echo "generated $1 key pair '$2' (id $3) on the token"
done

step "openssl list -providers"
openssl list -providers

step "openssl storeutl -keys -text 'pkcs11:token=$label' (URIs of every key)"
openssl storeutl -keys -text "pkcs11:token=$label" | grep -E '^[0-9]+:|^URI:|key on'

step "public keys through the provider match pkcs11-tool's export"
for obj in server-rsa server-ec; do
    openssl pkey -in "pkcs11:token=$label;object=$obj;type=private" -pubout \
        -out "$work/$obj.pub.pem"
    pkcs11-tool --module "$softhsm" --token-label "$label" --read-object \
        --type pubkey --label "$obj" -o "$work/$obj.pub.der" >/dev/null 2>&1
    openssl pkey -pubin -inform DER -in "$work/$obj.pub.der" \
        -out "$work/$obj.ref.pem"
    cmp "$work/$obj.pub.pem" "$work/$obj.ref.pem"
    echo "$obj: identical SubjectPublicKeyInfo ($work/$obj.pub.pem)"
done

ca="pkcs11:token=$label;object=ca-key;type=private"
step "self-signed CA with its key on the token: openssl req -x509 -key '$ca'"
openssl req -x509 -new -key "$ca" -subj "/CN=p11bridge demo CA" -days 30 \
    -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -out "$work/ca.pem"
openssl x509 -in "$work/ca.pem" -noout -subject -issuer

step "server certificate for the token's RSA key, issued with the CA key on the token"
openssl req -new -key "pkcs11:token=$label;object=server-rsa;type=private" \
    -subj "/CN=localhost" -out "$work/server.csr"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$ca" \
    -CAcreateserial -days 7 -sha256 -extfile <(printf 'subjectAltName=DNS:localhost\n') \
    -out "$work/server.pem"
openssl x509 -in "$work/server.pem" -noout -subject -issuer

step "the chain, verified by OpenSSL's default provider alone (no token involved)"
OPENSSL_CONF=/dev/null openssl verify -CAfile "$work/ca.pem" "$work/server.pem"

step "a signature by the server key on the token, verified in software"
printf 'hello from the token\n' > "$work/hello.txt"
openssl dgst -sha256 -sign "pkcs11:token=$label;object=server-rsa;type=private" \
    -out "$work/hello.sig" "$work/hello.txt"
OPENSSL_CONF=/dev/null openssl dgst -sha256 -verify "$work/server-rsa.pub.pem" \
    -signature "$work/hello.sig" "$work/hello.txt"

step "a TLS 1.3 handshake: openssl s_server with the token key, s_client verifying the chain"
openssl s_server -accept 0 -naccept 1 -tls1_3 -cert "$work/server.pem" \
    -key "pkcs11:token=$label;object=server-rsa;type=private" \
    -www > "$work/s_server.out" 2>&1 &
server=$!
port=""
for _ in $(seq 100); do   # wait for its ACCEPT line (at most ~10 s)
    port=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' "$work/s_server.out")
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/s_server.out"; echo "s_server did not start"; exit 1; }
OPENSSL_CONF=/dev/null openssl s_client -connect "127.0.0.1:$port" \
    -servername localhost -CAfile "$work/ca.pem" -verify_return_error \
    -brief < /dev/null 2>&1 | grep -E "Protocol|Verification|Peer signature type"
wait "$server" 2>/dev/null || true

step "done: the token, config, certificates and keys are in $work"
