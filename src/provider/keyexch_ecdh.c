/*
 * ECDH with token keys: CKM_ECDH1_DERIVE (or the cofactor variant) into a
 * session-only CKK_GENERIC_SECRET object that is read once and destroyed.
 *
 * Tokens disagree on the form of the peer's point: PKCS#11 says raw
 * (04 || X || Y), some want it DER-wrapped. The raw form is tried first;
 * CKR_ARGUMENTS_BAD or CKR_DOMAIN_PARAMS_INVALID makes us try the DER form
 * and remember it for the slot. The quirks ecdh-der-point and
 * ecdh-raw-point force either.
 */
#include "config.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "pkcs11/log.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/provider.h"

/* The peer's point in both forms a token may want, encoded once when the
 * peer is set: raw 04 || X || Y, and as a DER OCTET STRING. rawlen 0: the
 * peer key gave no point. */
struct ecdh_point {
    unsigned char raw[256];
    size_t rawlen;
    unsigned char der[260];
    size_t derlen;
};

struct ecdh_ctx {
    struct p11b_prov *prov;
    struct p11b_key *key;
    struct p11b_key *peer;
    struct ecdh_point point; /* of peer */
    int cofactor_mode; /* -1: the key's default (plain ECDH) */
};

static OSSL_FUNC_keyexch_newctx_fn ecdh_newctx;
static OSSL_FUNC_keyexch_init_fn ecdh_init;
static OSSL_FUNC_keyexch_set_peer_fn ecdh_set_peer;
static OSSL_FUNC_keyexch_derive_fn ecdh_derive;
static OSSL_FUNC_keyexch_freectx_fn ecdh_freectx;
static OSSL_FUNC_keyexch_dupctx_fn ecdh_dupctx;
static OSSL_FUNC_keyexch_set_ctx_params_fn ecdh_set_ctx_params;
static OSSL_FUNC_keyexch_settable_ctx_params_fn ecdh_settable_ctx_params;
static OSSL_FUNC_keyexch_get_ctx_params_fn ecdh_get_ctx_params;
static OSSL_FUNC_keyexch_gettable_ctx_params_fn ecdh_gettable_ctx_params;

static void *ecdh_newctx(void *provctx)
{
    struct ecdh_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx != NULL) {
        ctx->prov = provctx;
        ctx->cofactor_mode = -1;
    }
    return ctx;
}

static int ecdh_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    struct ecdh_ctx *ctx = vctx;
    struct p11b_key *key = vkey;

    if (key == NULL || key->priv == NULL || key->family != P11B_FAMILY_EC) {
        P11B_RAISE(ctx->prov, P11B_R_UNSUPPORTED_KEY,
                   "ECDH needs an EC private key on the token");
        return 0;
    }
    p11b_key_up_ref(key);
    p11b_key_free(ctx->key);
    ctx->key = key;
    return ecdh_set_ctx_params(ctx, params);
}

/* Encode the peer's point (struct ecdh_point); rawlen 0 when it has
 * none, which ecdh_derive reports. */
static void encode_point(const struct p11b_key *peer, struct ecdh_point *pt)
{
    size_t n = 0;

    memset(pt, 0, sizeof(*pt));
    ERR_set_mark();
    if (!EVP_PKEY_get_octet_string_param(peer->pub_pkey,
                                         OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                         pt->raw, sizeof(pt->raw), &n) ||
        n == 0 || n > 250)
        n = 0;
    ERR_pop_to_mark(); /* not being an EC key is said at derive */
    if (n == 0)
        return;
    pt->rawlen = n;
    pt->der[0] = 0x04;
    if (n < 0x80) {
        pt->der[1] = (unsigned char)n;
        memcpy(pt->der + 2, pt->raw, n);
        pt->derlen = n + 2;
    } else {
        pt->der[1] = 0x81;
        pt->der[2] = (unsigned char)n;
        memcpy(pt->der + 3, pt->raw, n);
        pt->derlen = n + 3;
    }
}

static int ecdh_set_peer(void *vctx, void *vpeer)
{
    struct ecdh_ctx *ctx = vctx;
    struct p11b_key *peer = vpeer;

    if (peer == NULL || peer->pub_pkey == NULL)
        return 0;
    p11b_key_up_ref(peer);
    p11b_key_free(ctx->peer);
    ctx->peer = peer;
    encode_point(peer, &ctx->point);
    return 1;
}

static size_t secret_len(const struct ecdh_ctx *ctx)
{
    return ((size_t)EVP_PKEY_get_bits(ctx->key->pub_pkey) + 7) / 8;
}

/* Cofactor ECDH equals plain ECDH on curves of cofactor 1 (every prime
 * curve in use): then the plain mechanism serves tokens that lack the
 * cofactor one (SoftHSM). */
