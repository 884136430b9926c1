/*
 * Signature context shared by the RSA and ECDSA families (signature.h).
 */
#include "config.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>

#include "pkcs11/log.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"
#include "provider/errors.h"
#include "provider/digest_mechs.h"
#include "provider/key.h"
#include "provider/provider.h"
#include "provider/signature.h"

void *p11b_sig_newctx(void *provctx, const char *propq,
                      enum p11b_sig_kind kind)
{
    struct p11b_sig_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx == NULL)
        return NULL;
    ctx->prov = provctx;
    ctx->kind = kind;
    if (propq != NULL) {
        ctx->propq = OPENSSL_strdup(propq);
        if (ctx->propq == NULL) {
            OPENSSL_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
void *p11b_sig_newctx_md(void *provctx, const char *propq,
                         enum p11b_sig_kind kind, const char *md)
{
    struct p11b_sig_ctx *ctx = p11b_sig_newctx(provctx, propq, kind);

    if (ctx != NULL)
        ctx->fixed_md = md;
    return ctx;
}
#endif

/* Forget the operation, keep the provider and properties. */
static void sig_reset(struct p11b_sig_ctx *ctx)
{
    if (ctx->soft_md != NULL)
        EVP_MD_CTX_free(ctx->soft_md); /* owns ctx->soft */
    else
        EVP_PKEY_CTX_free(ctx->soft);
    ctx->soft_md = NULL;
    ctx->soft = NULL;
    ctx->twin_deferred = 0;
    ctx->mdname[0] = '\0';
    EVP_MD_free(ctx->md);
    ctx->md = NULL;
    EVP_MD_CTX_free(ctx->md_ctx);
    ctx->md_ctx = NULL;
    OPENSSL_free(ctx->msg);
    ctx->msg = NULL;
    ctx->msg_len = 0;
    ctx->buffer_msg = 0;
    p11b_key_free(ctx->key);
    ctx->key = NULL;
    ctx->op = P11B_SIG_NONE;
}

void p11b_sig_freectx(void *vctx)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx == NULL)
        return;
    sig_reset(ctx);
    OPENSSL_free(ctx->propq);
    OPENSSL_free(ctx);
}

static int dup_soft(const struct p11b_sig_ctx *src, struct p11b_sig_ctx *dst)
{
    if (src->soft_md != NULL) {
        dst->soft_md = EVP_MD_CTX_new();
        if (dst->soft_md == NULL ||
            !EVP_MD_CTX_copy_ex(dst->soft_md, src->soft_md))
            return 0;
        dst->soft = EVP_MD_CTX_get_pkey_ctx(dst->soft_md);
        return 1;
    }
    if (src->soft != NULL) {
        dst->soft = EVP_PKEY_CTX_dup(src->soft);
        return dst->soft != NULL;
    }
    return 1;
}

/* Deep copy: the hash state is ours, in software, so an operation in
 * flight can always be duplicated. No session is held between calls. */
void *p11b_sig_dupctx(void *vctx)
{
    const struct p11b_sig_ctx *src = vctx;
    struct p11b_sig_ctx *dst = p11b_sig_newctx(src->prov, src->propq,
                                               src->kind);

    if (dst == NULL)
        return NULL;
    dst->op = src->op;
    dst->fixed_md = src->fixed_md;
    dst->key = p11b_key_up_ref(src->key);
    dst->buffer_msg = src->buffer_msg;
    dst->twin_deferred = src->twin_deferred;
    memcpy(dst->mdname, src->mdname, sizeof(dst->mdname));
    if (src->md != NULL && EVP_MD_up_ref(src->md))
        dst->md = src->md;
    if (!dup_soft(src, dst))
        goto err;
    if (src->md_ctx != NULL) {
        dst->md_ctx = EVP_MD_CTX_new();
        if (dst->md_ctx == NULL || !EVP_MD_CTX_copy_ex(dst->md_ctx, src->md_ctx))
            goto err;
    }
    if (src->msg_len > 0) {
        dst->msg = OPENSSL_memdup(src->msg, src->msg_len);
        if (dst->msg == NULL)
            goto err;
        dst->msg_len = src->msg_len;
    }
    return dst;
err:
    p11b_sig_freectx(dst);
    return NULL;
}

static int check_key(struct p11b_sig_ctx *ctx, struct p11b_key *key,
                     enum p11b_sig_op op)
{
    if (key == NULL || key->pub_pkey == NULL) {
        P11B_RAISE(ctx->prov, P11B_R_NO_PUBLIC_KEY, "key without public half");
        return 0;
    }
    if ((op == P11B_SIG_SIGN || op == P11B_SIG_DIGEST_SIGN) &&
        key->priv == NULL) {
        P11B_RAISE(ctx->prov, P11B_R_UNSUPPORTED_KEY,
                   "%s: signing needs a private key on the token",
                   key->uri != NULL ? key->uri : "public key");
        return 0;
    }
    return 1;
}

