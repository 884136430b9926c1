/*
 * RSA signatures with token keys: PKCS#1 v1.5, PSS and raw, for RSA and
 * RSA-PSS keys. The token gets the digest (CKM_RSA_PKCS with a DigestInfo,
 * CKM_RSA_PKCS_PSS with parameters); without those mechanisms the
 * padding is done here and the token does raw RSA (CKM_RSA_X_509), or a
 * combined mechanism gets the message.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "pkcs11/names.h"
#include "provider/digest_mechs.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/provider.h"
#include "provider/signature.h"

/* OpenSSL 3.1+ signs with "auto-digestmax" by default: the digest's
 * length, or less when the key is too small for it. The 3.0 headers lack
 * the value; a twin of 3.0 never reports it (its parser reads the name as
 * the number 0, as OpenSSL 3.0's own provider does). */
#ifndef RSA_PSS_SALTLEN_AUTO_DIGEST_MAX
#define RSA_PSS_SALTLEN_AUTO_DIGEST_MAX -4
#endif

/* What the software twin was told: padding, digests, salt length. */
struct rsa_settings {
    int pad;
    EVP_MD *md;       /* NULL: no digest (raw input) */
    EVP_MD *mgf1;
    int saltlen;
    size_t modlen;
    int modbits;
};

/* One signature: its mechanism, and the token's input. */
struct rsa_job {
    CK_MECHANISM mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    const unsigned char *in;
    size_t inlen;
    unsigned char buf[1024]; /* padded input for raw RSA (<= 8192 bits) */
};

static OSSL_FUNC_signature_newctx_fn rsa_newctx;
static OSSL_FUNC_signature_sign_init_fn rsa_sign_init;
static OSSL_FUNC_signature_sign_fn rsa_sign;
static OSSL_FUNC_signature_verify_init_fn rsa_verify_init;
static OSSL_FUNC_signature_verify_recover_init_fn rsa_verify_recover_init;
static OSSL_FUNC_signature_digest_sign_init_fn rsa_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_final_fn rsa_digest_sign_final;
static OSSL_FUNC_signature_digest_sign_fn rsa_digest_sign;
static OSSL_FUNC_signature_digest_verify_init_fn rsa_digest_verify_init;
static OSSL_FUNC_signature_gettable_ctx_params_fn rsa_gettable_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn rsa_settable_ctx_params;

static void *rsa_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx(provctx, propq, P11B_SIG_RSA);
}

static int rsa_sign_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    return p11b_sig_init(vctx, key, params, P11B_SIG_SIGN);
}

static int rsa_verify_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    return p11b_sig_init(vctx, key, params, P11B_SIG_VERIFY);
}

static int rsa_verify_recover_init(void *vctx, void *key,
                                   const OSSL_PARAM params[])
{
    return p11b_sig_init(vctx, key, params, P11B_SIG_VERIFY_RECOVER);
}

static int rsa_digest_sign_init(void *vctx, const char *mdname, void *key,
                                const OSSL_PARAM params[])
{
    return p11b_sig_digest_init(vctx, mdname, key, params,
                                P11B_SIG_DIGEST_SIGN);
}

static int rsa_digest_verify_init(void *vctx, const char *mdname, void *key,
                                  const OSSL_PARAM params[])
{
    return p11b_sig_digest_init(vctx, mdname, key, params,
                                P11B_SIG_DIGEST_VERIFY);
}

static void settings_free(struct rsa_settings *st)
{
    EVP_MD_free(st->md);
    EVP_MD_free(st->mgf1);
}

