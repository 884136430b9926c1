/*
 * RSA decryption with token keys (PKCS#1 v1.5, OAEP, raw, and the TLS
 * pre-master secret mode of libssl); encryption runs in software on the
 * public half.
 *
 * Where the token cannot do the padding asked for (SoftHSM's OAEP knows
 * SHA-1 only), it decrypts raw (CKM_RSA_X_509) and the padding is removed
 * with OpenSSL's own constant-time checks. In the TLS mode a bad padding
 * or version gives a random pre-master secret, chosen without a branch on
 * the secret data, never an error (Bleichenbacher).
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* RSA_padding_check_*: no EVP form */
#include "config.h"

#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "pkcs11/log.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"
#include "provider/digest_mechs.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/provider.h"

/* OpenSSL 3.2+: PKCS#1 v1.5 decryption with implicit rejection. A fixed
 * name, so a provider built on 3.0 reads it from a newer libcrypto too. */
#ifndef OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION
#define OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION "implicit-rejection"
#endif

#define TLS_PREMASTER_LEN 48
/* Implicit rejection: 16-bit length candidates drawn for the synthetic
 * message, as in the IETF draft (draft-irtf-cfrg-rsa-guidance). */
#define IR_LEN_TRIES 128
/* OpenSSL's RSA_PKCS1_WITH_TLS_PADDING (not in its public headers). */
#define P11B_RSA_TLS_PADDING 7

struct rsa_cipher_ctx {
    struct p11b_prov *prov;
    struct p11b_key *key;
    EVP_PKEY_CTX *soft; /* holds and checks every parameter */
    int decrypt;
};

struct dec_settings {
    int pad;
    EVP_MD *oaep_md;
    EVP_MD *mgf1_md;
    void *label;
    size_t label_len;
    unsigned int client_version;
    unsigned int alt_version;
    unsigned int implicit_rejection; /* what the twin says; 0 on 3.0/3.1 */
    size_t modlen;
};

static OSSL_FUNC_asym_cipher_newctx_fn rsac_newctx;
static OSSL_FUNC_asym_cipher_encrypt_init_fn rsac_encrypt_init;
static OSSL_FUNC_asym_cipher_encrypt_fn rsac_encrypt;
static OSSL_FUNC_asym_cipher_decrypt_init_fn rsac_decrypt_init;
static OSSL_FUNC_asym_cipher_decrypt_fn rsac_decrypt;
static OSSL_FUNC_asym_cipher_freectx_fn rsac_freectx;
static OSSL_FUNC_asym_cipher_dupctx_fn rsac_dupctx;
static OSSL_FUNC_asym_cipher_get_ctx_params_fn rsac_get_ctx_params;
static OSSL_FUNC_asym_cipher_gettable_ctx_params_fn rsac_gettable_ctx_params;
static OSSL_FUNC_asym_cipher_set_ctx_params_fn rsac_set_ctx_params;
static OSSL_FUNC_asym_cipher_settable_ctx_params_fn rsac_settable_ctx_params;

static void *rsac_newctx(void *provctx)
{
    struct rsa_cipher_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx != NULL)
        ctx->prov = provctx;
    return ctx;
}

static int rsac_init(struct rsa_cipher_ctx *ctx, struct p11b_key *key,
                     const OSSL_PARAM params[], int decrypt)
{
    if (key == NULL || key->pub_pkey == NULL ||
        (decrypt && key->priv == NULL)) {
        P11B_RAISE(ctx->prov, P11B_R_UNSUPPORTED_KEY,
                   "%s: decryption needs a private key on the token",
                   key != NULL && key->uri != NULL ? key->uri : "key");
        return 0;
    }
    p11b_key_up_ref(key);
    p11b_key_free(ctx->key);
    ctx->key = key;
    ctx->decrypt = decrypt;
    EVP_PKEY_CTX_free(ctx->soft);
    ctx->soft = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, key->pub_pkey,
                                           P11B_SOFT_PROPQ);
    /* The software side is always an encryption context: it accepts the
     * same parameters and answers for them. */
    return ctx->soft != NULL && EVP_PKEY_encrypt_init_ex(ctx->soft, params) > 0;
}

