/*
 * struct p11b_key: what our keymgmt hands to OpenSSL. A reference to token
 * objects (private and/or public) plus the public key as a software
 * EVP_PKEY of another provider, for public-key work, export and match.
 * Refcounted: shared by the store, keymgmt and operation contexts.
 */
#ifndef P11B_KEY_H
#define P11B_KEY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "pkcs11/p11.h"
#include "pkcs11/op.h"

struct p11b_prov;
struct p11b_obj;

#define P11B_KEY_MAGIC 0x7031316bU /* "p11k": checks store references */

enum p11b_key_family {
    P11B_FAMILY_NONE = 0,
    P11B_FAMILY_RSA,
    P11B_FAMILY_RSA_PSS,
    P11B_FAMILY_EC,
    P11B_FAMILY_ED25519,
    P11B_FAMILY_ED448,
};

#define p11b_family_is_rsa(f)                                                 \
    ((f) == P11B_FAMILY_RSA || (f) == P11B_FAMILY_RSA_PSS)
#define p11b_family_is_eddsa(f)                                               \
    ((f) == P11B_FAMILY_ED25519 || (f) == P11B_FAMILY_ED448)

struct p11b_key {
    unsigned int magic;
    atomic_int refs;
    pthread_mutex_t lock;   /* guards priv when its handle is re-found */
    struct p11b_prov *prov;
    enum p11b_key_family family;
    struct p11b_obj *priv;  /* NULL for a public key                  */
    struct p11b_obj *pub;   /* the token's public object, if any      */
    EVP_PKEY *pub_pkey;     /* public half, in a software provider    */
    char *uri;              /* canonical URI of the token object      */
    /* A DigestVerify context on pub_pkey for one digest (twin_md, "" for
     * the default), made at the first digest operation and copied for
     * every later one's software twin: building one costs ~30k
     * instructions, copying it a few. Set once under lock, then never
     * changed while the key lives (signature_common.c). */
    EVP_MD_CTX *twin_tmpl;
    char twin_md[32];
    /* The same for RSA asym-cipher twins: an encryption context on
     * pub_pkey, initialised without parameters (asymcipher_rsa.c). */
    EVP_PKEY_CTX *enc_tmpl;
    /* Set when the key was taken as the first of several the URI
     * matched (store.c, at close): the key then refuses to be used, and
     * this is how many keys matched. */
    atomic_size_t ambiguous;
};

/*
 * What the store and the decoder hand to OpenSSL as an object reference.
 * Its size differs from a pointer's on purpose: another provider's keymgmt
 * that is wrongly given our reference (OpenSSL's file: store can do that)
 * refuses it by its size instead of taking our pointer for its own.
 */
struct p11b_key_ref {
    uint64_t magic;
    struct p11b_key *key;
};

void p11b_key_ref_init(struct p11b_key_ref *ref, struct p11b_key *key);

struct p11b_key *p11b_key_new(struct p11b_prov *prov,
                              enum p11b_key_family family);
struct p11b_key *p11b_key_up_ref(struct p11b_key *key);
void p11b_key_free(struct p11b_key *key);

/* The keymgmt/algorithm name of a family ("RSA", "RSA-PSS", "EC"). */
const char *p11b_family_name(enum p11b_key_family family);

/* The family of a token key object, or P11B_FAMILY_NONE if unsupported:
 * the kind object.c decides (p11b_obj_kind_of), in keymgmt terms. */
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

/*
 * A private-key operation on the token. p11b_key_op_begin makes sure the
 * key's object belongs to the token's current state (after fork or token
 * re-insertion it is found again by CKA_ID/label) and that the token is
 * logged in when the key is private, and fills `op` for src/pkcs11/op.h.
 * Raises and returns 0 on failure.
 */
struct p11b_key_op {
    struct p11b_key *key;
    struct p11b_op op;          /* what the operation layer is given */
    struct p11b_op_auth auth;   /* our context login, for op.auth    */
};

/* 1 when the key may be used; else raises the ambiguity error, 0. */
int p11b_key_unambiguous(const struct p11b_key *key);
int p11b_key_op_begin(struct p11b_key *key, struct p11b_key_op *kop);
/* After the operation: drops what begin took. A failure before the
 * token's own call (no session; the context login, already reported) is
 * raised here and makes it return 0; else 1, and the caller judges rv. */
int p11b_key_op_end(struct p11b_key_op *kop, CK_RV rv,
                    enum p11b_op_stage stage);
/* 1 if the key's token has the mechanism and the key allows it
 * (CKA_ALLOWED_MECHANISMS, absent or empty: no restriction). */
int p11b_key_can_use(const struct p11b_key *key, CK_MECHANISM_TYPE mech);

/* Refuse (with a clear error) a key whose size is outside the range the
 * token gives for the mechanism (CK_MECHANISM_INFO); RSA and EC only. */
int p11b_key_check_mech_size(struct p11b_key *key, CK_MECHANISM_TYPE mech);

/* 1 if an operation that failed with rv is worth one more try after
 * p11b_key_op_end (sessions or login lost, handle stale). */
int p11b_rv_retry(CK_RV rv);

/* EC: curve name from DER CKA_EC_PARAMS (a named-curve OID), or NULL. */
const char *p11b_ec_params_to_name(const unsigned char *der, size_t len);

#endif