static int read_settings(struct p11b_sig_ctx *ctx, struct rsa_settings *st)
{
    char mgf1[64] = "";
    OSSL_PARAM params[4];

    memset(st, 0, sizeof(*st));
    params[0] = OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PAD_MODE,
                                         &st->pad);
    params[1] = OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN,
                                         &st->saltlen);
    params[2] = OSSL_PARAM_construct_utf8_string(
        OSSL_SIGNATURE_PARAM_MGF1_DIGEST, mgf1, sizeof(mgf1));
    params[3] = OSSL_PARAM_construct_end();
    if (!EVP_PKEY_CTX_get_params(ctx->soft, params))
        return 0;
    p11b_sig_md(ctx, &st->md);
    if (mgf1[0] != '\0')
        st->mgf1 = EVP_MD_fetch(ctx->prov->libctx, mgf1, P11B_SOFT_PROPQ);
    else if (st->md != NULL && EVP_MD_up_ref(st->md))
        st->mgf1 = st->md;
    st->modlen = (size_t)EVP_PKEY_get_size(ctx->key->pub_pkey);
    st->modbits = EVP_PKEY_get_bits(ctx->key->pub_pkey);
    return st->modlen > 0 && st->modlen <= 1024;
}

/* ---- padding done here, for tokens with raw RSA only ------------------- */

/* EMSA-PKCS1-v1_5 (RFC 8017 9.2): 00 01 FF.. 00 T */
static int pad_pkcs1(struct rsa_job *job, size_t modlen,
                     const unsigned char *t, size_t tlen)
{
    if (tlen + 11 > modlen)
        return 0;
    job->buf[0] = 0x00;
    job->buf[1] = 0x01;
    memset(job->buf + 2, 0xff, modlen - tlen - 3);
    job->buf[modlen - tlen - 1] = 0x00;
    memcpy(job->buf + modlen - tlen, t, tlen);
    job->in = job->buf;
    job->inlen = modlen;
    return 1;
}

/* MGF1 (RFC 8017 B.2.1), XORed into out. */
static int mgf1_xor(const EVP_MD *md, const unsigned char *seed, size_t slen,
                    unsigned char *out, size_t outlen)
{
    unsigned char block[EVP_MAX_MD_SIZE], ctr[4];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    size_t done = 0, i, hlen = (size_t)EVP_MD_get_size(md);
    unsigned int counter = 0;
    int ok = c != NULL;

    while (ok && done < outlen) {
        ctr[0] = (unsigned char)(counter >> 24);
        ctr[1] = (unsigned char)(counter >> 16);
        ctr[2] = (unsigned char)(counter >> 8);
        ctr[3] = (unsigned char)counter;
        ok = EVP_DigestInit_ex2(c, md, NULL) &&
             EVP_DigestUpdate(c, seed, slen) && EVP_DigestUpdate(c, ctr, 4) &&
             EVP_DigestFinal_ex(c, block, NULL);
        for (i = 0; ok && i < hlen && done < outlen; i++)
            out[done++] ^= block[i];
        counter++;
    }
    EVP_MD_CTX_free(c);
    return ok;
}

/* EMSA-PSS-ENCODE (RFC 8017 9.1.1) into job->buf, left-padded to modlen. */
static int pad_pss(struct rsa_job *job, const struct rsa_settings *st,
                   const unsigned char *mhash, size_t slen)
{
    size_t embits = (size_t)st->modbits - 1, emlen = (embits + 7) / 8;
    size_t hlen = (size_t)EVP_MD_get_size(st->md), off = st->modlen - emlen;
    unsigned char *em = job->buf + off, *db = em, *h = em + emlen - hlen - 1;
    static const unsigned char zeros[8];
    unsigned char salt[1024];
    EVP_MD_CTX *c;
    int ok;

    if (emlen < hlen + slen + 2 || slen > sizeof(salt) ||
        (slen > 0 && RAND_bytes(salt, (int)slen) != 1))
        return 0;
    memset(job->buf, 0, st->modlen);
    c = EVP_MD_CTX_new();
    ok = c != NULL && EVP_DigestInit_ex2(c, st->md, NULL) &&
         EVP_DigestUpdate(c, zeros, sizeof(zeros)) &&
         EVP_DigestUpdate(c, mhash, hlen) && EVP_DigestUpdate(c, salt, slen) &&
         EVP_DigestFinal_ex(c, h, NULL);
    EVP_MD_CTX_free(c);
    if (!ok)
        return 0;
    db[emlen - slen - hlen - 2] = 0x01;
    memcpy(db + emlen - slen - hlen - 1, salt, slen);
    OPENSSL_cleanse(salt, slen);
    if (!mgf1_xor(st->mgf1, h, hlen, db, emlen - hlen - 1))
        return 0;
    db[0] &= (unsigned char)(0xff >> (8 * emlen - embits));
    em[emlen - 1] = 0xbc;
    job->in = job->buf;
    job->inlen = st->modlen;
    return 1;
}