static int rsac_encrypt_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    return rsac_init(vctx, key, params, 0);
}

static int rsac_decrypt_init(void *vctx, void *key, const OSSL_PARAM params[])
{
    return rsac_init(vctx, key, params, 1);
}

static int rsac_encrypt(void *vctx, unsigned char *out, size_t *outlen,
                        size_t outsize, const unsigned char *in, size_t inlen)
{
    struct rsa_cipher_ctx *ctx = vctx;

    if (ctx->decrypt)
        return 0;
    *outlen = outsize;
    return EVP_PKEY_encrypt(ctx->soft, out, outlen, in, inlen) > 0;
}

/* ---- decryption ------------------------------------------------------- */

static void settings_free(struct dec_settings *st)
{
    EVP_MD_free(st->oaep_md);
    EVP_MD_free(st->mgf1_md);
}

static int read_settings(struct rsa_cipher_ctx *ctx, struct dec_settings *st)
{
    char md[64] = "", mgf1[64] = "";
    OSSL_PARAM p[8];

    memset(st, 0, sizeof(*st));
    p[0] = OSSL_PARAM_construct_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, &st->pad);
    p[1] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST,
                                            md, sizeof(md));
    p[2] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST,
                                            mgf1, sizeof(mgf1));
    p[3] = OSSL_PARAM_construct_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL,
                                          &st->label, 0);
    p[4] = OSSL_PARAM_construct_uint(
        OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, &st->client_version);
    p[5] = OSSL_PARAM_construct_uint(
        OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, &st->alt_version);
    /* The default provider of 3.2+ reports its rule (on unless turned
     * off); 3.0's does not know the key and leaves it unset: off. */
    p[6] = OSSL_PARAM_construct_uint(OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION,
                                     &st->implicit_rejection);
    p[7] = OSSL_PARAM_construct_end();
    if (!EVP_PKEY_CTX_get_params(ctx->soft, p))
        return 0;
    if (!OSSL_PARAM_modified(&p[6]))
        st->implicit_rejection = 0;
    st->label_len = p[3].return_size;
    if (st->label == NULL)
        st->label_len = 0;
    if (md[0] != '\0')
        st->oaep_md = EVP_MD_fetch(ctx->prov->libctx, md, P11B_SOFT_PROPQ);
    if (mgf1[0] != '\0')
        st->mgf1_md = EVP_MD_fetch(ctx->prov->libctx, mgf1, P11B_SOFT_PROPQ);
    st->modlen = (size_t)EVP_PKEY_get_size(ctx->key->pub_pkey);
    return st->modlen > 0 && st->modlen <= 1024;
}

static int usable(struct rsa_cipher_ctx *ctx, CK_MECHANISM_TYPE mech)
{
    return p11b_key_can_use(ctx->key, mech);
}

static CK_RV decrypt_once(struct rsa_cipher_ctx *ctx, CK_MECHANISM *mech,
                          const unsigned char *in, size_t inlen,
                          unsigned char *out, size_t *outlen, int *raised)
{
    struct p11b_key_op kop;
    enum p11b_op_stage stage;
    CK_RV rv;

    if (!p11b_key_op_begin(ctx->key, &kop)) {
        *raised = 1;
        return CKR_GENERAL_ERROR;
    }
    rv = p11b_op_decrypt(&kop.op, mech, in, inlen, out, outlen, &stage);
    if (!p11b_key_op_end(&kop, rv, stage))
        *raised = 1;
    return rv;
}

/* C_Decrypt with one more try when the session or login was lost. */
static CK_RV token_decrypt(struct rsa_cipher_ctx *ctx, CK_MECHANISM *mech,
                           const unsigned char *in, size_t inlen,
                           unsigned char *out, size_t *outlen, int *raised)
{
    size_t cap = *outlen;
    CK_RV rv = CKR_OK;
    int tries;

    *raised = 0;
    if (!p11b_key_check_mech_size(ctx->key, mech->mechanism)) {
        *raised = 1;
        return CKR_KEY_SIZE_RANGE;
    }
    for (tries = 0; tries < 2 && !*raised; tries++) {
        *outlen = cap;
        rv = decrypt_once(ctx, mech, in, inlen, out, outlen, raised);
        if (rv == CKR_OK || !p11b_rv_retry(rv))
            break;
    }
    return rv;
}

