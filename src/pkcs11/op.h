/*
 * Operations on token keys: the only place that signs, decrypts, derives,
 * generates or copies keys on a token (through the one door of calls.h).
 *
 * The caller asks for one operation ("sign these bytes with this key and
 * this mechanism") and gets a CK_RV and bytes. A session is borrowed from
 * the slot's pool for the operation and given back before the call
 * returns; an operation never stays active in a pooled session: after a
 * failure the session is closed, not pooled. Retrying after a lost
 * session or login is the caller's decision (it knows the key again).
 */
#ifndef P11B_OP_H
#define P11B_OP_H

#include <stddef.h>
#include "pkcs11/p11.h"

struct p11b_obj;
struct p11b_session;
struct p11b_slot;

/* The per-operation login (CKU_CONTEXT_SPECIFIC) of a key with
 * CKA_ALWAYS_AUTHENTICATE: the caller's function, called after C_*Init
 * with the session in which the operation is active. It returns the
 * result of the login it made (or why it made none). */
struct p11b_op_auth {
    CK_RV (*context_login)(void *arg, struct p11b_session *sess);
    void *arg;
};

/* A private-key operation. */
struct p11b_op {
    struct p11b_obj *key;            /* of the slot's current generation */
    int may_copy;                    /* a session copy of the key may be
                                      * used (pkcs11-module-cache-keys)   */
    const struct p11b_op_auth *auth; /* for CKA_ALWAYS_AUTHENTICATE keys */
};

/* Where an operation failed: its own call, or the context login. */
enum p11b_op_stage {
    P11B_OP_STAGE_TOKEN = 0, /* the operation's own Cryptoki calls    */
    P11B_OP_STAGE_SESSION,   /* no session could be had for it        */
    P11B_OP_STAGE_LOGIN,     /* the context login (auth's own result) */
};

/* C_SignInit + C_Sign. *outlen is the capacity of out on entry, the
 * signature's length on success. *stage (may be NULL) says where a
 * failure happened. */
CK_RV p11b_op_sign(const struct p11b_op *op, CK_MECHANISM *mech,
                   const unsigned char *in, size_t inlen, unsigned char *out,
                   size_t *outlen, enum p11b_op_stage *stage);

/* C_DecryptInit + C_Decrypt, as p11b_op_sign. Logged at level 2 without
 * anything that depends on the input's padding. */
CK_RV p11b_op_decrypt(const struct p11b_op *op, CK_MECHANISM *mech,
                      const unsigned char *in, size_t inlen,
                      unsigned char *out, size_t *outlen,
                      enum p11b_op_stage *stage);

/* C_DeriveKey into a session object (a generic secret of len bytes,
 * extractable), read its value into out, destroy it. */
CK_RV p11b_op_derive_secret(const struct p11b_op *op, CK_MECHANISM *mech,
                            unsigned char *out, size_t len,
                            enum p11b_op_stage *stage);

/* C_GenerateKeyPair on the slot; the new objects' handles. */
CK_RV p11b_op_generate_pair(struct p11b_slot *slot, CK_MECHANISM *mech,
                            CK_ATTRIBUTE *pub, CK_ULONG npub,
                            CK_ATTRIBUTE *priv, CK_ULONG npriv,
                            CK_OBJECT_HANDLE *out_pub,
                            CK_OBJECT_HANDLE *out_priv);

#endif
