/*
 * The algorithm tables. Registered at provider init (libssl caches its
 * lists when an SSL_CTX is made); the module itself is loaded lazily.
 */
#include "config.h"

#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>

#include "provider/provider.h"

#define P11B_NAMES_RSA "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define P11B_NAMES_RSA_PSS "RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10"
#define P11B_NAMES_EC "EC:id-ecPublicKey:1.2.840.10045.2.1"
#define P11B_NAMES_ED25519 "ED25519:1.3.101.112"
#define P11B_NAMES_ED448 "ED448:1.3.101.113"
#define P11B_TEXT_PROPS P11B_PROPS ",output=text"
#define P11B_URI_PROPS P11B_PROPS ",output=pem,structure=PrivateKeyInfo"
#define P11B_PEM_IN_PROPS P11B_PROPS ",input=pem"
#define P11B_DER_IN_PROPS P11B_PROPS ",input=der"

extern const OSSL_DISPATCH p11b_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_rsapss_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_ec_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_ed25519_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_ed448_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_eddsa_signature_functions[];
extern const OSSL_DISPATCH p11b_rsa_signature_functions[];
extern const OSSL_DISPATCH p11b_ecdsa_signature_functions[];
#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
extern const OSSL_DISPATCH p11b_rsa_sha224_signature_functions[];
extern const OSSL_DISPATCH p11b_rsa_sha256_signature_functions[];
extern const OSSL_DISPATCH p11b_rsa_sha384_signature_functions[];
extern const OSSL_DISPATCH p11b_rsa_sha512_signature_functions[];
extern const OSSL_DISPATCH p11b_ecdsa_sha224_signature_functions[];
extern const OSSL_DISPATCH p11b_ecdsa_sha256_signature_functions[];
extern const OSSL_DISPATCH p11b_ecdsa_sha384_signature_functions[];
extern const OSSL_DISPATCH p11b_ecdsa_sha512_signature_functions[];
#endif
extern const OSSL_DISPATCH p11b_rsa_asym_cipher_functions[];
extern const OSSL_DISPATCH p11b_ecdh_keyexch_functions[];
extern const OSSL_DISPATCH p11b_text_encoder_functions[];
extern const OSSL_DISPATCH p11b_uri_encoder_functions[];
extern const OSSL_DISPATCH p11b_uri_pem_decoder_functions[];
extern const OSSL_DISPATCH p11b_rsa_uri_decoder_functions[];
extern const OSSL_DISPATCH p11b_rsapss_uri_decoder_functions[];
extern const OSSL_DISPATCH p11b_ec_uri_decoder_functions[];
extern const OSSL_DISPATCH p11b_ed25519_uri_decoder_functions[];
extern const OSSL_DISPATCH p11b_ed448_uri_decoder_functions[];
extern const OSSL_DISPATCH p11b_pkcs11_store_functions[];