/* 1 if rv says something about the data (a padding or ciphertext the
 * token refused), as opposed to the token, session or key. */
static int rv_about_data(CK_RV rv)
{
    return !p11b_rv_is_token_gone(rv) && !p11b_rv_retry(rv) &&
           rv != CKR_KEY_FUNCTION_NOT_PERMITTED && rv != CKR_PIN_EXPIRED &&
           rv != CKR_MECHANISM_INVALID && rv != CKR_KEY_SIZE_RANGE;
}

static int fail(struct rsa_cipher_ctx *ctx, CK_RV rv, const char *what)
{
    /* Bleichenbacher: every failure that depends on the ciphertext reads
     * the same, whichever check (the token's or ours) found it. */
    if (rv_about_data(rv))
        P11B_RAISE(ctx->prov, P11B_R_OPERATION_FAILED,
                   "RSA decryption (%s) with %s failed", what,
                   ctx->key->uri);
    else
        P11B_RAISE_RV(ctx->prov, P11B_R_OPERATION_FAILED, rv,
                      "RSA decryption (%s) with %s", what, ctx->key->uri);
    return 0;
}

/* Raw decryption into buf (modlen bytes). */
static CK_RV decrypt_raw(struct rsa_cipher_ctx *ctx, const unsigned char *in,
                         size_t inlen, unsigned char *buf, size_t modlen,
                         int *raised)
{
    CK_MECHANISM mech = { CKM_RSA_X_509, NULL, 0 };
    size_t len = modlen;
    CK_RV rv = token_decrypt(ctx, &mech, in, inlen, buf, &len, raised);

    /* Some tokens strip leading zero bytes of the raw result. */
    if (rv == CKR_OK && len < modlen) {
        memmove(buf + (modlen - len), buf, len);
        memset(buf, 0, modlen - len);
    }
    return rv;
}

/* Branch-free byte mask: 0xff when a == b. */
static unsigned char eq_mask(unsigned int a, unsigned int b)
{
    unsigned int x = a ^ b;

    return (unsigned char)(((x | (0U - x)) >> (sizeof(x) * 8 - 1)) - 1U);
}

/* libssl's RSA key exchange: never an error, a random pre-master secret
 * when anything is wrong, selected without branching on the secret. */
static int decrypt_tls(struct rsa_cipher_ctx *ctx, const struct dec_settings *st,
                       unsigned char *out, const unsigned char *in,
                       size_t inlen)
{
    unsigned char buf[1024], pms[1024], rnd[TLS_PREMASTER_LEN], good;
    CK_MECHANISM mech = { CKM_RSA_PKCS, NULL, 0 };
    size_t len = st->modlen, i;
    int raised = 0, n = -1;
    CK_RV rv;

    if (RAND_priv_bytes_ex(ctx->prov->libctx, rnd, sizeof(rnd), 0) <= 0)
        return 0;
    ERR_set_mark();
    if (usable(ctx, CKM_RSA_X_509)) {
        rv = decrypt_raw(ctx, in, inlen, buf, st->modlen, &raised);
        if (rv == CKR_OK)
            n = RSA_padding_check_PKCS1_type_2(pms, (int)st->modlen, buf,
                                               (int)st->modlen,
                                               (int)st->modlen);
    } else {
        rv = token_decrypt(ctx, &mech, in, inlen, pms, &len, &raised);
        n = rv == CKR_OK ? (int)len : -1;
    }
    ERR_pop_to_mark(); /* no trace of the outcome */
    good = eq_mask((unsigned int)n, TLS_PREMASTER_LEN);
    good &= (unsigned char)(eq_mask(pms[0], (st->client_version >> 8) & 0xff) &
                            eq_mask(pms[1], st->client_version & 0xff)) |
            (unsigned char)(eq_mask(pms[0], (st->alt_version >> 8) & 0xff) &
                            eq_mask(pms[1], st->alt_version & 0xff) &
                            (unsigned char)~eq_mask(st->alt_version, 0));
    for (i = 0; i < TLS_PREMASTER_LEN; i++)
        out[i] = (unsigned char)((pms[i] & good) | (rnd[i] & ~good));
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(pms, sizeof(pms));
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return 1;
}

