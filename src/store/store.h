/*
 * The pkcs11: store, for use inside the provider (the PEM-wrapped URI
 * decoder loads keys through it).
 */
#ifndef P11B_STORE_H
#define P11B_STORE_H

#include <openssl/core.h>

struct p11b_prov;
struct p11b_key;

/* What p11b_store_load_key looks for. */
#define P11B_STORE_WANT_PUBLIC 0  /* a public object, or a private key's
                                     public half                         */
#define P11B_STORE_WANT_PRIVATE 1 /* a private key                       */
#define P11B_STORE_WANT_ANY 2     /* a private key if the URI names one,
                                     else a public key                   */

/* The key the URI names, of the kind `want` says. Raises and returns 0
 * when there is none. */
int p11b_store_load_key(struct p11b_prov *prov, const char *uri, int want,
                        OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                        struct p11b_key **out);

#endif
