/*
 * Object search, attribute reads and the per-slot search cache.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/session.h"
#include "pkcs11/slot.h"
#include "pkcs11/uri.h"

#define FIND_BATCH 64
#define CACHE_MAX 128

struct cache_entry {
    unsigned char *key;
    size_t keylen;
    unsigned long gen;
    struct p11b_obj **objs;
    size_t n;
    struct cache_entry *next;
};

struct p11b_objcache {
    struct cache_entry *head; /* most recent first */
    size_t n;
};

/* ---- objects -------------------------------------------------------- */

struct p11b_obj *p11b_obj_up_ref(struct p11b_obj *obj)
{
    if (obj != NULL)
        atomic_fetch_add(&obj->refs, 1);
    return obj;
}

static void bytes_free(struct p11b_bytes *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void p11b_obj_free(struct p11b_obj *o)
{
    if (o == NULL || atomic_fetch_sub(&o->refs, 1) > 1)
        return;
    bytes_free(&o->id);
    bytes_free(&o->label);
    bytes_free(&o->modulus);
    bytes_free(&o->public_exponent);
    bytes_free(&o->ec_params);
    bytes_free(&o->ec_point);
    bytes_free(&o->public_key_info);
    bytes_free(&o->value);
    bytes_free(&o->subject);
    bytes_free(&o->issuer);
    bytes_free(&o->serial);
    free(o->allowed_mechs);
    free(atomic_load(&o->audit_uri));
    free(o);
}

void p11b_objs_free(struct p11b_obj **objs, size_t n)
{
    size_t i;

    if (objs == NULL)
        return;
    for (i = 0; i < n; i++)
        p11b_obj_free(objs[i]);
    free(objs);
}

int p11b_obj_is_current(const struct p11b_obj *o)
{
    unsigned long gen;

    pthread_mutex_lock(&o->slot->lock);
    gen = o->slot->gen;
    pthread_mutex_unlock(&o->slot->lock);
    return gen == o->gen;
}

/* ---- what kind of key an object is ---------------------------------- */

static int is_pss_mech(CK_MECHANISM_TYPE m)
{
    return m == CKM_RSA_PKCS_PSS || m == CKM_SHA1_RSA_PKCS_PSS ||
           m == CKM_SHA224_RSA_PKCS_PSS || m == CKM_SHA256_RSA_PKCS_PSS ||
           m == CKM_SHA384_RSA_PKCS_PSS || m == CKM_SHA512_RSA_PKCS_PSS;
}

/* CKA_EC_PARAMS of an Edwards key: the curve's OID (RFC 8410) or, as
 * some tokens write it, a PrintableString with its name. */
static enum p11b_obj_kind edwards_kind(const struct p11b_bytes *params)
{
    static const unsigned char ed25519_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
    static const unsigned char ed448_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x71 };
    static const char ed25519_name[] = "\x13\x0c" "edwards25519";
    static const char ed448_name[] = "\x13\x0a" "edwards448";
    const unsigned char *d = params->data;
    size_t n = params->len;

    if (!params->present)
        return P11B_OBJ_KIND_NONE;
    if ((n == sizeof(ed25519_oid) && memcmp(d, ed25519_oid, n) == 0) ||
        (n == sizeof(ed25519_name) - 1 && memcmp(d, ed25519_name, n) == 0))
        return P11B_OBJ_KIND_ED25519;
    if ((n == sizeof(ed448_oid) && memcmp(d, ed448_oid, n) == 0) ||
        (n == sizeof(ed448_name) - 1 && memcmp(d, ed448_name, n) == 0))
        return P11B_OBJ_KIND_ED448;
    return P11B_OBJ_KIND_NONE;
}

enum p11b_obj_kind p11b_obj_kind_of(const struct p11b_obj *obj)
{
    CK_ULONG i;

