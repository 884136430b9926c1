/*
 * RFC 7512 "pkcs11:" URIs: parse, format, match.
 *
 * One table of attributes drives everything: parsing (name lookup, the
 * component it belongs to, length limits, the value parser), the "at most
 * once" rule, and formatting (the table is in canonical output order).
 * Values go through one percent-decoder and one encoder.
 *
 * Policy (STYLE.md section 7): nothing is silently ignored. An attribute we
 * do not know, a vendor attribute, a value too long for its Cryptoki field
 * or an attribute in the wrong component is an error naming the attribute.
 * The error never carries an attribute value, so a pin-value cannot leak
 * into a message.
 *
 * RFC 7512 points this file interprets (see the comments where they apply):
 * - attribute names and "type" values are matched case-sensitively; only
 *   the scheme name and the hex digits of %XX are case-insensitive;
 * - a standard query attribute given twice is an error, like a path one
 *   (section 2.3 only allows repeated vendor query attributes);
 * - "pin-source" together with "pin-value" is refused (section 2.3: the
 *   URI "SHOULD be refused as invalid");
 * - values are percent-decoded before slot-id, library-version and type
 *   are checked (RFC 3986 section 6.2.2.2: %31 and 1 are equivalent).
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/uri.h"

#define SCHEME "pkcs11:"
#define SCHEME_LEN (sizeof(SCHEME) - 1)
#define REDACTED "***"

/* Size of a fixed Cryptoki info field, e.g. FIELD_LEN(CK_TOKEN_INFO, label) */
#define FIELD_LEN(type, member) sizeof(((type *)0)->member)

enum where { IN_PATH, IN_QUERY };

#define ATTR_ENCODE_ALL 0x1 /* format every byte as %XX (id)           */
#define ATTR_SECRET 0x2     /* replaced by REDACTED on request (PIN)   */

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

/* Output buffer of p11b_uri_format. buf == NULL only counts. */
struct writer {
    char *buf;
    size_t len;
    unsigned int n_path;
    unsigned int n_query;
};

