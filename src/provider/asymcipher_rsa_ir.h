/*
 * PKCS#1 v1.5 decryption with implicit rejection (OpenSSL 3.2+), and the
 * decryption settings it reads (shared with asymcipher_rsa.c, which
 * includes this file; nothing else does).
 */
#ifndef P11B_ASYMCIPHER_RSA_IR_H
#define P11B_ASYMCIPHER_RSA_IR_H

#include <stddef.h>

#include <openssl/evp.h>

struct p11b_prov;

/* What an RSA decryption is asked to do, read from the software twin. */
struct dec_settings {
    int pad;
    EVP_MD *oaep_md;
    EVP_MD *mgf1_md;
    void *label;
    size_t label_len;
    unsigned int client_version;
    unsigned int alt_version;
    unsigned int implicit_rejection; /* what the twin says; 0 on 3.0/3.1 */
    size_t modlen;
};

/* Unpad em, the token's raw decryption of the ciphertext in, with
 * implicit rejection. sec is the token's raw decryption of the value 2
 * (modlen bytes): the secret the rejection is keyed with. A bad padding
 * gives a synthetic message, with no error and no branch on it; 0 only
 * when the computation itself fails (raised). */
int p11b_rsac_unpad_implicit(struct p11b_prov *prov,
                             const struct dec_settings *st,
                             const unsigned char *sec, const unsigned char *em,
                             const unsigned char *in, size_t inlen,
                             unsigned char *out, size_t *outlen);

#endif
