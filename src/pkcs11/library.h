/*
 * The PKCS#11 library of a module: dlopen, C_GetInterface /
 * C_GetFunctionList, C_Initialize once per process (again in a forked
 * child, once), C_Finalize and dlclose. It knows nothing of slots: the
 * module above it (module.c) keeps the slot list, and slots and sessions
 * below the module use the library through this file alone.
 *
 * Lock order: registry lock, module lock, library lock, slot lock. No
 * Cryptoki call is made while one of them is held.
 */
#ifndef P11B_LIBRARY_H
#define P11B_LIBRARY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include "pkcs11/calls.h"
#include "pkcs11/p11.h"

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

struct p11b_lib {
    char *path;
    char *init_args;              /* pReserved of C_Initialize, or NULL   */

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
    CK_FUNCTION_LIST *fns;        /* set once, at the first load          */
    CK_INFO info;
    int owns_init;                /* we called C_Initialize successfully  */
    int kept_parent_state;        /* after fork, the library kept the     */
                                  /* parent's sessions (not fork-aware)   */
    int used_interface;           /* found through C_GetInterface         */

    /* Held around the slot and token info calls of any of its slots
     * (slot.c): SoftHSM's C_GetTokenInfo calls gmtime(), which is not
     * thread-safe, so two slots refreshed at once race in the library.
     * Taken after nothing else; started afresh in a forked child. */
    pthread_mutex_t info_lock;
    size_t cache_sessions;        /* idle sessions kept per slot: the     */
                                  /* first instance's (opts), fixed       */
    atomic_uint quirks;           /* P11B_QUIRK_*: the union of what      */
                                  /* every instance that took a reference */
                                  /* asked for (p11b_module_get)          */
};

/* Set up (nothing loaded); 0 when out of memory. */
int p11b_lib_init(struct p11b_lib *lib, const char *path,
                  const char *init_args, const struct p11b_module_opts *opts);
/* Frees our memory only (p11b_lib_unload first, unless exiting). */
void p11b_lib_clear(struct p11b_lib *lib);

/* Load and initialise the library if not done yet in this process (after
 * a fork, the child initialises again here, once; other threads wait).
 * errbuf receives the dlopen/dlsym text when loading fails. */
CK_RV p11b_lib_ensure(struct p11b_lib *lib, char *errbuf, size_t errlen);

/* 1 if the library was initialised by this very process (not inherited
 * across fork): then its sessions are ours to close. */
int p11b_lib_ready_here(struct p11b_lib *lib);

/* The generation of the current initialisation. */
unsigned long p11b_lib_generation(struct p11b_lib *lib);

/* Fork child handler, with every lock held: a load another parent thread
 * had in progress never finishes here. */
void p11b_lib_forked(struct p11b_lib *lib);

/* C_Finalize (when we initialised, and no quirk forbids it) and dlclose.
 * Not at process exit. */
void p11b_lib_unload(struct p11b_lib *lib);

/* The quirks (P11B_QUIRK_*), and the ECDH peer point form they force: 1
 * DER, 0 raw, -1 none (no quirk, or both forms asked for by instances
 * sharing the module). */
unsigned int p11b_lib_quirks(struct p11b_lib *lib);
int p11b_lib_ecdh_form(struct p11b_lib *lib);

#endif