/* ---- implicit rejection (OpenSSL 3.2+) -------------------------------- */

/* The draft's PRF: HMAC-SHA256(kdk, I || label || bit length) blocks. */
static int ir_prf(struct rsa_cipher_ctx *ctx, const unsigned char *kdk,
                  const char *label, unsigned char *out, size_t outlen)
{
    unsigned char in[32], block[32];
    size_t llen = strlen(label), done = 0, n, len = 0;
    unsigned int i;
    int ok = 1;

    for (i = 0; ok && done < outlen; i++) {
        in[0] = (unsigned char)(i >> 8);
        in[1] = (unsigned char)i;
        memcpy(in + 2, label, llen);
        in[2 + llen] = (unsigned char)((outlen * 8) >> 8);
        in[3 + llen] = (unsigned char)(outlen * 8);
        ok = EVP_Q_mac(ctx->prov->libctx, "HMAC", P11B_SOFT_PROPQ, "SHA256",
                       NULL, kdk, 32, in, llen + 4, block, sizeof(block),
                       &len) != NULL && len == sizeof(block);
        n = outlen - done < len ? outlen - done : len;
        if (ok)
            memcpy(out + done, block, n);
        done += n;
    }
    OPENSSL_cleanse(block, sizeof(block));
    return ok;
}

/* The key-derivation key for this ciphertext. OpenSSL keys it with the
 * private exponent, which a token never reveals; here the secret is the
 * token's private operation on the fixed value 2 (2^d mod n), which only
 * the key's holder can compute either. */
static int ir_kdk(struct rsa_cipher_ctx *ctx, const struct dec_settings *st,
                  const unsigned char *in, size_t inlen, unsigned char *kdk)
{
    unsigned char blk[1024], sec[1024], key[32];
    size_t k = st->modlen, len = 0;
    unsigned int klen = 0;
    int raised = 0, ok;
    CK_RV rv;

    memset(blk, 0, k);
    blk[k - 1] = 2;
    rv = decrypt_raw(ctx, blk, k, sec, k, &raised);
    if (rv != CKR_OK)
        return raised ? 0 : fail(ctx, rv, "PKCS#1 v1.5");
    ok = EVP_Digest(sec, k, key, &klen, EVP_sha256(), NULL);
    memset(blk, 0, k); /* the ciphertext, left-padded to the modulus */
    memcpy(blk + (k - inlen), in, inlen);
    ok = ok && EVP_Q_mac(ctx->prov->libctx, "HMAC", P11B_SOFT_PROPQ,
                         "SHA256", NULL, key, klen, blk, k, kdk, 32,
                         &len) != NULL;
    OPENSSL_cleanse(sec, sizeof(sec));
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok)
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "implicit rejection: deriving the key failed");
    return ok;
}

/* PKCS#1 v1.5 with implicit rejection on raw decryption `em`: a bad
 * padding yields a synthetic message that depends only on the key and the
 * ciphertext, chosen without branching on the padding's validity. */
