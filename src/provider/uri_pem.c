/*
 * PEM-wrapped pkcs11: URIs (see uri_pem.h).
 */
#include "config.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "provider/uri_pem.h"

#define TAG_SEQUENCE 0x30
#define TAG_UTF8STRING 0x0c
#define TAG_VISIBLESTRING 0x1a

static size_t der_len_size(size_t len)
{
    return len < 0x80 ? 1 : len < 0x100 ? 2 : 3;
}

static unsigned char *put_tlv_header(unsigned char *p, unsigned char tag,
                                     size_t len)
{
    *p++ = tag;
    if (len < 0x80) {
        *p++ = (unsigned char)len;
    } else if (len < 0x100) {
        *p++ = 0x81;
        *p++ = (unsigned char)len;
    } else {
        *p++ = 0x82;
        *p++ = (unsigned char)(len >> 8);
        *p++ = (unsigned char)len;
    }
    return p;
}

int p11b_uri_der_encode(const char *desc, const char *uri, unsigned char **out,
                        size_t *out_len)
{
    size_t dl = strlen(desc), ul = strlen(uri), inner, total;
    unsigned char *buf, *p;

    if (dl > P11B_URI_PEM_MAX || ul > P11B_URI_PEM_MAX)
        return 0;
    inner = 1 + der_len_size(dl) + dl + 1 + der_len_size(ul) + ul;
    if (inner >= 0x10000)
        return 0;
    total = 1 + der_len_size(inner) + inner;
    buf = OPENSSL_malloc(total);
    if (buf == NULL)
        return 0;
    p = put_tlv_header(buf, TAG_SEQUENCE, inner);
    p = put_tlv_header(p, TAG_VISIBLESTRING, dl);
    memcpy(p, desc, dl);
    p = put_tlv_header(p + dl, TAG_UTF8STRING, ul);
    memcpy(p, uri, ul);
    *out = buf;
    *out_len = total;
    return 1;
}

/* Length octets of the long form we take: BER lets a writer use more
 * than the minimum (other tools write 0x82 00 2a, or always four). */
#define LEN_OCTETS_MAX 4

/* One TLV with the expected tag; its content, and where the next starts.
 * Definite lengths only, short or long form (BER: leading zero octets
 * allowed), never past the end of the input. */
static int get_tlv(const unsigned char **p, const unsigned char *end,
                   unsigned char tag, const unsigned char **content,
                   size_t *clen)
{
    const unsigned char *q = *p;
    size_t len, n, i;

    if (end - q < 2 || q[0] != tag)
        return 0;
    len = q[1];
    q += 2;
    if (len >= 0x80) {
        n = len & 0x7f;
        /* 0x80: indefinite (BER only, not for this format); 0xff is
         * reserved; more octets than any length we could hold. */
        if (n == 0 || n > LEN_OCTETS_MAX || (size_t)(end - q) < n)
            return 0;
        for (len = 0, i = 0; i < n; i++)
            len = (len << 8) | q[i];
        q += n;
    }
    if ((size_t)(end - q) < len)
        return 0;
    *content = q;
    *clen = len;
    *p = q + len;
    return 1;
}

int p11b_uri_der_decode(const unsigned char *der, size_t len, char **uri)
{
    const unsigned char *p = der, *end = der + len, *seq, *s;
    size_t seqlen, slen;

    if (!get_tlv(&p, end, TAG_SEQUENCE, &seq, &seqlen) || p != end)
        return 0;
    p = seq;
    end = seq + seqlen;
    if (!get_tlv(&p, end, TAG_VISIBLESTRING, &s, &slen) ||
        !get_tlv(&p, end, TAG_UTF8STRING, &s, &slen) || p != end)
        return 0;
    if (slen == 0 || memchr(s, '\0', slen) != NULL)
        return 0;
    *uri = OPENSSL_strndup((const char *)s, slen);
    return *uri != NULL;
}

int p11b_uri_pem_find(const unsigned char *text, size_t len, char **uri)
{
    BIO *in;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    int found = 0;

    if (len == 0 || len > 16 * P11B_URI_PEM_MAX)
        return 0;
    in = BIO_new_mem_buf(text, (int)len);
    if (in == NULL)
        return 0;
    ERR_set_mark();
    /* PEM_read_bio walks the blocks in order, whatever their labels. */
    while (!found && PEM_read_bio(in, &name, &header, &data, &dlen) > 0) {
        if (strcmp(name, P11B_URI_PEM_LABEL) == 0)
            found = p11b_uri_der_decode(data, (size_t)dlen, uri);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        name = header = NULL;
        data = NULL;
    }
    ERR_pop_to_mark(); /* the end of the input is not an error */
    BIO_free(in);
    return found;
}
