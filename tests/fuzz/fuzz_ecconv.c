/*
 * libFuzzer target: the EC conversions between tokens and OpenSSL. Any
 * bytes as a CKA_EC_POINT for P-256, P-384 and P-521 (the octets found
 * must lie inside the input and have a point's length), and as a raw
 * r || s signature (a DER result must parse back to the same r and s).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>

#include "provider/ecconv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_point(const char *curve, size_t fb, const uint8_t *d,
                        size_t n)
{
    const unsigned char *pt = NULL;
    size_t len = 0;

    if (!p11b_ec_point_octets(curve, d, n, &pt, &len))
        return;
    if (pt < d || pt + len > d + n ||
        (len != 1 + 2 * fb && len != 1 + fb))
        abort();
}

static void check_sig(const uint8_t *d, size_t n)
{
    unsigned char der[300];
    const unsigned char *p = der;
    size_t len = sizeof(der);
    ECDSA_SIG *sig;
    BIGNUM *r, *s;

    if (n > 264 || !p11b_ecdsa_raw_to_der(d, n, der, &len))
        return;
    sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    r = BN_bin2bn(d, (int)(n / 2), NULL);
    s = BN_bin2bn(d + n / 2, (int)(n / 2), NULL);
    if (sig == NULL || r == NULL || s == NULL ||
        BN_cmp(ECDSA_SIG_get0_r(sig), r) != 0 ||
        BN_cmp(ECDSA_SIG_get0_s(sig), s) != 0)
        abort();
    ECDSA_SIG_free(sig);
    BN_free(r);
    BN_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_point("prime256v1", 32, data, size);
    check_point("secp384r1", 48, data, size);
    check_point("secp521r1", 66, data, size);
    check_sig(data, size);
    return 0;
}
