/*
 * Reason strings and raising errors through the core's error functions.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "provider/errors.h"
#include "provider/provider.h"

/* One line per enum value, in enum order (a unit test checks the count). */
static const OSSL_ITEM reasons[] = {
    { P11B_R_URI_SYNTAX, "malformed pkcs11 URI" },
    { P11B_R_URI_NO_MATCH, "no object matches the pkcs11 URI" },
    { P11B_R_TOKEN_NOT_FOUND, "no token matches the pkcs11 URI" },
    { P11B_R_MODULE_LOAD, "cannot load the PKCS#11 module" },
    { P11B_R_MODULE_INIT, "cannot initialize the PKCS#11 module" },
    { P11B_R_CONFIG, "bad provider configuration" },
    { P11B_R_LOGIN, "login failed" },
    { P11B_R_PIN_INCORRECT, "PIN incorrect" },
    { P11B_R_PIN_LOCKED, "PIN locked" },
    { P11B_R_PIN_FINAL_TRY, "PIN at final try, not logging in" },
    { P11B_R_PIN_MISSING, "no PIN available for login" },
    { P11B_R_PIN_NOT_RETRIED, "PIN already rejected, not retried" },
    { P11B_R_TOKEN_GONE, "token removed or not present" },
    { P11B_R_SESSION, "cannot open a session" },
    { P11B_R_MECH_UNSUPPORTED, "mechanism not supported" },
    { P11B_R_KEY_USAGE, "key usage not permitted" },
    { P11B_R_ATTRIBUTE, "cannot read object attributes" },
    { P11B_R_UNSUPPORTED_KEY, "unsupported key type" },
    { P11B_R_NO_PUBLIC_KEY, "public key not available" },
    { P11B_R_OPERATION_FAILED, "token operation failed" },
    { P11B_R_EXPORT_DENIED, "export denied by configuration" },
    { P11B_R_FIND, "object search failed" },
    { P11B_R_INTERNAL, "internal error" },
    { P11B_R_BAD_INPUT, "input does not fit the operation" },
    { P11B_R_URI_AMBIGUOUS, "the pkcs11 URI matches several keys" },
    { P11B_R_OPENSSL_VERSION, "OpenSSL older than the provider was built for" },
    { P11B_R_NO_SOFTWARE, "default provider not active" },
    { 0, NULL },
};

const OSSL_ITEM *p11b_reason_strings(void)
{
    return reasons;
}

const char *p11b_reason_string(int reason)
{
    if (reason < 1 || reason >= P11B_R_MAX_)
        return NULL;
    return reasons[reason - 1].ptr;
}

int p11b_reason_for_rv(CK_RV rv, int fallback)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
        return P11B_R_PIN_INCORRECT;
    case CKR_PIN_LOCKED:
        return P11B_R_PIN_LOCKED;
    case P11B_CKR_PIN_FINAL_TRY:
        return P11B_R_PIN_FINAL_TRY;
    case P11B_CKR_PIN_NOT_RETRIED:
        return P11B_R_PIN_NOT_RETRIED;
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
        return P11B_R_TOKEN_GONE;
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
        return P11B_R_MECH_UNSUPPORTED;
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_KEY_TYPE_INCONSISTENT:
        return P11B_R_KEY_USAGE;
    default:
        return fallback;
    }
}

static const char *rv_text(CK_RV rv)
{
    switch (rv) {
    case P11B_CKR_PIN_FINAL_TRY:
        return "token reports CKF_USER_PIN_FINAL_TRY";
    case P11B_CKR_PIN_NOT_RETRIED:
        return "the token refused this PIN before";
    default:
        return p11b_rv_name(rv);
    }
}

void p11b_core_set_error(const struct p11b_prov *prov, int reason,
                         const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    prov->core_vset_error(prov->handle, (uint32_t)reason, fmt, ap);
    va_end(ap);
}

static void raise_text(const struct p11b_prov *prov, int reason,
                       const char *file, int line, const char *func,
                       const char *text)
{
    P11B_LOG(1, "error: %s: %s", p11b_reason_string(reason), text);
    if (prov != NULL && prov->core_new_error != NULL) {
        prov->core_new_error(prov->handle);
        prov->core_set_error_debug(prov->handle, file, line, func);
        p11b_core_set_error(prov, reason, "%s", text);
        return;
    }
    ERR_new();
    ERR_set_debug(file, line, func);
    ERR_set_error(ERR_LIB_PROV, reason, "%s", text);
}

void p11b_raise(const struct p11b_prov *prov, int reason, const char *file,
                int line, const char *func, const char *fmt, ...)
{
    char text[1024]; /* ERR_MAX_DATA_SIZE: a token list fits */
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    raise_text(prov, reason, file, line, func, text);
}

const char *p11b_rv_hint(const char *fn, CK_RV rv)
{
    /* SoftHSM (and others) answer CKR_GENERAL_ERROR when they cannot read
     * the token's files: typically a server worker after it switched to
     * its unprivileged user. */
    if (fn != NULL && rv == CKR_GENERAL_ERROR &&
        (strcmp(fn, "C_GetTokenInfo") == 0 ||
         strcmp(fn, "C_GetSlotInfo") == 0))
        return ": can this user read the token (its files, its daemon)?";
    return "";
}

void p11b_raise_rv(const struct p11b_prov *prov, int fallback, CK_RV rv,
                   const char *file, int line, const char *func,
                   const char *fmt, ...)
{
    char what[384], text[512];
    const char *fn = p11b_take_failed_call(rv);
    const char *hint = p11b_rv_hint(fn, rv);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    /* Name the Cryptoki call that failed when the context does not. */
    if (fn != NULL && strncmp(what, fn, strlen(fn)) == 0 &&
        (what[strlen(fn)] == ' ' || what[strlen(fn)] == '\0'))
        fn = NULL;
    snprintf(text, sizeof(text), "%s: %s%s%s (0x%08lx)%s", what,
             fn != NULL ? fn : "", fn != NULL ? " returned " : "", rv_text(rv),
             rv, hint);
    raise_text(prov, p11b_reason_for_rv(rv, fallback), file, line, func, text);
}

static void guard_enter(void)
{
    ERR_set_mark();
}

static void guard_leave(void)
{
    ERR_pop_to_mark();
}

void p11b_errors_guard_token_calls(void)
{
    p11b_calls_set_guard(guard_enter, guard_leave);
}
