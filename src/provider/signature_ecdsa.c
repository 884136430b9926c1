/*
 * ECDSA with token keys: the digest is signed with CKM_ECDSA (or, on a
 * token without it, the message with CKM_ECDSA_SHA*), and the token's raw
 * r || s becomes the DER ECDSA-Sig-Value OpenSSL expects.
 */
#include "config.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "provider/ecconv.h"
#include "provider/digest_mechs.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/provider.h"
#include "provider/signature.h"

/* OpenSSL 3.2+ (deterministic ECDSA, RFC 6979); a fixed name, so a
 * provider built on 3.0 answers it too when a newer libcrypto asks. */
#ifndef OSSL_SIGNATURE_PARAM_NONCE_TYPE
#define OSSL_SIGNATURE_PARAM_NONCE_TYPE "nonce-type"
#endif

static OSSL_FUNC_signature_newctx_fn ecdsa_newctx;
static OSSL_FUNC_signature_sign_init_fn ecdsa_sign_init;
static OSSL_FUNC_signature_sign_fn ecdsa_sign;
static OSSL_FUNC_signature_verify_init_fn ecdsa_verify_init;
static OSSL_FUNC_signature_digest_sign_init_fn ecdsa_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_final_fn ecdsa_digest_sign_final;
static OSSL_FUNC_signature_digest_sign_fn ecdsa_digest_sign;
static OSSL_FUNC_signature_digest_verify_init_fn ecdsa_digest_verify_init;
static OSSL_FUNC_signature_gettable_ctx_params_fn ecdsa_gettable_ctx_params;
static OSSL_FUNC_signature_set_ctx_params_fn ecdsa_set_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn ecdsa_settable_ctx_params;

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx(provctx, propq, P11B_SIG_ECDSA);
}

static int ecdsa_sign_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    return p11b_sig_init(vctx, key, params, P11B_SIG_SIGN);
}

static int ecdsa_verify_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    return p11b_sig_init(vctx, key, params, P11B_SIG_VERIFY);
}

static int ecdsa_digest_sign_init(void *vctx, const char *mdname, void *key,
                                  const OSSL_PARAM params[])
{
    return p11b_sig_digest_init(vctx, mdname, key, params,
                                P11B_SIG_DIGEST_SIGN);
}

static int ecdsa_digest_verify_init(void *vctx, const char *mdname, void *key,
                                    const OSSL_PARAM params[])
{
    return p11b_sig_digest_init(vctx, mdname, key, params,
                                P11B_SIG_DIGEST_VERIFY);
}

static int ecdsa_sign_digest(struct p11b_sig_ctx *ctx, unsigned char *sig,
                             size_t *siglen, const unsigned char *tbs,
                             size_t tbslen)
{
    const struct p11b_digest_mechs *dm;
    CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
    unsigned char raw[256];
    size_t rawlen = sizeof(raw);
    EVP_MD *md = NULL;
    int ok;

    dm = p11b_digest_mechs(p11b_sig_md(ctx, &md));
    /* A precomputed digest must have the digest's size. */
    if (ctx->op == P11B_SIG_SIGN && !p11b_sig_digest_fits(ctx, md, tbslen)) {
        EVP_MD_free(md);
        return 0;
    }
    EVP_MD_free(md);
    if (!p11b_sig_usable(ctx, CKM_ECDSA)) {
        if (!ctx->buffer_msg || dm == NULL || !p11b_sig_usable(ctx, dm->ecdsa)) {
            P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
                       "%s: the token (or the key's CKA_ALLOWED_MECHANISMS) "
                       "allows neither CKM_ECDSA nor a CKM_ECDSA_SHA* "
                       "mechanism for this digest", ctx->key->uri);
            return 0;
        }
        mech.mechanism = dm->ecdsa;
        tbs = ctx->msg != NULL ? ctx->msg : (const unsigned char *)"";
        tbslen = ctx->msg_len;
    }
    ok = p11b_sig_token_sign(ctx, &mech, tbs, tbslen, raw, &rawlen, NULL);
    if (ok && !p11b_ecdsa_raw_to_der(raw, rawlen, sig, siglen)) {
        P11B_RAISE(ctx->prov, P11B_R_OPERATION_FAILED,
                   "the token's ECDSA signature (%zu bytes) is not r || s",
                   rawlen);
        ok = 0;
    }
    return ok;
}

static int ecdsa_sign(void *vctx, unsigned char *sig, size_t *siglen,
                      size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op != P11B_SIG_SIGN ||
        !p11b_sig_size_check(ctx, sig, siglen, sigsize))
        return 0;
    if (sig == NULL)
        return 1;
    *siglen = sigsize;
    return ecdsa_sign_digest(ctx, sig, siglen, tbs, tbslen);
}

static int ecdsa_digest_sign_final(void *vctx, unsigned char *sig,
                                   size_t *siglen, size_t sigsize)
{
    struct p11b_sig_ctx *ctx = vctx;
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;

    if (ctx->op != P11B_SIG_DIGEST_SIGN ||
        !p11b_sig_size_check(ctx, sig, siglen, sigsize))
        return 0;
    if (sig == NULL)
        return 1;
    if (!p11b_sig_digest_sign_input(ctx, md, &mdlen))
        return 0;
    *siglen = sigsize;
    return ecdsa_sign_digest(ctx, sig, siglen, md, mdlen);
}

