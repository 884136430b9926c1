/*
 * Shared keymgmt code for the RSA, RSA-PSS and EC families.
 */
#ifndef P11B_KEYMGMT_H
#define P11B_KEYMGMT_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include "provider/key.h"

void *p11b_km_new(void *provctx, enum p11b_key_family family);
void p11b_km_free(void *keydata);
void *p11b_km_load(const void *reference, size_t reference_sz,
                   enum p11b_key_family family);
int p11b_km_get_params(void *keydata, OSSL_PARAM params[]);
int p11b_km_has(const void *keydata, int selection);
int p11b_km_match(const void *keydata1, const void *keydata2, int selection);
int p11b_km_import(void *keydata, int selection, const OSSL_PARAM params[]);
int p11b_km_export(void *keydata, int selection, OSSL_CALLBACK *cb,
                   void *cbarg);

/* Key generation on the token (keymgmt_gen.c). */
#define P11B_GEN_PARAM_URI "pkcs11_uri"
#define P11B_GEN_PARAM_USAGE "pkcs11_key_usage"

void *p11b_km_gen_init(void *provctx, int selection, const OSSL_PARAM params[],
                       enum p11b_key_family family);
int p11b_km_gen_set_params(void *genctx, const OSSL_PARAM params[]);
void *p11b_km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg);
void p11b_km_gen_cleanup(void *genctx);

#endif
