/*
 * The "pkcs11" OSSL_STORE loader: private keys, public keys and X.509
 * certificates named by an RFC 7512 URI. Keys are handed out as
 * references to token objects; no key material leaves the token.
 *
 * There is deliberately no export_object: OpenSSL 3.0 would use it to copy
 * a key into another provider's keymgmt, which can only ever receive the
 * public half. Without it, the key is loaded by reference through our own
 * keymgmt.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "pkcs11/log.h"
#include "pkcs11/object.h"
#include "pkcs11/uri.h"
#include "provider/key.h"
#include "provider/lookup.h"

struct store_ctx {
    struct p11b_prov *prov;
    struct p11b_uri *uri;
    int expect;
    /* search criteria from set_ctx_params */
    X509_NAME *subject;
    X509_NAME *issuer;
    BIGNUM *serial;
    unsigned char *fingerprint;
    size_t fingerprint_len;
    char *alias;

    int searched;
    int failed;
    int failure_counted; /* store_eof said "not yet" once after failing */
    int noted;           /* the "not searched: no PIN" note was raised   */
    struct p11b_lookup found;
    size_t next;
};

static OSSL_FUNC_store_open_fn store_open;
static OSSL_FUNC_store_settable_ctx_params_fn store_settable_ctx_params;
static OSSL_FUNC_store_set_ctx_params_fn store_set_ctx_params;
static OSSL_FUNC_store_load_fn store_load;
static OSSL_FUNC_store_eof_fn store_eof;
static OSSL_FUNC_store_close_fn store_close;

/* ---- open ----------------------------------------------------------- */

static struct store_ctx *open_uri(struct p11b_prov *prov, const char *uristr)
{
    struct store_ctx *ctx;

    P11B_LOG(2, "store open");
    ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->prov = prov;
    ctx->uri = p11b_lookup_parse(prov, uristr);
    if (ctx->uri == NULL) {
        OPENSSL_free(ctx);
        return NULL;
    }
    return ctx;
}

/*
 * OSSL_STORE_open_ex sets an error mark, then offers the string to each
 * loader in turn, the file: loader first: by the time we are called, the
 * queue holds its "calling stat(<the whole string>)", pin-value and all,
 * and an application prints the queue when we refuse the URI too (a
 * malformed URI, a module-path that is not ours). So drop what the other
 * loaders queued, back to that mark, before we decide: OSSL_STORE_open_ex
 * drops it anyway when we succeed, and those errors only ever say that a
 * pkcs11: URI is no file name. The mark is set again for
 * OSSL_STORE_open_ex to clear, so no caller's mark is taken (OpenSSL 3.0
 * to 3.6 all work this way). A queue that was empty had no mark: it is
 * emptied.
 */
static void *store_open(void *provctx, const char *uristr)
{
    if (ERR_pop_to_mark())
        ERR_set_mark();
    return open_uri(provctx, uristr);
}

/* ---- search criteria ------------------------------------------------- */

static const OSSL_PARAM store_settable[] = {
    OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
    OSSL_PARAM_octet_string(OSSL_STORE_PARAM_SUBJECT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_STORE_PARAM_ISSUER, NULL, 0),
    OSSL_PARAM_BN(OSSL_STORE_PARAM_SERIAL, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_STORE_PARAM_FINGERPRINT, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_ALIAS, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *store_settable_ctx_params(void *provctx)
{
    (void)provctx;
    return store_settable;
}

static int set_name(const OSSL_PARAM *p, X509_NAME **out)
{
    const unsigned char *der;
    const void *data;
    size_t len;

    if (!OSSL_PARAM_get_octet_string_ptr(p, &data, &len))
        return 0;
    der = data;
    X509_NAME_free(*out);
    *out = d2i_X509_NAME(NULL, &der, (long)len);
    return *out != NULL;
}

static int store_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    struct store_ctx *ctx = vctx;
    const OSSL_PARAM *p;
    const void *data;
    size_t len;

    if (ctx == NULL)
        return 0;
    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    if (p != NULL && !OSSL_PARAM_get_int(p, &ctx->expect))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SUBJECT);
    if (p != NULL && !set_name(p, &ctx->subject))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ISSUER);
    if (p != NULL && !set_name(p, &ctx->issuer))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SERIAL);
    if (p != NULL && !OSSL_PARAM_get_BN(p, &ctx->serial))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_FINGERPRINT);
    if (p != NULL) {
        if (!OSSL_PARAM_get_octet_string_ptr(p, &data, &len))
            return 0;
        OPENSSL_free(ctx->fingerprint);
        ctx->fingerprint = OPENSSL_memdup(data, len);
        ctx->fingerprint_len = len;
        if (ctx->fingerprint == NULL)
            return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ALIAS);
    if (p != NULL) {
        OPENSSL_free(ctx->alias);
        ctx->alias = NULL;
        if (!OSSL_PARAM_get_utf8_string(p, &ctx->alias, 0))
            return 0;
    }
    return 1;
}

