/*
 * EC encodings between tokens and OpenSSL: CKA_EC_POINT (DER-wrapped or
 * raw) to point octets, and a token's raw ECDSA signature (r || s) to DER.
 * Pure functions over bytes (libcrypto only): unit-tested and fuzzed.
 */
#ifndef P11B_ECCONV_H
#define P11B_ECCONV_H

#include <stddef.h>

/* The point octets of a CKA_EC_POINT for the named curve: the value is
 * DER-wrapped (an OCTET STRING) on most tokens and raw on some; whichever
 * form has a valid point length wins. *pt points into d. 0 if neither. */
int p11b_ec_point_octets(const char *curve, const unsigned char *d, size_t len,
                         const unsigned char **pt, size_t *pt_len);

/* r || s (each half of rawlen) into a DER ECDSA-Sig-Value in der, which
 * holds *derlen bytes; *derlen becomes the DER's length. 0 on failure. */
int p11b_ecdsa_raw_to_der(const unsigned char *raw, size_t rawlen,
                          unsigned char *der, size_t *derlen);

#endif
