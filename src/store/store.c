/*
 * The "pkcs11" OSSL_STORE loader: private keys, public keys and X.509
 * certificates named by an RFC 7512 URI. Keys are handed out as
 * references to token objects; no key material leaves the token.
 *
 * There is deliberately no export_object: OpenSSL 3.0 would use it to copy
 * a key into another provider's keymgmt, which can only ever receive the
 * public half. Without it, the key is loaded by reference through our own
 * keymgmt.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include "pkcs11/log.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"
#include "pkcs11/uri.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/provider.h"
#include "store/store.h"

#define WANT_PRIV 0x1u
#define WANT_PUB 0x2u
#define WANT_CERT 0x4u

struct store_item {
    struct p11b_key *key;   /* a key, or                   */
    struct p11b_obj *cert;  /* a certificate               */
    char *uri;              /* certificates' URI (malloc)  */
};

struct store_ctx {
    struct p11b_prov *prov;
    struct p11b_uri *uri;
    int expect;
    /* search criteria from set_ctx_params */
    X509_NAME *subject;
    X509_NAME *issuer;
    BIGNUM *serial;
    unsigned char *fingerprint;
    size_t fingerprint_len;
    char *alias;

    int searched;
    int failed;
    size_t nslots;      /* tokens the URI selects                       */
    size_t no_pin;      /* of which searched without login: no PIN      */
    struct store_item *items;
    size_t nitems, cap, next;
};

static OSSL_FUNC_store_open_fn store_open;
static OSSL_FUNC_store_settable_ctx_params_fn store_settable_ctx_params;
static OSSL_FUNC_store_set_ctx_params_fn store_set_ctx_params;
static OSSL_FUNC_store_load_fn store_load;
static OSSL_FUNC_store_eof_fn store_eof;
static OSSL_FUNC_store_close_fn store_close;

/* ---- open ----------------------------------------------------------- */

static int module_named_ok(struct store_ctx *ctx)
{
    const struct p11b_uri *u = ctx->uri;
    const char *path = ctx->prov->cfg.module_path;
    const char *base = strrchr(path, '/');
    size_t n;

    base = base != NULL ? base + 1 : path;
    if (u->module_path.present &&
        strcmp((const char *)u->module_path.data, path) != 0) {
        P11B_RAISE(ctx->prov, P11B_R_TOKEN_NOT_FOUND,
                   "the URI's module-path is %s, this provider uses %s",
                   (const char *)u->module_path.data, path);
        return 0;
    }
    /* module-name: the file name without "lib" prefix and extension
     * would also do in RFC 7512's words; accept the name as a prefix. */
    if (u->module_name.present) {
        n = u->module_name.len;
        if (strncmp(base, (const char *)u->module_name.data, n) != 0 &&
            !(strncmp(base, "lib", 3) == 0 &&
              strncmp(base + 3, (const char *)u->module_name.data, n) == 0)) {
            P11B_RAISE(ctx->prov, P11B_R_TOKEN_NOT_FOUND,
                       "the URI's module-name is %s, this provider uses %s",
                       (const char *)u->module_name.data, path);
            return 0;
        }
    }
    return 1;
}

static struct store_ctx *open_uri(struct p11b_prov *prov, const char *uristr)
{
    struct p11b_uri_error uerr;
    struct store_ctx *ctx;
    enum p11b_uri_status st;