/* ---- choosing the mechanism -------------------------------------------- */

static int digest_info(const EVP_MD *md, const unsigned char *dgst,
                       size_t dlen, unsigned char *out, size_t *outlen)
{
    X509_SIG *sig = X509_SIG_new();
    X509_ALGOR *alg = NULL;
    ASN1_OCTET_STRING *digest = NULL;
    unsigned char *p = out;
    int len = 0;

    if (sig != NULL) {
        X509_SIG_getm(sig, &alg, &digest);
        if (X509_ALGOR_set0(alg, OBJ_nid2obj(EVP_MD_get_type(md)), V_ASN1_NULL,
                            NULL) &&
            ASN1_OCTET_STRING_set(digest, dgst, (int)dlen) &&
            i2d_X509_SIG(sig, NULL) <= (int)*outlen)
            len = i2d_X509_SIG(sig, &p);
    }
    X509_SIG_free(sig);
    *outlen = len > 0 ? (size_t)len : 0;
    return len > 0;
}

static int no_mechanism(struct p11b_sig_ctx *ctx, const char *what,
                        const struct rsa_settings *st)
{
    P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
               "%s: the token (or the key's CKA_ALLOWED_MECHANISMS) allows "
               "no mechanism for RSA %s signatures with %s",
               ctx->key->uri, what,
               st->md != NULL ? EVP_MD_get0_name(st->md) : "no digest");
    return 0;
}

/* The input cannot be signed with this digest and key. */
static int no_fit(struct p11b_sig_ctx *ctx, size_t tbslen)
{
    P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
               "input of %zu bytes does not fit the digest or key", tbslen);
    return 0;
}

/* Each plan_* function raises its own failures: the caller decides on
 * the result alone. */
static int plan_pkcs1(struct p11b_sig_ctx *ctx, const struct rsa_settings *st,
                      const unsigned char *tbs, size_t tbslen,
                      struct rsa_job *job)
{
    const struct p11b_digest_mechs *dm = p11b_digest_mechs(st->md);
    unsigned char t[sizeof(job->buf)];
    size_t tlen = sizeof(t);

    if (!p11b_sig_digest_fits(ctx, st->md, tbslen))
        return 0;
    /* Without a digest the input is T itself: at most k - 11 bytes
     * (RFC 8017 9.2), as the default provider takes. */
    if (st->md == NULL && tbslen + 11 > st->modlen) {
        P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
                   "input of %zu bytes: PKCS#1 v1.5 without a digest takes "
                   "at most %zu bytes with a %d-bit key (k - 11)", tbslen,
                   st->modlen - 11, st->modbits);
        return 0;
    }
    if (ctx->buffer_msg && dm != NULL && p11b_sig_usable(ctx, dm->rsa_pkcs) &&
        !p11b_sig_usable(ctx, CKM_RSA_PKCS) &&
        !p11b_sig_usable(ctx, CKM_RSA_X_509)) {
        job->mech.mechanism = dm->rsa_pkcs;
        job->in = ctx->msg != NULL ? ctx->msg : (const unsigned char *)"";
        job->inlen = ctx->msg_len;
        return 1;
    }
    if (st->md != NULL) {
        if (!digest_info(st->md, tbs, tbslen, t, &tlen))
            return no_fit(ctx, tbslen);
    } else {
        memcpy(t, tbs, tbslen);
        tlen = tbslen;
    }
    if (p11b_sig_usable(ctx, CKM_RSA_PKCS)) {
        job->mech.mechanism = CKM_RSA_PKCS;
        memcpy(job->buf, t, tlen);
        job->in = job->buf;
        job->inlen = tlen;
        return 1;
    }
    if (p11b_sig_usable(ctx, CKM_RSA_X_509)) {
        job->mech.mechanism = CKM_RSA_X_509;
        return pad_pkcs1(job, st->modlen, t, tlen) || no_fit(ctx, tbslen);
    }
    return no_mechanism(ctx, "PKCS#1 v1.5", st);
}

