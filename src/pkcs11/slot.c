/*
 * Slots: token info, mechanism list, login state and invalidation.
 * The session pool of a slot is in session.c, the login policy in
 * login.c.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h> /* OPENSSL_cleanse only */

#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/library.h"
#include "pkcs11/names.h"
#include "pkcs11/slot.h"

struct p11b_slot *p11b_slot_new(struct p11b_lib *lib, CK_SLOT_ID id)
{
    struct p11b_slot *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->lib = lib;
    s->id = id;
    s->token_stale = 1;
    s->gen = 1;
    s->login_session = CK_INVALID_HANDLE;
    s->obj_session = CK_INVALID_HANDLE;
    s->ecdh_der = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->obj_lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    return s;
}

static void wipe_free(unsigned char **p, size_t *len)
{
    if (*p != NULL) {
        OPENSSL_cleanse(*p, *len);
        free(*p);
    }
    *p = NULL;
    *len = 0;
}

void p11b_slot_free(struct p11b_slot *s)
{
    if (s == NULL)
        return;
    wipe_free(&s->cached_pin, &s->cached_pin_len);
    wipe_free(&s->rejected_pin, &s->rejected_pin_len);
    free(s->idle);
    free(s->mechs);
    free(s->minfo);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->obj_lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void p11b_slot_close(struct p11b_slot *s)
{
    size_t i;
    CK_RV rv;

    /* Module teardown: no other thread uses the slot any more. */
    for (i = 0; i < s->nidle; i++) {
        P11B_CALL_WHAT(rv, s->lib->fns, C_CloseSession, s->id, "at unload",
                       s->idle[i]);
    }
    s->nidle = 0;
    if (s->obj_session != CK_INVALID_HANDLE) {
        /* It destroys the key copies. */
        P11B_CALL_WHAT(rv, s->lib->fns, C_CloseSession, s->id,
                       "the object session", s->obj_session);
        s->obj_session = CK_INVALID_HANDLE;
    }
    if (s->login_session != CK_INVALID_HANDLE) {
        P11B_CALL(rv, s->lib->fns, C_Logout, s->id, s->login_session);
        P11B_CALL_WHAT(rv, s->lib->fns, C_CloseSession, s->id,
                       "the login session", s->login_session);
        s->login_session = CK_INVALID_HANDLE;
    }
    s->logged_in = 0;
}

/* locked: s->lock */
static void forget_state(struct p11b_slot *s)
{
    s->gen++;
    s->nidle = 0;
    s->nopen = 0;
    s->logged_in = 0;
    s->login_busy = 0;
    s->login_session = CK_INVALID_HANDLE;
    s->obj_session = CK_INVALID_HANDLE;
    s->obj_opening = 0;
    s->token_stale = 1;
    /* The search cache (object.c) goes with the generation. */
}

void p11b_slot_last_session_closed(struct p11b_slot *s)
{
    /* PKCS#11: a login lasts while the application has a session open.
     * Private objects may come back with new handles at the next login
     * (SoftHSM's do): what we knew of them goes with the generation. */
    if (s->logged_in)
        forget_state(s);
}

/* Close sessions we stop using. Some may already be gone (that is why we
 * stop): the calls then just fail. A token that caps its sessions would
 * otherwise run out of them after a few recoveries. */
static void close_handles(struct p11b_slot *s, CK_SESSION_HANDLE *hs, size_t n)
{
    size_t i;
    CK_RV rv;

    if (p11b_module_exiting())
        return;
    for (i = 0; i < n; i++) {
        P11B_CALL_WHAT(rv, s->lib->fns, C_CloseSession, s->id,
                       "a dropped session", hs[i]);
    }
}

void p11b_slot_invalidate(struct p11b_slot *s)
{
    CK_SESSION_HANDLE *drop;
    size_t n = 0;

    pthread_mutex_lock(&s->lock);
    P11B_LOG(1, "slot %lu: token state lost, sessions and handles dropped",
             s->id);
    drop = calloc(s->nidle + 2, sizeof(*drop));
    if (drop != NULL) {
        memcpy(drop, s->idle, s->nidle * sizeof(*drop));
        n = s->nidle;
        if (s->login_session != CK_INVALID_HANDLE)
            drop[n++] = s->login_session;
        if (s->obj_session != CK_INVALID_HANDLE)
            drop[n++] = s->obj_session;
    }
    forget_state(s);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    close_handles(s, drop, n);
    free(drop);
}

void p11b_slot_reset_after_fork(struct p11b_slot *s)
{
    /* The child owns no session of the parent's: drop them all, keep the
     * cached PIN so the child can log in again by itself. The object lock
     * is not taken by the fork handlers (it is held across C_CopyObject):
     * start it afresh, the child has one thread at this point. */
    pthread_mutex_init(&s->obj_lock, NULL);
    s->refreshing = 0; /* a parent thread's refresh never ends here */
    forget_state(s);
}

void p11b_slot_info(struct p11b_slot *s, CK_SLOT_INFO *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->info;
    pthread_mutex_unlock(&s->lock);
}

void p11b_slot_label(struct p11b_slot *s, char *buf, size_t len)
{
    size_t n = sizeof(s->token.label);

    if (len == 0)
        return;
    n = n < len ? n : len - 1;
    pthread_mutex_lock(&s->lock);
    memcpy(buf, s->token.label, n);
    pthread_mutex_unlock(&s->lock);
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
}

static CK_RV refresh_calls(struct p11b_slot *s)
{
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    int tries;
    CK_RV rv;

    P11B_CALL(rv, s->lib->fns, C_GetSlotInfo, s->id, s->id, &si);
    if (rv != CKR_OK)
        return rv;
    P11B_CALL(rv, s->lib->fns, C_GetTokenInfo, s->id, s->id, &ti);
    /* Again after a pause, up to 4 times (20, 40, 80, 160 ms): SoftHSM
     * fails so while another process rewrites the token's files, and one
     * 20 ms pause was seen not to be enough for a forked server worker
     * starting beside its siblings. A token that cannot be read at all
     * fails every time (300 ms lost), and that is what the caller reports. */
    for (tries = 0; rv == CKR_GENERAL_ERROR && tries < 4; tries++) {
        struct timespec pause = { 0, (20L * 1000 * 1000) << tries };

        nanosleep(&pause, NULL);
        P11B_CALL_WHAT(rv, s->lib->fns, C_GetTokenInfo, s->id, "again", s->id,
                       &ti);
    }

    pthread_mutex_lock(&s->lock);
    s->info = si;
    if (rv == CKR_OK) {
        if (s->token_present &&
            memcmp(s->token.serialNumber, ti.serialNumber,
                   sizeof(ti.serialNumber)) != 0)
            forget_state(s); /* another token in the same slot */
        s->token = ti;
        s->token_present = 1;
        s->token_stale = 0;
        /* ulMaxSessionCount: CK_EFFECTIVELY_INFINITE (0) and
         * CK_UNAVAILABLE_INFORMATION both mean "no known bound". */
        if (ti.ulMaxSessionCount == CK_EFFECTIVELY_INFINITE ||
            ti.ulMaxSessionCount == CK_UNAVAILABLE_INFORMATION)
            s->max_open = 0;
        else
            s->max_open = ti.ulMaxSessionCount;
    } else {
        s->token_present = 0;
        s->token_stale = 1;
    }
    pthread_mutex_unlock(&s->lock);
    if (rv == CKR_TOKEN_NOT_RECOGNIZED)
        rv = CKR_TOKEN_NOT_PRESENT;
    return rv;
}

/*
 * One refresh at a time per slot: threads that ask while one is under way
 * wait for it and take its result. Sixteen threads of a freshly forked
 * child would otherwise all call C_GetTokenInfo at once, which is wasted;
 * and one at a time per library (info_lock): SoftHSM's C_GetTokenInfo
 * races on gmtime() between slots (seen by TSan in CI).
 */
CK_RV p11b_slot_refresh(struct p11b_slot *s)
{
    unsigned long round;
    CK_RV rv;

    pthread_mutex_lock(&s->lock);
    if (s->refreshing) {
        round = s->refresh_round;
        while (s->refreshing && s->refresh_round == round)
            pthread_cond_wait(&s->cond, &s->lock);
        rv = s->refresh_rv;
        pthread_mutex_unlock(&s->lock);
        return rv;
    }
    s->refreshing = 1;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&s->lib->info_lock);
    rv = refresh_calls(s);
    pthread_mutex_unlock(&s->lib->info_lock);
    pthread_mutex_lock(&s->lock);
    s->refreshing = 0;
    s->refresh_rv = rv;
    s->refresh_round++;
    pthread_cond_broadcast(&s->cond); /* shared with session waiters */
    pthread_mutex_unlock(&s->lock);
    return rv;
}

