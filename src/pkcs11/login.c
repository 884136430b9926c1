/*
 * Login policy (see login.h). The login state itself (logged in, the
 * session that holds the login, the cached and the rejected PIN) is kept
 * in the slot, under the slot's lock; what is done with it is decided
 * here.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h> /* OPENSSL_cleanse only */

#include "pkcs11/audit.h"
#include "pkcs11/calls.h"
#include "pkcs11/login.h"
#include "pkcs11/session.h"
#include "pkcs11/slot.h"

static void wipe_free(unsigned char **p, size_t *len)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, *len);
        free(*p);
    }
    *p = NULL;
    *len = 0;
}

/* Compared in time that does not depend on where they differ. */
static int same_pin(const unsigned char *a, size_t alen,
                    const unsigned char *b, size_t blen)
{
    unsigned char diff = 0;
    size_t i;

    if (a == NULL || b == NULL || alen != blen)
        return 0;
    for (i = 0; i < alen; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

static void keep_copy(unsigned char **dst, size_t *dst_len,
                      const unsigned char *pin, size_t len)
{
    wipe_free(dst, dst_len);
    if (pin == NULL)
        return;
    *dst = malloc(len + 1);
    if (*dst == NULL)
        return;
    memcpy(*dst, pin, len);
    (*dst)[len] = '\0';
    *dst_len = len;
}

/* Refuse before C_Login when the token says another failure locks it. */
static CK_RV login_precheck(struct p11b_slot *s)
{
    CK_TOKEN_INFO ti;
    CK_RV rv = p11b_slot_refresh(s);

    if (rv != CKR_OK)
        return rv;
    rv = p11b_slot_token_info(s, &ti);
    if (rv != CKR_OK)
        return rv;
    if (ti.flags & CKF_USER_PIN_LOCKED)
        return CKR_PIN_LOCKED;
    if (ti.flags & CKF_USER_PIN_FINAL_TRY)
        return P11B_CKR_PIN_FINAL_TRY;
    return CKR_OK;
}

/* Log in on a session of the pool (an idle one, or a new one within the
 * token's session bound, counted like any other): on a token that allows
 * few sessions, the login must not take one the pool cannot count. */
static CK_RV do_login(struct p11b_slot *s, const unsigned char *pin,
                      size_t pin_len, struct p11b_session *out)
{
    struct p11b_session sess;
    CK_RV rv;

    rv = p11b_session_acquire(s, &sess);
    if (rv != CKR_OK)
        return rv;
    P11B_CALL_WHAT(rv, p11b_session_fns(&sess), C_Login, s->id, "CKU_USER",
                   sess.h, CKU_USER, (CK_UTF8CHAR *)pin, (CK_ULONG)pin_len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    if (rv != CKR_OK) {
        p11b_session_release(&sess);
        return rv;
    }
    *out = sess;
    return CKR_OK;
}

/* C_Login(CKU_USER) once with this PIN, unless the token is logged in
 * already, the PIN was rejected before, or the token says it is locked
 * or at its final try. With cache set, a PIN that worked is kept. */
static CK_RV login_with_pin(struct p11b_slot *s, const unsigned char *pin,
                            size_t pin_len, int cache)
{
    struct p11b_session sess = { NULL, CK_INVALID_HANDLE, 0, 0 };
    unsigned long gen;
    int stale = 0;
    CK_RV rv;

    pthread_mutex_lock(&s->lock);
    while (s->login_busy)
        pthread_cond_wait(&s->cond, &s->lock);
    if (s->logged_in) {
        pthread_mutex_unlock(&s->lock);
        return CKR_OK;
    }
    if (same_pin(pin, pin_len, s->rejected_pin, s->rejected_pin_len)) {
        pthread_mutex_unlock(&s->lock);
        return P11B_CKR_PIN_NOT_RETRIED;
    }
    s->login_busy = 1;
    gen = s->gen;
    pthread_mutex_unlock(&s->lock);

    rv = login_precheck(s);
    if (rv == CKR_OK)
        rv = do_login(s, pin, pin_len, &sess);
    p11b_audit_login(s, rv);

    pthread_mutex_lock(&s->lock);
    s->login_busy = 0;
    if (rv == CKR_OK && (gen != s->gen || sess.gen != s->gen)) {
        stale = 1; /* the slot was reset meanwhile */
    } else if (rv == CKR_OK) {
        s->logged_in = 1;
        s->login_session = sess.h; /* already counted in nopen */
        if (cache)
            keep_copy(&s->cached_pin, &s->cached_pin_len, pin, pin_len);
    } else if (rv == CKR_PIN_INCORRECT) {
        keep_copy(&s->rejected_pin, &s->rejected_pin_len, pin, pin_len);
        if (same_pin(pin, pin_len, s->cached_pin, s->cached_pin_len))
            wipe_free(&s->cached_pin, &s->cached_pin_len);
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (stale) {
        p11b_session_release(&sess); /* closed: of an older generation */
        rv = CKR_SESSION_HANDLE_INVALID;
    }
    return rv;
}

static int has_cached_pin(struct p11b_slot *s)
{
    int has;

    pthread_mutex_lock(&s->lock);
    has = s->cached_pin != NULL;
    pthread_mutex_unlock(&s->lock);
    return has;
}

/* A copy of the cached PIN, to be wiped with wipe_free; NULL if none. */
static unsigned char *cached_pin_copy(struct p11b_slot *s, size_t *len)
{
    unsigned char *copy = NULL;

    pthread_mutex_lock(&s->lock);
    if (s->cached_pin != NULL) {
        copy = malloc(s->cached_pin_len + 1);
        if (copy != NULL) {
            memcpy(copy, s->cached_pin, s->cached_pin_len + 1);
            *len = s->cached_pin_len;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return copy;
}

/* CKR_USER_NOT_LOGGED_IN when no PIN is cached. */
static CK_RV login_cached(struct p11b_slot *s)
{
    size_t len = 0;
    unsigned char *pin = cached_pin_copy(s, &len);
    CK_RV rv;

    if (pin == NULL)
        return CKR_USER_NOT_LOGGED_IN;
    rv = login_with_pin(s, pin, len, 1);
    wipe_free(&pin, &len);
    return rv;
}

static CK_RV done(struct p11b_login_result *res, enum p11b_pin_source src,
                  enum p11b_login_outcome outcome, CK_RV rv)
{
    res->source = src;
    res->outcome = outcome;
    res->rv = rv;
    return rv;
}

static CK_RV tried(struct p11b_login_result *res, enum p11b_pin_source src,
                   CK_RV rv)
{
    return done(res, src, rv == CKR_OK ? P11B_LOGIN_DONE : P11B_LOGIN_REFUSED,
                rv);
}

/* Ask the supplier for src's PIN and log in with it. *asked is 0 when the
 * source had none for the token (nothing tried). */
static CK_RV login_from(struct p11b_slot *s, const struct p11b_pin_supplier *sup,
                        enum p11b_pin_source src, int cache,
                        struct p11b_login_result *res, int *asked)
{
    const unsigned char *pin = NULL;
    size_t len = 0;
    enum p11b_pin_answer a = sup->pin(sup->arg, s, src, &pin, &len);
    CK_RV rv;

    *asked = a != P11B_PIN_NONE;
    if (a == P11B_PIN_NONE)
        return CKR_OK;
    if (a == P11B_PIN_FAILED)
        return done(res, src, P11B_LOGIN_SOURCE_FAILED, CKR_GENERAL_ERROR);
    rv = login_with_pin(s, pin, len, cache);
    sup->wipe(sup->arg);
    return tried(res, src, rv);
}

/* The last resorts: the PIN pad, the application's prompt. A locked
 * token, or one at its final try, is refused before anyone is asked. */
static CK_RV login_interactive(struct p11b_slot *s,
                               const struct p11b_pin_supplier *sup,
                               struct p11b_login_result *res)
{
    CK_TOKEN_INFO ti;
    int asked;
    CK_RV rv;

    rv = p11b_slot_refresh(s);
    if (rv == CKR_OK && p11b_slot_token_info(s, &ti) == CKR_OK &&
        (ti.flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY)))
        return tried(res, P11B_PIN_SRC_PROMPT,
                     (ti.flags & CKF_USER_PIN_LOCKED) ? CKR_PIN_LOCKED
                                                      : P11B_CKR_PIN_FINAL_TRY);
    if (p11b_slot_token_info(s, &ti) == CKR_OK &&
        (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH))
        return tried(res, P11B_PIN_SRC_PAD, login_with_pin(s, NULL, 0, 0));
    /* A prompted PIN is kept: forked children cannot ask again. */
    rv = login_from(s, sup, P11B_PIN_SRC_PROMPT, 1, res, &asked);
    if (asked)
        return rv;
    return done(res, P11B_PIN_SRC_PROMPT, P11B_LOGIN_NO_PIN,
                CKR_USER_NOT_LOGGED_IN);
}

CK_RV p11b_login(struct p11b_slot *s, const struct p11b_pin_supplier *sup,
                 struct p11b_login_result *res)
{
    static const enum p11b_pin_source given[] = {
        P11B_PIN_SRC_URI_VALUE, P11B_PIN_SRC_URI_FILE, P11B_PIN_SRC_CONFIG,
    };
    size_t i;
    int asked;
    CK_RV rv;

    done(res, P11B_PIN_SRC_NONE, P11B_LOGIN_DONE, CKR_OK);
    if (p11b_slot_is_logged_in(s))
        return CKR_OK;
    for (i = 0; i < P11B_NELEM(given); i++) {
        /* The configured PIN is always at hand: never cached. */
        rv = login_from(s, sup, given[i],
                        given[i] != P11B_PIN_SRC_CONFIG && sup->cache_uri_pin,
                        res, &asked);
        if (asked)
            return rv;
    }
    if (has_cached_pin(s)) {
        rv = login_cached(s);
        if (rv != CKR_USER_NOT_LOGGED_IN) /* gone meanwhile: ask on */
            return tried(res, P11B_PIN_SRC_CACHED, rv);
    }
    return login_interactive(s, sup, res);
}

int p11b_login_pin_at_hand(struct p11b_slot *s,
                           const struct p11b_pin_supplier *sup)
{
    return sup->pin(sup->arg, s, P11B_PIN_SRC_URI_VALUE, NULL, NULL) ==
               P11B_PIN_GIVEN ||
           sup->pin(sup->arg, s, P11B_PIN_SRC_URI_FILE, NULL, NULL) ==
               P11B_PIN_GIVEN ||
           sup->pin(sup->arg, s, P11B_PIN_SRC_CONFIG, NULL, NULL) ==
               P11B_PIN_GIVEN ||
           has_cached_pin(s);
}

int p11b_login_needed(struct p11b_slot *s)
{
    CK_TOKEN_INFO ti;

    if (p11b_slot_is_logged_in(s))
        return 0;
    return p11b_slot_token_info(s, &ti) == CKR_OK &&
           (ti.flags & CKF_LOGIN_REQUIRED);
}

CK_RV p11b_login_context(struct p11b_session *sess,
                         const struct p11b_pin_supplier *sup,
                         struct p11b_login_result *res)
{
    struct p11b_slot *s = sess->slot;
    const unsigned char *given = NULL;
    unsigned char *cached = NULL;
    enum p11b_pin_source src = P11B_PIN_SRC_CONFIG;
    size_t len = 0;
    CK_RV rv;

    if (sup->pin(sup->arg, s, P11B_PIN_SRC_CONFIG, &given, &len) !=
        P11B_PIN_GIVEN) {
        given = cached = cached_pin_copy(s, &len);
        src = P11B_PIN_SRC_CACHED;
    }
    if (given == NULL)
        return done(res, P11B_PIN_SRC_CONFIG, P11B_LOGIN_NO_PIN,
                    CKR_USER_NOT_LOGGED_IN);
    P11B_CALL_WHAT(rv, p11b_session_fns(sess), C_Login, s->id,
                   "CKU_CONTEXT_SPECIFIC", sess->h, CKU_CONTEXT_SPECIFIC,
                   (CK_UTF8CHAR *)given, (CK_ULONG)len);
    if (cached != NULL)
        wipe_free(&cached, &len);
    else
        sup->wipe(sup->arg);
    return tried(res, src, rv);
}
