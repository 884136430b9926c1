/*
 * Debug log: PKCS11_PROVIDER_DEBUG=file:PATH,level:N.
 *
 * The variable is read once per process (pthread_once, secure_getenv). Unset
 * means off. Set, each part is optional and they may come in either order:
 * no file means stderr, no level means 1, and "" means stderr at level 1.
 * PATH cannot contain ','. A value we do not understand turns logging on at
 * level 1 on stderr, with one line saying so (the value itself is never
 * repeated: it is the user's, and may hold anything).
 *
 * The file is the user's own: it is opened without following a symbolic
 * link (O_NOFOLLOW), created 0600, and refused when it is not a regular
 * file or belongs to another user (a log in a shared directory such as
 * /tmp must not become a way to append to someone else's file). A refused
 * file gets one line on stderr saying why, and logging stays off; the
 * provider works as usual.
 *
 * Each line is formatted into one buffer of at most P11B_LOG_LINE_MAX bytes
 * and written with one write() to a descriptor opened with O_APPEND, so lines
 * from threads and from forked children never interleave. A child keeps the
 * inherited descriptor and prints its own pid and tid.
 *
 * Nothing on the write path takes a lock (no stdio FILE, no gmtime_r, which
 * takes glibc's tz lock): a child forked while another thread of the parent
 * was logging can log at once.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* secure_getenv, strerror_r, syscall */
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pkcs11/log.h"

#define P11B_LOG_ENV "PKCS11_PROVIDER_DEBUG"
#define P11B_LOG_LINE_MAX 1024 /* bytes, newline included */
#define P11B_LOG_LEVEL_MAX 999

/*
 * "Not read yet". It compares as "every level enabled", so the single
 * compare of the fast path sends the very first call to the slow path,
 * which runs the pthread_once. After that the value is 0 (off) or the
 * configured level, and an off log costs one load and one compare.
 */
#define LOG_NOT_READ INT_MAX

/*
 * Process-wide log state: one per process by nature, like the module
 * registry. Every field but `level` is written once, inside log_init()
 * under `once`, and only read afterwards. `level` is stored last with
 * release order, so whoever loads a real level (acquire) also sees fd.
 */
static struct {
    pthread_once_t once;
    atomic_int level;
    int fd;
    int check_file; /* fd is our own file: make sure it still is */
    dev_t dev;
    ino_t ino;
} gl_log = {
    .once = PTHREAD_ONCE_INIT,
    .level = LOG_NOT_READ,
    .fd = STDERR_FILENO,
};

struct log_conf {
    char path[PATH_MAX]; /* "" for stderr */
    int level;
};

static void log_line(int level, const char *file, int line, const char *func,
                     const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* "0".."999", digits only. */
static int log_parse_level(const char *s, size_t len, int *out)
{
    int level = 0;
    size_t i;

    if (len == 0 || len > 3)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        level = level * 10 + (s[i] - '0');
    }
    *out = level;
    return 1;
}

/* "file:PATH,level:N", either part optional, each at most once. */
static int log_parse(const char *value, struct log_conf *conf)
{
    const char *part = value;
    int have_file = 0;
    int have_level = 0;

    conf->path[0] = '\0';
    conf->level = 1;
    if (*part == '\0')
        return 1;
    for (;;) {
        const char *comma = strchr(part, ',');
        size_t len = comma != NULL ? (size_t)(comma - part) : strlen(part);

        if (!have_file && len > 5 && strncmp(part, "file:", 5) == 0) {
            if (len - 5 >= sizeof(conf->path))
                return 0;
            memcpy(conf->path, part + 5, len - 5);
            conf->path[len - 5] = '\0';
            have_file = 1;
        } else if (!have_level && len > 6 && strncmp(part, "level:", 6) == 0 &&
                   log_parse_level(part + 6, len - 6, &conf->level)) {
            have_level = 1;
        } else {
            return 0;
        }
        if (comma == NULL)
            return 1;
        part = comma + 1;
    }
}

