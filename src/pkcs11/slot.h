/*
 * One slot of a module: its token info, mechanism list, session pool,
 * login state and object cache.
 *
 * A slot's fields marked "locked: lock" change only under slot->lock. The
 * generation counter `gen` is bumped whenever what we know about the token
 * becomes invalid (token removed, session handles invalid, fork): sessions
 * and object handles carry the generation they were made in and are
 * dropped, without Cryptoki calls, when it no longer matches.
 */
#ifndef P11B_SLOT_H
#define P11B_SLOT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include "pkcs11/p11.h"

struct p11b_lib;
struct p11b_objcache;

struct p11b_slot {
    struct p11b_lib *lib;       /* the module's library (library.h)       */
    CK_SLOT_ID id;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* a session came back / login finished    */

    /* locked: lock */
    CK_SLOT_INFO info;
    CK_TOKEN_INFO token;
    int token_present;
    int token_stale;            /* refresh token info before the next use  */
    int refreshing;             /* one thread is in p11b_slot_refresh      */
    unsigned long refresh_round; /* refreshes finished                     */
    CK_RV refresh_rv;           /* the last one's result                   */
    unsigned long gen;

    CK_MECHANISM_TYPE *mechs;   /* sorted; loaded once per generation      */
    CK_ULONG nmechs;
    int mechs_loaded;

    CK_SESSION_HANDLE *idle;    /* idle sessions of generation `gen`       */
    size_t nidle;
    size_t nopen;               /* sessions handed out or idle             */
    size_t max_open;            /* from ulMaxSessionCount, 0 = unlimited   */

    /* Login state: the policy that changes it is in login.c. */
    int logged_in;
    int login_busy;             /* one thread is in C_Login                */
    CK_SESSION_HANDLE login_session; /* kept open so the login lasts       */
    unsigned char *cached_pin;  /* when PIN caching is on; wiped on free   */
    size_t cached_pin_len;
    unsigned char *rejected_pin; /* the PIN the token refused: never again */
    size_t rejected_pin_len;

    struct p11b_objcache *cache; /* object.c's searches; freed by the module */
    int ecdh_der;               /* peer point form that worked: -1 unknown */

    struct p11b_mech_info *minfo; /* C_GetMechanismInfo answers, kept      */
    size_t nminfo;

    /* A session kept open to hold session objects (copies of keys), and
     * the lock that serialises calls on it (a session is not for two
     * threads at once). Opened at first use; gone with the generation. */
    CK_SESSION_HANDLE obj_session; /* locked: lock                         */
    int obj_opening;               /* locked: lock; one thread opens it    */
    pthread_mutex_t obj_lock;
    atomic_int copy_refused;       /* C_CopyObject failed once: no copies  */
};

struct p11b_mech_info {
    CK_MECHANISM_TYPE type;
    CK_RV rv;
    CK_MECHANISM_INFO info;
};

struct p11b_slot *p11b_slot_new(struct p11b_lib *lib, CK_SLOT_ID id);
/* Frees memory only; Cryptoki calls are made by p11b_slot_close first. */
void p11b_slot_free(struct p11b_slot *slot);
/* Close every idle session and the login session (not at exit). */
void p11b_slot_close(struct p11b_slot *slot);

/* Reread slot and token info (C_GetSlotInfo, C_GetTokenInfo). */
CK_RV p11b_slot_refresh(struct p11b_slot *slot);
/* Copy of the slot info as last read. */
void p11b_slot_info(struct p11b_slot *slot, CK_SLOT_INFO *out);
/* The token's label as last read, without its blank padding. */
void p11b_slot_label(struct p11b_slot *slot, char *buf, size_t len);
/* Copy of the token info, refreshed first if it is stale. */
CK_RV p11b_slot_token_info(struct p11b_slot *slot, CK_TOKEN_INFO *out);

/* Forget sessions, login and cached objects because the token said they
 * are gone (CKR_DEVICE_REMOVED, CKR_SESSION_HANDLE_INVALID, ...). */
void p11b_slot_invalidate(struct p11b_slot *slot);
/* The same in the fork child handler: with the slot's lock held (the
 * handlers hold every lock), without Cryptoki calls or allocation. */
void p11b_slot_reset_after_fork(struct p11b_slot *slot);

/* Mechanisms: 1 if the token has it (list cached once per generation). */
int p11b_slot_has_mechanism(struct p11b_slot *slot, CK_MECHANISM_TYPE mech);
/* C_GetMechanismInfo, asked once per slot and mechanism. */
CK_RV p11b_slot_mechanism_info(struct p11b_slot *slot, CK_MECHANISM_TYPE mech,
                               CK_MECHANISM_INFO *out);

/* Login state. */
int p11b_slot_is_logged_in(struct p11b_slot *slot);
/* The slot's object session, opened if needed; *gen is the generation it
 * belongs to. Calls on it must hold slot->obj_lock. */
CK_RV p11b_slot_object_session(struct p11b_slot *slot, CK_SESSION_HANDLE *out,
                               unsigned long *gen);

/* ECDH peer point form to give the token: 1 DER, 0 raw, -1 not known
 * yet. A quirk of the module (p11b_lib_ecdh_form) answers first; else
 * the form that last worked on this slot. */
int p11b_slot_ecdh_der(struct p11b_slot *slot);
void p11b_slot_set_ecdh_der(struct p11b_slot *slot, int der);

/* locked: slot->lock. Our last session of the current generation is
 * being closed: the token ends the login with it. */
void p11b_slot_last_session_closed(struct p11b_slot *slot);

/* The token said our login is gone (CKR_USER_NOT_LOGGED_IN). */
void p11b_slot_forget_login(struct p11b_slot *slot);

#endif
