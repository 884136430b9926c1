/*
 * URI to keys and certificates (lookup.h): which tokens, when to log in,
 * which objects, and each key built from its token objects.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "pkcs11/log.h"
#include "pkcs11/login.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"
#include "pkcs11/uri.h"
#include "provider/errors.h"
#include "provider/key.h"
#include "provider/lookup.h"
#include "provider/provider.h"

/* One lookup under way. */
struct search {
    struct p11b_prov *prov;
    const struct p11b_lookup_req *req;
    struct p11b_lookup *res;
    size_t nslots;         /* tokens the URI selects                       */
    size_t no_pin;         /* of which searched without login: no PIN      */
};

/* How the search of one token ended. Decisions go by this, not by what
 * was raised. */
enum slot_result {
    SLOT_OK,
    SLOT_FAILED,  /* raised                                              */
    SLOT_GONE,    /* raised: the token went away                         */
    SLOT_NO_PIN,  /* searched without login: no PIN goes to the token    */
};

/* ---- the URI ------------------------------------------------------------ */

static int module_named_ok(struct p11b_prov *prov, const struct p11b_uri *u)
{
    const char *path = prov->cfg.module_path;
    const char *base = strrchr(path, '/');
    size_t n;

    base = base != NULL ? base + 1 : path;
    if (u->module_path.present &&
        strcmp((const char *)u->module_path.data, path) != 0) {
        P11B_RAISE(prov, P11B_R_TOKEN_NOT_FOUND,
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
            P11B_RAISE(prov, P11B_R_TOKEN_NOT_FOUND,
                       "the URI's module-name is %s, this provider uses %s",
                       (const char *)u->module_name.data, path);
            return 0;
        }
    }
    return 1;
}

struct p11b_uri *p11b_lookup_parse(struct p11b_prov *prov, const char *uristr)
{
    struct p11b_uri_error uerr;
    struct p11b_uri *uri = NULL;
    enum p11b_uri_status st;

    if (!p11b_prov_configured(prov))
        return NULL;
    memset(&uerr, 0, sizeof(uerr));
    st = p11b_uri_parse(uristr, strlen(uristr), &uerr, &uri);
    if (st != P11B_URI_OK) {
        /* Never echo the URI: it may hold a pin-value. */
        if (uerr.attr[0] != '\0')
            P11B_RAISE(prov, P11B_R_URI_SYNTAX, "attribute '%s': %s",
                       uerr.attr, p11b_uri_status_str(st));
        else
            P11B_RAISE(prov, P11B_R_URI_SYNTAX, "%s",
                       p11b_uri_status_str(st));
        return NULL;
    }
    if (!module_named_ok(prov, uri)) {
        p11b_uri_free(uri);
        return NULL;
    }
    return uri;
}

/* The classes the request wants, narrowed by the URI's type=. */
static unsigned int wanted_classes(const struct p11b_lookup_req *req)
{
    switch (req->uri->type) {
    case P11B_URI_TYPE_PRIVATE:
        return req->classes & P11B_LOOKUP_PRIV;
    case P11B_URI_TYPE_PUBLIC:
        return req->classes & P11B_LOOKUP_PUB;
    case P11B_URI_TYPE_CERT:
        return req->classes & P11B_LOOKUP_CERT;
    case P11B_URI_TYPE_ANY:
        return req->classes;
    default: /* secret keys and data objects are not OpenSSL objects */
        return 0;
    }
}

static void uri_bytes(const struct p11b_uri_value *v, struct p11b_bytes *b)
{
    b->present = 1;
    b->data = v->data;
    b->len = v->len;
}

static void query_for(const struct p11b_lookup_req *req, CK_OBJECT_CLASS cls,
                      struct p11b_query *q)
{
    const struct p11b_uri *u = req->uri;

    memset(q, 0, sizeof(*q));
    q->has_class = cls != 0; /* 0 (CKO_DATA) is never searched for */
    q->cls = cls;
    if (u->id.present)
        uri_bytes(&u->id, &q->id);
    if (u->object.present) {
        uri_bytes(&u->object, &q->label);
    } else if (req->alias != NULL) {
        q->label.present = 1;
        q->label.data = (unsigned char *)req->alias;
        q->label.len = strlen(req->alias);
    }
}

/* ---- results ----------------------------------------------------------- */

static int add_item(struct p11b_lookup *res, struct p11b_lookup_item *it)
{
    struct p11b_lookup_item *grown;

    if (res->n == res->cap) {
        grown = OPENSSL_realloc(res->items,
                                (res->cap * 2 + 8) * sizeof(*grown));
        if (grown == NULL)
            return 0;
        res->items = grown;
        res->cap = res->cap * 2 + 8;
    }
    res->items[res->n++] = *it;
    return 1;
}