static const OSSL_ALGORITHM keymgmt_algs[] = {
    { P11B_NAMES_RSA, P11B_PROPS, p11b_rsa_keymgmt_functions,
      "RSA key on a PKCS#11 token" },
    { P11B_NAMES_RSA_PSS, P11B_PROPS, p11b_rsapss_keymgmt_functions,
      "RSA-PSS key on a PKCS#11 token" },
    { P11B_NAMES_EC, P11B_PROPS, p11b_ec_keymgmt_functions,
      "EC key on a PKCS#11 token" },
    { P11B_NAMES_ED25519, P11B_PROPS, p11b_ed25519_keymgmt_functions,
      "Ed25519 key on a PKCS#11 token" },
    { P11B_NAMES_ED448, P11B_PROPS, p11b_ed448_keymgmt_functions,
      "Ed448 key on a PKCS#11 token" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM signature_algs[] = {
    { P11B_NAMES_RSA, P11B_PROPS, p11b_rsa_signature_functions,
      "RSA signatures with a PKCS#11 token key" },
    { "ECDSA", P11B_PROPS, p11b_ecdsa_signature_functions,
      "ECDSA signatures with a PKCS#11 token key" },
    { P11B_NAMES_ED25519, P11B_PROPS, p11b_eddsa_signature_functions,
      "Ed25519 signatures with a PKCS#11 token key" },
    { P11B_NAMES_ED448, P11B_PROPS, p11b_eddsa_signature_functions,
      "Ed448 signatures with a PKCS#11 token key" },
    { NULL, NULL, NULL, NULL }
};

#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
/* The same and the composite names of OpenSSL 3.4+ (sign only: the
 * message-verify API wants the signature as a parameter, and verifying
 * needs no token). Offered only when the running libcrypto is 3.4+: an
 * older one would find no init function it knows and fail the fetch. */
static const OSSL_ALGORITHM signature_algs_msg[] = {
    { P11B_NAMES_RSA, P11B_PROPS, p11b_rsa_signature_functions,
      "RSA signatures with a PKCS#11 token key" },
    { "ECDSA", P11B_PROPS, p11b_ecdsa_signature_functions,
      "ECDSA signatures with a PKCS#11 token key" },
    { P11B_NAMES_ED25519, P11B_PROPS, p11b_eddsa_signature_functions,
      "Ed25519 signatures with a PKCS#11 token key" },
    { P11B_NAMES_ED448, P11B_PROPS, p11b_eddsa_signature_functions,
      "Ed448 signatures with a PKCS#11 token key" },
    { "RSA-SHA2-224:RSA-SHA224", P11B_PROPS,
      p11b_rsa_sha224_signature_functions,
      "RSA (PKCS#1 v1.5) with SHA-224 over a message, with a PKCS#11 token key" },
    { "RSA-SHA2-256:RSA-SHA256", P11B_PROPS,
      p11b_rsa_sha256_signature_functions,
      "RSA (PKCS#1 v1.5) with SHA-256 over a message, with a PKCS#11 token key" },
    { "RSA-SHA2-384:RSA-SHA384", P11B_PROPS,
      p11b_rsa_sha384_signature_functions,
      "RSA (PKCS#1 v1.5) with SHA-384 over a message, with a PKCS#11 token key" },
    { "RSA-SHA2-512:RSA-SHA512", P11B_PROPS,
      p11b_rsa_sha512_signature_functions,
      "RSA (PKCS#1 v1.5) with SHA-512 over a message, with a PKCS#11 token key" },
    { "ECDSA-SHA2-224:ECDSA-SHA224", P11B_PROPS,
      p11b_ecdsa_sha224_signature_functions,
      "ECDSA with SHA-224 over a message, with a PKCS#11 token key" },
    { "ECDSA-SHA2-256:ECDSA-SHA256", P11B_PROPS,
      p11b_ecdsa_sha256_signature_functions,
      "ECDSA with SHA-256 over a message, with a PKCS#11 token key" },
    { "ECDSA-SHA2-384:ECDSA-SHA384", P11B_PROPS,
      p11b_ecdsa_sha384_signature_functions,
      "ECDSA with SHA-384 over a message, with a PKCS#11 token key" },
    { "ECDSA-SHA2-512:ECDSA-SHA512", P11B_PROPS,
      p11b_ecdsa_sha512_signature_functions,
      "ECDSA with SHA-512 over a message, with a PKCS#11 token key" },
    { NULL, NULL, NULL, NULL }
};
#endif

/* The signature table for the libcrypto we run under. */
static const OSSL_ALGORITHM *signatures(void)
{
#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
    if (OPENSSL_version_major() > 3 ||
        (OPENSSL_version_major() == 3 && OPENSSL_version_minor() >= 4))
        return signature_algs_msg;
#endif
    return signature_algs;
}

static const OSSL_ALGORITHM asym_cipher_algs[] = {
    { P11B_NAMES_RSA, P11B_PROPS, p11b_rsa_asym_cipher_functions,
      "RSA decryption with a PKCS#11 token key" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM keyexch_algs[] = {
    { "ECDH", P11B_PROPS, p11b_ecdh_keyexch_functions,
      "ECDH with a PKCS#11 token key" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM encoder_algs[] = {
    { P11B_NAMES_RSA, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 RSA key to text" },
    { P11B_NAMES_RSA_PSS, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 RSA-PSS key to text" },
    { P11B_NAMES_EC, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 EC key to text" },
    { P11B_NAMES_ED25519, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 Ed25519 key to text" },
    { P11B_NAMES_ED448, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 Ed448 key to text" },
    { P11B_NAMES_RSA, P11B_URI_PROPS, p11b_uri_encoder_functions,
      "PKCS#11 RSA key to PEM-wrapped URI" },
    { P11B_NAMES_RSA_PSS, P11B_URI_PROPS, p11b_uri_encoder_functions,
      "PKCS#11 RSA-PSS key to PEM-wrapped URI" },
    { P11B_NAMES_EC, P11B_URI_PROPS, p11b_uri_encoder_functions,
      "PKCS#11 EC key to PEM-wrapped URI" },
    { P11B_NAMES_ED25519, P11B_URI_PROPS, p11b_uri_encoder_functions,
      "PKCS#11 Ed25519 key to PEM-wrapped URI" },
    { P11B_NAMES_ED448, P11B_URI_PROPS, p11b_uri_encoder_functions,
      "PKCS#11 Ed448 key to PEM-wrapped URI" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM decoder_algs[] = {
    { "DER", P11B_PEM_IN_PROPS, p11b_uri_pem_decoder_functions,
      "PEM-wrapped pkcs11: URI to DER" },
    { P11B_NAMES_RSA, P11B_DER_IN_PROPS, p11b_rsa_uri_decoder_functions,
      "pkcs11: URI (DER) to RSA token key" },
    { P11B_NAMES_RSA_PSS, P11B_DER_IN_PROPS, p11b_rsapss_uri_decoder_functions,
      "pkcs11: URI (DER) to RSA-PSS token key" },
    { P11B_NAMES_EC, P11B_DER_IN_PROPS, p11b_ec_uri_decoder_functions,
      "pkcs11: URI (DER) to EC token key" },
    { P11B_NAMES_ED25519, P11B_DER_IN_PROPS,
      p11b_ed25519_uri_decoder_functions,
      "pkcs11: URI (DER) to Ed25519 token key" },
    { P11B_NAMES_ED448, P11B_DER_IN_PROPS, p11b_ed448_uri_decoder_functions,
      "pkcs11: URI (DER) to Ed448 token key" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM store_algs[] = {
    { "pkcs11", P11B_PROPS, p11b_pkcs11_store_functions,
      "pkcs11: URIs (RFC 7512)" },
    { NULL, NULL, NULL, NULL }
};

const OSSL_ALGORITHM *p11b_algorithms(struct p11b_prov *prov, int op)
{
    unsigned int blocked = prov->cfg.blocked;

    switch (op) {
    case OSSL_OP_KEYMGMT:
        return (blocked & P11B_BLOCK_KEYMGMT) ? NULL : keymgmt_algs;
    case OSSL_OP_SIGNATURE:
        return (blocked & P11B_BLOCK_SIGNATURE) ? NULL : signatures();
    case OSSL_OP_ASYM_CIPHER:
        return (blocked & P11B_BLOCK_ASYM_CIPHER) ? NULL : asym_cipher_algs;
    case OSSL_OP_KEYEXCH:
        return (blocked & P11B_BLOCK_KEYEXCH) ? NULL : keyexch_algs;
    case OSSL_OP_ENCODER:
        return (blocked & P11B_BLOCK_ENCODER) ? NULL : encoder_algs;
    case OSSL_OP_DECODER:
        return (blocked & P11B_BLOCK_DECODER) ? NULL : decoder_algs;
    case OSSL_OP_STORE:
        return (blocked & P11B_BLOCK_STORE) ? NULL : store_algs;
    default:
        return NULL;
    }
}
