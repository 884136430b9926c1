/*
 * Debug log: PKCS11_PROVIDER_DEBUG=file:PATH,level:N (level 1 by default,
 * stderr when no file is given). Off when the variable is unset.
 *
 * Levels: 1 errors and failed Cryptoki calls; 2 every Cryptoki call and
 * dispatch entry; 3 attribute dumps (types and lengths; values only for
 * non-sensitive attributes). Never a PIN, key material or plaintext.
 */
#ifndef P11B_LOG_H
#define P11B_LOG_H

#include <stddef.h>
#include <sys/stat.h>

int p11b_log_enabled(int level);
void p11b_log(int level, const char *file, int line, const char *func,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A file that is the user's own (see log.c): opened O_APPEND, O_NOFOLLOW,
 * created 0600, a regular file of the effective user, fd above 2,
 * close-on-exec. -1 with errno, or with *refused saying why we will not
 * write to it; *out_st is its stat on success. */
int p11b_log_open_own_file(const char *path, const char **refused,
                           struct stat *out_st);
/* "2026-05-01T10:00:00.123Z" (UTC, ms; 25 bytes with the NUL), taking
 * no lock. */
void p11b_log_timestamp(char *buf, size_t size);

#define P11B_LOG(level, ...)                                                  \
    do {                                                                      \
        if (p11b_log_enabled(level))                                          \
            p11b_log((level), __FILE__, __LINE__, __func__, __VA_ARGS__);     \
    } while (0)

#endif