/* Why an opened file is not ours to write to, or NULL when it is. */
static const char *log_refusal(const struct stat *st)
{
    if (!S_ISREG(st->st_mode))
        return "it is not a regular file";
    if (st->st_uid != geteuid())
        return "it belongs to another user";
    return NULL;
}

/*
 * Our file, append-only, not inherited across exec. Kept off 0-2: a daemon
 * that later points its stdio at /dev/null must not take our log with it.
 * -1 with errno on failure; -1 with *refused set for a file we will not
 * write to (see the top). O_NONBLOCK: opening a FIFO must not hang.
 * Shared with the audit trail (audit.c), which makes the same promises.
 */
int p11b_log_open_own_file(const char *path, const char **refused,
                           struct stat *out_st)
{
    struct stat st;
    int fd;
    int high;
    int err;

    *refused = NULL;
    do {
        fd = open(path,
                  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY |
                      O_NOFOLLOW | O_NONBLOCK,
                  0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0 && errno == ELOOP) {
        *refused = "it is a symbolic link";
        return -1;
    }
    if (fd < 0)
        return -1;
    if (fd <= STDERR_FILENO) {
        high = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        err = errno;
        close(fd);
        if (high < 0) {
            errno = err;
            return -1;
        }
        fd = high;
    }
    if (fstat(fd, &st) != 0) {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    *refused = log_refusal(&st);
    if (*refused != NULL) {
        close(fd);
        return -1;
    }
    *out_st = st;
    return fd;
}

static int log_open(const char *path, const char **refused)
{
    struct stat st;
    int fd = p11b_log_open_own_file(path, refused, &st);

    if (fd < 0)
        return -1;
    gl_log.dev = st.st_dev;
    gl_log.ino = st.st_ino;
    gl_log.check_file = 1;
    return fd;
}

/* Runs once per process, under gl_log.once. */
static void log_init(void)
{
    const char *value = secure_getenv(P11B_LOG_ENV);
    struct log_conf conf;
    char errbuf[128];
    const char *open_error = NULL;
    const char *refused = NULL;
    int understood;
    int fd;

    if (value == NULL) {
        atomic_store_explicit(&gl_log.level, 0, memory_order_release);
        return;
    }
    understood = log_parse(value, &conf);
    if (!understood) {
        conf.path[0] = '\0';
        conf.level = 1;
    }
    if (conf.level > 0 && conf.path[0] != '\0') {
        fd = log_open(conf.path, &refused);
        if (fd >= 0)
            gl_log.fd = fd;
        else if (refused == NULL)
            open_error = strerror_r(errno, errbuf, sizeof(errbuf));
    }
    if (refused != NULL) {
        /* Not the file, and not stderr instead: the user asked for a
         * file, and a process that writes the log somewhere else
         * unasked (a daemon's stderr) would be no better. */
        log_line(1, __FILE__, __LINE__, __func__,
                 "not writing to the " P11B_LOG_ENV " file: %s; "
                 "logging is off",
                 refused);
        atomic_store_explicit(&gl_log.level, 0, memory_order_release);
        return;
    }
    atomic_store_explicit(&gl_log.level, conf.level, memory_order_release);

    if (!understood)
        log_line(1, __FILE__, __LINE__, __func__,
                 P11B_LOG_ENV " not understood (expected file:PATH,level:N); "
                              "logging to stderr at level 1");
    if (open_error != NULL)
        log_line(1, __FILE__, __LINE__, __func__,
                 "cannot open the " P11B_LOG_ENV " file (%s); "
                 "logging to stderr at level %d",
                 open_error, conf.level);
}

static int log_enabled_slow(int level)
{
    int current = atomic_load_explicit(&gl_log.level, memory_order_acquire);
    int saved_errno;

    if (current == LOG_NOT_READ) {
        saved_errno = errno; /* P11B_LOG must not disturb the caller's errno */
        pthread_once(&gl_log.once, log_init);
        errno = saved_errno;
        current = atomic_load_explicit(&gl_log.level, memory_order_acquire);
    }
    return level >= 1 && level <= current;
}

int p11b_log_enabled(int level)
{
    if (level > atomic_load_explicit(&gl_log.level, memory_order_acquire))
        return 0;
    return log_enabled_slow(level);
}

/* Days since 1970-01-01 -> proleptic Gregorian date (eras of 400 years). */
static void log_civil_date(long days, long *out_y, int *out_m, int *out_d)
{
    long era;
    long doe; /* day of era, 0..146096 */
    long yoe; /* year of era, 0..399, years starting on 1 March */
    long doy; /* day of that year, 0..365 */
    long mp;  /* month counted from March, 0..11 */

    days += 719468; /* shift the epoch to 0000-03-01 */
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *out_d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *out_m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *out_y = yoe + era * 400 + (*out_m <= 2);
}

/* "2026-05-01T10:00:00.123Z", UTC, without gmtime_r (see the top). Also
 * the audit trail's time stamp. */
void p11b_log_timestamp(char *buf, size_t size)
{
    struct timespec ts;
    long secs;
    long days;
    long y;
    int m;
    int d;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = 0;
        ts.tv_nsec = 0;
    }
    days = (long)(ts.tv_sec / 86400);
    secs = (long)(ts.tv_sec % 86400);
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    log_civil_date(days, &y, &m, &d);
    /* Bounded values keep the text within its 24 bytes. */
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             (int)(y % 10000), m % 100, d % 100, (int)(secs / 3600) % 100,
             (int)(secs / 60 % 60), (int)(secs % 60),
             (int)(ts.tv_nsec / 1000000) % 1000);
}