int p11b_sig_init(void *vctx, void *keydata, const OSSL_PARAM params[],
                  enum p11b_sig_op op)
{
    struct p11b_sig_ctx *ctx = vctx;
    struct p11b_key *key = keydata;

    if (key == NULL)
        key = ctx->key; /* re-init with the same key */
    if (!check_key(ctx, key, op))
        return 0;
    p11b_key_up_ref(key);
    sig_reset(ctx);
    ctx->key = key;
    ctx->op = op;
    ctx->soft = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, key->pub_pkey,
                                           P11B_SOFT_PROPQ);
    if (ctx->soft == NULL)
        goto err;
    if (op == P11B_SIG_VERIFY_RECOVER) {
        if (EVP_PKEY_verify_recover_init_ex(ctx->soft, params) <= 0)
            goto err;
    } else if (EVP_PKEY_verify_init_ex(ctx->soft, params) <= 0) {
        goto err;
    }
    return 1;
err:
    P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
               "cannot set up the software side of the signature");
    sig_reset(ctx);
    return 0;
}

/* A combined mechanism needs the message itself: keep it when, for this
 * digest, some padding would have to use one for want of a raw mechanism.
 * What counts is what the key can use: the token's mechanisms and the
 * key's CKA_ALLOWED_MECHANISMS (a key may allow only a combined one). */
static int token_needs_message(struct p11b_sig_ctx *ctx, const EVP_MD *md)
{
    const struct p11b_digest_mechs *dm = p11b_digest_mechs(md);
    const struct p11b_key *key = ctx->key;

    if (dm == NULL)
        return 0;
    if (ctx->kind != P11B_SIG_RSA)
        return !p11b_key_can_use(key, CKM_ECDSA) &&
               p11b_key_can_use(key, dm->ecdsa);
    if (p11b_key_can_use(key, CKM_RSA_X_509))
        return 0;
    return (!p11b_key_can_use(key, CKM_RSA_PKCS) &&
            p11b_key_can_use(key, dm->rsa_pkcs)) ||
           (!p11b_key_can_use(key, CKM_RSA_PKCS_PSS) &&
            p11b_key_can_use(key, dm->rsa_pss));
}

/* The key's twin template for mdname (see key.h), made if the key has
 * none yet; NULL when it has one for another digest. */
static EVP_MD_CTX *twin_template(struct p11b_sig_ctx *ctx, const char *mdname)
{
    struct p11b_key *key = ctx->key;
    const char *name = mdname != NULL ? mdname : "";
    EVP_MD_CTX *t = NULL, *made;
    int have;

    if (strlen(name) >= sizeof(key->twin_md))
        return NULL;
    pthread_mutex_lock(&key->lock);
    have = key->twin_tmpl != NULL;
    if (have && strcmp(key->twin_md, name) == 0)
        t = key->twin_tmpl;
    pthread_mutex_unlock(&key->lock);
    if (have)
        return t;
    made = EVP_MD_CTX_new();
    ERR_set_mark(); /* the caller's own attempt says what is wrong */
    if (made == NULL ||
        !EVP_DigestVerifyInit_ex(made, NULL, mdname, ctx->prov->libctx,
                                 P11B_SOFT_PROPQ, key->pub_pkey, NULL)) {
        ERR_pop_to_mark();
        EVP_MD_CTX_free(made);
        return NULL;
    }
    ERR_clear_last_mark();
    pthread_mutex_lock(&key->lock);
    if (key->twin_tmpl == NULL) {
        key->twin_tmpl = made;
        strcpy(key->twin_md, name);
        made = NULL;
    }
    if (strcmp(key->twin_md, name) == 0)
        t = key->twin_tmpl;
    pthread_mutex_unlock(&key->lock);
    EVP_MD_CTX_free(made); /* another thread's came first */
    return t;
}

/* The twin of a digest operation: a DigestVerify context on the public
 * half with the same digest and parameters; without parameters, a copy
 * of the key's template. */
