/*
 * RFC 7512 "pkcs11:" URIs: the attribute table, values, formatting.
 *
 * One table of attributes drives everything: parsing (name lookup, the
 * component it belongs to, length limits, the value parser), the "at most
 * once" rule, and formatting (the table is in canonical output order).
 * Values go through one percent-decoder and one encoder.
 *
 * This file holds the table and all that works on one value at a time
 * (decode, parse, format, free), so the table's parsers and writers sit
 * beside it. The parser that walks a whole URI, and its policy, is in
 * uri_parse.c; filling from and matching against Cryptoki's info structs
 * in uri_info.c.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/uri_int.h"

#define REDACTED "***"

/* Size of a fixed Cryptoki info field, e.g. FIELD_LEN(CK_TOKEN_INFO, label) */
#define FIELD_LEN(type, member) sizeof(((type *)0)->member)

#define ATTR_ENCODE_ALL 0x1 /* format every byte as %XX (id)           */
#define ATTR_SECRET 0x2     /* replaced by REDACTED on request (PIN)   */

/* Output buffer of p11b_uri_format. buf == NULL only counts. */
struct writer {
    char *buf;
    size_t len;
    unsigned int n_path;
    unsigned int n_query;
};

static value_parse_fn parse_value;
static value_parse_fn parse_type;
static value_parse_fn parse_slot_id;
static value_parse_fn parse_library_version;
static value_format_fn format_value;
static value_format_fn format_type;
static value_format_fn format_slot_id;
static value_format_fn format_library_version;

#define VALUE_AT(member) offsetof(struct p11b_uri, member)

/* Canonical output order. Length limits are the Cryptoki field sizes. */
static const struct attr_def attrs[] = {
    { "token", IN_PATH, VALUE_AT(token), 0, FIELD_LEN(CK_TOKEN_INFO, label), 0,
      NULL, parse_value, format_value },
    { "manufacturer", IN_PATH, VALUE_AT(manufacturer), 0,
      FIELD_LEN(CK_TOKEN_INFO, manufacturerID), 0, NULL, parse_value,
      format_value },
    { "serial", IN_PATH, VALUE_AT(serial), 0,
      FIELD_LEN(CK_TOKEN_INFO, serialNumber), 0, NULL, parse_value,
      format_value },
    { "model", IN_PATH, VALUE_AT(model), 0, FIELD_LEN(CK_TOKEN_INFO, model), 0,
      NULL, parse_value, format_value },
    { "library-manufacturer", IN_PATH, VALUE_AT(library_manufacturer), 0,
      FIELD_LEN(CK_INFO, manufacturerID), 0, NULL, parse_value, format_value },
    { "library-description", IN_PATH, VALUE_AT(library_description), 0,
      FIELD_LEN(CK_INFO, libraryDescription), 0, NULL, parse_value,
      format_value },
    { "library-version", IN_PATH, 0, 1, 0, 0, NULL, parse_library_version,
      format_library_version },
    { "slot-manufacturer", IN_PATH, VALUE_AT(slot_manufacturer), 0,
      FIELD_LEN(CK_SLOT_INFO, manufacturerID), 0, NULL, parse_value,
      format_value },
    { "slot-description", IN_PATH, VALUE_AT(slot_description), 0,
      FIELD_LEN(CK_SLOT_INFO, slotDescription), 0, NULL, parse_value,
      format_value },
    { "slot-id", IN_PATH, 0, 1, 0, 0, NULL, parse_slot_id, format_slot_id },
    { "object", IN_PATH, VALUE_AT(object), 0, 0, 0, NULL, parse_value,
      format_value },
    { "id", IN_PATH, VALUE_AT(id), 0, 0, ATTR_ENCODE_ALL, NULL, parse_value,
      format_value },
    { "type", IN_PATH, 0, 1, 0, 0, NULL, parse_type, format_type },
    { "pin-source", IN_QUERY, VALUE_AT(pin_source), 0, 0, 0, "pin-value",
      parse_value, format_value },
    { "pin-value", IN_QUERY, VALUE_AT(pin_value), 0, 0, ATTR_SECRET,
      "pin-source", parse_value, format_value },
    /* RFC 7512: module-name and module-path are 1*pk11-qchar */
    { "module-name", IN_QUERY, VALUE_AT(module_name), 1, 0, 0, NULL,
      parse_value, format_value },
    { "module-path", IN_QUERY, VALUE_AT(module_path), 1, 0, 0, NULL,
      parse_value, format_value },
};

