/*
 * The pkcs11: store, for use inside the provider (the PEM-wrapped URI
 * decoder loads keys through it).
 */
#ifndef P11B_STORE_H
#define P11B_STORE_H

#include <openssl/core.h>

struct p11b_prov;
struct p11b_key;

/* The first key the URI names: a private key when want_private is set,
 * else a public key (a public object, or the public half of a private
 * key). Raises and returns 0 when there is none. */
int p11b_store_load_key(struct p11b_prov *prov, const char *uri,
                        int want_private, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                        void *pw_cbarg, struct p11b_key **out);

#endif
