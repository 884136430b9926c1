/*
 * Module loading, initialisation, fork and exit handling.
 *
 * The process-wide registry below is the one file-static mutable state of
 * the project (STYLE.md section 5): every module of the process, so that
 * the fork handlers can reach them and two provider instances share one
 * C_Initialize.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"

static struct {
    pthread_mutex_t lock;
    struct p11b_module *head;   /* locked: lock */
    pthread_once_t once;
    int atexit_done;            /* locked: lock */
} gl = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .once = PTHREAD_ONCE_INIT,
};

/*
 * Fork: prepare takes every lock in the documented order, so the child
 * starts with consistent structures; the child then marks everything for
 * re-initialisation at first use. No lock is held across a Cryptoki call,
 * so prepare never waits on the token.
 */
static void fork_prepare(void)
{
    struct p11b_module *m;
    size_t i;

    pthread_mutex_lock(&gl.lock);
    for (m = gl.head; m != NULL; m = m->next) {
        pthread_mutex_lock(&m->lock);
        for (i = 0; i < m->nslots; i++)
            pthread_mutex_lock(&m->slots[i]->lock);
    }
}

static void fork_unlock_all(void)
{
    struct p11b_module *m;
    size_t i;

    for (m = gl.head; m != NULL; m = m->next) {
        for (i = m->nslots; i > 0; i--)
            pthread_mutex_unlock(&m->slots[i - 1]->lock);
        pthread_mutex_unlock(&m->lock);
    }
    pthread_mutex_unlock(&gl.lock);
}

static void fork_parent(void)
{
    fork_unlock_all();
}

static void fork_child(void)
{
    struct p11b_module *m;

    p11b_fork_generation_bump();
    /* A load that another parent thread had in progress never finishes
     * here: start over at first use. */
    for (m = gl.head; m != NULL; m = m->next) {
        if (m->state == P11B_MOD_LOADING)
            m->state = P11B_MOD_UNLOADED;
    }
    fork_unlock_all();
}