static int make_digest_twin(struct p11b_sig_ctx *ctx, const char *mdname,
                            const OSSL_PARAM params[])
{
    EVP_MD_CTX *tmpl = NULL;

    if (params == NULL || params[0].key == NULL)
        tmpl = twin_template(ctx, mdname);
    ctx->soft_md = EVP_MD_CTX_new();
    if (tmpl != NULL) {
        if (ctx->soft_md == NULL || !EVP_MD_CTX_copy_ex(ctx->soft_md, tmpl))
            return 0;
        ctx->soft = EVP_MD_CTX_get_pkey_ctx(ctx->soft_md);
        return ctx->soft != NULL;
    }
    return ctx->soft_md != NULL &&
           EVP_DigestVerifyInit_ex(ctx->soft_md, &ctx->soft, mdname,
                                   ctx->prov->libctx, P11B_SOFT_PROPQ,
                                   ctx->key->pub_pkey, params);
}

/* Make a deferred twin now: parameters are being set or asked for. */
static int ensure_twin(struct p11b_sig_ctx *ctx)
{
    if (!ctx->twin_deferred)
        return 1;
    ctx->twin_deferred = 0;
    return make_digest_twin(ctx, ctx->mdname, NULL);
}

int p11b_sig_digest_init(void *vctx, const char *mdname, void *keydata,
                         const OSSL_PARAM params[], enum p11b_sig_op op)
{
    struct p11b_sig_ctx *ctx = vctx;
    struct p11b_key *key = keydata != NULL ? keydata : ctx->key;
    EVP_MD *md = NULL;

    if (!check_key(ctx, key, op))
        return 0;
    p11b_key_up_ref(key);
    sig_reset(ctx);
    ctx->key = key;
    ctx->op = op;
    /* ECDSA signing with no parameters needs nothing of the twin but the
     * digest: defer it (most of a P-256 signature's own cost). */
    if (op == P11B_SIG_DIGEST_SIGN && ctx->kind == P11B_SIG_ECDSA &&
        (params == NULL || params[0].key == NULL) &&
        strlen(mdname != NULL ? mdname : "SHA256") < sizeof(ctx->mdname)) {
        strcpy(ctx->mdname, mdname != NULL ? mdname : "SHA256");
        ctx->twin_deferred = 1;
    } else if (!make_digest_twin(ctx, mdname, params)) {
        goto err;
    }
    /* EdDSA signs the message itself, in one go: nothing to hash here. */
    if (op == P11B_SIG_DIGEST_VERIFY || ctx->kind == P11B_SIG_EDDSA)
        return 1;
    if (!p11b_prov_module_ready(ctx->prov))
        goto err_raised;
    if (p11b_sig_md(ctx, &md) == NULL)
        goto err;
    ctx->buffer_msg = token_needs_message(ctx, md);
    EVP_MD_free(md);
    return 1;
err:
    P11B_RAISE(ctx->prov, P11B_R_INTERNAL, "cannot set up digest %s",
               mdname != NULL ? mdname : "(default)");
err_raised:
    EVP_MD_free(md);
    sig_reset(ctx);
    return 0;
}

#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
int p11b_sig_message_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
    struct p11b_sig_ctx *ctx = vctx;

    return p11b_sig_digest_init(vctx, ctx->fixed_md, keydata, params,
                                P11B_SIG_DIGEST_SIGN);
}

int p11b_sig_composite_sign_init(void *vctx, void *keydata,
                                 const OSSL_PARAM params[])
{
    struct p11b_sig_ctx *ctx = vctx;
    OSSL_PARAM md[2];

    if (!p11b_sig_init(vctx, keydata, params, P11B_SIG_SIGN))
        return 0;
    md[0] = OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST,
                                             (char *)ctx->fixed_md, 0);
    md[1] = OSSL_PARAM_construct_end();
    if (EVP_PKEY_CTX_set_params(ctx->soft, md))
        return 1;
    P11B_RAISE(ctx->prov, P11B_R_INTERNAL, "cannot set digest %s",
               ctx->fixed_md);
    return 0;
}
#endif

/* The operation's digest: the one asked for at init, else the twin's
 * (its default, or what parameters set); fetched once per context. */
const EVP_MD *p11b_sig_md(struct p11b_sig_ctx *ctx, EVP_MD **fetched)
{
    char name[64] = "";
    OSSL_PARAM params[2];

    *fetched = NULL;
    if (ctx->md == NULL && ctx->twin_deferred) {
        ctx->md = p11b_digest_fetch(&ctx->prov->digests, ctx->prov->libctx,
                                    P11B_SOFT_PROPQ, ctx->mdname);
    } else if (ctx->md == NULL) {
        params[0] = OSSL_PARAM_construct_utf8_string(
            OSSL_SIGNATURE_PARAM_DIGEST, name, sizeof(name));
        params[1] = OSSL_PARAM_construct_end();
        if (ctx->soft == NULL || !EVP_PKEY_CTX_get_params(ctx->soft, params) ||
            name[0] == '\0')
            return NULL;
        ctx->md = p11b_digest_fetch(&ctx->prov->digests, ctx->prov->libctx,
                                    P11B_SOFT_PROPQ, name);
    }
    if (ctx->md == NULL || !EVP_MD_up_ref(ctx->md))
        return NULL;
    *fetched = ctx->md;
    return *fetched;
}