/* The salt length asked for, resolved and checked against the key:
 * at most emLen - hLen - 2 bytes (RFC 8017 9.1.1). */
static int pss_salt_fits(struct p11b_sig_ctx *ctx, const struct rsa_settings *st,
                         size_t *out)
{
    size_t hlen = (size_t)EVP_MD_get_size(st->md);
    size_t emlen = ((size_t)st->modbits - 1 + 7) / 8;
    size_t max = emlen >= hlen + 2 ? emlen - hlen - 2 : 0;

    switch (st->saltlen) {
    case RSA_PSS_SALTLEN_DIGEST:
        *out = hlen;
        break;
    case RSA_PSS_SALTLEN_AUTO: /* signing: as long as it fits */
    case RSA_PSS_SALTLEN_MAX:
        *out = max;
        break;
    case RSA_PSS_SALTLEN_AUTO_DIGEST_MAX: /* the digest's length if it fits */
        *out = hlen < max ? hlen : max;
        break;
    default:
        *out = st->saltlen < 0 ? max + 1 : (size_t)st->saltlen;
        break;
    }
    if (*out <= max)
        return 1;
    P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
               "PSS salt length %d is too long for a %d-bit key with %s "
               "(at most %zu bytes)", st->saltlen, st->modbits,
               EVP_MD_get0_name(st->md), max);
    return 0;
}

static int plan_pss(struct p11b_sig_ctx *ctx, const struct rsa_settings *st,
                    const unsigned char *tbs, size_t tbslen,
                    struct rsa_job *job)
{
    const struct p11b_digest_mechs *dm = p11b_digest_mechs(st->md);
    const struct p11b_digest_mechs *mgf = p11b_digest_mechs(st->mgf1);
    size_t slen;

    if (st->md == NULL || st->mgf1 == NULL) {
        P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT, "PSS needs a digest");
        return 0;
    }
    if (!p11b_sig_digest_fits(ctx, st->md, tbslen) || !pss_salt_fits(ctx, st, &slen))
        return 0;
    if (dm != NULL && mgf != NULL) {
        job->pss.hashAlg = dm->hash;
        job->pss.mgf = mgf->mgf1;
        job->pss.sLen = slen;
        job->mech.pParameter = &job->pss;
        job->mech.ulParameterLen = sizeof(job->pss);
        job->in = tbs;
        job->inlen = tbslen;
        if (p11b_sig_usable(ctx, CKM_RSA_PKCS_PSS)) {
            job->mech.mechanism = CKM_RSA_PKCS_PSS;
            return 1;
        }
        if (ctx->buffer_msg && p11b_sig_usable(ctx, dm->rsa_pss) &&
            !p11b_sig_usable(ctx, CKM_RSA_X_509)) {
            job->mech.mechanism = dm->rsa_pss;
            job->in = ctx->msg != NULL ? ctx->msg : (const unsigned char *)"";
            job->inlen = ctx->msg_len;
            return 1;
        }
        job->mech.pParameter = NULL;
        job->mech.ulParameterLen = 0;
    }
    /* Raw RSA and our own encoding: also any digest PKCS#11 has no
     * name for (SHA-3). */
    if (p11b_sig_usable(ctx, CKM_RSA_X_509)) {
        job->mech.mechanism = CKM_RSA_X_509;
        if (pad_pss(job, st, tbs, slen))
            return 1;
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "EMSA-PSS encoding for raw RSA failed");
        return 0;
    }
    return no_mechanism(ctx, "PSS", st);
}

/* Sign the planned job. A token whose CKM_RSA_PKCS_PSS refuses the
 * parameters (SoftHSM: an MGF1 digest other than the hash) gets raw RSA
 * with the encoding done here, when it has CKM_RSA_X_509. */