static const char *log_basename(const char *file)
{
    const char *slash = strrchr(file, '/');

    return slash != NULL ? slash + 1 : file;
}

/* Our file is still behind fd (not closed and reused by the application). */
static int log_fd_is_ours(int fd)
{
    struct stat st;

    if (!gl_log.check_file)
        return 1;
    if (fstat(fd, &st) != 0)
        return 0;
    return st.st_dev == gl_log.dev && st.st_ino == gl_log.ino;
}

static void log_vline(int level, const char *file, int line, const char *func,
                      const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

static void log_vline(int level, const char *file, int line, const char *func,
                      const char *fmt, va_list ap)
{
    char buf[P11B_LOG_LINE_MAX];
    char stamp[40];
    size_t len;
    size_t i;
    int n;
    ssize_t written;

    p11b_log_timestamp(stamp, sizeof(stamp));
    n = snprintf(buf, sizeof(buf),
                 "p11bridge[%ld/%ld] %s L%d %s:%d %s: ", (long)getpid(),
                 (long)syscall(SYS_gettid), stamp, level, log_basename(file),
                 line, func);
    if (n < 0)
        return;
    /* Room for the newline is kept back: the line is at most sizeof(buf). */
    len = (size_t)n < sizeof(buf) - 1 ? (size_t)n : sizeof(buf) - 1;
    n = vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
    if (n >= 0 && (size_t)n < sizeof(buf) - len) {
        len += (size_t)n;
    } else if (n >= 0) {
        len = sizeof(buf) - 1;
        memcpy(buf + len - 3, "...", 3);
    }
    /* One record, one line: no control character gets through. */
    for (i = 0; i < len; i++) {
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            buf[i] = '?';
    }
    buf[len++] = '\n';

    if (!log_fd_is_ours(gl_log.fd))
        return;
    do {
        written = write(gl_log.fd, buf, len);
    } while (written < 0 && errno == EINTR);
}

/* Writes whatever the level: the callers have decided. */
static void log_line(int level, const char *file, int line, const char *func,
                     const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vline(level, file, line, func, fmt, ap);
    va_end(ap);
}

void p11b_log(int level, const char *file, int line, const char *func,
              const char *fmt, ...)
{
    va_list ap;
    int saved_errno = errno; /* callers may log between a call and errno */

    if (!p11b_log_enabled(level))
        return;
    va_start(ap, fmt);
    log_vline(level, file, line, func, fmt, ap);
    va_end(ap);
    errno = saved_errno;
}
