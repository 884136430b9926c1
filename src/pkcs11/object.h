/*
 * Token objects: find by a template built from a URI, read their public
 * attributes once, cache the result per slot.
 *
 * What is read: class, key type, id, label, CKA_PRIVATE, usage flags,
 * CKA_ALWAYS_AUTHENTICATE, CKA_ALLOWED_MECHANISMS; the public parts of keys
 * (CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT,
 * CKA_PUBLIC_KEY_INFO); certificates' CKA_VALUE, CKA_SUBJECT, CKA_ISSUER,
 * CKA_SERIAL_NUMBER. Never CKA_VALUE of a key, CKA_PRIVATE_EXPONENT or any
 * other secret attribute.
 */
#ifndef P11B_OBJECT_H
#define P11B_OBJECT_H

#include <stdatomic.h>
#include <stddef.h>
#include "pkcs11/p11.h"

struct p11b_slot;

struct p11b_bytes {
    int present;
    unsigned char *data;
    size_t len;
};

struct p11b_obj {
    atomic_int refs;
    struct p11b_slot *slot;
    unsigned long gen;          /* slot generation when found */
    CK_OBJECT_HANDLE h;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE key_type;       /* CK_UNAVAILABLE_INFORMATION if none */
    CK_CERTIFICATE_TYPE cert_type;
    CK_BBOOL is_private, always_auth, can_sign, can_decrypt, can_derive;
    struct p11b_bytes id, label;
    struct p11b_bytes modulus, public_exponent;
    struct p11b_bytes ec_params, ec_point, public_key_info;
    struct p11b_bytes value, subject, issuer, serial; /* certificates */
    CK_MECHANISM_TYPE *allowed_mechs;
    CK_ULONG n_allowed_mechs;   /* 0 with allowed_mechs NULL: no limit */
    /* A session copy of this (private key) object in the slot's object
     * session, valid in slot generation copy_gen. locked: slot->obj_lock.
     * It goes away with that session. */
    CK_OBJECT_HANDLE copy;
    unsigned long copy_gen;
    /* The canonical URI as the audit trail writes it, made at the first
     * audited use (audit.c); freed with the object. */
    _Atomic(char *) audit_uri;
};

/* A search: each field is used only when set. */
struct p11b_query {
    int has_class;
    CK_OBJECT_CLASS cls;
    int has_key_type;
    CK_KEY_TYPE key_type;
    struct p11b_bytes id, label, subject, issuer, serial;
    int fresh; /* ask the token, not the cache (a result may be stale) */
};

struct p11b_objcache;

/* Find every object of the slot matching q, with attributes read. The
 * result (an array of new references, possibly empty) is served from the
 * slot's cache when the same search was made in the same generation and
 * login state. Free it with p11b_objs_free. */
CK_RV p11b_object_find(struct p11b_slot *slot, const struct p11b_query *q,
                       struct p11b_obj ***out, size_t *out_n);

/* One object, by a handle the token gave us (C_GenerateKeyPair's), with
 * its attributes read as p11b_object_find reads them; not cached. */
CK_RV p11b_object_read(struct p11b_slot *slot, CK_OBJECT_HANDLE h,
                       struct p11b_obj **out);

struct p11b_obj *p11b_obj_up_ref(struct p11b_obj *obj);
void p11b_obj_free(struct p11b_obj *obj);
void p11b_objs_free(struct p11b_obj **objs, size_t n);
/* 1 if the handle still belongs to the slot's current generation. */
int p11b_obj_is_current(const struct p11b_obj *obj);

/* What kind of key an object is, from its key type, CKA_EC_PARAMS (Edwards
 * curves) and CKA_ALLOWED_MECHANISMS (an RSA key allowed PSS mechanisms
 * only is an RSA-PSS key); NONE for a key we have no use for, or not a
 * key. */
enum p11b_obj_kind {
    P11B_OBJ_KIND_NONE = 0,
    P11B_OBJ_KIND_RSA,
    P11B_OBJ_KIND_RSA_PSS,
    P11B_OBJ_KIND_EC,
    P11B_OBJ_KIND_ED25519,
    P11B_OBJ_KIND_ED448,
};

enum p11b_obj_kind p11b_obj_kind_of(const struct p11b_obj *obj);

/* The object's canonical URI (token, manufacturer, serial, model, object,
 * id, type), malloc'd; NULL on ENOMEM. */
char *p11b_obj_uri(const struct p11b_obj *obj);

/* A slot's search cache. Its entries carry the slot generation they were
 * made in and go once it changes; the module frees the cache with the
 * slot. */
void p11b_objcache_free(struct p11b_objcache *cache);

#endif
