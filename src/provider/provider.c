/*
 * OSSL_provider_init, teardown, provider params, and the glue between the
 * provider and the token layer that every operation shares: module
 * readiness, slot matching and login.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/login.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/session.h"
#include "pkcs11/slot.h"
#include "pkcs11/uri.h"
#include "provider/errors.h"
#include "provider/provider.h"

#define P11B_MAX_PIN 256


static OSSL_FUNC_provider_teardown_fn prov_teardown;
static OSSL_FUNC_provider_gettable_params_fn prov_gettable_params;
static OSSL_FUNC_provider_get_params_fn prov_get_params;
static OSSL_FUNC_provider_query_operation_fn prov_query_operation;
static OSSL_FUNC_provider_get_reason_strings_fn prov_get_reason_strings;

/* ---- module and slots ---------------------------------------------- */

int p11b_prov_configured(struct p11b_prov *prov)
{
    if (prov->cfg_error == NULL)
        return 1;
    P11B_RAISE(prov, P11B_R_CONFIG, "%s", prov->cfg_error);
    return 0;
}

/*
 * Software algorithms beside ours: without them (`-provider pkcs11` alone
 * on the command line, a config that does not activate `default`) we
 * cannot hash or verify, and a software token linked to libcrypto
 * (SoftHSM) cannot decrypt its own key store, so a correct PIN reads as
 * CKR_PIN_INCORRECT. Say what is missing before any token call. Once
 * found, not looked for again.
 */
static int software_at_hand(struct p11b_prov *prov)
{
    EVP_MD *md;

    if (__atomic_load_n(&prov->software_seen, __ATOMIC_ACQUIRE))
        return 1;
    ERR_set_mark();
    md = EVP_MD_fetch(prov->libctx, "SHA2-256", P11B_SOFT_PROPQ);
    ERR_pop_to_mark();
    if (md != NULL) {
        EVP_MD_free(md);
        __atomic_store_n(&prov->software_seen, 1, __ATOMIC_RELEASE);
        return 1;
    }
    P11B_RAISE(prov, P11B_R_NO_SOFTWARE,
               "no provider but pkcs11 offers SHA2-256: activate the "
               "default provider beside pkcs11 (-provider pkcs11 -provider "
               "default, or activate = 1 in its openssl.cnf section)");
    return 0;
}

int p11b_prov_module_ready(struct p11b_prov *prov)
{
    char err[512];
    CK_RV rv;

    if (!p11b_prov_configured(prov) || !software_at_hand(prov))
        return 0;
    if (p11b_module_is_ready(prov->mod)) /* the hot path */
        return 1;
    P11B_QUIET(rv = p11b_module_ensure(prov->mod, err, sizeof(err)));

    if (rv == CKR_OK)
        return 1;
    if (p11b_module_failed(prov->mod))
        P11B_RAISE(prov, P11B_R_MODULE_LOAD, "%s", err);
    else
        P11B_RAISE_RV(prov, P11B_R_MODULE_INIT, rv, "C_Initialize(%s)",
                      prov->cfg.module_path);
    return 0;
}

/* *bad keeps the first slot whose token could not be read (other than
 * "no token in it"): the likely cause when nothing matches. */
struct slot_failure {
    CK_SLOT_ID id;
    CK_RV rv;
};

static int slot_matches(struct p11b_slot *s, const struct p11b_uri *uri,
                        int reread, struct slot_failure *bad)
{
    CK_TOKEN_INFO ti;
    CK_SLOT_INFO si;
    CK_RV rv;

    /* On a rescan read the token info again: a token another process is
     * writing may have been caught half-written (seen: SoftHSM). */
    rv = reread ? p11b_slot_refresh(s) : CKR_OK;
    if (rv == CKR_OK)
        rv = p11b_slot_token_info(s, &ti);

    if (rv != CKR_OK) {
        if (rv != CKR_TOKEN_NOT_PRESENT && bad->rv == CKR_OK) {
            bad->id = s->id;
            bad->rv = rv;
        }
        return 0; /* no token in it now */
    }
    if (!(ti.flags & CKF_TOKEN_INITIALIZED))
        return 0; /* a blank token holds nothing to find */
    p11b_slot_info(s, &si);
    return p11b_uri_match_library(uri, &s->lib->info) &&
           p11b_uri_match_slot(uri, s->id, &si) &&
           p11b_uri_match_token(uri, &ti);
}

