/*
 * p11bridge-info: what a PKCS#11 module's tokens can do, and what
 * p11bridge will do with them. Public information only: no session is
 * opened, no PIN asked for, no object read.
 *
 * It loads the module the way the provider does (src/pkcs11/module.h),
 * so its calls go through the same door and PKCS11_PROVIDER_DEBUG logs
 * them. For each token: label, serial, manufacturer, model, flags, a
 * pkcs11: URI (src/pkcs11/uri.h), the mechanisms with their key sizes and
 * CKF_ flags (C_GetMechanismInfo), and one line per operation p11bridge
 * offers: native, fallback (how) or unavailable.
 *
 * The operation rules live in the provider's OpenSSL glue, which this
 * program does not link; the table `ops` below restates them and names
 * the provider function each row mirrors. Change both together.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pkcs11/module.h"
#include "pkcs11/names.h"
#include "pkcs11/slot.h"
#include "pkcs11/uri.h"

/* ---- what p11bridge does with a token ---------------------------------- */

/* V_END marks the end of a row's steps (CKM_RSA_PKCS_KEY_PAIR_GEN is 0,
 * so a mechanism cannot). */
enum info_verdict { V_END = 0, V_NATIVE, V_FALLBACK, V_UNAVAILABLE };

static const char *const verdict_names[] = { "", "native", "fallback",
                                             "unavailable" };

/* The combined digest-and-sign mechanisms the provider knows, in the
 * order of src/provider/digest_mechs.c (SHA-1 .. SHA-512). */
static const CK_MECHANISM_TYPE rsa_pkcs_combined[] = {
    CKM_SHA1_RSA_PKCS,   CKM_SHA224_RSA_PKCS, CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS, CKM_SHA512_RSA_PKCS, 0
};
static const CK_MECHANISM_TYPE rsa_pss_combined[] = {
    CKM_SHA1_RSA_PKCS_PSS,   CKM_SHA224_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS, 0
};
static const CK_MECHANISM_TYPE ecdsa_combined[] = {
    CKM_ECDSA_SHA1,   CKM_ECDSA_SHA224, CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384, CKM_ECDSA_SHA512, 0
};

/* One way of doing an operation, tried in order: the first step whose
 * mechanism the token has (or, with `combined`, any of them) decides. */
struct info_step {
    CK_MECHANISM_TYPE mech;            /* unused with `combined` */
    const CK_MECHANISM_TYPE *combined; /* "over the message" mechanisms */
    enum info_verdict verdict;
    const char *how;            /* after the mechanism name */
    CK_MECHANISM_TYPE extra_if; /* `extra` is said when the token */
    const char *extra;          /* has this mechanism too         */
};

#define P11B_INFO_MAX_STEPS 4

struct info_op {
    const char *name;
    const char *mirrors; /* the provider code that applies the rule */
    struct info_step steps[P11B_INFO_MAX_STEPS];
};

static const char MSG_ONLY[] =
    "over the message; a precomputed digest cannot be signed";

/* Steps are spelled with designated initializers: the fields a step
 * leaves out are 0 / NULL. */
#define STEP(m, v, h)                                                          \
    {                                                                          \
        .mech = (m), .verdict = (v), .how = (h)                                \
    }
#define STEP_ALSO(m, v, h, if_m, x)                                            \
    {                                                                          \
        .mech = (m), .verdict = (v), .how = (h), .extra_if = (if_m),           \
        .extra = (x)                                                           \
    }
#define STEP_MSG(list)                                                         \
    {                                                                          \
        .combined = (list), .verdict = V_FALLBACK, .how = MSG_ONLY             \
    }