static int sign_job(struct p11b_sig_ctx *ctx, const struct rsa_settings *st,
                    struct rsa_job *job, const unsigned char *mhash,
                    unsigned char *sig, size_t *siglen)
{
    enum p11b_outcome done;
    CK_RV rv;

    *siglen = st->modlen;
    if (job->mech.mechanism != CKM_RSA_PKCS_PSS ||
        !p11b_sig_usable(ctx, CKM_RSA_X_509))
        return p11b_sig_token_sign(ctx, &job->mech, job->in, job->inlen, sig,
                                   siglen, NULL);
    done = p11b_sig_token_call(ctx, &job->mech, job->in, job->inlen, sig,
                               siglen, &rv);
    if (done != P11B_OUT_TOKEN)
        return done == P11B_OUT_OK; /* a failure is raised already */
    if (rv != CKR_ARGUMENTS_BAD && rv != CKR_MECHANISM_PARAM_INVALID) {
        p11b_sig_raise_rv(ctx, &job->mech, rv);
        return 0;
    }
    job->mech.mechanism = CKM_RSA_X_509;
    job->mech.pParameter = NULL;
    job->mech.ulParameterLen = 0;
    if (!pad_pss(job, st, mhash, job->pss.sLen)) {
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "EMSA-PSS encoding for raw RSA failed");
        return 0;
    }
    *siglen = st->modlen;
    return p11b_sig_token_sign(ctx, &job->mech, job->in, job->inlen, sig,
                               siglen, NULL);
}

static int rsa_sign_digest(struct p11b_sig_ctx *ctx, unsigned char *sig,
                           size_t *siglen, const unsigned char *tbs,
                           size_t tbslen)
{
    struct rsa_settings st;
    struct rsa_job job;
    int ok = 0;

    memset(&job, 0, sizeof(job));
    if (!read_settings(ctx, &st)) {
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "cannot read the RSA signature settings of %s",
                   ctx->key->uri);
        goto done;
    }
    switch (st.pad) {
    case RSA_PKCS1_PADDING:
        ok = plan_pkcs1(ctx, &st, tbs, tbslen, &job);
        break;
    case RSA_PKCS1_PSS_PADDING:
        ok = plan_pss(ctx, &st, tbs, tbslen, &job);
        break;
    case RSA_NO_PADDING:
        job.mech.mechanism = CKM_RSA_X_509;
        job.in = tbs;
        job.inlen = tbslen;
        if (tbslen != st.modlen)
            P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
                       "input of %zu bytes: raw RSA needs exactly %zu",
                       tbslen, st.modlen);
        else if (!p11b_sig_usable(ctx, CKM_RSA_X_509))
            no_mechanism(ctx, "raw (no padding)", &st);
        else
            ok = 1;
        break;
    default:
        P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
                   "RSA padding mode %d is not supported", st.pad);
        break;
    }
    if (ok)
        ok = sign_job(ctx, &st, &job, tbs, sig, siglen);
done:
    OPENSSL_cleanse(job.buf, sizeof(job.buf));
    settings_free(&st);
    return ok;
}

static int rsa_sign(void *vctx, unsigned char *sig, size_t *siglen,
                    size_t sigsize, const unsigned char *tbs, size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op != P11B_SIG_SIGN ||
        !p11b_sig_size_check(ctx, sig, siglen, sigsize))
        return 0;
    if (sig == NULL)
        return 1;
    return rsa_sign_digest(ctx, sig, siglen, tbs, tbslen);
}

static int rsa_digest_sign_final(void *vctx, unsigned char *sig,
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
    return rsa_sign_digest(ctx, sig, siglen, md, mdlen);
}

/* EVP_DigestSign (libssl's handshake signature): hashed at once, no
 * update/final and no duplicate of the context. */
static int rsa_digest_sign(void *vctx, unsigned char *sig, size_t *siglen,
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
    return rsa_sign_digest(ctx, sig, siglen, md, mdlen);
}

