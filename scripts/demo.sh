#!/usr/bin/env bash
# The main job on an embedded default: build p11bridge, create a SoftHSMv2
# token of its own in a temporary directory, generate keys on it, and use
# them through the `openssl` command with pkcs11: URIs.
#   scripts/demo.sh [WORKDIR]     (default: a new temporary directory)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
"$top/scripts/build.sh" "$top/_build"

work=${1:-$(mktemp -d /tmp/p11bridge-demo.XXXXXX)}
mkdir -p "$work/tokens"
softhsm=$(sed -n 's/^SOFTHSM_LIB = //p' "$top/_build/Makefile")
label=p11bridge-demo
pin=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

cat > "$work/softhsm2.conf" <<CONF
directories.tokendir = $work/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF="$work/softhsm2.conf"
umask 077
printf '%s' "$pin" > "$work/token.pin"

cat > "$work/openssl.cnf" <<CONF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect
[default_sect]
activate = 1
[pkcs11_sect]
module = $top/_build/.libs/pkcs11.so
pkcs11-module-path = $softhsm
pkcs11-module-token-pin = file:$work/token.pin
activate = 1
CONF
export OPENSSL_CONF="$work/openssl.cnf"

step() { printf '\n== %s\n' "$*"; }

step "token '$label' in $work/tokens"
softhsm2-util --init-token --free --label "$label" --pin "$pin" \
    --so-pin "$pin$pin" >/dev/null
for spec in "rsa:2048 server-rsa 01" "EC:prime256v1 server-ec 02"; do
    set -- $spec
    pkcs11-tool --module "$softhsm" --token-label "$label" --login \
        --pin "$pin" --keypairgen --key-type "$1" --label "$2" --id "$3" \
        >/dev/null 2>&1
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

step "done: the token, config and keys are in $work"
