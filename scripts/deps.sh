#!/usr/bin/env bash
# Install the Debian 12 packages p11bridge builds and tests with.
# Does nothing when they are all present; needs root (or sudo) otherwise.
#   deps.sh --tokens   also the tokens of the compatibility matrix
#                      (tests/test_token_matrix.py, scripts/compat.sh)
set -euo pipefail

PACKAGES=(
    build-essential autoconf automake libtool pkg-config
    libssl-dev openssl libp11-kit-dev p11-kit p11-kit-modules
    softhsm2 opensc gnutls-bin
    python3 python3-pytest python3-cryptography python3-openssl
    python3-pykcs11
    clang valgrind
    curl nginx-light apache2 haproxy lighttpd lighttpd-mod-openssl
)

# The real tokens of tests/tokens (SoftHSM and p11-kit are above).
TOKEN_PACKAGES=(
    libnss3 libnss3-tools
    opencryptoki
    libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools swtpm swtpm-tools
    tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon
    pcscd vsmartcard-vpcd libcacard-dev iproute2
)
if [ "${1:-}" = --tokens ]; then
    PACKAGES+=("${TOKEN_PACKAGES[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
