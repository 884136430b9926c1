/*
 * Key generation on the token: `openssl genpkey -propquery provider=pkcs11
 * -algorithm RSA|RSA-PSS|EC|ED25519|ED448 -pkeyopt pkcs11_uri:'pkcs11:...'`.
 *
 * The key pair is made by C_GenerateKeyPair, stored on the token with the
 * same CKA_ID and CKA_LABEL on both halves, and the private half is
 * sensitive and never extractable. What OpenSSL gets back is the usual
 * reference, built from the two objects C_GenerateKeyPair returned.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "pkcs11/log.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/op.h"
#include "pkcs11/slot.h"
#include "pkcs11/uri.h"
#include "provider/errors.h"
#include "provider/keymgmt.h"
#include "provider/lookup.h"
#include "provider/provider.h"

#define USAGE_SIGN 0x1u
#define USAGE_DECRYPT 0x2u
#define USAGE_DERIVE 0x4u

struct p11b_gen_ctx {
    struct p11b_prov *prov;
    enum p11b_key_family family;
    char *uri;
    size_t bits;
    unsigned long e;
    char group[64];
    unsigned int usage; /* 0: the family's default */
};

/* What the template of one generation holds. */
struct gen_tmpl {
    CK_ATTRIBUTE pub[10], priv[12];
    CK_ULONG npub, npriv;
    CK_MECHANISM mech;
    CK_KEY_TYPE kt;
    CK_ULONG bits;
    CK_MECHANISM_TYPE allowed[6];
    unsigned char e[8];
    unsigned char params[64];
    unsigned char id[16];
};

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

void *p11b_km_gen_init(void *provctx, int selection, const OSSL_PARAM params[],
                       enum p11b_key_family family)
{
    struct p11b_gen_ctx *g;

    if (!(selection & OSSL_KEYMGMT_SELECT_KEYPAIR))
        return NULL;
    g = OPENSSL_zalloc(sizeof(*g));
    if (g == NULL)
        return NULL;
    g->prov = provctx;
    g->family = family;
    g->bits = 2048;
    g->e = 65537;
    strcpy(g->group, "prime256v1");
    if (!p11b_km_gen_set_params(g, params)) {
        p11b_km_gen_cleanup(g);
        return NULL;
    }
    return g;
}

static int parse_usage(struct p11b_gen_ctx *g, const char *s)
{
    static const struct {
        const char *word;
        unsigned int flag;
    } words[] = {
        { "sign", USAGE_SIGN }, { "decrypt", USAGE_DECRYPT },
        { "derive", USAGE_DERIVE },
    };
    size_t len, i;

    g->usage = 0;
    while (*s != '\0') {
        s += strspn(s, " ,");
        len = strcspn(s, " ,");
        if (len == 0)
            break;
        for (i = 0; i < P11B_NELEM(words); i++) {
            if (strlen(words[i].word) == len && strncmp(words[i].word, s, len) == 0)
                break;
        }
        if (i == P11B_NELEM(words)) {
            P11B_RAISE(g->prov, P11B_R_BAD_INPUT,
                       "pkcs11_key_usage: unknown usage '%.*s' (sign, "
                       "decrypt, derive)", (int)len, s);
            return 0;
        }
        g->usage |= words[i].flag;
        s += len;
    }
    return 1;
}

int p11b_km_gen_set_params(void *genctx, const OSSL_PARAM params[])
{
    struct p11b_gen_ctx *g = genctx;
    const OSSL_PARAM *p;
    const char *s = NULL;
    char *group = g->group;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, P11B_GEN_PARAM_URI);
    if (p != NULL) {
        OPENSSL_free(g->uri);
        g->uri = NULL;
        if (!OSSL_PARAM_get_utf8_string(p, &g->uri, 0))
            return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_BITS);
    if (p != NULL && !OSSL_PARAM_get_size_t(p, &g->bits))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E);
    if (p != NULL && !OSSL_PARAM_get_ulong(p, &g->e))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
    if (p != NULL && !OSSL_PARAM_get_utf8_string(p, &group, sizeof(g->group)))
        return 0;
    p = OSSL_PARAM_locate_const(params, P11B_GEN_PARAM_USAGE);
    if (p != NULL &&
        (!OSSL_PARAM_get_utf8_string_ptr(p, &s) || !parse_usage(g, s)))
        return 0;
    return 1;
}