    switch (obj->key_type) {
    case CKK_RSA:
        /* A key its token allows for PSS only is an RSA-PSS key. */
        for (i = 0; i < obj->n_allowed_mechs; i++) {
            if (!is_pss_mech(obj->allowed_mechs[i]))
                return P11B_OBJ_KIND_RSA;
        }
        return obj->n_allowed_mechs > 0 ? P11B_OBJ_KIND_RSA_PSS
                                        : P11B_OBJ_KIND_RSA;
    case CKK_EC:
        return P11B_OBJ_KIND_EC;
    case CKK_EC_EDWARDS:
        return edwards_kind(&obj->ec_params);
    default:
        return P11B_OBJ_KIND_NONE;
    }
}

/* ---- attribute reads ------------------------------------------------ */

enum attr_kind { K_BYTES, K_ULONG, K_BOOL, K_MECHS };

struct attr_spec {
    CK_ATTRIBUTE_TYPE type;
    enum attr_kind kind;
    size_t off;
};

#define A_BYTES(t, f) { t, K_BYTES, offsetof(struct p11b_obj, f) }
#define A_ULONG(t, f) { t, K_ULONG, offsetof(struct p11b_obj, f) }
#define A_BOOL(t, f) { t, K_BOOL, offsetof(struct p11b_obj, f) }

static const struct attr_spec common_attrs[] = {
    A_ULONG(CKA_CLASS, cls),
    A_ULONG(CKA_KEY_TYPE, key_type),
    A_ULONG(CKA_CERTIFICATE_TYPE, cert_type),
    A_BYTES(CKA_ID, id),
    A_BYTES(CKA_LABEL, label),
    A_BOOL(CKA_PRIVATE, is_private),
};

static const struct attr_spec private_key_attrs[] = {
    A_BOOL(CKA_SIGN, can_sign),
    A_BOOL(CKA_DECRYPT, can_decrypt),
    A_BOOL(CKA_DERIVE, can_derive),
    A_BOOL(CKA_ALWAYS_AUTHENTICATE, always_auth),
    { CKA_ALLOWED_MECHANISMS, K_MECHS, 0 },
    A_BYTES(CKA_MODULUS, modulus),
    A_BYTES(CKA_PUBLIC_EXPONENT, public_exponent),
    A_BYTES(CKA_EC_PARAMS, ec_params),
    A_BYTES(CKA_PUBLIC_KEY_INFO, public_key_info),
};

static const struct attr_spec public_key_attrs[] = {
    { CKA_ALLOWED_MECHANISMS, K_MECHS, 0 },
    A_BYTES(CKA_MODULUS, modulus),
    A_BYTES(CKA_PUBLIC_EXPONENT, public_exponent),
    A_BYTES(CKA_EC_PARAMS, ec_params),
    A_BYTES(CKA_EC_POINT, ec_point),
    A_BYTES(CKA_PUBLIC_KEY_INFO, public_key_info),
};

static const struct attr_spec cert_attrs[] = {
    A_BYTES(CKA_VALUE, value),
    A_BYTES(CKA_SUBJECT, subject),
    A_BYTES(CKA_ISSUER, issuer),
    A_BYTES(CKA_SERIAL_NUMBER, serial),
};

static int rv_attr_partial(CK_RV rv)
{
    /* The template was filled but for the entries marked unavailable. */
    return rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE ||
           rv == CKR_ATTRIBUTE_TYPE_INVALID;
}

static void store_attr(struct p11b_obj *o, const struct attr_spec *sp,
                       CK_ATTRIBUTE *a)
{
    char *field = (char *)o + sp->off;
    struct p11b_bytes *b;

    switch (sp->kind) {
    case K_BYTES:
        b = (struct p11b_bytes *)field;
        b->data = a->pValue;
        b->len = a->ulValueLen;
        b->present = 1;
        a->pValue = NULL;
        break;
    case K_ULONG:
        if (a->ulValueLen == sizeof(CK_ULONG))
            memcpy(field, a->pValue, sizeof(CK_ULONG));
        break;
    case K_BOOL:
        if (a->ulValueLen == sizeof(CK_BBOOL))
            memcpy(field, a->pValue, sizeof(CK_BBOOL));
        break;
    case K_MECHS:
        o->allowed_mechs = a->pValue;
        o->n_allowed_mechs = a->ulValueLen / sizeof(CK_MECHANISM_TYPE);
        a->pValue = NULL;
        break;
    }
}

