/*
 * Provider configuration: the pkcs11-module-* keys of the provider's
 * section in openssl.cnf, and the environment that overrides them.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/conf.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>

#include "pkcs11/audit.h"
#include "pkcs11/log.h"
#include "pkcs11/uri.h"
#include "provider/errors.h"
#include "provider/provider.h"

#define MAX_PIN_FILE 1024

/* Index of each key in known_keys (and in struct raw_config). */
enum cfg_key {
    K_MODULE_PATH, K_INIT_ARGS, K_TOKEN_PIN, K_LOAD_BEHAVIOR,
    K_LOGIN_BEHAVIOR, K_CACHE_PINS, K_CACHE_SESSIONS, K_ALLOW_EXPORT,
    K_QUIRKS, K_BLOCK_OPS, K_CACHE_KEYS, K_TOKEN_PIN_TOKEN,
    K_ENCODE_URI_PEM, K_ASSUME_FIPS, K_DEFAULT_SLOT, K_AUDIT_LOG, K_COUNT_
};

static const char *const known_keys[K_COUNT_] = {
    [K_MODULE_PATH] = P11B_CFG_MODULE_PATH,
    [K_INIT_ARGS] = P11B_CFG_INIT_ARGS,
    [K_TOKEN_PIN] = P11B_CFG_TOKEN_PIN,
    [K_LOAD_BEHAVIOR] = P11B_CFG_LOAD_BEHAVIOR,
    [K_LOGIN_BEHAVIOR] = P11B_CFG_LOGIN_BEHAVIOR,
    [K_CACHE_PINS] = P11B_CFG_CACHE_PINS,
    [K_CACHE_SESSIONS] = P11B_CFG_CACHE_SESSIONS,
    [K_ALLOW_EXPORT] = P11B_CFG_ALLOW_EXPORT,
    [K_QUIRKS] = P11B_CFG_QUIRKS,
    [K_BLOCK_OPS] = P11B_CFG_BLOCK_OPS,
    [K_CACHE_KEYS] = P11B_CFG_CACHE_KEYS,
    [K_TOKEN_PIN_TOKEN] = P11B_CFG_TOKEN_PIN_TOKEN,
    [K_ENCODE_URI_PEM] = P11B_CFG_ENCODE_URI_PEM,
    [K_ASSUME_FIPS] = P11B_CFG_ASSUME_FIPS,
    [K_DEFAULT_SLOT] = P11B_CFG_DEFAULT_SLOT,
    [K_AUDIT_LOG] = P11B_CFG_AUDIT_LOG,
};

/* Keys OpenSSL's own provider configuration uses. */
static const char *const openssl_keys[] = {
    "module", "activate", "identity", "soft_load",
};

/* A word of a list-valued key. A word with flag 0 comes from the
 * de-facto provider's vocabulary and has no effect here: `why` says so in
 * the debug log (docs/MIGRATING.md has the same table). */
struct word_flag {
    const char *word;
    unsigned int flag;
    const char *why;
};

#define NO_OP_ALGS "p11bridge offers no such algorithms"

static const struct word_flag quirk_words[] = {
    { "no-deinit", P11B_QUIRK_NO_DEINIT, NULL },
    { "ecdh-der-point", P11B_QUIRK_ECDH_DER, NULL },
    { "ecdh-raw-point", P11B_QUIRK_ECDH_RAW, NULL },
    { "no-operation-state", 0,
      "p11bridge never calls C_GetOperationState" },
    { "no-session-callbacks", 0,
      "p11bridge opens sessions without callbacks" },
    { "no-allowed-mechanisms", 0,
      "p11bridge reads CKA_ALLOWED_MECHANISMS only where a token has it, "
      "and sets it only on RSA-PSS keys it generates" },
    { "luna-non-standard-cku-user", 0, "p11bridge logs in as CKU_USER" },
    { "skip-fork", 0,
      "p11bridge always re-initialises lazily in a forked child" },
};

static const struct word_flag block_words[] = {
    { "signature", P11B_BLOCK_SIGNATURE, NULL },
    { "asym-cipher", P11B_BLOCK_ASYM_CIPHER, NULL },
    { "keyexch", P11B_BLOCK_KEYEXCH, NULL },
    { "encoder", P11B_BLOCK_ENCODER, NULL },
    { "store", P11B_BLOCK_STORE, NULL },
    { "decoder", P11B_BLOCK_DECODER, NULL },
    { "keymgmt", P11B_BLOCK_KEYMGMT, NULL },
    { "digest", 0, NO_OP_ALGS },
    { "cipher", 0, NO_OP_ALGS },
    { "mac", 0, NO_OP_ALGS },
    { "kdf", 0, NO_OP_ALGS },
    { "rand", 0, NO_OP_ALGS },
    { "kem", 0, NO_OP_ALGS },
    { "skeymgmt", 0, NO_OP_ALGS },
};