/* Indexed by enum p11b_uri_type. */
static const char *const type_names[] = {
    NULL, "public", "private", "cert", "secret-key", "data",
};

/* RFC 7512 section 2.3: pk11-path-res-avail and pk11-query-res-avail. */
static const char path_res_avail[] = ":[]@!$'()*+,=&";
static const char query_res_avail[] = ":[]@!$'()*+,=/?|";

/* --- small helpers ------------------------------------------------------ */

/* A memset the compiler may not drop: PIN buffers go through here. */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *vp = p;

    while (n > 0) {
        *vp++ = 0;
        n--;
    }
}

void p11b_uri_wipe_free(unsigned char *buf, size_t len)
{
    if (buf == NULL)
        return;
    wipe(buf, len + 1);
    free(buf);
}

static void value_clear(struct p11b_uri_value *v)
{
    p11b_uri_wipe_free(v->data, v->len);
    v->data = NULL;
    v->len = 0;
    v->present = 0;
}

static struct p11b_uri_value *value_of(struct p11b_uri *uri,
                                       const struct attr_def *def)
{
    return (struct p11b_uri_value *)((char *)uri + def->offset);
}

static const struct p11b_uri_value *value_of_const(const struct p11b_uri *uri,
                                                   const struct attr_def *def)
{
    return (const struct p11b_uri_value *)((const char *)uri + def->offset);
}

static int has_value(const struct attr_def *def)
{
    return def->parse == parse_value;
}

static int is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 unreserved, plus the reserved characters RFC 7512 allows. */
static int is_allowed(unsigned char c, enum where where)
{
    const char *extra = where == IN_PATH ? path_res_avail : query_res_avail;

    if (is_alpha(c) || is_digit(c))
        return 1;
    if (c == '-' || c == '.' || c == '_' || c == '~')
        return 1;
    return c != '\0' && strchr(extra, c) != NULL;
}

/* pk11-v-attr-nm-char: every attribute name, standard or not, is made of
 * these. */
int p11b_uri_is_attr_name(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_')
            return 0;
    }
    return 1;
}

/* Attribute names are case-sensitive: RFC 7512 defines them in lower
 * case and its comparison rules only fold the scheme name. */
const struct attr_def *p11b_uri_find_attr(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < P11B_NELEM(attrs); i++) {
        if (strlen(attrs[i].name) == len &&
            memcmp(attrs[i].name, name, len) == 0)
            return &attrs[i];
    }
    return NULL;
}

/* attrs has 17 rows: one bit each fits a uint32_t. */
uint32_t p11b_uri_attr_bit(const struct attr_def *def)
{
    return UINT32_C(1) << (unsigned int)(def - attrs);
}

/* --- decoding ----------------------------------------------------------- */

static enum p11b_uri_status check_chars(const char *s, size_t len,
                                        enum where where)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            if (len - i < 3 || hex_value((unsigned char)s[i + 1]) < 0 ||
                hex_value((unsigned char)s[i + 2]) < 0)
                return P11B_URI_BAD_ENCODING;
            i += 2;
        } else if (!is_allowed(c, where)) {
            return P11B_URI_BAD_SYNTAX;
        }
    }
    return P11B_URI_OK;
}

/* The one percent-decoder. On success *out is a new buffer of *out_len
 * bytes plus a NUL; %00 stays a 0 byte inside the value. */
enum p11b_uri_status p11b_uri_decode(const char *s, size_t len,
                                     enum where where, unsigned char **out,
                                     size_t *out_len)
{
    enum p11b_uri_status st;
    unsigned char *buf;
    size_t i;
    size_t n = 0;

    st = check_chars(s, len, where);
    if (st != P11B_URI_OK)
        return st;
    buf = malloc(len + 1);
    if (buf == NULL)
        return P11B_URI_NOMEM;
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = hex_value((unsigned char)s[i + 1]);
            int lo = hex_value((unsigned char)s[i + 2]);

            buf[n++] = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else {
            buf[n++] = (unsigned char)s[i];
        }
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return P11B_URI_OK;
}