    P11B_LOG(2, "store open");
    if (!p11b_prov_configured(prov))
        return NULL;
    ctx = OPENSSL_zalloc(sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->prov = prov;
    memset(&uerr, 0, sizeof(uerr));
    st = p11b_uri_parse(uristr, strlen(uristr), &uerr, &ctx->uri);
    if (st != P11B_URI_OK) {
        /* Never echo the URI: it may hold a pin-value. */
        if (uerr.attr[0] != '\0')
            P11B_RAISE(prov, P11B_R_URI_SYNTAX, "attribute '%s': %s",
                       uerr.attr, p11b_uri_status_str(st));
        else
            P11B_RAISE(prov, P11B_R_URI_SYNTAX, "%s",
                       p11b_uri_status_str(st));
        OPENSSL_free(ctx);
        return NULL;
    }
    if (!module_named_ok(ctx)) {
        store_close(ctx);
        return NULL;
    }
    return ctx;
}

/*
 * OSSL_STORE_open_ex sets an error mark, then offers the string to each
 * loader in turn, the file: loader first: by the time we are called, the
 * queue holds its "calling stat(<the whole string>)", pin-value and all,
 * and an application prints the queue when we refuse the URI too (a
 * malformed URI, a module-path that is not ours). So drop what the other
 * loaders queued, back to that mark, before we decide: OSSL_STORE_open_ex
 * drops it anyway when we succeed, and those errors only ever say that a
 * pkcs11: URI is no file name. The mark is set again for
 * OSSL_STORE_open_ex to clear, so no caller's mark is taken (OpenSSL 3.0
 * to 3.6 all work this way). A queue that was empty had no mark: it is
 * emptied.
 */
static void *store_open(void *provctx, const char *uristr)
{
    if (ERR_pop_to_mark())
        ERR_set_mark();
    return open_uri(provctx, uristr);
}

/* ---- search criteria ------------------------------------------------- */

static const OSSL_PARAM store_settable[] = {
    OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
    OSSL_PARAM_octet_string(OSSL_STORE_PARAM_SUBJECT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_STORE_PARAM_ISSUER, NULL, 0),
    OSSL_PARAM_BN(OSSL_STORE_PARAM_SERIAL, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_STORE_PARAM_FINGERPRINT, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_ALIAS, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_STORE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *store_settable_ctx_params(void *provctx)
{
    (void)provctx;
    return store_settable;
}

static int set_name(const OSSL_PARAM *p, X509_NAME **out)
{
    const unsigned char *der;
    const void *data;
    size_t len;

    if (!OSSL_PARAM_get_octet_string_ptr(p, &data, &len))
        return 0;
    der = data;
    X509_NAME_free(*out);
    *out = d2i_X509_NAME(NULL, &der, (long)len);
    return *out != NULL;
}

static int store_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    struct store_ctx *ctx = vctx;
    const OSSL_PARAM *p;
    const void *data;
    size_t len;

    if (ctx == NULL)
        return 0;
    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    if (p != NULL && !OSSL_PARAM_get_int(p, &ctx->expect))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SUBJECT);
    if (p != NULL && !set_name(p, &ctx->subject))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ISSUER);
    if (p != NULL && !set_name(p, &ctx->issuer))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_SERIAL);
    if (p != NULL && !OSSL_PARAM_get_BN(p, &ctx->serial))
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_FINGERPRINT);
    if (p != NULL) {
        if (!OSSL_PARAM_get_octet_string_ptr(p, &data, &len))
            return 0;
        OPENSSL_free(ctx->fingerprint);
        ctx->fingerprint = OPENSSL_memdup(data, len);
        ctx->fingerprint_len = len;
        if (ctx->fingerprint == NULL)
            return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_ALIAS);
    if (p != NULL) {
        OPENSSL_free(ctx->alias);
        ctx->alias = NULL;
        if (!OSSL_PARAM_get_utf8_string(p, &ctx->alias, 0))
            return 0;
    }
    return 1;
}

/* ---- what to look for -------------------------------------------------- */

