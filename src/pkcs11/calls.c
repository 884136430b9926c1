/*
 * The one door to the token, and the process-wide state (see calls.h).
 */
#include "config.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/names.h"

static const char *const fn_names[P11B_FN_COUNT_] = {
    [P11B_FN_C_Initialize] = "C_Initialize",
    [P11B_FN_C_Finalize] = "C_Finalize",
    [P11B_FN_C_GetInfo] = "C_GetInfo",
    [P11B_FN_C_GetSlotList] = "C_GetSlotList",
    [P11B_FN_C_GetSlotInfo] = "C_GetSlotInfo",
    [P11B_FN_C_GetTokenInfo] = "C_GetTokenInfo",
    [P11B_FN_C_GetMechanismList] = "C_GetMechanismList",
    [P11B_FN_C_GetMechanismInfo] = "C_GetMechanismInfo",
    [P11B_FN_C_OpenSession] = "C_OpenSession",
    [P11B_FN_C_CloseSession] = "C_CloseSession",
    [P11B_FN_C_Login] = "C_Login",
    [P11B_FN_C_Logout] = "C_Logout",
    [P11B_FN_C_FindObjectsInit] = "C_FindObjectsInit",
    [P11B_FN_C_FindObjects] = "C_FindObjects",
    [P11B_FN_C_FindObjectsFinal] = "C_FindObjectsFinal",
    [P11B_FN_C_GetAttributeValue] = "C_GetAttributeValue",
    [P11B_FN_C_CopyObject] = "C_CopyObject",
    [P11B_FN_C_DestroyObject] = "C_DestroyObject",
    [P11B_FN_C_SignInit] = "C_SignInit",
    [P11B_FN_C_Sign] = "C_Sign",
    [P11B_FN_C_DecryptInit] = "C_DecryptInit",
    [P11B_FN_C_Decrypt] = "C_Decrypt",
    [P11B_FN_C_DeriveKey] = "C_DeriveKey",
    [P11B_FN_C_GenerateKeyPair] = "C_GenerateKeyPair",
};

static struct {
    atomic_ulong counts[P11B_FN_COUNT_];
    p11b_call_guard_fn *_Atomic enter;
    p11b_call_guard_fn *_Atomic leave;
    atomic_ulong fork_gen;
    atomic_int exiting;
} calls;

static __thread const char *failed_fn;
static __thread CK_RV failed_rv;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void p11b_call_enter(struct p11b_call *c)
{
    p11b_call_guard_fn *enter = atomic_load(&calls.enter);

    if (enter != NULL)
        enter();
    c->t0_ns = p11b_log_enabled(2) ? now_ns() : 0;
}

void p11b_call_leave(struct p11b_call *c, enum p11b_fn fn, CK_SLOT_ID slot,
                     CK_RV rv, const char *what)
{
    p11b_call_guard_fn *leave = atomic_load(&calls.leave);
    char where[160] = "";
    int w = 0;

    if (leave != NULL)
        leave();
    atomic_fetch_add_explicit(&calls.counts[fn], 1, memory_order_relaxed);
    if (rv != CKR_OK) {
        failed_fn = fn_names[fn];
        failed_rv = rv;
    }
    if (c->t0_ns == 0)
        return;
    if (slot != P11B_NO_SLOT)
        w = snprintf(where, sizeof(where), "slot %lu", slot);
    if (what != NULL && w >= 0 && (size_t)w < sizeof(where))
        snprintf(where + w, sizeof(where) - (size_t)w, "%s%s",
                 w > 0 ? ", " : "", what);
    p11b_log(2, c->file, c->line, c->func, "%s(%s) -> %s, %llu us",
             fn_names[fn], where, p11b_rv_name(rv),
             (unsigned long long)((now_ns() - c->t0_ns) / 1000u));
}

const char *p11b_call_what(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return buf;
}

void p11b_calls_set_guard(p11b_call_guard_fn *enter, p11b_call_guard_fn *leave)
{
    atomic_store(&calls.enter, enter);
    atomic_store(&calls.leave, leave);
}

unsigned long p11b_calls_count(enum p11b_fn fn)
{
    return atomic_load(&calls.counts[fn]);
}

const char *p11b_fn_name(enum p11b_fn fn)
{
    return fn < P11B_FN_COUNT_ ? fn_names[fn] : "?";
}

unsigned long p11b_calls_summary(char *buf, size_t len)
{
    unsigned long total = 0, n;
    size_t used = 0;
    int i, w;

    if (len > 0)
        buf[0] = '\0';
    for (i = 0; i < P11B_FN_COUNT_; i++) {
        n = p11b_calls_count((enum p11b_fn)i);
        if (n == 0)
            continue;
        total += n;
        if (used >= len)
            continue;
        w = snprintf(buf + used, len - used, "%s%s=%lu", used > 0 ? " " : "",
                     fn_names[i], n);
        used += w > 0 ? (size_t)w : 0;
    }
    return total;
}

void p11b_note_call(const char *fn, CK_RV rv)
{
    if (rv == CKR_OK)
        return;
    failed_fn = fn;
    failed_rv = rv;
}

const char *p11b_take_failed_call(CK_RV rv)
{
    const char *fn = failed_rv == rv ? failed_fn : NULL;

    failed_fn = NULL;
    failed_rv = CKR_OK;
    return fn;
}

int p11b_rv_is_token_gone(CK_RV rv)
{
    switch (rv) {
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return 1;
    default:
        return 0;
    }
}

unsigned long p11b_fork_generation(void)
{
    return atomic_load(&calls.fork_gen);
}

void p11b_fork_generation_bump(void)
{
    atomic_fetch_add(&calls.fork_gen, 1);
}

int p11b_module_exiting(void)
{
    return atomic_load(&calls.exiting);
}

void p11b_set_exiting(void)
{
    atomic_store(&calls.exiting, 1);
}