/* The message hash, started at the first update. */
static int md_ctx_ready(struct p11b_sig_ctx *ctx)
{
    EVP_MD *md = NULL;
    int ok;

    if (ctx->md_ctx != NULL)
        return 1;
    ctx->md_ctx = EVP_MD_CTX_new();
    ok = ctx->md_ctx != NULL && p11b_sig_md(ctx, &md) != NULL &&
         EVP_DigestInit_ex2(ctx->md_ctx, md, NULL);
    EVP_MD_free(md);
    return ok;
}

int p11b_sig_verify(void *vctx, const unsigned char *sig, size_t siglen,
                    const unsigned char *tbs, size_t tbslen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op != P11B_SIG_VERIFY)
        return 0;
    return EVP_PKEY_verify(ctx->soft, sig, siglen, tbs, tbslen) == 1;
}

int p11b_sig_verify_recover(void *vctx, unsigned char *rout, size_t *routlen,
                            size_t routsize, const unsigned char *sig,
                            size_t siglen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op != P11B_SIG_VERIFY_RECOVER)
        return 0;
    *routlen = routsize;
    return EVP_PKEY_verify_recover(ctx->soft, rout, routlen, sig, siglen) == 1;
}

int p11b_sig_digest_sign_update(void *vctx, const unsigned char *data,
                                size_t datalen)
{
    struct p11b_sig_ctx *ctx = vctx;
    unsigned char *grown;

    if (ctx->op != P11B_SIG_DIGEST_SIGN || !md_ctx_ready(ctx))
        return 0;
    if (ctx->buffer_msg && datalen > 0) {
        grown = OPENSSL_realloc(ctx->msg, ctx->msg_len + datalen);
        if (grown == NULL)
            return 0;
        memcpy(grown + ctx->msg_len, data, datalen);
        ctx->msg = grown;
        ctx->msg_len += datalen;
    }
    return EVP_DigestUpdate(ctx->md_ctx, data, datalen);
}

int p11b_sig_digest_verify_update(void *vctx, const unsigned char *data,
                                  size_t datalen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op != P11B_SIG_DIGEST_VERIFY)
        return 0;
    return EVP_DigestVerifyUpdate(ctx->soft_md, data, datalen);
}

int p11b_sig_digest_verify_final(void *vctx, const unsigned char *sig,
                                 size_t siglen)
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx->op != P11B_SIG_DIGEST_VERIFY)
        return 0;
    return EVP_DigestVerifyFinal(ctx->soft_md, sig, siglen) == 1;
}

int p11b_sig_digest_sign_input(struct p11b_sig_ctx *ctx, unsigned char *md,
                               size_t *mdlen)
{
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok;

    /* Finish a copy: the context stays usable for another final. */
    ok = tmp != NULL && md_ctx_ready(ctx) &&
         EVP_MD_CTX_copy_ex(tmp, ctx->md_ctx) &&
         EVP_DigestFinal_ex(tmp, md, &len);
    EVP_MD_CTX_free(tmp);
    *mdlen = len;
    if (!ok)
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL, "hashing the message failed");
    return ok;
}

int p11b_sig_digest_sign_oneshot(struct p11b_sig_ctx *ctx,
                                 const unsigned char *tbs, size_t tbslen,
                                 unsigned char *md, size_t *mdlen)
{
    EVP_MD *d = NULL;
    unsigned int len = 0;
    int ok;

    /* A message the token signs whole is kept; so is one begun by
     * updates (not a one-shot use, but still answered). */
    if (ctx->buffer_msg || ctx->md_ctx != NULL)
        return p11b_sig_digest_sign_update(ctx, tbs, tbslen) &&
               p11b_sig_digest_sign_input(ctx, md, mdlen);
    ok = p11b_sig_md(ctx, &d) != NULL &&
         EVP_Digest(tbs, tbslen, md, &len, d, NULL);
    EVP_MD_free(d);
    *mdlen = len;
    if (!ok)
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL, "hashing the message failed");
    return ok;
}

