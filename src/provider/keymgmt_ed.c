/*
 * Key management for Ed25519 and Ed448 token keys (CKK_EC_EDWARDS).
 */
#include "config.h"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "provider/keymgmt.h"

static OSSL_FUNC_keymgmt_new_fn ed25519_new;
static OSSL_FUNC_keymgmt_new_fn ed448_new;
static OSSL_FUNC_keymgmt_load_fn ed25519_load;
static OSSL_FUNC_keymgmt_load_fn ed448_load;
static OSSL_FUNC_keymgmt_gettable_params_fn ed_gettable_params;
static OSSL_FUNC_keymgmt_import_types_fn ed_io_types;
static OSSL_FUNC_keymgmt_gen_init_fn ed25519_gen_init;
static OSSL_FUNC_keymgmt_gen_init_fn ed448_gen_init;
static OSSL_FUNC_keymgmt_gen_settable_params_fn ed_gen_settable_params;

static void *ed25519_new(void *provctx)
{
    return p11b_km_new(provctx, P11B_FAMILY_ED25519);
}

static void *ed448_new(void *provctx)
{
    return p11b_km_new(provctx, P11B_FAMILY_ED448);
}

static void *ed25519_load(const void *reference, size_t reference_sz)
{
    return p11b_km_load(reference, reference_sz, P11B_FAMILY_ED25519);
}

static void *ed448_load(const void *reference, size_t reference_sz)
{
    return p11b_km_load(reference, reference_sz, P11B_FAMILY_ED448);
}

static void *ed25519_gen_init(void *provctx, int selection,
                              const OSSL_PARAM params[])
{
    return p11b_km_gen_init(provctx, selection, params, P11B_FAMILY_ED25519);
}

static void *ed448_gen_init(void *provctx, int selection,
                            const OSSL_PARAM params[])
{
    return p11b_km_gen_init(provctx, selection, params, P11B_FAMILY_ED448);
}

/* Keep next to p11b_km_gen_set_params, which takes these keys. */
static const OSSL_PARAM ed_gen_settable[] = {
    OSSL_PARAM_utf8_string(P11B_GEN_PARAM_URI, NULL, 0),
    OSSL_PARAM_utf8_string(P11B_GEN_PARAM_USAGE, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *ed_gen_settable_params(void *genctx, void *provctx)
{
    (void)genctx;
    (void)provctx;
    return ed_gen_settable;
}

static const OSSL_PARAM ed_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *ed_gettable_params(void *provctx)
{
    (void)provctx;
    return ed_gettable;
}

/* Import and export carry the public key only. */
static const OSSL_PARAM ed_io[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *ed_io_types(int selection)
{
    (void)selection;
    return ed_io;
}

const OSSL_DISPATCH p11b_ed25519_keymgmt_functions[] = {
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))ed25519_new },
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))ed25519_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))p11b_km_gen_set_params },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS,
      (void (*)(void))ed_gen_settable_params },
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))p11b_km_gen },
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))p11b_km_gen_cleanup },
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))p11b_km_free },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))ed25519_load },
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))p11b_km_get_params },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))ed_gettable_params },
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))p11b_km_has },
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))p11b_km_match },
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))p11b_km_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))ed_io_types },
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))p11b_km_export },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))ed_io_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_ed448_keymgmt_functions[] = {
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))ed448_new },
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))ed448_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))p11b_km_gen_set_params },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS,
      (void (*)(void))ed_gen_settable_params },
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))p11b_km_gen },
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))p11b_km_gen_cleanup },
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))p11b_km_free },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))ed448_load },
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))p11b_km_get_params },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))ed_gettable_params },
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))p11b_km_has },
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))p11b_km_match },
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))p11b_km_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))ed_io_types },
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))p11b_km_export },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))ed_io_types },
    { 0, NULL }
};
