/*
 * Unit test of src/pkcs11/names.c: spot checks of every table, unknown
 * values, both spellings of mechanism names, and the shape of the tables
 * (sorted by value, so no duplicate values; no duplicate names).
 *
 * Exit 0 when everything passed, 1 otherwise; the last line is the count.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pkcs11/names.h"

static unsigned passed;
static unsigned failed;

static void check(int cond, const char *what, int line)
{
    if (cond) {
        passed++;
        return;
    }
    failed++;
    printf("FAIL line %d: %s\n", line, what);
}

#define CHECK(cond) check((cond) ? 1 : 0, #cond, __LINE__)

static int str_is(const char *got, const char *want)
{
    return got != NULL && strcmp(got, want) == 0;
}

#define CHECK_NAME(fn, value) CHECK(str_is(fn(value), #value))

static void test_rv(void)
{
    CHECK_NAME(p11b_rv_name, CKR_OK);
    CHECK_NAME(p11b_rv_name, CKR_CANCEL);
    CHECK_NAME(p11b_rv_name, CKR_PIN_INCORRECT);
    CHECK_NAME(p11b_rv_name, CKR_PIN_LOCKED);
    CHECK_NAME(p11b_rv_name, CKR_DEVICE_REMOVED);
    CHECK_NAME(p11b_rv_name, CKR_TOKEN_NOT_PRESENT);
    CHECK_NAME(p11b_rv_name, CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK_NAME(p11b_rv_name, CKR_UNWRAPPING_KEY_HANDLE_INVALID);
    CHECK_NAME(p11b_rv_name, CKR_CRYPTOKI_ALREADY_INITIALIZED);
    CHECK_NAME(p11b_rv_name, CKR_FUNCTION_REJECTED);
    CHECK_NAME(p11b_rv_name, CKR_OPERATION_CANCEL_FAILED);
    CHECK_NAME(p11b_rv_name_lookup, CKR_BUFFER_TOO_SMALL);

    /* Unknown values: 4 is a hole in the CKR_ numbering. */
    CHECK(str_is(p11b_rv_name(4), "CKR_UNKNOWN"));
    CHECK(str_is(p11b_rv_name(0x7fffffffUL), "CKR_UNKNOWN"));
    CHECK(p11b_rv_name_lookup(4) == NULL);
    CHECK(str_is(p11b_rv_name(CKR_VENDOR_DEFINED), "CKR_VENDOR_DEFINED"));
    CHECK(
        str_is(p11b_rv_name(CKR_VENDOR_DEFINED + 0x123), "CKR_VENDOR_DEFINED"));
    CHECK(str_is(p11b_rv_name(~0UL), "CKR_VENDOR_DEFINED"));
    CHECK(p11b_rv_name_lookup(CKR_VENDOR_DEFINED) == NULL);
}

/* The families the provider uses must all be there. */
static const CK_MECHANISM_TYPE required_mechs[] = {
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_RSA_PKCS,
    CKM_RSA_X_509,
    CKM_RSA_PKCS_OAEP,
    CKM_RSA_PKCS_PSS,
    CKM_SHA1_RSA_PKCS,
    CKM_SHA224_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_SHA1_RSA_PKCS_PSS,
    CKM_SHA224_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
    CKM_EC_KEY_PAIR_GEN,
    CKM_ECDSA,
    CKM_ECDSA_SHA1,
    CKM_ECDSA_SHA224,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
    CKM_ECDH1_DERIVE,
    CKM_ECDH1_COFACTOR_DERIVE,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_EDDSA,
    CKM_SHA_1,
    CKM_SHA224,
    CKM_SHA256,
    CKM_SHA384,
    CKM_SHA512,
    CKM_SHA256_HMAC,
    CKM_SHA512_HMAC,
    CKM_AES_KEY_GEN,
    CKM_AES_ECB,
    CKM_AES_CBC,
    CKM_AES_CBC_PAD,
    CKM_AES_CTR,
    CKM_AES_GCM,
    CKM_AES_CMAC,
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKM_GENERIC_SECRET_KEY_GEN,
};

