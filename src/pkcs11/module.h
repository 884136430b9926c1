/*
 * A PKCS#11 module of the process: its library (library.h: dlopen,
 * C_Initialize, fork re-initialisation) and the slots it has, and what
 * happens to them across fork and exit.
 *
 * Modules live in one process-wide registry keyed by (path, init args), so
 * two provider instances of one process share one C_Initialize. Lock order:
 * registry lock, a module's lock, its library's lock, a slot's lock. No
 * Cryptoki call is ever made while one of these locks is held.
 *
 * Within src/pkcs11/ the module is the top: it uses objects (to free a
 * slot's search cache), slots and the library; nothing below it uses the
 * module.
 */
#ifndef P11B_MODULE_H
#define P11B_MODULE_H

#include <pthread.h>
#include <stddef.h>
#include "pkcs11/library.h"
#include "pkcs11/p11.h"

struct p11b_slot;

struct p11b_module {
    struct p11b_lib lib;          /* what slots and sessions use          */
    unsigned int refs;            /* locked: registry lock                */
    struct p11b_module *next;     /* registry list                        */

    pthread_mutex_t lock;         /* the slot list                        */
    struct p11b_slot **slots;     /* locked: lock; never shrinks          */
    size_t nslots;
    unsigned long slots_gen;      /* library generation the slot list was */
                                  /* read in                              */
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

/* Load and initialise the module's library if not done yet in this
 * process (after a fork, the child initialises again here, once). errbuf
 * receives the dlopen/dlsym text when loading fails. */
CK_RV p11b_module_ensure(struct p11b_module *mod, char *errbuf, size_t errlen);
/* 1 if the module is loaded and initialised in this process (no lock). */
int p11b_module_is_ready(struct p11b_module *mod);

/* The slots with a token present, after a rescan when `rescan` is set or
 * not scanned since the module was (re)initialised. *out is a new array
 * for the caller to free(); the slot structs themselves live as long as
 * the module. */
CK_RV p11b_module_slots(struct p11b_module *mod, int rescan,
                        struct p11b_slot ***out, size_t *out_n);

/* 1 if loading the library failed for good (dlopen, symbols). */
int p11b_module_failed(struct p11b_module *mod);

/* The module's quirks (P11B_QUIRK_*). */
unsigned int p11b_module_quirks(struct p11b_module *mod);

/* The ECDH peer point form the quirks force: 1 DER, 0 raw, -1 none (no
 * quirk, or both forms asked for by instances sharing the module). */
int p11b_module_ecdh_form(struct p11b_module *mod);

#endif
