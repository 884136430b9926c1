/*
 * The one door to the token: every Cryptoki call of the project is made
 * through P11B_CALL, inside src/pkcs11/. The wrapper
 *  - counts the call (per function, for the whole process),
 *  - logs it at debug level 2 (function, slot, result, time taken),
 *  - remembers the last failed call of the thread, so that an error raised
 *    higher up can name it ("C_Login ...: C_OpenSession returned ..."),
 *  - runs the guard the provider installed around every call (it keeps a
 *    software token's own libcrypto errors out of the application's
 *    error queue: this layer knows nothing of OpenSSL).
 * Failures are injected from below, by a PKCS#11 module that wraps the
 * real one (tests/faultmod), never by faking calls here.
 *
 * It also holds the process-wide state every other file of this layer
 * depends on (fork generation, "the process is exiting"), so that module,
 * slot, session and object depend on this file and not on each other.
 */
#ifndef P11B_CALLS_H
#define P11B_CALLS_H

#include <stdint.h>
#include <stddef.h>
#include "pkcs11/p11.h"

/* The Cryptoki functions we call, for the per-function counters. */
enum p11b_fn {
    P11B_FN_C_Initialize,
    P11B_FN_C_Finalize,
    P11B_FN_C_GetInfo,
    P11B_FN_C_GetSlotList,
    P11B_FN_C_GetSlotInfo,
    P11B_FN_C_GetTokenInfo,
    P11B_FN_C_GetMechanismList,
    P11B_FN_C_GetMechanismInfo,
    P11B_FN_C_OpenSession,
    P11B_FN_C_CloseSession,
    P11B_FN_C_Login,
    P11B_FN_C_Logout,
    P11B_FN_C_FindObjectsInit,
    P11B_FN_C_FindObjects,
    P11B_FN_C_FindObjectsFinal,
    P11B_FN_C_GetAttributeValue,
    P11B_FN_C_CopyObject,
    P11B_FN_C_DestroyObject,
    P11B_FN_C_SignInit,
    P11B_FN_C_Sign,
    P11B_FN_C_DecryptInit,
    P11B_FN_C_Decrypt,
    P11B_FN_C_DeriveKey,
    P11B_FN_C_GenerateKeyPair,
    P11B_FN_COUNT_
};

/* Slot argument of P11B_CALL for calls that concern no slot. */
#define P11B_NO_SLOT ((CK_SLOT_ID)-1)

struct p11b_call {
    uint64_t t0_ns;   /* start time, taken only when level 2 logs */
    const char *file; /* where the call is made, for the log line */
    int line;
    const char *func;
};

void p11b_call_enter(struct p11b_call *c);
void p11b_call_leave(struct p11b_call *c, enum p11b_fn fn, CK_SLOT_ID slot,
                     CK_RV rv, const char *what);

/*
 * rv = fns->fn(args...), through the door. `what` (a string, or NULL) is
 * logged with the call, as in "C_SignInit(slot 1, CKM_ECDSA) -> CKR_OK";
 * it is evaluated after the call, and only when level 2 logs.
 */
#define P11B_CALL_WHAT(rv, fns, fn, slot, what, ...)                          \
    do {                                                                      \
        struct p11b_call p11b_call_ = { 0, __FILE__, __LINE__, __func__ };    \
        p11b_call_enter(&p11b_call_);                                         \
        (rv) = (fns)->fn(__VA_ARGS__);                                        \
        p11b_call_leave(&p11b_call_, P11B_FN_##fn, (slot), (rv),              \
                        p11b_call_.t0_ns != 0 ? (what) : NULL);               \
    } while (0)
#define P11B_CALL(rv, fns, fn, slot, ...)                                     \
    P11B_CALL_WHAT(rv, fns, fn, slot, NULL, __VA_ARGS__)

/* A small text for `what`, formatted into buf. */
const char *p11b_call_what(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The guard run around every call (set once by the provider). */
typedef void p11b_call_guard_fn(void);
void p11b_calls_set_guard(p11b_call_guard_fn *enter, p11b_call_guard_fn *leave);

/* How many calls of fn this process made; the name of fn. */
unsigned long p11b_calls_count(enum p11b_fn fn);
const char *p11b_fn_name(enum p11b_fn fn);
/* "C_Sign=3 C_SignInit=3 ..." (functions called at least once) into buf;
 * returns the total number of calls. */
unsigned long p11b_calls_summary(char *buf, size_t len);

/* The Cryptoki function that last failed in this thread, with its result,
 * so that an error raised higher up can name the call that failed (an
 * administrator reading "C_Login ...: CKR_SESSION_COUNT" would look for a
 * PIN problem). p11b_take_failed_call returns the name only when its rv
 * is the one being reported, and forgets it. P11B_CALL notes every failed
 * call; p11b_note_call is for our own refusals made in a call's name. */
void p11b_note_call(const char *fn, CK_RV rv);
const char *p11b_take_failed_call(CK_RV rv);

/* 1 if rv means the token or our sessions went away. */
int p11b_rv_is_token_gone(CK_RV rv);

/* The current fork generation of the process (bumped in every child). */
unsigned long p11b_fork_generation(void);
void p11b_fork_generation_bump(void);

/* 1 once the process is exiting: from then on nothing calls a module. */
int p11b_module_exiting(void);
void p11b_set_exiting(void);

#endif