static int cofactor_is_one(const struct ecdh_ctx *ctx)
{
    BIGNUM *h = NULL;
    int one;

    ERR_set_mark();
    if (!EVP_PKEY_get_bn_param(ctx->key->pub_pkey, OSSL_PKEY_PARAM_EC_COFACTOR,
                               &h)) {
        ERR_pop_to_mark(); /* no cofactor known: the cofactor mechanism */
        return 0;
    }
    ERR_clear_last_mark();
    one = BN_is_one(h);
    BN_free(h);
    return one;
}

/* The peer must be on the key's curve: never hand a token a point of
 * another group (invalid-curve attacks on tokens that do not check). */
static int same_curve(struct ecdh_ctx *ctx)
{
    char a[64] = "", b[64] = "";
    int same;

    ERR_set_mark();
    same = EVP_PKEY_get_utf8_string_param(ctx->key->pub_pkey,
                                          OSSL_PKEY_PARAM_GROUP_NAME, a,
                                          sizeof(a), NULL) &&
           EVP_PKEY_get_utf8_string_param(ctx->peer->pub_pkey,
                                          OSSL_PKEY_PARAM_GROUP_NAME, b,
                                          sizeof(b), NULL) &&
           strcmp(a, b) == 0;
    ERR_pop_to_mark(); /* ours says it better */
    if (same)
        return 1;
    P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
               "the peer key is on curve '%s', the token key on '%s'",
               b[0] != '\0' ? b : "?", a[0] != '\0' ? a : "?");
    return 0;
}

/* The slot answers: a quirk of the module first, else what worked. */
static int point_form_der(struct ecdh_ctx *ctx, struct p11b_slot *slot)
{
    (void)ctx;
    return p11b_slot_ecdh_der(slot) == 1;
}

/* The other form is tried unless a quirk of the module forces one. */
static int may_switch_form(struct ecdh_ctx *ctx, CK_RV rv)
{
    return (rv == CKR_ARGUMENTS_BAD || rv == CKR_DOMAIN_PARAMS_INVALID ||
            rv == CKR_MECHANISM_PARAM_INVALID) &&
           p11b_module_ecdh_form(ctx->prov->mod) < 0;
}

/* C_DeriveKey into out, with the other form of the point once when the
 * token refuses one, and once more when the session or login was lost.
 * The result as enum p11b_outcome (errors.h): ecdh_derive raises a
 * refusal of the token's call (P11B_OUT_TOKEN); anything else failing is
 * raised where it happened. */
static enum p11b_outcome
derive_on_token(struct ecdh_ctx *ctx, unsigned char *out, size_t len, CK_RV *rv)
{
    CK_ECDH1_DERIVE_PARAMS p = { CKD_NULL, 0, NULL, 0, NULL };
    CK_MECHANISM mech = { CKM_ECDH1_DERIVE, &p, sizeof(p) };
    struct ecdh_point *pt = &ctx->point;
    struct p11b_slot *slot;
    struct p11b_key_op kop;
    enum p11b_op_stage stage;
    int der_form, tries, pref = -1, switched = 0;

    *rv = CKR_GENERAL_ERROR;
    if (pt->rawlen == 0) {
        P11B_RAISE(ctx->prov, P11B_R_UNSUPPORTED_KEY, "peer key has no EC point");
        return P11B_OUT_RAISED;
    }
    if (ctx->cofactor_mode == 1 && !cofactor_is_one(ctx))
        mech.mechanism = CKM_ECDH1_COFACTOR_DERIVE;
    if (!p11b_key_check_mech_size(ctx->key, mech.mechanism)) {
        *rv = CKR_KEY_SIZE_RANGE;
        return P11B_OUT_RAISED;
    }
    for (tries = 0; tries < 3; tries++) {
        *rv = CKR_GENERAL_ERROR;
        if (!p11b_key_op_begin(ctx->key, &kop))
            return P11B_OUT_RAISED;
        slot = kop.op.key->slot;
        if (pref < 0)
            pref = point_form_der(ctx, slot);
        der_form = switched ? !pref : pref;
        p.pPublicData = der_form ? pt->der : pt->raw;
        p.ulPublicDataLen = der_form ? pt->derlen : pt->rawlen;
        *rv = p11b_op_derive_secret(&kop.op, &mech, out, len, &stage);
        if (!p11b_key_op_end(&kop, *rv, stage))
            return P11B_OUT_RAISED;
        if (*rv == CKR_OK) {
            p11b_slot_set_ecdh_der(slot, der_form); /* remember what worked */
            return P11B_OUT_OK;
        }
        if (!switched && may_switch_form(ctx, *rv)) {
            switched = 1; /* the other form of the point, once */
            continue;
        }
        if (!p11b_rv_retry(*rv))
            break;
    }
    return P11B_OUT_TOKEN;
}