static int unpad_implicit(struct rsa_cipher_ctx *ctx,
                          const struct dec_settings *st, const unsigned char *em,
                          const unsigned char *in, size_t inlen,
                          unsigned char *out, size_t *outlen)
{
    unsigned char msg[1024], synth[1024], lens[2 * IR_LEN_TRIES], kdk[32];
    unsigned int max = (unsigned int)st->modlen - 10, mask = max, cand;
    unsigned int synlen = 0, lt, good, i;
    unsigned char goodb;
    int n, ok;

    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    ok = ir_kdk(ctx, st, in, inlen, kdk) &&
         ir_prf(ctx, kdk, "length", lens, sizeof(lens)) &&
         ir_prf(ctx, kdk, "message", synth, st->modlen);
    OPENSSL_cleanse(kdk, sizeof(kdk));
    if (!ok)
        return 0;
    /* the last candidate below max - the draft's rule */
    for (i = 0; i < IR_LEN_TRIES; i++) {
        cand = (((unsigned int)lens[2 * i] << 8) | lens[2 * i + 1]) & mask;
        lt = 0U - ((cand - max) >> (sizeof(cand) * 8 - 1));
        synlen = (cand & lt) | (synlen & ~lt);
    }
    memset(msg, 0, sizeof(msg));
    ERR_set_mark();
    n = RSA_padding_check_PKCS1_type_2(msg, (int)sizeof(msg), em,
                                       (int)st->modlen, (int)st->modlen);
    ERR_pop_to_mark(); /* no trace of which check failed */
    good = ~(0U - ((unsigned int)n >> (sizeof(good) * 8 - 1)));
    goodb = (unsigned char)good;
    for (i = 0; i < max - 1; i++)
        out[i] = (unsigned char)((msg[i] & goodb) | (synth[i] & ~goodb));
    *outlen = ((unsigned int)n & good) | (synlen & ~good);
    OPENSSL_cleanse(msg, sizeof(msg));
    OPENSSL_cleanse(synth, sizeof(synth));
    OPENSSL_cleanse(lens, sizeof(lens));
    return 1;
}

/* OAEP and PKCS#1 v1.5 on a raw decryption, with OpenSSL's checks. */
static int unpad_soft(struct rsa_cipher_ctx *ctx, const struct dec_settings *st,
                      unsigned char *out, size_t *outlen, size_t outsize,
                      const unsigned char *in, size_t inlen)
{
    unsigned char buf[1024];
    int raised = 0, n = -1;
    CK_RV rv = decrypt_raw(ctx, in, inlen, buf, st->modlen, &raised);

    const char *mode = st->pad == RSA_PKCS1_OAEP_PADDING ? "OAEP"
                                                          : "PKCS#1 v1.5";

    if (raised)
        return 0;
    if (rv != CKR_OK)
        return fail(ctx, rv, mode);
    if (st->pad == RSA_PKCS1_PADDING && st->implicit_rejection) {
        /* as OpenSSL 3.2+'s own provider: never an error for the data */
        n = outsize >= st->modlen - 11 &&
            unpad_implicit(ctx, st, buf, in, inlen, out, outlen);
        OPENSSL_cleanse(buf, sizeof(buf));
        if (n == 0 && ERR_peek_last_error() == 0)
            P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
                       "output buffer of %zu bytes, %zu needed", outsize,
                       st->modlen - 11);
        return n;
    }
    if (st->pad == RSA_PKCS1_OAEP_PADDING)
        n = RSA_padding_check_PKCS1_OAEP_mgf1(
            out, (int)outsize, buf, (int)st->modlen, (int)st->modlen,
            st->label, (int)st->label_len, st->oaep_md,
            st->mgf1_md != NULL ? st->mgf1_md : st->oaep_md);
    else
        n = RSA_padding_check_PKCS1_type_2(out, (int)outsize, buf,
                                           (int)st->modlen, (int)st->modlen);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (n < 0) {
        ERR_clear_error(); /* theirs says which check failed: ours won't */
        return fail(ctx, CKR_ENCRYPTED_DATA_INVALID, mode);
    }
    *outlen = (size_t)n;
    return 1;
}

static int decrypt_oaep_token(struct rsa_cipher_ctx *ctx,
                              const struct dec_settings *st, unsigned char *out,
                              size_t *outlen, const unsigned char *in,
                              size_t inlen, CK_RV *rv_out)
{
    const struct p11b_digest_mechs *dm = p11b_digest_mechs(st->oaep_md);
    const struct p11b_digest_mechs *mgf = p11b_digest_mechs(
        st->mgf1_md != NULL ? st->mgf1_md : st->oaep_md);
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    CK_MECHANISM mech = { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };
    int raised = 0;

    *rv_out = CKR_MECHANISM_INVALID;
    if (dm == NULL || mgf == NULL || !usable(ctx, CKM_RSA_PKCS_OAEP))
        return 0;
    /* Tokens' support for OAEP labels is unreliable (SoftHSM ignores the
     * label and then fails the check): with a label, and raw RSA at hand,
     * the padding is checked here. */
    if (st->label_len > 0 && usable(ctx, CKM_RSA_X_509)) {
        *rv_out = CKR_MECHANISM_PARAM_INVALID;
        return 0;
    }
    oaep.hashAlg = dm->hash;
    oaep.mgf = mgf->mgf1;
    /* CKZ_DATA_SPECIFIED even without a label: NSS refuses source 0. */
    oaep.source = CKZ_DATA_SPECIFIED;
    oaep.pSourceData = st->label;
    oaep.ulSourceDataLen = st->label_len;
    *rv_out = token_decrypt(ctx, &mech, in, inlen, out, outlen, &raised);
    return raised ? -1 : *rv_out == CKR_OK;
}

