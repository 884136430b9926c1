/*
 * Key management for RSA and RSA-PSS token keys.
 */
#include "config.h"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "provider/keymgmt.h"

static OSSL_FUNC_keymgmt_new_fn rsa_new;
static OSSL_FUNC_keymgmt_new_fn rsapss_new;
static OSSL_FUNC_keymgmt_load_fn rsa_load;
static OSSL_FUNC_keymgmt_gettable_params_fn rsa_gettable_params;
static OSSL_FUNC_keymgmt_import_types_fn rsa_io_types;
static OSSL_FUNC_keymgmt_query_operation_name_fn rsa_query_operation_name;
static OSSL_FUNC_keymgmt_gen_init_fn rsa_gen_init;
static OSSL_FUNC_keymgmt_gen_init_fn rsapss_gen_init;
static OSSL_FUNC_keymgmt_gen_settable_params_fn rsa_gen_settable_params;

static void *rsa_new(void *provctx)
{
    return p11b_km_new(provctx, P11B_FAMILY_RSA);
}

static void *rsapss_new(void *provctx)
{
    return p11b_km_new(provctx, P11B_FAMILY_RSA_PSS);
}

static void *rsa_load(const void *reference, size_t reference_sz)
{
    return p11b_km_load(reference, reference_sz, P11B_FAMILY_RSA);
}

static void *rsa_gen_init(void *provctx, int selection,
                          const OSSL_PARAM params[])
{
    return p11b_km_gen_init(provctx, selection, params, P11B_FAMILY_RSA);
}

static void *rsapss_gen_init(void *provctx, int selection,
                             const OSSL_PARAM params[])
{
    return p11b_km_gen_init(provctx, selection, params, P11B_FAMILY_RSA_PSS);
}

/* Keep next to p11b_km_gen_set_params, which takes these keys. */
static const OSSL_PARAM rsa_gen_settable[] = {
    OSSL_PARAM_utf8_string(P11B_GEN_PARAM_URI, NULL, 0),
    OSSL_PARAM_utf8_string(P11B_GEN_PARAM_USAGE, NULL, 0),
    OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_BITS, NULL),
    OSSL_PARAM_ulong(OSSL_PKEY_PARAM_RSA_E, NULL),
    OSSL_PARAM_END
};

static const OSSL_PARAM *rsa_gen_settable_params(void *genctx, void *provctx)
{
    (void)genctx;
    (void)provctx;
    return rsa_gen_settable;
}

static const OSSL_PARAM rsa_gettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *rsa_gettable_params(void *provctx)
{
    (void)provctx;
    return rsa_gettable;
}

/* Import and export carry the public parts only. */
static const OSSL_PARAM rsa_io[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *rsa_io_types(int selection)
{
    (void)selection;
    return rsa_io;
}

/* RSA-PSS keys sign with the "RSA" signature too. */
static const char *rsa_query_operation_name(int operation_id)
{
    (void)operation_id;
    return "RSA";
}

const OSSL_DISPATCH p11b_rsa_keymgmt_functions[] = {
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))rsa_new },
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))rsa_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))p11b_km_gen_set_params },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS,
      (void (*)(void))rsa_gen_settable_params },
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))p11b_km_gen },
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))p11b_km_gen_cleanup },
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))p11b_km_free },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))rsa_load },
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))p11b_km_get_params },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))rsa_gettable_params },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
      (void (*)(void))rsa_query_operation_name },
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))p11b_km_has },
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))p11b_km_match },
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))p11b_km_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))rsa_io_types },
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))p11b_km_export },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))rsa_io_types },
    { 0, NULL }
};

const OSSL_DISPATCH p11b_rsapss_keymgmt_functions[] = {
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))rsapss_new },
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))rsapss_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))p11b_km_gen_set_params },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS,
      (void (*)(void))rsa_gen_settable_params },
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))p11b_km_gen },
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))p11b_km_gen_cleanup },
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))p11b_km_free },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))rsa_load },
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))p11b_km_get_params },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))rsa_gettable_params },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
      (void (*)(void))rsa_query_operation_name },
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))p11b_km_has },
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))p11b_km_match },
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))p11b_km_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))rsa_io_types },
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))p11b_km_export },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))rsa_io_types },
    { 0, NULL }
};
