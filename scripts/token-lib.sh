# Shared by scripts/demo.sh and scripts/tsan.sh (sourced): a SoftHSMv2
# token of their own under a work directory, and an openssl.cnf that
# loads the provider with its PIN from a file.

# token_setup WORK LABEL PIN SOFTHSM_MODULE PROVIDER_SO
# Writes WORK/softhsm2.conf, WORK/token.pin and WORK/openssl.cnf, exports
# SOFTHSM2_CONF and OPENSSL_CONF, and initialises the token LABEL.
token_setup() {
    local work=$1 label=$2 pin=$3 softhsm=$4 provider=$5
    mkdir -p "$work/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$work/tokens" > "$work/softhsm2.conf"
    export SOFTHSM2_CONF="$work/softhsm2.conf"
    (umask 077 && printf '%s' "$pin" > "$work/token.pin")
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
module = $provider
pkcs11-module-path = $softhsm
pkcs11-module-token-pin = file:$work/token.pin
activate = 1
CONF
    export OPENSSL_CONF="$work/openssl.cnf"
    softhsm2-util --init-token --free --label "$label" --pin "$pin" \
        --so-pin "$pin$pin" >/dev/null
}

# token_keypair SOFTHSM_MODULE LABEL PIN KEY_TYPE OBJECT ID
token_keypair() {
    pkcs11-tool --module "$1" --token-label "$2" --login --pin "$3" \
        --keypairgen --key-type "$4" --label "$5" --id "$6" >/dev/null 2>&1
}