static int ecdh_derive(void *vctx, unsigned char *secret, size_t *secretlen,
                       size_t outlen)
{
    struct ecdh_ctx *ctx = vctx;
    unsigned char *full;
    enum p11b_outcome done;
    size_t len;
    CK_RV rv;

    if (ctx->key == NULL || ctx->peer == NULL)
        return 0;
    len = secret_len(ctx);
    if (secret == NULL) {
        *secretlen = len;
        return 1;
    }
    if (!same_curve(ctx))
        return 0;
    if (outlen == 0) {
        P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT, "ECDH output buffer of 0 bytes");
        return 0;
    }
    /* A shorter buffer gets the leading bytes of the secret, as the
     * default provider gives them (ECDH_compute_key, X9.63 callers). */
    full = outlen < len ? OPENSSL_secure_malloc(len) : secret;
    if (full == NULL) {
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "ECDH: no memory for a %zu-byte secret", len);
        return 0;
    }
    done = derive_on_token(ctx, full, len, &rv);
    if (done == P11B_OUT_OK && full != secret)
        memcpy(secret, full, outlen);
    if (full != secret)
        OPENSSL_secure_clear_free(full, len);
    if (done != P11B_OUT_OK) {
        OPENSSL_cleanse(secret, outlen < len ? outlen : len);
        if (done == P11B_OUT_TOKEN)
            P11B_RAISE_RV(ctx->prov, P11B_R_OPERATION_FAILED, rv,
                          "C_DeriveKey (ECDH) with %s", ctx->key->uri);
        return 0;
    }
    *secretlen = outlen < len ? outlen : len;
    return 1;
}

static void ecdh_freectx(void *vctx)
{
    struct ecdh_ctx *ctx = vctx;

    if (ctx == NULL)
        return;
    p11b_key_free(ctx->key);
    p11b_key_free(ctx->peer);
    OPENSSL_free(ctx);
}

static void *ecdh_dupctx(void *vctx)
{
    struct ecdh_ctx *src = vctx, *dst = ecdh_newctx(src->prov);

    if (dst == NULL)
        return NULL;
    dst->key = p11b_key_up_ref(src->key);
    dst->peer = p11b_key_up_ref(src->peer);
    dst->point = src->point; /* of the same peer */
    dst->cofactor_mode = src->cofactor_mode;
    return dst;
}

static int ecdh_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    struct ecdh_ctx *ctx = vctx;
    const OSSL_PARAM *p;
    int mode;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE);
    if (p != NULL) {
        if (!OSSL_PARAM_get_int(p, &mode) || mode < -1 || mode > 1)
            return 0;
        ctx->cofactor_mode = mode;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE);
    if (p != NULL) {
        const char *kdf = NULL;

        /* The secret comes out raw; a KDF on top is not offered yet. */
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &kdf) ||
            (kdf != NULL && kdf[0] != '\0')) {
            P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
                       "ECDH with a KDF is not supported with token keys");
            return 0;
        }
    }
    return 1;
}

static const OSSL_PARAM ecdh_settable[] = {
    OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *ecdh_settable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return ecdh_settable;
}

static int ecdh_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    struct ecdh_ctx *ctx = vctx;
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE);
    if (p != NULL &&
        !OSSL_PARAM_set_int(p, ctx->cofactor_mode == 1 ? 1 : 0))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_EXCHANGE_PARAM_KDF_TYPE);
    if (p != NULL && !OSSL_PARAM_set_utf8_string(p, ""))
        return 0;
    return 1;
}

static const OSSL_PARAM ecdh_gettable[] = {
    OSSL_PARAM_int(OSSL_EXCHANGE_PARAM_EC_ECDH_COFACTOR_MODE, NULL),
    OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *ecdh_gettable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return ecdh_gettable;
}

const OSSL_DISPATCH p11b_ecdh_keyexch_functions[] = {
    { OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))ecdh_newctx },
    { OSSL_FUNC_KEYEXCH_INIT, (void (*)(void))ecdh_init },
    { OSSL_FUNC_KEYEXCH_SET_PEER, (void (*)(void))ecdh_set_peer },
    { OSSL_FUNC_KEYEXCH_DERIVE, (void (*)(void))ecdh_derive },
    { OSSL_FUNC_KEYEXCH_FREECTX, (void (*)(void))ecdh_freectx },
    { OSSL_FUNC_KEYEXCH_DUPCTX, (void (*)(void))ecdh_dupctx },
    { OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, (void (*)(void))ecdh_set_ctx_params },
    { OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS,
      (void (*)(void))ecdh_settable_ctx_params },
    { OSSL_FUNC_KEYEXCH_GET_CTX_PARAMS, (void (*)(void))ecdh_get_ctx_params },
    { OSSL_FUNC_KEYEXCH_GETTABLE_CTX_PARAMS,
      (void (*)(void))ecdh_gettable_ctx_params },
    { 0, NULL }
};
