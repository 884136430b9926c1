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
#include "provider/asymcipher_rsa_ir.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/provider.h"

/* OpenSSL 3.2+: PKCS#1 v1.5 decryption with implicit rejection. A fixed
 * name, so a provider built on 3.0 reads it from a newer libcrypto too. */
#ifndef OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION
#define OSSL_ASYM_CIPHER_PARAM_IMPLICIT_REJECTION "implicit-rejection"
#endif

#define TLS_PREMASTER_LEN 48
/* OpenSSL's RSA_PKCS1_WITH_TLS_PADDING (not in its public headers). */
#define P11B_RSA_TLS_PADDING 7


struct rsa_cipher_ctx {
    struct p11b_prov *prov;
    struct p11b_key *key;
    EVP_PKEY_CTX *soft; /* holds and checks every parameter */
    int decrypt;
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

/* A copy of the key's encryption template (key.h), made at its first
 * use; NULL when it cannot be had (the caller builds a context itself). */
static EVP_PKEY_CTX *enc_template_dup(struct rsa_cipher_ctx *ctx,
                                      struct p11b_key *key)
{
    EVP_PKEY_CTX *t, *made = NULL;

    pthread_mutex_lock(&key->lock);
    t = key->enc_tmpl;
    pthread_mutex_unlock(&key->lock);
    if (t == NULL) {
        ERR_set_mark(); /* the caller's own attempt says what is wrong */
        made = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, key->pub_pkey,
                                          P11B_SOFT_PROPQ);
        if (made == NULL || EVP_PKEY_encrypt_init_ex(made, NULL) <= 0) {
            ERR_pop_to_mark();
            EVP_PKEY_CTX_free(made);
            return NULL;
        }
        ERR_clear_last_mark();
        pthread_mutex_lock(&key->lock);
        if (key->enc_tmpl == NULL) {
            key->enc_tmpl = made;
            made = NULL;
        }
        t = key->enc_tmpl;
        pthread_mutex_unlock(&key->lock);
        EVP_PKEY_CTX_free(made); /* another thread's came first */
    }
    /* Set once, never changed while the key lives: read without the lock. */
    return EVP_PKEY_CTX_dup(t);
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
    /* The software side is always an encryption context: it accepts the
     * same parameters and answers for them. Without parameters, a copy
     * of the key's template (a new one costs ~18k instructions). */
    if (params == NULL || params[0].key == NULL) {
        ctx->soft = enc_template_dup(ctx, key);
        if (ctx->soft != NULL)
            return 1;
    }
    ctx->soft = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, key->pub_pkey,
                                           P11B_SOFT_PROPQ);
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

/*
 * The token's decryption gives an enum p11b_outcome (errors.h) and the
 * CK_RV: P11B_OUT_RAISED for what failed before or around the token's
 * call (reported where it happened), P11B_OUT_TOKEN for the token's own
 * answer, which the caller turns into one error with fail(). Neither
 * depends on the ciphertext except through rv, and fail() reads the same
 * for every rv that might.
 */
static enum p11b_outcome decrypt_once(struct rsa_cipher_ctx *ctx,
                                      CK_MECHANISM *mech,
                                      const unsigned char *in, size_t inlen,
                                      unsigned char *out, size_t *outlen,
                                      CK_RV *rv)
{
    struct p11b_key_op kop;
    enum p11b_op_stage stage;

    *rv = CKR_GENERAL_ERROR;
    if (!p11b_key_op_begin(ctx->key, &kop))
        return P11B_OUT_RAISED;
    *rv = p11b_op_decrypt(&kop.op, mech, in, inlen, out, outlen, &stage);
    if (!p11b_key_op_end(&kop, *rv, stage))
        return P11B_OUT_RAISED;
    return *rv == CKR_OK ? P11B_OUT_OK : P11B_OUT_TOKEN;
}

