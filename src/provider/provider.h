/*
 * The provider context: configuration, core functions, the module.
 */
#ifndef P11B_PROVIDER_H
#define P11B_PROVIDER_H

#include <pthread.h>
#include <stddef.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/types.h>

#include "provider/digests.h"
#include "pkcs11/module.h"
#include "pkcs11/p11.h"

struct p11b_slot;
struct p11b_uri;

#define P11B_PROV_NAME "p11bridge PKCS#11 provider"
/* Every algorithm we register carries this property. */
#define P11B_PROPS "provider=pkcs11"
/* Where public-key work happens in software: any provider but ours. */
#define P11B_SOFT_PROPQ "provider!=pkcs11"

/* Config keys (the de-facto vocabulary of PKCS#11 providers). */
#define P11B_CFG_MODULE_PATH "pkcs11-module-path"
#define P11B_CFG_INIT_ARGS "pkcs11-module-init-args"
#define P11B_CFG_TOKEN_PIN "pkcs11-module-token-pin"
/* The token(s) the configured PIN goes to: a label or a pkcs11: URI. */
#define P11B_CFG_TOKEN_PIN_TOKEN "pkcs11-module-token-pin-token"
#define P11B_CFG_LOAD_BEHAVIOR "pkcs11-module-load-behavior"
#define P11B_CFG_LOGIN_BEHAVIOR "pkcs11-module-login-behavior"
#define P11B_CFG_CACHE_PINS "pkcs11-module-cache-pins"
#define P11B_CFG_CACHE_SESSIONS "pkcs11-module-cache-sessions"
#define P11B_CFG_ALLOW_EXPORT "pkcs11-module-allow-export"
#define P11B_CFG_QUIRKS "pkcs11-module-quirks"
#define P11B_CFG_BLOCK_OPS "pkcs11-module-block-operations"
#define P11B_CFG_CACHE_KEYS "pkcs11-module-cache-keys"
/* The audit trail of key use: syslog or file:PATH (pkcs11/audit.h). */
#define P11B_CFG_AUDIT_LOG "pkcs11-audit-log"
/* Keys of the de-facto provider that are accepted for compatibility. */
#define P11B_CFG_ENCODE_URI_PEM "pkcs11-module-encode-provider-uri-to-pem"
#define P11B_CFG_ASSUME_FIPS "pkcs11-module-assume-fips"
#define P11B_CFG_DEFAULT_SLOT "pkcs11-module-default-slot-id"

enum p11b_login_behavior {
    P11B_LOGIN_AUTO = 0, /* look without login; log in if nothing found */
    P11B_LOGIN_ALWAYS,   /* log in before the first search              */
    P11B_LOGIN_NEVER,
};

/* Operations a user can switch off (pkcs11-module-block-operations). */
#define P11B_BLOCK_SIGNATURE 0x1u
#define P11B_BLOCK_ASYM_CIPHER 0x2u
#define P11B_BLOCK_KEYEXCH 0x4u
#define P11B_BLOCK_ENCODER 0x8u
#define P11B_BLOCK_STORE 0x10u
#define P11B_BLOCK_DECODER 0x20u
#define P11B_BLOCK_KEYMGMT 0x40u

struct p11b_config {
    char *module_path;
    char *init_args;
    unsigned char *pin;      /* config PIN (file: already read); wiped */
    size_t pin_len;
    struct p11b_uri *pin_token; /* the tokens the PIN goes to, or NULL  */
    int load_early;
    enum p11b_login_behavior login;
    int cache_pins;
    /* cache-sessions and quirks: handed to the module (p11b_module_get) */
    struct p11b_module_opts mod_opts;
    int deny_export;
    unsigned int blocked;
    int cache_keys;          /* use session copies of private keys */
    int audit;               /* holds a reference on the audit trail */
};

struct p11b_prov {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX *libctx;        /* child of the application's libctx */
    OSSL_FUNC_core_new_error_fn *core_new_error;
    OSSL_FUNC_core_set_error_debug_fn *core_set_error_debug;
    OSSL_FUNC_core_vset_error_fn *core_vset_error;
    OSSL_FUNC_core_get_params_fn *core_get_params;
    struct p11b_config cfg;
    struct p11b_module *mod;
    /* Set while the configuration is read: problems are recorded, not
     * raised (docs/DESIGN.md, "A bad configuration"). */
    int cfg_loading;
    /* The first configuration problem, naming key, section and file;
     * NULL when the configuration is good. Every pkcs11: operation then
     * fails with it. */
    char *cfg_error;
    char *cfg_status_name; /* the name `openssl list -providers` shows */
    int software_seen;     /* a software provider was found (atomic) */
    struct p11b_digest_cache digests; /* fetched once, for signatures  */
};

void p11b_core_set_error(const struct p11b_prov *prov, int reason,
                         const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* config.c: 0 only when out of memory or the core fails; a bad
 * configuration sets prov->cfg_error and returns 1. */
int p11b_config_load(struct p11b_prov *prov);
void p11b_config_clear(struct p11b_config *cfg);

/* 1 if the configuration is good; else raises its problem (naming the
 * key, section and file) and returns 0. */
int p11b_prov_configured(struct p11b_prov *prov);

/* Make the module usable (lazy load + C_Initialize), raising the load
 * error with the module path on failure, or the configuration problem
 * when the provider is misconfigured. */
int p11b_prov_module_ready(struct p11b_prov *prov);

/* Slots whose token matches the URI (library, slot and token attributes),
 * rescanning once when none does. *out is a new array to free(); returns
 * 0 after raising an error. */
int p11b_prov_match_slots(struct p11b_prov *prov, const struct p11b_uri *uri,
                          struct p11b_slot ***out, size_t *out_n);

/* Log in to the slot if not logged in yet. PIN sources in order: the URI's
 * pin-value, its pin-source, the config, the cached PIN, the callback;
 * each only when it is meant for this token (provider.c says which).
 * Raises and returns 0 on failure; *why (when not NULL) then gets the
 * reason raised, for callers that decide on it (P11B_R_PIN_MISSING when
 * no PIN goes to the token, P11B_R_TOKEN_GONE, ...). */
int p11b_prov_login(struct p11b_prov *prov, struct p11b_slot *slot,
                    const struct p11b_uri *uri, OSSL_PASSPHRASE_CALLBACK *cb,
                    void *cbarg, int *why);

/* C_Login(CKU_CONTEXT_SPECIFIC) on an operation's session, with the
 * configured or cached PIN. Raises and returns 0 on failure. */
struct p11b_session;
int p11b_prov_context_login(struct p11b_prov *prov, struct p11b_session *sess);

/* 1 if a PIN is available without asking anyone: the URI's, the
 * configured one, or one cached for the slot. */
int p11b_prov_pin_at_hand(struct p11b_prov *prov, struct p11b_slot *slot,
                          const struct p11b_uri *uri);

/* config.c: a literal PIN or file:PATH, into a new buffer. */
int p11b_config_read_pin(struct p11b_prov *prov, const char *key,
                         const char *value, unsigned char **out,
                         size_t *out_len);

/* algorithms.c */
const OSSL_ALGORITHM *p11b_algorithms(struct p11b_prov *prov, int op);

#endif
