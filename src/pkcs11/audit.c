/*
 * The audit trail of key use (see audit.h; the line is documented in
 * docs/SECURITY.md, "The audit trail").
 *
 * A line:
 *   {"time":"2026-05-01T10:00:00.123Z","pid":4242,"uid":1000,
 *    "prog":"openssl","event":"sign","uri":"pkcs11:model=...;type=private",
 *    "mech":"CKM_ECDSA","result":"ok"}
 * (on one line). Login events carry the token's URI and no "mech".
 *
 * Cost: the trail is meant to stay on, so an event costs what it must and
 * nothing more: the object's URI is formatted and escaped once and kept
 * with the object; the program name once per process; the pid once per
 * process (a fork handler forgets it); the time comes from the vDSO; the
 * line is assembled by hand into a stack buffer. What remains is getuid()
 * (a server changes its uid after it has forked and loaded its keys), a
 * fstat() that makes sure the descriptor is still our file (an
 * application that closed it may have reused the number for a socket),
 * and the write() itself. Lines are not buffered across events: a crash,
 * an _exit() in a forked child or a SIGKILL would lose them, and a fork
 * would copy them.
 *
 * Process-wide state, one per process by nature (like the debug log's):
 * `gl_audit`. `fd` is the only field read on the event path without the
 * lock; everything it depends on is written before it is stored
 * (release), and changes again only when the last provider instance goes.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* program_invocation_short_name */
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pkcs11/audit.h"
#include "pkcs11/log.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/slot.h"
#include "pkcs11/uri.h"

#define AUDIT_SYSLOG_PATH "/dev/log"
#define AUDIT_SYSLOG_TAG "p11bridge-audit"
/* facility authpriv (10): journald and rsyslog keep it from other users */
#define AUDIT_PRI_OK ((10 << 3) | 6)     /* info    */
#define AUDIT_PRI_FAILED ((10 << 3) | 5) /* notice  */
#define AUDIT_PRI_LOGIN ((10 << 3) | 4)  /* warning: a refused login */
#define AUDIT_LINE_MAX 2048               /* bytes, newline included */
#define AUDIT_URI_MAX 1400                /* escaped; longer is cut */

enum audit_kind { AUDIT_FILE = 1, AUDIT_SYSLOG };

static struct {
    pthread_mutex_t lock;
    pthread_once_t once;
    atomic_int fd;          /* -1: no trail (the only lock-free read) */
    enum audit_kind kind;
    unsigned int users;     /* locked: lock */
    char *value;            /* locked: lock; the configured value */
    dev_t dev;              /* the file behind fd (AUDIT_FILE) */
    ino_t ino;
    struct sockaddr_un addr; /* AUDIT_SYSLOG */
    char prog[128];          /* escaped program name */
    atomic_long pid;         /* 0: not known in this process yet */
    atomic_int write_failed; /* said once in the debug log */
} gl_audit = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .once = PTHREAD_ONCE_INIT,
    .fd = -1,
};

static const char *const event_names[] = {
    [P11B_AUDIT_LOGIN] = "login",
    [P11B_AUDIT_LOGIN_FAILED] = "login-failed",
    [P11B_AUDIT_SIGN] = "sign",
    [P11B_AUDIT_DECRYPT] = "decrypt",
    [P11B_AUDIT_DERIVE] = "derive",
    [P11B_AUDIT_KEYGEN] = "keygen",
};

/* A line being assembled; `len` never passes `cap` (text is cut). */
struct audit_buf {
    char *p;
    size_t len;
    size_t cap;
};

static void put(struct audit_buf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len)
        n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct audit_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_ulong(struct audit_buf *b, unsigned long v)
{
    char digits[24];
    size_t i = sizeof(digits);

    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(b, digits + i, sizeof(digits) - i);
}

/* JSON string contents: quote, backslash and control bytes escaped;
 * bytes above 0x7e as \u00XX, so the line is ASCII whatever the input. */
static void put_escaped(struct audit_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char u[6] = { '\\', 'u', '0', '0', 0, 0 };
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            put(b, "\\", 1);
            put(b, s + i, 1);
        } else if (c < 0x20 || c > 0x7e) {
            u[4] = hex[c >> 4];
            u[5] = hex[c & 0xf];
            put(b, u, sizeof(u));
        } else {
            put(b, s + i, 1);
        }
    }
}

