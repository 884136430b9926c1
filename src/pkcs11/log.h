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

int p11b_log_enabled(int level);
void p11b_log(int level, const char *file, int line, const char *func,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define P11B_LOG(level, ...)                                                  \
    do {                                                                      \
        if (p11b_log_enabled(level))                                          \
            p11b_log((level), __FILE__, __LINE__, __func__, __VA_ARGS__);     \
    } while (0)

#endif
