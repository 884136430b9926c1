/*
 * Text encoder for token keys: what `openssl pkey -text` and
 * `openssl storeutl -text` print. The URI of the token object, then the
 * public half. Nothing private exists outside the token to print.
 */
#include "config.h"

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>

#include "pkcs11/object.h"
#include "provider/key.h"
#include "provider/provider.h"

static OSSL_FUNC_encoder_newctx_fn text_newctx;
static OSSL_FUNC_encoder_freectx_fn text_freectx;
static OSSL_FUNC_encoder_does_selection_fn text_does_selection;
static OSSL_FUNC_encoder_encode_fn text_encode;

static void *text_newctx(void *provctx)
{
    return provctx; /* nothing of our own to keep */
}

static void text_freectx(void *ctx)
{
    (void)ctx;
}

static int text_does_selection(void *ctx, int selection)
{
    (void)ctx;
    return (selection & (OSSL_KEYMGMT_SELECT_KEYPAIR |
                         OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0;
}

static int text_encode(void *ctx, OSSL_CORE_BIO *cout, const void *obj_raw,
                       const OSSL_PARAM obj_abstract[], int selection,
                       OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    struct p11b_prov *prov = ctx;
    const struct p11b_key *key = obj_raw;
    const char *kind;
    BIO *out;
    int ok;

    (void)cb;
    (void)cbarg;
    if (key == NULL || obj_abstract != NULL || key->pub_pkey == NULL ||
        !p11b_key_unambiguous(key))
        return 0;
    out = BIO_new_from_core_bio(prov->libctx, cout);
    if (out == NULL)
        return 0;
    if (key->priv != NULL && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY))
        kind = "private key on a PKCS#11 token";
    else if (key->priv != NULL || key->pub != NULL)
        kind = "public key on a PKCS#11 token";
    else
        kind = "public key";
    ok = BIO_printf(out, "%s %s (%d bit)\n", p11b_family_name(key->family),
                    kind, EVP_PKEY_get_bits(key->pub_pkey)) > 0;
    if (ok && key->uri != NULL)
        ok = BIO_printf(out, "URI: %s\n", key->uri) > 0;
    if (ok)
        ok = EVP_PKEY_print_public(out, key->pub_pkey, 0, NULL) > 0;
    BIO_free(out);
    return ok;
}

const OSSL_DISPATCH p11b_text_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))text_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))text_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))text_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))text_encode },
    { 0, NULL }
};