static const struct info_op ops[] = {
    { "RSA PKCS#1 v1.5 sign",
      "signature_rsa.c plan_pkcs1",
      { STEP(CKM_RSA_PKCS, V_NATIVE, "with our DigestInfo"),
        STEP(CKM_RSA_X_509, V_FALLBACK, "raw RSA with our PKCS#1 padding"),
        STEP_MSG(rsa_pkcs_combined) } },
    { "RSA PSS sign",
      "signature_rsa.c plan_pss, sign_job",
      { STEP_ALSO(CKM_RSA_PKCS_PSS, V_NATIVE, NULL, CKM_RSA_X_509,
                  "raw RSA with our EMSA-PSS encoding for parameters the "
                  "token refuses"),
        STEP(CKM_RSA_X_509, V_FALLBACK, "raw RSA with our EMSA-PSS encoding"),
        STEP_MSG(rsa_pss_combined) } },
    { "RSA raw sign (no padding)",
      "signature_rsa.c rsa_sign_digest",
      { STEP(CKM_RSA_X_509, V_NATIVE, NULL) } },
    { "ECDSA sign",
      "signature_ecdsa.c ecdsa_sign_digest",
      { STEP(CKM_ECDSA, V_NATIVE, "over our digest"),
        STEP_MSG(ecdsa_combined) } },
    { "EdDSA sign (Ed25519, Ed448)",
      "signature_eddsa.c",
      { STEP(CKM_EDDSA, V_NATIVE, NULL) } },
    { "RSA PKCS#1 v1.5 decrypt",
      "asymcipher_rsa.c decrypt_pkcs1",
      { STEP_ALSO(CKM_RSA_PKCS, V_NATIVE, NULL, CKM_RSA_X_509,
                  "raw RSA with our check when implicit rejection is "
                  "turned off"),
        STEP(CKM_RSA_X_509, V_FALLBACK,
             "raw RSA, padding checked here in constant time") } },
    { "RSA OAEP decrypt",
      "asymcipher_rsa.c decrypt_oaep",
      { STEP_ALSO(CKM_RSA_PKCS_OAEP, V_NATIVE, NULL, CKM_RSA_X_509,
                  "raw RSA with our check for a label or a digest the "
                  "token refuses"),
        STEP(CKM_RSA_X_509, V_FALLBACK,
             "raw RSA, OAEP checked here in constant time") } },
    { "RSA raw decrypt (no padding)",
      "asymcipher_rsa.c rsac_decrypt",
      { STEP(CKM_RSA_X_509, V_NATIVE, NULL) } },
    { "ECDH derive",
      "keyexch_ecdh.c derive_on_token",
      { STEP_ALSO(CKM_ECDH1_DERIVE, V_NATIVE, NULL, CKM_ECDH1_COFACTOR_DERIVE,
                  "CKM_ECDH1_COFACTOR_DERIVE in cofactor mode on a curve "
                  "whose cofactor is not 1") } },
    { "RSA key generation",
      "keymgmt_gen.c",
      { STEP(CKM_RSA_PKCS_KEY_PAIR_GEN, V_NATIVE, NULL) } },
    { "EC key generation",
      "keymgmt_gen.c",
      { STEP(CKM_EC_KEY_PAIR_GEN, V_NATIVE, NULL) } },
    { "Ed25519/Ed448 key generation",
      "keymgmt_gen.c",
      { STEP(CKM_EC_EDWARDS_KEY_PAIR_GEN, V_NATIVE, NULL) } },
};

/* The verdict for one operation on a slot, and its explanation. The
 * provider also honours a key's CKA_ALLOWED_MECHANISMS (key.c
 * p11b_key_can_use): a key may allow less than its token has. */
static enum info_verdict op_verdict(struct p11b_slot *slot,
                                    const struct info_op *op, char *how,
                                    size_t len)
{
    const struct info_step *st;
    size_t i, j;
    int w;

    for (i = 0; i < P11B_INFO_MAX_STEPS; i++) {
        st = &op->steps[i];
        if (st->verdict == V_END)
            break;
        if (st->combined == NULL) {
            if (!p11b_slot_has_mechanism(slot, st->mech))
                continue;
            w = snprintf(how, len, "%s%s%s", p11b_mech_name(st->mech),
                         st->how != NULL ? "; " : "",
                         st->how != NULL ? st->how : "");
            if (st->extra != NULL && w > 0 && (size_t)w < len &&
                p11b_slot_has_mechanism(slot, st->extra_if))
                snprintf(how + w, len - (size_t)w, "; %s", st->extra);
            return st->verdict;
        }
        how[0] = '\0';
        w = 0;
        for (j = 0; st->combined[j] != 0; j++) {
            if (!p11b_slot_has_mechanism(slot, st->combined[j]))
                continue;
            w += snprintf(how + w, len - (size_t)w, "%s%s", w > 0 ? ", " : "",
                          p11b_mech_name(st->combined[j]));
            if (w < 0 || (size_t)w >= len)
                return st->verdict;
        }
        if (w > 0) {
            snprintf(how + w, len - (size_t)w, " %s", st->how);
            return st->verdict;
        }
    }
    how[0] = '\0';
    return V_UNAVAILABLE;
}

