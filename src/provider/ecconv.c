/*
 * EC encodings between tokens and OpenSSL (ecconv.h).
 */
#include "config.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include "provider/ecconv.h"

static size_t ec_field_bytes(const char *curve)
{
    EC_GROUP *g = EC_GROUP_new_by_curve_name(OBJ_sn2nid(curve));
    size_t fb;

    if (g == NULL) {
        ERR_clear_error();
        return 0;
    }
    fb = ((size_t)EC_GROUP_get_degree(g) + 7) / 8;
    EC_GROUP_free(g);
    return fb;
}

static int point_len_ok(const unsigned char *pt, size_t len, size_t fb)
{
    if (len == 1 + 2 * fb && pt[0] == 0x04)
        return 1;
    return len == 1 + fb && (pt[0] == 0x02 || pt[0] == 0x03);
}

int p11b_ec_point_octets(const char *curve, const unsigned char *d,
                           size_t len, const unsigned char **pt,
                           size_t *pt_len)
{
    size_t fb = ec_field_bytes(curve), hdr, clen;

    if (fb == 0 || len < 2)
        return 0;
    if (d[0] == 0x04 && d[1] < 0x80) {
        hdr = 2;
        clen = d[1];
    } else if (d[0] == 0x04 && d[1] == 0x81 && len > 2) {
        hdr = 3;
        clen = d[2];
    } else {
        hdr = clen = 0;
    }
    if (hdr > 0 && hdr + clen == len && point_len_ok(d + hdr, clen, fb)) {
        *pt = d + hdr;
        *pt_len = clen;
        return 1;
    }
    if (point_len_ok(d, len, fb)) {
        *pt = d;
        *pt_len = len;
        return 1;
    }
    return 0;
}

/* One unsigned big-endian integer as a DER INTEGER at out (which has
 * room for len + 3 bytes); returns the bytes written. */
static size_t der_uint(const unsigned char *v, size_t len, unsigned char *out)
{
    size_t pad, n;

    while (len > 1 && v[0] == 0) { /* minimal: no leading zero bytes */
        v++;
        len--;
    }
    pad = (v[0] & 0x80) ? 1 : 0; /* positive: a zero before a high bit */
    n = len + pad;
    out[0] = 0x02;
    out[1] = (unsigned char)n;
    out[2] = 0;
    memcpy(out + 2 + pad, v, len);
    return 2 + n;
}

int p11b_ecdsa_raw_to_der(const unsigned char *raw, size_t rawlen,
                          unsigned char *der, size_t *derlen)
{
    unsigned char body[2 * (127 + 3)];
    size_t half = rawlen / 2, n, hdr;

    /* Written by hand: it runs once per ECDSA signature. Halves of up to
     * 126 bytes keep every INTEGER length in one byte. */
    if (rawlen == 0 || rawlen % 2 != 0 || half > 126)
        return 0;
    n = der_uint(raw, half, body);
    n += der_uint(raw + half, half, body + n);
    hdr = n < 0x80 ? 2 : n < 0x100 ? 3 : 4;
    if (hdr + n > *derlen)
        return 0;
    der[0] = 0x30;
    if (n < 0x80) {
        der[1] = (unsigned char)n;
    } else if (n < 0x100) {
        der[1] = 0x81;
        der[2] = (unsigned char)n;
    } else {
        der[1] = 0x82;
        der[2] = (unsigned char)(n >> 8);
        der[3] = (unsigned char)n;
    }
    memcpy(der + hdr, body, n);
    *derlen = hdr + n;
    return 1;
}