int p11b_sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    struct p11b_sig_ctx *ctx = vctx;

    /* The AlgorithmIdentifier, digest, padding and salt length of the
     * software twin are ours: it has the same settings. */
    if (ctx == NULL || !ensure_twin(ctx) || ctx->soft == NULL)
        return 0;
    return EVP_PKEY_CTX_get_params(ctx->soft, params);
}

int p11b_sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    struct p11b_sig_ctx *ctx = vctx;

    if (ctx == NULL)
        return 0;
    if (params == NULL || params[0].key == NULL)
        return 1;
    if (!ensure_twin(ctx) || ctx->soft == NULL)
        return 0;
    /* The software side validates every value (digest names, padding
     * modes, salt lengths, key restrictions) and keeps it; a digest not
     * in use yet is read from it again. */
    if (ctx->md_ctx == NULL) {
        EVP_MD_free(ctx->md);
        ctx->md = NULL;
    }
    return EVP_PKEY_CTX_set_params(ctx->soft, params);
}

static int sign_once(struct p11b_sig_ctx *ctx, CK_MECHANISM *mech,
                     const unsigned char *in, size_t inlen, unsigned char *out,
                     size_t *outlen, CK_RV *rv_out)
{
    struct p11b_key_op kop;
    enum p11b_op_stage stage;

    if (!p11b_key_op_begin(ctx->key, &kop))
        return 0;
    *rv_out = p11b_op_sign(&kop.op, mech, in, inlen, out, outlen, &stage);
    return p11b_key_op_end(&kop, *rv_out, stage);
}

void p11b_sig_raise_rv(struct p11b_sig_ctx *ctx, const CK_MECHANISM *mech,
                       CK_RV rv)
{
    P11B_RAISE_RV(ctx->prov, P11B_R_OPERATION_FAILED, rv,
                  "C_Sign with %s, key %s", p11b_mech_name(mech->mechanism),
                  ctx->key->uri);
}

enum p11b_outcome p11b_sig_token_call(struct p11b_sig_ctx *ctx,
                                      CK_MECHANISM *mech,
                                      const unsigned char *in, size_t inlen,
                                      unsigned char *out, size_t *outlen,
                                      CK_RV *rv)
{
    size_t cap = *outlen;
    int tries;

    *rv = CKR_GENERAL_ERROR;
    if (!p11b_key_check_mech_size(ctx->key, mech->mechanism))
        return P11B_OUT_RAISED;
    for (tries = 0; tries < 2; tries++) {
        *outlen = cap;
        if (!sign_once(ctx, mech, in, inlen, out, outlen, rv))
            return P11B_OUT_RAISED;
        /* Sessions or login lost under us: once more, afresh. */
        if (*rv == CKR_OK || !p11b_rv_retry(*rv))
            break;
    }
    return *rv == CKR_OK ? P11B_OUT_OK : P11B_OUT_TOKEN;
}

int p11b_sig_token_sign(struct p11b_sig_ctx *ctx, CK_MECHANISM *mech,
                        const unsigned char *in, size_t inlen,
                        unsigned char *out, size_t *outlen, CK_RV *rv_out)
{
    CK_RV rv;
    enum p11b_outcome done =
        p11b_sig_token_call(ctx, mech, in, inlen, out, outlen, &rv);

    if (rv_out != NULL)
        *rv_out = rv;
    if (done == P11B_OUT_TOKEN)
        p11b_sig_raise_rv(ctx, mech, rv);
    return done == P11B_OUT_OK;
}

int p11b_sig_usable(struct p11b_sig_ctx *ctx, CK_MECHANISM_TYPE mech)
{
    return p11b_key_can_use(ctx->key, mech);
}

int p11b_sig_digest_fits(struct p11b_sig_ctx *ctx, const EVP_MD *md,
                         size_t tbslen)
{
    if (md == NULL || tbslen == (size_t)EVP_MD_get_size(md))
        return 1;
    P11B_RAISE(ctx->prov, P11B_R_BAD_INPUT,
               "input of %zu bytes is not a %s digest (%d bytes)", tbslen,
               EVP_MD_get0_name(md), EVP_MD_get_size(md));
    return 0;
}

int p11b_sig_size_check(struct p11b_sig_ctx *ctx, unsigned char *sig,
                        size_t *siglen, size_t sigsize)
{
    size_t need = (size_t)EVP_PKEY_get_size(ctx->key->pub_pkey);

    if (sig == NULL) {
        *siglen = need;
        return 1;
    }
    if (sigsize < need) {
        P11B_RAISE(ctx->prov, P11B_R_INTERNAL,
                   "signature buffer of %zu bytes, %zu needed", sigsize, need);
        return 0;
    }
    return 1;
}