void p11b_km_gen_cleanup(void *genctx)
{
    struct p11b_gen_ctx *g = genctx;

    if (g == NULL)
        return;
    OPENSSL_free(g->uri);
    OPENSSL_free(g);
}

/* ---- templates ----------------------------------------------------------- */

static void add(CK_ATTRIBUTE *t, CK_ULONG *n, CK_ATTRIBUTE_TYPE type,
                void *value, CK_ULONG len)
{
    t[*n].type = type;
    t[*n].pValue = value;
    t[*n].ulValueLen = len;
    (*n)++;
}

/* An RSA-PSS key is an RSA key pair its token allows for PSS only, both
 * halves: that is what makes either half load as RSA-PSS again. */
static void add_pss_only(struct gen_tmpl *t)
{
    static const CK_MECHANISM_TYPE pss[] = {
        CKM_RSA_PKCS_PSS,        CKM_SHA1_RSA_PKCS_PSS,
        CKM_SHA224_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS,
        CKM_SHA384_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS,
    };

    memcpy(t->allowed, pss, sizeof(pss));
    add(t->priv, &t->npriv, CKA_ALLOWED_MECHANISMS, t->allowed, sizeof(pss));
    add(t->pub, &t->npub, CKA_ALLOWED_MECHANISMS, t->allowed, sizeof(pss));
}

static unsigned int default_usage(enum p11b_key_family f)
{
    if (p11b_family_is_rsa(f))
        return USAGE_SIGN | USAGE_DECRYPT;
    if (f == P11B_FAMILY_EC)
        return USAGE_SIGN | USAGE_DERIVE;
    return USAGE_SIGN;
}

/* A curve by NIST name ("P-256"), short or long name, or dotted OID.
 * The lookups that cannot fail noisily come first: OBJ_txt2nid queues
 * "unknown object name" for a NIST name, and a key generation that
 * succeeds must leave the caller's error queue as it found it. */
static int curve_nid(const char *name)
{
    int nid = EC_curve_nist2nid(name);

    if (nid == NID_undef)
        nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = OBJ_ln2nid(name);
    if (nid == NID_undef) {
        ERR_set_mark();
        nid = OBJ_txt2nid(name);
        ERR_pop_to_mark();
    }
    return nid;
}

/* DER of the curve's OID for CKA_EC_PARAMS. */
static int curve_params(struct p11b_gen_ctx *g, struct gen_tmpl *t,
                        CK_ULONG *len)
{
    int nid = NID_undef;
    unsigned char *p = t->params;
    ASN1_OBJECT *oid;

    if (g->family == P11B_FAMILY_ED25519)
        nid = NID_ED25519;
    else if (g->family == P11B_FAMILY_ED448)
        nid = NID_ED448;
    else
        nid = curve_nid(g->group);
    oid = OBJ_nid2obj(nid);
    if (nid == NID_undef || oid == NULL || i2d_ASN1_OBJECT(oid, NULL) <= 0 ||
        i2d_ASN1_OBJECT(oid, NULL) > (int)sizeof(t->params)) {
        P11B_RAISE(g->prov, P11B_R_UNSUPPORTED_KEY, "unknown curve '%s'",
                   g->group);
        return 0;
    }
    *len = (CK_ULONG)i2d_ASN1_OBJECT(oid, &p);
    return 1;
}

static int fill_templates(struct p11b_gen_ctx *g, const struct p11b_uri *u,
                          struct gen_tmpl *t)
{
    unsigned int usage = g->usage != 0 ? g->usage : default_usage(g->family);
    CK_ULONG idlen = sizeof(t->id), plen = 0, elen = 0;
    const void *id = t->id;
    unsigned long e;