/* slot_matches for a selector, where a failure only means "not this one". */
static int slot_selected(struct p11b_slot *s, const struct p11b_uri *uri)
{
    struct slot_failure ignored = { 0, CKR_OK };

    return slot_matches(s, uri, 0, &ignored);
}

/* Tokens listed in a "no token matches" error before "+N more". */
#define P11B_SEEN_MAX 5

/* "; tokens seen: 'a' (serial S, slot N), ..." for the slots of a module,
 * so that a typo in token= or serial= shows next to what is there. */
static void tokens_seen(struct p11b_slot **all, size_t n, char *buf,
                        size_t len)
{
    char label[40], serial[sizeof(((CK_TOKEN_INFO *)0)->serialNumber) + 1];
    CK_TOKEN_INFO ti;
    size_t i, used, shown = 0;

    snprintf(buf, len, "; tokens seen:");
    for (i = 0; i < n; i++) {
        used = strlen(buf);
        if (shown == P11B_SEEN_MAX) {
            snprintf(buf + used, len - used, " +%zu more", n - i);
            break;
        }
        if (p11b_slot_token_info(all[i], &ti) != CKR_OK)
            continue;
        p11b_slot_label(all[i], label, sizeof(label));
        memcpy(serial, ti.serialNumber, sizeof(ti.serialNumber));
        serial[sizeof(ti.serialNumber)] = '\0';
        serial[strcspn(serial, " ")] = '\0';
        if (ti.flags & CKF_TOKEN_INITIALIZED)
            snprintf(buf + used, len - used, "%s '%s' (serial %s, slot %lu)",
                     shown > 0 ? "," : "", label, serial, all[i]->id);
        else
            snprintf(buf + used, len - used, "%s a blank token (slot %lu)",
                     shown > 0 ? "," : "", all[i]->id);
        shown++;
    }
    if (shown == 0 && i == n)
        buf[0] = '\0';
}

int p11b_prov_match_slots(struct p11b_prov *prov, const struct p11b_uri *uri,
                          struct p11b_slot ***out, size_t *out_n)
{
    struct p11b_slot **all, **hits = NULL;
    struct slot_failure bad = { 0, CKR_OK };
    char seen[384] = "";
    size_t n = 0, i, k = 0;
    int pass;
    CK_RV rv;

    if (!p11b_prov_module_ready(prov))
        return 0;
    for (pass = 0; pass < 2 && k == 0; pass++) {
        /* The second pass rescans: a token may have been inserted. */
        bad.rv = CKR_OK;
        rv = p11b_module_slots(prov->mod, pass, &all, &n);
        if (rv != CKR_OK) {
            P11B_RAISE_RV(prov, P11B_R_MODULE_INIT, rv, "C_GetSlotList(%s)",
                          prov->cfg.module_path);
            return 0;
        }
        hits = all; /* our own copy: keep the matching ones in place */
        for (i = 0; i < n; i++) {
            int match;

            match = slot_matches(all[i], uri, pass > 0, &bad);
            if (match)
                hits[k++] = all[i];
        }
        if (k == 0 && pass == 1)
            tokens_seen(all, n, seen, sizeof(seen));
        if (k == 0)
            free(hits);
    }
    if (k == 0) {
        char *u = p11b_uri_format(uri, P11B_URI_FMT_NO_QUERY);

        if (n == 0)
            P11B_RAISE(prov, P11B_R_TOKEN_NOT_FOUND,
                       "%s: no token in module %s (C_GetSlotList lists no "
                       "slot with a token present)",
                       u != NULL ? u : "pkcs11:", prov->cfg.module_path);
        else if (bad.rv != CKR_OK)
            P11B_RAISE(prov, P11B_R_TOKEN_NOT_FOUND,
                       "%s (module %s): C_GetTokenInfo(slot %lu) returned "
                       "%s (0x%08lx)%s",
                       u != NULL ? u : "pkcs11:", prov->cfg.module_path,
                       bad.id, p11b_rv_name(bad.rv), bad.rv,
                       p11b_rv_hint("C_GetTokenInfo", bad.rv));
        else
            P11B_RAISE(prov, P11B_R_TOKEN_NOT_FOUND, "%s (module %s)%s",
                       u != NULL ? u : "pkcs11:", prov->cfg.module_path,
                       seen);
        free(u);
        return 0;
    }
    *out = hits;
    *out_n = k;
    return 1;
}

