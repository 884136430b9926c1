/*
 * libFuzzer target for src/pkcs11/uri*.c.
 *
 * Whatever parses must format, and the formatted string must parse back and
 * format to the identical string (plain, redacted and path-only). The
 * redacted form must not hold the PIN. Failures that are not memory errors
 * abort(), so libFuzzer keeps the input.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -I/usr/include/p11-kit-1 -Isrc tests/fuzz/fuzz_uri.c \
 *       src/pkcs11/uri.c src/pkcs11/uri_parse.c src/pkcs11/uri_info.c \
 *       -o /tmp/fuzz_uri
 *   cp -r tests/fuzz/corpus_uri /tmp/corpus_copy
 *   /tmp/fuzz_uri -max_total_time=60 /tmp/corpus_copy
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* format(uri, flags) must parse and format to the same string again. */
static char *format_stable(const struct p11b_uri *uri, unsigned int flags)
{
    struct p11b_uri *again = NULL;
    char *s = p11b_uri_format(uri, flags);
    char *s2;

    if (s == NULL)
        abort();
    if (p11b_uri_parse(s, strlen(s), NULL, &again) != P11B_URI_OK)
        abort();
    s2 = p11b_uri_format(again, flags);
    if (s2 == NULL || strcmp(s, s2) != 0)
        abort();
    free(s2);
    p11b_uri_free(again);
    return s;
}

/* In the formatted query (after the first '?', which path values always
 * encode), pin-value must be exactly "***" if present, and absent if the
 * URI has none. '&' inside a query value is always encoded. */
static void check_redacted(const struct p11b_uri *uri, const char *redacted)
{
    const char *seg = strchr(redacted, '?');
    int found = 0;

    while (seg != NULL) {
        seg++;
        if (strncmp(seg, "pin-value=", 10) == 0) {
            if (found || strncmp(seg + 10, "***", 3) != 0 ||
                (seg[13] != '\0' && seg[13] != '&'))
                abort();
            found = 1;
        }
        seg = strchr(seg, '&');
    }
    if (found != uri->pin_value.present)
        abort();
}

static void match_all(const struct p11b_uri *uri)
{
    CK_TOKEN_INFO ti;
    CK_SLOT_INFO si;
    CK_INFO info;

    memset(&ti, 0, sizeof(ti));
    memset(&si, 0, sizeof(si));
    memset(&info, 0, sizeof(info));
    (void)p11b_uri_match_token(uri, &ti);
    (void)p11b_uri_match_slot(uri, 0, &si);
    (void)p11b_uri_match_library(uri, &info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct p11b_uri_error err;
    struct p11b_uri *uri = NULL;
    enum p11b_uri_status st;
    char *plain;
    char *redacted;
    char *path;

    st = p11b_uri_parse((const char *)data, size, &err, &uri);
    if (p11b_uri_status_str(st) == NULL)
        abort();
    if (st != P11B_URI_OK) {
        if (uri != NULL || memchr(err.attr, '\0', sizeof(err.attr)) == NULL)
            abort();
        return 0;
    }
    plain = format_stable(uri, 0);
    redacted = format_stable(uri, P11B_URI_FMT_REDACT_PIN);
    path = format_stable(uri, P11B_URI_FMT_NO_QUERY);
    check_redacted(uri, redacted);
    if (strchr(path, '?') != NULL)
        abort();
    match_all(uri);
    free(plain);
    free(redacted);
    free(path);
    p11b_uri_free(uri);
    return 0;
}
