/*
 * The PEM-wrapped URI: DER round trips, BER long-form lengths taken,
 * malformed DER refused, the block found among other PEM blocks.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "provider/uri_pem.h"

static int passed, failed;

static void check(int cond, const char *what)
{
    if (cond) {
        passed++;
        return;
    }
    failed++;
    printf("FAIL: %s\n", what);
}

static void round_trip(const char *uri)
{
    unsigned char *der = NULL;
    size_t len = 0;
    char *back = NULL;

    check(p11b_uri_der_encode(P11B_URI_PEM_DESC, uri, &der, &len),
          "encode");
    check(der != NULL && p11b_uri_der_decode(der, len, &back) &&
              strcmp(back, uri) == 0,
          uri);
    /* Every truncation and one extra byte are refused. */
    while (der != NULL && len > 0) {
        char *u = NULL;

        len--;
        check(!p11b_uri_der_decode(der, len, &u), "truncated DER refused");
        OPENSSL_free(u);
    }
    OPENSSL_free(der);
    OPENSSL_free(back);
}

/* BER long-form lengths other tools write: accepted, the URI is "p". */
struct good {
    const char *what;
    unsigned char der[32];
    size_t len;
};

static const struct good ber_der[] = {
    { "non-minimal one-octet length",
      { 0x30, 0x81, 0x05, 0x1a, 0x00, 0x0c, 0x01, 0x70 }, 8 },
    { "two-octet length with a leading zero",
      { 0x30, 0x82, 0x00, 0x05, 0x1a, 0x00, 0x0c, 0x01, 0x70 }, 9 },
    { "four-octet lengths everywhere",
      { 0x30, 0x84, 0x00, 0x00, 0x00, 0x0a, 0x1a, 0x84, 0x00, 0x00, 0x00,
        0x00, 0x0c, 0x81, 0x01, 0x70 }, 16 },
    { "three-octet inner lengths",
      { 0x30, 0x0b, 0x1a, 0x83, 0x00, 0x00, 0x00, 0x0c, 0x83, 0x00, 0x00,
        0x01, 0x70 }, 13 },
};

static void ber_accepted(const struct good *g)
{
    unsigned char buf[40];
    char *uri = NULL;
    size_t n;

    check(p11b_uri_der_decode(g->der, g->len, &uri) && uri != NULL &&
              strcmp(uri, "p") == 0,
          g->what);
    OPENSSL_free(uri);
    /* ... and still every truncation and a trailing byte refused. */
    for (n = 0; n < g->len; n++) {
        uri = NULL;
        check(!p11b_uri_der_decode(g->der, n, &uri), "truncated BER refused");
        OPENSSL_free(uri);
    }
    memcpy(buf, g->der, g->len);
    buf[g->len] = 0x00;
    uri = NULL;
    check(!p11b_uri_der_decode(buf, g->len + 1, &uri),
          "BER with a trailing byte refused");
    OPENSSL_free(uri);
}

struct bad {
    const char *what;
    unsigned char der[16];
    size_t len;
};

static const struct bad bad_der[] = {
    { "empty", { 0 }, 0 },
    { "not a SEQUENCE", { 0x31, 0x04, 0x1a, 0x00, 0x0c, 0x00 }, 6 },
    { "empty uri", { 0x30, 0x04, 0x1a, 0x00, 0x0c, 0x00 }, 6 },
    { "uri with NUL", { 0x30, 0x05, 0x1a, 0x00, 0x0c, 0x01, 0x00 }, 7 },
    { "trailing byte", { 0x30, 0x05, 0x1a, 0x00, 0x0c, 0x01, 0x70, 0x00 }, 8 },
    { "indefinite length", { 0x30, 0x80, 0x1a, 0x00, 0x0c, 0x01, 0x70 }, 7 },
    { "long form with no length octets", { 0x30, 0x80 }, 2 },
    { "reserved length 0xff", { 0x30, 0xff, 0x1a, 0x00, 0x0c, 0x01, 0x70 }, 7 },
    { "five length octets",
      { 0x30, 0x85, 0, 0, 0, 0, 0x05, 0x1a, 0x00, 0x0c, 0x01, 0x70 }, 12 },
    { "length octets cut short", { 0x30, 0x82, 0x00 }, 3 },
    { "long form past the end",
      { 0x30, 0x84, 0x00, 0x00, 0x01, 0x00, 0x1a, 0x00, 0x0c, 0x01, 0x70 },
      11 },
    { "huge long form", { 0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x1a }, 7 },
    { "long form inner string past the SEQUENCE",
      { 0x30, 0x06, 0x1a, 0x00, 0x0c, 0x82, 0x00, 0x02, 0x70 }, 9 },
    { "length past the end", { 0x30, 0x05, 0x1a, 0x00, 0x0c, 0x09, 0x70 }, 7 },
    { "wrong string tags", { 0x30, 0x05, 0x0c, 0x00, 0x1a, 0x01, 0x70 }, 7 },
    { "missing uri", { 0x30, 0x02, 0x1a, 0x00 }, 4 },
    { "long form 3 bytes", { 0x30, 0x83, 0x00, 0x00, 0x05 }, 5 },
};

static const char pem_mix[] =
    "junk before\n"
    "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"
    "-----BEGIN PKCS#11 PROVIDER URI-----\n"
    "MDUaGVBLQ1MjMTEgUHJvdmlkZXIgVVJJIHYxLjAMGHBrY3MxMTpvYmplY3Q9c2Vy\n"
    "dmVyLWtleQ==\n"
    "-----END PKCS#11 PROVIDER URI-----\n"
    "trailing junk\n";

int main(void)
{
    char *uri = NULL;
    size_t i;

    round_trip("pkcs11:object=a");
    round_trip("pkcs11:token=p11b-test;manufacturer=SoftHSM%20project;"
               "serial=1ec5913956dea7be;model=SoftHSM%20v2;object=rsa;"
               "id=%01;type=private");
    {
        char big[600];

        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        memcpy(big, "pkcs11:object=", 14);
        round_trip(big); /* two-byte DER lengths */
    }
    for (i = 0; i < sizeof(ber_der) / sizeof(ber_der[0]); i++)
        ber_accepted(&ber_der[i]);
    for (i = 0; i < sizeof(bad_der) / sizeof(bad_der[0]); i++) {
        uri = NULL;
        check(!p11b_uri_der_decode(bad_der[i].der, bad_der[i].len, &uri),
              bad_der[i].what);
        OPENSSL_free(uri);
    }
    uri = NULL;
    check(p11b_uri_pem_find((const unsigned char *)pem_mix,
                            sizeof(pem_mix) - 1, &uri) &&
              strcmp(uri, "pkcs11:object=server-key") == 0,
          "URI block found after a certificate block");
    OPENSSL_free(uri);
    uri = NULL;
    check(!p11b_uri_pem_find((const unsigned char *)"no pem here", 11, &uri),
          "no block: nothing found");
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