static unsigned int wanted_classes(const struct store_ctx *ctx)
{
    unsigned int by_type, by_expect;
    int cert_criteria = ctx->subject != NULL || ctx->issuer != NULL ||
                        ctx->serial != NULL || ctx->fingerprint != NULL;

    switch (ctx->uri->type) {
    case P11B_URI_TYPE_PRIVATE:
        by_type = WANT_PRIV;
        break;
    case P11B_URI_TYPE_PUBLIC:
        by_type = WANT_PUB;
        break;
    case P11B_URI_TYPE_CERT:
        by_type = WANT_CERT;
        break;
    case P11B_URI_TYPE_ANY:
        by_type = WANT_PRIV | WANT_PUB | WANT_CERT;
        break;
    default: /* secret keys and data objects are not OpenSSL objects */
        by_type = 0;
        break;
    }
    switch (ctx->expect) {
    case OSSL_STORE_INFO_PKEY:
        by_expect = WANT_PRIV;
        break;
    case OSSL_STORE_INFO_PUBKEY:
        /* Public objects, or the public half of private keys. */
        by_expect = WANT_PUB | WANT_PRIV;
        break;
    case OSSL_STORE_INFO_CERT:
        by_expect = WANT_CERT;
        break;
    default:
        by_expect = WANT_PRIV | WANT_PUB | WANT_CERT;
        break;
    }
    if (cert_criteria)
        by_expect &= WANT_CERT;
    return by_type & by_expect;
}

static void uri_bytes(const struct p11b_uri_value *v, struct p11b_bytes *b)
{
    b->present = 1;
    b->data = v->data;
    b->len = v->len;
}

static void query_for(const struct store_ctx *ctx, CK_OBJECT_CLASS cls,
                      struct p11b_query *q)
{
    const struct p11b_uri *u = ctx->uri;

    memset(q, 0, sizeof(*q));
    q->has_class = cls != 0; /* 0 (CKO_DATA) is never searched for */
    q->cls = cls;
    if (u->id.present)
        uri_bytes(&u->id, &q->id);
    if (u->object.present) {
        uri_bytes(&u->object, &q->label);
    } else if (ctx->alias != NULL) {
        q->label.present = 1;
        q->label.data = (unsigned char *)ctx->alias;
        q->label.len = strlen(ctx->alias);
    }
}

/* ---- results ----------------------------------------------------------- */

static int add_item(struct store_ctx *ctx, struct store_item *it)
{
    struct store_item *grown;

    if (ctx->nitems == ctx->cap) {
        grown = OPENSSL_realloc(ctx->items,
                                (ctx->cap * 2 + 8) * sizeof(*grown));
        if (grown == NULL)
            return 0;
        ctx->items = grown;
        ctx->cap = ctx->cap * 2 + 8;
    }
    ctx->items[ctx->nitems++] = *it;
    return 1;
}

static void item_clear(struct store_item *it)
{
    p11b_key_free(it->key);
    p11b_obj_free(it->cert);
    free(it->uri);
}

static int cert_matches(const struct store_ctx *ctx, const struct p11b_obj *o)
{
    const unsigned char *p = o->value.data;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    X509 *x;
    int ok = 1;

    if (ctx->subject == NULL && ctx->issuer == NULL && ctx->serial == NULL &&
        ctx->fingerprint == NULL)
        return 1;
    if (!o->value.present)
        return 0;
    x = d2i_X509(NULL, &p, (long)o->value.len);
    if (x == NULL)
        return 0;
    if (ctx->subject != NULL)
        ok = X509_NAME_cmp(ctx->subject, X509_get_subject_name(x)) == 0;
    if (ok && ctx->issuer != NULL)
        ok = X509_NAME_cmp(ctx->issuer, X509_get_issuer_name(x)) == 0;
    if (ok && ctx->serial != NULL) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);

        ok = bn != NULL && BN_cmp(bn, ctx->serial) == 0;
        BN_free(bn);
    }
    if (ok && ctx->fingerprint != NULL) {
        const EVP_MD *md_type = ctx->fingerprint_len == 20 ? EVP_sha1()
                                                           : EVP_sha256();

        ok = X509_digest(x, md_type, md, &mdlen) &&
             mdlen == ctx->fingerprint_len &&
             memcmp(md, ctx->fingerprint, mdlen) == 0;
    }
    X509_free(x);
    return ok;
}

/* Objects that may hold a private key's public half: public keys and
 * certificates with the same CKA_ID, from the objects already found (pool)
 * or else from one search of the token by CKA_ID. */
