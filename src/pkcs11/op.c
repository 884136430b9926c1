/*
 * Operations on token keys (see op.h).
 */
#include "config.h"

#include <stdatomic.h>
#include <string.h>

#include "pkcs11/audit.h"
#include "pkcs11/calls.h"
#include "pkcs11/log.h"
#include "pkcs11/library.h"
#include "pkcs11/names.h"
#include "pkcs11/object.h"
#include "pkcs11/op.h"
#include "pkcs11/session.h"
#include "pkcs11/slot.h"

/*
 * The handle to use for an operation: a session copy of the private key
 * where the token allows (SoftHSM signs P-256 in ~40 us with one, ~60 us
 * with the stored key), made once per slot generation in the slot's
 * object session. Not for keys that need a login per operation; not when
 * the caller said no; never again on a slot whose token refused a copy
 * once.
 */
static CK_OBJECT_HANDLE op_handle(const struct p11b_op *op,
                                  unsigned long sess_gen)
{
    static CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl = { CKA_TOKEN, &no, sizeof(no) };
    struct p11b_obj *o = op->key;
    struct p11b_slot *slot = o->slot;
    CK_OBJECT_HANDLE h = o->h, copy;
    CK_SESSION_HANDLE sh;
    unsigned long gen;
    CK_RV rv;

    if (!op->may_copy || o->always_auth || atomic_load(&slot->copy_refused))
        return h;
    /* The hot path: a copy made in the generation of the session we hold
     * (its object session is that generation's); no slot lock. */
    pthread_mutex_lock(&slot->obj_lock);
    if (o->copy != CK_INVALID_HANDLE && o->copy_gen == sess_gen &&
        o->gen == sess_gen)
        h = o->copy;
    pthread_mutex_unlock(&slot->obj_lock);
    if (h != o->h ||
        p11b_slot_object_session(slot, &sh, &gen) != CKR_OK || gen != o->gen)
        return h;
    /* locked: slot->obj_lock (the copy, and calls on the object session) */
    pthread_mutex_lock(&slot->obj_lock);
    if (o->copy != CK_INVALID_HANDLE && o->copy_gen == gen) {
        h = o->copy;
    } else {
        P11B_CALL_WHAT(rv, slot->lib->fns, C_CopyObject, slot->id,
                       "key to a session object", sh, o->h, &tmpl, 1, &copy);
        if (rv == CKR_OK) {
            o->copy = copy;
            o->copy_gen = gen;
            h = copy;
        } else if (!p11b_rv_is_token_gone(rv)) {
            /* the stored key it is, from now on */
            atomic_store(&slot->copy_refused, 1);
        }
    }
    pthread_mutex_unlock(&slot->obj_lock);
    return h;
}

static void set_stage(enum p11b_op_stage *stage, enum p11b_op_stage v)
{
    if (stage != NULL)
        *stage = v;
}

/* After C_*Init succeeded: the context login the key needs, if any. On
 * failure the operation is active in the session, so it is closed. */
static CK_RV context_login(const struct p11b_op *op, struct p11b_session *sess,
                           enum p11b_op_stage *stage)
{
    CK_RV rv;

    if (!op->key->always_auth || op->auth == NULL)
        return CKR_OK;
    rv = op->auth->context_login(op->auth->arg, sess);
    if (rv != CKR_OK) {
        set_stage(stage, P11B_OP_STAGE_LOGIN);
        p11b_session_discard(sess);
    }
    return rv;
}

static CK_RV op_session(const struct p11b_op *op, struct p11b_session *sess,
                        enum p11b_op_stage *stage)
{
    CK_RV rv = p11b_session_acquire(op->key->slot, sess);

    set_stage(stage, rv == CKR_OK ? P11B_OP_STAGE_TOKEN : P11B_OP_STAGE_SESSION);
    return rv;
}

static CK_RV op_sign(const struct p11b_op *op, CK_MECHANISM *mech,
                     const unsigned char *in, size_t inlen, unsigned char *out,
                     size_t *outlen, enum p11b_op_stage *stage)
{
    struct p11b_session sess;
    CK_FUNCTION_LIST *f;
    CK_ULONG len = (CK_ULONG)*outlen;
    CK_OBJECT_HANDLE h;
    char what[32];
    CK_RV rv;

    rv = op_session(op, &sess, stage);
    if (rv != CKR_OK)
        return rv;
    h = op_handle(op, sess.gen);
    f = p11b_session_fns(&sess);
    P11B_CALL_WHAT(rv, f, C_SignInit, sess.slot->id,
                   p11b_mech_name(mech->mechanism), sess.h, mech, h);
    if (rv == CKR_OK && (rv = context_login(op, &sess, stage)) != CKR_OK)
        return rv;
    if (rv == CKR_OK)
        P11B_CALL_WHAT(rv, f, C_Sign, sess.slot->id,
                       p11b_call_what(what, sizeof(what), "%zu bytes", inlen),
                       sess.h, (CK_BYTE *)in, (CK_ULONG)inlen, out, &len);
    p11b_session_release_rv(&sess, rv);
    if (rv == CKR_OK)
        *outlen = len;
    return rv;
}

static CK_RV op_decrypt(const struct p11b_op *op, CK_MECHANISM *mech,
                        const unsigned char *in, size_t inlen,
                        unsigned char *out, size_t *outlen,
                        enum p11b_op_stage *stage)
{
    struct p11b_session sess;
    CK_FUNCTION_LIST *f;
    CK_ULONG len = (CK_ULONG)*outlen;
    CK_OBJECT_HANDLE h;
    char what[32];
    CK_RV rv;