/* A malloc'd escaped copy of s, cut to AUDIT_URI_MAX bytes. */
static char *escaped_dup(const char *s)
{
    char tmp[AUDIT_URI_MAX + 1];
    struct audit_buf b = { tmp, 0, AUDIT_URI_MAX };
    char *out;

    put_escaped(&b, s, strlen(s));
    out = malloc(b.len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, tmp, b.len);
    out[b.len] = '\0';
    return out;
}

static void audit_forget_pid(void)
{
    atomic_store_explicit(&gl_audit.pid, 0, memory_order_relaxed);
}

static void audit_init_once(void)
{
    struct audit_buf b = { gl_audit.prog, 0, sizeof(gl_audit.prog) - 1 };

    put_escaped(&b, program_invocation_short_name,
                strlen(program_invocation_short_name));
    gl_audit.prog[b.len] = '\0';
    /* the child writes its own pid; nothing else changes at fork */
    pthread_atfork(NULL, NULL, audit_forget_pid);
}

static long audit_pid(void)
{
    long pid = atomic_load_explicit(&gl_audit.pid, memory_order_relaxed);

    if (pid == 0) {
        pid = (long)getpid();
        atomic_store_explicit(&gl_audit.pid, pid, memory_order_relaxed);
    }
    return pid;
}

/* Above 2, close-on-exec, non-blocking: a system logger that does not
 * keep up costs a line, never a stalled key operation. */
static int audit_open_syslog(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int high;

    if (fd < 0 || fd > STDERR_FILENO)
        return fd;
    high = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    close(fd);
    return high;
}

/* locked: gl_audit.lock; no trail is open. */
static void audit_open_locked(const char *value)
{
    const char *refused = NULL;
    struct stat st;
    int fd;

    if (strcmp(value, "syslog") == 0) {
        gl_audit.kind = AUDIT_SYSLOG;
        gl_audit.addr.sun_family = AF_UNIX;
        memcpy(gl_audit.addr.sun_path, AUDIT_SYSLOG_PATH,
               sizeof(AUDIT_SYSLOG_PATH));
        fd = audit_open_syslog();
    } else {
        gl_audit.kind = AUDIT_FILE;
        fd = p11b_log_open_own_file(value + 5, &refused, &st);
        if (fd >= 0) {
            gl_audit.dev = st.st_dev;
            gl_audit.ino = st.st_ino;
        }
    }
    if (fd < 0) {
        P11B_LOG(1, "audit trail: not writing to %s: %s; key operations go "
                    "on without an audit trail",
                 value, refused != NULL ? refused : strerror(errno));
        return;
    }
    atomic_store_explicit(&gl_audit.write_failed, 0, memory_order_relaxed);
    atomic_store_explicit(&gl_audit.fd, fd, memory_order_release);
    P11B_LOG(2, "audit trail: writing to %s", value);
}

int p11b_audit_open(const char *value, const char **why)
{
    size_t len = strlen(value);

    if (strcmp(value, "syslog") != 0 &&
        (len <= 5 || strncmp(value, "file:", 5) != 0)) {
        *why = "must be syslog or file:PATH";
        return 0;
    }
    if (len - 5 >= PATH_MAX) {
        *why = "the path is too long";
        return 0;
    }
    pthread_once(&gl_audit.once, audit_init_once);
    pthread_mutex_lock(&gl_audit.lock);
    if (gl_audit.users > 0) {
        if (strcmp(gl_audit.value, value) != 0)
            P11B_LOG(1, "audit trail: this process already writes its trail "
                        "to %s; %s is ignored",
                     gl_audit.value, value);
        gl_audit.users++;
        pthread_mutex_unlock(&gl_audit.lock);
        return 1;
    }
    gl_audit.value = strdup(value);
    if (gl_audit.value == NULL) {
        pthread_mutex_unlock(&gl_audit.lock);
        *why = "out of memory";
        return 0;
    }
    gl_audit.users = 1;
    audit_open_locked(value);
    pthread_mutex_unlock(&gl_audit.lock);
    return 1;
}

