/*
 * Encoder writing a token private key as the PEM-wrapped pkcs11: URI
 * (uri_pem.h), where OpenSSL would write a PKCS#8 PrivateKeyInfo:
 * `openssl pkey -in 'pkcs11:...'`, `openssl genpkey` and
 * PEM_write_bio_PrivateKey give a small file that programs reading key
 * files can use. Never a PIN: the key's URI is the canonical one.
 */
#include "config.h"

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>

#include "provider/key.h"
#include "provider/provider.h"
#include "provider/uri_pem.h"

static OSSL_FUNC_encoder_newctx_fn urie_newctx;
static OSSL_FUNC_encoder_freectx_fn urie_freectx;
static OSSL_FUNC_encoder_does_selection_fn urie_does_selection;
static OSSL_FUNC_encoder_encode_fn urie_encode;

static void *urie_newctx(void *provctx)
{
    return provctx;
}

static void urie_freectx(void *ctx)
{
    (void)ctx;
}

static int urie_does_selection(void *ctx, int selection)
{
    (void)ctx;
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

static int urie_encode(void *ctx, OSSL_CORE_BIO *cout, const void *obj_raw,
                       const OSSL_PARAM obj_abstract[], int selection,
                       OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    struct p11b_prov *prov = ctx;
    const struct p11b_key *key = obj_raw;
    unsigned char *der = NULL;
    size_t len = 0;
    BIO *out;
    int ok;

    (void)cb;
    (void)cbarg;
    if (key == NULL || obj_abstract != NULL || key->priv == NULL ||
        key->uri == NULL || !(selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ||
        !p11b_key_unambiguous(key))
        return 0;
    out = BIO_new_from_core_bio(prov->libctx, cout);
    ok = out != NULL &&
         p11b_uri_der_encode(P11B_URI_PEM_DESC, key->uri, &der, &len) &&
         PEM_write_bio(out, P11B_URI_PEM_LABEL, "", der, (long)len) > 0;
    OPENSSL_free(der);
    BIO_free(out);
    return ok;
}

const OSSL_DISPATCH p11b_uri_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))urie_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))urie_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))urie_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))urie_encode },
    { 0, NULL }
};
