/*
 * The digest -> mechanism table (digest_mechs.h).
 */
#include "config.h"

#include <openssl/evp.h>
#include <openssl/objects.h>

#include "provider/digest_mechs.h"

static const struct p11b_digest_mechs digest_mechs[] = {
    { NID_sha1, CKM_SHA_1, CKG_MGF1_SHA1, CKM_SHA1_RSA_PKCS,
      CKM_SHA1_RSA_PKCS_PSS, CKM_ECDSA_SHA1 },
    { NID_sha224, CKM_SHA224, CKG_MGF1_SHA224, CKM_SHA224_RSA_PKCS,
      CKM_SHA224_RSA_PKCS_PSS, CKM_ECDSA_SHA224 },
    { NID_sha256, CKM_SHA256, CKG_MGF1_SHA256, CKM_SHA256_RSA_PKCS,
      CKM_SHA256_RSA_PKCS_PSS, CKM_ECDSA_SHA256 },
    { NID_sha384, CKM_SHA384, CKG_MGF1_SHA384, CKM_SHA384_RSA_PKCS,
      CKM_SHA384_RSA_PKCS_PSS, CKM_ECDSA_SHA384 },
    { NID_sha512, CKM_SHA512, CKG_MGF1_SHA512, CKM_SHA512_RSA_PKCS,
      CKM_SHA512_RSA_PKCS_PSS, CKM_ECDSA_SHA512 },
};

const struct p11b_digest_mechs *p11b_digest_mechs(const EVP_MD *md)
{
    int nid = md != NULL ? EVP_MD_get_type(md) : NID_undef;
    size_t i;

    for (i = 0; i < P11B_NELEM(digest_mechs); i++) {
        if (digest_mechs[i].nid == nid)
            return &digest_mechs[i];
    }
    return NULL;
}
