/*
 * Our reasons: each names what failed. The Cryptoki code and its name, the
 * URI attribute, slot or token go in the message text.
 */
#ifndef P11B_ERRORS_H
#define P11B_ERRORS_H

#include <openssl/core.h>
#include <openssl/e_os2.h>
#include <openssl/err.h>
#include "pkcs11/p11.h"

struct p11b_prov;

enum p11b_reason {
    P11B_R_URI_SYNTAX = 1,   /* malformed pkcs11: URI                       */
    P11B_R_URI_NO_MATCH,     /* no object matches                           */
    P11B_R_TOKEN_NOT_FOUND,  /* no token matches                            */
    P11B_R_MODULE_LOAD,      /* dlopen, C_GetFunctionList                   */
    P11B_R_MODULE_INIT,      /* C_Initialize, C_GetSlotList                 */
    P11B_R_CONFIG,           /* bad provider configuration                  */
    P11B_R_LOGIN,            /* C_Login failed otherwise                    */
    P11B_R_PIN_INCORRECT,
    P11B_R_PIN_LOCKED,
    P11B_R_PIN_FINAL_TRY,
    P11B_R_PIN_MISSING,
    P11B_R_PIN_NOT_RETRIED,
    P11B_R_TOKEN_GONE,       /* CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT   */
    P11B_R_SESSION,          /* C_OpenSession failed                        */
    P11B_R_MECH_UNSUPPORTED,
    P11B_R_KEY_USAGE,        /* CKR_KEY_FUNCTION_NOT_PERMITTED, ...         */
    P11B_R_ATTRIBUTE,        /* C_GetAttributeValue failed                  */
    P11B_R_UNSUPPORTED_KEY,  /* key type or curve we cannot use             */
    P11B_R_NO_PUBLIC_KEY,    /* no public half found for a private key      */
    P11B_R_OPERATION_FAILED, /* fallback: C_Sign/C_Decrypt/... failed       */
    P11B_R_EXPORT_DENIED,    /* pkcs11-module-allow-export = 1              */
    P11B_R_FIND,             /* C_FindObjects* failed                       */
    P11B_R_INTERNAL,         /* out of memory, OpenSSL call failed          */
    P11B_R_BAD_INPUT,        /* input size or parameters do not fit         */
    P11B_R_URI_AMBIGUOUS,    /* the URI names several keys, one was wanted  */
    P11B_R_OPENSSL_VERSION,  /* libcrypto older than the headers we had     */
    P11B_R_NO_SOFTWARE,      /* no default provider beside ours             */
    P11B_R_MAX_                /* keep last */
};

/* "reason string" for a reason code; NULL if out of range. */
const char *p11b_reason_string(int reason);
/* The table served by OSSL_FUNC_PROVIDER_GET_REASON_STRINGS. */
const OSSL_ITEM *p11b_reason_strings(void);

void p11b_raise(const struct p11b_prov *prov, int reason, const char *file,
                int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void p11b_raise_rv(const struct p11b_prov *prov, int fallback, CK_RV rv,
                   const char *file, int line, const char *func,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* A hint for what the user can check when Cryptoki call fn returned rv
 * (": can this user read the token...?"), or "". */
const char *p11b_rv_hint(const char *fn, CK_RV rv);

/* The reason users act on for a CK_RV, else fallback. */
int p11b_reason_for_rv(CK_RV rv, int fallback);

/*
 * What a token operation of the provider came to (signing, decryption,
 * derivation: the helpers around src/pkcs11/op.h). The decision travels
 * here, with the CK_RV beside it; the error queue only reports, and no
 * caller looks at it to decide whether to raise.
 *
 *   P11B_OUT_OK      done; the CK_RV is CKR_OK.
 *   P11B_OUT_TOKEN   the operation's own Cryptoki call answered the CK_RV
 *                    (never CKR_OK). Nothing is raised yet: the caller
 *                    may try another way, and otherwise raises exactly
 *                    one error from it.
 *   P11B_OUT_RAISED  it failed before or around that call (the key could
 *                    not be found again, the login, no session, a key
 *                    size the token refuses). One error is raised already;
 *                    the caller adds none. The CK_RV is not CKR_OK.
 *
 * A function returning one gives the CK_RV in an out-parameter `rv`.
 */
enum p11b_outcome {
    P11B_OUT_OK = 0,
    P11B_OUT_TOKEN,
    P11B_OUT_RAISED,
};

/*
 * A software token linked to the application's own libcrypto (SoftHSM)
 * puts its errors on the caller's queue: "bad decrypt" from C_Login with
 * a wrong PIN, "no such engine" from C_Initialize. They are not ours;
 * what went wrong is raised from the CK_RV, after the call. This installs
 * the guard that marks the queue around every Cryptoki call (the door of
 * src/pkcs11/calls.h) and pops back to the mark after it.
 */
void p11b_errors_guard_token_calls(void);

/* Run `call` with the error queue marked: for token code that runs
 * outside a Cryptoki call (a module's constructors, at dlopen). */
#define P11B_QUIET(call)                                                      \
    do {                                                                      \
        ERR_set_mark();                                                       \
        call;                                                                 \
        ERR_pop_to_mark();                                                    \
    } while (0)

#define P11B_RAISE(prov, reason, ...)                                         \
    p11b_raise((prov), (reason), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC,    \
               __VA_ARGS__)
#define P11B_RAISE_RV(prov, fallback, rv, ...)                                \
    p11b_raise_rv((prov), (fallback), (rv), OPENSSL_FILE, OPENSSL_LINE,       \
                  OPENSSL_FUNC, __VA_ARGS__)

#endif