/* EVP_DigestSign (libssl's handshake signature): hashed at once, no
 * update/final and no duplicate of the context. */
static int ecdsa_digest_sign(void *vctx, unsigned char *sig, size_t *siglen,
                             size_t sigsize, const unsigned char *tbs,
                             size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;

    if (ctx->op != P11B_SIG_DIGEST_SIGN ||
        !p11b_sig_size_check(ctx, sig, siglen, sigsize))
        return 0;
    if (sig == NULL)
        return 1;
    if (!p11b_sig_digest_sign_oneshot(ctx, tbs, tbslen, md, &mdlen))
        return 0;
    *siglen = sigsize;
    return ecdsa_sign_digest(ctx, sig, siglen, md, mdlen);
}

/* Keep these tables next to p11b_sig_set_ctx_params / get_ctx_params,
 * which hand every key to the software twin. */
/* nonce-type: 0 (random, the token's own) is the only kind a token does;
 * PKCS#11 has no mechanism for RFC 6979 nonces. Refused here, since the
 * software twin would otherwise take it and the token sign randomly. */
static int ecdsa_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    struct p11b_sig_ctx *ctx = vctx;
    const OSSL_PARAM *p;
    unsigned int nonce = 0;

    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_NONCE_TYPE);
    if (ctx != NULL && p != NULL) {
        if (!OSSL_PARAM_get_uint(p, &nonce)) {
            P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
                       "ECDSA nonce-type must be an unsigned integer");
            return 0;
        }
        if (nonce != 0 && ctx->op != P11B_SIG_VERIFY &&
            ctx->op != P11B_SIG_DIGEST_VERIFY) {
            P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
                       "%s: deterministic ECDSA (nonce-type %u, RFC 6979) "
                       "is not available: PKCS#11 has no mechanism for it "
                       "and the token chooses its own random nonce",
                       ctx->key != NULL ? ctx->key->uri : "key", nonce);
            return 0;
        }
    }
    return p11b_sig_set_ctx_params(vctx, params);
}

static const OSSL_PARAM ecdsa_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_uint(OSSL_SIGNATURE_PARAM_NONCE_TYPE, NULL),
    OSSL_PARAM_END
};

static const OSSL_PARAM *ecdsa_settable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return ecdsa_settable;
}

static const OSSL_PARAM ecdsa_gettable[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *ecdsa_gettable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return ecdsa_gettable;
}

const OSSL_DISPATCH p11b_ecdsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))ecdsa_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))ecdsa_sign },
    { OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))ecdsa_verify_init },
    { OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))p11b_sig_verify },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
      (void (*)(void))ecdsa_digest_sign_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,
      (void (*)(void))ecdsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))ecdsa_digest_sign },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT,
      (void (*)(void))ecdsa_digest_verify_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE,
      (void (*)(void))p11b_sig_digest_verify_update },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL,
      (void (*)(void))p11b_sig_digest_verify_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))ecdsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS,
      (void (*)(void))ecdsa_set_ctx_params },
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
      (void (*)(void))ecdsa_settable_ctx_params },
    { 0, NULL }
};

/* ---- OpenSSL 3.4+: composite algorithms, sign only -------------------- */
#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
static OSSL_FUNC_signature_newctx_fn ecdsa_sha224_newctx;
static OSSL_FUNC_signature_newctx_fn ecdsa_sha256_newctx;
static OSSL_FUNC_signature_newctx_fn ecdsa_sha384_newctx;
static OSSL_FUNC_signature_newctx_fn ecdsa_sha512_newctx;
static OSSL_FUNC_signature_sign_fn ecdsa_msg_sign;
static OSSL_FUNC_signature_query_key_types_fn ecdsa_key_types;

static void *ecdsa_sha224_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_ECDSA, "SHA224");
}

static void *ecdsa_sha256_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_ECDSA, "SHA256");
}

static void *ecdsa_sha384_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_ECDSA, "SHA384");
}

static void *ecdsa_sha512_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_ECDSA, "SHA512");
}

/* One shot: a message after sign_message_init, a digest after sign_init. */
static int ecdsa_msg_sign(void *vctx, unsigned char *sig, size_t *siglen,
                        size_t sigsize, const unsigned char *tbs,
                        size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op == P11B_SIG_SIGN)
        return ecdsa_sign(vctx, sig, siglen, sigsize, tbs, tbslen);
    if (sig != NULL && !p11b_sig_digest_sign_update(vctx, tbs, tbslen))
        return 0;
    return ecdsa_digest_sign_final(vctx, sig, siglen, sigsize);
}

static const char **ecdsa_key_types(void)
{
    static const char *types[] = { "EC", NULL };

    return types;
}

const OSSL_DISPATCH p11b_ecdsa_sha224_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_sha224_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))ecdsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))ecdsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))ecdsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))ecdsa_key_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_ecdsa_sha256_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_sha256_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))ecdsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))ecdsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))ecdsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))ecdsa_key_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_ecdsa_sha384_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_sha384_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))ecdsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))ecdsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))ecdsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))ecdsa_key_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_ecdsa_sha512_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_sha512_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))ecdsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))ecdsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))ecdsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))ecdsa_key_types },
    { 0, NULL }
};
#endif