CK_RV p11b_slot_token_info(struct p11b_slot *s, CK_TOKEN_INFO *out)
{
    int stale;
    CK_RV rv = CKR_OK;

    pthread_mutex_lock(&s->lock);
    stale = s->token_stale;
    pthread_mutex_unlock(&s->lock);
    if (stale)
        rv = p11b_slot_refresh(s);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&s->lock);
    *out = s->token;
    pthread_mutex_unlock(&s->lock);
    return CKR_OK;
}

static int cmp_mech(const void *a, const void *b)
{
    CK_MECHANISM_TYPE x = *(const CK_MECHANISM_TYPE *)a;
    CK_MECHANISM_TYPE y = *(const CK_MECHANISM_TYPE *)b;

    return x < y ? -1 : x > y;
}

static void load_mechanisms(struct p11b_slot *s)
{
    CK_MECHANISM_TYPE *list = NULL;
    char what[32];
    CK_ULONG n = 0;
    CK_RV rv;

    P11B_CALL_WHAT(rv, s->lib->fns, C_GetMechanismList, s->id, "count", s->id,
                   NULL, &n);
    if (rv == CKR_OK && n > 0) {
        list = calloc(n, sizeof(*list));
        if (list == NULL)
            return;
        P11B_CALL_WHAT(rv, s->lib->fns, C_GetMechanismList, s->id,
                       p11b_call_what(what, sizeof(what), "%lu mechanisms",
                                      rv == CKR_OK ? n : 0UL),
                       s->id, list, &n);
    }
    if (rv != CKR_OK) {
        free(list);
        return;
    }
    if (list != NULL)
        qsort(list, n, sizeof(*list), cmp_mech);
    pthread_mutex_lock(&s->lock);
    if (!s->mechs_loaded) {
        s->mechs = list;
        s->nmechs = n;
        s->mechs_loaded = 1;
        list = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    free(list);
}

int p11b_slot_has_mechanism(struct p11b_slot *s, CK_MECHANISM_TYPE mech)
{
    int loaded;

    pthread_mutex_lock(&s->lock);
    loaded = s->mechs_loaded;
    pthread_mutex_unlock(&s->lock);
    if (!loaded)
        load_mechanisms(s);
    /* Once loaded, the list is never replaced: read it without the lock. */
    if (!s->mechs_loaded || s->nmechs == 0)
        return 0;
    return bsearch(&mech, s->mechs, s->nmechs, sizeof(mech), cmp_mech) != NULL;
}

/* locked: s->lock */
static const struct p11b_mech_info *minfo_find(struct p11b_slot *s,
                                               CK_MECHANISM_TYPE mech)
{
    size_t i;

    for (i = 0; i < s->nminfo; i++) {
        if (s->minfo[i].type == mech)
            return &s->minfo[i];
    }
    return NULL;
}

CK_RV p11b_slot_mechanism_info(struct p11b_slot *s, CK_MECHANISM_TYPE mech,
                               CK_MECHANISM_INFO *out)
{
    const struct p11b_mech_info *known;
    struct p11b_mech_info *grown, got;
    CK_RV rv;

    pthread_mutex_lock(&s->lock);
    known = minfo_find(s, mech);
    if (known != NULL) {
        *out = known->info;
        rv = known->rv;
        pthread_mutex_unlock(&s->lock);
        return rv;
    }
    pthread_mutex_unlock(&s->lock);

    memset(&got, 0, sizeof(got));
    got.type = mech;
    P11B_CALL_WHAT(got.rv, s->lib->fns, C_GetMechanismInfo, s->id,
                   p11b_mech_name(mech), s->id, mech, &got.info);
    pthread_mutex_lock(&s->lock);
    if (minfo_find(s, mech) == NULL) {
        grown = realloc(s->minfo, (s->nminfo + 1) * sizeof(*grown));
        if (grown != NULL) {
            s->minfo = grown;
            s->minfo[s->nminfo++] = got;
        }
    }
    pthread_mutex_unlock(&s->lock);
    *out = got.info;
    return got.rv;
}

int p11b_slot_is_logged_in(struct p11b_slot *s)
{
    int in;

    pthread_mutex_lock(&s->lock);
    in = s->logged_in;
    pthread_mutex_unlock(&s->lock);
    return in;
}

void p11b_slot_forget_login(struct p11b_slot *s)
{
    CK_SESSION_HANDLE h;

    /* The token logged us out: the session that held the login is of no
     * more use; the next login opens a fresh one. */
    pthread_mutex_lock(&s->lock);
    h = s->login_session;
    s->login_session = CK_INVALID_HANDLE;
    s->logged_in = 0;
    if (h != CK_INVALID_HANDLE && s->nopen > 0)
        s->nopen--;
    pthread_mutex_unlock(&s->lock);
    if (h != CK_INVALID_HANDLE)
        close_handles(s, &h, 1);
}

int p11b_slot_ecdh_der(struct p11b_slot *s)
{
    int der = p11b_lib_ecdh_form(s->lib);

    if (der >= 0)
        return der; /* a quirk of the module says */
    pthread_mutex_lock(&s->lock);
    der = s->ecdh_der;
    pthread_mutex_unlock(&s->lock);
    return der;
}

void p11b_slot_set_ecdh_der(struct p11b_slot *s, int der)
{
    pthread_mutex_lock(&s->lock);
    s->ecdh_der = der;
    pthread_mutex_unlock(&s->lock);
}

CK_RV p11b_slot_object_session(struct p11b_slot *s, CK_SESSION_HANDLE *out,
                               unsigned long *gen)
{
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    unsigned long g;
    CK_RV rv;

    pthread_mutex_lock(&s->lock);
    h = s->obj_session;
    g = s->gen;
    if (h != CK_INVALID_HANDLE) {
        pthread_mutex_unlock(&s->lock);
        *out = h;
        *gen = g;
        return CKR_OK;
    }
    /* Never at the cost of the pool: on a token with few sessions, keep
     * room for one operation session besides this one. A child whose
     * library kept the parent's sessions cannot count them: on a token
     * with a session limit it does without. One thread opens it; the
     * others do without a copy meanwhile. */
    if (s->obj_opening ||
        (s->max_open != 0 &&
         (s->nopen + 2 > s->max_open || s->lib->kept_parent_state))) {
        pthread_mutex_unlock(&s->lock);
        return CKR_SESSION_COUNT;
    }
    s->obj_opening = 1;
    s->nopen++; /* counted before it is opened, like the pool's sessions */
    pthread_mutex_unlock(&s->lock);

    P11B_CALL_WHAT(rv, s->lib->fns, C_OpenSession, s->id, "for session objects",
                   s->id, CKF_SERIAL_SESSION, NULL, NULL, &h);

    pthread_mutex_lock(&s->lock);
    if (s->gen == g) {
        s->obj_opening = 0;
        if (rv == CKR_OK) {
            s->obj_session = h;
            h = CK_INVALID_HANDLE;
        } else if (s->nopen > 0) {
            s->nopen--;
            pthread_cond_broadcast(&s->cond);
        }
    }
    if (rv == CKR_SESSION_COUNT)
        s->copy_refused = 1; /* no session to spare on this token */
    *out = s->obj_session;
    *gen = s->gen;
    pthread_mutex_unlock(&s->lock);
    if (rv == CKR_OK && h != CK_INVALID_HANDLE) {
        CK_RV rv2; /* the slot was reset meanwhile */

        P11B_CALL(rv2, s->lib->fns, C_CloseSession, s->id, h);
        (void)rv2;
    }
    if (rv != CKR_OK)
        return rv;
    return *out != CK_INVALID_HANDLE ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}
