/*
 * Loading and initialising a PKCS#11 library (see library.h).
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/calls.h"
#include "pkcs11/library.h"
#include "pkcs11/log.h"
#include "pkcs11/names.h"

/*
 * Registered right after the first dlopen of a library: atexit handlers
 * run in reverse order, so this one runs before the library's own static
 * destructors (SoftHSM's), and before OpenSSL's cleanup tears down the
 * provider. From then on nothing calls into a library.
 */
static void on_exit_handler(void)
{
    p11b_set_exiting();
}

static void register_exit_handler(void)
{
    if (atexit(on_exit_handler) != 0)
        P11B_LOG(1, "atexit failed: a library may be called at exit");
}

static char *dup_or_null(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

int p11b_lib_init(struct p11b_lib *lib, const char *path,
                  const char *init_args, const struct p11b_module_opts *opts)
{
    memset(lib, 0, sizeof(*lib));
    lib->path = strdup(path);
    lib->init_args = dup_or_null(init_args);
    if (lib->path == NULL || (init_args != NULL && lib->init_args == NULL)) {
        free(lib->path);
        free(lib->init_args);
        return 0;
    }
    pthread_mutex_init(&lib->lock, NULL);
    pthread_mutex_init(&lib->info_lock, NULL);
    pthread_cond_init(&lib->cond, NULL);
    lib->cache_sessions = opts->cache_sessions;
    atomic_init(&lib->quirks, opts->quirks);
    atomic_init(&lib->ready_tag, 0);
    return 1;
}

void p11b_lib_clear(struct p11b_lib *lib)
{
    pthread_cond_destroy(&lib->cond);
    pthread_mutex_destroy(&lib->lock);
    pthread_mutex_destroy(&lib->info_lock);
    free(lib->path);
    free(lib->init_args);
}

unsigned int p11b_lib_quirks(struct p11b_lib *lib)
{
    return atomic_load(&lib->quirks);
}

int p11b_lib_ecdh_form(struct p11b_lib *lib)
{
    unsigned int q = p11b_lib_quirks(lib) &
                     (P11B_QUIRK_ECDH_DER | P11B_QUIRK_ECDH_RAW);

    if (q == P11B_QUIRK_ECDH_DER)
        return 1;
    if (q == P11B_QUIRK_ECDH_RAW)
        return 0;
    return -1;
}

/* dlopen and find the function list. Called without locks held. */
static CK_RV lib_dlopen(struct p11b_lib *m, char *errbuf, size_t errlen)
{
    static pthread_once_t exit_handler_once = PTHREAD_ONCE_INIT;
    p11b_get_interface_fn get_iface;
    CK_C_GetFunctionList get_list;
    struct p11b_ck_interface *iface = NULL;
    CK_FUNCTION_LIST *fns = NULL;
    CK_RV rv;
    void *dl;

    dl = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        const char *e = dlerror();

        snprintf(errbuf, errlen, "dlopen(%s): %s", m->path,
                 e != NULL ? e : "unknown error");
        return CKR_GENERAL_ERROR;
    }
    pthread_once(&exit_handler_once, register_exit_handler);

    get_iface = (p11b_get_interface_fn)dlsym(dl, "C_GetInterface");
    if (get_iface != NULL) {
        rv = get_iface((CK_UTF8CHAR *)"PKCS 11", NULL, &iface, 0);
        P11B_LOG(2, "%s: C_GetInterface -> %s", m->path, p11b_rv_name(rv));
        if (rv == CKR_OK && iface != NULL && iface->pFunctionList != NULL) {
            fns = iface->pFunctionList;
            m->used_interface = 1;
        }
    }
    if (fns == NULL) {
        get_list = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
        if (get_list == NULL) {
            snprintf(errbuf, errlen, "%s: no C_GetInterface or "
                     "C_GetFunctionList symbol", m->path);
            dlclose(dl);
            return CKR_GENERAL_ERROR;
        }
        rv = get_list(&fns);
        P11B_LOG(2, "%s: C_GetFunctionList -> %s", m->path, p11b_rv_name(rv));
        if (rv != CKR_OK || fns == NULL) {
            snprintf(errbuf, errlen, "%s: C_GetFunctionList: %s", m->path,
                     p11b_rv_name(rv));
            dlclose(dl);
            return rv != CKR_OK ? rv : CKR_GENERAL_ERROR;
        }
    }
    m->dl = dl;
    m->fns = fns;
    return CKR_OK;
}