static void item_clear(struct p11b_lookup_item *it)
{
    p11b_key_free(it->key);
    p11b_obj_free(it->cert);
    free(it->uri);
}

static void drop_items_from(struct p11b_lookup *res, size_t from)
{
    while (res->n > from)
        item_clear(&res->items[--res->n]);
}

void p11b_lookup_clear(struct p11b_lookup *res)
{
    drop_items_from(res, 0);
    OPENSSL_free(res->items);
    memset(res, 0, sizeof(*res));
}

/* ---- keys from token objects ------------------------------------------- */

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

struct p11b_key *p11b_lookup_key_of(struct p11b_prov *prov,
                                    struct p11b_obj *o, int public_only,
                                    struct p11b_obj **pool, size_t npool)
{
    enum p11b_key_family fam = pair_family(o, pool, npool);
    struct p11b_obj **extra = NULL;
    struct p11b_key *key;
    size_t n = 0;

    if (fam == P11B_FAMILY_NONE)
        return NULL; /* a key type OpenSSL cannot use through us */
    key = p11b_key_new(prov, fam);
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

static int collect_one(struct search *s, struct p11b_obj *o,
                       struct p11b_obj **pool, size_t npool)
{
    const struct p11b_lookup_req *req = s->req;
    struct p11b_lookup_item it;

    memset(&it, 0, sizeof(it));
    if (o->cls == CKO_CERTIFICATE) {
        if (o->cert_type != CKC_X_509 ||
            (req->cert_ok != NULL && !req->cert_ok(o, req->cert_arg)))
            return 1;
        it.cert = p11b_obj_up_ref(o);
        it.uri = p11b_obj_uri(o);
    } else {
        it.key = p11b_lookup_key_of(s->prov, o, req->public_only, pool, npool);
        if (it.key == NULL) {
            P11B_LOG(1, "skipping an object whose public half is unknown");
            return 1;
        }
    }
    if (!add_item(s->res, &it)) {
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
    { P11B_LOOKUP_PUB, CKO_PUBLIC_KEY },
    { P11B_LOOKUP_CERT, CKO_CERTIFICATE },
    { P11B_LOOKUP_PRIV, CKO_PRIVATE_KEY },
};

static enum slot_result find_or_raise(struct search *s,
                                      struct p11b_slot *slot,
                                      const struct p11b_query *q,
                                      struct p11b_obj ***objs, size_t *n)
{
    CK_RV rv;