static void companions(struct p11b_obj *priv, struct p11b_obj **pool,
                       size_t npool, struct p11b_obj ***out, size_t *out_n)
{
    struct p11b_obj **all;
    struct p11b_query q;
    size_t n = 0, i;
    CK_RV rv;

    *out = NULL;
    *out_n = 0;
    if (!priv->id.present)
        return;
    all = calloc(npool + 1, sizeof(*all));
    for (i = 0; all != NULL && i < npool; i++) {
        if ((pool[i]->cls == CKO_PUBLIC_KEY ||
             pool[i]->cls == CKO_CERTIFICATE) &&
            pool[i]->slot == priv->slot && pool[i]->id.len == priv->id.len &&
            memcmp(pool[i]->id.data, priv->id.data, priv->id.len) == 0)
            all[n++] = p11b_obj_up_ref(pool[i]);
    }
    if (all != NULL && n > 0) {
        *out = all;
        *out_n = n;
        return;
    }
    free(all);
    memset(&q, 0, sizeof(q));
    q.id = priv->id; /* no class: public keys and certificates at once */
    rv = p11b_object_find(priv->slot, &q, out, out_n);
    if (rv != CKR_OK) {
        *out = NULL;
        *out_n = 0;
    }
}

static int same_pair(const struct p11b_obj *a, const struct p11b_obj *b)
{
    return a->slot == b->slot && a->key_type == b->key_type &&
           a->id.len == b->id.len &&
           memcmp(a->id.data, b->id.data, a->id.len) == 0;
}

/* A key pair is one family, whichever half is loaded. A public object
 * is visible without a login, so it decides by its own attributes; a
 * private object the token allows for PSS only is RSA-PSS unless its
 * public partner (same CKA_ID) is not restricted so: then the pair is
 * plain RSA, which is also what a certificate with an rsaEncryption key
 * (the usual one for such keys) must match. */
static enum p11b_key_family pair_family(struct p11b_obj *o,
                                        struct p11b_obj **pool, size_t npool)
{
    enum p11b_key_family fam = p11b_obj_family(o);
    struct p11b_obj **found = NULL;
    struct p11b_query q;
    size_t n = 0, i;

    if (o->cls != CKO_PRIVATE_KEY || fam != P11B_FAMILY_RSA_PSS ||
        !o->id.present)
        return fam;
    for (i = 0; i < npool; i++) {
        if (pool[i]->cls == CKO_PUBLIC_KEY && same_pair(pool[i], o))
            return p11b_obj_family(pool[i]);
    }
    memset(&q, 0, sizeof(q));
    q.has_class = 1;
    q.cls = CKO_PUBLIC_KEY;
    q.has_key_type = 1;
    q.key_type = CKK_RSA;
    q.id = o->id;
    if (p11b_object_find(o->slot, &q, &found, &n) != CKR_OK)
        n = 0;
    for (i = 0; i < n && fam == P11B_FAMILY_RSA_PSS; i++)
        fam = p11b_obj_family(found[i]);
    p11b_objs_free(found, n);
    return fam;
}

static struct p11b_key *key_for(struct store_ctx *ctx, struct p11b_obj *o,
                                int public_only, struct p11b_obj **pool,
                                size_t npool)
{
    enum p11b_key_family fam = pair_family(o, pool, npool);
    struct p11b_obj **extra = NULL;
    struct p11b_key *key;
    size_t n = 0;

    if (fam == P11B_FAMILY_NONE)
        return NULL; /* a key type OpenSSL cannot use through us */
    key = p11b_key_new(ctx->prov, fam);
    if (key == NULL)
        return NULL;
    key->uri = p11b_obj_uri(o);
    if (o->cls == CKO_PRIVATE_KEY && !public_only)
        key->priv = p11b_obj_up_ref(o);
    else if (o->cls == CKO_PUBLIC_KEY)
        key->pub = p11b_obj_up_ref(o);
    /* RSA private keys carry their public half; EC ones do not. */
    if (o->cls == CKO_PRIVATE_KEY && !p11b_obj_has_public(o))
        companions(o, pool, npool, &extra, &n);
    if (key->uri == NULL || !p11b_key_set_public(key, o, extra, n)) {
        p11b_objs_free(extra, n);
        p11b_key_free(key);
        return NULL;
    }
    p11b_objs_free(extra, n);
    return key;
}

