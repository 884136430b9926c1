/*
 * libFuzzer target: the PEM-wrapped URI finder and DER decoder. Any input
 * is searched for the URI block; a found URI must encode back to DER that
 * decodes to the same string.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "provider/uri_pem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *der = NULL;
    char *uri = NULL, *back = NULL;
    size_t len = 0;

    if (p11b_uri_der_decode(data, size, &uri))
        OPENSSL_free(uri);
    uri = NULL;
    if (!p11b_uri_pem_find(data, size, &uri))
        return 0;
    if (!p11b_uri_der_encode(P11B_URI_PEM_DESC, uri, &der, &len) ||
        !p11b_uri_der_decode(der, len, &back) || strcmp(uri, back) != 0)
        abort();
    OPENSSL_free(der);
    OPENSSL_free(back);
    OPENSSL_free(uri);
    return 0;
}