/* ---- login ----------------------------------------------------------- */

static int pin_from_callback(struct p11b_slot *s, OSSL_PASSPHRASE_CALLBACK *cb,
                             void *cbarg, unsigned char **out, size_t *out_len)
{
    char label[40], info[80];
    OSSL_PARAM params[2];
    char *buf;
    size_t len = 0;

    p11b_slot_label(s, label, sizeof(label));
    snprintf(info, sizeof(info), "PIN for token '%s'", label);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO,
                                                 info, 0);
    params[1] = OSSL_PARAM_construct_end();
    buf = OPENSSL_zalloc(P11B_MAX_PIN + 1);
    if (buf == NULL)
        return 0;
    if (!cb(buf, P11B_MAX_PIN, &len, params, cbarg) || len > P11B_MAX_PIN) {
        OPENSSL_clear_free(buf, P11B_MAX_PIN + 1);
        return 0;
    }
    *out = (unsigned char *)buf;
    *out_len = len;
    return 1;
}

/*
 * Which token a PIN goes to (docs/SECURITY.md, "Which token gets a PIN").
 * A PIN is presented only to a token it is meant for, so that a PIN never
 * costs another token a retry:
 * - the URI's pin-value or pin-source, and the application's prompt, go to
 *   a token only when the URI's library, slot and token attributes select
 *   that token alone among the tokens that want a login;
 * - the configured PIN goes to the tokens pkcs11-module-token-pin-token
 *   selects, or, without that key, only when the module has one token
 *   that wants a login;
 * - a PIN cached for a slot came from that slot's own login.
 */

/* 1 if s is the one token that wants a login among those `sel` selects
 * (all of the module's when sel is NULL). A token wants a login when it is
 * present, initialised and says CKF_LOGIN_REQUIRED; s itself counts when
 * selected, whatever its flags. */
static int sole_login_token(struct p11b_prov *prov, const struct p11b_uri *sel,
                            struct p11b_slot *s, size_t *out_n)
{
    struct p11b_slot **all;
    CK_TOKEN_INFO ti;
    size_t n, i, k = 0;
    int has_s = 0, hit;
    CK_RV rv;

    rv = p11b_module_slots(prov->mod, 0, &all, &n);
    if (rv != CKR_OK)
        return 0;
    for (i = 0; i < n; i++) {
        hit = p11b_slot_token_info(all[i], &ti) == CKR_OK &&
                         (ti.flags & CKF_TOKEN_INITIALIZED) &&
                         (sel == NULL || slot_selected(all[i], sel));
        if (!hit || (all[i] != s && !(ti.flags & CKF_LOGIN_REQUIRED)))
            continue;
        k++;
        has_s |= all[i] == s;
    }
    free(all);
    if (out_n != NULL)
        *out_n = k;
    return k == 1 && has_s;
}

static int uri_pin_goes_to(struct p11b_prov *prov, const struct p11b_uri *uri,
                           struct p11b_slot *s, size_t *out_n)
{
    return uri == NULL || sole_login_token(prov, uri, s, out_n);
}

static int config_pin_goes_to(struct p11b_prov *prov, struct p11b_slot *s,
                              size_t *out_n)
{
    int hit;

    if (prov->cfg.pin == NULL)
        return 0;
    if (prov->cfg.pin_token == NULL)
        return sole_login_token(prov, NULL, s, out_n);
    hit = slot_selected(s, prov->cfg.pin_token);
    return hit;
}