static int collect_one(struct store_ctx *ctx, struct p11b_obj *o,
                       int public_only, struct p11b_obj **pool, size_t npool)
{
    struct store_item it;

    memset(&it, 0, sizeof(it));
    if (o->cls == CKO_CERTIFICATE) {
        if (o->cert_type != CKC_X_509 || !cert_matches(ctx, o))
            return 1;
        it.cert = p11b_obj_up_ref(o);
        it.uri = p11b_obj_uri(o);
    } else {
        it.key = key_for(ctx, o, public_only, pool, npool);
        if (it.key == NULL) {
            P11B_LOG(1, "skipping an object whose public half is unknown");
            return 1;
        }
    }
    if (!add_item(ctx, &it)) {
        item_clear(&it);
        return 0;
    }
    return 1;
}

/* ---- searching ----------------------------------------------------------- */

/* Public objects first: when only public keys are asked for, a private
 * key gives its public half only if no public object answered. */
enum { IDX_PUB, IDX_CERT, IDX_PRIV, IDX_N };

static const struct {
    unsigned int want;
    CK_OBJECT_CLASS cls;
} class_order[IDX_N] = {
    { WANT_PUB, CKO_PUBLIC_KEY },
    { WANT_CERT, CKO_CERTIFICATE },
    { WANT_PRIV, CKO_PRIVATE_KEY },
};

static int find_or_raise(struct store_ctx *ctx, struct p11b_slot *slot,
                         const struct p11b_query *q, struct p11b_obj ***objs,
                         size_t *n)
{
    CK_RV rv;

    rv = p11b_object_find(slot, q, objs, n);
    if (rv == CKR_OK)
        return 1;
    P11B_RAISE_RV(ctx->prov, P11B_R_FIND, rv, "C_FindObjects on slot %lu",
                  slot->id);
    return 0;
}

/* Take the wanted objects of `objs` class by class, in class_order. */
static int collect_classes(struct store_ctx *ctx, unsigned int want,
                           struct p11b_obj **objs, size_t n,
                           size_t found[IDX_N])
{
    int public_only = ctx->expect == OSSL_STORE_INFO_PUBKEY;
    size_t i, j;

    for (i = 0; i < IDX_N; i++) {
        found[i] = 0;
        if (!(want & class_order[i].want))
            continue;
        if (public_only && i == IDX_PRIV && found[IDX_PUB] > 0)
            continue;
        for (j = 0; j < n; j++) {
            if (objs[j]->cls != class_order[i].cls)
                continue;
            found[i]++;
            if (!collect_one(ctx, objs[j], public_only, objs, n))
                return 0;
        }
    }
    return 1;
}

/* Append objs[0..n) to *all (which grows); frees the objs array. */
static int append_objs(struct p11b_obj ***all, size_t *total,
                       struct p11b_obj **objs, size_t n)
{
    struct p11b_obj **grown = realloc(*all, (*total + n + 1) * sizeof(**all));
    size_t j;

    if (grown == NULL) {
        p11b_objs_free(objs, n);
        return 0;
    }
    *all = grown;
    for (j = 0; j < n; j++)
        (*all)[(*total)++] = objs[j];
    free(objs);
    return 1;
}

/*
 * A URI naming an id or a label is a narrow search: one C_FindObjects by
 * those attributes finds the key, its public object and its certificate at
 * once. Without them (a listing), one search per wanted class keeps data
 * objects and other classes out.
 */