/* The token refused the OAEP mechanism or its parameters, as opposed to
 * the data. */
static int oaep_refused(CK_RV rv)
{
    return rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID ||
           rv == CKR_ARGUMENTS_BAD;
}

static int have_implicit_rejection(void);

/* The caller turned implicit rejection off where OpenSSL has it. */
static int explicit_rejection_asked(const struct dec_settings *st)
{
    return have_implicit_rejection() && !st->implicit_rejection;
}

static int rsac_decrypt(void *vctx, unsigned char *out, size_t *outlen,
                        size_t outsize, const unsigned char *in, size_t inlen)
{
    struct rsa_cipher_ctx *ctx = vctx;
    CK_MECHANISM mech = { CKM_RSA_PKCS, NULL, 0 };
    struct dec_settings st;
    int ok = 0, raised = 0, r;
    size_t need;
    CK_RV rv = CKR_OK;

    if (!ctx->decrypt || !read_settings(ctx, &st))
        return 0;
    if (out == NULL) {
        *outlen = st.modlen;
        settings_free(&st);
        return 1;
    }
    if (inlen > st.modlen) {
        P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
                   "ciphertext of %zu bytes is longer than the %zu-byte "
                   "modulus", inlen, st.modlen);
        settings_free(&st);
        return 0;
    }
    /* Checked before the token sees it: a token answers a short buffer
     * with CKR_BUFFER_TOO_SMALL and keeps the operation going. Like the
     * default provider, a buffer shorter than the modulus is refused
     * whatever the plaintext's length would be. */
    need = st.pad == P11B_RSA_TLS_PADDING ? TLS_PREMASTER_LEN : st.modlen;
    if (outsize < need) {
        P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
                   "RSA decryption output buffer of %zu bytes, %zu needed",
                   outsize, need);
        settings_free(&st);
        return 0;
    }
    *outlen = outsize;
    switch (st.pad) {
    case P11B_RSA_TLS_PADDING:
        ok = decrypt_tls(ctx, &st, out, in, inlen);
        *outlen = TLS_PREMASTER_LEN;
        break;
    case RSA_NO_PADDING:
        if (!usable(ctx, CKM_RSA_X_509))
            break;
        rv = decrypt_raw(ctx, in, inlen, out, st.modlen, &raised);
        ok = rv == CKR_OK;
        *outlen = st.modlen;
        if (!ok && !raised)
            fail(ctx, rv, "raw");
        settings_free(&st);
        return ok;
    case RSA_PKCS1_OAEP_PADDING:
        r = decrypt_oaep_token(ctx, &st, out, outlen, in, inlen, &rv);
        ok = r > 0;
        if (r != 0)
            break;
        /* The token has no OAEP for this digest (SoftHSM: SHA-1 only):
         * raw decryption, and OpenSSL's OAEP check here. */
        if (oaep_refused(rv) && usable(ctx, CKM_RSA_X_509))
            ok = unpad_soft(ctx, &st, out, outlen, outsize, in, inlen);
        else
            fail(ctx, rv, "OAEP");
        break;
    case RSA_PKCS1_PADDING:
        /* Implicit rejection turned off on 3.2+ (CMS does): a token may
         * still reject implicitly on its own (SoftHSM linked to 3.2+), so
         * with raw RSA at hand the padding is checked here, explicitly. */
        if (usable(ctx, CKM_RSA_PKCS) &&
            !(explicit_rejection_asked(&st) && usable(ctx, CKM_RSA_X_509))) {
            rv = token_decrypt(ctx, &mech, in, inlen, out, outlen, &raised);
            ok = rv == CKR_OK;
            if (!ok && !raised)
                fail(ctx, rv, "PKCS#1 v1.5");
        } else if (usable(ctx, CKM_RSA_X_509)) {
            ok = unpad_soft(ctx, &st, out, outlen, outsize, in, inlen);
        }
        break;
    default:
        break;
    }
    if (!ok && ERR_peek_last_error() == 0)
        P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
                   "%s: no token mechanism for RSA padding mode %d",
                   ctx->key->uri, st.pad);
    settings_free(&st);
    return ok;
}