    if (u->id.present) {
        id = u->id.data;
        idlen = u->id.len;
    } else if (RAND_bytes(t->id, (int)sizeof(t->id)) != 1) {
        return 0;
    }
    add(t->pub, &t->npub, CKA_TOKEN, &yes, sizeof(yes));
    add(t->pub, &t->npub, CKA_ID, (void *)id, idlen);
    add(t->pub, &t->npub, CKA_VERIFY, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_TOKEN, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_PRIVATE, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_SENSITIVE, &yes, sizeof(yes));
    add(t->priv, &t->npriv, CKA_EXTRACTABLE, &no, sizeof(no));
    add(t->priv, &t->npriv, CKA_ID, (void *)id, idlen);
    add(t->priv, &t->npriv, CKA_SIGN, (usage & USAGE_SIGN) ? &yes : &no, 1);
    if (u->object.present) {
        add(t->pub, &t->npub, CKA_LABEL, u->object.data, u->object.len);
        add(t->priv, &t->npriv, CKA_LABEL, u->object.data, u->object.len);
    }
    if (p11b_family_is_rsa(g->family)) {
        t->mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        t->bits = g->bits;
        for (e = g->e; e != 0; e >>= 8)
            elen++;
        for (e = g->e, plen = elen; plen > 0; plen--, e >>= 8)
            t->e[plen - 1] = (unsigned char)e;
        add(t->pub, &t->npub, CKA_MODULUS_BITS, &t->bits, sizeof(t->bits));
        add(t->pub, &t->npub, CKA_PUBLIC_EXPONENT, t->e, elen);
        add(t->pub, &t->npub, CKA_ENCRYPT, &yes, sizeof(yes));
        add(t->priv, &t->npriv, CKA_DECRYPT,
            (usage & USAGE_DECRYPT) ? &yes : &no, 1);
        if (g->family == P11B_FAMILY_RSA_PSS)
            add_pss_only(t);
        return 1;
    }
    if (!curve_params(g, t, &plen))
        return 0;
    add(t->pub, &t->npub, CKA_EC_PARAMS, t->params, plen);
    if (g->family == P11B_FAMILY_EC) {
        t->mech.mechanism = CKM_EC_KEY_PAIR_GEN;
        add(t->priv, &t->npriv, CKA_DERIVE, (usage & USAGE_DERIVE) ? &yes : &no,
            1);
    } else {
        t->mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
    }
    return 1;
}

/* ---- generation ----------------------------------------------------------- */

static struct p11b_uri *parse_gen_uri(struct p11b_gen_ctx *g)
{
    struct p11b_uri_error err;
    struct p11b_uri *u = NULL;
    enum p11b_uri_status st;

    if (g->uri == NULL) {
        P11B_RAISE(g->prov, P11B_R_BAD_INPUT,
                   "key generation needs -pkeyopt %s:'pkcs11:token=...;"
                   "object=...' naming where to make the key",
                   P11B_GEN_PARAM_URI);
        return NULL;
    }
    memset(&err, 0, sizeof(err));
    st = p11b_uri_parse(g->uri, strlen(g->uri), &err, &u);
    if (st != P11B_URI_OK) {
        P11B_RAISE(g->prov, P11B_R_URI_SYNTAX, "attribute '%s': %s", err.attr,
                   p11b_uri_status_str(st));
        return NULL;
    }
    if (!u->object.present && !u->id.present) {
        P11B_RAISE(g->prov, P11B_R_BAD_INPUT,
                   "%s must name the new key (object= and/or id=)",
                   P11B_GEN_PARAM_URI);
        p11b_uri_free(u);
        return NULL;
    }
    return u;
}

/* 1 if a key (private, public or secret) on the slot has the id or the
 * label b, asked of the token itself: a cached search may be stale. */
static int key_uses(struct p11b_gen_ctx *g, struct p11b_slot *slot,
                    CK_ATTRIBUTE_TYPE type, const struct p11b_bytes *b)
{
    struct p11b_obj **objs = NULL;
    struct p11b_query q;
    size_t n = 0, i;
    int used = 0;
    CK_RV rv;

    memset(&q, 0, sizeof(q));
    q.fresh = 1;
    if (type == CKA_ID)
        q.id = *b;
    else
        q.label = *b;
    rv = p11b_object_find(slot, &q, &objs, &n);
    if (rv != CKR_OK) {
        P11B_RAISE_RV(g->prov, P11B_R_OPERATION_FAILED, rv,
                      "looking for keys with this %s on slot %lu",
                      p11b_attr_name(type), slot->id);
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (objs[i]->cls == CKO_PRIVATE_KEY || objs[i]->cls == CKO_PUBLIC_KEY ||
            objs[i]->cls == CKO_SECRET_KEY)
            used = 1;
    }
    p11b_objs_free(objs, n);
    return used;
}

/* One token, and no key there with the id or the label yet: each alone
 * would make a second key answer to the same URI. */