static int search_slot(struct store_ctx *ctx, struct p11b_slot *slot,
                       unsigned int want, size_t found[IDX_N])
{
    struct p11b_obj **objs = NULL, **all = NULL;
    struct p11b_query q;
    size_t i, n = 0, total = 0;
    int ok = 1;

    query_for(ctx, 0, &q);
    if (q.id.present || q.label.present) {
        ok = find_or_raise(ctx, slot, &q, &all, &total);
    } else {
        for (i = 0; ok && i < IDX_N; i++) {
            if (!(want & class_order[i].want))
                continue;
            query_for(ctx, class_order[i].cls, &q);
            ok = find_or_raise(ctx, slot, &q, &objs, &n) &&
                 append_objs(&all, &total, objs, n);
        }
    }
    if (ok)
        ok = collect_classes(ctx, want, all, total, found);
    p11b_objs_free(all, total);
    return ok;
}

/* Private keys hide until login, and so may anything the token keeps
 * private. */
static int login_needed(struct store_ctx *ctx, struct p11b_slot *slot)
{
    CK_TOKEN_INFO ti;

    if (ctx->prov->cfg.login == P11B_LOGIN_NEVER ||
        p11b_slot_is_logged_in(slot))
        return 0;
    return p11b_slot_token_info(slot, &ti) == CKR_OK &&
           (ti.flags & CKF_LOGIN_REQUIRED);
}

/* Log in before searching: always when configured so; in auto mode when
 * a private key is wanted and a PIN is at hand without asking (a search
 * without login would only come back empty, and on a token of thousands
 * of objects each search costs). */
static int login_first(struct store_ctx *ctx, struct p11b_slot *slot,
                       unsigned int want)
{
    if (ctx->prov->cfg.login == P11B_LOGIN_ALWAYS)
        return 1;
    return ctx->prov->cfg.login == P11B_LOGIN_AUTO && (want & WANT_PRIV) &&
           login_needed(ctx, slot) &&
           p11b_prov_pin_at_hand(ctx->prov, slot, ctx->uri);
}

/* After a search without login: log in when a wanted private key, or
 * anything at all, was not found. */
static int login_after(struct store_ctx *ctx, struct p11b_slot *slot,
                       unsigned int want, const size_t found[IDX_N])
{
    if (!login_needed(ctx, slot))
        return 0;
    if ((want & WANT_PRIV) && found[IDX_PRIV] == 0)
        return 1;
    return found[IDX_PUB] + found[IDX_CERT] + found[IDX_PRIV] == 0;
}

static void drop_items_from(struct store_ctx *ctx, size_t from)
{
    while (ctx->nitems > from)
        item_clear(&ctx->items[--ctx->nitems]);
}

static int search_one_slot(struct store_ctx *ctx, struct p11b_slot *slot,
                           unsigned int want, OSSL_PASSPHRASE_CALLBACK *cb,
                           void *cbarg)
{
    size_t before = ctx->nitems, found[IDX_N];
    int got_some;

    if (login_first(ctx, slot, want) &&
        !p11b_prov_login(ctx->prov, slot, ctx->uri, cb, cbarg))
        return 0;
    if (!search_slot(ctx, slot, want, found))
        return 0;
    if (!login_after(ctx, slot, want, found))
        return 1;
    got_some = ctx->nitems > before;
    ERR_set_mark();
    if (!p11b_prov_login(ctx->prov, slot, ctx->uri, cb, cbarg)) {
        /* Listing a token without its PIN: show what is public. Of several
         * tokens, one that no PIN goes to adds what it shows. */
        if ((got_some || ctx->nslots > 1) &&
            ERR_GET_REASON(ERR_peek_last_error()) == P11B_R_PIN_MISSING) {
            ERR_pop_to_mark();
            ctx->no_pin++;
            return 1;
        }
        ERR_clear_last_mark();
        return 0;
    }
    ERR_clear_last_mark();
    drop_items_from(ctx, before);
    return search_slot(ctx, slot, want, found);
}