/* C_Decrypt with one more try when the session or login was lost. */
static enum p11b_outcome token_decrypt(struct rsa_cipher_ctx *ctx,
                                       CK_MECHANISM *mech,
                                       const unsigned char *in, size_t inlen,
                                       unsigned char *out, size_t *outlen,
                                       CK_RV *rv)
{
    enum p11b_outcome done = P11B_OUT_RAISED;
    size_t cap = *outlen;
    int tries;

    *rv = CKR_KEY_SIZE_RANGE;
    if (!p11b_key_check_mech_size(ctx->key, mech->mechanism))
        return P11B_OUT_RAISED;
    for (tries = 0; tries < 2; tries++) {
        *outlen = cap;
        done = decrypt_once(ctx, mech, in, inlen, out, outlen, rv);
        if (done != P11B_OUT_TOKEN || !p11b_rv_retry(*rv))
            break;
    }
    return done;
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

/* 0 after a failure of the token's call, raised with fail(); 0 after
 * one reported already; 1 when done. */
static int reported(struct rsa_cipher_ctx *ctx, enum p11b_outcome done,
                    CK_RV rv, const char *what)
{
    if (done == P11B_OUT_TOKEN)
        return fail(ctx, rv, what);
    return done == P11B_OUT_OK;
}

/* Raw decryption into buf (modlen bytes). */
static enum p11b_outcome decrypt_raw(struct rsa_cipher_ctx *ctx,
                                     const unsigned char *in, size_t inlen,
                                     unsigned char *buf, size_t modlen,
                                     CK_RV *rv)
{
    CK_MECHANISM mech = { CKM_RSA_X_509, NULL, 0 };
    size_t len = modlen;
    enum p11b_outcome done =
        token_decrypt(ctx, &mech, in, inlen, buf, &len, rv);

    /* Some tokens strip leading zero bytes of the raw result. */
    if (done == P11B_OUT_OK && len < modlen) {
        memmove(buf + (modlen - len), buf, len);
        memset(buf, 0, modlen - len);
    }
    return done;
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
    int n = -1;
    CK_RV rv;

    if (RAND_priv_bytes_ex(ctx->prov->libctx, rnd, sizeof(rnd), 0) <= 0) {
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "no random bytes for the TLS pre-master secret");
        return 0;
    }
    /* Whatever failed, and however it was reported, a random secret. */
    ERR_set_mark();
    if (usable(ctx, CKM_RSA_X_509)) {
        if (decrypt_raw(ctx, in, inlen, buf, st->modlen, &rv) == P11B_OUT_OK)
            n = RSA_padding_check_PKCS1_type_2(pms, (int)st->modlen, buf,
                                               (int)st->modlen,
                                               (int)st->modlen);
    } else {
        n = token_decrypt(ctx, &mech, in, inlen, pms, &len, &rv) == P11B_OUT_OK
                ? (int)len
                : -1;
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

/* Implicit rejection keyed by the token's raw decryption of 2 (2^d mod
 * n): OpenSSL keys it with the private exponent, which a token never
 * reveals; only the key's holder can compute this value either. */
static int implicit_rejection(struct rsa_cipher_ctx *ctx,
                              const struct dec_settings *st,
                              const unsigned char *em, const unsigned char *in,
                              size_t inlen, unsigned char *out, size_t *outlen)
{
    unsigned char two[1024], sec[1024];
    enum p11b_outcome done;
    CK_RV rv;
    int ok;

    memset(two, 0, st->modlen);
    two[st->modlen - 1] = 2;
    done = decrypt_raw(ctx, two, st->modlen, sec, st->modlen, &rv);
    ok = reported(ctx, done, rv, "PKCS#1 v1.5") &&
         p11b_rsac_unpad_implicit(ctx->prov, st, sec, em, in, inlen, out,
                                  outlen);
    OPENSSL_cleanse(sec, sizeof(sec));
    return ok;
}

/* OAEP and PKCS#1 v1.5 on a raw decryption, with OpenSSL's checks. */
static int unpad_soft(struct rsa_cipher_ctx *ctx, const struct dec_settings *st,
                      unsigned char *out, size_t *outlen, size_t outsize,
                      const unsigned char *in, size_t inlen)
{
    unsigned char buf[1024];
    enum p11b_outcome done;
    int n = -1;
    CK_RV rv;
    const char *mode = st->pad == RSA_PKCS1_OAEP_PADDING ? "OAEP"
                                                          : "PKCS#1 v1.5";

    /* Public sizes first: nothing below may fail but for the data. */
    if (st->pad == RSA_PKCS1_PADDING && st->implicit_rejection &&
        outsize < st->modlen - 11) {
        P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
                   "output buffer of %zu bytes, %zu needed", outsize,
                   st->modlen - 11);
        return 0;
    }
    done = decrypt_raw(ctx, in, inlen, buf, st->modlen, &rv);
    if (!reported(ctx, done, rv, mode))
        return 0;
    if (st->pad == RSA_PKCS1_PADDING && st->implicit_rejection) {
        /* as OpenSSL 3.2+'s own provider: never an error for the data
         * (only a failed computation is raised, nothing about the data) */
        n = implicit_rejection(ctx, st, buf, in, inlen, out, outlen);
        OPENSSL_cleanse(buf, sizeof(buf));
        return n;
    }
    ERR_set_mark();
    if (st->pad == RSA_PKCS1_OAEP_PADDING)
        n = RSA_padding_check_PKCS1_OAEP_mgf1(
            out, (int)outsize, buf, (int)st->modlen, (int)st->modlen,
            st->label, (int)st->label_len, st->oaep_md,
            st->mgf1_md != NULL ? st->mgf1_md : st->oaep_md);
    else
        n = RSA_padding_check_PKCS1_type_2(out, (int)outsize, buf,
                                           (int)st->modlen, (int)st->modlen);
    ERR_pop_to_mark(); /* theirs says which check failed: ours won't */
    OPENSSL_cleanse(buf, sizeof(buf));
    if (n < 0)
        return fail(ctx, CKR_ENCRYPTED_DATA_INVALID, mode);
    *outlen = (size_t)n;
    return 1;
}

/* OAEP on the token. A token without the mechanism or digest gives
 * P11B_OUT_TOKEN with CKR_MECHANISM_INVALID, as if it had refused. */
static enum p11b_outcome decrypt_oaep_token(struct rsa_cipher_ctx *ctx,
                                            const struct dec_settings *st,
                                            unsigned char *out, size_t *outlen,
                                            const unsigned char *in,
                                            size_t inlen, CK_RV *rv)
{
    const struct p11b_digest_mechs *dm = p11b_digest_mechs(st->oaep_md);
    const struct p11b_digest_mechs *mgf = p11b_digest_mechs(
        st->mgf1_md != NULL ? st->mgf1_md : st->oaep_md);
    CK_RSA_PKCS_OAEP_PARAMS oaep;
    CK_MECHANISM mech = { CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };

    *rv = CKR_MECHANISM_INVALID;
    if (dm == NULL || mgf == NULL || !usable(ctx, CKM_RSA_PKCS_OAEP))
        return P11B_OUT_TOKEN;
    /* Tokens' support for OAEP labels is unreliable (SoftHSM ignores the
     * label and then fails the check): with a label, and raw RSA at hand,
     * the padding is checked here. */
    if (st->label_len > 0 && usable(ctx, CKM_RSA_X_509)) {
        *rv = CKR_MECHANISM_PARAM_INVALID;
        return P11B_OUT_TOKEN;
    }
    oaep.hashAlg = dm->hash;
    oaep.mgf = mgf->mgf1;
    /* CKZ_DATA_SPECIFIED even without a label: NSS refuses source 0. */
    oaep.source = CKZ_DATA_SPECIFIED;
    oaep.pSourceData = st->label;
    oaep.ulSourceDataLen = st->label_len;
    return token_decrypt(ctx, &mech, in, inlen, out, outlen, rv);
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

static int no_mechanism(struct rsa_cipher_ctx *ctx, int pad)
{
    P11B_RAISE(ctx->prov, P11B_R_MECH_UNSUPPORTED,
               "%s: no token mechanism for RSA padding mode %d", ctx->key->uri,
               pad);
    return 0;
}

static int decrypt_oaep(struct rsa_cipher_ctx *ctx,
                        const struct dec_settings *st, unsigned char *out,
                        size_t *outlen, size_t outsize, const unsigned char *in,
                        size_t inlen)
{
    CK_RV rv;
    enum p11b_outcome done =
        decrypt_oaep_token(ctx, st, out, outlen, in, inlen, &rv);

    /* The token has no OAEP for this digest (SoftHSM: SHA-1 only): raw
     * decryption, and OpenSSL's OAEP check here. */
    if (done == P11B_OUT_TOKEN && oaep_refused(rv) &&
        usable(ctx, CKM_RSA_X_509))
        return unpad_soft(ctx, st, out, outlen, outsize, in, inlen);
    return reported(ctx, done, rv, "OAEP");
}

static int decrypt_pkcs1(struct rsa_cipher_ctx *ctx,
                         const struct dec_settings *st, unsigned char *out,
                         size_t *outlen, size_t outsize,
                         const unsigned char *in, size_t inlen)
{
    CK_MECHANISM mech = { CKM_RSA_PKCS, NULL, 0 };
    enum p11b_outcome done;
    CK_RV rv;

    /* Implicit rejection turned off on 3.2+ (CMS does): a token may still
     * reject implicitly on its own (SoftHSM linked to 3.2+), so with raw
     * RSA at hand the padding is checked here, explicitly. */
    if (usable(ctx, CKM_RSA_PKCS) &&
        !(explicit_rejection_asked(st) && usable(ctx, CKM_RSA_X_509))) {
        done = token_decrypt(ctx, &mech, in, inlen, out, outlen, &rv);
        return reported(ctx, done, rv, "PKCS#1 v1.5");
    }
    if (usable(ctx, CKM_RSA_X_509))
        return unpad_soft(ctx, st, out, outlen, outsize, in, inlen);
    return no_mechanism(ctx, st->pad);
}

/* Every path below raises its own failure, exactly once: the result
 * decides, the error queue only reports. */
static int rsac_decrypt(void *vctx, unsigned char *out, size_t *outlen,
                        size_t outsize, const unsigned char *in, size_t inlen)
{
    struct rsa_cipher_ctx *ctx = vctx;
    struct dec_settings st;
    enum p11b_outcome done;
    int ok = 0;
    size_t need;
    CK_RV rv;

    if (!ctx->decrypt)
        return 0;
    if (!read_settings(ctx, &st)) {
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "cannot read the RSA decryption settings of %s",
                   ctx->key->uri);
        settings_free(&st);
        return 0;
    }
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
        if (!usable(ctx, CKM_RSA_X_509)) {
            ok = no_mechanism(ctx, st.pad);
            break;
        }
        done = decrypt_raw(ctx, in, inlen, out, st.modlen, &rv);
        ok = reported(ctx, done, rv, "raw");
        *outlen = st.modlen;
        break;
    case RSA_PKCS1_OAEP_PADDING:
        ok = decrypt_oaep(ctx, &st, out, outlen, outsize, in, inlen);
        break;
    case RSA_PKCS1_PADDING:
        ok = decrypt_pkcs1(ctx, &st, out, outlen, outsize, in, inlen);
        break;
    default:
        ok = no_mechanism(ctx, st.pad);
        break;
    }
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