static struct p11b_slot *gen_slot(struct p11b_gen_ctx *g,
                                  const struct p11b_uri *u)
{
    struct p11b_slot **slots = NULL, *slot;
    struct p11b_bytes id, label;
    size_t n = 0;
    int used;

    if (!p11b_prov_match_slots(g->prov, u, &slots, &n))
        return NULL;
    slot = slots[0];
    free(slots);
    if (n > 1) {
        P11B_RAISE(g->prov, P11B_R_BAD_INPUT,
                   "the URI matches %zu tokens: name one (token=, serial=)", n);
        return NULL;
    }
    if (!p11b_prov_login(g->prov, slot, u, NULL, NULL, NULL))
        return NULL;
    id = (struct p11b_bytes){ 1, u->id.data, u->id.len };
    label = (struct p11b_bytes){ 1, u->object.data, u->object.len };
    used = u->id.present ? key_uses(g, slot, CKA_ID, &id) : 0;
    if (used == 0 && u->object.present) {
        used = key_uses(g, slot, CKA_LABEL, &label);
        if (used == 1)
            used = 2;
    }
    if (used == 1 || used == 2) {
        P11B_RAISE(g->prov, P11B_R_BAD_INPUT,
                   "a key with this %s is already on the token: choose "
                   "another %s", used == 1 ? "id (CKA_ID)" : "label (CKA_LABEL)",
                   used == 1 ? "id=" : "object=");
        return NULL;
    }
    return used == 0 ? slot : NULL;
}

/* The key of the pair just made, from the handles the token gave back:
 * no search, and no other key can answer in its place. */
static int made_key(struct p11b_gen_ctx *g, struct p11b_slot *slot,
                    CK_OBJECT_HANDLE hpub, CK_OBJECT_HANDLE hpriv,
                    struct p11b_key **out)
{
    struct p11b_obj *pair[2] = { NULL, NULL };
    CK_RV rv;

    P11B_QUIET(rv = p11b_object_read(slot, hpriv, &pair[0]));
    if (rv == CKR_OK)
        P11B_QUIET(rv = p11b_object_read(slot, hpub, &pair[1]));
    if (rv != CKR_OK) {
        P11B_RAISE_RV(g->prov, P11B_R_ATTRIBUTE, rv,
                      "reading the new key pair on slot %lu", slot->id);
    } else {
        *out = p11b_lookup_key_of(g->prov, pair[0], 0, pair, 2);
        if (*out == NULL)
            P11B_RAISE(g->prov, P11B_R_NO_PUBLIC_KEY,
                       "the new key pair on slot %lu has no public half "
                       "OpenSSL can use", slot->id);
    }
    p11b_obj_free(pair[0]);
    p11b_obj_free(pair[1]);
    return rv == CKR_OK && *out != NULL;
}

static int generate(struct p11b_gen_ctx *g, struct p11b_slot *slot,
                    const struct p11b_uri *u, struct p11b_key **out)
{
    struct gen_tmpl t;
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_RV rv;

    memset(&t, 0, sizeof(t));
    if (!fill_templates(g, u, &t))
        return 0;
    rv = p11b_op_generate_pair(slot, &t.mech, t.pub, t.npub, t.priv, t.npriv,
                               &hpub, &hpriv);
    if (rv != CKR_OK) {
        P11B_RAISE_RV(g->prov, P11B_R_OPERATION_FAILED, rv,
                      "C_GenerateKeyPair with %s on slot %lu",
                      p11b_mech_name(t.mech.mechanism), slot->id);
        return 0;
    }
    return made_key(g, slot, hpub, hpriv, out);
}

void *p11b_km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg)
{
    struct p11b_gen_ctx *g = genctx;
    struct p11b_key *key = NULL;
    struct p11b_slot *slot;
    struct p11b_uri *u;

    (void)cb;
    (void)cbarg;
    u = parse_gen_uri(g);
    slot = u != NULL ? gen_slot(g, u) : NULL;
    if (slot != NULL && generate(g, slot, u, &key)) {
        if (g->family == P11B_FAMILY_RSA_PSS) {
            /* An RSA key made for RSA-PSS: its public half says so. */
            key->family = P11B_FAMILY_RSA_PSS;
            if (!p11b_key_set_public(key, key->priv, NULL, 0)) {
                p11b_key_free(key);
                key = NULL;
            }
        }
        P11B_LOG(1, "generated %s key pair: %s",
                 p11b_family_name(g->family),
                 key != NULL ? key->uri : "?");
    }
    p11b_uri_free(u);
    return key;
}