/* Keep these tables next to p11b_sig_set_ctx_params / get_ctx_params,
 * which hand every key to the software twin. */
static const OSSL_PARAM rsa_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *rsa_settable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return rsa_settable;
}

static const OSSL_PARAM rsa_gettable[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *rsa_gettable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return rsa_gettable;
}

const OSSL_DISPATCH p11b_rsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))rsa_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))rsa_sign },
    { OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))rsa_verify_init },
    { OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))p11b_sig_verify },
    { OSSL_FUNC_SIGNATURE_VERIFY_RECOVER_INIT,
      (void (*)(void))rsa_verify_recover_init },
    { OSSL_FUNC_SIGNATURE_VERIFY_RECOVER,
      (void (*)(void))p11b_sig_verify_recover },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
      (void (*)(void))rsa_digest_sign_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,
      (void (*)(void))rsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))rsa_digest_sign },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT,
      (void (*)(void))rsa_digest_verify_init },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE,
      (void (*)(void))p11b_sig_digest_verify_update },
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL,
      (void (*)(void))p11b_sig_digest_verify_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))rsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS,
      (void (*)(void))p11b_sig_set_ctx_params },
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
      (void (*)(void))rsa_settable_ctx_params },
    { 0, NULL }
};

/* ---- OpenSSL 3.4+: composite algorithms, sign only -------------------- */
#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
static OSSL_FUNC_signature_newctx_fn rsa_sha224_newctx;
static OSSL_FUNC_signature_newctx_fn rsa_sha256_newctx;
static OSSL_FUNC_signature_newctx_fn rsa_sha384_newctx;
static OSSL_FUNC_signature_newctx_fn rsa_sha512_newctx;
static OSSL_FUNC_signature_sign_fn rsa_msg_sign;
static OSSL_FUNC_signature_query_key_types_fn rsa_key_types;

static void *rsa_sha224_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_RSA, "SHA224");
}

static void *rsa_sha256_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_RSA, "SHA256");
}

static void *rsa_sha384_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_RSA, "SHA384");
}

static void *rsa_sha512_newctx(void *provctx, const char *propq)
{
    return p11b_sig_newctx_md(provctx, propq, P11B_SIG_RSA, "SHA512");
}

/* One shot: a message after sign_message_init, a digest after sign_init. */
static int rsa_msg_sign(void *vctx, unsigned char *sig, size_t *siglen,
                        size_t sigsize, const unsigned char *tbs,
                        size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op == P11B_SIG_SIGN)
        return rsa_sign(vctx, sig, siglen, sigsize, tbs, tbslen);
    if (sig != NULL && !p11b_sig_digest_sign_update(vctx, tbs, tbslen))
        return 0;
    return rsa_digest_sign_final(vctx, sig, siglen, sigsize);
}

static const char **rsa_key_types(void)
{
    static const char *types[] = { "RSA", NULL };

    return types;
}

const OSSL_DISPATCH p11b_rsa_sha224_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_sha224_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))rsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))rsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))rsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))rsa_key_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_rsa_sha256_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_sha256_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))rsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))rsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))rsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))rsa_key_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_rsa_sha384_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_sha384_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))rsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))rsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))rsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))rsa_key_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_rsa_sha512_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_sha512_newctx },
    { OSSL_FUNC_SIGNATURE_SIGN_INIT,
      (void (*)(void))p11b_sig_composite_sign_init },
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))rsa_msg_sign },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT,
      (void (*)(void))p11b_sig_message_init },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_UPDATE,
      (void (*)(void))p11b_sig_digest_sign_update },
    { OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_FINAL, (void (*)(void))rsa_digest_sign_final },
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))p11b_sig_freectx },
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))p11b_sig_dupctx },
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
      (void (*)(void))p11b_sig_get_ctx_params },
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS,
      (void (*)(void))rsa_gettable_ctx_params },
    { OSSL_FUNC_SIGNATURE_QUERY_KEY_TYPES, (void (*)(void))rsa_key_types },
    { 0, NULL }
};
#endif
