/*
 * p11b-sigmsg: sign a file with OpenSSL 3.4+'s message-signing API and a
 * composite algorithm fetched from the pkcs11 provider, the way an
 * application would:
 *
 *   p11b-sigmsg ALGORITHM KEY-URI IN OUT [stream|oneshot|digest]
 *
 * stream:  EVP_PKEY_sign_message_init, _update in pieces, _final
 * oneshot: EVP_PKEY_sign_message_init, EVP_PKEY_sign over the message
 * digest:  EVP_PKEY_sign_init_ex2 with the composite, EVP_PKEY_sign over
 *          the message's digest (IN holds the digest)
 *
 * The key is loaded through OSSL_STORE (OPENSSL_CONF loads the provider).
 * Exit 0 on success, 1 with OpenSSL's errors on failure, 77 when the
 * OpenSSL headers it was built with have no message-signing API.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/store.h>

#ifndef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
int main(void)
{
    printf("no message-signing API in the headers of %s\n",
           OPENSSL_VERSION_TEXT);
    return 77;
}
#else

static EVP_PKEY *load_key(const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open(uri, NULL, NULL, NULL, NULL);
    OSSL_STORE_INFO *info;
    EVP_PKEY *pkey = NULL;

    while (st != NULL && pkey == NULL && !OSSL_STORE_eof(st)) {
        info = OSSL_STORE_load(st);
        if (info != NULL && OSSL_STORE_INFO_get_type(info) ==
                                OSSL_STORE_INFO_PKEY)
            pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    return pkey;
}

static int read_file(const char *path, unsigned char *buf, size_t *len)
{
    FILE *f = fopen(path, "rb");

    if (f == NULL)
        return 0;
    *len = fread(buf, 1, *len, f);
    fclose(f);
    return 1;
}

static int sign(EVP_PKEY_CTX *ctx, EVP_SIGNATURE *alg, const char *mode,
                const unsigned char *in, size_t inlen, unsigned char *sig,
                size_t *siglen)
{
    size_t half = inlen / 2;

    if (strcmp(mode, "digest") == 0)
        return EVP_PKEY_sign_init_ex2(ctx, alg, NULL) > 0 &&
               EVP_PKEY_sign(ctx, sig, siglen, in, inlen) > 0;
    if (EVP_PKEY_sign_message_init(ctx, alg, NULL) <= 0)
        return 0;
    if (strcmp(mode, "oneshot") == 0)
        return EVP_PKEY_sign(ctx, NULL, siglen, in, inlen) > 0 &&
               EVP_PKEY_sign(ctx, sig, siglen, in, inlen) > 0;
    return EVP_PKEY_sign_message_update(ctx, in, half) > 0 &&
           EVP_PKEY_sign_message_update(ctx, in + half, inlen - half) > 0 &&
           EVP_PKEY_sign_message_final(ctx, NULL, siglen) > 0 &&
           EVP_PKEY_sign_message_final(ctx, sig, siglen) > 0;
}

int main(int argc, char **argv)
{
    static unsigned char in[1 << 16], sig[1024];
    size_t inlen = sizeof(in), siglen = sizeof(sig);
    const char *mode = argc > 5 ? argv[5] : "stream";
    EVP_SIGNATURE *alg = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    FILE *out = NULL;
    int ok = 0;

    if (argc < 5) {
        fprintf(stderr, "usage: %s ALG KEY-URI IN OUT [stream|oneshot|"
                        "digest]\n", argv[0]);
        return 2;
    }
    if (!read_file(argv[3], in, &inlen)) {
        perror(argv[3]);
        return 1;
    }
    pkey = load_key(argv[2]);
    alg = EVP_SIGNATURE_fetch(NULL, argv[1], "provider=pkcs11");
    if (pkey != NULL && alg != NULL)
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx != NULL && sign(ctx, alg, mode, in, inlen, sig, &siglen) &&
        (out = fopen(argv[4], "wb")) != NULL)
        ok = fwrite(sig, 1, siglen, out) == siglen;
    if (out != NULL && fclose(out) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "p11b-sigmsg: %s with %s failed (key %s, "
                        "algorithm %s)\n", mode, argv[1],
                pkey != NULL ? "loaded" : "not loaded",
                alg != NULL ? "fetched" : "not fetched");
        ERR_print_errors_fp(stderr);
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_SIGNATURE_free(alg);
    EVP_PKEY_free(pkey);
    return ok ? 0 : 1;
}
#endif
