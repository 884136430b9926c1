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

#include "pkcs11/object.h"
#include "provider/errors.h"
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
    key->prov = prov;
    key->family = family;
    return key;
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
    free(key->uri); /* from p11b_uri_format: malloc */
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
    default:
        return NULL;
    }
}

static int is_pss_mech(CK_MECHANISM_TYPE m)
{
    return m == CKM_RSA_PKCS_PSS || m == CKM_SHA1_RSA_PKCS_PSS ||
           m == CKM_SHA224_RSA_PKCS_PSS || m == CKM_SHA256_RSA_PKCS_PSS ||
           m == CKM_SHA384_RSA_PKCS_PSS || m == CKM_SHA512_RSA_PKCS_PSS;
}

enum p11b_key_family p11b_obj_family(const struct p11b_obj *obj)
{
    CK_ULONG i;

    switch (obj->key_type) {
    case CKK_RSA:
        /* A key its token allows for PSS only is an RSA-PSS key. */
        for (i = 0; i < obj->n_allowed_mechs; i++) {
            if (!is_pss_mech(obj->allowed_mechs[i]))
                return P11B_FAMILY_RSA;
        }
        return obj->n_allowed_mechs > 0 ? P11B_FAMILY_RSA_PSS
                                        : P11B_FAMILY_RSA;
    case CKK_EC:
        return P11B_FAMILY_EC;
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

static size_t ec_field_bytes(const char *curve)
{
    EC_GROUP *g = EC_GROUP_new_by_curve_name(OBJ_sn2nid(curve));
    size_t fb;

    if (g == NULL) {
        ERR_clear_error();
        return 0;
    }
    fb = ((size_t)EC_GROUP_get_degree(g) + 7) / 8;
    EC_GROUP_free(g);
    return fb;
}

static int point_len_ok(const unsigned char *pt, size_t len, size_t fb)
{
    if (len == 1 + 2 * fb && pt[0] == 0x04)
        return 1;
    return len == 1 + fb && (pt[0] == 0x02 || pt[0] == 0x03);
}

/* CKA_EC_POINT comes DER-wrapped (an OCTET STRING) from most tokens and
 * raw from some: take whichever form has a valid point length. */
static int ec_point_octets(const char *curve, const unsigned char *d,
                           size_t len, const unsigned char **pt,
                           size_t *pt_len)
{
    size_t fb = ec_field_bytes(curve), hdr, clen;

    if (fb == 0 || len < 2)
        return 0;
    if (d[0] == 0x04 && d[1] < 0x80) {
        hdr = 2;
        clen = d[1];
    } else if (d[0] == 0x04 && d[1] == 0x81 && len > 2) {
        hdr = 3;
        clen = d[2];
    } else {
        hdr = clen = 0;
    }
    if (hdr > 0 && hdr + clen == len && point_len_ok(d + hdr, clen, fb)) {
        *pt = d + hdr;
        *pt_len = clen;
        return 1;
    }
    if (point_len_ok(d, len, fb)) {
        *pt = d;
        *pt_len = len;
        return 1;
    }
    return 0;
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

/* Re-home a decoded SubjectPublicKeyInfo key in our family's form. */
static EVP_PKEY *from_spki_key(struct p11b_key *key, EVP_PKEY *spki)
{
    struct p11b_bytes n = { 0 }, e = { 0 };
    BIGNUM *bn = NULL, *be = NULL;
    unsigned char pt[200];
    char curve[64];
    size_t pt_len = 0;
    EVP_PKEY *pkey = NULL;

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
            ec_point_octets(curve, o->ec_point.data, o->ec_point.len, &pt,
                            &pt_len))
            pkey = ec_public(key->prov, curve, pt, pt_len);
    }
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
    return 1;
}