/*
 * The PIN supplier handed down to the login (src/pkcs11/login.h): it knows
 * where PINs come from here (the URI, the configuration, the application's
 * prompt) and which token each goes to; the login decides what is done
 * with them.
 */
struct pin_supply {
    struct p11b_prov *prov;
    const struct p11b_uri *uri;    /* NULL: a login not asked by a URI  */
    OSSL_PASSPHRASE_CALLBACK *cb;  /* the application's prompt, or NULL */
    void *cbarg;
    unsigned char *pin;            /* the PIN handed out; wiped         */
    size_t len;
    char withheld[160]; /* why a PIN at hand did not go to this token */
};

static void withhold(struct pin_supply *ps, const char *what, size_t n,
                     const char *how)
{
    if (ps->withheld[0] == '\0')
        snprintf(ps->withheld, sizeof(ps->withheld),
                 "; %s goes to one token only, and %zu want a login: %s",
                 what, n, how);
}

static void supply_wipe(void *arg)
{
    struct pin_supply *ps = arg;

    if (ps->pin != NULL)
        OPENSSL_clear_free(ps->pin, ps->len + 1);
    ps->pin = NULL;
    ps->len = 0;
}

/* 1 if the URI's PIN (or the prompt) goes to the token; else why not is
 * noted as `what`. */
static int uri_pin_for(struct pin_supply *ps, struct p11b_slot *s,
                       const char *what)
{
    size_t n = 0;

    if (uri_pin_goes_to(ps->prov, ps->uri, s, &n))
        return 1;
    withhold(ps, what, n, "name the token in the URI (token=)");
    return 0;
}

static enum p11b_pin_answer supply_uri(struct pin_supply *ps,
                                       struct p11b_slot *s, int file,
                                       int only_ask)
{
    const struct p11b_uri *uri = ps->uri;
    const char *src;
    char path[4096];

    if (uri == NULL || !(file ? uri->pin_source.present
                              : uri->pin_value.present))
        return P11B_PIN_NONE;
    if (!uri_pin_for(ps, s, "the URI's PIN"))
        return P11B_PIN_NONE;
    if (only_ask)
        return P11B_PIN_GIVEN;
    if (!file) {
        ps->pin = OPENSSL_memdup(uri->pin_value.data, uri->pin_value.len + 1);
        ps->len = uri->pin_value.len;
        return ps->pin != NULL ? P11B_PIN_GIVEN : P11B_PIN_FAILED;
    }
    /* pin-source is a file name or a file: URI. */
    src = (const char *)uri->pin_source.data;
    snprintf(path, sizeof(path), "%s%s",
             strncmp(src, "file:", 5) == 0 ? "" : "file:", src);
    return p11b_config_read_pin(ps->prov, "pin-source", path, &ps->pin,
                                &ps->len)
               ? P11B_PIN_GIVEN
               : P11B_PIN_FAILED;
}

static enum p11b_pin_answer supply_config(struct pin_supply *ps,
                                          struct p11b_slot *s, int only_ask)
{
    struct p11b_prov *prov = ps->prov;
    size_t n = 0;

    if (prov->cfg.pin == NULL)
        return P11B_PIN_NONE;
    if (!config_pin_goes_to(prov, s, &n)) {
        if (prov->cfg.pin_token == NULL)
            withhold(ps, "the configured PIN", n,
                     "name its token in " P11B_CFG_TOKEN_PIN_TOKEN);
        return P11B_PIN_NONE;
    }
    if (only_ask)
        return P11B_PIN_GIVEN;
    ps->pin = OPENSSL_memdup(prov->cfg.pin, prov->cfg.pin_len + 1);
    ps->len = prov->cfg.pin_len;
    return ps->pin != NULL ? P11B_PIN_GIVEN : P11B_PIN_FAILED;
}

/* The prompt: OpenSSL may replay its answer for every token (OSSL_STORE
 * caches the passphrase), so it is asked only for a token the URI selects
 * alone. */