static void test_mech(void)
{
    size_t i;
    size_t n = 0;

    CHECK_NAME(p11b_mech_name, CKM_RSA_PKCS_KEY_PAIR_GEN);
    CHECK_NAME(p11b_mech_name, CKM_RSA_PKCS);
    CHECK_NAME(p11b_mech_name, CKM_SHA256_RSA_PKCS_PSS);
    CHECK_NAME(p11b_mech_name, CKM_ECDSA);
    CHECK_NAME(p11b_mech_name, CKM_ECDH1_DERIVE);
    CHECK_NAME(p11b_mech_name, CKM_EDDSA);
    CHECK_NAME(p11b_mech_name, CKM_SHA224);
    CHECK_NAME(p11b_mech_name, CKM_AES_GCM);
    CHECK_NAME(p11b_mech_name, CKM_GENERIC_SECRET_KEY_GEN);
    CHECK_NAME(p11b_mech_name, CKM_RSA_PKCS_OAEP_TPM_1_1);
    CHECK_NAME(p11b_mech_name_lookup, CKM_AES_KEY_WRAP_PAD);
    /* An alias value gets the 2.40 name. */
    CHECK(
        str_is(p11b_mech_name(CKM_ECDSA_KEY_PAIR_GEN), "CKM_EC_KEY_PAIR_GEN"));

    CHECK(str_is(p11b_mech_name(0x17), "CKM_UNKNOWN"));
    CHECK(str_is(p11b_mech_name(CKM_VENDOR_DEFINED), "CKM_UNKNOWN"));
    CHECK(str_is(p11b_mech_name(CKM_VENDOR_DEFINED | 0x4e), "CKM_UNKNOWN"));
    CHECK(p11b_mech_name_lookup(0x17) == NULL);

    for (i = 0; i < P11B_NELEM(required_mechs); i++) {
        if (p11b_mech_name_lookup(required_mechs[i]) == NULL)
            printf("missing mechanism 0x%lx\n", required_mechs[i]);
        CHECK(p11b_mech_name_lookup(required_mechs[i]) != NULL);
    }
    CHECK(p11b_names_get0_table(P11B_NAMETAB_MECH, &n) != NULL);
    CHECK(n >= 80);
}

static int from_name(const char *name, CK_MECHANISM_TYPE want)
{
    CK_MECHANISM_TYPE got = 0xdeadUL;

    return p11b_mech_from_name(name, &got) == 1 && got == want;
}

static int from_name_fails(const char *name)
{
    CK_MECHANISM_TYPE got = 0xdeadUL;

    /* On failure the out-parameter is left alone. */
    return p11b_mech_from_name(name, &got) == 0 && got == 0xdeadUL;
}

static void test_mech_from_name(void)
{
    CHECK(from_name("CKM_RSA_PKCS", CKM_RSA_PKCS));
    CHECK(from_name("RSA_PKCS", CKM_RSA_PKCS));
    CHECK(from_name("ckm_rsa_pkcs", CKM_RSA_PKCS));
    CHECK(from_name("rsa_pkcs_pss", CKM_RSA_PKCS_PSS));
    CHECK(from_name("CKM_RSA_PKCS_KEY_PAIR_GEN", CKM_RSA_PKCS_KEY_PAIR_GEN));
    CHECK(from_name("Ecdsa", CKM_ECDSA));
    CHECK(from_name("CKM_EDDSA", CKM_EDDSA));
    CHECK(from_name("ECDH1_DERIVE", CKM_ECDH1_DERIVE));
    CHECK(from_name("CKM_SHA_1", CKM_SHA_1));
    CHECK(from_name("AES_KEY_WRAP_PAD", CKM_AES_KEY_WRAP_PAD));
    /* Both names of one value. */
    CHECK(from_name("CKM_EC_KEY_PAIR_GEN", CKM_EC_KEY_PAIR_GEN));
    CHECK(from_name("ECDSA_KEY_PAIR_GEN", CKM_EC_KEY_PAIR_GEN));
    CHECK(from_name("CKM_CAST5_CBC", CKM_CAST128_CBC));

    CHECK(from_name_fails(""));
    CHECK(from_name_fails("CKM_"));
    CHECK(from_name_fails("ckm_"));
    CHECK(from_name_fails("CKM_CKM_RSA_PKCS"));
    CHECK(from_name_fails("RSA_PKCS "));
    CHECK(from_name_fails(" RSA_PKCS"));
    CHECK(from_name_fails("RSA"));
    CHECK(from_name_fails("CKM_NO_SUCH_MECHANISM"));
    CHECK(from_name_fails("CKR_OK"));
    CHECK(from_name_fails(NULL));
    CHECK(p11b_mech_from_name("RSA_PKCS", NULL) == 0);
}

