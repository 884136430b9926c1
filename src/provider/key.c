/*
 * struct p11b_key and the software public half of token keys.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "pkcs11/log.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"
#include "provider/errors.h"
#include "provider/ecconv.h"
#include "provider/key.h"
#include "provider/provider.h"

struct p11b_key *p11b_key_new(struct p11b_prov *prov,
                              enum p11b_key_family family)
{
    struct p11b_key *key = OPENSSL_zalloc(sizeof(*key));

    if (key == NULL)
        return NULL;
    key->magic = P11B_KEY_MAGIC;
    atomic_init(&key->refs, 1);
    pthread_mutex_init(&key->lock, NULL);
    key->prov = prov;
    key->family = family;
    return key;
}

void p11b_key_ref_init(struct p11b_key_ref *ref, struct p11b_key *key)
{
    memset(ref, 0, sizeof(*ref));
    ref->magic = P11B_KEY_MAGIC;
    ref->key = key;
}

struct p11b_key *p11b_key_up_ref(struct p11b_key *key)
{
    if (key != NULL)
        atomic_fetch_add(&key->refs, 1);
    return key;
}

void p11b_key_free(struct p11b_key *key)
{
    if (key == NULL || atomic_fetch_sub(&key->refs, 1) > 1)
        return;
    p11b_obj_free(key->priv);
    p11b_obj_free(key->pub);
    EVP_PKEY_free(key->pub_pkey);
    EVP_MD_CTX_free(key->twin_tmpl);
    EVP_PKEY_CTX_free(key->enc_tmpl);
    free(key->uri); /* from p11b_uri_format: malloc */
    pthread_mutex_destroy(&key->lock);
    key->magic = 0;
    OPENSSL_free(key);
}

const char *p11b_family_name(enum p11b_key_family family)
{
    switch (family) {
    case P11B_FAMILY_RSA:
        return "RSA";
    case P11B_FAMILY_RSA_PSS:
        return "RSA-PSS";
    case P11B_FAMILY_EC:
        return "EC";
    case P11B_FAMILY_ED25519:
        return "ED25519";
    case P11B_FAMILY_ED448:
        return "ED448";
    default:
        return NULL;
    }
}

enum p11b_key_family p11b_obj_family(const struct p11b_obj *obj)
{
    switch (p11b_obj_kind_of(obj)) {
    case P11B_OBJ_KIND_RSA:
        return P11B_FAMILY_RSA;
    case P11B_OBJ_KIND_RSA_PSS:
        return P11B_FAMILY_RSA_PSS;
    case P11B_OBJ_KIND_EC:
        return P11B_FAMILY_EC;
    case P11B_OBJ_KIND_ED25519:
        return P11B_FAMILY_ED25519;
    case P11B_OBJ_KIND_ED448:
        return P11B_FAMILY_ED448;
    default:
        return P11B_FAMILY_NONE;
    }
}

const char *p11b_ec_params_to_name(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    int nid;

    if (oid == NULL) {
        ERR_clear_error();
        return NULL;
    }
    nid = OBJ_obj2nid(oid);
    ASN1_OBJECT_free(oid);
    return nid == NID_undef ? NULL : OSSL_EC_curve_nid2name(nid);
}