static void registry_init(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/*
 * Registered right after the first dlopen of a module: atexit handlers run
 * in reverse order, so this one runs before the module's own static
 * destructors (SoftHSM's), and before OpenSSL's cleanup tears down the
 * provider. From then on nothing calls into a module.
 */
static void on_exit_handler(void)
{
    p11b_set_exiting();
}

static char *dup_or_null(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

static int same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

CK_RV p11b_module_get(const char *path, const char *init_args,
                      const struct p11b_module_opts *opts,
                      struct p11b_module **out)
{
    struct p11b_module *m;

    pthread_once(&gl.once, registry_init);
    pthread_mutex_lock(&gl.lock);
    for (m = gl.head; m != NULL; m = m->next) {
        if (same_str(m->path, path) && same_str(m->init_args, init_args)) {
            m->refs++;
            atomic_fetch_or(&m->quirks, opts->quirks);
            pthread_mutex_unlock(&gl.lock);
            *out = m;
            return CKR_OK;
        }
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        goto nomem;
    m->path = strdup(path);
    m->init_args = dup_or_null(init_args);
    if (m->path == NULL || (init_args != NULL && m->init_args == NULL))
        goto nomem;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->refs = 1;
    m->cache_sessions = opts->cache_sessions;
    atomic_init(&m->quirks, opts->quirks);
    m->next = gl.head;
    gl.head = m;
    pthread_mutex_unlock(&gl.lock);
    *out = m;
    return CKR_OK;

nomem:
    pthread_mutex_unlock(&gl.lock);
    if (m != NULL) {
        free(m->path);
        free(m->init_args);
        free(m);
    }
    return CKR_HOST_MEMORY;
}

unsigned int p11b_module_quirks(struct p11b_module *m)
{
    return atomic_load(&m->quirks);
}

int p11b_module_ecdh_form(struct p11b_module *m)
{
    unsigned int q = p11b_module_quirks(m) &
                     (P11B_QUIRK_ECDH_DER | P11B_QUIRK_ECDH_RAW);

    if (q == P11B_QUIRK_ECDH_DER)
        return 1;
    if (q == P11B_QUIRK_ECDH_RAW)
        return 0;
    return -1;
}

/* dlopen and find the function list. Called without locks held. */
static CK_RV module_dlopen(struct p11b_module *m, char *errbuf, size_t errlen)
{
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
    pthread_mutex_lock(&gl.lock);
    if (!gl.atexit_done && atexit(on_exit_handler) == 0)
        gl.atexit_done = 1;
    pthread_mutex_unlock(&gl.lock);

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

static CK_RV module_initialize(struct p11b_module *m, int after_fork)
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
static void wait_not_loading(struct p11b_module *m)
{
    while (m->state == P11B_MOD_LOADING)
        pthread_cond_wait(&m->cond, &m->lock);
}

static void reset_after_fork(struct p11b_module *m)
{
    size_t i;

    /* locked: m->lock. Sessions and handles of the parent mean nothing
     * here: drop them without Cryptoki calls. */
    for (i = 0; i < m->nslots; i++)
        p11b_slot_reset_after_fork(m->slots[i]);
    if (m->state == P11B_MOD_READY)
        m->state = P11B_MOD_UNLOADED;
    atomic_store(&m->ready_tag, 0);
}

int p11b_module_is_ready(struct p11b_module *m)
{
    return atomic_load(&m->ready_tag) == p11b_fork_generation() + 1;
}

CK_RV p11b_module_ensure(struct p11b_module *m, char *errbuf, size_t errlen)
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
        rv = module_dlopen(m, errbuf, errlen);
    if (rv == CKR_OK)
        rv = module_initialize(m, after_fork);

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

static struct p11b_slot *find_or_add_slot(struct p11b_module *m, CK_SLOT_ID id)
{
    struct p11b_slot **grown;
    struct p11b_slot *s;
    size_t i;

    /* locked: m->lock */
    for (i = 0; i < m->nslots; i++) {
        if (m->slots[i]->id == id)
            return m->slots[i];
    }
    s = p11b_slot_new(m, id);
    if (s == NULL)
        return NULL;
    grown = realloc(m->slots, (m->nslots + 1) * sizeof(*grown));
    if (grown == NULL) {
        p11b_slot_free(s);
        return NULL;
    }
    m->slots = grown;
    m->slots[m->nslots++] = s;
    return s;
}

static CK_RV get_slot_ids(struct p11b_module *m, CK_SLOT_ID **out,
                          CK_ULONG *out_n)
{
    CK_SLOT_ID *ids = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    int tries;

    for (tries = 0; tries < 4; tries++) {
        P11B_CALL(rv, m->fns, C_GetSlotList, P11B_NO_SLOT, CK_TRUE, NULL, &n);
        P11B_LOG(2, "%lu slots with a token", rv == CKR_OK ? n : 0UL);
        if (rv != CKR_OK)
            return rv;
        free(ids);
        ids = calloc(n + 1, sizeof(*ids));
        if (ids == NULL)
            return CKR_HOST_MEMORY;
        /* No token: nothing to fetch. Asking anyway fails on some modules
         * (the p11-kit client answers CKR_BUFFER_TOO_SMALL). */
        if (n == 0)
            break;
        P11B_CALL(rv, m->fns, C_GetSlotList, P11B_NO_SLOT, CK_TRUE, ids, &n);
        if (rv != CKR_BUFFER_TOO_SMALL) /* a token arrived in between */
            break;
    }
    if (rv != CKR_OK) {
        free(ids);
        return rv;
    }
    *out = ids;
    *out_n = n;
    return CKR_OK;
}

/* locked: m->lock. A copy of the slot array for the caller. */
static CK_RV copy_slots(struct p11b_module *m, struct p11b_slot ***out,
                        size_t *out_n)
{
    struct p11b_slot **copy = calloc(m->nslots + 1, sizeof(*copy));

    if (copy == NULL)
        return CKR_HOST_MEMORY;
    if (m->nslots > 0)
        memcpy(copy, m->slots, m->nslots * sizeof(*copy));
    *out = copy;
    *out_n = m->nslots;
    return CKR_OK;
}

CK_RV p11b_module_slots(struct p11b_module *m, int rescan,
                        struct p11b_slot ***out, size_t *out_n)
{
    CK_SLOT_ID *ids = NULL;
    CK_ULONG n = 0, i;
    CK_RV rv;

    pthread_mutex_lock(&m->lock);
    if (m->nslots > 0 && !rescan && m->slots_gen == m->generation) {
        rv = copy_slots(m, out, out_n);
        pthread_mutex_unlock(&m->lock);
        return rv;
    }
    pthread_mutex_unlock(&m->lock);

    rv = get_slot_ids(m, &ids, &n);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&m->lock);
    for (i = 0; i < n; i++) {
        if (find_or_add_slot(m, ids[i]) == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
    }
    /* Slot ids may change across a re-initialisation (after fork): the
     * list is read again once per module generation. */
    m->slots_gen = m->generation;
    if (rv == CKR_OK)
        rv = copy_slots(m, out, out_n);
    pthread_mutex_unlock(&m->lock);
    free(ids);
    return rv;
}

static void module_unload(struct p11b_module *m)
{
    size_t i;
    CK_RV rv;

    /* Same process, not exiting: close what we opened, finalize what we
     * initialised, unload. After fork the inherited state is not ours. */
    if (m->state == P11B_MOD_READY && m->fork_gen == p11b_fork_generation()) {
        for (i = 0; i < m->nslots; i++)
            p11b_slot_close(m->slots[i]);
        if (m->owns_init &&
            !(p11b_module_quirks(m) & P11B_QUIRK_NO_DEINIT)) {
            P11B_CALL(rv, m->fns, C_Finalize, P11B_NO_SLOT, NULL);
        }
    }
    if (m->dl != NULL)
        dlclose(m->dl);
}

void p11b_module_put(struct p11b_module *m)
{
    struct p11b_module **pp;
    size_t i;

    if (m == NULL)
        return;
    pthread_mutex_lock(&gl.lock);
    if (--m->refs > 0) {
        pthread_mutex_unlock(&gl.lock);
        return;
    }
    for (pp = &gl.head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    pthread_mutex_unlock(&gl.lock);

    /* At exit the module's own destructors may already have run: calling
     * it (or unloading it) now can crash the process. Leave it to the OS,
     * but still free our memory. */
    if (!p11b_module_exiting())
        module_unload(m);
    for (i = 0; i < m->nslots; i++) {
        p11b_objcache_free(m->slots[i]->cache);
        p11b_slot_free(m->slots[i]);
    }
    free(m->slots);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m->path);
    free(m->init_args);
    free(m);
}
