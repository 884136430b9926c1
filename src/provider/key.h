/*
 * struct p11b_key: what our keymgmt hands to OpenSSL. A reference to token
 * objects (private and/or public) plus the public key as a software
 * EVP_PKEY of another provider, for public-key work, export and match.
 * Refcounted: shared by the store, keymgmt and operation contexts.
 */
#ifndef P11B_KEY_H
#define P11B_KEY_H

#include <stdatomic.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "pkcs11/p11.h"

struct p11b_prov;
struct p11b_obj;

#define P11B_KEY_MAGIC 0x7031316bU /* "p11k": checks store references */

enum p11b_key_family {
    P11B_FAMILY_NONE = 0,
    P11B_FAMILY_RSA,
    P11B_FAMILY_RSA_PSS,
    P11B_FAMILY_EC,
};

struct p11b_key {
    unsigned int magic;
    atomic_int refs;
    struct p11b_prov *prov;
    enum p11b_key_family family;
    struct p11b_obj *priv;  /* NULL for a public key                  */
    struct p11b_obj *pub;   /* the token's public object, if any      */
    EVP_PKEY *pub_pkey;     /* public half, in a software provider    */
    char *uri;              /* canonical URI of the token object      */
};

struct p11b_key *p11b_key_new(struct p11b_prov *prov,
                              enum p11b_key_family family);
struct p11b_key *p11b_key_up_ref(struct p11b_key *key);
void p11b_key_free(struct p11b_key *key);

/* The keymgmt/algorithm name of a family ("RSA", "RSA-PSS", "EC"). */
const char *p11b_family_name(enum p11b_key_family family);

/* The family of a token key object, or P11B_FAMILY_NONE if unsupported. */
enum p11b_key_family p11b_obj_family(const struct p11b_obj *obj);

/* 1 if the object's own attributes hold its public key (RSA modulus and
 * exponent, EC point, or CKA_PUBLIC_KEY_INFO). */
int p11b_obj_has_public(const struct p11b_obj *obj);

/* Build the software public key from token attributes: the object's own
 * (modulus/exponent, EC params + point, CKA_PUBLIC_KEY_INFO), else from
 * `extra` (a public key or certificate object with the same CKA_ID).
 * Raises and returns 0 when no public half can be found. */
int p11b_key_set_public(struct p11b_key *key, const struct p11b_obj *obj,
                        struct p11b_obj *const *extra, size_t n_extra);

/* EC: curve name from DER CKA_EC_PARAMS (a named-curve OID), or NULL. */
const char *p11b_ec_params_to_name(const unsigned char *der, size_t len);

#endif