/* ---- what to look for -------------------------------------------------- */

/* The classes OSSL_STORE's expectation and search criteria allow. */
static unsigned int wanted_classes(const struct store_ctx *ctx)
{
    unsigned int want;
    int cert_criteria = ctx->subject != NULL || ctx->issuer != NULL ||
                        ctx->serial != NULL || ctx->fingerprint != NULL;

    switch (ctx->expect) {
    case OSSL_STORE_INFO_PKEY:
        want = P11B_LOOKUP_PRIV;
        break;
    case OSSL_STORE_INFO_PUBKEY:
        /* Public objects, or the public half of private keys. */
        want = P11B_LOOKUP_PUB | P11B_LOOKUP_PRIV;
        break;
    case OSSL_STORE_INFO_CERT:
        want = P11B_LOOKUP_CERT;
        break;
    default:
        want = P11B_LOOKUP_PRIV | P11B_LOOKUP_PUB | P11B_LOOKUP_CERT;
        break;
    }
    if (cert_criteria)
        want &= P11B_LOOKUP_CERT;
    return want;
}

static int cert_matches(const struct p11b_obj *o, void *arg)
{
    const struct store_ctx *ctx = arg;
    const unsigned char *p = o->value.data;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509 *x;
    int ok = 1;

    if (ctx->subject == NULL && ctx->issuer == NULL && ctx->serial == NULL &&
        ctx->fingerprint == NULL)
        return 1;
    if (!o->value.present)
        return 0;
    x = d2i_X509(NULL, &p, (long)o->value.len);
    if (x == NULL)
        return 0;
    if (ctx->subject != NULL)
        ok = X509_NAME_cmp(ctx->subject, X509_get_subject_name(x)) == 0;
    if (ok && ctx->issuer != NULL)
        ok = X509_NAME_cmp(ctx->issuer, X509_get_issuer_name(x)) == 0;
    if (ok && ctx->serial != NULL) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);

        ok = bn != NULL && BN_cmp(bn, ctx->serial) == 0;
        BN_free(bn);
    }
    if (ok && ctx->fingerprint != NULL) {
        const EVP_MD *md_type = ctx->fingerprint_len == 20 ? EVP_sha1()
                                                           : EVP_sha256();

        ok = X509_digest(x, md_type, md, &mdlen) &&
             mdlen == ctx->fingerprint_len &&
             memcmp(md, ctx->fingerprint, mdlen) == 0;
    }
    X509_free(x);
    return ok;
}

static int do_search(struct store_ctx *ctx, OSSL_PASSPHRASE_CALLBACK *cb,
                     void *cbarg)
{
    struct p11b_lookup_req req;

    memset(&req, 0, sizeof(req));
    req.uri = ctx->uri;
    req.classes = wanted_classes(ctx);
    req.public_only = ctx->expect == OSSL_STORE_INFO_PUBKEY;
    req.alias = ctx->alias;
    req.cert_ok = cert_matches;
    req.cert_arg = ctx;
    req.pw_cb = cb;
    req.pw_cbarg = cbarg;
    return p11b_lookup_run(ctx->prov, &req, &ctx->found);
}

/* ---- load, eof, close ------------------------------------------------- */

/*
 * A certificate's DER with its URI as the X.509 "alias" (X509_CERT_AUX):
 * OpenSSL's store reads certificates with d2i_X509_AUX, and prints the
 * alias in `-text` listings ("Alias: pkcs11:...") the way the key
 * encoders print a key's URI. The alias adds no trust settings, and
 * i2d_X509 (the handshake, PEM output) never writes it. NULL if the
 * DER cannot be re-encoded: then the certificate goes out as it is.
 */
static unsigned char *cert_with_alias(const struct p11b_obj *cert,
                                      const char *uri, size_t *out_len)
{
    const unsigned char *in = cert->value.data;
    unsigned char *der = NULL;
    X509 *x;
    int len = 0;

    if (uri == NULL)
        return NULL;
    x = d2i_X509(NULL, &in, (long)cert->value.len);
    if (x != NULL &&
        X509_alias_set1(x, (const unsigned char *)uri, (int)strlen(uri)))
        len = i2d_X509_AUX(x, &der);
    X509_free(x);
    if (len <= 0) {
        OPENSSL_free(der);
        return NULL;
    }
    *out_len = (size_t)len;
    return der;
}