/* ---- output ------------------------------------------------------------ */

struct info_opts {
    const char *module;
    const char *init_args;
    int json;
};

struct info_flag {
    CK_FLAGS flag;
    const char *name;
};

static const struct info_flag token_flags[] = {
    { CKF_TOKEN_INITIALIZED, "token initialized" },
    { CKF_LOGIN_REQUIRED, "login required" },
    { CKF_USER_PIN_INITIALIZED, "user PIN initialized" },
    { CKF_PROTECTED_AUTHENTICATION_PATH, "protected authentication path" },
    { CKF_WRITE_PROTECTED, "write protected" },
    { CKF_RNG, "RNG" },
    { CKF_USER_PIN_COUNT_LOW, "user PIN count low" },
    { CKF_USER_PIN_FINAL_TRY, "user PIN final try" },
    { CKF_USER_PIN_LOCKED, "user PIN locked" },
    { CKF_USER_PIN_TO_BE_CHANGED, "user PIN to be changed" },
    { CKF_SO_PIN_LOCKED, "SO PIN locked" },
    { 0, NULL }
};

static const struct info_flag mech_flags[] = {
    { CKF_HW, "HW" },
    { CKF_ENCRYPT, "ENCRYPT" },
    { CKF_DECRYPT, "DECRYPT" },
    { CKF_DIGEST, "DIGEST" },
    { CKF_SIGN, "SIGN" },
    { CKF_SIGN_RECOVER, "SIGN_RECOVER" },
    { CKF_VERIFY, "VERIFY" },
    { CKF_VERIFY_RECOVER, "VERIFY_RECOVER" },
    { CKF_GENERATE, "GENERATE" },
    { CKF_GENERATE_KEY_PAIR, "GENERATE_KEY_PAIR" },
    { CKF_WRAP, "WRAP" },
    { CKF_UNWRAP, "UNWRAP" },
    { CKF_DERIVE, "DERIVE" },
    { CKF_EC_F_P, "EC_F_P" },
    { CKF_EC_NAMEDCURVE, "EC_NAMEDCURVE" },
    { CKF_EC_UNCOMPRESS, "EC_UNCOMPRESS" },
    { CKF_EC_COMPRESS, "EC_COMPRESS" },
    { 0, NULL }
};

/* The flag names, joined by `sep`, into buf. */
static const char *flag_list(const struct info_flag *t, CK_FLAGS flags,
                             const char *sep, char *buf, size_t len)
{
    size_t w = 0;
    int n;

    buf[0] = '\0';
    for (; t->name != NULL && w < len; t++) {
        if ((flags & t->flag) == 0)
            continue;
        n = snprintf(buf + w, len - w, "%s%s", w > 0 ? sep : "", t->name);
        if (n < 0)
            break;
        w += (size_t)n;
    }
    return buf;
}

/* A blank-padded Cryptoki field as a C string. */
static const char *padded(const CK_UTF8CHAR *field, size_t flen, char *buf,
                          size_t len)
{
    size_t n = flen < len - 1 ? flen : len - 1;

    memcpy(buf, field, n);
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\0'))
        n--;
    buf[n] = '\0';
    return buf;
}

/* A JSON string (the value is printable text from the token). */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static char *token_uri(const CK_TOKEN_INFO *ti)
{
    struct p11b_uri *uri = p11b_uri_new();
    char *s = NULL;

    if (uri != NULL && p11b_uri_set_token_info(uri, ti) == 0)
        s = p11b_uri_format(uri, P11B_URI_FMT_NO_QUERY);
    p11b_uri_free(uri);
    return s;
}

