/*
 * A loaded PKCS#11 module: dlopen, C_GetInterface / C_GetFunctionList,
 * C_Initialize, the slots it has, and what happens across fork and exit.
 *
 * Modules live in one process-wide registry keyed by (path, init args), so
 * two provider instances of one process share one C_Initialize. Lock order:
 * registry lock, then a module's lock, then a slot's lock. No Cryptoki call
 * is ever made while one of these locks is held.
 */
#ifndef P11B_MODULE_H
#define P11B_MODULE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include "pkcs11/calls.h"
#include "pkcs11/p11.h"

struct p11b_slot;

/* Quirks: token behaviours a user tells us about (the words of
 * pkcs11-module-quirks map to these by name in provider/config.c). */
#define P11B_QUIRK_NO_DEINIT 0x1u     /* never call C_Finalize            */
#define P11B_QUIRK_ECDH_DER 0x4u      /* ECDH peer point DER-wrapped     */
#define P11B_QUIRK_ECDH_RAW 0x8u      /* ECDH peer point raw, never DER  */

/* What a provider instance asks of the module it uses, given when it
 * takes its reference (p11b_module_get). */
struct p11b_module_opts {
    size_t cache_sessions;        /* idle sessions kept per slot          */
    unsigned int quirks;          /* P11B_QUIRK_*                         */
};

enum p11b_module_state {
    P11B_MOD_UNLOADED = 0, /* nothing done yet, or reset after fork        */
    P11B_MOD_LOADING,      /* one thread is in dlopen / C_Initialize       */
    P11B_MOD_READY,
    P11B_MOD_FAILED,       /* dlopen or symbol lookup failed: final        */
};

struct p11b_module {
    char *path;
    char *init_args;              /* pReserved of C_Initialize, or NULL   */
    unsigned int refs;            /* locked: registry lock                */
    struct p11b_module *next;     /* registry list                        */

    pthread_mutex_t lock;
    pthread_cond_t cond;          /* signalled when LOADING ends          */
    enum p11b_module_state state; /* locked: lock                         */
    CK_RV init_rv;                /* why the last load failed             */
    char errmsg[512];             /* dlerror() text of a failed load      */
    unsigned long fork_gen;       /* process fork generation at init      */
    unsigned long generation;     /* bumped by every (re)initialisation   */
    atomic_ulong ready_tag;       /* fork_gen + 1 while READY, else 0:    */
                                  /* the lock-free "ready here?" test     */

    void *dl;
    CK_FUNCTION_LIST *fns;
    CK_INFO info;
    int owns_init;                /* we called C_Initialize successfully  */
    int kept_parent_state;        /* after fork, the library kept the     */
                                  /* parent's sessions (not fork-aware)   */
    int used_interface;           /* found through C_GetInterface         */

    struct p11b_slot **slots;     /* locked: lock; never shrinks          */
    size_t nslots;
    unsigned long slots_gen;      /* generation the slot list was read in */
    size_t cache_sessions;        /* idle sessions kept per slot: the     */
                                  /* first instance's (opts), fixed       */
    atomic_uint quirks;           /* P11B_QUIRK_*: the union of what      */
                                  /* every instance that took a reference */
                                  /* asked for (p11b_module_get)          */
};

/* Take a reference on the module for (path, init_args), creating it
 * (without loading anything) if needed. Instances sharing the module
 * share its options: cache_sessions is the first one's, quirks add up
 * (one instance's no-deinit keeps every instance from C_Finalize; both
 * ECDH point forms asked for force neither: see p11b_module_ecdh_form). */
CK_RV p11b_module_get(const char *path, const char *init_args,
                      const struct p11b_module_opts *opts,
                      struct p11b_module **out);
/* Drop a reference; the last one closes sessions, finalizes and unloads,
 * except at process exit, where the module is left to the OS. */
void p11b_module_put(struct p11b_module *mod);

/* Load and initialise the module if not done yet in this process (after a
 * fork, the child initialises again here, once). errbuf receives the
 * dlopen/dlsym text when loading fails. */
CK_RV p11b_module_ensure(struct p11b_module *mod, char *errbuf, size_t errlen);
/* 1 if the module is loaded and initialised in this process (no lock). */
int p11b_module_is_ready(struct p11b_module *mod);

/* The slots with a token present, after a rescan when `rescan` is set or
 * not scanned since the module was (re)initialised. *out is a new array
 * for the caller to free(); the slot structs themselves live as long as
 * the module. */
CK_RV p11b_module_slots(struct p11b_module *mod, int rescan,
                        struct p11b_slot ***out, size_t *out_n);

/* The module's quirks (P11B_QUIRK_*). */
unsigned int p11b_module_quirks(struct p11b_module *mod);

/* The ECDH peer point form the quirks force: 1 DER, 0 raw, -1 none (no
 * quirk, or both forms asked for by instances sharing the module). */
int p11b_module_ecdh_form(struct p11b_module *mod);

#endif
