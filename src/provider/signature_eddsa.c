/*
 * Ed25519 and Ed448 signatures with token keys: CKM_EDDSA over the whole
 * message, in one go (EdDSA has no streaming form). Verification runs in
 * software on the public half.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "provider/errors.h"
#include "provider/key.h"
#include "provider/provider.h"
#include "provider/signature.h"

/* PKCS#11 3.0 CK_EDDSA_PARAMS (not in our 2.40 header): pure EdDSA, no
 * context. Ed448 needs it; Ed25519 takes none. */
struct p11b_eddsa_params {
    CK_BBOOL phFlag;
    CK_ULONG ulContextDataLen;
    CK_BYTE_PTR pContextData;
};

static OSSL_FUNC_signature_newctx_fn eddsa_newctx;
static OSSL_FUNC_signature_digest_sign_init_fn eddsa_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_fn eddsa_digest_sign;
static OSSL_FUNC_signature_digest_verify_init_fn eddsa_digest_verify_init;
static OSSL_FUNC_signature_digest_verify_fn eddsa_digest_verify;
static OSSL_FUNC_signature_gettable_ctx_params_fn eddsa_gettable_ctx_params;

static void *eddsa_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx(provctx, propq, P11B_SIG_EDDSA);
}

static int check_no_digest(struct p11b_sig_ctx *ctx, const char *mdname)
{
    if (mdname == NULL || mdname[0] == '\0')
        return 1;
    P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
               "EdDSA takes no digest (%s given)", mdname);
    return 0;
}

static int eddsa_digest_sign_init(void *vctx, const char *mdname, void *key,
                                  const OSSL_PARAM params[])
{
    return check_no_digest(vctx, mdname) &&
           p11b_sig_digest_init(vctx, NULL, key, params, P11B_SIG_DIGEST_SIGN);
}

static int eddsa_digest_verify_init(void *vctx, const char *mdname, void *key,
                                    const OSSL_PARAM params[])
{
    return check_no_digest(vctx, mdname) &&
           p11b_sig_digest_init(vctx, NULL, key, params,
                                P11B_SIG_DIGEST_VERIFY);
}

static int eddsa_digest_sign(void *vctx, unsigned char *sig, size_t *siglen,
                             size_t sigsize, const unsigned char *tbs,
                             size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;
    struct p11b_eddsa_params ep = { CK_FALSE, 0, NULL };
    CK_MECHANISM mech = { CKM_EDDSA, NULL, 0 };

    if (ctx->op != P11B_SIG_DIGEST_SIGN ||
        !p11b_sig_size_check(ctx, sig, siglen, sigsize))
        return 0;
    if (sig == NULL)
        return 1;
    if (!p11b_sig_usable(ctx, CKM_EDDSA)) {
        P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
                   "%s: the token (or the key's CKA_ALLOWED_MECHANISMS) "
                   "does not allow CKM_EDDSA", ctx->key->uri);
        return 0;
    }
    if (ctx->key->family == P11B_FAMILY_ED448) {
        mech.pParameter = &ep;
        mech.ulParameterLen = sizeof(ep);
    }
    *siglen = sigsize;
    return p11b_sig_token_sign(ctx, &mech, tbs, tbslen, sig, siglen, NULL);
}

static int eddsa_digest_verify(void *vctx, const unsigned char *sig,
                               size_t siglen, const unsigned char *tbs,
                               size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op != P11B_SIG_DIGEST_VERIFY)
        return 0;
    return EVP_DigestVerify(ctx->soft_md, sig, siglen, tbs, tbslen) == 1;
}

/* Answered by the software twin (p11b_sig_get_ctx_params). */
static const OSSL_PARAM eddsa_gettable[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *eddsa_gettable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return eddsa_gettable;
}

const OSSL_DISPATCH p11b_eddsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))eddsa_newctx },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
      (void (*)(void))eddsa_digest_sign_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))eddsa_digest_sign },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT,
      (void (*)(void))eddsa_digest_verify_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, (void (*)(void))eddsa_digest_verify },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))eddsa_gettable_ctx_params },
    { 0, NULL }
};