static void test_attr_class_keytype(void)
{
    CHECK_NAME(p11b_attr_name, CKA_CLASS);
    CHECK_NAME(p11b_attr_name, CKA_LABEL);
    CHECK_NAME(p11b_attr_name, CKA_VALUE);
    CHECK_NAME(p11b_attr_name, CKA_ID);
    CHECK_NAME(p11b_attr_name, CKA_MODULUS);
    CHECK_NAME(p11b_attr_name, CKA_EC_PARAMS);
    CHECK_NAME(p11b_attr_name, CKA_EC_POINT);
    CHECK_NAME(p11b_attr_name, CKA_ALWAYS_AUTHENTICATE);
    CHECK_NAME(p11b_attr_name, CKA_ALLOWED_MECHANISMS);
    CHECK_NAME(p11b_attr_name, CKA_WRAP_TEMPLATE);
    CHECK(str_is(p11b_attr_name(CKA_ECDSA_PARAMS), "CKA_EC_PARAMS"));
    CHECK(str_is(p11b_attr_name(0x13), "CKA_UNKNOWN"));
    CHECK(str_is(p11b_attr_name(0x600), "CKA_UNKNOWN")); /* no array flag */
    CHECK(str_is(p11b_attr_name(CKA_VENDOR_DEFINED), "CKA_UNKNOWN"));

    CHECK_NAME(p11b_class_name, CKO_DATA);
    CHECK_NAME(p11b_class_name, CKO_CERTIFICATE);
    CHECK_NAME(p11b_class_name, CKO_PUBLIC_KEY);
    CHECK_NAME(p11b_class_name, CKO_PRIVATE_KEY);
    CHECK_NAME(p11b_class_name, CKO_SECRET_KEY);
    CHECK_NAME(p11b_class_name, CKO_OTP_KEY);
    CHECK(str_is(p11b_class_name(9), "CKO_UNKNOWN"));
    CHECK(str_is(p11b_class_name(CKO_VENDOR_DEFINED), "CKO_UNKNOWN"));

    CHECK_NAME(p11b_keytype_name, CKK_RSA);
    CHECK_NAME(p11b_keytype_name, CKK_EC);
    CHECK_NAME(p11b_keytype_name, CKK_EC_EDWARDS);
    CHECK_NAME(p11b_keytype_name, CKK_GENERIC_SECRET);
    CHECK_NAME(p11b_keytype_name, CKK_AES);
    CHECK(str_is(p11b_keytype_name(CKK_ECDSA), "CKK_EC"));
    CHECK(str_is(p11b_keytype_name(6), "CKK_UNKNOWN"));
    CHECK(str_is(p11b_keytype_name(CKK_VENDOR_DEFINED), "CKK_UNKNOWN"));
}

struct table_info {
    enum p11b_name_table which;
    const char *prefix;
    const char *(*name_of)(CK_ULONG value);
};

/* Wrappers so every table can be driven through one function type. */
static const char *rv_of(CK_ULONG v)
{
    return p11b_rv_name(v);
}

static const char *mech_of(CK_ULONG v)
{
    return p11b_mech_name(v);
}

static const char *attr_of(CK_ULONG v)
{
    return p11b_attr_name(v);
}

static const char *class_of(CK_ULONG v)
{
    return p11b_class_name(v);
}

static const char *keytype_of(CK_ULONG v)
{
    return p11b_keytype_name(v);
}

static const struct table_info tables[] = {
    {P11B_NAMETAB_RV, "CKR_", rv_of},
    {P11B_NAMETAB_MECH, "CKM_", mech_of},
    {P11B_NAMETAB_ATTR, "CKA_", attr_of},
    {P11B_NAMETAB_CLASS, "CKO_", class_of},
    {P11B_NAMETAB_KEYTYPE, "CKK_", keytype_of},
};

/* Sorted strictly by value (so bsearch works and no value repeats), every
 * name well-formed and unique, and every row found again by its value. */
static void test_table_shape(const struct table_info *t)
{
    const struct p11b_name *rows;
    size_t n = 0;
    size_t i;
    size_t j;
    int sorted = 1;
    int names_ok = 1;
    int unique = 1;
    int round_trip = 1;

    rows = p11b_names_get0_table(t->which, &n);
    CHECK(rows != NULL && n > 0);
    if (rows == NULL)
        return;
    for (i = 0; i < n; i++) {
        if (i > 0 && rows[i - 1].value >= rows[i].value) {
            printf("%s table: %s not sorted after %s\n", t->prefix,
                   rows[i].name, rows[i - 1].name);
            sorted = 0;
        }
        if (rows[i].name == NULL || strncmp(rows[i].name, t->prefix, 4) != 0 ||
            rows[i].name[4] == '\0')
            names_ok = 0;
        if (!str_is(t->name_of(rows[i].value), rows[i].name))
            round_trip = 0;
        for (j = 0; j < i; j++) {
            if (strcasecmp(rows[i].name, rows[j].name) == 0)
                unique = 0;
        }
    }
    CHECK(sorted);
    CHECK(names_ok);
    CHECK(unique);
    CHECK(round_trip);
}

/* Every mechanism name maps back to its own value: no name shadows another. */
static void test_mech_names_round_trip(void)
{
    const struct p11b_name *rows;
    size_t n = 0;
    size_t i;
    int ok = 1;

    rows = p11b_names_get0_table(P11B_NAMETAB_MECH, &n);
    if (rows == NULL)
        return;
    for (i = 0; i < n; i++) {
        if (!from_name(rows[i].name, rows[i].value) ||
            !from_name(rows[i].name + 4, rows[i].value)) {
            printf("mechanism %s does not map back\n", rows[i].name);
            ok = 0;
        }
    }
    CHECK(ok);
}

int main(void)
{
    size_t i;
    size_t n = 42;

    test_rv();
    test_mech();
    test_mech_from_name();
    test_attr_class_keytype();
    for (i = 0; i < P11B_NELEM(tables); i++)
        test_table_shape(&tables[i]);
    test_mech_names_round_trip();
    CHECK(p11b_names_get0_table(P11B_NAMETAB_COUNT, &n) == NULL && n == 42);

    printf("%u passed, %u failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
