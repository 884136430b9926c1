/*
 * RFC 7512 "pkcs11:" URIs: the parser (p11b_uri_parse) and its statuses.
 *
 * It walks the path and the query one "name=value" segment at a time and
 * hands each value to its row of the attribute table in uri.c.
 *
 * Policy (STYLE.md section 7): nothing is silently ignored. An attribute we
 * do not know, a vendor attribute, a value too long for its Cryptoki field
 * or an attribute in the wrong component is an error naming the attribute.
 * The error never carries an attribute value, so a pin-value cannot leak
 * into a message.
 *
 * RFC 7512 points the parser interprets (see the comments where they
 * apply, here and in uri.c):
 * - attribute names and "type" values are matched case-sensitively; only
 *   the scheme name and the hex digits of %XX are case-insensitive;
 * - a standard query attribute given twice is an error, like a path one
 *   (section 2.3 only allows repeated vendor query attributes);
 * - "pin-source" together with "pin-value" is refused (section 2.3: the
 *   URI "SHOULD be refused as invalid");
 * - values are percent-decoded before slot-id, library-version and type
 *   are checked (RFC 3986 section 6.2.2.2: %31 and 1 are equivalent).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pkcs11/uri_int.h"

/* State of one p11b_uri_parse call. */
struct parser {
    struct p11b_uri *uri;
    enum where where;
    uint32_t seen;    /* bit i: attrs[i] already given */
    const char *name; /* attribute being parsed, for err->attr */
    size_t name_len;
};

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

/* --- parsing ------------------------------------------------------------ */

/* Each standard attribute at most once (RFC 7512 section 2.3 says so for
 * the path and allows repeats only of vendor query attributes, which we
 * refuse anyway), and never pin-source together with pin-value. */
static enum p11b_uri_status check_once(struct parser *p,
                                       const struct attr_def *def)
{
    const struct attr_def *other;

    if ((p->seen & p11b_uri_attr_bit(def)) != 0)
        return P11B_URI_DUPLICATE;
    if (def->excludes != NULL) {
        other = p11b_uri_find_attr(def->excludes, strlen(def->excludes));
        if (other != NULL && (p->seen & p11b_uri_attr_bit(other)) != 0)
            return P11B_URI_BAD_SYNTAX;
    }
    p->seen |= p11b_uri_attr_bit(def);
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
    if (!p11b_uri_is_attr_name(seg, p->name_len))
        return P11B_URI_BAD_SYNTAX;
    def = p11b_uri_find_attr(seg, p->name_len);
    if (def == NULL)
        return P11B_URI_UNKNOWN_ATTR; /* vendor ones too: never ignored */
    if (def->where != p->where)
        return P11B_URI_BAD_SYNTAX; /* e.g. pin-value in the path */
    st = check_once(p, def);
    if (st != P11B_URI_OK)
        return st;
    st = p11b_uri_decode(eq + 1, len - p->name_len - 1, def->where, &buf,
                         &buf_len);
    if (st != P11B_URI_OK)
        return st;
    if (buf_len < def->min_len ||
        (def->max_len != 0 && buf_len > def->max_len)) {
        p11b_uri_wipe_free(buf, buf_len);
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
