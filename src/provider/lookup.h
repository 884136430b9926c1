/*
 * From a pkcs11: URI to keys and certificates: the tokens it selects, the
 * login it needs, the objects it names, each private key paired with its
 * public half. The store lists what a lookup finds; the PEM-wrapped URI
 * decoder and key generation take one key from it.
 */
#ifndef P11B_LOOKUP_H
#define P11B_LOOKUP_H

#include <stddef.h>

#include <openssl/core.h>

struct p11b_prov;
struct p11b_key;
struct p11b_obj;
struct p11b_uri;

/* Object classes a lookup hands out. */
#define P11B_LOOKUP_PRIV 0x1u
#define P11B_LOOKUP_PUB 0x2u
#define P11B_LOOKUP_CERT 0x4u

/* What to look for. */
struct p11b_lookup_req {
    const struct p11b_uri *uri;
    unsigned int classes;  /* P11B_LOOKUP_*; the URI's type= narrows them */
    /* Keys as public keys: a private key stands for its public half, and
     * only where no public object answered. */
    int public_only;
    const char *alias;     /* a label to look for if the URI has no object= */
    /* Which certificates to keep (NULL: all of them). */
    int (*cert_ok)(const struct p11b_obj *cert, void *arg);
    void *cert_arg;
    OSSL_PASSPHRASE_CALLBACK *pw_cb;
    void *pw_cbarg;
};

struct p11b_lookup_item {
    struct p11b_key *key;  /* a key, or         */
    struct p11b_obj *cert; /* a certificate     */
    char *uri;             /* its URI (malloc)  */
};

/* What a lookup found, in the order found. */
struct p11b_lookup {
    struct p11b_lookup_item *items;
    size_t n, cap;
    /* Tokens listed without their private objects: no PIN went to them
     * (the first one's label and slot, for the note that says so). */
    size_t unsearched;
    char unsearched_label[40];
    unsigned long unsearched_slot;
};

/* What p11b_lookup_key looks for. */
enum p11b_lookup_want {
    P11B_LOOKUP_WANT_PUBLIC, /* a public object, or a private key's half */
    P11B_LOOKUP_WANT_PRIVATE,
    P11B_LOOKUP_WANT_ANY,    /* a private key if the URI names one, else
                                a public key                           */
};

/* Parse a URI meant for this provider (its module-path and module-name,
 * if given, must be ours). Raises and returns NULL when it is not. */
struct p11b_uri *p11b_lookup_parse(struct p11b_prov *prov, const char *uri);

/* Everything the request names, appended to *out. Raises and returns 0
 * when nothing matches or a token fails; *out then holds what was found
 * before (p11b_lookup_clear frees it either way). */
int p11b_lookup_run(struct p11b_prov *prov, const struct p11b_lookup_req *req,
                    struct p11b_lookup *out);
void p11b_lookup_clear(struct p11b_lookup *res);

/* Raise the note that res lists some tokens without their private
 * objects, for want of a PIN (res->unsearched > 0). */
void p11b_lookup_raise_unsearched(struct p11b_prov *prov,
                                  const struct p11b_lookup *res);

/* The one key the URI names, of the kind `want` says. Raises and returns
 * 0 when there is none or when several match. */
int p11b_lookup_key(struct p11b_prov *prov, const char *uri,
                    enum p11b_lookup_want want, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                    void *pw_cbarg, struct p11b_key **out);

/* The key of token object `obj` (a private or public key), its public
 * half taken from obj or, for a private key, from a public key or
 * certificate of the same CKA_ID in pool[0..npool) or on the token. NULL
 * for a key type OpenSSL cannot use through us or one without a public
 * half. */
struct p11b_key *p11b_lookup_key_of(struct p11b_prov *prov,
                                    struct p11b_obj *obj, int public_only,
                                    struct p11b_obj **pool, size_t npool);

#endif