/* --- value parsers ------------------------------------------------------ */

static enum p11b_uri_status parse_value(struct p11b_uri *uri,
                                        const struct attr_def *def,
                                        unsigned char *buf, size_t len)
{
    struct p11b_uri_value *v = value_of(uri, def);

    value_clear(v);
    v->data = buf;
    v->len = len;
    v->present = 1;
    return P11B_URI_OK;
}

static enum p11b_uri_status parse_type(struct p11b_uri *uri,
                                       const struct attr_def *def,
                                       unsigned char *buf, size_t len)
{
    size_t i;

    (void)def;
    for (i = 1; i < P11B_NELEM(type_names); i++) {
        if (strlen(type_names[i]) == len &&
            memcmp(type_names[i], buf, len) == 0) {
            uri->type = (enum p11b_uri_type)i;
            p11b_uri_wipe_free(buf, len);
            return P11B_URI_OK;
        }
    }
    p11b_uri_wipe_free(buf, len);
    return P11B_URI_BAD_VALUE;
}

/* 1*DIGIT up to max: no sign, no blanks, no overflow. */
static int parse_decimal(const unsigned char *s, size_t len, unsigned long max,
                         unsigned long *out)
{
    unsigned long v = 0;
    size_t i;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned long d;

        if (!is_digit(s[i]))
            return 0;
        d = (unsigned long)(s[i] - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

static enum p11b_uri_status parse_slot_id(struct p11b_uri *uri,
                                          const struct attr_def *def,
                                          unsigned char *buf, size_t len)
{
    unsigned long id;
    int ok;

    (void)def;
    ok = parse_decimal(buf, len, ULONG_MAX, &id);
    p11b_uri_wipe_free(buf, len);
    if (!ok)
        return P11B_URI_BAD_VALUE;
    uri->slot_id = id;
    uri->has_slot_id = 1;
    return P11B_URI_OK;
}

/* "M" or "M.N" (RFC 7512: "M" means M.0), each part 0..255. */
static enum p11b_uri_status parse_library_version(struct p11b_uri *uri,
                                                  const struct attr_def *def,
                                                  unsigned char *buf,
                                                  size_t len)
{
    const unsigned char *dot = memchr(buf, '.', len);
    size_t major_len = dot != NULL ? (size_t)(dot - buf) : len;
    unsigned long major;
    unsigned long minor = 0;
    int ok;

    (void)def;
    ok = parse_decimal(buf, major_len, 255, &major);
    if (ok && dot != NULL)
        ok = parse_decimal(dot + 1, len - major_len - 1, 255, &minor);
    p11b_uri_wipe_free(buf, len);
    if (!ok)
        return P11B_URI_BAD_VALUE;
    uri->library_version.major = (CK_BYTE)major;
    uri->library_version.minor = (CK_BYTE)minor;
    uri->has_library_version = 1;
    return P11B_URI_OK;
}

/* --- construction ------------------------------------------------------- */

struct p11b_uri *p11b_uri_new(void)
{
    return calloc(1, sizeof(struct p11b_uri));
}

void p11b_uri_free(struct p11b_uri *uri)
{
    size_t i;

    if (uri == NULL)
        return;
    for (i = 0; i < P11B_NELEM(attrs); i++) {
        if (has_value(&attrs[i]))
            value_clear(value_of(uri, &attrs[i]));
    }
    wipe(uri, sizeof(*uri));
    free(uri);
}

int p11b_uri_set_value(struct p11b_uri_value *v, const void *data, size_t len)
{
    unsigned char *buf;

    if (v == NULL || (data == NULL && len > 0) || len == SIZE_MAX)
        return -1;
    buf = malloc(len + 1);
    if (buf == NULL)
        return -1;
    if (len > 0)
        memcpy(buf, data, len);
    buf[len] = '\0';
    value_clear(v); /* after the copy: data may point into v */
    v->data = buf;
    v->len = len;
    v->present = 1;
    return 0;
}

/* --- formatting --------------------------------------------------------- */

static void put(struct writer *w, const char *s, size_t n)
{
    if (w->buf != NULL)
        memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void put_str(struct writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* The separator, then "name=". The first query attribute opens with '?'. */
static void put_name(struct writer *w, const struct attr_def *def)
{
    if (def->where == IN_PATH) {
        if (w->n_path > 0)
            put(w, ";", 1);
        w->n_path++;
    } else {
        put(w, w->n_query > 0 ? "&" : "?", 1);
        w->n_query++;
    }
    put_str(w, def->name);
    put(w, "=", 1);
}

/* Encode what RFC 7512 does not let through as is for the component, and
 * everything for ATTR_ENCODE_ALL (the conventional form of an id). */
static void put_encoded(struct writer *w, const unsigned char *d, size_t n,
                        const struct attr_def *def)
{
    static const char hex[] = "0123456789ABCDEF";
    char pct[3];
    size_t i;

    for (i = 0; i < n; i++) {
        if ((def->flags & ATTR_ENCODE_ALL) == 0 &&
            is_allowed(d[i], def->where)) {
            put(w, (const char *)&d[i], 1);
            continue;
        }
        pct[0] = '%';
        pct[1] = hex[d[i] >> 4];
        pct[2] = hex[d[i] & 0xf];
        put(w, pct, sizeof(pct));
    }
    wipe(pct, sizeof(pct));
}

static void format_value(struct writer *w, const struct p11b_uri *uri,
                         const struct attr_def *def, unsigned int flags)
{
    const struct p11b_uri_value *v = value_of_const(uri, def);

    if (!v->present)
        return;
    put_name(w, def);
    if ((def->flags & ATTR_SECRET) != 0 && (flags & P11B_URI_FMT_REDACT_PIN))
        put_str(w, REDACTED);
    else
        put_encoded(w, v->data, v->len, def);
}

static void format_type(struct writer *w, const struct p11b_uri *uri,
                        const struct attr_def *def, unsigned int flags)
{
    const char *name = p11b_uri_type_name(uri->type);

    (void)flags;
    if (name == NULL)
        return;
    put_name(w, def);
    put_str(w, name);
}

static void format_slot_id(struct writer *w, const struct p11b_uri *uri,
                           const struct attr_def *def, unsigned int flags)
{
    char num[32];

    (void)flags;
    if (!uri->has_slot_id)
        return;
    snprintf(num, sizeof(num), "%lu", (unsigned long)uri->slot_id);
    put_name(w, def);
    put_str(w, num);
}

/* Always "M.N": "M" parses as M.0, so both forms give the same URI. */
static void format_library_version(struct writer *w, const struct p11b_uri *uri,
                                   const struct attr_def *def,
                                   unsigned int flags)
{
    char num[16];

    (void)flags;
    if (!uri->has_library_version)
        return;
    snprintf(num, sizeof(num), "%u.%u",
             (unsigned int)uri->library_version.major,
             (unsigned int)uri->library_version.minor);
    put_name(w, def);
    put_str(w, num);
}

static void write_uri(struct writer *w, const struct p11b_uri *uri,
                      unsigned int flags)
{
    size_t i;

    put(w, SCHEME, SCHEME_LEN);
    for (i = 0; i < P11B_NELEM(attrs); i++) {
        if (attrs[i].where == IN_QUERY && (flags & P11B_URI_FMT_NO_QUERY))
            continue;
        attrs[i].format(w, uri, &attrs[i], flags);
    }
}

/* Two passes (measure, then write) so a PIN is never left behind in a
 * buffer freed by realloc. */
char *p11b_uri_format(const struct p11b_uri *uri, unsigned int flags)
{
    struct writer w = { NULL, 0, 0, 0 };
    char *buf;

    if (uri == NULL)
        return NULL;
    write_uri(&w, uri, flags);
    buf = malloc(w.len + 1);
    if (buf == NULL)
        return NULL;
    w.buf = buf;
    w.len = 0;
    w.n_path = 0;
    w.n_query = 0;
    write_uri(&w, uri, flags);
    buf[w.len] = '\0';
    return buf;
}

/* --- names -------------------------------------------------------------- */

const char *p11b_uri_type_name(enum p11b_uri_type t)
{
    size_t i = (size_t)t;

    if (i == 0 || i >= P11B_NELEM(type_names))
        return NULL;
    return type_names[i];
}
