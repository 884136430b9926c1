/*
 * Signatures with token keys, shared by the RSA and ECDSA families.
 *
 * Signing: the message is hashed in software (so the context can be
 * duplicated at any time, as EVP_DigestSignFinal on OpenSSL 3.0 does) and
 * the digest is signed on the token with the raw mechanism (CKM_RSA_PKCS
 * with a DigestInfo, CKM_RSA_PKCS_PSS, CKM_ECDSA). When the token lacks
 * the raw mechanism, a combined hash-and-sign one gets the whole message
 * (kept in memory), and RSA falls back to CKM_RSA_X_509 with the padding
 * done here.
 *
 * Everything public runs in software on the key's public half: parameter
 * checks, AlgorithmIdentifiers, verification. A software context with the
 * same settings is kept beside ours and answers those.
 */
#ifndef P11B_SIGNATURE_H
#define P11B_SIGNATURE_H

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "pkcs11/p11.h"
#include "provider/errors.h"

struct p11b_prov;
struct p11b_key;

enum p11b_sig_op {
    P11B_SIG_NONE = 0,
    P11B_SIG_SIGN,
    P11B_SIG_VERIFY,
    P11B_SIG_DIGEST_SIGN,
    P11B_SIG_DIGEST_VERIFY,
    P11B_SIG_VERIFY_RECOVER,
};

enum p11b_sig_kind {
    P11B_SIG_RSA,
    P11B_SIG_ECDSA,
    P11B_SIG_EDDSA, /* one-shot over the message: no hashing of ours */
};

struct p11b_sig_ctx {
    struct p11b_prov *prov;
    struct p11b_key *key;
    char *propq;
    enum p11b_sig_op op;
    enum p11b_sig_kind kind;
    const char *fixed_md;     /* composite ("RSA-SHA256"): its digest    */

    /* The software twin: EVP_PKEY_verify_init on the public half, or a
     * DigestVerify context holding one. */
    EVP_PKEY_CTX *soft;       /* owned unless soft_md holds it          */
    EVP_MD_CTX *soft_md;

    /* ECDSA digest-sign makes the twin only when something asks it
     * (parameters): the hot path of libssl's handshakes never does. */
    int twin_deferred;
    char mdname[64];

    /* The digest of a digest operation, fetched once (digests.h). */
    EVP_MD *md;

    /* digest-sign */
    EVP_MD_CTX *md_ctx;       /* software hash of the message, made at
                               * the first update (a one-shot
                               * digest-sign hashes without one)       */
    unsigned char *msg;       /* whole message, for a combined mechanism */
    size_t msg_len;
    int buffer_msg;
};

/* Mechanism plan for one signature, chosen by the family. */
struct p11b_sig_plan {
    CK_MECHANISM mech;
    CK_RSA_PKCS_PSS_PARAMS pss;
    int wants_message;        /* combined mechanism: sign the message   */
};

void *p11b_sig_newctx(void *provctx, const char *propq,
                      enum p11b_sig_kind kind);
void p11b_sig_freectx(void *vctx);
#ifdef OSSL_FUNC_SIGNATURE_SIGN_MESSAGE_INIT
/* OpenSSL 3.4+ composite algorithms ("RSA-SHA256", "ECDSA-SHA256"): the
 * digest is part of the name. sign_message_init is a digest-sign with
 * it; sign_init signs a digest of it. */
void *p11b_sig_newctx_md(void *provctx, const char *propq,
                         enum p11b_sig_kind kind, const char *md);
int p11b_sig_message_init(void *vctx, void *keydata,
                          const OSSL_PARAM params[]);
int p11b_sig_composite_sign_init(void *vctx, void *keydata,
                                 const OSSL_PARAM params[]);
#endif
void *p11b_sig_dupctx(void *vctx);
int p11b_sig_init(void *vctx, void *keydata, const OSSL_PARAM params[],
                  enum p11b_sig_op op);
int p11b_sig_digest_init(void *vctx, const char *mdname, void *keydata,
                         const OSSL_PARAM params[], enum p11b_sig_op op);
int p11b_sig_verify(void *vctx, const unsigned char *sig, size_t siglen,
                    const unsigned char *tbs, size_t tbslen);
/* Public-key work, in software on the public half like verify. */
int p11b_sig_verify_recover(void *vctx, unsigned char *rout, size_t *routlen,
                            size_t routsize, const unsigned char *sig,
                            size_t siglen);
/* The digest of tbs for a one-shot digest-sign (EVP_DigestSign). */
int p11b_sig_digest_sign_oneshot(struct p11b_sig_ctx *ctx,
                                 const unsigned char *tbs, size_t tbslen,
                                 unsigned char *md, size_t *mdlen);
int p11b_sig_digest_sign_update(void *vctx, const unsigned char *data,
                                size_t datalen);
int p11b_sig_digest_verify_update(void *vctx, const unsigned char *data,
                                  size_t datalen);
int p11b_sig_digest_verify_final(void *vctx, const unsigned char *sig,
                                 size_t siglen);
int p11b_sig_get_ctx_params(void *vctx, OSSL_PARAM params[]);
int p11b_sig_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

/* The digest the software twin was told to use, or NULL. */
const EVP_MD *p11b_sig_md(struct p11b_sig_ctx *ctx, EVP_MD **fetched);

/* The whole message of a digest-sign, or its digest: what the family's
 * sign function gets. */
int p11b_sig_digest_sign_input(struct p11b_sig_ctx *ctx, unsigned char *md,
                               size_t *mdlen);

/* C_SignInit + C_Sign with the key, retried once when the session or
 * login was lost. out must hold *outlen bytes. What came of it is the
 * result (errors.h, enum p11b_outcome): a refusal of the token's own call
 * (P11B_OUT_TOKEN, *rv) is left to the caller, who may try another way
 * and otherwise raises it once (p11b_sig_raise_rv). */
enum p11b_outcome p11b_sig_token_call(struct p11b_sig_ctx *ctx,
                                      CK_MECHANISM *mech,
                                      const unsigned char *in, size_t inlen,
                                      unsigned char *out, size_t *outlen,
                                      CK_RV *rv);
/* The same, with every failure raised: 1 on success, else 0. rv_out (may
 * be NULL) receives the CK_RV, for information only. */
int p11b_sig_token_sign(struct p11b_sig_ctx *ctx, CK_MECHANISM *mech,
                        const unsigned char *in, size_t inlen,
                        unsigned char *out, size_t *outlen, CK_RV *rv_out);
void p11b_sig_raise_rv(struct p11b_sig_ctx *ctx, const CK_MECHANISM *mech,
                       CK_RV rv);


/* 1 if the key's token has the mechanism and the key allows it
 * (CKA_ALLOWED_MECHANISMS). */
int p11b_sig_usable(struct p11b_sig_ctx *ctx, CK_MECHANISM_TYPE mech);

/* A precomputed digest must have the digest's size: raises otherwise. */
int p11b_sig_digest_fits(struct p11b_sig_ctx *ctx, const EVP_MD *md,
                         size_t tbslen);

/* signature size for a NULL output buffer, or a check of sigsize. */
int p11b_sig_size_check(struct p11b_sig_ctx *ctx, unsigned char *sig,
                        size_t *siglen, size_t sigsize);

#endif
