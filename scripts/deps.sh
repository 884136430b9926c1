#!/usr/bin/env bash
# Install the Debian packages p11bridge builds and tests with, on Debian 12
# (bookworm), 13 (trixie) or unstable (sid). Does nothing when they are all
# present; needs root (or sudo) otherwise. P11B_STAGES (see test.sh) leaves
# out what no chosen stage needs: clang is for the fuzz stage only.
#   deps.sh --tokens   also the tokens of the compatibility matrix
#                      (tests/test_token_matrix.py, scripts/compat.sh)
set -euo pipefail

PACKAGES=(
    build-essential autoconf automake libtool pkg-config
    libssl-dev openssl libp11-kit-dev p11-kit p11-kit-modules
    softhsm2 opensc gnutls-bin
    python3 python3-pytest python3-cryptography python3-openssl
    python3-pykcs11
    valgrind
    curl apache2 haproxy lighttpd lighttpd-mod-openssl
)
stages=" ${P11B_STAGES:-fuzz} "
[[ ${stages//,/ } != *" fuzz "* ]] || PACKAGES+=(clang)
# Debian 12's nginx-light is the small build; from 13 on it is only a
# transitional package (nginx plus an echo module) and nginx is the one.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
case $codename in
bookworm) PACKAGES+=(nginx-light) ;;
*) PACKAGES+=(nginx) ;;
esac

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
