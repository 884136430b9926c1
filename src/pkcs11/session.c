/*
 * The per-slot session pool (see session.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/library.h"
#include "pkcs11/names.h"
#include "pkcs11/session.h"
#include "pkcs11/slot.h"

/* How long a thread waits for a session when the token's limit is
 * reached before it gives up with CKR_SESSION_COUNT. */
#define P11B_SESSION_WAIT_SEC 30

CK_FUNCTION_LIST *p11b_session_fns(const struct p11b_session *sess)
{
    return sess->slot->lib->fns;
}

static CK_RV open_session(struct p11b_slot *s, CK_SESSION_HANDLE *out)
{
    CK_RV rv;

    P11B_CALL(rv, s->lib->fns, C_OpenSession, s->id, s->id,
              CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out);
    if (rv == CKR_TOKEN_WRITE_PROTECTED)
        P11B_CALL_WHAT(rv, s->lib->fns, C_OpenSession, s->id, "read-only",
                       s->id, CKF_SERIAL_SESSION, NULL, NULL, out);
    return rv;
}

static int wait_for_session(struct p11b_slot *s)
{
    struct timespec ts;

    /* locked: s->lock */
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += P11B_SESSION_WAIT_SEC;
    return pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT;
}

/* A new session once the pool allowed it; returns it to the count on
 * failure. */
static CK_RV open_counted(struct p11b_slot *s, unsigned long gen,
                          struct p11b_session *out)
{
    CK_SESSION_HANDLE h;
    CK_RV rv = open_session(s, &h);