    rv = op_session(op, &sess, stage);
    if (rv != CKR_OK)
        return rv;
    h = op_handle(op, sess.gen);
    f = p11b_session_fns(&sess);
    P11B_CALL_WHAT(rv, f, C_DecryptInit, sess.slot->id,
                   p11b_mech_name(mech->mechanism), sess.h, mech, h);
    if (rv == CKR_OK && (rv = context_login(op, &sess, stage)) != CKR_OK)
        return rv;
    /* The log line gives the input length and the result only: nothing
     * in it may differ with the padding of the input. */
    if (rv == CKR_OK)
        P11B_CALL_WHAT(rv, f, C_Decrypt, sess.slot->id,
                       p11b_call_what(what, sizeof(what), "%zu bytes", inlen),
                       sess.h, (CK_BYTE *)in, (CK_ULONG)inlen, out, &len);
    p11b_session_release_rv(&sess, rv);
    if (rv == CKR_OK)
        *outlen = len;
    return rv;
}

static CK_RV op_derive_secret(const struct p11b_op *op, CK_MECHANISM *mech,
                              unsigned char *out, size_t len,
                              enum p11b_op_stage *stage)
{
    static CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    static CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG vlen = (CK_ULONG)len;
    CK_ATTRIBUTE tmpl[] = {
        { CKA_CLASS, &cls, sizeof(cls) },   { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &no, sizeof(no) },     { CKA_PRIVATE, &no, sizeof(no) },
        { CKA_SENSITIVE, &no, sizeof(no) }, { CKA_EXTRACTABLE, &yes, sizeof(yes) },
        { CKA_VALUE_LEN, &vlen, sizeof(vlen) },
    };
    CK_ATTRIBUTE val = { CKA_VALUE, out, (CK_ULONG)len };
    CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE, h;
    struct p11b_session sess;
    CK_FUNCTION_LIST *f;
    CK_RV rv, rv2;

    rv = op_session(op, &sess, stage);
    if (rv != CKR_OK)
        return rv;
    h = op_handle(op, sess.gen);
    f = p11b_session_fns(&sess);
    P11B_CALL_WHAT(rv, f, C_DeriveKey, sess.slot->id,
                   p11b_mech_name(mech->mechanism), sess.h, mech, h, tmpl,
                   P11B_NELEM(tmpl), &secret);
    if (rv == CKR_OK) {
        P11B_CALL_WHAT(rv, f, C_GetAttributeValue, sess.slot->id,
                       "derived secret", sess.h, secret, &val, 1);
        if (rv == CKR_OK && val.ulValueLen != len)
            rv = CKR_KEY_SIZE_RANGE;
        P11B_CALL_WHAT(rv2, f, C_DestroyObject, sess.slot->id,
                       "derived secret", sess.h, secret);
        (void)rv2;
    }
    p11b_session_release_rv(&sess, rv);
    return rv;
}

CK_RV p11b_op_generate_pair(struct p11b_slot *slot, CK_MECHANISM *mech,
                            CK_ATTRIBUTE *pub, CK_ULONG npub,
                            CK_ATTRIBUTE *priv, CK_ULONG npriv,
                            CK_OBJECT_HANDLE *out_pub,
                            CK_OBJECT_HANDLE *out_priv)
{
    struct p11b_session sess;
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_RV rv;

    rv = p11b_session_acquire(slot, &sess);
    if (rv != CKR_OK)
        return rv;
    P11B_CALL_WHAT(rv, p11b_session_fns(&sess), C_GenerateKeyPair, slot->id,
                   p11b_mech_name(mech->mechanism), sess.h, mech, pub, npub,
                   priv, npriv, &hpub, &hpriv);
    p11b_audit_keygen(slot, mech->mechanism, priv, npriv, rv);
    p11b_session_release_rv(&sess, rv);
    if (rv != CKR_OK)
        return rv;
    *out_pub = hpub;
    *out_priv = hpriv;
    return CKR_OK;
}

/* The operations with their audit line (pkcs11/audit.h): one per attempt,
 * whatever stage it ended in. */
CK_RV p11b_op_sign(const struct p11b_op *op, CK_MECHANISM *mech,
                   const unsigned char *in, size_t inlen, unsigned char *out,
                   size_t *outlen, enum p11b_op_stage *stage)
{
    CK_RV rv = op_sign(op, mech, in, inlen, out, outlen, stage);

    p11b_audit_key(P11B_AUDIT_SIGN, op->key, mech->mechanism, rv);
    return rv;
}

CK_RV p11b_op_decrypt(const struct p11b_op *op, CK_MECHANISM *mech,
                      const unsigned char *in, size_t inlen,
                      unsigned char *out, size_t *outlen,
                      enum p11b_op_stage *stage)
{
    CK_RV rv = op_decrypt(op, mech, in, inlen, out, outlen, stage);

    p11b_audit_key(P11B_AUDIT_DECRYPT, op->key, mech->mechanism, rv);
    return rv;
}

CK_RV p11b_op_derive_secret(const struct p11b_op *op, CK_MECHANISM *mech,
                            unsigned char *out, size_t len,
                            enum p11b_op_stage *stage)
{
    CK_RV rv = op_derive_secret(op, mech, out, len, stage);

    p11b_audit_key(P11B_AUDIT_DERIVE, op->key, mech->mechanism, rv);
    return rv;
}
