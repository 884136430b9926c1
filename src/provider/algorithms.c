/*
 * The algorithm tables. Registered at provider init (libssl caches its
 * lists when an SSL_CTX is made); the module itself is loaded lazily.
 */
#include "config.h"

#include <openssl/core_dispatch.h>

#include "provider/provider.h"

#define P11B_NAMES_RSA "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define P11B_NAMES_RSA_PSS "RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10"
#define P11B_NAMES_EC "EC:id-ecPublicKey:1.2.840.10045.2.1"
#define P11B_TEXT_PROPS P11B_PROPS ",output=text"

extern const OSSL_DISPATCH p11b_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_rsapss_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_ec_keymgmt_functions[];
extern const OSSL_DISPATCH p11b_text_encoder_functions[];
extern const OSSL_DISPATCH p11b_pkcs11_store_functions[];

static const OSSL_ALGORITHM keymgmt_algs[] = {
    { P11B_NAMES_RSA, P11B_PROPS, p11b_rsa_keymgmt_functions,
      "RSA key on a PKCS#11 token" },
    { P11B_NAMES_RSA_PSS, P11B_PROPS, p11b_rsapss_keymgmt_functions,
      "RSA-PSS key on a PKCS#11 token" },
    { P11B_NAMES_EC, P11B_PROPS, p11b_ec_keymgmt_functions,
      "EC key on a PKCS#11 token" },
    { NULL, NULL, NULL, NULL }
};

static const OSSL_ALGORITHM encoder_algs[] = {
    { P11B_NAMES_RSA, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 RSA key to text" },
    { P11B_NAMES_RSA_PSS, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 RSA-PSS key to text" },
    { P11B_NAMES_EC, P11B_TEXT_PROPS, p11b_text_encoder_functions,
      "PKCS#11 EC key to text" },
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
        return keymgmt_algs;
    case OSSL_OP_ENCODER:
        return (blocked & P11B_BLOCK_ENCODER) ? NULL : encoder_algs;
    case OSSL_OP_STORE:
        return (blocked & P11B_BLOCK_STORE) ? NULL : store_algs;
    default:
        return NULL;
    }
}
