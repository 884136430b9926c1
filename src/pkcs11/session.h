/*
 * The per-slot session pool.
 *
 * Sessions are borrowed, never owned: p11b_session_acquire hands one out
 * (reusing an idle one, or opening a new one while under the token's
 * ulMaxSessionCount, or waiting for one to come back), and
 * p11b_session_release gives it back. A session whose Cryptoki call failed
 * in a way that means it is gone is given back with p11b_session_discard.
 */
#ifndef P11B_SESSION_H
#define P11B_SESSION_H

#include "pkcs11/p11.h"

struct p11b_slot;

struct p11b_session {
    struct p11b_slot *slot;
    CK_SESSION_HANDLE h;
    unsigned long gen;   /* slot generation it was opened in */
    unsigned long fork_gen; /* process fork generation it was opened in */
};

CK_RV p11b_session_acquire(struct p11b_slot *slot, struct p11b_session *out);
void p11b_session_release(struct p11b_session *sess);
/* Give back a session after `rv`: kept idle only when rv is CKR_OK (after
 * a failure an operation may still be active in it), else closed or
 * dropped, and the slot invalidated when rv says the token went away. */
void p11b_session_release_rv(struct p11b_session *sess, CK_RV rv);

/* Close the session instead of keeping it: an operation may still be
 * active in it. */
void p11b_session_discard(struct p11b_session *sess);

/* The module's function list, for calls on this session. */
CK_FUNCTION_LIST *p11b_session_fns(const struct p11b_session *sess);

#endif
