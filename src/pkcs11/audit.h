/*
 * The audit trail of key use (pkcs11-audit-log): one JSON line per login,
 * failed login, and operation on a token key, to a file of the user's own
 * or to the system logger (facility authpriv). docs/SECURITY.md describes
 * the line; this header is what the rest of the code calls.
 *
 * The trail is one per process (like the debug log): the first provider
 * instance whose configuration names one opens it, and every key use of
 * the process goes to it. Each line is written whole with one write(2)
 * (O_APPEND) or one datagram, when the event happens: nothing is kept in
 * memory, so a crash or a fork loses no line and a forked child writes
 * its own lines with its own pid. A write that fails never fails the
 * operation; the first failure says so in the debug log.
 *
 * Never written: a PIN, data, a signature, a secret; the URI is the
 * object's canonical path (token, manufacturer, serial, model, object,
 * id, type), with no query part.
 */
#ifndef P11B_AUDIT_H
#define P11B_AUDIT_H

#include "pkcs11/p11.h"

struct p11b_obj;
struct p11b_slot;

enum p11b_audit_event {
    P11B_AUDIT_LOGIN = 0,
    P11B_AUDIT_LOGIN_FAILED,
    P11B_AUDIT_SIGN,
    P11B_AUDIT_DECRYPT,
    P11B_AUDIT_DERIVE,
    P11B_AUDIT_KEYGEN,
};

/* The value of pkcs11-audit-log: "syslog" or "file:PATH". 1 when the
 * value is one of these (even if the trail could not be opened: that is
 * said in the debug log, and key operations go on without it); 0 with
 * *why for a value we do not understand. A process has one trail: a
 * second, different value is ignored (debug log). Each successful call
 * takes a reference that p11b_audit_close gives back. */
int p11b_audit_open(const char *value, const char **why);
void p11b_audit_close(void);

/* 1 when the process writes an audit trail. */
int p11b_audit_on(void);

/* An operation on a key object (sign, decrypt, derive) and its result. */
void p11b_audit_key(enum p11b_audit_event ev, struct p11b_obj *key,
                    CK_MECHANISM_TYPE mech, CK_RV rv);
/* A C_Login (or a login refused before one) on the slot's token. */
void p11b_audit_login(struct p11b_slot *slot, CK_RV rv);
/* C_GenerateKeyPair: the new private key is named by the CKA_LABEL and
 * CKA_ID of its template. */
void p11b_audit_keygen(struct p11b_slot *slot, CK_MECHANISM_TYPE mech,
                       const CK_ATTRIBUTE *priv, CK_ULONG npriv, CK_RV rv);

#endif
