/*
 * EC encodings between tokens and OpenSSL (ecconv.h).
 */
#include "config.h"

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

int p11b_ecdsa_raw_to_der(const unsigned char *raw, size_t rawlen,
                          unsigned char *der, size_t *derlen)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r, *s;
    unsigned char *p = der;
    int len = 0;

    if (sig == NULL || rawlen == 0 || rawlen % 2 != 0) {
        ECDSA_SIG_free(sig);
        return 0;
    }
    r = BN_bin2bn(raw, (int)(rawlen / 2), NULL);
    s = BN_bin2bn(raw + rawlen / 2, (int)(rawlen / 2), NULL);
    if (r == NULL || s == NULL || !ECDSA_SIG_set0(sig, r, s)) {
        BN_free(r);
        BN_free(s);
    } else if (i2d_ECDSA_SIG(sig, NULL) <= (int)*derlen) {
        len = i2d_ECDSA_SIG(sig, &p);
    }
    ECDSA_SIG_free(sig);
    *derlen = len > 0 ? (size_t)len : 0;
    return len > 0;
}