static enum p11b_pin_answer supply_prompt(struct pin_supply *ps,
                                          struct p11b_slot *s, int only_ask)
{
    if (ps->cb == NULL || !uri_pin_for(ps, s, "the prompt"))
        return P11B_PIN_NONE;
    if (only_ask)
        return P11B_PIN_GIVEN;
    return pin_from_callback(s, ps->cb, ps->cbarg, &ps->pin, &ps->len)
               ? P11B_PIN_GIVEN
               : P11B_PIN_NONE;
}

static enum p11b_pin_answer supply_pin(void *arg, struct p11b_slot *s,
                                       enum p11b_pin_source src,
                                       const unsigned char **pin, size_t *len)
{
    struct pin_supply *ps = arg;
    enum p11b_pin_answer a;

    supply_wipe(ps);
    switch (src) {
    case P11B_PIN_SRC_URI_VALUE:
    case P11B_PIN_SRC_URI_FILE:
        a = supply_uri(ps, s, src == P11B_PIN_SRC_URI_FILE, pin == NULL);
        break;
    case P11B_PIN_SRC_CONFIG:
        a = supply_config(ps, s, pin == NULL);
        break;
    case P11B_PIN_SRC_PROMPT:
        a = supply_prompt(ps, s, pin == NULL);
        break;
    default:
        a = P11B_PIN_NONE;
        break;
    }
    if (a == P11B_PIN_GIVEN && pin != NULL) {
        *pin = ps->pin;
        *len = ps->len;
    }
    return a;
}

static void supplier_init(struct p11b_pin_supplier *sup, struct pin_supply *ps,
                          struct p11b_prov *prov, const struct p11b_uri *uri,
                          OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    memset(ps, 0, sizeof(*ps));
    ps->prov = prov;
    ps->uri = uri;
    ps->cb = cb;
    ps->cbarg = cbarg;
    sup->pin = supply_pin;
    sup->wipe = supply_wipe;
    sup->arg = ps;
    sup->cache_uri_pin = prov->cfg.cache_pins;
}

static const char *source_name(enum p11b_pin_source src)
{
    switch (src) {
    case P11B_PIN_SRC_URI_VALUE:
        return "the URI's pin-value";
    case P11B_PIN_SRC_URI_FILE:
        return "the URI's pin-source";
    case P11B_PIN_SRC_CONFIG:
        return "the configured PIN";
    case P11B_PIN_SRC_CACHED:
        return "the cached PIN";
    case P11B_PIN_SRC_PAD:
        return "the PIN pad";
    case P11B_PIN_SRC_PROMPT:
        return "the application's PIN prompt";
    default:
        return "no PIN";
    }
}

static int report_login(struct p11b_prov *prov, struct p11b_slot *s, CK_RV rv,
                        const char *source, int *why)
{
    char label[40];

    p11b_slot_label(s, label, sizeof(label));
    P11B_RAISE_RV(prov, P11B_R_LOGIN, rv,
                  "C_Login on slot %lu (token '%s') with %s", s->id, label,
                  source);
    if (why != NULL)
        *why = p11b_reason_for_rv(rv, P11B_R_LOGIN);
    return 0;
}

int p11b_prov_context_login(struct p11b_prov *prov, struct p11b_session *sess)
{
    struct p11b_pin_supplier sup;
    struct p11b_login_result res;
    struct pin_supply ps;

    supplier_init(&sup, &ps, prov, NULL, NULL, NULL);
    p11b_login_context(sess, &sup, &res);
    supply_wipe(&ps);
    if (res.outcome == P11B_LOGIN_DONE)
        return 1;
    if (res.outcome == P11B_LOGIN_NO_PIN) {
        P11B_RAISE(prov, P11B_R_PIN_MISSING,
                   "a key with CKA_ALWAYS_AUTHENTICATE on slot %lu needs a "
                   "PIN for each operation: configure %s or cache PINs",
                   sess->slot->id, P11B_CFG_TOKEN_PIN);
        return 0;
    }
    return report_login(prov, sess->slot, res.rv, source_name(res.source),
                        NULL);
}

