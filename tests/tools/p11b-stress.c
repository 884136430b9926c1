/*
 * p11b-stress: load keys from threads and forked children, through
 * OpenSSL's public OSSL_STORE API only, and check that every load returns
 * the same public key as the first one.
 *
 * The pytest suite runs it with OPENSSL_CONF pointing at a config that loads
 * our provider (and holds the PIN): this tool knows nothing about PKCS#11.
 * It works with any URI a store loader handles, e.g. "file:/tmp/key.pem".
 *
 *   p11b-stress --uri URI [--uri URI2 ...] [--threads N] [--iterations M]
 *               [--forks K] [--fork-after-load]
 *
 * 1. The main thread loads each URI once (exactly one key object, private or
 *    public, must come back) and records its public key as DER.
 * 2. N threads do M iterations each: open the store for a URI (round-robin
 *    by thread and iteration), load the key, compare its public key DER.
 * 3. With --forks K, K children are forked after the threads have finished,
 *    or, with --fork-after-load, right after step 1 (the parent keeps its
 *    keys and runs step 2 at the same time as the children). Each child
 *    first checks the keys it inherited, then runs step 2, then exits.
 *
 * Exit 0 with "stress ok: L loads, T threads, K forks" (totals over every
 * process), 1 on any failure (with the OpenSSL error queue on stderr), 2 on
 * a usage error. A URI's pin-value is never printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#define STRESS_MAX_THREADS 256
#define STRESS_MAX_ITERATIONS 1000000
#define STRESS_MAX_FORKS 64
#define STRESS_MAX_OBJECTS 1000 /* a store that never reaches EOF */

struct stress_uri {
    const char *uri;    /* from argv */
    char *shown;        /* the URI as printed: pin-value redacted */
    EVP_PKEY *pkey;     /* from the first load, kept to the end */
    unsigned char *der; /* its SubjectPublicKeyInfo */
    int der_len;
    int is_private;     /* loaded as OSSL_STORE_INFO_PKEY */
    EVP_PKEY *soft;     /* der decoded by the default provider alone */
};

struct stress {
    struct stress_uri *uris;
    size_t n_uris;
    unsigned long threads;
    unsigned long iterations;
    unsigned long forks;
    int fork_after_load;
    int sign;           /* --sign: each iteration also signs and verifies */
    atomic_ulong signatures;
    char who[64];       /* "parent" or "child 2 (pid 1234)" */
    atomic_ulong loads; /* successful loads in this process */
    atomic_int failed;  /* set by the first failing thread: others stop */
};

struct stress_worker {
    struct stress *st;
    unsigned long index;
    pthread_t tid;
};

/* Where a failure happened, for the report. */
struct stress_where {
    struct stress *st;
    long thread;    /* -1: the main thread */
    long iteration; /* -1: not in the workload */
    const struct stress_uri *uri;
};

/*
 * A copy of text with the value of every "pin-value=" replaced by '*', up to
 * the next '&', newline or the end. Used on URIs and on error queue lines,
 * which OpenSSL fills with the URI it could not open.
 */
static char *stress_redact(const char *text)
{
    static const char key[] = "pin-value=";
    const size_t klen = sizeof(key) - 1;
    size_t len = strlen(text);
    size_t o = 0;
    size_t i = 0;
    char *out;

    /* An empty value grows by one '*': at most once per klen bytes. */
    out = malloc(len + len / klen + 1);
    if (out == NULL)
        return NULL;
    while (i < len) {
        if (len - i >= klen && strncasecmp(text + i, key, klen) == 0) {
            memcpy(out + o, text + i, klen);
            o += klen;
            i += klen;
            out[o++] = '*';
            while (i < len && text[i] != '&' && text[i] != '\n')
                i++;
            continue;
        }
        out[o++] = text[i++];
    }
    out[o] = '\0';
    return out;
}

static int stress_print_error_line(const char *str, size_t len, void *u)
{
    char *line = stress_redact(str);

    (void)len;
    (void)u;
    fputs(line != NULL ? line : "(error line not shown: out of memory)\n",
          stderr);
    free(line);
    return 1;
}