/* State of one p11b_uri_parse call. */
struct parser {
    struct p11b_uri *uri;
    enum where where;
    uint32_t seen;    /* bit i: attrs[i] already given */
    const char *name; /* attribute being parsed, for err->attr */
    size_t name_len;
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

static void wipe_free(unsigned char *buf, size_t len)
{
    if (buf == NULL)
        return;
    wipe(buf, len + 1);
    free(buf);
}

static void value_clear(struct p11b_uri_value *v)
{
    wipe_free(v->data, v->len);
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
static int is_attr_name(const char *s, size_t len)
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
static const struct attr_def *find_attr(const char *name, size_t len)
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
static uint32_t attr_bit(const struct attr_def *def)
{
    return UINT32_C(1) << (unsigned int)(def - attrs);
}

/* Name for err->attr: printable ASCII only, truncated. */
static void set_err(struct p11b_uri_error *err, const char *name, size_t len)
{
    size_t i;

    if (err == NULL)
        return;
    if (len >= sizeof(err->attr))
        len = sizeof(err->attr) - 1;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        err->attr[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    err->attr[len] = '\0';
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
static enum p11b_uri_status decode(const char *s, size_t len, enum where where,
                                   unsigned char **out, size_t *out_len)
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
            wipe_free(buf, len);
            return P11B_URI_OK;
        }
    }
    wipe_free(buf, len);
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
    wipe_free(buf, len);
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
    wipe_free(buf, len);
    if (!ok)
        return P11B_URI_BAD_VALUE;
    uri->library_version.major = (CK_BYTE)major;
    uri->library_version.minor = (CK_BYTE)minor;
    uri->has_library_version = 1;
    return P11B_URI_OK;
}

/* --- parsing ------------------------------------------------------------ */

/* Each standard attribute at most once (RFC 7512 section 2.3 says so for
 * the path and allows repeats only of vendor query attributes, which we
 * refuse anyway), and never pin-source together with pin-value. */
static enum p11b_uri_status check_once(struct parser *p,
                                       const struct attr_def *def)
{
    const struct attr_def *other;

    if ((p->seen & attr_bit(def)) != 0)
        return P11B_URI_DUPLICATE;
    if (def->excludes != NULL) {
        other = find_attr(def->excludes, strlen(def->excludes));
        if (other != NULL && (p->seen & attr_bit(other)) != 0)
            return P11B_URI_BAD_SYNTAX;
    }
    p->seen |= attr_bit(def);
    return P11B_URI_OK;
}

static enum p11b_uri_status no_equals(struct parser *p, const char *seg,
                                      size_t len)
{
    static const char pin[] = "pin-value";

    /* "pin-value1234" would otherwise echo a PIN in the message */
    if (len >= sizeof(pin) - 1 && memcmp(seg, pin, sizeof(pin) - 1) == 0)
        len = sizeof(pin) - 1;
    p->name = seg;
    p->name_len = len;
    return P11B_URI_BAD_SYNTAX;
}

/* One "name=value" segment of the path or of the query. */
static enum p11b_uri_status parse_attr(struct parser *p, const char *seg,
                                       size_t len)
{
    const char *eq = memchr(seg, '=', len);
    const struct attr_def *def;
    enum p11b_uri_status st;
    unsigned char *buf;
    size_t buf_len;

    if (eq == NULL)
        return no_equals(p, seg, len);
    p->name = seg;
    p->name_len = (size_t)(eq - seg);
    if (!is_attr_name(seg, p->name_len))
        return P11B_URI_BAD_SYNTAX;
    def = find_attr(seg, p->name_len);
    if (def == NULL)
        return P11B_URI_UNKNOWN_ATTR; /* vendor ones too: never ignored */
    if (def->where != p->where)
        return P11B_URI_BAD_SYNTAX; /* e.g. pin-value in the path */
    st = check_once(p, def);
    if (st != P11B_URI_OK)
        return st;
    st = decode(eq + 1, len - p->name_len - 1, def->where, &buf, &buf_len);
    if (st != P11B_URI_OK)
        return st;
    if (buf_len < def->min_len ||
        (def->max_len != 0 && buf_len > def->max_len)) {
        wipe_free(buf, buf_len);
        return P11B_URI_BAD_VALUE;
    }
    return def->parse(p->uri, def, buf, buf_len);
}

/* The path (split on ';') or the query (split on '&'); either may be
 * empty, but no attribute inside may be. */
static enum p11b_uri_status parse_component(struct parser *p, const char *s,
                                            size_t len)
{
    const char sep = p->where == IN_PATH ? ';' : '&';
    const char *end = s + len;
    enum p11b_uri_status st;

    if (len == 0)
        return P11B_URI_OK;
    for (;;) {
        const char *next = memchr(s, sep, (size_t)(end - s));
        size_t seg_len = (size_t)((next != NULL ? next : end) - s);

        st = parse_attr(p, s, seg_len);
        if (st != P11B_URI_OK || next == NULL)
            return st;
        s = next + 1;
    }
}

static int is_scheme(const char *s, size_t len)
{
    size_t i;

    if (len < SCHEME_LEN)
        return 0;
    for (i = 0; i < SCHEME_LEN; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)SCHEME[i])
            return 0;
    }
    return 1;
}

enum p11b_uri_status p11b_uri_parse(const char *s, size_t len,
                                    struct p11b_uri_error *err,
                                    struct p11b_uri **out)
{
    struct parser p = { NULL, IN_PATH, 0, "", 0 };
    enum p11b_uri_status st;
    const char *q;
    size_t path_len;