static void no_effect(const char *key, const char *what, const char *why)
{
    P11B_LOG(1, "config: %s%s%s has no effect here: %s", key,
             what != NULL ? " " : "", what != NULL ? what : "", why);
}

void p11b_config_clear(struct p11b_config *cfg)
{
    free(cfg->module_path);
    free(cfg->init_args);
    if (cfg->pin != NULL)
        OPENSSL_clear_free(cfg->pin, cfg->pin_len);
    p11b_uri_free(cfg->pin_token);
    if (cfg->audit)
        p11b_audit_close();
    memset(cfg, 0, sizeof(*cfg));
}

/* A configuration problem: raised at once outside p11b_config_load (a
 * URI's pin-source); while loading, the first one is kept for every
 * pkcs11: operation to raise (docs/DESIGN.md). Returns 0. */
static int problem(struct p11b_prov *prov, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int problem(struct p11b_prov *prov, const char *fmt, ...)
{
    char text[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (!prov->cfg_loading) {
        P11B_RAISE(prov, P11B_R_CONFIG, "%s", text);
        return 0;
    }
    if (prov->cfg_error == NULL)
        prov->cfg_error = OPENSSL_strdup(text);
    return 0;
}

static int bad_value(struct p11b_prov *prov, const char *key, const char *why)
{
    /* The value is not echoed: it may be a PIN. */
    return problem(prov, "%s: %s", key, why);
}

/* Read a PIN file: its first line, without the line end. */
static int read_pin_file(struct p11b_prov *prov, const char *key,
                         const char *path, unsigned char **out,
                         size_t *out_len)
{
    unsigned char *buf;
    size_t n;
    FILE *f = fopen(path, "re");

    if (f == NULL) {
        return problem(prov, "%s: cannot open PIN file %s: %s", key, path,
                       strerror(errno));
    }
    buf = OPENSSL_secure_zalloc(MAX_PIN_FILE + 1);
    if (buf == NULL) {
        fclose(f);
        return 0;
    }
    n = fread(buf, 1, MAX_PIN_FILE, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (memchr(buf, '\n', n) != NULL)
        n = (size_t)((unsigned char *)memchr(buf, '\n', n) - buf);
    *out = OPENSSL_memdup(buf, n + 1);
    OPENSSL_secure_clear_free(buf, MAX_PIN_FILE + 1);
    if (*out == NULL)
        return 0;
    (*out)[n] = '\0';
    *out_len = n;
    return 1;
}

/* Literal PIN or file:PATH, shared with the URI's pin-source. */
int p11b_config_read_pin(struct p11b_prov *prov, const char *key,
                         const char *value, unsigned char **out,
                         size_t *out_len)
{
    size_t len;

    if (strncmp(value, "file:", 5) == 0)
        return read_pin_file(prov, key, value + 5, out, out_len);
    len = strlen(value);
    *out = OPENSSL_memdup(value, len + 1);
    if (*out == NULL)
        return 0;
    *out_len = len;
    return 1;
}

/* pkcs11-module-token-pin-token: a token label, or a pkcs11: URI naming
 * tokens by library, slot and token attributes only. */
static int parse_pin_token(struct p11b_prov *prov, const char *value,
                           struct p11b_uri **out)
{
    const char *key = P11B_CFG_TOKEN_PIN_TOKEN;
    struct p11b_uri *u = NULL;

    if (strncasecmp(value, "pkcs11:", 7) != 0) {
        u = p11b_uri_new();
        if (u == NULL || p11b_uri_set_value(&u->token, value,
                                            strlen(value)) != 0) {
            p11b_uri_free(u);
            return 0;
        }
        *out = u;
        return 1;
    }
    if (p11b_uri_parse(value, strlen(value), NULL, &u) != P11B_URI_OK)
        return bad_value(prov, key, "not a valid pkcs11: URI");
    if (u->object.present || u->id.present || u->type != P11B_URI_TYPE_ANY ||
        u->pin_value.present || u->pin_source.present) {
        p11b_uri_free(u);
        return bad_value(prov, key,
                         "names tokens only: no object, id, type or PIN");
    }
    *out = u;
    return 1;
}

static int parse_words(struct p11b_prov *prov, const char *key,
                       const char *value, const struct word_flag *words,
                       size_t nwords, unsigned int *out)
{
    const char *p = value;
    size_t len, i;

    *out = 0;
    while (*p != '\0') {
        p += strspn(p, " \t,");
        len = strcspn(p, " \t,");
        if (len == 0)
            break;
        for (i = 0; i < nwords; i++) {
            if (strlen(words[i].word) == len &&
                strncmp(words[i].word, p, len) == 0)
                break;
        }
        if (i == nwords)
            return problem(prov, "%s: unknown word '%.*s'", key, (int)len, p);
        if (words[i].why != NULL)
            no_effect(key, words[i].word, words[i].why);
        *out |= words[i].flag;
        p += len;
    }
    return 1;
}

static int parse_number(const char *s, unsigned long max, size_t *out)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9')
        return 0;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return 0;
    *out = v;
    return 1;
}

struct raw_config {
    const char *values[K_COUNT_];
};

/* true or false (the de-facto provider's words); NULL keeps *out. */
static int parse_bool(struct p11b_prov *prov, const char *key, const char *v,
                      int *out)
{
    if (v == NULL)
        return 1;
    if (strcmp(v, "true") == 0)
        *out = 1;
    else if (strcmp(v, "false") == 0)
        *out = 0;
    else
        return bad_value(prov, key, "must be true or false");
    return 1;
}

/* Keys accepted for compatibility: their values are checked, then each
 * says in the debug log that it changes nothing here. */
static int apply_compat(struct p11b_prov *prov, const struct raw_config *raw)
{
    const char *v;
    char *end;
    int b = 0;

    v = raw->values[K_ENCODE_URI_PEM];
    if (!parse_bool(prov, P11B_CFG_ENCODE_URI_PEM, v, &b))
        return 0;
    if (v != NULL)
        no_effect(P11B_CFG_ENCODE_URI_PEM, NULL,
                  "p11bridge always writes a token private key as the "
                  "PEM-wrapped pkcs11: URI");
    v = raw->values[K_ASSUME_FIPS];
    if (!parse_bool(prov, P11B_CFG_ASSUME_FIPS, v, &b))
        return 0;
    if (v != NULL)
        no_effect(P11B_CFG_ASSUME_FIPS, NULL,
                  "p11bridge does not claim the fips=yes property");
    v = raw->values[K_DEFAULT_SLOT];
    if (v != NULL) {
        errno = 0;
        if (v[0] < '0' || v[0] > '9' || (strtoul(v, &end, 0), errno != 0) ||
            *end != '\0')
            return bad_value(prov, P11B_CFG_DEFAULT_SLOT,
                             "must be a slot number");
        no_effect(P11B_CFG_DEFAULT_SLOT, NULL,
                  "a URI without token attributes searches every slot; "
                  "name the token (token=, slot-id=) in the URI");
    }
    return 1;
}

static int apply_choices(struct p11b_prov *prov, const struct raw_config *raw)
{
    struct p11b_config *c = &prov->cfg;
    const char *v;
    size_t n;

    v = raw->values[K_LOAD_BEHAVIOR];
    if (v != NULL && strcmp(v, "early") == 0)
        c->load_early = 1;
    else if (v != NULL && strcmp(v, "lazy") != 0)
        return bad_value(prov, P11B_CFG_LOAD_BEHAVIOR, "must be early or lazy");
    v = raw->values[K_LOGIN_BEHAVIOR];
    if (v == NULL || strcmp(v, "auto") == 0)
        c->login = P11B_LOGIN_AUTO;
    else if (strcmp(v, "always") == 0)
        c->login = P11B_LOGIN_ALWAYS;
    else if (strcmp(v, "never") == 0)
        c->login = P11B_LOGIN_NEVER;
    else
        return bad_value(prov, P11B_CFG_LOGIN_BEHAVIOR,
                         "must be auto, always or never");
    v = raw->values[K_CACHE_PINS];
    if (v != NULL && strcmp(v, "cache") == 0)
        c->cache_pins = 1;
    else if (v != NULL && strcmp(v, "none") != 0)
        return bad_value(prov, P11B_CFG_CACHE_PINS, "must be cache or none");
    v = raw->values[K_CACHE_SESSIONS];
    if (v != NULL && !parse_number(v, 4096, &c->mod_opts.cache_sessions))
        return bad_value(prov, P11B_CFG_CACHE_SESSIONS,
                         "must be a number from 0 to 4096");
    v = raw->values[K_ALLOW_EXPORT];
    if (v != NULL && !parse_number(v, 1, &n))
        return bad_value(prov, P11B_CFG_ALLOW_EXPORT, "must be 0 or 1");
    c->deny_export = v != NULL && n == 1;
    v = raw->values[K_CACHE_KEYS];
    if (v == NULL || strcmp(v, "true") == 0)
        c->cache_keys = 1;
    else if (strcmp(v, "false") != 0)
        return bad_value(prov, P11B_CFG_CACHE_KEYS, "must be true or false");
    return 1;
}

static int apply_config(struct p11b_prov *prov, const struct raw_config *raw)
{
    struct p11b_config *c = &prov->cfg;
    const char *env = secure_getenv("PKCS11_PROVIDER_MODULE");
    const char *path = raw->values[K_MODULE_PATH];
    const char *args = raw->values[K_INIT_ARGS];
    const char *pin = raw->values[K_TOKEN_PIN];
    const char *pin_token = raw->values[K_TOKEN_PIN_TOKEN];
    const char *quirks = raw->values[K_QUIRKS];
    const char *block = raw->values[K_BLOCK_OPS];
    const char *audit = raw->values[K_AUDIT_LOG];
    const char *why = NULL;

    c->mod_opts.cache_sessions = 16;
    if (env != NULL && env[0] != '\0')
        path = env;
    if (path == NULL || path[0] == '\0')
        path = P11B_DEFAULT_MODULE;
    c->module_path = strdup(path);
    if (args != NULL)
        c->init_args = strdup(args);
    if (c->module_path == NULL || (args != NULL && c->init_args == NULL))
        return 0;
    if (pin != NULL && !p11b_config_read_pin(prov, P11B_CFG_TOKEN_PIN, pin,
                                             &c->pin, &c->pin_len))
        return 0;
    if (pin_token != NULL && pin_token[0] != '\0' &&
        !parse_pin_token(prov, pin_token, &c->pin_token))
        return 0;
    if (!apply_choices(prov, raw) || !apply_compat(prov, raw))
        return 0;
    if (quirks != NULL &&
        !parse_words(prov, P11B_CFG_QUIRKS, quirks, quirk_words,
                     P11B_NELEM(quirk_words), &c->mod_opts.quirks))
        return 0;
    if ((c->mod_opts.quirks & P11B_QUIRK_ECDH_DER) &&
        (c->mod_opts.quirks & P11B_QUIRK_ECDH_RAW))
        return problem(prov, "%s: ecdh-der-point and ecdh-raw-point "
                       "exclude each other", P11B_CFG_QUIRKS);
    if (block != NULL &&
        !parse_words(prov, P11B_CFG_BLOCK_OPS, block, block_words,
                     P11B_NELEM(block_words), &c->blocked))
        return 0;
    /* Last: only a configuration found good opens the trail. A trail
     * that cannot be opened is said in the debug log, not a problem:
     * key operations go on without it (docs/SECURITY.md). */
    if (audit != NULL && audit[0] != '\0') {
        if (!p11b_audit_open(audit, &why))
            return bad_value(prov, P11B_CFG_AUDIT_LOG, why);
        c->audit = 1;
    }
    return 1;
}

static int is_known(const char *key)
{
    size_t i;

    for (i = 0; i < P11B_NELEM(known_keys); i++) {
        if (strcmp(key, known_keys[i]) == 0)
            return 1;
    }
    for (i = 0; i < P11B_NELEM(openssl_keys); i++) {
        if (strcmp(key, openssl_keys[i]) == 0)
            return 1;
    }
    return 0;
}

/*
 * The core hands out config values by name only, so a misspelt key would
 * go unnoticed. Read the provider's section from the configuration file
 * OpenSSL loaded by default (OPENSSL_CONF or the built-in path) and report
 * keys nobody knows. When the application loaded another file, the section
 * is not found there and nothing is checked. *where says, for every
 * problem, where the section is: "[pkcs11_sect] in /etc/ssl/openssl.cnf".
 */
static int check_unknown_keys(struct p11b_prov *prov, const char *prov_name,
                              char **where)
{
    STACK_OF(CONF_VALUE) *sect;
    const char *sname, *pname;
    char *file, *bad = NULL;
    CONF *conf;
    long eline = 0;
    int i, ok;

    ERR_set_mark();
    file = CONF_get1_default_config_file();
    conf = NCONF_new(NULL);
    if (file == NULL || conf == NULL || NCONF_load(conf, file, &eline) <= 0)
        goto done;
    sname = NCONF_get_string(conf, NULL, "openssl_conf");
    pname = sname ? NCONF_get_string(conf, sname, "providers") : NULL;
    sname = pname ? NCONF_get_string(conf, pname, prov_name) : NULL;
    sect = sname ? NCONF_get_section(conf, sname) : NULL;
    if (sect != NULL) {
        size_t n = strlen(sname) + strlen(file) + 8;

        *where = OPENSSL_malloc(n);
        if (*where != NULL)
            snprintf(*where, n, "[%s] in %s", sname, file);
    }
    for (i = 0; sect != NULL && i < sk_CONF_VALUE_num(sect); i++) {
        CONF_VALUE *cv = sk_CONF_VALUE_value(sect, i);

        if (!is_known(cv->name)) {
            bad = OPENSSL_strdup(cv->name);
            break;
        }
    }
done:
    ERR_pop_to_mark(); /* a file we could not read is not our error */
    NCONF_free(conf);
    OPENSSL_free(file);
    if (bad == NULL)
        return 1;
    ok = problem(prov, "%s: unknown key", bad);
    OPENSSL_free(bad);
    return ok;
}

/* The first problem, with where it is, becomes prov->cfg_error. */
static int set_misconfigured(struct p11b_prov *prov, const char *prov_name,
                             const char *where)
{
    char *text;
    size_t n;

    if (prov->cfg_error == NULL)
        return 0; /* out of memory, not a configuration problem */
    n = strlen(prov->cfg_error) + 96 +
        (where != NULL ? strlen(where) : strlen(prov_name));
    text = OPENSSL_malloc(n);
    if (text == NULL)
        return 0;
    if (where != NULL)
        snprintf(text, n, "%s (%s)", prov->cfg_error, where);
    else
        snprintf(text, n, "%s (the section of provider '%s')",
                 prov->cfg_error, prov_name);
    OPENSSL_free(prov->cfg_error);
    prov->cfg_error = text;
    P11B_LOG(1, "error: bad provider configuration: %s; every pkcs11: "
                "operation fails until it is fixed", text);
    /* What was read is dropped: no half-applied configuration. */
    p11b_config_clear(&prov->cfg);
    prov->cfg.module_path = strdup(P11B_DEFAULT_MODULE);
    n = strlen(P11B_PROV_NAME) + strlen(text) + 32;
    prov->cfg_status_name = OPENSSL_malloc(n);
    if (prov->cfg.module_path == NULL || prov->cfg_status_name == NULL)
        return 0;
    snprintf(prov->cfg_status_name, n, "%s (misconfigured: %s)",
             P11B_PROV_NAME, text);
    return 1;
}

int p11b_config_load(struct p11b_prov *prov)
{
    struct raw_config raw;
    OSSL_PARAM params[K_COUNT_ + 2];
    const char *prov_name = NULL;
    char *where = NULL;
    size_t i;
    int ok;

    memset(&raw, 0, sizeof(raw));
    for (i = 0; i < K_COUNT_; i++)
        params[i] = OSSL_PARAM_construct_utf8_ptr(
            known_keys[i], (char **)&raw.values[i], 0);
    params[i++] = OSSL_PARAM_construct_utf8_ptr(
        OSSL_PROV_PARAM_CORE_PROV_NAME, (char **)&prov_name, 0);
    params[i] = OSSL_PARAM_construct_end();
    if (!prov->core_get_params(prov->handle, params)) {
        P11B_RAISE(prov, P11B_R_CONFIG, "cannot read the configuration");
        return 0;
    }
    prov->cfg_loading = 1;
    ok = (prov_name == NULL || check_unknown_keys(prov, prov_name, &where)) &&
         apply_config(prov, &raw);
    prov->cfg_loading = 0;
    if (!ok)
        ok = set_misconfigured(prov, prov_name != NULL ? prov_name : "?",
                               where);
    OPENSSL_free(where);
    if (!ok)
        p11b_config_clear(&prov->cfg);
    return ok;
}