static void stress_report(const struct stress_where *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void stress_report(const struct stress_where *w, const char *fmt, ...)
{
    va_list ap;

    /* One block per failure, even with other threads reporting. */
    flockfile(stderr);
    fprintf(stderr, "p11b-stress: %s", w->st->who);
    if (w->thread >= 0)
        fprintf(stderr, " thread %ld", w->thread);
    if (w->iteration >= 0)
        fprintf(stderr, " iteration %ld", w->iteration);
    if (w->uri != NULL)
        fprintf(stderr, " uri %s", w->uri->shown);
    fputs(": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    /* ERR_print_errors_fp(stderr), with pin-values redacted. */
    ERR_print_errors_cb(stress_print_error_line, NULL);
    fflush(stderr);
    funlockfile(stderr);
}

/* Takes the key out of a store object when it is one; 0 if not a key. */
static int stress_info_key(OSSL_STORE_INFO *info, EVP_PKEY **out)
{
    switch (OSSL_STORE_INFO_get_type(info)) {
    case OSSL_STORE_INFO_PKEY:
        *out = OSSL_STORE_INFO_get1_PKEY(info);
        return 2;
    case OSSL_STORE_INFO_PUBKEY:
        *out = OSSL_STORE_INFO_get1_PUBKEY(info);
        return 1;
    default:
        return 0;
    }
}

/* Drains the store; exactly one key object must come back. */
static int stress_load_loop(const struct stress_where *w, OSSL_STORE_CTX *ctx,
                            EVP_PKEY **out)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY *key;
    OSSL_STORE_INFO *info;
    int n_keys = 0;
    int n_objects;
    int kind, first_kind = 0;

    for (n_objects = 0; !OSSL_STORE_eof(ctx); n_objects++) {
        if (n_objects == STRESS_MAX_OBJECTS) {
            stress_report(w, "no EOF after %d objects", n_objects);
            goto err;
        }
        info = OSSL_STORE_load(ctx);
        /* OpenSSL 3.0 sets the error flag at EOF too: check EOF first. */
        if (info == NULL && OSSL_STORE_eof(ctx))
            break;
        if (info == NULL && OSSL_STORE_error(ctx)) {
            stress_report(w, "OSSL_STORE_load failed");
            goto err;
        }
        if (info == NULL)
            continue;
        key = NULL;
        kind = stress_info_key(info, &key);
        if (kind) {
            n_keys++;
            if (pkey == NULL) {
                pkey = key; /* the first one is the one we keep */
                first_kind = kind;
            } else {
                EVP_PKEY_free(key);
            }
        }
        OSSL_STORE_INFO_free(info);
    }
    if (n_keys != 1 || pkey == NULL) {
        stress_report(w, "%d key objects, expected exactly one", n_keys);
        goto err;
    }
    *out = pkey;
    if (w->iteration < 0)
        ((struct stress_uri *)w->uri)->is_private = first_kind == 2;
    return 1;

err:
    EVP_PKEY_free(pkey);
    return 0;
}

static int stress_load_key(const struct stress_where *w, EVP_PKEY **out)
{
    OSSL_STORE_CTX *ctx;
    EVP_PKEY *pkey = NULL;
    int ok;

    /* Errors left over from earlier successes would muddle a report. */
    ERR_clear_error();
    ctx = OSSL_STORE_open_ex(w->uri->uri, NULL, NULL, NULL, NULL, NULL, NULL,
                             NULL);
    if (ctx == NULL) {
        stress_report(w, "OSSL_STORE_open_ex failed");
        return 0;
    }
    ok = stress_load_loop(w, ctx, &pkey);
    if (OSSL_STORE_close(ctx) != 1 && ok) {
        stress_report(w, "OSSL_STORE_close failed");
        ok = 0;
    }
    if (!ok) {
        EVP_PKEY_free(pkey);
        return 0;
    }
    atomic_fetch_add(&w->st->loads, 1);
    *out = pkey;
    return 1;
}

/* The key's public half matches what the first load recorded. */
static int stress_check_key(const struct stress_where *w, EVP_PKEY *pkey)
{
    unsigned char *der = NULL;
    int len;
    int ok;

    len = i2d_PUBKEY(pkey, &der);
    if (len <= 0) {
        stress_report(w, "i2d_PUBKEY failed");
        return 0;
    }
    ok = len == w->uri->der_len && memcmp(der, w->uri->der, (size_t)len) == 0;
    if (!ok)
        stress_report(w,
                      "public key differs from the first load (%d bytes, "
                      "expected %d)",
                      len, w->uri->der_len);
    OPENSSL_free(der);
    return ok;
}

/* --sign: a signature with the loaded (token) key over a fresh message,
 * checked with the default provider's copy of the public key. */
static int stress_sign_check(const struct stress_where *w, EVP_PKEY *pkey)
{
    const char *md = EVP_PKEY_is_a(pkey, "ED25519") ||
                             EVP_PKEY_is_a(pkey, "ED448")
                         ? NULL
                         : "SHA256";
    unsigned char msg[64], sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok;

    if (!w->uri->is_private)
        return 1;
    ok = c != NULL && RAND_bytes(msg, sizeof(msg)) == 1 &&
         EVP_DigestSignInit_ex(c, NULL, md, NULL, NULL, pkey, NULL) == 1 &&
         EVP_DigestSign(c, sig, &siglen, msg, sizeof(msg)) == 1;
    if (!ok) {
        stress_report(w, "signing failed");
        EVP_MD_CTX_free(c);
        return 0;
    }
    EVP_MD_CTX_free(c);
    c = EVP_MD_CTX_new();
    ok = c != NULL &&
         EVP_DigestVerifyInit_ex(c, NULL, md, NULL, "provider=default",
                                 w->uri->soft, NULL) == 1 &&
         EVP_DigestVerify(c, sig, siglen, msg, sizeof(msg)) == 1;
    EVP_MD_CTX_free(c);
    if (!ok)
        stress_report(w, "the signature does not verify in software");
    else
        atomic_fetch_add(&w->st->signatures, 1);
    return ok;
}

static void *stress_worker_main(void *arg)
{
    struct stress_worker *wk = arg;
    struct stress *st = wk->st;
    struct stress_where w = {st, (long)wk->index, 0, NULL};
    EVP_PKEY *pkey;
    unsigned long i;
    int ok;

    for (i = 0; i < st->iterations && !atomic_load(&st->failed); i++) {
        w.iteration = (long)i;
        w.uri = &st->uris[(wk->index + i) % st->n_uris];
        pkey = NULL;
        ok = stress_load_key(&w, &pkey) && stress_check_key(&w, pkey) &&
             (!st->sign || stress_sign_check(&w, pkey));
        EVP_PKEY_free(pkey);
        if (!ok) {
            atomic_store(&st->failed, 1);
            break;
        }
    }
    /* This thread's error queue and per-thread state, for leak checkers. */
    OPENSSL_thread_stop();
    return NULL;
}

/* N threads x M iterations; 1 when every one of them succeeded. */
static int stress_run_workload(struct stress *st)
{
    struct stress_worker *workers;
    struct stress_where w = {st, -1, -1, NULL};
    unsigned long started;
    int err;

    workers = calloc(st->threads, sizeof(*workers));
    if (workers == NULL) {
        stress_report(&w, "out of memory");
        return 0;
    }
    for (started = 0; started < st->threads; started++) {
        workers[started].st = st;
        workers[started].index = started;
        err = pthread_create(&workers[started].tid, NULL, stress_worker_main,
                             &workers[started]);
        if (err != 0) {
            stress_report(&w, "pthread_create: %s", strerror(err));
            atomic_store(&st->failed, 1);
            break;
        }
    }
    while (started > 0)
        pthread_join(workers[--started].tid, NULL);
    free(workers);
    return !atomic_load(&st->failed);
}

/* The first load of every URI, in the main thread. */
static int stress_first_loads(struct stress *st)
{
    struct stress_where w = {st, -1, -1, NULL};
    struct stress_uri *u;
    size_t i;

    for (i = 0; i < st->n_uris; i++) {
        u = &st->uris[i];
        w.uri = u;
        if (!stress_load_key(&w, &u->pkey))
            return 0;
        u->der_len = i2d_PUBKEY(u->pkey, &u->der);
        if (u->der_len <= 0) {
            u->der = NULL;
            stress_report(&w, "i2d_PUBKEY failed");
            return 0;
        }
        {
            const unsigned char *p = u->der;

            u->soft = d2i_PUBKEY_ex(NULL, &p, u->der_len, NULL,
                                    "provider=default");
        }
        if (u->soft == NULL) {
            stress_report(&w, "the default provider cannot read the key");
            return 0;
        }
    }
    return 1;
}

/* In a child: the keys loaded before fork still give their public key. */
static int stress_check_inherited(struct stress *st)
{
    struct stress_where w = {st, -1, -1, NULL};
    size_t i;

    for (i = 0; i < st->n_uris; i++) {
        w.uri = &st->uris[i];
        if (!stress_check_key(&w, st->uris[i].pkey))
            return 0;
    }
    return 1;
}

static void stress_free(struct stress *st)
{
    size_t i;

    for (i = 0; i < st->n_uris; i++) {
        EVP_PKEY_free(st->uris[i].pkey);
        EVP_PKEY_free(st->uris[i].soft);
        OPENSSL_free(st->uris[i].der);
        free(st->uris[i].shown);
    }
    free(st->uris);
}

/* Runs in a forked child; never returns. */
static void stress_child(struct stress *st, unsigned long n)
{
    int ok;

    snprintf(st->who, sizeof(st->who), "child %lu (pid %ld)", n,
             (long)getpid());
    atomic_store(&st->failed, 0);
    ok = stress_check_inherited(st) && stress_run_workload(st);
    stress_free(st);
    /* exit(), not _exit(): atexit handlers and leak checkers run as in any
     * process. Both streams were flushed before fork. */
    exit(ok ? 0 : 1);
}

/* Forks K children; their pids go to pids[]. Returns how many started. */
static unsigned long stress_fork_children(struct stress *st, pid_t *pids)
{
    struct stress_where w = {st, -1, -1, NULL};
    unsigned long n;
    pid_t pid;

    for (n = 0; n < st->forks; n++) {
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0) {
            stress_report(&w, "fork: %s", strerror(errno));
            break;
        }
        if (pid == 0) {
            free(pids);
            stress_child(st, n);
        }
        pids[n] = pid;
    }
    return n;
}