void p11b_audit_close(void)
{
    int fd;

    pthread_mutex_lock(&gl_audit.lock);
    if (gl_audit.users == 0 || --gl_audit.users > 0) {
        pthread_mutex_unlock(&gl_audit.lock);
        return;
    }
    fd = atomic_exchange(&gl_audit.fd, -1);
    if (fd >= 0)
        close(fd);
    free(gl_audit.value);
    gl_audit.value = NULL;
    pthread_mutex_unlock(&gl_audit.lock);
}

int p11b_audit_on(void)
{
    return atomic_load_explicit(&gl_audit.fd, memory_order_acquire) >= 0;
}

/* The file behind fd is still the one we opened. */
static int audit_fd_is_ours(int fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 && st.st_dev == gl_audit.dev &&
           st.st_ino == gl_audit.ino;
}

static void audit_write_failed(const char *why)
{
    if (atomic_exchange(&gl_audit.write_failed, 1) == 0)
        P11B_LOG(1, "audit trail: a line could not be written to %s (%s); "
                    "key operations go on, and this is said only once",
                 gl_audit.kind == AUDIT_SYSLOG ? AUDIT_SYSLOG_PATH
                                               : "the audit file",
                 why);
}

static void put_result(struct audit_buf *b, CK_RV rv)
{
    static const char hex[] = "0123456789abcdef";
    const char *name;
    char h[10];
    int i;

    if (rv == CKR_OK)
        name = "ok";
    else if (rv == P11B_CKR_PIN_NOT_RETRIED)
        name = "P11B_PIN_NOT_RETRIED"; /* the PIN the token refused before */
    else if (rv == P11B_CKR_PIN_FINAL_TRY)
        name = "P11B_PIN_FINAL_TRY";   /* refused before any C_Login */
    else
        name = p11b_rv_name_lookup(rv);
    if (name != NULL) {
        puts_(b, name);
        return;
    }
    h[0] = '0';
    h[1] = 'x';
    for (i = 9; i >= 2; i--) {
        h[i] = hex[rv & 0xf];
        rv >>= 4;
    }
    put(b, h, sizeof(h));
}

/* Assemble and write one line. uri is already escaped (NULL: unknown). */
static void audit_emit(int fd, enum p11b_audit_event ev, const char *uri,
                       const char *mech, CK_RV rv)
{
    char line[AUDIT_LINE_MAX];
    char stamp[40];
    struct audit_buf b;
    size_t start;
    ssize_t n;
    long pid = audit_pid();
    int saved_errno = errno;
    int pri;

    /* Room in front for the syslog header, which is made last. */
    start = 64;
    b.p = line;
    b.len = start;
    b.cap = sizeof(line) - 1; /* the newline */
    p11b_log_timestamp(stamp, sizeof(stamp));
    puts_(&b, "{\"time\":\"");
    puts_(&b, stamp);
    puts_(&b, "\",\"pid\":");
    put_ulong(&b, (unsigned long)pid);
    puts_(&b, ",\"uid\":");
    put_ulong(&b, (unsigned long)getuid());
    puts_(&b, ",\"prog\":\"");
    puts_(&b, gl_audit.prog);
    puts_(&b, "\",\"event\":\"");
    puts_(&b, event_names[ev]);
    if (uri != NULL) {
        puts_(&b, "\",\"uri\":\"");
        puts_(&b, uri);
        puts_(&b, "\"");
    } else {
        puts_(&b, "\",\"uri\":null");
    }
    if (mech != NULL) {
        puts_(&b, ",\"mech\":\"");
        puts_(&b, mech);
        puts_(&b, "\"");
    }
    puts_(&b, ",\"result\":\"");
    put_result(&b, rv);
    puts_(&b, "\"}");
    line[b.len++] = '\n';

    if (gl_audit.kind == AUDIT_FILE) {
        if (!audit_fd_is_ours(fd)) {
            audit_write_failed("the descriptor is no longer the audit file");
        } else {
            do {
                n = write(fd, line + start, b.len - start);
            } while (n < 0 && errno == EINTR);
            if (n != (ssize_t)(b.len - start))
                audit_write_failed(n < 0 ? strerror(errno) : "short write");
        }
    } else {
        char head[64];
        int h;

        pri = rv == CKR_OK ? AUDIT_PRI_OK
              : ev == P11B_AUDIT_LOGIN_FAILED ? AUDIT_PRI_LOGIN
                                              : AUDIT_PRI_FAILED;
        h = snprintf(head, sizeof(head), "<%d>" AUDIT_SYSLOG_TAG "[%ld]: ",
                     pri, pid);
        if (h > 0 && (size_t)h < start) {
            memcpy(line + start - (size_t)h, head, (size_t)h);
            start -= (size_t)h;
        }
        n = sendto(fd, line + start, b.len - start - 1, MSG_NOSIGNAL,
                   (const struct sockaddr *)&gl_audit.addr,
                   sizeof(gl_audit.addr));
        if (n < 0)
            audit_write_failed(strerror(errno));
    }
    errno = saved_errno;
}