static int do_search(struct store_ctx *ctx, OSSL_PASSPHRASE_CALLBACK *cb,
                     void *cbarg)
{
    struct p11b_slot **slots = NULL;
    unsigned int want = wanted_classes(ctx);
    size_t nslots = 0, i;
    char *u;
    int ok = 1;

    if (!p11b_prov_match_slots(ctx->prov, ctx->uri, &slots, &nslots))
        return 0;
    ctx->nslots = nslots;
    for (i = 0; ok && want != 0 && i < nslots; i++) {
        ok = search_one_slot(ctx, slots[i], want, cb, cbarg);
        /* A token that went away does not hide the others' objects. */
        if (!ok && nslots > 1 && ERR_GET_REASON(ERR_peek_last_error()) ==
                                     P11B_R_TOKEN_GONE)
            ok = 1;
    }
    free(slots);
    if (ok && ctx->nitems == 0 && ctx->no_pin > 0) {
        P11B_RAISE(ctx->prov, P11B_R_PIN_MISSING,
                   "%zu of the %zu tokens the URI selects were searched "
                   "without a login: no PIN goes to them when the URI does "
                   "not name one token (token=) or %s does not name them",
                   ctx->no_pin, nslots, P11B_CFG_TOKEN_PIN_TOKEN);
        ok = 0;
    } else if (ok && ctx->nitems == 0) {
        u = p11b_uri_format(ctx->uri, P11B_URI_FMT_NO_QUERY);
        P11B_RAISE(ctx->prov, P11B_R_URI_NO_MATCH, "%s%s",
                   u != NULL ? u : "pkcs11:",
                   want == 0 ? " (no object type OpenSSL can use)" : "");
        free(u);
        ok = 0;
    }
    return ok;
}

/* ---- load, eof, close ------------------------------------------------- */

static int emit(struct store_ctx *ctx, struct store_item *it,
                OSSL_CALLBACK *object_cb, void *object_cbarg)
{
    OSSL_PARAM params[5], *p = params;
    struct p11b_key_ref ref;
    int type;

    if (it->key != NULL) {
        p11b_key_ref_init(&ref, it->key);
        type = OSSL_OBJECT_PKEY;
        *p++ = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        *p++ = OSSL_PARAM_construct_utf8_string(
            OSSL_OBJECT_PARAM_DATA_TYPE,
            (char *)p11b_family_name(it->key->family), 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE,
                                                 &ref, sizeof(ref));
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DESC,
                                                it->key->uri, 0);
    } else {
        type = OSSL_OBJECT_CERT;
        *p++ = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type);
        *p++ = OSSL_PARAM_construct_octet_string(
            OSSL_OBJECT_PARAM_DATA, it->cert->value.data, it->cert->value.len);
        if (it->uri != NULL)
            *p++ = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DESC,
                                                    it->uri, 0);
    }
    *p = OSSL_PARAM_construct_end();
    (void)ctx;
    return object_cb(params, object_cbarg);
}

static int store_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    struct store_ctx *ctx = vctx;

    if (ctx->failed)
        return 0;
    if (!ctx->searched) {
        ctx->searched = 1;
        if (!do_search(ctx, pw_cb, pw_cbarg)) {
            ctx->failed = 1;
            return 0;
        }
    }
    if (ctx->next >= ctx->nitems)
        return 0;
    return emit(ctx, &ctx->items[ctx->next++], object_cb, object_cbarg);
}

static int store_eof(void *vctx)
{
    struct store_ctx *ctx = vctx;

    return ctx->failed || (ctx->searched && ctx->next >= ctx->nitems);
}

/* Whether items[i] is one of the keys that make a URI ambiguous: private
 * keys; public keys when only public keys were asked for. */
static int counts_as_key(const struct store_ctx *ctx, size_t i)
{
    const struct p11b_key *key = ctx->items[i].key;

    return key != NULL &&
           (key->priv != NULL || ctx->expect == OSSL_STORE_INFO_PUBKEY);
}

/*
 * One key wanted, several matched: a caller that takes the first key and
 * closes the store without reading the others (openssl pkey -in, -key,
 * -inkey; Apache; any OSSL_STORE_load-once program) gets a key it cannot
 * use, with an error saying how many matched. A caller that reads to the
 * end (openssl storeutl, any listing) has seen them all: its keys work.
 * The store cannot tell the two apart any earlier: both open, set the
 * same expectation and load the first item the same way.
 */