static void print_mechanisms(struct p11b_slot *slot, int json)
{
    CK_MECHANISM_INFO mi;
    char flags[256];
    CK_ULONG i;
    CK_RV rv;

    /* has_mechanism loads the list; once loaded it is never replaced
     * (slot.c), so reading it without the lock is safe. */
    (void)p11b_slot_has_mechanism(slot, CKM_RSA_PKCS);
    if (!json)
        printf("  mechanisms (%lu):\n",
               slot->mechs_loaded ? slot->nmechs : 0UL);
    for (i = 0; slot->mechs_loaded && i < slot->nmechs; i++) {
        CK_MECHANISM_TYPE m = slot->mechs[i];
        const char *name = p11b_mech_name_lookup(m);
        char num[32];

        snprintf(num, sizeof(num), "0x%08lx", m);
        rv = p11b_slot_mechanism_info(slot, m, &mi);
        if (rv == CKR_OK)
            flag_list(mech_flags, mi.flags, json ? "\", \"" : " ", flags,
                      sizeof(flags));
        if (json) {
            printf("%s\n      { \"name\": ", i > 0 ? "," : "");
            json_str(name != NULL ? name : num);
            printf(", \"value\": %lu", m);
            if (rv == CKR_OK)
                printf(", \"min_key_size\": %lu, \"max_key_size\": %lu, "
                       "\"flags\": [%s%s%s] }",
                       mi.ulMinKeySize, mi.ulMaxKeySize,
                       flags[0] != '\0' ? "\"" : "", flags,
                       flags[0] != '\0' ? "\"" : "");
            else
                printf(", \"error\": \"%s\" }", p11b_rv_name(rv));
            continue;
        }
        if (rv == CKR_OK)
            printf("    %-32s key size %lu-%lu  %s\n",
                   name != NULL ? name : num, mi.ulMinKeySize, mi.ulMaxKeySize,
                   flags);
        else
            printf("    %-32s (C_GetMechanismInfo: %s)\n",
                   name != NULL ? name : num, p11b_rv_name(rv));
    }
}

static void print_ops(struct p11b_slot *slot, int json)
{
    char how[512];
    enum info_verdict v;
    size_t i;

    if (!json)
        printf("  p11bridge will do:\n");
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        v = op_verdict(slot, &ops[i], how, sizeof(how));
        if (json) {
            printf("%s\n      { \"operation\": ", i > 0 ? "," : "");
            json_str(ops[i].name);
            printf(", \"verdict\": \"%s\", \"how\": ", verdict_names[v]);
            json_str(how);
            printf(" }");
        } else if (v == V_UNAVAILABLE) {
            printf("    %-30s unavailable\n", ops[i].name);
        } else {
            printf("    %-30s %s (%s)\n", ops[i].name, verdict_names[v], how);
        }
    }
}

static int print_slot(struct p11b_slot *slot, int first, int json)
{
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    char label[33], manuf[33], model[17], serial[17], desc[65], flags[512];
    char *uri;
    CK_RV rv;

    rv = p11b_slot_refresh(slot);
    if (rv == CKR_OK)
        rv = p11b_slot_token_info(slot, &ti);
    p11b_slot_info(slot, &si);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11bridge-info: C_GetTokenInfo on slot %lu: %s\n",
                slot->id, p11b_rv_name(rv));
        return 0;
    }
    uri = token_uri(&ti);
    padded(ti.label, sizeof(ti.label), label, sizeof(label));
    padded(ti.manufacturerID, sizeof(ti.manufacturerID), manuf, sizeof(manuf));
    padded(ti.model, sizeof(ti.model), model, sizeof(model));
    padded(ti.serialNumber, sizeof(ti.serialNumber), serial, sizeof(serial));
    padded(si.slotDescription, sizeof(si.slotDescription), desc, sizeof(desc));
    if (json) {
        printf("%s\n    { \"slot\": %lu, \"slot_description\": ",
               first ? "" : ",", slot->id);
        json_str(desc);
        printf(", \"label\": ");
        json_str(label);
        printf(", \"manufacturer\": ");
        json_str(manuf);
        printf(", \"model\": ");
        json_str(model);
        printf(", \"serial\": ");
        json_str(serial);
        printf(", \"uri\": ");
        json_str(uri != NULL ? uri : "");
        flag_list(token_flags, ti.flags, "\", \"", flags, sizeof(flags));
        printf(", \"flags\": [%s%s%s],\n      \"mechanisms\": [",
               flags[0] != '\0' ? "\"" : "", flags,
               flags[0] != '\0' ? "\"" : "");
        print_mechanisms(slot, 1);
        printf(" ],\n      \"operations\": [");
        print_ops(slot, 1);
        printf(" ] }");
    } else {
        printf("%sSlot %lu: %s\n", first ? "" : "\n", slot->id, desc);
        printf("  token:        %s\n", label);
        printf("  URI:          %s\n", uri != NULL ? uri : "(out of memory)");
        printf("  manufacturer: %s\n", manuf);
        printf("  model:        %s\n", model);
        printf("  serial:       %s\n", serial);
        flag_list(token_flags, ti.flags, ", ", flags, sizeof(flags));
        printf("  flags:        %s\n", flags[0] != '\0' ? flags : "(none)");
        print_mechanisms(slot, 0);
        print_ops(slot, 0);
    }
    free(uri);
    return 1;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: p11bridge-info [--module PATH] [--init-args ARGS] [--json]\n"
        "\n"
        "Lists the tokens of a PKCS#11 module, their mechanisms, and what\n"
        "p11bridge will do with each: native, fallback (how) or\n"
        "unavailable. No PIN is asked for; only public information is read.\n"
        "\n"
        "  --module PATH     the module (default: $PKCS11_PROVIDER_MODULE,\n"
        "                    else %s)\n"
        "  --init-args ARGS  C_Initialize's reserved argument (NSS softokn)\n"
        "  --json            JSON instead of text\n",
        P11B_DEFAULT_MODULE);
}