    rv = p11b_object_find(slot, q, objs, n);
    if (rv == CKR_OK)
        return SLOT_OK;
    P11B_RAISE_RV(s->prov, P11B_R_FIND, rv, "C_FindObjects on slot %lu",
                  slot->id);
    return p11b_reason_for_rv(rv, P11B_R_FIND) == P11B_R_TOKEN_GONE
               ? SLOT_GONE
               : SLOT_FAILED;
}

/* Take the wanted objects of `objs` class by class, in class_order. */
static int collect_classes(struct search *s, unsigned int want,
                           struct p11b_obj **objs, size_t n,
                           size_t found[IDX_N])
{
    size_t i, j;

    for (i = 0; i < IDX_N; i++) {
        found[i] = 0;
        if (!(want & class_order[i].want))
            continue;
        if (s->req->public_only && i == IDX_PRIV && found[IDX_PUB] > 0)
            continue;
        for (j = 0; j < n; j++) {
            if (objs[j]->cls != class_order[i].cls)
                continue;
            found[i]++;
            if (!collect_one(s, objs[j], objs, n))
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
static enum slot_result search_slot(struct search *s, struct p11b_slot *slot,
                                    unsigned int want, size_t found[IDX_N])
{
    struct p11b_obj **objs = NULL, **all = NULL;
    enum slot_result r = SLOT_OK;
    struct p11b_query q;
    size_t i, n = 0, total = 0;

    query_for(s->req, 0, &q);
    if (q.id.present || q.label.present) {
        r = find_or_raise(s, slot, &q, &all, &total);
    } else {
        for (i = 0; r == SLOT_OK && i < IDX_N; i++) {
            if (!(want & class_order[i].want))
                continue;
            query_for(s->req, class_order[i].cls, &q);
            r = find_or_raise(s, slot, &q, &objs, &n);
            if (r == SLOT_OK && !append_objs(&all, &total, objs, n))
                r = SLOT_FAILED;
        }
    }
    if (r == SLOT_OK && !collect_classes(s, want, all, total, found))
        r = SLOT_FAILED;
    p11b_objs_free(all, total);
    return r;
}

/* Private keys hide until login, and so may anything the token keeps
 * private. */
static int login_needed(struct search *s, struct p11b_slot *slot)
{
    return s->prov->cfg.login != P11B_LOGIN_NEVER && p11b_login_needed(slot);
}

/* Log in before searching: always when configured so; in auto mode when
 * a private key is wanted and a PIN is at hand without asking (a search
 * without login would only come back empty, and on a token of thousands
 * of objects each search costs). */
static int login_first(struct search *s, struct p11b_slot *slot,
                       unsigned int want)
{
    if (s->prov->cfg.login == P11B_LOGIN_ALWAYS)
        return 1;
    return s->prov->cfg.login == P11B_LOGIN_AUTO &&
           (want & P11B_LOOKUP_PRIV) && login_needed(s, slot) &&
           p11b_prov_pin_at_hand(s->prov, slot, s->req->uri);
}

/* After a search without login: log in when a wanted private key, or
 * anything at all, was not found. */
static int login_after(struct search *s, struct p11b_slot *slot,
                       unsigned int want, const size_t found[IDX_N])
{
    if (!login_needed(s, slot))
        return 0;
    if ((want & P11B_LOOKUP_PRIV) && found[IDX_PRIV] == 0)
        return 1;
    return found[IDX_PUB] + found[IDX_CERT] + found[IDX_PRIV] == 0;
}

/* Our "no PIN" error alone: an application's prompt that could not ask
 * (no terminal) queued its own errors first ("UI_process: processing
 * error"), which say nothing about what to do. */
static void no_pin_alone(struct search *s, struct p11b_slot *slot)
{
    const char *data = NULL;
    char text[1024], label[40];
    int flags = 0;

    if (ERR_peek_last_error_data(&data, &flags) != 0 && data != NULL &&
        (flags & ERR_TXT_STRING))
        snprintf(text, sizeof(text), "%s", data);
    else
        text[0] = '\0';
    ERR_pop_to_mark();
    if (text[0] == '\0') {
        p11b_slot_label(slot, label, sizeof(label));
        snprintf(text, sizeof(text), "token '%s' (slot %lu) needs a login",
                 label, slot->id);
    }
    P11B_RAISE(s->prov, P11B_R_PIN_MISSING, "%s", text);
}

/* Log in to the slot; the login says why it failed (its error is
 * raised already). */
static enum slot_result login(struct search *s, struct p11b_slot *slot)
{
    int reason;

    ERR_set_mark();
    if (p11b_prov_login(s->prov, slot, s->req->uri, s->req->pw_cb,
                        s->req->pw_cbarg, &reason)) {
        ERR_pop_to_mark();
        return SLOT_OK;
    }
    if (reason == P11B_R_PIN_MISSING) {
        no_pin_alone(s, slot);
        return SLOT_NO_PIN;
    }
    ERR_clear_last_mark();
    return reason == P11B_R_TOKEN_GONE ? SLOT_GONE : SLOT_FAILED;
}

/* A listing went on without a token's private objects: say so at the
 * end (p11b_lookup.unsearched). */
static void note_no_pin(struct search *s, struct p11b_slot *slot)
{
    if (s->res->unsearched++ == 0) {
        p11b_slot_label(slot, s->res->unsearched_label,
                        sizeof(s->res->unsearched_label));
        s->res->unsearched_slot = slot->id;
    }
}

static enum slot_result search_one_slot(struct search *s,
                                        struct p11b_slot *slot,
                                        unsigned int want)
{
    size_t before = s->res->n, found[IDX_N];
    enum slot_result r;

    if (login_first(s, slot, want)) {
        r = login(s, slot);
        if (r != SLOT_OK)
            return r == SLOT_NO_PIN ? SLOT_FAILED : r;
    }
    r = search_slot(s, slot, want, found);
    if (r != SLOT_OK || !login_after(s, slot, want, found))
        return r;
    ERR_set_mark();
    r = login(s, slot);
    if (r == SLOT_NO_PIN) {
        /* Listing a token without its PIN: show what is public. Of several
         * tokens, one that no PIN goes to adds what it shows. */
        if (s->res->n > before || s->nslots > 1) {
            ERR_pop_to_mark();
            note_no_pin(s, slot);
            return SLOT_NO_PIN;
        }
        r = SLOT_FAILED;
    }
    ERR_clear_last_mark();
    if (r != SLOT_OK)
        return r;
    drop_items_from(s->res, before);
    return search_slot(s, slot, want, found);
}

/* ---- when nothing matched ------------------------------------------------ */

/* Tokens named in a "no object matches" error before "+N more". */
#define MISS_TOKENS_MAX 5

/* Append "name=value" (bytes outside printable ASCII, ';' and '%'
 * percent-encoded; all of them when hex) to buf. */
static void put_attr(char *buf, size_t len, const char *name,
                     const unsigned char *v, size_t vlen, int hex)
{
    size_t used = strlen(buf), i;

    snprintf(buf + used, len - used, " %s=", name);
    for (i = 0; i < vlen; i++) {
        used = strlen(buf);
        if (!hex && v[i] > 0x20 && v[i] < 0x7f && v[i] != ';' && v[i] != '%')
            snprintf(buf + used, len - used, "%c", v[i]);
        else
            snprintf(buf + used, len - used, "%%%02X", v[i]);
    }
}

/* The object classes of `want`, as words: "private key or certificate". */
static void put_classes(char *buf, size_t len, unsigned int want)
{
    static const struct {
        unsigned int bit;
        const char *word;
    } words[] = {
        { P11B_LOOKUP_PRIV, "private key" },
        { P11B_LOOKUP_PUB, "public key" },
        { P11B_LOOKUP_CERT, "certificate" },
    };
    size_t i, used, n = 0;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (!(want & words[i].bit))
            continue;
        used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", n++ > 0 ? " or " : "",
                 words[i].word);
    }
}

/* "no private key with object=x id=%01 on token 'a' (slot 1)": what was
 * searched for, by which attributes, on which tokens. */
static void describe_miss(const struct search *s, struct p11b_slot **slots,
                          size_t nslots, unsigned int want, char *buf,
                          size_t len)
{
    const struct p11b_uri *u = s->req->uri;
    char label[40];
    size_t i, used;

    snprintf(buf, len, "no ");
    put_classes(buf, len, s->req->public_only ? P11B_LOOKUP_PUB : want);
    used = strlen(buf);
    snprintf(buf + used, len - used, " with");
    if (u->object.present)
        put_attr(buf, len, "object", u->object.data, u->object.len, 0);
    else if (s->req->alias != NULL)
        put_attr(buf, len, "object", (const unsigned char *)s->req->alias,
                 strlen(s->req->alias), 0);
    if (u->id.present)
        put_attr(buf, len, "id", u->id.data, u->id.len, 1);
    if (!u->object.present && s->req->alias == NULL && !u->id.present) {
        used = strlen(buf);
        snprintf(buf + used, len - used, " any label and id");
    }
    used = strlen(buf);
    snprintf(buf + used, len - used, " on token%s", nslots > 1 ? "s" : "");
    for (i = 0; i < nslots; i++) {
        used = strlen(buf);
        if (i == MISS_TOKENS_MAX) {
            snprintf(buf + used, len - used, " +%zu more", nslots - i);
            break;
        }
        p11b_slot_label(slots[i], label, sizeof(label));
        snprintf(buf + used, len - used, "%s '%s' (slot %lu)",
                 i > 0 ? "," : "", label, slots[i]->id);
    }
}

int p11b_lookup_run(struct p11b_prov *prov, const struct p11b_lookup_req *req,
                    struct p11b_lookup *out)
{
    struct search s = { prov, req, out, 0, 0 };
    struct p11b_slot **slots = NULL;
    unsigned int want = wanted_classes(req);
    enum slot_result r;
    size_t nslots = 0, i, before = out->n;
    char miss[512] = "";
    char *u;
    int ok = 1;

    if (!p11b_prov_match_slots(prov, req->uri, &slots, &nslots))
        return 0;
    s.nslots = nslots;
    for (i = 0; ok && want != 0 && i < nslots; i++) {
        r = search_one_slot(&s, slots[i], want);
        s.no_pin += r == SLOT_NO_PIN;
        /* A token that went away does not hide the others' objects. */
        ok = r == SLOT_OK || r == SLOT_NO_PIN || (r == SLOT_GONE && nslots > 1);
    }
    if (ok && out->n == before && want != 0)
        describe_miss(&s, slots, nslots, want, miss, sizeof(miss));
    free(slots);
    if (ok && out->n == before && s.no_pin > 0) {
        P11B_RAISE(prov, P11B_R_PIN_MISSING,
                   "%zu of the %zu tokens the URI selects were searched "
                   "without a login: no PIN goes to them when the URI does "
                   "not name one token (token=) or %s does not name them",
                   s.no_pin, nslots, P11B_CFG_TOKEN_PIN_TOKEN);
        ok = 0;
    } else if (ok && out->n == before) {
        u = p11b_uri_format(req->uri, P11B_URI_FMT_NO_QUERY);
        P11B_RAISE(prov, P11B_R_URI_NO_MATCH, "%s: %s",
                   u != NULL ? u : "pkcs11:",
                   want == 0 ? "no object type OpenSSL can use" : miss);
        free(u);
        ok = 0;
    }
    return ok;
}

void p11b_lookup_raise_unsearched(struct p11b_prov *prov,
                                  const struct p11b_lookup *res)
{
    P11B_RAISE(prov, P11B_R_PIN_MISSING,
               "private objects of token '%s' (slot %lu)%s were not "
               "searched, only public ones: no PIN was given (pin-value= or "
               "pin-source= in the URI, " P11B_CFG_TOKEN_PIN
               " in the config, or -passin)",
               res->unsearched_label, res->unsearched_slot,
               res->unsearched > 1 ? " and other tokens" : "");
}

/* ---- one key ------------------------------------------------------------ */

/* The first item holding a key of the kind wanted, or res->n. */
static size_t first_key(const struct p11b_lookup *res, int private_only)
{
    size_t i;

    for (i = 0; i < res->n; i++) {
        if (res->items[i].key != NULL &&
            (!private_only || res->items[i].key->priv != NULL))
            break;
    }
    return i;
}

/* Distinct keys among the items: private keys, or (private 0) keys with
 * no private half, which are distinct public keys here (a private key's
 * public object is not listed beside it when public keys are wanted). */
static size_t count_keys(const struct p11b_lookup *res, int private)
{
    size_t i, n = 0;

    for (i = 0; i < res->n; i++) {
        if (res->items[i].key != NULL &&
            (res->items[i].key->priv != NULL) == (private != 0))
            n++;
    }
    return n;
}

/* The classes OSSL_STORE would ask for, with the expectation `want`. */
static unsigned int want_classes(enum p11b_lookup_want want)
{
    switch (want) {
    case P11B_LOOKUP_WANT_PRIVATE:
        return P11B_LOOKUP_PRIV;
    case P11B_LOOKUP_WANT_PUBLIC:
        /* Public objects, or the public half of private keys. */
        return P11B_LOOKUP_PUB | P11B_LOOKUP_PRIV;
    default:
        return P11B_LOOKUP_PRIV | P11B_LOOKUP_PUB | P11B_LOOKUP_CERT;
    }
}

int p11b_lookup_key(struct p11b_prov *prov, const char *uristr,
                    enum p11b_lookup_want want, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                    void *pw_cbarg, struct p11b_key **out)
{
    struct p11b_uri *uri = p11b_lookup_parse(prov, uristr);
    struct p11b_lookup res = { NULL, 0, 0, 0, "", 0 };
    struct p11b_lookup_req req;
    size_t i, n;
    int ok;

    if (uri == NULL)
        return 0;
    memset(&req, 0, sizeof(req));
    req.uri = uri;
    /* Any: the URI's type= decides, and a private key comes first. */
    req.classes = want_classes(want);
    req.public_only = want == P11B_LOOKUP_WANT_PUBLIC;
    req.pw_cb = pw_cb;
    req.pw_cbarg = pw_cbarg;
    ok = p11b_lookup_run(prov, &req, &res);
    i = ok ? first_key(&res, want != P11B_LOOKUP_WANT_PUBLIC) : 0;
    if (ok && i == res.n && want == P11B_LOOKUP_WANT_ANY)
        i = first_key(&res, 0);
    if (ok && i == res.n) {
        P11B_RAISE(prov, P11B_R_URI_NO_MATCH, "no %s key at the URI",
                   want == P11B_LOOKUP_WANT_PRIVATE ? "private" : "public");
        ok = 0;
    }
    /* Here a key is always wanted alone (no listing): several refused. */
    n = ok ? count_keys(&res, res.items[i].key->priv != NULL) : 0;
    if (n > 1) {
        P11B_RAISE(prov, P11B_R_URI_AMBIGUOUS,
                   "the URI matches %zu %s keys: add id= (or object=, "
                   "token=) to name one; openssl storeutl lists them",
                   n, res.items[i].key->priv != NULL ? "private" : "public");
        ok = 0;
    }
    if (ok)
        *out = p11b_key_up_ref(res.items[i].key);
    p11b_lookup_clear(&res);
    p11b_uri_free(uri);
    return ok;
}