int p11b_prov_pin_at_hand(struct p11b_prov *prov, struct p11b_slot *s,
                          const struct p11b_uri *uri)
{
    struct p11b_pin_supplier sup;
    struct pin_supply ps;
    int at_hand;

    supplier_init(&sup, &ps, prov, uri, NULL, NULL);
    at_hand = p11b_login_pin_at_hand(s, &sup);
    supply_wipe(&ps);
    return at_hand;
}

int p11b_prov_login(struct p11b_prov *prov, struct p11b_slot *s,
                    const struct p11b_uri *uri, OSSL_PASSPHRASE_CALLBACK *cb,
                    void *cbarg, int *why)
{
    struct p11b_pin_supplier sup;
    struct p11b_login_result res;
    struct pin_supply ps;
    char label[40];
    int why_unused;

    if (why == NULL)
        why = &why_unused;
    *why = P11B_R_LOGIN; /* a PIN source that could not be read */

    supplier_init(&sup, &ps, prov, uri, cb, cbarg);
    p11b_login(s, &sup, &res);
    supply_wipe(&ps);
    switch (res.outcome) {
    case P11B_LOGIN_DONE:
        return 1;
    case P11B_LOGIN_SOURCE_FAILED: /* the supplier said why */
        return 0;
    case P11B_LOGIN_NO_PIN:
        p11b_slot_label(s, label, sizeof(label));
        P11B_RAISE(prov, P11B_R_PIN_MISSING,
                   "token '%s' (slot %lu) needs a login: give a PIN in the "
                   "URI, in %s, or at the prompt%s",
                   label, s->id, P11B_CFG_TOKEN_PIN, ps.withheld);
        *why = P11B_R_PIN_MISSING;
        return 0;
    default:
        return report_login(prov, s, res.rv, source_name(res.source), why);
    }
}

/* ---- provider entry points ------------------------------------------ */

static const OSSL_PARAM prov_param_types[] = {
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
    OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
    OSSL_PARAM_END
};

static const OSSL_PARAM *prov_gettable_params(void *provctx)
{
    (void)provctx;
    return prov_param_types;
}

/* A misconfigured provider says so where `openssl list -providers`
 * looks: "status: inactive", and the problem in its name. */
static int prov_get_params(void *provctx, OSSL_PARAM params[])
{
    struct p11b_prov *prov = provctx;
    OSSL_PARAM *p;

    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
    if (p != NULL &&
        !OSSL_PARAM_set_utf8_ptr(p, prov->cfg_status_name != NULL
                                        ? prov->cfg_status_name
                                        : P11B_PROV_NAME))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, PACKAGE_VERSION))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, PACKAGE_STRING
                                              " built with " OPENSSL_VERSION_TEXT))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
    if (p != NULL && !OSSL_PARAM_set_int(p, prov->cfg_error == NULL))
        return 0;
    return 1;
}

static const OSSL_ALGORITHM *prov_query_operation(void *provctx, int op,
                                                  int *no_cache)
{
    *no_cache = 0;
    return p11b_algorithms(provctx, op);
}

static const OSSL_ITEM *prov_get_reason_strings(void *provctx)
{
    (void)provctx;
    return p11b_reason_strings();
}

static void prov_free(struct p11b_prov *prov)
{
    if (prov == NULL)
        return;
    p11b_module_put(prov->mod);
    p11b_config_clear(&prov->cfg);
    p11b_digest_cache_clear(&prov->digests);
    OPENSSL_free(prov->cfg_error);
    OPENSSL_free(prov->cfg_status_name);
    OSSL_LIB_CTX_free(prov->libctx);
    OPENSSL_free(prov);
}

static void prov_teardown(void *provctx)
{
    char summary[1024];
    unsigned long total;

    P11B_LOG(2, "provider teardown%s",
             p11b_module_exiting() ? " at process exit" : "");
    if (p11b_log_enabled(2)) {
        total = p11b_calls_summary(summary, sizeof(summary));
        P11B_LOG(2, "Cryptoki calls of this process: %lu (%s)", total,
                 summary);
    }
    prov_free(provctx);
}