    set_err(err, "", 0);
    if (s == NULL || out == NULL || !is_scheme(s, len))
        return P11B_URI_BAD_SCHEME;
    s += SCHEME_LEN;
    len -= SCHEME_LEN;
    p.uri = p11b_uri_new();
    if (p.uri == NULL)
        return P11B_URI_NOMEM;
    q = memchr(s, '?', len);
    path_len = q != NULL ? (size_t)(q - s) : len;
    st = parse_component(&p, s, path_len);
    if (st == P11B_URI_OK && q != NULL) {
        p.where = IN_QUERY;
        st = parse_component(&p, q + 1, len - path_len - 1);
    }
    if (st != P11B_URI_OK) {
        set_err(err, p.name, p.name_len);
        p11b_uri_free(p.uri);
        return st;
    }
    *out = p.uri;
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

/* Length of a space-padded Cryptoki field without its padding (and
 * without anything after an embedded NUL, which some modules write). */
static size_t unpadded_len(const CK_UTF8CHAR *field, size_t field_len)
{
    const CK_UTF8CHAR *nul = memchr(field, '\0', field_len);
    size_t n = nul != NULL ? (size_t)(nul - field) : field_len;

    while (n > 0 && field[n - 1] == ' ')
        n--;
    return n;
}

int p11b_uri_set_padded(struct p11b_uri_value *v, const CK_UTF8CHAR *field,
                        size_t field_len)
{
    if (field == NULL)
        return -1;
    return p11b_uri_set_value(v, field, unpadded_len(field, field_len));
}

int p11b_uri_set_token_info(struct p11b_uri *uri, const CK_TOKEN_INFO *ti)
{
    if (uri == NULL || ti == NULL)
        return -1;
    if (p11b_uri_set_padded(&uri->token, ti->label, sizeof(ti->label)) != 0 ||
        p11b_uri_set_padded(&uri->manufacturer, ti->manufacturerID,
                            sizeof(ti->manufacturerID)) != 0 ||
        p11b_uri_set_padded(&uri->serial, ti->serialNumber,
                            sizeof(ti->serialNumber)) != 0 ||
        p11b_uri_set_padded(&uri->model, ti->model, sizeof(ti->model)) != 0)
        return -1;
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

/* --- matching ----------------------------------------------------------- */

/* Absent matches anything; present compares byte-exact to the unpadded
 * field. */
static int value_matches(const struct p11b_uri_value *v,
                         const CK_UTF8CHAR *field, size_t field_len)
{
    size_t n;

    if (!v->present)
        return 1;
    n = unpadded_len(field, field_len);
    return v->len == n && (n == 0 || memcmp(v->data, field, n) == 0);
}

int p11b_uri_match_library(const struct p11b_uri *uri, const CK_INFO *info)
{
    if (uri == NULL || info == NULL)
        return 0;
    if (uri->has_library_version &&
        (uri->library_version.major != info->libraryVersion.major ||
         uri->library_version.minor != info->libraryVersion.minor))
        return 0;
    return value_matches(&uri->library_manufacturer, info->manufacturerID,
                         sizeof(info->manufacturerID)) &&
           value_matches(&uri->library_description, info->libraryDescription,
                         sizeof(info->libraryDescription));
}

int p11b_uri_match_slot(const struct p11b_uri *uri, CK_SLOT_ID id,
                        const CK_SLOT_INFO *info)
{
    if (uri == NULL || info == NULL)
        return 0;
    if (uri->has_slot_id && uri->slot_id != id)
        return 0;
    return value_matches(&uri->slot_description, info->slotDescription,
                         sizeof(info->slotDescription)) &&
           value_matches(&uri->slot_manufacturer, info->manufacturerID,
                         sizeof(info->manufacturerID));
}

int p11b_uri_match_token(const struct p11b_uri *uri, const CK_TOKEN_INFO *ti)
{
    if (uri == NULL || ti == NULL)
        return 0;
    return value_matches(&uri->token, ti->label, sizeof(ti->label)) &&
           value_matches(&uri->manufacturer, ti->manufacturerID,
                         sizeof(ti->manufacturerID)) &&
           value_matches(&uri->serial, ti->serialNumber,
                         sizeof(ti->serialNumber)) &&
           value_matches(&uri->model, ti->model, sizeof(ti->model));
}

/* --- names -------------------------------------------------------------- */

const char *p11b_uri_status_str(enum p11b_uri_status st)
{
    switch (st) {
    case P11B_URI_OK:
        return "ok";
    case P11B_URI_BAD_SCHEME:
        return "not a pkcs11: URI";
    case P11B_URI_BAD_SYNTAX:
        return "malformed";
    case P11B_URI_BAD_ENCODING:
        return "bad percent-encoding";
    case P11B_URI_DUPLICATE:
        return "given twice";
    case P11B_URI_UNKNOWN_ATTR:
        return "unknown attribute";
    case P11B_URI_BAD_VALUE:
        return "invalid value";
    case P11B_URI_NOMEM:
        return "out of memory";
    }
    return "unknown error";
}

const char *p11b_uri_type_name(enum p11b_uri_type t)
{
    size_t i = (size_t)t;

    if (i == 0 || i >= P11B_NELEM(type_names))
        return NULL;
    return type_names[i];
}