/* Waits for every started child; 1 when all of them exited 0. */
static int stress_wait_children(struct stress *st, const pid_t *pids,
                                unsigned long started)
{
    struct stress_where w = {st, -1, -1, NULL};
    unsigned long n;
    int status;
    int ok = started == st->forks;

    for (n = 0; n < started; n++) {
        while (waitpid(pids[n], &status, 0) < 0) {
            if (errno != EINTR) {
                stress_report(&w, "waitpid: %s", strerror(errno));
                return 0;
            }
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        ok = 0;
        if (WIFSIGNALED(status))
            stress_report(&w, "child %lu (pid %ld) killed by signal %d", n,
                          (long)pids[n], WTERMSIG(status));
        else
            stress_report(&w, "child %lu (pid %ld) exited with status %d", n,
                          (long)pids[n], WEXITSTATUS(status));
    }
    return ok;
}

/* Everything after argument parsing; 1 on success. */
static int stress_run(struct stress *st)
{
    pid_t *pids = NULL;
    unsigned long started = 0;
    int ok;

    if (!stress_first_loads(st))
        return 0;
    if (st->forks > 0) {
        pids = calloc(st->forks, sizeof(*pids));
        if (pids == NULL) {
            fputs("p11b-stress: out of memory\n", stderr);
            return 0;
        }
    }
    if (st->fork_after_load) {
        started = stress_fork_children(st, pids);
        ok = started == st->forks;
        ok = stress_run_workload(st) && ok;
    } else {
        ok = stress_run_workload(st);
        if (ok)
            started = stress_fork_children(st, pids);
    }
    ok = stress_wait_children(st, pids, started) && ok;
    free(pids);
    return ok;
}

static void stress_usage(FILE *f)
{
    fputs("usage: p11b-stress --uri URI [--uri URI ...] [--threads N]\n"
          "                   [--iterations M] [--forks K] "
          "[--fork-after-load] [--sign]\n"
          "Loads every URI through OSSL_STORE from N threads x M iterations,\n"
          "in this process and in K forked children, and checks each key.\n"
          "Exit 0 on success, 1 on a failed load or check, 2 on bad usage.\n",
          f);
}

static int stress_parse_ulong(const char *opt, const char *s, unsigned long min,
                              unsigned long max, unsigned long *out)
{
    char *end = NULL;
    unsigned long v = 0;

    if (*s >= '0' && *s <= '9') {
        errno = 0;
        v = strtoul(s, &end, 10);
    }
    if (end == NULL || errno != 0 || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "p11b-stress: %s wants a number from %lu to %lu\n", opt,
                min, max);
        return 0;
    }
    *out = v;
    return 1;
}

