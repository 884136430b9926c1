/*
 * Cryptoki value -> name tables, for logs and error messages.
 * Every function returns a static string; an unknown value gives NULL from
 * the *_lookup variants and a generic "CKR_VENDOR_DEFINED"/"unknown" text
 * from the plain ones.
 */
#ifndef P11B_NAMES_H
#define P11B_NAMES_H

#include <stddef.h>

#include "pkcs11/p11.h"

const char *p11b_rv_name(CK_RV rv);                   /* "CKR_PIN_INCORRECT" */
const char *p11b_mech_name(CK_MECHANISM_TYPE mech);   /* "CKM_ECDSA"         */
const char *p11b_attr_name(CK_ATTRIBUTE_TYPE type);   /* "CKA_LABEL"         */
const char *p11b_class_name(CK_OBJECT_CLASS cls);     /* "CKO_PRIVATE_KEY"   */
const char *p11b_keytype_name(CK_KEY_TYPE kt);        /* "CKK_RSA"           */

/* NULL when the value is not in the table. */
const char *p11b_rv_name_lookup(CK_RV rv);
const char *p11b_mech_name_lookup(CK_MECHANISM_TYPE mech);

/* Name -> value for mechanisms ("CKM_RSA_PKCS" or "RSA_PKCS"): 1 found. */
int p11b_mech_from_name(const char *name, CK_MECHANISM_TYPE *out);

/* The tables themselves, rows sorted by value (for the unit test). */
struct p11b_name {
    CK_ULONG value;
    const char *name;
};

enum p11b_name_table {
    P11B_NAMETAB_RV,
    P11B_NAMETAB_MECH,
    P11B_NAMETAB_ATTR,
    P11B_NAMETAB_CLASS,
    P11B_NAMETAB_KEYTYPE,
    P11B_NAMETAB_COUNT /* not a table */
};

/* NULL (and *out_n untouched) for P11B_NAMETAB_COUNT or an unknown value. */
const struct p11b_name *p11b_names_get0_table(enum p11b_name_table which,
                                              size_t *out_n);

#endif
