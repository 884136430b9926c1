/*
 * Login policy, in one place: when a token is logged in, with which PIN,
 * and what is refused without asking the token.
 *
 * - A PIN the token rejected is remembered (wiped on free) and never
 *   presented again in this process: a wrong PIN costs one C_Login.
 * - Before a PIN is asked of anyone the token info is re-read: a PIN that
 *   is locked or at its final try is refused without a C_Login.
 * - A token with a PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH) logs in
 *   with no PIN of ours.
 * - A PIN that worked is cached for the slot when its source says so (the
 *   prompt always: forked children cannot ask again), for re-login after
 *   fork or token removal.
 * - Keys with CKA_ALWAYS_AUTHENTICATE get their per-operation login.
 *
 * Where PINs come from is the caller's business: it hands down a PIN
 * supplier (the provider's knows the URI, the configuration and the
 * application's prompt). This layer returns CK_RV and a result saying
 * which source was tried and how it ended; it never raises an error.
 */
#ifndef P11B_LOGIN_H
#define P11B_LOGIN_H

#include <stddef.h>
#include "pkcs11/p11.h"

struct p11b_slot;
struct p11b_session;

/* Where a PIN comes from, in the order a login asks for them. */
enum p11b_pin_source {
    P11B_PIN_SRC_NONE = 0,
    P11B_PIN_SRC_URI_VALUE,  /* the URI's pin-value                      */
    P11B_PIN_SRC_URI_FILE,   /* the URI's pin-source                     */
    P11B_PIN_SRC_CONFIG,     /* the configured PIN                       */
    P11B_PIN_SRC_CACHED,     /* the PIN cached for the slot (ours)       */
    P11B_PIN_SRC_PAD,        /* the reader's PIN pad (ours)              */
    P11B_PIN_SRC_PROMPT,     /* the application's prompt                 */
};

/* What a supplier answers for one source and one token. */
enum p11b_pin_answer {
    P11B_PIN_GIVEN = 0, /* here it is (or, when only asked, there is one) */
    P11B_PIN_NONE,      /* this source has no PIN for this token          */
    P11B_PIN_FAILED,    /* the source could not be read: the supplier has */
                        /* said why, and the login stops                  */
};

struct p11b_pin_supplier {
    /* The PIN `src` holds for the token in `slot` (URI_VALUE, URI_FILE,
     * CONFIG, PROMPT). With pin NULL only say whether there is one,
     * without reading or asking anything. The buffer stays the
     * supplier's: valid until `wipe` or the next call. */
    enum p11b_pin_answer (*pin)(void *arg, struct p11b_slot *slot,
                                enum p11b_pin_source src,
                                const unsigned char **pin, size_t *len);
    /* Wipe and free the PIN last handed out. */
    void (*wipe)(void *arg);
    void *arg;
    int cache_uri_pin; /* keep a URI's PIN that worked for re-login */
};

/* How a login ended. */
enum p11b_login_outcome {
    P11B_LOGIN_DONE = 0,      /* logged in (or was already)             */
    P11B_LOGIN_REFUSED,       /* rv: the token's answer, or our refusal */
                              /* (locked, final try, PIN not retried)   */
    P11B_LOGIN_NO_PIN,        /* no source had a PIN for this token     */
    P11B_LOGIN_SOURCE_FAILED, /* the supplier failed on `source`        */
};

struct p11b_login_result {
    enum p11b_login_outcome outcome;
    enum p11b_pin_source source; /* the PIN tried, or the one that failed */
    CK_RV rv;
};

/* Log in (CKU_USER) unless logged in already. PINs are asked of `sup` in
 * the order of enum p11b_pin_source; the first given is the one tried (a
 * failure is not retried with another source). Then the cached PIN, then
 * the PIN pad, then the prompt. Returns res->rv. */
CK_RV p11b_login(struct p11b_slot *slot, const struct p11b_pin_supplier *sup,
                 struct p11b_login_result *res);

/* 1 if a login would not need to ask anyone: the supplier has a URI or
 * configured PIN for the token, or one is cached for the slot. */
int p11b_login_pin_at_hand(struct p11b_slot *slot,
                           const struct p11b_pin_supplier *sup);

/* 1 if the token wants a login and is not logged in. */
int p11b_login_needed(struct p11b_slot *slot);

/* The per-operation login (CKU_CONTEXT_SPECIFIC) of a key with
 * CKA_ALWAYS_AUTHENTICATE, on the session where its operation is active:
 * with the configured PIN when it goes to the token, else the cached one.
 * Returns res->rv. */
CK_RV p11b_login_context(struct p11b_session *sess,
                         const struct p11b_pin_supplier *sup,
                         struct p11b_login_result *res);

#endif
