/*
 * Cryptoki value -> name tables, for logs and error messages.
 *
 * Each table is data: {value, "NAME"} rows sorted by value, searched by one
 * generic bsearch. The rows name the constants of p11-kit's <p11-kit/pkcs11.h>
 * (plus CKR_OPERATION_CANCEL_FAILED from p11.h), so a value can never drift
 * from the header. Where the header has two names for one value, the row
 * carries the PKCS#11 2.40 name (CKK_EC, CKA_EC_PARAMS, CKM_EC_KEY_PAIR_GEN,
 * CKM_CAST128_*); the older mechanism spellings are still accepted by
 * p11b_mech_from_name() through mech_aliases[].
 *
 * The *_VENDOR_DEFINED constants are range starts, not values, and are not
 * in the tables.
 *
 * No OpenSSL here: this file is linked alone into tests/unit/test_names.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pkcs11/names.h"

/* One row: the constant's value and its own spelling. */
/* clang-format off */
#define N(c) { (c), #c }
/* clang-format on */

/* Keep every table sorted by value: test_names checks it. */
static const struct p11b_name rv_names[] = {
    N(CKR_OK),
    N(CKR_CANCEL),
    N(CKR_HOST_MEMORY),
    N(CKR_SLOT_ID_INVALID),
    N(CKR_GENERAL_ERROR),
    N(CKR_FUNCTION_FAILED),
    N(CKR_ARGUMENTS_BAD),
    N(CKR_NO_EVENT),
    N(CKR_NEED_TO_CREATE_THREADS),
    N(CKR_CANT_LOCK),
    N(CKR_ATTRIBUTE_READ_ONLY),
    N(CKR_ATTRIBUTE_SENSITIVE),
    N(CKR_ATTRIBUTE_TYPE_INVALID),
    N(CKR_ATTRIBUTE_VALUE_INVALID),
    N(CKR_ACTION_PROHIBITED),
    N(CKR_DATA_INVALID),
    N(CKR_DATA_LEN_RANGE),
    N(CKR_DEVICE_ERROR),
    N(CKR_DEVICE_MEMORY),
    N(CKR_DEVICE_REMOVED),
    N(CKR_ENCRYPTED_DATA_INVALID),
    N(CKR_ENCRYPTED_DATA_LEN_RANGE),
    N(CKR_FUNCTION_CANCELED),
    N(CKR_FUNCTION_NOT_PARALLEL),
    N(CKR_FUNCTION_NOT_SUPPORTED),
    N(CKR_KEY_HANDLE_INVALID),
    N(CKR_KEY_SIZE_RANGE),
    N(CKR_KEY_TYPE_INCONSISTENT),
    N(CKR_KEY_NOT_NEEDED),
    N(CKR_KEY_CHANGED),
    N(CKR_KEY_NEEDED),
    N(CKR_KEY_INDIGESTIBLE),
    N(CKR_KEY_FUNCTION_NOT_PERMITTED),
    N(CKR_KEY_NOT_WRAPPABLE),
    N(CKR_KEY_UNEXTRACTABLE),
    N(CKR_MECHANISM_INVALID),
    N(CKR_MECHANISM_PARAM_INVALID),
    N(CKR_OBJECT_HANDLE_INVALID),
    N(CKR_OPERATION_ACTIVE),
    N(CKR_OPERATION_NOT_INITIALIZED),
    N(CKR_PIN_INCORRECT),
    N(CKR_PIN_INVALID),
    N(CKR_PIN_LEN_RANGE),
    N(CKR_PIN_EXPIRED),
    N(CKR_PIN_LOCKED),
    N(CKR_SESSION_CLOSED),
    N(CKR_SESSION_COUNT),
    N(CKR_SESSION_HANDLE_INVALID),
    N(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    N(CKR_SESSION_READ_ONLY),
    N(CKR_SESSION_EXISTS),
    N(CKR_SESSION_READ_ONLY_EXISTS),
    N(CKR_SESSION_READ_WRITE_SO_EXISTS),
    N(CKR_SIGNATURE_INVALID),
    N(CKR_SIGNATURE_LEN_RANGE),
    N(CKR_TEMPLATE_INCOMPLETE),
    N(CKR_TEMPLATE_INCONSISTENT),
    N(CKR_TOKEN_NOT_PRESENT),
    N(CKR_TOKEN_NOT_RECOGNIZED),
    N(CKR_TOKEN_WRITE_PROTECTED),
    N(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    N(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    N(CKR_USER_ALREADY_LOGGED_IN),
    N(CKR_USER_NOT_LOGGED_IN),
    N(CKR_USER_PIN_NOT_INITIALIZED),
    N(CKR_USER_TYPE_INVALID),
    N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    N(CKR_USER_TOO_MANY_TYPES),
    N(CKR_WRAPPED_KEY_INVALID),
    N(CKR_WRAPPED_KEY_LEN_RANGE),
    N(CKR_WRAPPING_KEY_HANDLE_INVALID),
    N(CKR_WRAPPING_KEY_SIZE_RANGE),
    N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    N(CKR_RANDOM_SEED_NOT_SUPPORTED),
    N(CKR_RANDOM_NO_RNG),
    N(CKR_DOMAIN_PARAMS_INVALID),
    N(CKR_CURVE_NOT_SUPPORTED),
    N(CKR_BUFFER_TOO_SMALL),
    N(CKR_SAVED_STATE_INVALID),
    N(CKR_INFORMATION_SENSITIVE),
    N(CKR_STATE_UNSAVEABLE),
    N(CKR_CRYPTOKI_NOT_INITIALIZED),
    N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    N(CKR_MUTEX_BAD),
    N(CKR_MUTEX_NOT_LOCKED),
    N(CKR_NEW_PIN_MODE),
    N(CKR_NEXT_OTP),
    N(CKR_EXCEEDED_MAX_ITERATIONS),
    N(CKR_FIPS_SELF_TEST_FAILED),
    N(CKR_LIBRARY_LOAD_FAILED),
    N(CKR_PIN_TOO_WEAK),
    N(CKR_PUBLIC_KEY_INVALID),
    N(CKR_FUNCTION_REJECTED),
    N(CKR_OPERATION_CANCEL_FAILED),
};

static const struct p11b_name mech_names[] = {
    N(CKM_RSA_PKCS_KEY_PAIR_GEN),
    N(CKM_RSA_PKCS),
    N(CKM_RSA_9796),
    N(CKM_RSA_X_509),
    N(CKM_MD2_RSA_PKCS),
    N(CKM_MD5_RSA_PKCS),
    N(CKM_SHA1_RSA_PKCS),
    N(CKM_RIPEMD128_RSA_PKCS),
    N(CKM_RIPEMD160_RSA_PKCS),
    N(CKM_RSA_PKCS_OAEP),
    N(CKM_RSA_X9_31_KEY_PAIR_GEN),
    N(CKM_RSA_X9_31),
    N(CKM_SHA1_RSA_X9_31),
    N(CKM_RSA_PKCS_PSS),
    N(CKM_SHA1_RSA_PKCS_PSS),
    N(CKM_DSA_KEY_PAIR_GEN),
    N(CKM_DSA),
    N(CKM_DSA_SHA1),
    N(CKM_DSA_SHA224),
    N(CKM_DSA_SHA256),
    N(CKM_DSA_SHA384),
    N(CKM_DSA_SHA512),
    N(CKM_DH_PKCS_KEY_PAIR_GEN),
    N(CKM_DH_PKCS_DERIVE),
    N(CKM_X9_42_DH_KEY_PAIR_GEN),
    N(CKM_X9_42_DH_DERIVE),
    N(CKM_X9_42_DH_HYBRID_DERIVE),
    N(CKM_X9_42_MQV_DERIVE),
    N(CKM_SHA256_RSA_PKCS),
    N(CKM_SHA384_RSA_PKCS),
    N(CKM_SHA512_RSA_PKCS),
    N(CKM_SHA256_RSA_PKCS_PSS),
    N(CKM_SHA384_RSA_PKCS_PSS),
    N(CKM_SHA512_RSA_PKCS_PSS),
    N(CKM_SHA224_RSA_PKCS),
    N(CKM_SHA224_RSA_PKCS_PSS),
    N(CKM_SHA512_224),
    N(CKM_SHA512_224_HMAC),
    N(CKM_SHA512_224_HMAC_GENERAL),
    N(CKM_SHA512_224_KEY_DERIVATION),
    N(CKM_SHA512_256),
    N(CKM_SHA512_256_HMAC),
    N(CKM_SHA512_256_HMAC_GENERAL),
    N(CKM_SHA512_256_KEY_DERIVATION),
    N(CKM_SHA512_T),
    N(CKM_SHA512_T_HMAC),
    N(CKM_SHA512_T_HMAC_GENERAL),
    N(CKM_SHA512_T_KEY_DERIVATION),
    N(CKM_RC2_KEY_GEN),
    N(CKM_RC2_ECB),
    N(CKM_RC2_CBC),
    N(CKM_RC2_MAC),
    N(CKM_RC2_MAC_GENERAL),
    N(CKM_RC2_CBC_PAD),
    N(CKM_RC4_KEY_GEN),
    N(CKM_RC4),
    N(CKM_DES_KEY_GEN),
    N(CKM_DES_ECB),
    N(CKM_DES_CBC),
    N(CKM_DES_MAC),
    N(CKM_DES_MAC_GENERAL),
    N(CKM_DES_CBC_PAD),
    N(CKM_DES2_KEY_GEN),
    N(CKM_DES3_KEY_GEN),
    N(CKM_DES3_ECB),
    N(CKM_DES3_CBC),
    N(CKM_DES3_MAC),
    N(CKM_DES3_MAC_GENERAL),
    N(CKM_DES3_CBC_PAD),
    N(CKM_DES3_CMAC_GENERAL),
    N(CKM_DES3_CMAC),
    N(CKM_CDMF_KEY_GEN),
    N(CKM_CDMF_ECB),
    N(CKM_CDMF_CBC),
    N(CKM_CDMF_MAC),
    N(CKM_CDMF_MAC_GENERAL),
    N(CKM_CDMF_CBC_PAD),
    N(CKM_DES_OFB64),
    N(CKM_DES_OFB8),
    N(CKM_DES_CFB64),
    N(CKM_DES_CFB8),
    N(CKM_MD2),
    N(CKM_MD2_HMAC),
    N(CKM_MD2_HMAC_GENERAL),
    N(CKM_MD5),
    N(CKM_MD5_HMAC),
    N(CKM_MD5_HMAC_GENERAL),
    N(CKM_SHA_1),
    N(CKM_SHA_1_HMAC),
    N(CKM_SHA_1_HMAC_GENERAL),
    N(CKM_RIPEMD128),
    N(CKM_RIPEMD128_HMAC),
    N(CKM_RIPEMD128_HMAC_GENERAL),
    N(CKM_RIPEMD160),
    N(CKM_RIPEMD160_HMAC),
    N(CKM_RIPEMD160_HMAC_GENERAL),
    N(CKM_SHA256),
    N(CKM_SHA256_HMAC),
    N(CKM_SHA256_HMAC_GENERAL),
    N(CKM_SHA224),
    N(CKM_SHA224_HMAC),
    N(CKM_SHA224_HMAC_GENERAL),
    N(CKM_SHA384),
    N(CKM_SHA384_HMAC),
    N(CKM_SHA384_HMAC_GENERAL),
    N(CKM_SHA512),
    N(CKM_SHA512_HMAC),
    N(CKM_SHA512_HMAC_GENERAL),
    N(CKM_SECURID_KEY_GEN),
    N(CKM_SECURID),
    N(CKM_HOTP_KEY_GEN),
    N(CKM_HOTP),
    N(CKM_ACTI),
    N(CKM_ACTI_KEY_GEN),
    N(CKM_CAST_KEY_GEN),
    N(CKM_CAST_ECB),
    N(CKM_CAST_CBC),
    N(CKM_CAST_MAC),
    N(CKM_CAST_MAC_GENERAL),
    N(CKM_CAST_CBC_PAD),
    N(CKM_CAST3_KEY_GEN),
    N(CKM_CAST3_ECB),
    N(CKM_CAST3_CBC),
    N(CKM_CAST3_MAC),
    N(CKM_CAST3_MAC_GENERAL),
    N(CKM_CAST3_CBC_PAD),
    N(CKM_CAST128_KEY_GEN),
    N(CKM_CAST128_ECB),
    N(CKM_CAST128_CBC),
    N(CKM_CAST128_MAC),
    N(CKM_CAST128_MAC_GENERAL),
    N(CKM_CAST128_CBC_PAD),
    N(CKM_RC5_KEY_GEN),
    N(CKM_RC5_ECB),
    N(CKM_RC5_CBC),
    N(CKM_RC5_MAC),
    N(CKM_RC5_MAC_GENERAL),
    N(CKM_RC5_CBC_PAD),
    N(CKM_IDEA_KEY_GEN),
    N(CKM_IDEA_ECB),
    N(CKM_IDEA_CBC),
    N(CKM_IDEA_MAC),
    N(CKM_IDEA_MAC_GENERAL),
    N(CKM_IDEA_CBC_PAD),
    N(CKM_GENERIC_SECRET_KEY_GEN),
    N(CKM_CONCATENATE_BASE_AND_KEY),
    N(CKM_CONCATENATE_BASE_AND_DATA),
    N(CKM_CONCATENATE_DATA_AND_BASE),
    N(CKM_XOR_BASE_AND_DATA),
    N(CKM_EXTRACT_KEY_FROM_KEY),
    N(CKM_SSL3_PRE_MASTER_KEY_GEN),
    N(CKM_SSL3_MASTER_KEY_DERIVE),
    N(CKM_SSL3_KEY_AND_MAC_DERIVE),
    N(CKM_SSL3_MASTER_KEY_DERIVE_DH),
    N(CKM_TLS_PRE_MASTER_KEY_GEN),
    N(CKM_TLS_MASTER_KEY_DERIVE),
    N(CKM_TLS_KEY_AND_MAC_DERIVE),
    N(CKM_TLS_MASTER_KEY_DERIVE_DH),
    N(CKM_TLS_PRF),
    N(CKM_SSL3_MD5_MAC),
    N(CKM_SSL3_SHA1_MAC),
    N(CKM_MD5_KEY_DERIVATION),
    N(CKM_MD2_KEY_DERIVATION),
    N(CKM_SHA1_KEY_DERIVATION),
    N(CKM_SHA256_KEY_DERIVATION),
    N(CKM_SHA384_KEY_DERIVATION),
    N(CKM_SHA512_KEY_DERIVATION),
    N(CKM_SHA224_KEY_DERIVATION),
    N(CKM_PBE_MD2_DES_CBC),
    N(CKM_PBE_MD5_DES_CBC),
    N(CKM_PBE_MD5_CAST_CBC),
    N(CKM_PBE_MD5_CAST3_CBC),
    N(CKM_PBE_MD5_CAST128_CBC),
    N(CKM_PBE_SHA1_CAST128_CBC),
    N(CKM_PBE_SHA1_RC4_128),
    N(CKM_PBE_SHA1_RC4_40),
    N(CKM_PBE_SHA1_DES3_EDE_CBC),
    N(CKM_PBE_SHA1_DES2_EDE_CBC),
    N(CKM_PBE_SHA1_RC2_128_CBC),
    N(CKM_PBE_SHA1_RC2_40_CBC),
    N(CKM_PKCS5_PBKD2),
    N(CKM_PBA_SHA1_WITH_SHA1_HMAC),
    N(CKM_WTLS_PRE_MASTER_KEY_GEN),
    N(CKM_WTLS_MASTER_KEY_DERIVE),
    N(CKM_WTLS_MASTER_KEY_DERIVE_DH_ECC),
    N(CKM_WTLS_PRF),
    N(CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE),
    N(CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE),
    N(CKM_TLS10_MAC_SERVER),
    N(CKM_TLS10_MAC_CLIENT),
    N(CKM_TLS12_MAC),
    N(CKM_TLS12_KDF),
    N(CKM_TLS12_MASTER_KEY_DERIVE),
    N(CKM_TLS12_KEY_AND_MAC_DERIVE),
    N(CKM_TLS12_MASTER_KEY_DERIVE_DH),
    N(CKM_TLS12_KEY_SAFE_DERIVE),
    N(CKM_TLS_MAC),
    N(CKM_TLS_KDF),
    N(CKM_KEY_WRAP_LYNKS),
    N(CKM_KEY_WRAP_SET_OAEP),
    N(CKM_CMS_SIG),
    N(CKM_KIP_DERIVE),
    N(CKM_KIP_WRAP),
    N(CKM_KIP_MAC),
    N(CKM_CAMELLIA_KEY_GEN),
    N(CKM_CAMELLIA_ECB),
    N(CKM_CAMELLIA_CBC),
    N(CKM_CAMELLIA_MAC),
    N(CKM_CAMELLIA_MAC_GENERAL),
    N(CKM_CAMELLIA_CBC_PAD),
    N(CKM_CAMELLIA_ECB_ENCRYPT_DATA),
    N(CKM_CAMELLIA_CBC_ENCRYPT_DATA),
    N(CKM_CAMELLIA_CTR),
    N(CKM_ARIA_KEY_GEN),
    N(CKM_ARIA_ECB),
    N(CKM_ARIA_CBC),
    N(CKM_ARIA_MAC),
    N(CKM_ARIA_MAC_GENERAL),
    N(CKM_ARIA_CBC_PAD),
    N(CKM_ARIA_ECB_ENCRYPT_DATA),
    N(CKM_ARIA_CBC_ENCRYPT_DATA),
    N(CKM_SEED_KEY_GEN),
    N(CKM_SEED_ECB),
    N(CKM_SEED_CBC),
    N(CKM_SEED_MAC),
    N(CKM_SEED_MAC_GENERAL),
    N(CKM_SEED_CBC_PAD),
    N(CKM_SEED_ECB_ENCRYPT_DATA),
    N(CKM_SEED_CBC_ENCRYPT_DATA),
    N(CKM_SKIPJACK_KEY_GEN),
    N(CKM_SKIPJACK_ECB64),
    N(CKM_SKIPJACK_CBC64),
    N(CKM_SKIPJACK_OFB64),
    N(CKM_SKIPJACK_CFB64),
    N(CKM_SKIPJACK_CFB32),
    N(CKM_SKIPJACK_CFB16),
    N(CKM_SKIPJACK_CFB8),
    N(CKM_SKIPJACK_WRAP),
    N(CKM_SKIPJACK_PRIVATE_WRAP),
    N(CKM_SKIPJACK_RELAYX),
    N(CKM_KEA_KEY_PAIR_GEN),
    N(CKM_KEA_KEY_DERIVE),
    N(CKM_FORTEZZA_TIMESTAMP),
    N(CKM_BATON_KEY_GEN),
    N(CKM_BATON_ECB128),
    N(CKM_BATON_ECB96),
    N(CKM_BATON_CBC128),
    N(CKM_BATON_COUNTER),
    N(CKM_BATON_SHUFFLE),
    N(CKM_BATON_WRAP),
    N(CKM_EC_KEY_PAIR_GEN),
    N(CKM_ECDSA),
    N(CKM_ECDSA_SHA1),
    N(CKM_ECDSA_SHA224),
    N(CKM_ECDSA_SHA256),
    N(CKM_ECDSA_SHA384),
    N(CKM_ECDSA_SHA512),
    N(CKM_ECDH1_DERIVE),
    N(CKM_ECDH1_COFACTOR_DERIVE),
    N(CKM_ECMQV_DERIVE),
    N(CKM_ECDH_AES_KEY_WRAP),
    N(CKM_RSA_AES_KEY_WRAP),
    N(CKM_EC_EDWARDS_KEY_PAIR_GEN),
    N(CKM_EDDSA),
    N(CKM_JUNIPER_KEY_GEN),
    N(CKM_JUNIPER_ECB128),
    N(CKM_JUNIPER_CBC128),
    N(CKM_JUNIPER_COUNTER),
    N(CKM_JUNIPER_SHUFFLE),
    N(CKM_JUNIPER_WRAP),
    N(CKM_FASTHASH),
    N(CKM_AES_KEY_GEN),
    N(CKM_AES_ECB),
    N(CKM_AES_CBC),
    N(CKM_AES_MAC),
    N(CKM_AES_MAC_GENERAL),
    N(CKM_AES_CBC_PAD),
    N(CKM_AES_CTR),
    N(CKM_AES_GCM),
    N(CKM_AES_CCM),
    N(CKM_AES_CTS),
    N(CKM_AES_CMAC),
    N(CKM_AES_CMAC_GENERAL),
    N(CKM_AES_XCBC_MAC),
    N(CKM_AES_XCBC_MAC_96),
    N(CKM_AES_GMAC),
    N(CKM_BLOWFISH_KEY_GEN),
    N(CKM_BLOWFISH_CBC),
    N(CKM_TWOFISH_KEY_GEN),
    N(CKM_TWOFISH_CBC),
    N(CKM_BLOWFISH_CBC_PAD),
    N(CKM_TWOFISH_CBC_PAD),
    N(CKM_DES_ECB_ENCRYPT_DATA),
    N(CKM_DES_CBC_ENCRYPT_DATA),
    N(CKM_DES3_ECB_ENCRYPT_DATA),
    N(CKM_DES3_CBC_ENCRYPT_DATA),
    N(CKM_AES_ECB_ENCRYPT_DATA),
    N(CKM_AES_CBC_ENCRYPT_DATA),
    N(CKM_GOSTR3410_KEY_PAIR_GEN),
    N(CKM_GOSTR3410),
    N(CKM_GOSTR3410_WITH_GOSTR3411),
    N(CKM_GOSTR3410_KEY_WRAP),
    N(CKM_GOSTR3410_DERIVE),
    N(CKM_GOSTR3411),
    N(CKM_GOSTR3411_HMAC),
    N(CKM_GOST28147_KEY_GEN),
    N(CKM_GOST28147_ECB),
    N(CKM_GOST28147),
    N(CKM_GOST28147_MAC),
    N(CKM_GOST28147_KEY_WRAP),
    N(CKM_DSA_PARAMETER_GEN),
    N(CKM_DH_PKCS_PARAMETER_GEN),
    N(CKM_X9_42_DH_PARAMETER_GEN),
    N(CKM_DSA_PROBABLISTIC_PARAMETER_GEN),
    N(CKM_DSA_SHAWE_TAYLOR_PARAMETER_GEN),
    N(CKM_AES_OFB),
    N(CKM_AES_CFB64),
    N(CKM_AES_CFB8),
    N(CKM_AES_CFB128),
    N(CKM_AES_CFB1),
    N(CKM_AES_KEY_WRAP),
    N(CKM_AES_KEY_WRAP_PAD),
    N(CKM_RSA_PKCS_TPM_1_1),
    N(CKM_RSA_PKCS_OAEP_TPM_1_1),
};

/* Other names of values in mech_names[], accepted by p11b_mech_from_name. */
static const struct p11b_name mech_aliases[] = {
    N(CKM_CAST5_KEY_GEN),      N(CKM_CAST5_ECB),
    N(CKM_CAST5_CBC),          N(CKM_CAST5_MAC),
    N(CKM_CAST5_MAC_GENERAL),  N(CKM_CAST5_CBC_PAD),
    N(CKM_PBE_MD5_CAST5_CBC),  N(CKM_PBE_SHA1_CAST5_CBC),
    N(CKM_ECDSA_KEY_PAIR_GEN),
};

static const struct p11b_name attr_names[] = {
    N(CKA_CLASS),
    N(CKA_TOKEN),
    N(CKA_PRIVATE),
    N(CKA_LABEL),
    N(CKA_APPLICATION),
    N(CKA_VALUE),
    N(CKA_OBJECT_ID),
    N(CKA_CERTIFICATE_TYPE),
    N(CKA_ISSUER),
    N(CKA_SERIAL_NUMBER),
    N(CKA_AC_ISSUER),
    N(CKA_OWNER),
    N(CKA_ATTR_TYPES),
    N(CKA_TRUSTED),
    N(CKA_CERTIFICATE_CATEGORY),
    N(CKA_JAVA_MIDP_SECURITY_DOMAIN),
    N(CKA_URL),
    N(CKA_HASH_OF_SUBJECT_PUBLIC_KEY),
    N(CKA_HASH_OF_ISSUER_PUBLIC_KEY),
    N(CKA_NAME_HASH_ALGORITHM),
    N(CKA_CHECK_VALUE),
    N(CKA_KEY_TYPE),
    N(CKA_SUBJECT),
    N(CKA_ID),
    N(CKA_SENSITIVE),
    N(CKA_ENCRYPT),
    N(CKA_DECRYPT),
    N(CKA_WRAP),
    N(CKA_UNWRAP),
    N(CKA_SIGN),
    N(CKA_SIGN_RECOVER),
    N(CKA_VERIFY),
    N(CKA_VERIFY_RECOVER),
    N(CKA_DERIVE),
    N(CKA_START_DATE),
    N(CKA_END_DATE),
    N(CKA_MODULUS),
    N(CKA_MODULUS_BITS),
    N(CKA_PUBLIC_EXPONENT),
    N(CKA_PRIVATE_EXPONENT),
    N(CKA_PRIME_1),
    N(CKA_PRIME_2),
    N(CKA_EXPONENT_1),
    N(CKA_EXPONENT_2),
    N(CKA_COEFFICIENT),
    N(CKA_PUBLIC_KEY_INFO),
    N(CKA_PRIME),
    N(CKA_SUBPRIME),
    N(CKA_BASE),
    N(CKA_PRIME_BITS),
    N(CKA_SUB_PRIME_BITS),
    N(CKA_VALUE_BITS),
    N(CKA_VALUE_LEN),
    N(CKA_EXTRACTABLE),
    N(CKA_LOCAL),
    N(CKA_NEVER_EXTRACTABLE),
    N(CKA_ALWAYS_SENSITIVE),
    N(CKA_KEY_GEN_MECHANISM),
    N(CKA_MODIFIABLE),
    N(CKA_COPYABLE),
    N(CKA_DESTROYABLE),
    N(CKA_EC_PARAMS),
    N(CKA_EC_POINT),
    N(CKA_SECONDARY_AUTH),
    N(CKA_AUTH_PIN_FLAGS),
    N(CKA_ALWAYS_AUTHENTICATE),
    N(CKA_WRAP_WITH_TRUSTED),
    N(CKA_OTP_FORMAT),
    N(CKA_OTP_LENGTH),
    N(CKA_OTP_TIME_INTERVAL),
    N(CKA_OTP_USER_FRIENDLY_MODE),
    N(CKA_OTP_CHALLENGE_REQUIREMENT),
    N(CKA_OTP_TIME_REQUIREMENT),
    N(CKA_OTP_COUNTER_REQUIREMENT),
    N(CKA_OTP_PIN_REQUIREMENT),
    N(CKA_OTP_USER_IDENTIFIER),
    N(CKA_OTP_SERVICE_IDENTIFIER),
    N(CKA_OTP_SERVICE_LOGO),
    N(CKA_OTP_SERVICE_LOGO_TYPE),
    N(CKA_OTP_COUNTER),
    N(CKA_OTP_TIME),
    N(CKA_GOSTR3410_PARAMS),
    N(CKA_GOSTR3411_PARAMS),
    N(CKA_GOST28147_PARAMS),
    N(CKA_HW_FEATURE_TYPE),
    N(CKA_RESET_ON_INIT),
    N(CKA_HAS_RESET),
    N(CKA_PIXEL_X),
    N(CKA_PIXEL_Y),
    N(CKA_RESOLUTION),
    N(CKA_CHAR_ROWS),
    N(CKA_CHAR_COLUMNS),
    N(CKA_COLOR),
    N(CKA_BITS_PER_PIXEL),
    N(CKA_CHAR_SETS),
    N(CKA_ENCODING_METHODS),
    N(CKA_MIME_TYPES),
    N(CKA_MECHANISM_TYPE),
    N(CKA_REQUIRED_CMS_ATTRIBUTES),
    N(CKA_DEFAULT_CMS_ATTRIBUTES),
    N(CKA_SUPPORTED_CMS_ATTRIBUTES),
    N(CKA_WRAP_TEMPLATE),
    N(CKA_UNWRAP_TEMPLATE),
    N(CKA_DERIVE_TEMPLATE),
    N(CKA_ALLOWED_MECHANISMS),
};

static const struct p11b_name class_names[] = {
    N(CKO_DATA),
    N(CKO_CERTIFICATE),
    N(CKO_PUBLIC_KEY),
    N(CKO_PRIVATE_KEY),
    N(CKO_SECRET_KEY),
    N(CKO_HW_FEATURE),
    N(CKO_DOMAIN_PARAMETERS),
    N(CKO_MECHANISM),
    N(CKO_OTP_KEY),
};

static const struct p11b_name keytype_names[] = {
    N(CKK_RSA),
    N(CKK_DSA),
    N(CKK_DH),
    N(CKK_EC),
    N(CKK_X9_42_DH),
    N(CKK_KEA),
    N(CKK_GENERIC_SECRET),
    N(CKK_RC2),
    N(CKK_RC4),
    N(CKK_DES),
    N(CKK_DES2),
    N(CKK_DES3),
    N(CKK_CAST),
    N(CKK_CAST3),
    N(CKK_CAST128),
    N(CKK_RC5),
    N(CKK_IDEA),
    N(CKK_SKIPJACK),
    N(CKK_BATON),
    N(CKK_JUNIPER),
    N(CKK_CDMF),
    N(CKK_AES),
    N(CKK_BLOWFISH),
    N(CKK_TWOFISH),
    N(CKK_SECURID),
    N(CKK_HOTP),
    N(CKK_ACTI),
    N(CKK_CAMELLIA),
    N(CKK_ARIA),
    N(CKK_MD5_HMAC),
    N(CKK_SHA_1_HMAC),
    N(CKK_RIPEMD128_HMAC),
    N(CKK_RIPEMD160_HMAC),
    N(CKK_SHA256_HMAC),
    N(CKK_SHA384_HMAC),
    N(CKK_SHA512_HMAC),
    N(CKK_SHA224_HMAC),
    N(CKK_SEED),
    N(CKK_GOSTR3410),
    N(CKK_GOSTR3411),
    N(CKK_GOST28147),
    N(CKK_EC_EDWARDS),
};

#undef N

static int name_cmp(const void *vkey, const void *vrow)
{
    const CK_ULONG *key = vkey;
    const struct p11b_name *row = vrow;

    if (*key < row->value)
        return -1;
    return *key > row->value;
}

/* The one lookup all tables share: NULL when the value has no row. */
static const char *name_find(const struct p11b_name *tab, size_t n,
                             CK_ULONG value)
{
    const struct p11b_name *row;

    row = bsearch(&value, tab, n, sizeof(*tab), name_cmp);
    return row != NULL ? row->name : NULL;
}

const char *p11b_rv_name_lookup(CK_RV rv)
{
    return name_find(rv_names, P11B_NELEM(rv_names), rv);
}

const char *p11b_mech_name_lookup(CK_MECHANISM_TYPE mech)
{
    return name_find(mech_names, P11B_NELEM(mech_names), mech);
}

const char *p11b_rv_name(CK_RV rv)
{
    const char *name = p11b_rv_name_lookup(rv);

    if (name != NULL)
        return name;
    return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED" : "CKR_UNKNOWN";
}

const char *p11b_mech_name(CK_MECHANISM_TYPE mech)
{
    const char *name = p11b_mech_name_lookup(mech);

    return name != NULL ? name : "CKM_UNKNOWN";
}

const char *p11b_attr_name(CK_ATTRIBUTE_TYPE type)
{
    const char *name = name_find(attr_names, P11B_NELEM(attr_names), type);

    return name != NULL ? name : "CKA_UNKNOWN";
}

const char *p11b_class_name(CK_OBJECT_CLASS cls)
{
    const char *name = name_find(class_names, P11B_NELEM(class_names), cls);

    return name != NULL ? name : "CKO_UNKNOWN";
}

const char *p11b_keytype_name(CK_KEY_TYPE kt)
{
    const char *name;

    name = name_find(keytype_names, P11B_NELEM(keytype_names), kt);
    return name != NULL ? name : "CKK_UNKNOWN";
}

/* Linear: names are looked up from configuration, not on a hot path. */
static int name_find_value(const struct p11b_name *tab, size_t n,
                           const char *name, CK_ULONG *out)
{
    size_t i;

    for (i = 0; i < n; i++) {
        /* Every row name starts with "CKM_"; compare what follows. */
        if (strcasecmp(tab[i].name + 4, name) == 0) {
            *out = tab[i].value;
            return 1;
        }
    }
    return 0;
}

int p11b_mech_from_name(const char *name, CK_MECHANISM_TYPE *out)
{
    CK_ULONG value;

    if (name == NULL || out == NULL)
        return 0;
    if (strncasecmp(name, "CKM_", 4) == 0)
        name += 4;
    if (*name == '\0')
        return 0;
    if (!name_find_value(mech_names, P11B_NELEM(mech_names), name, &value) &&
        !name_find_value(mech_aliases, P11B_NELEM(mech_aliases), name, &value))
        return 0;
    *out = value;
    return 1;
}

const struct p11b_name *p11b_names_get0_table(enum p11b_name_table which,
                                              size_t *out_n)
{
    switch (which) {
    case P11B_NAMETAB_RV:
        *out_n = P11B_NELEM(rv_names);
        return rv_names;
    case P11B_NAMETAB_MECH:
        *out_n = P11B_NELEM(mech_names);
        return mech_names;
    case P11B_NAMETAB_ATTR:
        *out_n = P11B_NELEM(attr_names);
        return attr_names;
    case P11B_NAMETAB_CLASS:
        *out_n = P11B_NELEM(class_names);
        return class_names;
    case P11B_NAMETAB_KEYTYPE:
        *out_n = P11B_NELEM(keytype_names);
        return keytype_names;
    case P11B_NAMETAB_COUNT:
        break;
    }
    return NULL;
}