static void mark_ambiguous(struct store_ctx *ctx)
{
    size_t i, total = 0, unread = 0;

    for (i = 0; i < ctx->nitems; i++) {
        if (counts_as_key(ctx, i)) {
            total++;
            unread += i >= ctx->next;
        }
    }
    if (total < 2 || unread == 0 || unread == total)
        return;
    P11B_LOG(1, "%zu keys match the URI; %zu taken without the others: "
                "refused at use",
             total, total - unread);
    for (i = 0; i < ctx->next; i++) {
        if (counts_as_key(ctx, i))
            atomic_store(&ctx->items[i].key->ambiguous, total);
    }
}

static int store_close(void *vctx)
{
    struct store_ctx *ctx = vctx;

    if (ctx == NULL)
        return 1;
    mark_ambiguous(ctx);
    drop_items_from(ctx, 0);
    OPENSSL_free(ctx->items);
    p11b_uri_free(ctx->uri);
    X509_NAME_free(ctx->subject);
    X509_NAME_free(ctx->issuer);
    BN_free(ctx->serial);
    OPENSSL_free(ctx->fingerprint);
    OPENSSL_free(ctx->alias);
    OPENSSL_free(ctx);
    return 1;
}

/* The first item holding a key of the kind wanted, or nitems. */
static size_t first_key(const struct store_ctx *ctx, int private_only)
{
    size_t i;

    for (i = 0; i < ctx->nitems; i++) {
        if (ctx->items[i].key != NULL &&
            (!private_only || ctx->items[i].key->priv != NULL))
            break;
    }
    return i;
}

/* Distinct keys among the items: private keys, or (private 0) keys with
 * no private half, which are distinct public keys here (a private key's
 * public object is not listed beside it when public keys are wanted). */
static size_t count_keys(const struct store_ctx *ctx, int private)
{
    size_t i, n = 0;

    for (i = 0; i < ctx->nitems; i++) {
        if (ctx->items[i].key != NULL &&
            (ctx->items[i].key->priv != NULL) == (private != 0))
            n++;
    }
    return n;
}

int p11b_store_load_key(struct p11b_prov *prov, const char *uri, int want,
                        OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                        struct p11b_key **out)
{
    struct store_ctx *ctx = open_uri(prov, uri);
    size_t i, n;
    int ok;

    if (ctx == NULL)
        return 0;
    /* Any: the URI's type= decides, and a private key comes first. */
    ctx->expect = want == P11B_STORE_WANT_PRIVATE ? OSSL_STORE_INFO_PKEY
                  : want == P11B_STORE_WANT_PUBLIC ? OSSL_STORE_INFO_PUBKEY
                                                   : 0;
    ctx->searched = 1;
    ok = do_search(ctx, pw_cb, pw_cbarg);
    i = ok ? first_key(ctx, want != P11B_STORE_WANT_PUBLIC) : 0;
    if (ok && i == ctx->nitems && want == P11B_STORE_WANT_ANY)
        i = first_key(ctx, 0);
    if (ok && i == ctx->nitems) {
        P11B_RAISE(prov, P11B_R_URI_NO_MATCH, "no %s key at the URI",
                   want == P11B_STORE_WANT_PRIVATE ? "private" : "public");
        ok = 0;
    }
    /* Here a key is always wanted alone (no listing): several refused. */
    n = ok ? count_keys(ctx, ctx->items[i].key->priv != NULL) : 0;
    if (n > 1) {
        P11B_RAISE(prov, P11B_R_URI_AMBIGUOUS,
                   "the URI matches %zu %s keys: add id= (or object=, "
                   "token=) to name one; openssl storeutl lists them",
                   n, ctx->items[i].key->priv != NULL ? "private" : "public");
        ok = 0;
    }
    if (ok)
        *out = p11b_key_up_ref(ctx->items[i].key);
    store_close(ctx);
    return ok;
}

const OSSL_DISPATCH p11b_pkcs11_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS,
      (void (*)(void))store_settable_ctx_params },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_ctx_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close },
    { 0, NULL }
};