/* ---- context ----------------------------------------------------------- */

static void rsac_freectx(void *vctx)
{
    struct rsa_cipher_ctx *ctx = vctx;

    if (ctx == NULL)
        return;
    EVP_PKEY_CTX_free(ctx->soft);
    p11b_key_free(ctx->key);
    OPENSSL_free(ctx);
}

static void *rsac_dupctx(void *vctx)
{
    struct rsa_cipher_ctx *src = vctx, *dst = rsac_newctx(src->prov);

    if (dst == NULL)
        return NULL;
    dst->decrypt = src->decrypt;
    dst->key = p11b_key_up_ref(src->key);
    if (src->soft != NULL) {
        dst->soft = EVP_PKEY_CTX_dup(src->soft);
        if (dst->soft == NULL) {
            rsac_freectx(dst);
            return NULL;
        }
    }
    return dst;
}

static int rsac_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    struct rsa_cipher_ctx *ctx = vctx;

    return ctx->soft != NULL && EVP_PKEY_CTX_get_params(ctx->soft, params);
}

static const OSSL_PARAM rsac_gettable[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
    OSSL_PARAM_END
};

/* The same, with the implicit-rejection key of OpenSSL 3.2+ */
static const OSSL_PARAM rsac_gettable_ir[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION, NULL),
    OSSL_PARAM_END
};

/* A run-time check, not a compile-time one: the libcrypto we run under
 * (and so the twin) decides, whatever headers we were built with. */
static int have_implicit_rejection(void)
{
    return OPENSSL_version_major() > 3 ||
           (OPENSSL_version_major() == 3 && OPENSSL_version_minor() >= 2);
}

static const OSSL_PARAM *rsac_gettable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return have_implicit_rejection() ? rsac_gettable_ir : rsac_gettable;
}

static int rsac_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    struct rsa_cipher_ctx *ctx = vctx;

    if (params == NULL || params[0].key == NULL)
        return 1;
    return ctx->soft != NULL && EVP_PKEY_CTX_set_params(ctx->soft, params);
}

/* Every key goes to the software twin (rsac_set_ctx_params). */
static const OSSL_PARAM rsac_settable[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
    OSSL_PARAM_END
};

static const OSSL_PARAM rsac_settable_ir[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION, NULL),
    OSSL_PARAM_END
};

static const OSSL_PARAM *rsac_settable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return have_implicit_rejection() ? rsac_settable_ir : rsac_settable;
}

const OSSL_DISPATCH p11b_rsa_asym_cipher_functions[] = {
    { OSSL_FUNC_ASYM_CIPHER_NEWCTX, (void (*)(void))rsac_newctx },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, (void (*)(void))rsac_encrypt_init },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT, (void (*)(void))rsac_encrypt },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (void (*)(void))rsac_decrypt_init },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT, (void (*)(void))rsac_decrypt },
    { OSSL_FUNC_ASYM_CIPHER_FREECTX, (void (*)(void))rsac_freectx },
    { OSSL_FUNC_ASYM_CIPHER_DUPCTX, (void (*)(void))rsac_dupctx },
    { OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS,
      (void (*)(void))rsac_get_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS,
      (void (*)(void))rsac_gettable_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS,
      (void (*)(void))rsac_set_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS,
      (void (*)(void))rsac_settable_ctx_params },
    { 0, NULL }
};