static EVP_PKEY *from_params(struct p11b_prov *prov, const char *name,
                             OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;

    if (params == NULL)
        return NULL;
    ctx = EVP_PKEY_CTX_new_from_name(prov->libctx, name, P11B_SOFT_PROPQ);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_public(struct p11b_prov *prov, const char *name,
                            const struct p11b_bytes *n,
                            const struct p11b_bytes *e)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn = BN_bin2bn(n->data, (int)n->len, NULL);
    BIGNUM *be = BN_bin2bn(e->data, (int)e->len, NULL);
    EVP_PKEY *pkey = NULL;

    if (bld != NULL && bn != NULL && be != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = from_params(prov, name, bld);
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *ec_public(struct p11b_prov *prov, const char *curve,
                           const unsigned char *pt, size_t pt_len)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;

    /* The group by name: never explicit parameters (FIELD-NOTES). */
    if (bld != NULL &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        curve, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                         pt_len))
        pkey = from_params(prov, "EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static size_t edwards_key_len(enum p11b_key_family family)
{
    return family == P11B_FAMILY_ED25519 ? 32 : 57;
}

static EVP_PKEY *edwards_public(struct p11b_prov *prov,
                                enum p11b_key_family family,
                                const unsigned char *pt, size_t len)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    size_t klen = edwards_key_len(family);

    /* Raw, or DER-wrapped in an OCTET STRING as CKA_EC_POINT usually is. */
    if (len == klen + 2 && pt[0] == 0x04 && pt[1] == klen) {
        pt += 2;
        len -= 2;
    }
    if (bld != NULL && len == klen &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                         len))
        pkey = from_params(prov, p11b_family_name(family), bld);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* Re-home a decoded SubjectPublicKeyInfo key in our family's form. */
static EVP_PKEY *from_spki_key(struct p11b_key *key, EVP_PKEY *spki)
{
    struct p11b_bytes n = { 0 }, e = { 0 };
    BIGNUM *bn = NULL, *be = NULL;
    unsigned char pt[200];
    char curve[64];
    size_t pt_len = 0;
    EVP_PKEY *pkey = NULL;

    if (p11b_family_is_eddsa(key->family)) {
        if (EVP_PKEY_is_a(spki, p11b_family_name(key->family)) &&
            EVP_PKEY_get_octet_string_param(spki, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                            sizeof(pt), &pt_len))
            pkey = edwards_public(key->prov, key->family, pt, pt_len);
        return pkey;
    }
    if (key->family == P11B_FAMILY_EC) {
        if (EVP_PKEY_is_a(spki, "EC") &&
            EVP_PKEY_get_utf8_string_param(spki, OSSL_PKEY_PARAM_GROUP_NAME,
                                           curve, sizeof(curve), NULL) &&
            EVP_PKEY_get_octet_string_param(spki, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                            sizeof(pt), &pt_len))
            pkey = ec_public(key->prov, curve, pt, pt_len);
        return pkey;
    }
    if (!EVP_PKEY_is_a(spki, "RSA") && !EVP_PKEY_is_a(spki, "RSA-PSS"))
        return NULL;
    if (EVP_PKEY_get_bn_param(spki, OSSL_PKEY_PARAM_RSA_N, &bn) &&
        EVP_PKEY_get_bn_param(spki, OSSL_PKEY_PARAM_RSA_E, &be)) {
        n.len = (size_t)BN_num_bytes(bn);
        e.len = (size_t)BN_num_bytes(be);
        n.data = OPENSSL_malloc(n.len + 1);
        e.data = OPENSSL_malloc(e.len + 1);
        if (n.data != NULL && e.data != NULL) {
            BN_bn2bin(bn, n.data);
            BN_bn2bin(be, e.data);
            pkey = rsa_public(key->prov, p11b_family_name(key->family), &n,
                              &e);
        }
    }
    OPENSSL_free(n.data);
    OPENSSL_free(e.data);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *from_der(struct p11b_key *key, const struct p11b_obj *o)
{
    const struct p11b_bytes *b;
    const unsigned char *p;
    EVP_PKEY *spki = NULL, *pkey = NULL;
    X509 *x = NULL;

    if (o->cls == CKO_CERTIFICATE && o->value.present) {
        b = &o->value;
        p = b->data;
        x = d2i_X509(NULL, &p, (long)b->len);
        if (x != NULL)
            spki = X509_get_pubkey(x);
    } else if (o->public_key_info.present && o->public_key_info.len > 0) {
        b = &o->public_key_info;
        p = b->data;
        spki = d2i_PUBKEY_ex(NULL, &p, (long)b->len, key->prov->libctx,
                             P11B_SOFT_PROPQ);
    }
    if (spki != NULL)
        pkey = from_spki_key(key, spki);
    EVP_PKEY_free(spki);
    X509_free(x);
    return pkey;
}

int p11b_obj_has_public(const struct p11b_obj *o)
{
    if (o->public_key_info.present && o->public_key_info.len > 0)
        return 1;
    if (o->key_type == CKK_RSA)
        return o->modulus.present && o->modulus.len > 0 &&
               o->public_exponent.present && o->public_exponent.len > 0;
    return o->ec_point.present && o->ec_point.len > 0;
}

/* The public key from one object's own attributes, or NULL. */
static EVP_PKEY *public_from(struct p11b_key *key, const struct p11b_obj *o)
{
    const unsigned char *pt;
    const char *curve;
    size_t pt_len;
    EVP_PKEY *pkey = NULL;

    if ((key->family == P11B_FAMILY_RSA || key->family == P11B_FAMILY_RSA_PSS)
        && o->modulus.present && o->modulus.len > 0 &&
        o->public_exponent.present && o->public_exponent.len > 0)
        pkey = rsa_public(key->prov, p11b_family_name(key->family),
                          &o->modulus, &o->public_exponent);
    if (pkey == NULL && key->family == P11B_FAMILY_EC &&
        o->ec_params.present && o->ec_point.present) {
        curve = p11b_ec_params_to_name(o->ec_params.data, o->ec_params.len);
        if (curve != NULL &&
            p11b_ec_point_octets(curve, o->ec_point.data, o->ec_point.len, &pt,
                            &pt_len))
            pkey = ec_public(key->prov, curve, pt, pt_len);
    }
    if (pkey == NULL && p11b_family_is_eddsa(key->family) &&
        o->ec_point.present)
        pkey = edwards_public(key->prov, key->family, o->ec_point.data,
                              o->ec_point.len);
    if (pkey == NULL)
        pkey = from_der(key, o);
    return pkey;
}

int p11b_key_set_public(struct p11b_key *key, const struct p11b_obj *obj,
                        struct p11b_obj *const *extra, size_t n_extra)
{
    EVP_PKEY *pkey;
    size_t i;

    ERR_set_mark();
    pkey = public_from(key, obj);
    for (i = 0; pkey == NULL && i < n_extra; i++)
        pkey = public_from(key, extra[i]);
    ERR_pop_to_mark();
    if (pkey == NULL) {
        P11B_RAISE(key->prov, P11B_R_NO_PUBLIC_KEY,
                   "%s: no public key attributes, public key object or "
                   "certificate with the same CKA_ID",
                   key->uri != NULL ? key->uri : "token key");
        return 0;
    }
    EVP_PKEY_free(key->pub_pkey);
    key->pub_pkey = pkey;
    /* Made while the key is built, before any operation: no twin was
     * copied from the old half. */
    EVP_MD_CTX_free(key->twin_tmpl);
    key->twin_tmpl = NULL;
    EVP_PKEY_CTX_free(key->enc_tmpl);
    key->enc_tmpl = NULL;
    return 1;
}

/* ---- private-key operations -------------------------------------------- */

int p11b_rv_retry(CK_RV rv)
{
    /* CKR_OPERATION_ACTIVE: the session was left busy (by a token that
     * does not end an operation on failure); it is closed, and a fresh
     * one will do. */
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
           rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_OBJECT_HANDLE_INVALID ||
           rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OPERATION_ACTIVE;
}

/* The key's private object as found in the slot's current state. */
static int current_priv(struct p11b_key *key, struct p11b_obj **out)
{
    struct p11b_obj *o, **found = NULL;
    struct p11b_query q;
    size_t n = 0, i;
    CK_RV rv;

    pthread_mutex_lock(&key->lock);
    o = p11b_obj_up_ref(key->priv);
    pthread_mutex_unlock(&key->lock);
    if (p11b_obj_is_current(o)) {
        *out = o;
        return 1;
    }
    /* Fork or re-insertion: find it again by what named it. */
    memset(&q, 0, sizeof(q));
    q.has_class = 1;
    q.cls = CKO_PRIVATE_KEY;
    q.has_key_type = 1;
    q.key_type = o->key_type;
    q.id = o->id;
    q.label = o->label;
    rv = p11b_object_find(o->slot, &q, &found, &n);
    if (rv != CKR_OK || n == 0) {
        P11B_RAISE_RV(key->prov, P11B_R_URI_NO_MATCH,
                      rv == CKR_OK ? CKR_OBJECT_HANDLE_INVALID : rv,
                      "%s: finding the key again on slot %lu", key->uri,
                      o->slot->id);
        p11b_obj_free(o);
        p11b_objs_free(found, n);
        return 0;
    }
    p11b_obj_free(o);
    pthread_mutex_lock(&key->lock);
    p11b_obj_free(key->priv);
    key->priv = p11b_obj_up_ref(found[0]);
    pthread_mutex_unlock(&key->lock);
    *out = p11b_obj_up_ref(found[0]);
    for (i = 0; i < n; i++)
        p11b_obj_free(found[i]);
    free(found);
    return 1;
}

int p11b_key_can_use(const struct p11b_key *key, CK_MECHANISM_TYPE mech)
{
    const struct p11b_obj *o = key->priv;
    CK_ULONG i;

    if (o == NULL || mech == CK_UNAVAILABLE_INFORMATION ||
        !p11b_slot_has_mechanism(o->slot, mech))
        return 0;
    if (o->n_allowed_mechs == 0)
        return 1;
    for (i = 0; i < o->n_allowed_mechs; i++) {
        if (o->allowed_mechs[i] == mech)
            return 1;
    }
    return 0;
}

int p11b_key_check_mech_size(struct p11b_key *key, CK_MECHANISM_TYPE mech)
{
    CK_MECHANISM_INFO mi;
    CK_ULONG bits;

    /* EdDSA sizes are given inconsistently (SoftHSM: 256..456 for a
     * 253-bit Ed25519 key): not checked. */
    if (key->priv == NULL || p11b_family_is_eddsa(key->family) ||
        p11b_slot_mechanism_info(key->priv->slot, mech, &mi) != CKR_OK)
        return 1;
    bits = (CK_ULONG)EVP_PKEY_get_bits(key->pub_pkey);
    if (bits >= mi.ulMinKeySize &&
        (mi.ulMaxKeySize == 0 || bits <= mi.ulMaxKeySize))
        return 1;
    P11B_RAISE(key->prov, P11B_R_MECH_UNSUPPORTED,
               "%s: a %lu-bit key is outside the %lu..%lu bits the token "
               "supports for %s", key->uri, bits, mi.ulMinKeySize,
               mi.ulMaxKeySize, p11b_mech_name(mech));
    return 0;
}

int p11b_key_unambiguous(const struct p11b_key *key)
{
    size_t n = atomic_load((atomic_size_t *)&key->ambiguous);

    if (n == 0)
        return 1;
    P11B_RAISE(key->prov, P11B_R_URI_AMBIGUOUS,
               "the URI matches %zu keys and this one was taken without "
               "looking at the others: add id= (or object=, token=) to name "
               "one; openssl storeutl lists them",
               n);
    return 0;
}

/* The per-operation login, from the operation layer. Our error is
 * raised here; the operation reports the stage, not the queue. */
static CK_RV key_context_login(void *arg, struct p11b_session *sess)
{
    struct p11b_key_op *kop = arg;

    return p11b_prov_context_login(kop->key->prov, sess)
               ? CKR_OK
               : CKR_USER_NOT_LOGGED_IN;
}

int p11b_key_op_begin(struct p11b_key *key, struct p11b_key_op *kop)
{
    struct p11b_obj *o = NULL;

    memset(kop, 0, sizeof(*kop));
    kop->key = key;
    if (!p11b_key_unambiguous(key))
        return 0;
    if (key->priv == NULL) {
        P11B_RAISE(key->prov, P11B_R_UNSUPPORTED_KEY,
                   "%s: not a private key on a token",
                   key->uri != NULL ? key->uri : "key");
        return 0;
    }
    if (!p11b_prov_module_ready(key->prov))
        return 0;
    /* A private key needs the login before it can be found again. */
    if (key->priv->is_private &&
        !p11b_prov_login(key->prov, key->priv->slot, NULL, NULL, NULL, NULL))
        return 0;
    if (!current_priv(key, &o))
        return 0;
    kop->auth.context_login = key_context_login;
    kop->auth.arg = kop;
    kop->op.key = o;
    kop->op.may_copy = key->prov->cfg.cache_keys;
    kop->op.auth = &kop->auth;
    return 1;
}

int p11b_key_op_end(struct p11b_key_op *kop, CK_RV rv,
                    enum p11b_op_stage stage)
{
    struct p11b_obj *o = kop->op.key;

    kop->op.key = NULL;
    if (stage == P11B_OP_STAGE_SESSION)
        P11B_RAISE_RV(kop->key->prov, P11B_R_SESSION, rv,
                      "C_OpenSession on slot %lu", o->slot->id);
    p11b_obj_free(o);
    return stage == P11B_OP_STAGE_TOKEN;
}