static int parse_args(int argc, char **argv, struct info_opts *o)
{
    const char *env = getenv("PKCS11_PROVIDER_MODULE");
    int i;

    /* The provider's order (config.c apply_config): the environment
     * over the configured path, the built-in default last. */
    o->module = env != NULL && env[0] != '\0' ? env : P11B_DEFAULT_MODULE;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            o->json = 1;
        } else if (strcmp(argv[i], "--module") == 0 && i + 1 < argc) {
            o->module = argv[++i];
        } else if (strcmp(argv[i], "--init-args") == 0 && i + 1 < argc) {
            o->init_args = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "p11bridge-info: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct p11b_module_opts mopts = { 0, 0 };
    struct info_opts o = { NULL, NULL, 0 };
    struct p11b_module *mod = NULL;
    struct p11b_slot **slots = NULL;
    char err[512] = "", ver[64];
    size_t n = 0, i;
    int status = 1;
    CK_INFO *li;
    CK_RV rv;

    if (!parse_args(argc, argv, &o))
        return 2;
    rv = p11b_module_get(o.module, o.init_args, &mopts, &mod);
    if (rv == CKR_OK)
        rv = p11b_module_ensure(mod, err, sizeof(err));
    if (rv != CKR_OK) {
        fprintf(stderr,
                "p11bridge-info: cannot load the PKCS#11 module %s: "
                "%s%s%s\n",
                o.module, p11b_rv_name(rv), err[0] ? ": " : "", err);
        goto done;
    }
    rv = p11b_module_slots(mod, 1, &slots, &n);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11bridge-info: C_GetSlotList on %s: %s\n", o.module,
                p11b_rv_name(rv));
        goto done;
    }
    li = &mod->lib.info;
    snprintf(ver, sizeof(ver), "%u.%u, Cryptoki %u.%u",
             li->libraryVersion.major, li->libraryVersion.minor,
             li->cryptokiVersion.major, li->cryptokiVersion.minor);
    if (o.json) {
        char d[33], m[33];

        printf("{ \"module\": ");
        json_str(o.module);
        printf(", \"library\": ");
        json_str(padded(li->libraryDescription, sizeof(li->libraryDescription),
                        d, sizeof(d)));
        printf(", \"library_manufacturer\": ");
        json_str(padded(li->manufacturerID, sizeof(li->manufacturerID), m,
                        sizeof(m)));
        printf(", \"version\": ");
        json_str(ver);
        printf(",\n  \"tokens\": [");
    } else {
        char d[33], m[33];

        printf("Module: %s\n", o.module);
        printf("  library: %s (%s), version %s\n",
               padded(li->libraryDescription, sizeof(li->libraryDescription), d,
                      sizeof(d)),
               padded(li->manufacturerID, sizeof(li->manufacturerID), m,
                      sizeof(m)),
               ver);
        if (n == 0)
            printf("  no slot with a token\n");
        else
            printf("\n");
    }
    status = 0;
    for (i = 0; i < n; i++) {
        if (!print_slot(slots[i], i == 0, o.json))
            status = 1;
    }
    if (o.json)
        printf(" ] }\n");
done:
    free(slots);
    p11b_module_put(mod);
    return status;
}