static const OSSL_DISPATCH prov_functions[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS,
      (void (*)(void))prov_gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_get_params },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION,
      (void (*)(void))prov_query_operation },
    { OSSL_FUNC_PROVIDER_GET_REASON_STRINGS,
      (void (*)(void))prov_get_reason_strings },
    { 0, NULL }
};

static void take_core_functions(struct p11b_prov *prov, const OSSL_DISPATCH *in)
{
    for (; in->function_id != 0; in++) {
        switch (in->function_id) {
        case OSSL_FUNC_CORE_NEW_ERROR:
            prov->core_new_error = OSSL_FUNC_core_new_error(in);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            prov->core_set_error_debug = OSSL_FUNC_core_set_error_debug(in);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            prov->core_vset_error = OSSL_FUNC_core_vset_error(in);
            break;
        case OSSL_FUNC_CORE_GET_PARAMS:
            prov->core_get_params = OSSL_FUNC_core_get_params(in);
            break;
        default:
            break;
        }
    }
}

static void load_early(struct p11b_prov *prov)
{
    struct p11b_slot **slots;
    size_t n;

    /* Errors here are raised again at first use; do not fail the load. */
    ERR_set_mark();
    if (p11b_prov_module_ready(prov) &&
        p11b_module_slots(prov->mod, 1, &slots, &n) == CKR_OK)
        free(slots);
    ERR_pop_to_mark();
}

OPENSSL_EXPORT OSSL_provider_init_fn OSSL_provider_init;

/* Built with the headers of OpenSSL 3.x, the provider may use what 3.x
 * has (entry points, parameters, functions): an older libcrypto cannot
 * run it. A newer one can: what it adds is checked at run time. */
static int libcrypto_new_enough(struct p11b_prov *prov)
{
    unsigned int major = OPENSSL_version_major();
    unsigned int minor = OPENSSL_version_minor();

    /* one number: "minor >= 0" would be a constant on 3.0 (-Wtype-limits) */
    if (major * 100 + minor >=
        (unsigned int)(OPENSSL_VERSION_MAJOR * 100 + OPENSSL_VERSION_MINOR))
        return 1;
    P11B_RAISE(prov, P11B_R_OPENSSL_VERSION,
               "p11bridge was built for OpenSSL %d.%d or later; this "
               "process runs OpenSSL %u.%u.%u: rebuild p11bridge against it",
               OPENSSL_VERSION_MAJOR, OPENSSL_VERSION_MINOR, major, minor,
               OPENSSL_version_patch());
    return 0;
}

__attribute__((visibility("default"))) int
OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                   const OSSL_DISPATCH **out, void **provctx)
{
    struct p11b_prov *prov = OPENSSL_zalloc(sizeof(*prov));

    if (prov == NULL)
        return 0;
    p11b_digest_cache_init(&prov->digests);
    prov->handle = handle;
    take_core_functions(prov, in);
    if (prov->core_get_params == NULL || prov->core_new_error == NULL)
        goto err;
    if (!libcrypto_new_enough(prov))
        goto err;
    p11b_errors_guard_token_calls();
    if (!p11b_config_load(prov))
        goto err;
    prov->libctx = OSSL_LIB_CTX_new_child(handle, in);
    if (prov->libctx == NULL)
        goto err;
    if (prov->cfg_error != NULL) {
        /* Loaded, so that the problem reaches the user (DESIGN.md). */
        *out = prov_functions;
        *provctx = prov;
        return 1;
    }
    if (p11b_module_get(prov->cfg.module_path, prov->cfg.init_args,
                        &prov->cfg.mod_opts, &prov->mod) != CKR_OK)
        goto err;
    P11B_LOG(2, "provider loaded: module %s, %s loading",
             prov->cfg.module_path, prov->cfg.load_early ? "early" : "lazy");
    if (prov->cfg.load_early)
        load_early(prov);
    *out = prov_functions;
    *provctx = prov;
    return 1;
err:
    prov_free(prov);
    return 0;
}
