/*
 * RFC 7512 "pkcs11:" URIs: parse, format, match.
 *
 * Pure C over (const char *, size_t): no OpenSSL, no globals, so it can be
 * unit-tested and fuzzed on its own. Memory comes from malloc/free.
 */
#ifndef P11B_URI_H
#define P11B_URI_H

#include <stddef.h>
#include "pkcs11/p11.h"

enum p11b_uri_status {
    P11B_URI_OK = 0,
    P11B_URI_BAD_SCHEME,   /* not "pkcs11:"                                */
    P11B_URI_BAD_SYNTAX,   /* missing '=', empty name, stray character ... */
    P11B_URI_BAD_ENCODING, /* truncated '%', non-hex digit                  */
    P11B_URI_DUPLICATE,    /* a path attribute given twice                 */
    P11B_URI_UNKNOWN_ATTR, /* an attribute nobody knows                    */
    P11B_URI_BAD_VALUE,    /* type=foo, slot-id=x, value too long ...      */
    P11B_URI_NOMEM,
};

enum p11b_uri_type {
    P11B_URI_TYPE_ANY = 0, /* no type= attribute */
    P11B_URI_TYPE_PUBLIC,
    P11B_URI_TYPE_PRIVATE,
    P11B_URI_TYPE_CERT,
    P11B_URI_TYPE_SECRET_KEY,
    P11B_URI_TYPE_DATA,
};

/* One decoded attribute value: bytes, not a C string (id may hold %00).
 * data is NUL-terminated one byte past len for convenience. */
struct p11b_uri_value {
    int present;
    unsigned char *data;
    size_t len;
};

struct p11b_uri {
    /* path: token */
    struct p11b_uri_value token;        /* CK_TOKEN_INFO.label          */
    struct p11b_uri_value manufacturer; /* CK_TOKEN_INFO.manufacturerID */
    struct p11b_uri_value serial;       /* CK_TOKEN_INFO.serialNumber   */
    struct p11b_uri_value model;        /* CK_TOKEN_INFO.model          */
    /* path: library (CK_INFO) */
    struct p11b_uri_value library_manufacturer;
    struct p11b_uri_value library_description;
    int has_library_version;
    CK_VERSION library_version;
    /* path: slot (CK_SLOT_INFO) */
    struct p11b_uri_value slot_manufacturer;
    struct p11b_uri_value slot_description;
    int has_slot_id;
    CK_SLOT_ID slot_id;
    /* path: object */
    struct p11b_uri_value object; /* CKA_LABEL */
    struct p11b_uri_value id;     /* CKA_ID    */
    enum p11b_uri_type type;
    /* query */
    struct p11b_uri_value pin_value; /* wiped by p11b_uri_free */
    struct p11b_uri_value pin_source;
    struct p11b_uri_value module_name;
    struct p11b_uri_value module_path;
};

/* Details of a parse failure: which attribute, if any, was at fault. */
struct p11b_uri_error {
    char attr[64]; /* attribute name as written (truncated), or "" */
};

/* Parse [s, s+len). On success *out is a new URI (free with p11b_uri_free).
 * On failure *out is untouched and err (if not NULL) names the attribute. */
enum p11b_uri_status p11b_uri_parse(const char *s, size_t len,
                                    struct p11b_uri_error *err,
                                    struct p11b_uri **out);

/* An empty URI ("pkcs11:"), to be filled with p11b_uri_set_*. */
struct p11b_uri *p11b_uri_new(void);
void p11b_uri_free(struct p11b_uri *uri);

/* Set (copy) one value; replaces what was there. 0 on success, -1 on ENOMEM. */
int p11b_uri_set_value(struct p11b_uri_value *v, const void *data, size_t len);

/* Copy a fixed-length, space-padded CK_TOKEN_INFO/CK_SLOT_INFO field
 * (trailing spaces dropped) into v. 0 on success, -1 on ENOMEM. */
int p11b_uri_set_padded(struct p11b_uri_value *v, const CK_UTF8CHAR *field,
                        size_t field_len);

/* Fill token, manufacturer, serial and model from a token info. */
int p11b_uri_set_token_info(struct p11b_uri *uri, const CK_TOKEN_INFO *ti);

#define P11B_URI_FMT_REDACT_PIN 0x1 /* pin-value=*** (for logs)       */
#define P11B_URI_FMT_NO_QUERY 0x2   /* path attributes only           */

/* Canonical form: attributes in a fixed order, values percent-encoded
 * where RFC 7512 requires it. Parsing the result gives an equal URI.
 * Returns a malloc'd string (free with free()), or NULL on ENOMEM. */
char *p11b_uri_format(const struct p11b_uri *uri, unsigned int flags);

/* Matching: 1 if every attribute the URI gives for that level equals the
 * info (fields compared after dropping their space padding), else 0. */
int p11b_uri_match_library(const struct p11b_uri *uri, const CK_INFO *info);
int p11b_uri_match_slot(const struct p11b_uri *uri, CK_SLOT_ID id,
                        const CK_SLOT_INFO *info);
int p11b_uri_match_token(const struct p11b_uri *uri, const CK_TOKEN_INFO *ti);

/* A short English phrase for a status, e.g. "given twice". */
const char *p11b_uri_status_str(enum p11b_uri_status st);

/* Name of a type value ("private", ...), NULL for P11B_URI_TYPE_ANY. */
const char *p11b_uri_type_name(enum p11b_uri_type t);

#endif
