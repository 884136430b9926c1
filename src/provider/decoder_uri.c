/*
 * Decoders for the PEM-wrapped pkcs11: URI (uri_pem.h): a program that
 * reads a private key file (PEM_read_bio_PrivateKey, OSSL_DECODER: nginx,
 * Python's ssl, curl, pyOpenSSL; OSSL_STORE's file: loader: the openssl
 * commands) gets the token key the URI names.
 *
 * Two steps, as OpenSSL's own decoders are chained: PEM to DER for our
 * label ("DER", input=pem), then DER to a key reference (one instance per
 * key type, input=der). The PEM step searches its whole input, so the URI
 * block may follow a certificate in one file: some programs leave an old
 * error on the queue that stops OpenSSL from retrying another decoder on
 * the next block. The DER step answers "not mine" quickly for any other
 * DER it is offered.
 */
#include "config.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>

#include "pkcs11/log.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/lookup.h"
#include "provider/provider.h"
#include "provider/uri_pem.h"

struct uri_decoder_ctx {
    struct p11b_prov *prov;
    enum p11b_key_family family;
};

static OSSL_FUNC_decoder_freectx_fn urid_freectx;
static OSSL_FUNC_decoder_does_selection_fn urid_does_selection;
static OSSL_FUNC_decoder_decode_fn urid_decode;
static OSSL_FUNC_decoder_decode_fn uripem_decode;

static void *urid_newctx(void *provctx, enum p11b_key_family family)
{
    struct uri_decoder_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (ctx != NULL) {
        ctx->prov = provctx;
        ctx->family = family;
    }
    return ctx;
}

static void urid_freectx(void *vctx)
{
    OPENSSL_free(vctx);
}

static int urid_does_selection(void *provctx, int selection)
{
    (void)provctx;
    return selection == 0 ||
           (selection & (OSSL_KEYMGMT_SELECT_PRIVATE_KEY |
                         OSSL_KEYMGMT_SELECT_PUBLIC_KEY)) != 0;
}

/* The whole input, up to a bound. */
static unsigned char *read_all(struct p11b_prov *prov, OSSL_CORE_BIO *cin,
                               size_t *out_len)
{
    BIO *in = BIO_new_from_core_bio(prov->libctx, cin);
    size_t cap = 16 * P11B_URI_PEM_MAX, len = 0;
    unsigned char *buf = in != NULL ? OPENSSL_malloc(cap) : NULL;
    int n = 0;

    while (buf != NULL && len < cap) {
        n = BIO_read(in, buf + len, (int)(cap - len));
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    BIO_free(in);
    *out_len = len;
    return buf;
}

/* PEM to DER: the body of the first URI block anywhere in the input. */
static int uripem_decode(void *vctx, OSSL_CORE_BIO *cin, int selection,
                         OSSL_CALLBACK *data_cb, void *data_cbarg,
                         OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    struct uri_decoder_ctx *ctx = vctx;
    unsigned char *text, *der = NULL;
    OSSL_PARAM params[3];
    char *uri = NULL;
    size_t len = 0, derlen = 0;
    int ok = 1, type = OSSL_OBJECT_PKEY;

    (void)selection;
    (void)pw_cb;
    (void)pw_cbarg;
    text = read_all(ctx->prov, cin, &len);
    if (text != NULL && p11b_uri_pem_find(text, len, &uri) &&
        p11b_uri_der_encode(P11B_URI_PEM_DESC, uri, &der, &derlen)) {
        P11B_LOG(2, "PEM-wrapped URI found");
        params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA,
                                                      der, derlen);
        params[2] = OSSL_PARAM_construct_end();
        ok = data_cb(params, data_cbarg);
    }
    OPENSSL_free(der);
    OPENSSL_free(uri);
    OPENSSL_free(text);
    return ok; /* nothing found: not ours, another decoder may take it */
}

/* DER to a key reference, for this decoder's key type. */
static int urid_decode(void *vctx, OSSL_CORE_BIO *cin, int selection,
                       OSSL_CALLBACK *data_cb, void *data_cbarg,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    struct uri_decoder_ctx *ctx = vctx;
    struct p11b_key *key = NULL;
    struct p11b_key_ref ref;
    OSSL_PARAM params[4];
    unsigned char *der;
    char *uri = NULL;
    size_t len = 0;
    enum p11b_lookup_want want;
    int type = OSSL_OBJECT_PKEY, ok = 1, found;

    der = read_all(ctx->prov, cin, &len);
    found = der != NULL && p11b_uri_der_decode(der, len, &uri);
    OPENSSL_free(der);
    if (!found)
        return 1; /* not ours: another decoder may take it */
    /* Selection 0 (OSSL_STORE's file: loader, `openssl storeutl`) asks
     * for whatever the file holds: the URI may name a public key. */
    want = selection == 0 ? P11B_LOOKUP_WANT_ANY
           : (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
               ? P11B_LOOKUP_WANT_PRIVATE
               : P11B_LOOKUP_WANT_PUBLIC;
    if (!p11b_lookup_key(ctx->prov, uri, want, pw_cb, pw_cbarg, &key)) {
        OPENSSL_free(uri);
        return 0;
    }
    OPENSSL_free(uri);
    /* Each key type has its own instance of this decoder: the one of the
     * key's type hands it over (the search is cached: no token call). */
    if (key->family == ctx->family ||
        (p11b_family_is_rsa(key->family) && p11b_family_is_rsa(ctx->family))) {
        p11b_key_ref_init(&ref, key);
        params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        params[1] = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_TYPE, (char *)p11b_family_name(key->family),
            0);
        params[2] = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof(ref));
        params[3] = OSSL_PARAM_construct_end();
        ok = data_cb(params, data_cbarg);
    }
    p11b_key_free(key);
    return ok;
}

static void *uripem_newctx(void *provctx)
{
    return urid_newctx(provctx, P11B_FAMILY_NONE);
}

static void *rsa_urid_newctx(void *provctx)
{
    return urid_newctx(provctx, P11B_FAMILY_RSA);
}

static void *rsapss_urid_newctx(void *provctx)
{
    return urid_newctx(provctx, P11B_FAMILY_RSA_PSS);
}

static void *ec_urid_newctx(void *provctx)
{
    return urid_newctx(provctx, P11B_FAMILY_EC);
}

static void *ed25519_urid_newctx(void *provctx)
{
    return urid_newctx(provctx, P11B_FAMILY_ED25519);
}

static void *ed448_urid_newctx(void *provctx)
{
    return urid_newctx(provctx, P11B_FAMILY_ED448);
}

const OSSL_DISPATCH p11b_uri_pem_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))uripem_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))urid_freectx },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))uripem_decode },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_rsa_uri_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))rsa_urid_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))urid_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))urid_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))urid_decode },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_rsapss_uri_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))rsapss_urid_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))urid_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))urid_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))urid_decode },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_ec_uri_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))ec_urid_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))urid_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))urid_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))urid_decode },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_ed25519_uri_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))ed25519_urid_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))urid_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))urid_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))urid_decode },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_ed448_uri_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))ed448_urid_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))urid_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))urid_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))urid_decode },
    { 0, NULL }
};
