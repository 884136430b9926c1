/*
 * Digests fetched once per provider instance: a P-256 signature would
 * otherwise fetch its SHA-256 anew (an EVP_MD_fetch costs about as much
 * as everything else the provider does for it).
 */
#ifndef P11B_DIGESTS_H
#define P11B_DIGESTS_H

#include <pthread.h>
#include <stddef.h>

#include <openssl/evp.h>

#define P11B_DIGEST_CACHE 8

struct p11b_digest_cache {
    pthread_mutex_t lock;
    struct {
        char name[32];  /* as asked: "SHA256", "SHA2-256", ... */
        EVP_MD *md;
    } e[P11B_DIGEST_CACHE];
    size_t n;           /* locked: lock */
};

void p11b_digest_cache_init(struct p11b_digest_cache *c);
void p11b_digest_cache_clear(struct p11b_digest_cache *c);

/* The digest called `name` from libctx with the properties propq (the
 * same for every call on one cache), a new reference for the caller to
 * EVP_MD_free, or NULL. */
EVP_MD *p11b_digest_fetch(struct p11b_digest_cache *c, OSSL_LIB_CTX *libctx,
                          const char *propq, const char *name);

#endif
