/*
 * What the RFC 7512 files share and nothing else includes: uri.c (the
 * attribute table, values, formatting) gives, uri_parse.c (the parser)
 * takes. Not part of the API in uri.h.
 */
#ifndef P11B_URI_INT_H
#define P11B_URI_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pkcs11/uri.h"

#define SCHEME "pkcs11:"
#define SCHEME_LEN (sizeof(SCHEME) - 1)

enum where { IN_PATH, IN_QUERY };

struct attr_def;
struct writer;

/* Takes ownership of buf (len bytes, NUL one past len) in every case. */
typedef enum p11b_uri_status value_parse_fn(struct p11b_uri *uri,
                                            const struct attr_def *def,
                                            unsigned char *buf, size_t len);
/* Writes "name=value" (with its separator) if the attribute is set. */
typedef void value_format_fn(struct writer *w, const struct p11b_uri *uri,
                             const struct attr_def *def, unsigned int flags);

struct attr_def {
    const char *name;
    enum where where;
    size_t offset;  /* of the struct p11b_uri_value, for value rows */
    size_t min_len; /* decoded length limits; max_len 0 = no limit   */
    size_t max_len;
    unsigned int flags;
    const char *excludes; /* may not appear together with this one */
    value_parse_fn *parse;
    value_format_fn *format;
};

/* In uri.c, used by the parser. */
const struct attr_def *p11b_uri_find_attr(const char *name, size_t len);
uint32_t p11b_uri_attr_bit(const struct attr_def *def);
int p11b_uri_is_attr_name(const char *s, size_t len);
enum p11b_uri_status p11b_uri_decode(const char *s, size_t len,
                                     enum where where, unsigned char **out,
                                     size_t *out_len);
void p11b_uri_wipe_free(unsigned char *buf, size_t len);

#endif
