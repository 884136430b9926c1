/*
 * Key management shared by every family. A token key is a reference; its
 * public half lives in a software EVP_PKEY, which answers the parameter
 * queries, export and match. Private parts are never exported.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "pkcs11/log.h"
#include "pkcs11/object.h"
#include "provider/errors.h"
#include "provider/keymgmt.h"
#include "provider/provider.h"

#define SEL_PUBLIC_PARTS                                                      \
    (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)

void *p11b_km_new(void *provctx, enum p11b_key_family family)
{
    return p11b_key_new(provctx, family);
}

void p11b_km_free(void *keydata)
{
    p11b_key_free(keydata);
}

/* The store and the decoder hand over a struct p11b_key_ref to a key they
 * hold a reference on until this returns. */
void *p11b_km_load(const void *reference, size_t reference_sz,
                   enum p11b_key_family family)
{
    struct p11b_key_ref ref;
    struct p11b_key *key;

    if (reference == NULL || reference_sz != sizeof(ref))
        return NULL;
    memcpy(&ref, reference, sizeof(ref));
    key = ref.key;
    if (ref.magic != P11B_KEY_MAGIC || key == NULL ||
        key->magic != P11B_KEY_MAGIC)
        return NULL;
    /* RSA and RSA-PSS token keys share a key type: either keymgmt may
     * load the other's reference; every other family only its own. */
    if (family != key->family &&
        !(p11b_family_is_rsa(family) && p11b_family_is_rsa(key->family)))
        return NULL;
    return p11b_key_up_ref(key);
}

int p11b_km_get_params(void *keydata, OSSL_PARAM params[])
{
    struct p11b_key *key = keydata;

    if (key == NULL || key->pub_pkey == NULL || !p11b_key_unambiguous(key))
        return 0;
    /* bits, security-bits, max-size, default digest, group, n, e, pub:
     * all answered by the public half. Nothing private is asked of it. */
    return EVP_PKEY_get_params(key->pub_pkey, params);
}

int p11b_km_has(const void *keydata, int selection)
{
    const struct p11b_key *key = keydata;

    if (key == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && key->priv == NULL)
        return 0;
    if ((selection & SEL_PUBLIC_PARTS) && key->pub_pkey == NULL)
        return 0;
    return 1;
}

int p11b_km_match(const void *keydata1, const void *keydata2, int selection)
{
    const struct p11b_key *a = keydata1, *b = keydata2;

    if (a == NULL || b == NULL || a->pub_pkey == NULL || b->pub_pkey == NULL ||
        !p11b_key_unambiguous(a) || !p11b_key_unambiguous(b))
        return 0;
    /* Two token references to one private object match outright; any
     * other pair matches when the public halves are equal (what
     * X509_check_private_key and SSL_CTX_check_private_key need). */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && a->priv != NULL &&
        b->priv != NULL && a->priv->slot == b->priv->slot &&
        a->priv->h == b->priv->h)
        return 1;
    return EVP_PKEY_eq(a->pub_pkey, b->pub_pkey) == 1;
}

/* Import of public keys only: they get a software public half and no
 * token object. Private key material is never taken in. */
int p11b_km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    struct p11b_key *key = keydata;
    EVP_PKEY_CTX *ctx;
    EVP_PKEY *pkey = NULL;
    const char *name;

    if (key == NULL || !(selection & SEL_PUBLIC_PARTS))
        return 0;
    name = p11b_family_name(key->family);
    ctx = EVP_PKEY_CTX_new_from_name(key->prov->libctx, name, P11B_SOFT_PROPQ);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY,
                          (OSSL_PARAM *)params) <= 0) {
        EVP_PKEY_CTX_free(ctx);
        return 0;
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key->pub_pkey);
    key->pub_pkey = pkey;
    return 1;
}

int p11b_km_export(void *keydata, int selection, OSSL_CALLBACK *cb,
                   void *cbarg)
{
    struct p11b_key *key = keydata;

    if (key == NULL || key->pub_pkey == NULL || !p11b_key_unambiguous(key))
        return 0;
    if (key->prov->cfg.deny_export) {
        P11B_RAISE(key->prov, P11B_R_EXPORT_DENIED, "%s = 1",
                   P11B_CFG_ALLOW_EXPORT);
        return 0;
    }
    /* No private part exists outside the token. OpenSSL 3.0 asks for
     * everything (OSSL_KEYMGMT_SELECT_ALL) when it moves a key to another
     * provider for an operation: refusing makes it use our operations with
     * our key; encoders and comparisons ask for the public parts only. */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ||
        !(selection & SEL_PUBLIC_PARTS))
        return 0;
    return EVP_PKEY_export(key->pub_pkey, selection & SEL_PUBLIC_PARTS, cb,
                           cbarg);
}
