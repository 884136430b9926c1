/*
 * Digests fetched once per provider instance (see digests.h).
 */
#include "config.h"

#include <string.h>

#include "provider/digests.h"

void p11b_digest_cache_init(struct p11b_digest_cache *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
}

void p11b_digest_cache_clear(struct p11b_digest_cache *c)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        EVP_MD_free(c->e[i].md);
    c->n = 0;
    pthread_mutex_destroy(&c->lock);
}

EVP_MD *p11b_digest_fetch(struct p11b_digest_cache *c, OSSL_LIB_CTX *libctx,
                          const char *propq, const char *name)
{
    EVP_MD *md = NULL;
    int found = 0;
    size_t i;

    if (name == NULL)
        return NULL;
    pthread_mutex_lock(&c->lock);
    for (i = 0; i < c->n && !found; i++) {
        if (strcmp(c->e[i].name, name) == 0) {
            found = 1;
            md = c->e[i].md;
            if (!EVP_MD_up_ref(md))
                md = NULL;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (found) /* c->n is read under the lock only */
        return md;
    md = EVP_MD_fetch(libctx, name, propq);
    if (md == NULL || strlen(name) >= sizeof(c->e[0].name))
        return md;
    pthread_mutex_lock(&c->lock);
    /* Another thread may have added it meanwhile: then one stays ours. */
    for (i = 0; i < c->n && strcmp(c->e[i].name, name) != 0; i++)
        ;
    if (i == c->n && c->n < P11B_DIGEST_CACHE && EVP_MD_up_ref(md)) {
        strcpy(c->e[c->n].name, name);
        c->e[c->n].md = md;
        c->n++;
    }
    pthread_mutex_unlock(&c->lock);
    return md;
}
