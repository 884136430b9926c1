/*
 * The digest -> mechanism table: which Cryptoki mechanisms go with a
 * digest, for every operation that names one (signature, asym-cipher).
 */
#ifndef P11B_DIGEST_MECHS_H
#define P11B_DIGEST_MECHS_H

#include <openssl/evp.h>

#include "pkcs11/p11.h"

/* Cryptoki names of a digest: the hash mechanism, the MGF1 generator and
 * the combined signature mechanisms; CK_UNAVAILABLE_INFORMATION where
 * PKCS#11 (or our header) has none. */
struct p11b_digest_mechs {
    int nid;
    CK_MECHANISM_TYPE hash;
    CK_RSA_PKCS_MGF_TYPE mgf1;
    CK_MECHANISM_TYPE rsa_pkcs;
    CK_MECHANISM_TYPE rsa_pss;
    CK_MECHANISM_TYPE ecdsa;
};

/* NULL for a digest we know no mechanisms of (SHA-3, ...). */
const struct p11b_digest_mechs *p11b_digest_mechs(const EVP_MD *md);

#endif