static const struct option stress_options[] = {
    {"uri", required_argument, NULL, 'u'},
    {"threads", required_argument, NULL, 't'},
    {"iterations", required_argument, NULL, 'i'},
    {"forks", required_argument, NULL, 'f'},
    {"fork-after-load", no_argument, NULL, 'a'},
    {"sign", no_argument, NULL, 's'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* 1 to run, 0 for a usage error, -1 when --help was asked. */
static int stress_parse_args(int argc, char **argv, struct stress *st)
{
    int c;
    int ok = 1;

    while ((c = getopt_long(argc, argv, "", stress_options, NULL)) != -1) {
        switch (c) {
        case 'u':
            st->uris[st->n_uris].uri = optarg;
            st->uris[st->n_uris].shown = stress_redact(optarg);
            if (st->uris[st->n_uris++].shown == NULL)
                ok = 0;
            break;
        case 't':
            ok = stress_parse_ulong("--threads", optarg, 1, STRESS_MAX_THREADS,
                                    &st->threads) &&
                 ok;
            break;
        case 'i':
            ok = stress_parse_ulong("--iterations", optarg, 0,
                                    STRESS_MAX_ITERATIONS, &st->iterations) &&
                 ok;
            break;
        case 'f':
            ok = stress_parse_ulong("--forks", optarg, 0, STRESS_MAX_FORKS,
                                    &st->forks) &&
                 ok;
            break;
        case 'a':
            st->fork_after_load = 1;
            break;
        case 's':
            st->sign = 1;
            break;
        case 'h':
            return -1;
        default:
            ok = 0;
            break;
        }
    }
    return ok && optind == argc && st->n_uris > 0;
}

int main(int argc, char **argv)
{
    struct stress st;
    unsigned long loads;
    unsigned long threads;
    int parsed;
    int ok;

    memset(&st, 0, sizeof(st));
    st.threads = 4;
    st.iterations = 10;
    atomic_init(&st.loads, 0);
    atomic_init(&st.failed, 0);
    atomic_init(&st.signatures, 0);
    snprintf(st.who, sizeof(st.who), "parent");

    /* At most one URI per argument. */
    st.uris = calloc((size_t)argc, sizeof(*st.uris));
    if (st.uris == NULL) {
        fputs("p11b-stress: out of memory\n", stderr);
        return 1;
    }
    parsed = stress_parse_args(argc, argv, &st);
    if (parsed <= 0) {
        stress_usage(parsed < 0 ? stdout : stderr);
        stress_free(&st);
        return parsed < 0 ? 0 : 2;
    }

    /* The config (OPENSSL_CONF) loads the provider and holds the PIN. */
    ok = OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) == 1;
    if (!ok)
        fputs("p11b-stress: cannot load the OpenSSL config\n", stderr);
    /* 3.0 goes on after most config errors (a provider that did not load,
     * say): show them now, or the load errors make no sense. */
    if (ERR_peek_error() != 0) {
        if (ok)
            fputs("p11b-stress: errors while loading the OpenSSL config:\n",
                  stderr);
        ERR_print_errors_cb(stress_print_error_line, NULL);
    }
    ok = ok && stress_run(&st);
    if (ok) {
        /* Children that exited 0 did all their loads. */
        loads = atomic_load(&st.loads) + st.forks * st.threads * st.iterations;
        threads = st.threads * (st.forks + 1);
        printf("stress ok: %lu loads, %lu threads, %lu forks\n", loads, threads,
               st.forks);
        if (st.sign)
            printf("signatures verified in this process: %lu\n",
                   atomic_load(&st.signatures));
    }
    stress_free(&st);
    return ok ? 0 : 1;
}
