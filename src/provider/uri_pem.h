/*
 * The PEM-wrapped pkcs11: URI, for programs that only read key files:
 *   -----BEGIN PKCS#11 PROVIDER URI-----
 *   base64 of DER SEQUENCE { desc VisibleString, uri UTF8String }
 *   -----END PKCS#11 PROVIDER URI-----
 * The format other PKCS#11 providers use, so files work with either.
 * Pure functions: unit-tested and fuzzed on their own.
 */
#ifndef P11B_URI_PEM_H
#define P11B_URI_PEM_H

#include <stddef.h>

#define P11B_URI_PEM_LABEL "PKCS#11 PROVIDER URI"
#define P11B_URI_PEM_DESC "PKCS#11 Provider URI v1.0"
#define P11B_URI_PEM_MAX (64 * 1024)

/* DER of SEQUENCE { desc, uri } into a new OPENSSL_malloc'd buffer. */
int p11b_uri_der_encode(const char *desc, const char *uri, unsigned char **out,
                        size_t *out_len);

/* The URI of such a DER body, as a new NUL-terminated string; 0 when the
 * DER is malformed, has trailing bytes, or the URI holds a NUL. */
int p11b_uri_der_decode(const unsigned char *der, size_t len, char **uri);

/* The URI of the first PEM block with our label anywhere in text (other
 * PEM blocks, such as certificates, may come before or after it). */
int p11b_uri_pem_find(const unsigned char *text, size_t len, char **uri);

#endif