    if (rv == CKR_OK) {
        out->slot = s;
        out->h = h;
        out->gen = gen;
        out->fork_gen = p11b_fork_generation();
        return CKR_OK;
    }
    pthread_mutex_lock(&s->lock);
    if (gen == s->gen && s->nopen > 0) {
        s->nopen--;
        /* The token's real limit is lower than it said: learn it. */
        if (rv == CKR_SESSION_COUNT && s->nopen > 0)
            s->max_open = s->nopen;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (p11b_rv_is_token_gone(rv))
        p11b_slot_invalidate(s);
    return rv;
}

/* 1 if a bound was learned from CKR_SESSION_COUNT with sessions open. */
static int bound_learned(struct p11b_slot *s)
{
    int learned;

    pthread_mutex_lock(&s->lock);
    learned = s->max_open > 0 && s->nopen > 0;
    pthread_mutex_unlock(&s->lock);
    return learned;
}

static CK_RV ensure_token(struct p11b_slot *s)
{
    int stale;

    pthread_mutex_lock(&s->lock);
    stale = s->token_stale;
    pthread_mutex_unlock(&s->lock);
    return stale ? p11b_slot_refresh(s) : CKR_OK;
}

/* Wait for an idle session or room for a new one; locked: s->lock. */
static CK_RV take_or_wait(struct p11b_slot *s, struct p11b_session *out,
                          int *open_new)
{
    *open_new = 0;
    for (;;) {
        if (!s->token_present)
            return CKR_TOKEN_NOT_PRESENT;
        if (s->nidle > 0) {
            out->slot = s;
            out->h = s->idle[--s->nidle];
            out->gen = s->gen;
            out->fork_gen = p11b_fork_generation();
            return CKR_OK;
        }
        if (s->max_open == 0 || s->nopen < s->max_open) {
            s->nopen++;
            *open_new = 1;
            return CKR_OK;
        }
        /* At the bound, the session that made the login joins the pool:
         * the login belongs to the token, and lasts while any session of
         * ours is open. A token with one session works only so. */
        if (s->login_session != CK_INVALID_HANDLE) {
            out->slot = s;
            out->h = s->login_session;
            out->gen = s->gen;
            out->fork_gen = p11b_fork_generation();
            s->login_session = CK_INVALID_HANDLE;
            return CKR_OK;
        }
        if (!wait_for_session(s)) {
            P11B_LOG(1, "slot %lu: no session free after %d s", s->id,
                     P11B_SESSION_WAIT_SEC);
            return CKR_SESSION_COUNT;
        }
    }
}

CK_RV p11b_session_acquire(struct p11b_slot *s, struct p11b_session *out)
{
    char err[16];
    unsigned long gen;
    int open_new, tries;
    CK_RV rv;

    rv = p11b_lib_ensure(s->lib, err, sizeof(err));
    if (rv == CKR_OK)
        rv = ensure_token(s);
    if (rv != CKR_OK)
        return rv;
    /* A CKR_SESSION_COUNT while others are open taught us the token's
     * real bound: then wait for one of ours to come back, like any other
     * thread past the bound. */
    for (tries = 0; tries < 3; tries++) {
        pthread_mutex_lock(&s->lock);
        rv = take_or_wait(s, out, &open_new);
        gen = s->gen;
        pthread_mutex_unlock(&s->lock);
        if (rv != CKR_OK || !open_new)
            return rv;
        rv = open_counted(s, gen, out);
        if (rv != CKR_SESSION_COUNT || !bound_learned(s))
            return rv;
    }
    return rv;
}

/* locked: s->lock. 1 if the session was taken back into the pool. */
static int keep_idle(struct p11b_slot *s, CK_SESSION_HANDLE h)
{
    size_t cap = s->lib->cache_sessions;

    if (s->nidle >= cap)
        return 0;
    if (s->idle == NULL) { /* once: no allocation per operation */
        s->idle = calloc(cap, sizeof(*s->idle));
        if (s->idle == NULL)
            return 0;
    }
    s->idle[s->nidle++] = h;
    return 1;
}

/* Close one of our sessions, then count it out: the count drops only once
 * the token has really closed it, so a thread waiting at the token's
 * session bound never opens one too many. When it was the last of the
 * generation, the token ended our login with it (on a token that allows
 * one session, that is the one that logged in). */
static void close_counted(struct p11b_slot *s, const struct p11b_session *sess)
{
    CK_RV rv;

    if (!p11b_module_exiting()) {
        P11B_CALL(rv, s->lib->fns, C_CloseSession, s->id, sess->h);
        (void)rv;
    }
    pthread_mutex_lock(&s->lock);
    if (sess->gen == s->gen && s->nopen > 0) {
        s->nopen--;
        if (s->nopen == 0)
            p11b_slot_last_session_closed(s);
    }
    /* Broadcast: threads waiting for a login wait on the same condition,
     * and a signal could wake one of them instead of a session waiter. */
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void p11b_session_discard(struct p11b_session *sess)
{
    if (sess->slot == NULL)
        return;
    close_counted(sess->slot, sess);
    sess->slot = NULL;
}

void p11b_session_release(struct p11b_session *sess)
{
    p11b_session_release_rv(sess, CKR_OK);
}

void p11b_session_release_rv(struct p11b_session *sess, CK_RV rv)
{
    struct p11b_slot *s = sess->slot;
    int close_it = 0, counted = 0;

    if (s == NULL)
        return;
    /* Sessions gone, or handles stale: start the slot afresh. A lost
     * login only needs a new C_Login. */
    if (p11b_rv_is_token_gone(rv) || rv == CKR_OBJECT_HANDLE_INVALID ||
        rv == CKR_KEY_HANDLE_INVALID)
        p11b_slot_invalidate(s);
    else if (rv == CKR_USER_NOT_LOGGED_IN)
        p11b_slot_forget_login(s);
    pthread_mutex_lock(&s->lock);
    if (sess->gen == s->gen) {
        /* After a failed call an operation may still be active in the
         * session (CKR_BUFFER_TOO_SMALL leaves it so by the standard, some
         * tokens after any error): a pooled session must be clean, so it
         * is closed, never kept. */
        counted = rv != CKR_OK || !keep_idle(s, sess->h);
        if (!counted)
            pthread_cond_broadcast(&s->cond); /* see close_counted */
    } else {
        /* Of an older generation: close it (it may still be open on the
         * token), unless it is the parent's, across a fork. */
        close_it = sess->fork_gen == p11b_fork_generation();
    }
    pthread_mutex_unlock(&s->lock);
    if (counted) {
        close_counted(s, sess);
    } else if (close_it && !p11b_module_exiting()) {
        P11B_CALL_WHAT(rv, s->lib->fns, C_CloseSession, s->id,
                       "of an older generation", sess->h);
    }
    sess->slot = NULL;
    sess->h = CK_INVALID_HANDLE;
}