static int emit(struct store_ctx *ctx, struct p11b_lookup_item *it,
                OSSL_CALLBACK *object_cb, void *object_cbarg)
{
    OSSL_PARAM params[5], *p = params;
    struct p11b_key_ref ref;
    unsigned char *der = NULL;
    size_t der_len = 0;
    int type, ok;

    if (it->key != NULL) {
        p11b_key_ref_init(&ref, it->key);
        type = OSSL_OBJECT_PKEY;
        *p++ = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        *p++ = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_TYPE,
            (char *)p11b_family_name(it->key->family), 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE,
                                                 &ref, sizeof(ref));
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DESC,
                                                it->key->uri, 0);
    } else {
        type = OSSL_OBJECT_CERT;
        der = cert_with_alias(it->cert, it->uri, &der_len);
        *p++ = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        if (der != NULL)
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA,
                                                     der, der_len);
        else
            *p++ = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA,
                                                     it->cert->value.data,
                                                     it->cert->value.len);
        if (it->uri != NULL)
            *p++ = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DESC,
                                                    it->uri, 0);
    }
    *p = OSSL_PARAM_construct_end();
    (void)ctx;
    ok = object_cb(params, object_cbarg);
    OPENSSL_free(der);
    return ok;
}

/*
 * A listing without a token's private objects (no PIN went to it) is a
 * listing of what is public, and succeeds. What it left out is said by
 * one more load after the last item (store_eof asks for it), which
 * raises the note and returns nothing: `openssl storeutl` prints the
 * error queue then, and still exits 0. A caller that takes what it wants
 * and stops before the end is not bothered with it.
 */
static void note_unsearched(struct store_ctx *ctx)
{
    if (ctx->noted || ctx->found.unsearched == 0)
        return;
    ctx->noted = 1;
    p11b_lookup_raise_unsearched(ctx->prov, &ctx->found);
}

static int store_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    struct store_ctx *ctx = vctx;

    if (ctx->failed)
        return 0;
    if (!ctx->searched) {
        ctx->searched = 1;
        if (!do_search(ctx, pw_cb, pw_cbarg)) {
            ctx->failed = 1;
            return 0;
        }
    }
    if (ctx->next >= ctx->found.n) {
        note_unsearched(ctx);
        return 0;
    }
    return emit(ctx, &ctx->found.items[ctx->next++], object_cb, object_cbarg);
}

/*
 * After a failed load, "not at the end" once: `openssl storeutl` counts an
 * error only when the store is not at its end, and would otherwise print
 * the error, "Total found: 0" and exit 0. It (and any caller that loops
 * until eof) loads once more, gets nothing, and then sees the end.
 */
static int store_eof(void *vctx)
{
    struct store_ctx *ctx = vctx;

    if (ctx->failed && !ctx->failure_counted) {
        ctx->failure_counted = 1;
        return 0;
    }
    if (ctx->failed)
        return 1;
    /* read to the end: one more load, for the note (note_unsearched) */
    if (ctx->searched && ctx->next >= ctx->found.n &&
        ctx->found.unsearched > 0 && !ctx->noted)
        return 0;
    return ctx->searched && ctx->next >= ctx->found.n;
}

/* Whether items[i] is one of the keys that make a URI ambiguous: private
 * keys; public keys when only public keys were asked for. */
static int counts_as_key(const struct store_ctx *ctx, size_t i)
{
    const struct p11b_key *key = ctx->found.items[i].key;

    return key != NULL &&
           (key->priv != NULL || ctx->expect == OSSL_STORE_INFO_PUBKEY);
}

/*
 * One key wanted, several matched: a caller that takes the first key and
 * closes the store without reading the others (openssl pkey -in, -key,
 * -inkey; Apache; any OSSL_STORE_load-once program) gets a key it cannot
 * use, with an error saying how many matched. A caller that reads to the
 * end (openssl storeutl, any listing) has seen them all: its keys work.
 * The store cannot tell the two apart any earlier: both open, set the
 * same expectation and load the first item the same way.
 */
static void mark_ambiguous(struct store_ctx *ctx)
{
    size_t i, total = 0, unread = 0;

    for (i = 0; i < ctx->found.n; i++) {
        if (counts_as_key(ctx, i)) {
            total++;
            unread += i >= ctx->next;
        }
    }
    if (total < 2 || unread == 0 || unread == total)
        return;
    P11B_LOG(1, "%zu keys match the URI; %zu taken without the others: "
                "refused at use",
             total, total - unread);
    for (i = 0; i < ctx->next; i++) {
        if (counts_as_key(ctx, i))
            atomic_store(&ctx->found.items[i].key->ambiguous, total);
    }
}

static int store_close(void *vctx)
{
    struct store_ctx *ctx = vctx;

    if (ctx == NULL)
        return 1;
    mark_ambiguous(ctx);
    p11b_lookup_clear(&ctx->found);
    p11b_uri_free(ctx->uri);
    X509_NAME_free(ctx->subject);
    X509_NAME_free(ctx->issuer);
    BN_free(ctx->serial);
    OPENSSL_free(ctx->fingerprint);
    OPENSSL_free(ctx->alias);
    OPENSSL_free(ctx);
    return 1;
}

const OSSL_DISPATCH p11b_pkcs11_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS,
      (void (*)(void))store_settable_ctx_params },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_ctx_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close },
    { 0, NULL }
};