static const char *key_uri(struct p11b_obj *o)
{
    char *uri = atomic_load_explicit(&o->audit_uri, memory_order_acquire);
    char *raw, *expected = NULL;

    if (uri != NULL)
        return uri;
    raw = p11b_obj_uri(o);
    if (raw == NULL)
        return NULL;
    uri = escaped_dup(raw);
    free(raw);
    if (uri == NULL)
        return NULL;
    if (!atomic_compare_exchange_strong(&o->audit_uri, &expected, uri)) {
        free(uri); /* another thread was first */
        uri = expected;
    }
    return uri;
}

void p11b_audit_key(enum p11b_audit_event ev, struct p11b_obj *key,
                    CK_MECHANISM_TYPE mech, CK_RV rv)
{
    int fd = atomic_load_explicit(&gl_audit.fd, memory_order_acquire);

    if (fd < 0)
        return;
    audit_emit(fd, ev, key_uri(key), p11b_mech_name(mech), rv);
}

/* The token's URI, plus an object's label and id when given. */
static char *token_uri(struct p11b_slot *slot, const CK_ATTRIBUTE *label,
                       const CK_ATTRIBUTE *id)
{
    struct p11b_uri *u = p11b_uri_new();
    CK_TOKEN_INFO ti;
    char *raw = NULL, *uri = NULL;
    int ok;

    if (u == NULL)
        return NULL;
    pthread_mutex_lock(&slot->lock);
    ti = slot->token;
    pthread_mutex_unlock(&slot->lock);
    ok = p11b_uri_set_token_info(u, &ti) == 0;
    if (ok && label != NULL)
        ok = p11b_uri_set_value(&u->object, label->pValue,
                                label->ulValueLen) == 0;
    if (ok && id != NULL)
        ok = p11b_uri_set_value(&u->id, id->pValue, id->ulValueLen) == 0;
    if (ok && (label != NULL || id != NULL))
        u->type = P11B_URI_TYPE_PRIVATE;
    if (ok)
        raw = p11b_uri_format(u, P11B_URI_FMT_NO_QUERY);
    p11b_uri_free(u);
    if (raw != NULL)
        uri = escaped_dup(raw);
    free(raw);
    return uri;
}

void p11b_audit_login(struct p11b_slot *slot, CK_RV rv)
{
    int fd = atomic_load_explicit(&gl_audit.fd, memory_order_acquire);
    char *uri;

    if (fd < 0)
        return;
    uri = token_uri(slot, NULL, NULL);
    audit_emit(fd, rv == CKR_OK ? P11B_AUDIT_LOGIN : P11B_AUDIT_LOGIN_FAILED,
               uri, NULL, rv);
    free(uri);
}

void p11b_audit_keygen(struct p11b_slot *slot, CK_MECHANISM_TYPE mech,
                       const CK_ATTRIBUTE *priv, CK_ULONG npriv, CK_RV rv)
{
    int fd = atomic_load_explicit(&gl_audit.fd, memory_order_acquire);
    const CK_ATTRIBUTE *label = NULL, *id = NULL;
    CK_ULONG i;
    char *uri;

    if (fd < 0)
        return;
    for (i = 0; i < npriv; i++) {
        if (priv[i].type == CKA_LABEL && priv[i].pValue != NULL)
            label = &priv[i];
        else if (priv[i].type == CKA_ID && priv[i].pValue != NULL)
            id = &priv[i];
    }
    uri = token_uri(slot, label, id);
    audit_emit(fd, P11B_AUDIT_KEYGEN, uri, p11b_mech_name(mech), rv);
    free(uri);
}
