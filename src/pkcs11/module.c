/*
 * The module registry, its slot lists, fork handling and unloading. The
 * library itself (dlopen, C_Initialize) is in library.c.
 *
 * The process-wide registry below is the one file-static mutable state of
 * the project (STYLE.md section 5): every module of the process, so that
 * the fork handlers can reach them and two provider instances share one
 * C_Initialize.
 */
#include "config.h"

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
        pthread_mutex_lock(&m->lib.lock);
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
        pthread_mutex_unlock(&m->lib.lock);
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
    size_t i;

    p11b_fork_generation_bump();
    /* Every lock is ours here. Sessions, logins and handles of the parent
     * mean nothing in the child: each slot drops them, with plain stores
     * (no Cryptoki call, no allocation); the library is initialised again
     * at first use. */
    for (m = gl.head; m != NULL; m = m->next) {
        p11b_lib_forked(&m->lib);
        for (i = 0; i < m->nslots; i++)
            p11b_slot_reset_after_fork(m->slots[i]);
    }
    fork_unlock_all();
}

static void registry_init(void)
{
    pthread_atfork(fork_prepare, fork_parent, fork_child);
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
        if (same_str(m->lib.path, path) &&
            same_str(m->lib.init_args, init_args)) {
            m->refs++;
            atomic_fetch_or(&m->lib.quirks, opts->quirks);
            pthread_mutex_unlock(&gl.lock);
            *out = m;
            return CKR_OK;
        }
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL || !p11b_lib_init(&m->lib, path, init_args, opts)) {
        pthread_mutex_unlock(&gl.lock);
        free(m);
        return CKR_HOST_MEMORY;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->refs = 1;
    m->next = gl.head;
    gl.head = m;
    pthread_mutex_unlock(&gl.lock);
    *out = m;
    return CKR_OK;
}

unsigned int p11b_module_quirks(struct p11b_module *m)
{
    return p11b_lib_quirks(&m->lib);
}

int p11b_module_ecdh_form(struct p11b_module *m)
{
    return p11b_lib_ecdh_form(&m->lib);
}

int p11b_module_failed(struct p11b_module *m)
{
    int failed;

    pthread_mutex_lock(&m->lib.lock);
    failed = m->lib.state == P11B_MOD_FAILED;
    pthread_mutex_unlock(&m->lib.lock);
    return failed;
}

int p11b_module_is_ready(struct p11b_module *m)
{
    return p11b_lib_ready_here(&m->lib);
}

CK_RV p11b_module_ensure(struct p11b_module *m, char *errbuf, size_t errlen)
{
    return p11b_lib_ensure(&m->lib, errbuf, errlen);
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
    s = p11b_slot_new(&m->lib, id);
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
        P11B_CALL(rv, m->lib.fns, C_GetSlotList, P11B_NO_SLOT, CK_TRUE, NULL,
                  &n);
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
        P11B_CALL(rv, m->lib.fns, C_GetSlotList, P11B_NO_SLOT, CK_TRUE, ids,
                  &n);
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
    if (m->nslots > 0 && !rescan &&
        m->slots_gen == p11b_lib_generation(&m->lib)) {
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
    m->slots_gen = p11b_lib_generation(&m->lib);
    if (rv == CKR_OK)
        rv = copy_slots(m, out, out_n);
    pthread_mutex_unlock(&m->lock);
    free(ids);
    return rv;
}

static void module_unload(struct p11b_module *m)
{
    size_t i;

    /* Same process, not exiting: close what we opened, finalize what we
     * initialised, unload. After fork the inherited state is not ours. */
    if (p11b_lib_ready_here(&m->lib)) {
        for (i = 0; i < m->nslots; i++)
            p11b_slot_close(m->slots[i]);
    }
    p11b_lib_unload(&m->lib);
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
    pthread_mutex_destroy(&m->lock);
    p11b_lib_clear(&m->lib);
    free(m);
}