static CK_RV lib_initialize(struct p11b_lib *m, int after_fork)
{
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    args.pReserved = m->init_args;
    P11B_CALL_WHAT(rv, m->fns, C_Initialize, P11B_NO_SLOT,
                   after_fork ? "after fork" : NULL, &args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED && after_fork) {
        /* A library that is not fork-aware (SoftHSM) kept the parent's
         * state in the child: that copy is what it supports using.
         * Finalising and re-reading the token here races the sibling
         * children doing the same. Our own view of its sessions was
         * dropped; a login it still holds is taken as is. The parent's
         * sessions still count against the token's limit here: on a
         * token with a limit, this process does without key copies. */
        m->kept_parent_state = 1;
        P11B_CALL(rv, m->fns, C_GetInfo, P11B_NO_SLOT, &m->info);
        return rv;
    }
    if (rv == CKR_OK) {
        m->owns_init = 1;
    } else if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        /* Someone else in the process owns initialisation: use the module,
         * never finalize it. */
        m->owns_init = 0;
        rv = CKR_OK;
    }
    if (rv != CKR_OK)
        return rv;
    P11B_CALL(rv, m->fns, C_GetInfo, P11B_NO_SLOT, &m->info);
    return rv;
}

/* Wait while another thread loads; returns with m->lock held. */
static void wait_not_loading(struct p11b_lib *m)
{
    while (m->state == P11B_MOD_LOADING)
        pthread_cond_wait(&m->cond, &m->lock);
}

static void reset_after_fork(struct p11b_lib *m)
{
    /* locked: m->lock. Initialised in the parent: again here (the slots
     * dropped what they had of the parent's in the fork handler). */
    if (m->state == P11B_MOD_READY)
        m->state = P11B_MOD_UNLOADED;
    atomic_store(&m->ready_tag, 0);
}

CK_RV p11b_lib_ensure(struct p11b_lib *m, char *errbuf, size_t errlen)
{
    unsigned long fg = p11b_fork_generation();
    int after_fork;
    CK_RV rv = CKR_OK;

    /* The hot path: ready in this process, no lock. */
    if (atomic_load(&m->ready_tag) == fg + 1)
        return CKR_OK;
    pthread_mutex_lock(&m->lock);
    wait_not_loading(m);
    if (m->state != P11B_MOD_UNLOADED && m->fork_gen != fg)
        reset_after_fork(m);
    if (m->state == P11B_MOD_READY) {
        pthread_mutex_unlock(&m->lock);
        return CKR_OK;
    }
    if (m->state == P11B_MOD_FAILED) {
        snprintf(errbuf, errlen, "%s", m->errmsg);
        rv = m->init_rv;
        pthread_mutex_unlock(&m->lock);
        return rv;
    }
    after_fork = m->fns != NULL;
    m->state = P11B_MOD_LOADING;
    pthread_mutex_unlock(&m->lock);

    errbuf[0] = '\0';
    if (m->fns == NULL)
        rv = lib_dlopen(m, errbuf, errlen);
    if (rv == CKR_OK)
        rv = lib_initialize(m, after_fork);

    pthread_mutex_lock(&m->lock);
    if (m->fns == NULL) {
        m->state = P11B_MOD_FAILED;
        m->init_rv = rv;
        snprintf(m->errmsg, sizeof(m->errmsg), "%s", errbuf);
    } else if (rv != CKR_OK) {
        m->state = P11B_MOD_UNLOADED; /* C_Initialize may work next time */
        snprintf(errbuf, errlen, "C_Initialize(%s)", m->path);
    } else {
        m->state = P11B_MOD_READY;
        m->fork_gen = fg;
        m->generation++;
        atomic_store(&m->ready_tag, fg + 1);
    }
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    return rv;
}

int p11b_lib_ready_here(struct p11b_lib *m)
{
    int here;

    pthread_mutex_lock(&m->lock);
    here = m->state == P11B_MOD_READY && m->fork_gen == p11b_fork_generation();
    pthread_mutex_unlock(&m->lock);
    return here;
}

unsigned long p11b_lib_generation(struct p11b_lib *m)
{
    unsigned long g;

    pthread_mutex_lock(&m->lock);
    g = m->generation;
    pthread_mutex_unlock(&m->lock);
    return g;
}

void p11b_lib_forked(struct p11b_lib *m)
{
    /* locked: m->lock, by the fork handlers */
    if (m->state == P11B_MOD_LOADING)
        m->state = P11B_MOD_UNLOADED;
    /* Not taken by the handlers (held across Cryptoki calls): a parent
     * thread may have held it; the child has one thread now. */
    pthread_mutex_init(&m->info_lock, NULL);
}

void p11b_lib_unload(struct p11b_lib *m)
{
    CK_RV rv;

    /* After fork the inherited state is not ours to finalize. */
    if (p11b_lib_ready_here(m) && m->owns_init &&
        !(p11b_lib_quirks(m) & P11B_QUIRK_NO_DEINIT))
        P11B_CALL(rv, m->fns, C_Finalize, P11B_NO_SLOT, NULL);
    if (m->dl != NULL)
        dlclose(m->dl);
}