/* Two passes of C_GetAttributeValue: lengths, then values. */
static CK_RV read_attrs(struct p11b_session *sess, struct p11b_obj *o,
                        const struct attr_spec *spec, size_t n)
{
    CK_FUNCTION_LIST *f = p11b_session_fns(sess);
    CK_ATTRIBUTE t[16];
    size_t i;
    CK_RV rv;

    for (i = 0; i < n; i++) {
        t[i].type = spec[i].type;
        t[i].pValue = NULL;
        t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
    }
    P11B_CALL_WHAT(rv, f, C_GetAttributeValue, sess->slot->id, "lengths",
                   sess->h, o->h, t, n);
    if (!rv_attr_partial(rv))
        return rv;
    for (i = 0; i < n; i++) {
        if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
            continue;
        /* One spare NUL so labels can be used as strings. */
        t[i].pValue = calloc(1, t[i].ulValueLen + 1);
        if (t[i].pValue == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
    }
    P11B_CALL_WHAT(rv, f, C_GetAttributeValue, sess->slot->id, "values",
                   sess->h, o->h, t, n);
    if (!rv_attr_partial(rv))
        goto out;
    rv = CKR_OK;
    for (i = 0; i < n; i++) {
        if (t[i].pValue == NULL || t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
            continue;
        P11B_LOG(3, "  %s: %lu bytes", p11b_attr_name(t[i].type),
                 t[i].ulValueLen);
        store_attr(o, &spec[i], &t[i]);
    }
out:
    for (i = 0; i < n; i++)
        free(t[i].pValue);
    return rv;
}

static CK_RV load_object(struct p11b_session *sess, CK_OBJECT_HANDLE h,
                         struct p11b_obj **out)
{
    struct p11b_obj *o = calloc(1, sizeof(*o));
    CK_RV rv;

    if (o == NULL)
        return CKR_HOST_MEMORY;
    atomic_init(&o->refs, 1);
    o->slot = sess->slot;
    o->gen = sess->gen;
    o->h = h;
    o->cls = CK_UNAVAILABLE_INFORMATION;
    o->key_type = CK_UNAVAILABLE_INFORMATION;
    o->cert_type = CK_UNAVAILABLE_INFORMATION;
    o->copy = CK_INVALID_HANDLE;
    rv = read_attrs(sess, o, common_attrs, P11B_NELEM(common_attrs));
    if (rv == CKR_OK && o->cls == CKO_PRIVATE_KEY)
        rv = read_attrs(sess, o, private_key_attrs,
                        P11B_NELEM(private_key_attrs));
    else if (rv == CKR_OK && o->cls == CKO_PUBLIC_KEY)
        rv = read_attrs(sess, o, public_key_attrs,
                        P11B_NELEM(public_key_attrs));
    else if (rv == CKR_OK && o->cls == CKO_CERTIFICATE)
        rv = read_attrs(sess, o, cert_attrs, P11B_NELEM(cert_attrs));
    if (rv != CKR_OK) {
        p11b_obj_free(o);
        return rv;
    }
    *out = o;
    return CKR_OK;
}

CK_RV p11b_object_read(struct p11b_slot *slot, CK_OBJECT_HANDLE h,
                       struct p11b_obj **out)
{
    struct p11b_session sess;
    CK_RV rv;

    rv = p11b_session_acquire(slot, &sess);
    if (rv != CKR_OK)
        return rv;
    rv = load_object(&sess, h, out);
    p11b_session_release_rv(&sess, rv);
    return rv;
}

/* ---- searching ------------------------------------------------------ */

static size_t build_template(const struct p11b_query *q, CK_ATTRIBUTE *t,
                             char *names, size_t names_len)
{
    const struct {
        const struct p11b_bytes *b;
        CK_ATTRIBUTE_TYPE type;
    } bytes[] = {
        { &q->id, CKA_ID },         { &q->label, CKA_LABEL },
        { &q->subject, CKA_SUBJECT }, { &q->issuer, CKA_ISSUER },
        { &q->serial, CKA_SERIAL_NUMBER },
    };
    static const CK_BBOOL on_token = CK_TRUE;
    size_t n = 0, i, used = 0;

    /* Token objects only: our own session copies of keys (and anyone
     * else's session objects) share their labels and ids. */
    t[n].type = CKA_TOKEN;
    t[n].pValue = (void *)&on_token;
    t[n++].ulValueLen = sizeof(on_token);
    if (q->has_class) {
        t[n].type = CKA_CLASS;
        t[n].pValue = (void *)&q->cls;
        t[n++].ulValueLen = sizeof(q->cls);
    }
    if (q->has_key_type) {
        t[n].type = CKA_KEY_TYPE;
        t[n].pValue = (void *)&q->key_type;
        t[n++].ulValueLen = sizeof(q->key_type);
    }
    for (i = 0; i < P11B_NELEM(bytes); i++) {
        if (!bytes[i].b->present)
            continue;
        t[n].type = bytes[i].type;
        t[n].pValue = bytes[i].b->data;
        t[n++].ulValueLen = bytes[i].b->len;
    }
    names[0] = '\0';
    for (i = 0; i < n && used + 1 < names_len; i++)
        used += (size_t)snprintf(names + used, names_len - used, "%s%s",
                                 i ? ", " : "", p11b_attr_name(t[i].type));
    return n;
}

static CK_RV find_handles(struct p11b_session *sess, const struct p11b_query *q,
                          CK_OBJECT_HANDLE **out, size_t *out_n)
{
    CK_FUNCTION_LIST *f = p11b_session_fns(sess);
    CK_ATTRIBUTE t[8];
    CK_OBJECT_HANDLE *hs = NULL, *grown;
    CK_ULONG got, tn;
    size_t n = 0;
    char names[160], what[32];
    CK_RV rv, rv2;

    tn = build_template(q, t, names, sizeof(names));
    /* Not while we copy a key into a session object: SoftHSM fills the
     * copy in after making it visible, so a search at that moment found
     * it with the original's CKA_TOKEN = TRUE and label (one private key
     * came back twice, under 16 threads in a freshly forked child).
     * locked: slot->obj_lock, which C_CopyObject is made under. */
    pthread_mutex_lock(&sess->slot->obj_lock);
    P11B_CALL_WHAT(rv, f, C_FindObjectsInit, sess->slot->id, names, sess->h,
                   t, tn);
    if (rv != CKR_OK) {
        pthread_mutex_unlock(&sess->slot->obj_lock);
        return rv;
    }
    for (;;) {
        grown = realloc(hs, (n + FIND_BATCH) * sizeof(*hs));
        if (grown == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        hs = grown;
        got = 0;
        P11B_CALL_WHAT(rv, f, C_FindObjects, sess->slot->id,
                       p11b_call_what(what, sizeof(what), "%lu found",
                                      rv == CKR_OK ? got : 0UL),
                       sess->h, hs + n, FIND_BATCH, &got);
        if (rv != CKR_OK || got == 0)
            break;
        n += got;
        if (got < FIND_BATCH)
            break;
    }
    P11B_CALL(rv2, f, C_FindObjectsFinal, sess->slot->id, sess->h);
    pthread_mutex_unlock(&sess->slot->obj_lock);
    if (rv == CKR_OK)
        rv = rv2;
    if (rv != CKR_OK) {
        free(hs);
        return rv;
    }
    *out = hs;
    *out_n = n;
    return CKR_OK;
}

static CK_RV find_on_token(struct p11b_slot *slot, const struct p11b_query *q,
                           struct p11b_obj ***out, size_t *out_n,
                           unsigned long *out_gen)
{
    struct p11b_session sess;
    CK_OBJECT_HANDLE *hs = NULL;
    struct p11b_obj **objs = NULL;
    size_t n = 0, i, kept = 0;
    CK_RV rv;

    rv = p11b_session_acquire(slot, &sess);
    if (rv != CKR_OK)
        return rv;
    rv = find_handles(&sess, q, &hs, &n);
    if (rv == CKR_OK) {
        objs = calloc(n + 1, sizeof(*objs));
        if (objs == NULL)
            rv = CKR_HOST_MEMORY;
    }
    for (i = 0; rv == CKR_OK && i < n; i++) {
        rv = load_object(&sess, hs[i], &objs[kept]);
        if (rv == CKR_OBJECT_HANDLE_INVALID) { /* deleted meanwhile */
            rv = CKR_OK;
            continue;
        }
        if (rv == CKR_OK)
            kept++;
    }
    *out_gen = sess.gen;
    p11b_session_release_rv(&sess, rv);
    free(hs);
    if (rv != CKR_OK) {
        p11b_objs_free(objs, kept);
        return rv;
    }
    *out = objs;
    *out_n = kept;
    return CKR_OK;
}

/* ---- the cache -------------------------------------------------------- */

static void put_field(unsigned char *buf, size_t *len, unsigned char tag,
                      const void *data, size_t dlen)
{
    if (buf != NULL) {
        buf[*len] = tag;
        memcpy(buf + *len + 1, &dlen, sizeof(dlen));
        if (dlen > 0)
            memcpy(buf + *len + 1 + sizeof(dlen), data, dlen);
    }
    *len += 1 + sizeof(dlen) + dlen;
}

/* The cache key: every field of the query, and the login state (private
 * objects are visible only after login). Called with buf NULL to size. */
static size_t cache_key(const struct p11b_query *q, int logged_in,
                        unsigned char *buf)
{
    const struct p11b_bytes *b[] = { &q->id, &q->label, &q->subject,
                                     &q->issuer, &q->serial };
    size_t len = 0, i;

    put_field(buf, &len, 'L', &logged_in, sizeof(logged_in));
    if (q->has_class)
        put_field(buf, &len, 'C', &q->cls, sizeof(q->cls));
    if (q->has_key_type)
        put_field(buf, &len, 'K', &q->key_type, sizeof(q->key_type));
    for (i = 0; i < P11B_NELEM(b); i++) {
        if (b[i]->present)
            put_field(buf, &len, (unsigned char)('0' + i), b[i]->data,
                      b[i]->len);
    }
    return len;
}

static void entry_free(struct cache_entry *e)
{
    p11b_objs_free(e->objs, e->n);
    free(e->key);
    free(e);
}

void p11b_objcache_free(struct p11b_objcache *c)
{
    struct cache_entry *e, *next;

    if (c == NULL)
        return;
    for (e = c->head; e != NULL; e = next) {
        next = e->next;
        entry_free(e);
    }
    free(c);
}

/* locked: slot->lock. Entries of an older slot generation answer nothing
 * any more (the slot bumps its generation and knows nothing of this
 * cache): they go at the next use. */
static void cache_drop_stale(struct p11b_slot *slot)
{
    struct cache_entry *e, **pp;

    if (slot->cache == NULL)
        return;
    for (pp = &slot->cache->head; (e = *pp) != NULL;) {
        if (e->gen == slot->gen) {
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        entry_free(e);
        slot->cache->n--;
    }
}

static struct p11b_obj **copy_refs(struct p11b_obj **objs, size_t n)
{
    struct p11b_obj **copy = calloc(n + 1, sizeof(*copy));
    size_t i;

    if (copy == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        copy[i] = p11b_obj_up_ref(objs[i]);
    return copy;
}

/* locked: slot->lock */
static struct p11b_obj **cache_lookup(struct p11b_slot *slot,
                                      const unsigned char *key, size_t keylen,
                                      size_t *out_n)
{
    struct cache_entry *e;

    cache_drop_stale(slot);
    if (slot->cache == NULL)
        return NULL;
    for (e = slot->cache->head; e != NULL; e = e->next) {
        if (e->keylen == keylen &&
            memcmp(e->key, key, keylen) == 0) {
            *out_n = e->n;
            return copy_refs(e->objs, e->n);
        }
    }
    return NULL;
}

/* locked: slot->lock. Takes ownership of key. */
static void cache_insert(struct p11b_slot *slot, unsigned char *key,
                         size_t keylen, struct p11b_obj **objs, size_t n)
{
    struct cache_entry *e, **pp;

    cache_drop_stale(slot);
    if (slot->cache == NULL)
        slot->cache = calloc(1, sizeof(*slot->cache));
    e = calloc(1, sizeof(*e));
    if (slot->cache == NULL || e == NULL)
        goto fail;
    e->objs = copy_refs(objs, n);
    if (e->objs == NULL)
        goto fail;
    e->key = key;
    e->keylen = keylen;
    e->n = n;
    e->gen = slot->gen;
    e->next = slot->cache->head;
    slot->cache->head = e;
    if (++slot->cache->n > CACHE_MAX) { /* drop the oldest */
        for (pp = &slot->cache->head; (*pp)->next != NULL; pp = &(*pp)->next)
            ;
        entry_free(*pp);
        *pp = NULL;
        slot->cache->n--;
    }
    return;
fail:
    free(e);
    free(key);
}

CK_RV p11b_object_find(struct p11b_slot *slot, const struct p11b_query *q,
                       struct p11b_obj ***out, size_t *out_n)
{
    struct p11b_obj **objs = NULL;
    unsigned char *key;
    size_t keylen, n = 0;
    unsigned long gen;
    CK_RV rv;

    pthread_mutex_lock(&slot->lock);
    keylen = cache_key(q, slot->logged_in, NULL);
    key = malloc(keylen);
    if (key != NULL) {
        cache_key(q, slot->logged_in, key);
        if (!q->fresh)
            objs = cache_lookup(slot, key, keylen, &n);
    }
    pthread_mutex_unlock(&slot->lock);
    if (key == NULL)
        return CKR_HOST_MEMORY;
    if (objs != NULL) {
        P11B_LOG(2, "slot %lu: %zu objects from the search cache", slot->id, n);
        free(key);
        *out = objs;
        *out_n = n;
        return CKR_OK;
    }

    rv = find_on_token(slot, q, &objs, &n, &gen);
    if (rv != CKR_OK) {
        free(key);
        return rv;
    }
    pthread_mutex_lock(&slot->lock);
    /* Cache hits only: an object created later must still be found. */
    if (n > 0 && gen == slot->gen)
        cache_insert(slot, key, keylen, objs, n);
    else
        free(key);
    pthread_mutex_unlock(&slot->lock);
    *out = objs;
    *out_n = n;
    return CKR_OK;
}

/* ---- naming ------------------------------------------------------------ */

static enum p11b_uri_type uri_type_of(CK_OBJECT_CLASS cls)
{
    switch (cls) {
    case CKO_PRIVATE_KEY:
        return P11B_URI_TYPE_PRIVATE;
    case CKO_PUBLIC_KEY:
        return P11B_URI_TYPE_PUBLIC;
    case CKO_CERTIFICATE:
        return P11B_URI_TYPE_CERT;
    case CKO_SECRET_KEY:
        return P11B_URI_TYPE_SECRET_KEY;
    case CKO_DATA:
        return P11B_URI_TYPE_DATA;
    default:
        return P11B_URI_TYPE_ANY;
    }
}

char *p11b_obj_uri(const struct p11b_obj *o)
{
    struct p11b_uri *uri = p11b_uri_new();
    CK_TOKEN_INFO ti;
    char *s = NULL;
    int ok;

    if (uri == NULL)
        return NULL;
    pthread_mutex_lock(&o->slot->lock);
    ti = o->slot->token;
    pthread_mutex_unlock(&o->slot->lock);
    ok = p11b_uri_set_token_info(uri, &ti) == 0;
    if (ok && o->label.present)
        ok = p11b_uri_set_value(&uri->object, o->label.data, o->label.len) == 0;
    if (ok && o->id.present)
        ok = p11b_uri_set_value(&uri->id, o->id.data, o->id.len) == 0;
    uri->type = uri_type_of(o->cls);
    if (ok)
        s = p11b_uri_format(uri, 0);
    p11b_uri_free(uri);
    return s;
}
