/*
 * p11b-bench: how fast p11bridge signs, decrypts, derives and loads keys,
 * against the token itself and against OpenSSL's default provider
 * (bench/README.md: how to run it, what each number means).
 *
 * Three contenders take turns, round after round (provider, limit,
 * software, provider, ...), so drift of the machine hits them equally:
 *   provider  the token key loaded once from a pkcs11: URI through
 *             OSSL_STORE, a fresh EVP_DigestSignInit_ex (or decrypt or
 *             derive context) per operation, as libssl makes one per
 *             handshake; the provider comes from OPENSSL_CONF;
 *   limit     the PKCS#11 module called directly, as lean as it gets: one
 *             session per thread, the key copied to a session object
 *             (C_CopyObject, CKA_TOKEN=FALSE) where the token allows, the
 *             message hashed in software, the raw mechanism;
 *   software  OpenSSL's default provider with a key of the same type.
 * One result of every measurement is checked in software (signatures
 * verified by the default provider from the public key; decrypted and
 * derived bytes compared); a failed check aborts the run.
 *
 * With --load-uri it times key loading instead: OSSL_STORE open to usable
 * EVP_PKEY, cold (first load in a fresh process) and warm (repeated),
 * next to a direct C_FindObjects by the same attributes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/store.h>
#include <openssl/x509.h>

#include <p11-kit/pkcs11.h>

#define MAX_THREADS 64
#define MAX_ROUNDS 100
#define MAX_SIG 512                 /* RSA-4096 at most */
#define MSG_LEN 130                 /* a TLS 1.3 CertificateVerify input */
#define SECRET_LEN 48               /* a TLS 1.2 pre-master secret */
#define SOFT_PROPQ "provider=default"
#define URI_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" \
                  "0123456789-._~"

enum contender { CT_PROVIDER, CT_LIMIT, CT_SOFTWARE, N_CONTENDERS };
static const char *const ct_names[N_CONTENDERS] = { "provider", "limit",
                                                    "software" };
enum kind { K_SIGN, K_DECRYPT, K_DERIVE };
enum pad { PAD_NONE, PAD_PKCS1, PAD_PSS };

/* One benchmark case. RSA PKCS#1 here always uses SHA-256. */
struct bcase {
    const char *name;
    const char *key;                /* token label, software key file stem */
    enum kind kind;
    enum pad pad;
    const char *md;                 /* NULL: Ed25519, decrypt, derive */
    CK_MECHANISM_TYPE mech;         /* the limit's raw mechanism */
};

static const struct bcase cases[] = {
    { "rsa2048-pkcs1", "rsa2048", K_SIGN, PAD_PKCS1, "SHA256", CKM_RSA_PKCS },
    { "rsa2048-pss", "rsa2048", K_SIGN, PAD_PSS, "SHA256", CKM_RSA_PKCS_PSS },
    { "rsa3072-pkcs1", "rsa3072", K_SIGN, PAD_PKCS1, "SHA256", CKM_RSA_PKCS },
    { "rsa3072-pss", "rsa3072", K_SIGN, PAD_PSS, "SHA256", CKM_RSA_PKCS_PSS },
    { "p256-ecdsa", "p256", K_SIGN, PAD_NONE, "SHA256", CKM_ECDSA },
    { "p384-ecdsa", "p384", K_SIGN, PAD_NONE, "SHA384", CKM_ECDSA },
    { "ed25519", "ed25519", K_SIGN, PAD_NONE, NULL, CKM_EDDSA },
    { "rsa2048-decrypt", "rsa2048", K_DECRYPT, PAD_PKCS1, NULL, CKM_RSA_PKCS },
    { "p256-ecdh", "p256", K_DERIVE, PAD_NONE, NULL, CKM_ECDH1_DERIVE },
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* DER prefix of a SHA-256 DigestInfo (RFC 8017, section 9.2, note 1). */
static const unsigned char sha256_prefix[] = {
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20
};

static struct {
    const char *module, *token, *pin_file, *soft_dir, *tsv, *log_marks;
    const char *load_uri, *load_label, *tag;
    int want_case[N_CASES], want_ct[N_CONTENDERS];
    int threads[8], nthreads, max_threads;
    double duration;
    int rounds, cold, quiet;
    unsigned long ops;              /* fixed ops per thread; 0: duration */
} opt;

/* The module as the limit contender uses it. Set up by the main thread
 * before any measurement, only read afterwards (thread i uses sess[i]). */
static struct {
    CK_FUNCTION_LIST *f;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE login;        /* kept open: the login lasts */
    CK_SESSION_HANDLE sess[MAX_THREADS];
    int nsess;
} tok;

/* One key in its three forms. */
struct key {
    const char *name;
    EVP_PKEY *prov;                 /* the token key, through the provider */
    EVP_PKEY *pub;                  /* its public half, default provider */
    EVP_PKEY *soft;                 /* a software key of the same type */
    CK_OBJECT_HANDLE h[MAX_THREADS]; /* limit: the key in session i */
    int session_copy;               /* 1 if h[] are C_CopyObject copies */
};

/* A case made ready: its inputs and the results to expect. */
struct prepared {
    const struct bcase *c;
    struct key *key;
    EVP_MD *md;
    unsigned char msg[MSG_LEN], plain[SECRET_LEN];
    unsigned char ct_tok[MAX_SIG], ct_soft[MAX_SIG];
    size_t ct_tok_len, ct_soft_len;
    EVP_PKEY *peer;
    unsigned char peer_point[133];
    size_t peer_point_len;
    unsigned char secret_tok[66], secret_soft[66];
    size_t secret_len;
};

/* Latencies (ns) of all rounds of one measurement, and each round's
 * throughput and process CPU time per operation (less disturbed by other
 * processes than wall time). */
struct series {
    uint32_t *lat;
    size_t n, cap;
    double tput[MAX_ROUNDS], cpu_us[MAX_ROUNDS];
    unsigned long ops[MAX_ROUNDS];
    int nr;
};

/* One measurement: what the workers do, and when they stop. */
struct run {
    struct prepared *p;
    enum contender ct;
    unsigned long ops;
    atomic_int stop;
    pthread_barrier_t start;
};

struct worker {
    struct run *run;
    int idx;
    pthread_t tid;
    uint32_t *lat;
    size_t n, cap;
    unsigned char out[MAX_SIG];
    size_t outlen;
    int failed;
};

static struct key keys[8];
static size_t nkeys;
static unsigned long n_verified;
static int marks_fd = -1;

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "p11b-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);

    if (p == NULL)
        die("out of memory");
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* User + system CPU time of the whole process, in microseconds. */
static double cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* A line in the provider's debug log, so bench.py can count the token
 * calls of one measurement. */
static void mark(const char *what, const char *tag, unsigned long ops)
{
    char line[256];
    int len;

    if (marks_fd < 0)
        return;
    len = snprintf(line, sizeof(line), "p11b-bench MARK %s %s ops=%lu\n",
                   what, tag, ops);
    if (len > 0 && write(marks_fd, line, (size_t)len) != len)
        die("cannot write to the log of --log-marks");
}

/* ---- the limit contender: the PKCS#11 module called directly -------- */

static void ck(CK_RV rv, const char *what)
{
    if (rv != CKR_OK)
        die("%s: CK_RV 0x%08lx", what, rv);
}

/* 1 if the slot holds the token labelled opt.token. */
static int slot_has_token(CK_SLOT_ID slot)
{
    CK_TOKEN_INFO ti;
    size_t n = strlen(opt.token);

    ck(tok.f->C_GetTokenInfo(slot, &ti), "C_GetTokenInfo");
    if (n > sizeof(ti.label) || memcmp(ti.label, opt.token, n) != 0)
        return 0;
    for (; n < sizeof(ti.label); n++)
        if (ti.label[n] != ' ')
            return 0;
    return 1;
}

static void token_open(void)
{
    CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
    CK_C_GetFunctionList get;
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64, i;
    void *dl;
    CK_RV rv;

    if (opt.module == NULL || opt.token == NULL)
        die("the limit contender needs --module and --token");
    dl = dlopen(opt.module, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL)
        die("dlopen %s: %s", opt.module, dlerror());
    get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (get == NULL)
        die("%s: no C_GetFunctionList: %s", opt.module, dlerror());
    ck(get(&tok.f), "C_GetFunctionList");
    rv = tok.f->C_Initialize(&args);
    if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) /* the provider did it */
        ck(rv, "C_Initialize");
    ck(tok.f->C_GetSlotList(CK_TRUE, slots, &n), "C_GetSlotList");
    for (i = 0; i < n && !slot_has_token(slots[i]); i++)
        ;
    if (i == n)
        die("no token labelled '%s' in %s", opt.token, opt.module);
    tok.slot = slots[i];
}

static void token_login(void)
{
    char pin[256] = "";
    FILE *fp;
    CK_RV rv;

    if (opt.pin_file == NULL)
        die("the limit contender needs --pin-file");
    fp = fopen(opt.pin_file, "r");
    if (fp == NULL || fgets(pin, sizeof(pin), fp) == NULL)
        die("cannot read %s", opt.pin_file);
    fclose(fp);
    pin[strcspn(pin, "\r\n")] = '\0';
    ck(tok.f->C_OpenSession(tok.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                            NULL, NULL, &tok.login),
       "C_OpenSession");
    rv = tok.f->C_Login(tok.login, CKU_USER, (CK_UTF8CHAR *)pin,
                        (CK_ULONG)strlen(pin));
    OPENSSL_cleanse(pin, sizeof(pin));
    if (rv != CKR_USER_ALREADY_LOGGED_IN) /* the provider did it */
        ck(rv, "C_Login");
}

/* The private key labelled `label`, by class and label: ms taken. */
static double token_find(const char *label, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) },
                         { CKA_LABEL, (void *)label, strlen(label) } };
    uint64_t t0 = now_ns();
    CK_ULONG n = 0;

    ck(tok.f->C_FindObjectsInit(tok.login, t, 2), "C_FindObjectsInit");
    ck(tok.f->C_FindObjects(tok.login, out, 1, &n), "C_FindObjects");
    ck(tok.f->C_FindObjectsFinal(tok.login), "C_FindObjectsFinal");
    if (n != 1)
        die("no private key labelled '%s' on the token", label);
    return (double)(now_ns() - t0) / 1e6;
}

/* Sessions for every thread, and in each a session-object copy of the key
 * where the token allows (all or none; else the token object). */
static void token_key(struct key *k)
{
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE t = { CKA_TOKEN, &no, sizeof(no) };
    CK_OBJECT_HANDLE h;
    int i;

    if (tok.f == NULL) { /* after the provider's own C_Initialize */
        token_open();
        token_login();
    }
    for (; tok.nsess < opt.max_threads; tok.nsess++)
        ck(tok.f->C_OpenSession(tok.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                NULL, NULL, &tok.sess[tok.nsess]),
           "C_OpenSession");
    token_find(k->name, &h);
    k->session_copy = 1;
    for (i = 0; i < tok.nsess && k->session_copy; i++)
        k->session_copy =
            tok.f->C_CopyObject(tok.sess[i], h, &t, 1, &k->h[i]) == CKR_OK;
    for (i = 0; i < tok.nsess && !k->session_copy; i++)
        k->h[i] = h;
}

static int limit_sign(struct prepared *p, CK_SESSION_HANDLE s,
                      CK_OBJECT_HANDLE key, unsigned char *out, CK_ULONG *len)
{
    CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
    CK_MECHANISM mech = { p->c->mech, NULL, 0 };
    unsigned char buf[sizeof(sha256_prefix) + EVP_MAX_MD_SIZE];
    unsigned char *in = buf, *md = buf;
    unsigned int mdlen = 0;
    size_t inlen = 0;
    CK_RV rv;

    if (p->c->pad == PAD_PKCS1) {
        memcpy(buf, sha256_prefix, sizeof(sha256_prefix));
        md = buf + sizeof(sha256_prefix);
        inlen = sizeof(sha256_prefix);
    } else if (p->c->pad == PAD_PSS) {
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
    }
    if (p->md != NULL) {
        if (!EVP_Digest(p->msg, MSG_LEN, md, &mdlen, p->md, NULL))
            return 0;
        inlen += mdlen;
    } else { /* EdDSA signs the message itself */
        in = p->msg;
        inlen = MSG_LEN;
    }
    rv = tok.f->C_SignInit(s, &mech, key);
    if (rv == CKR_OK)
        rv = tok.f->C_Sign(s, in, (CK_ULONG)inlen, out, len);
    return rv == CKR_OK;
}

/* The three calls the provider makes too: derive into a session object,
 * read it, destroy it. */
static int limit_derive(struct prepared *p, CK_SESSION_HANDLE s,
                        CK_OBJECT_HANDLE key, unsigned char *out,
                        CK_ULONG *len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG vlen = p->secret_len;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },   { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &no, sizeof(no) },     { CKA_PRIVATE, &no, sizeof(no) },
        { CKA_SENSITIVE, &no, sizeof(no) }, { CKA_EXTRACTABLE, &yes, sizeof(yes) },
        { CKA_VALUE_LEN, &vlen, sizeof(vlen) },
    };
    CK_ECDH1_DERIVE_PARAMS ecdh = { CKD_NULL, 0, NULL,
                                    (CK_ULONG)p->peer_point_len, p->peer_point };
    CK_MECHANISM mech = { CKM_ECDH1_DERIVE, &ecdh, sizeof(ecdh) };
    CK_ATTRIBUTE val = { CKA_VALUE, out, p->secret_len };
    CK_OBJECT_HANDLE h;
    CK_RV rv;

    rv = tok.f->C_DeriveKey(s, &mech, key, t, sizeof(t) / sizeof(t[0]), &h);
    if (rv != CKR_OK)
        return 0;
    rv = tok.f->C_GetAttributeValue(s, h, &val, 1);
    tok.f->C_DestroyObject(s, h);
    *len = val.ulValueLen;
    return rv == CKR_OK;
}

static int limit_op(struct prepared *p, int idx, unsigned char *out,
                    size_t *outlen)
{
    CK_MECHANISM rsa = { CKM_RSA_PKCS, NULL, 0 };
    CK_SESSION_HANDLE s = tok.sess[idx];
    CK_OBJECT_HANDLE key = p->key->h[idx];
    CK_ULONG len = MAX_SIG;
    int ok;
    CK_RV rv;

    if (p->c->kind == K_SIGN) {
        ok = limit_sign(p, s, key, out, &len);
    } else if (p->c->kind == K_DERIVE) {
        ok = limit_derive(p, s, key, out, &len);
    } else {
        rv = tok.f->C_DecryptInit(s, &rsa, key);
        if (rv == CKR_OK)
            rv = tok.f->C_Decrypt(s, p->ct_tok, (CK_ULONG)p->ct_tok_len, out,
                                  &len);
        ok = rv == CKR_OK;
    }
    *outlen = len;
    return ok;
}

/* ---- keys ------------------------------------------------------------- */

/* The first key a store URI gives; NULL on failure. */
static EVP_PKEY *store_load(const char *uri)
{
    OSSL_STORE_CTX *s;
    OSSL_STORE_INFO *info;
    EVP_PKEY *pk = NULL;

    s = OSSL_STORE_open_ex(uri, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    if (s == NULL)
        return NULL;
    OSSL_STORE_expect(s, OSSL_STORE_INFO_PKEY);
    while (pk == NULL && !OSSL_STORE_eof(s)) {
        info = OSSL_STORE_load(s);
        if (info != NULL &&
            OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pk = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
        if (info == NULL && OSSL_STORE_error(s))
            break;
    }
    OSSL_STORE_close(s);
    return pk;
}

/* DIR/<name>.pem with --soft-dir, else a fresh key of the same type. */
static EVP_PKEY *soft_key(const char *name)
{
    char path[4096];
    EVP_PKEY *pk = NULL;
    BIO *bio;

    if (opt.soft_dir != NULL) {
        snprintf(path, sizeof(path), "%s/%s.pem", opt.soft_dir, name);
        bio = BIO_new_file(path, "r");
        if (bio == NULL)
            die("cannot open %s", path);
        pk = PEM_read_bio_PrivateKey_ex(bio, NULL, NULL, NULL, NULL,
                                        SOFT_PROPQ);
        BIO_free(bio);
    } else if (strncmp(name, "rsa", 3) == 0) {
        pk = EVP_PKEY_Q_keygen(NULL, SOFT_PROPQ, "RSA", (size_t)atoi(name + 3));
    } else if (strcmp(name, "ed25519") == 0) {
        pk = EVP_PKEY_Q_keygen(NULL, SOFT_PROPQ, "ED25519");
    } else {
        pk = EVP_PKEY_Q_keygen(NULL, SOFT_PROPQ, "EC",
                               strcmp(name, "p384") == 0 ? "P-384" : "P-256");
    }
    if (pk == NULL)
        die("no software key for %s", name);
    return pk;
}

/* The token key through the provider, and its public half re-read by the
 * default provider (for checking results). */
static void load_token_key(struct key *k)
{
    const unsigned char *p;
    unsigned char *der = NULL;
    char uri[512];
    int len;

    if (opt.token == NULL)
        die("--token LABEL is needed for the token contenders");
    if (opt.token[strspn(opt.token, URI_CHARS)] != '\0')
        die("token labels here are made of %s only", URI_CHARS);
    snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=%s;type=private",
             opt.token, k->name);
    k->prov = store_load(uri);
    if (k->prov == NULL)
        die("cannot load %s through OSSL_STORE", uri);
    len = i2d_PUBKEY(k->prov, &der);
    p = der;
    if (len > 0)
        k->pub = d2i_PUBKEY_ex(NULL, &p, len, NULL, SOFT_PROPQ);
    OPENSSL_free(der);
    if (k->pub == NULL)
        die("%s: no public key", uri);
}

static struct key *key_get(const char *name)
{
    struct key *k;
    size_t i;

    for (i = 0; i < nkeys; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    k = &keys[nkeys++];
    k->name = name;
    if (opt.want_ct[CT_PROVIDER] || opt.want_ct[CT_LIMIT])
        load_token_key(k);
    if (opt.want_ct[CT_LIMIT])
        token_key(k);
    if (opt.want_ct[CT_SOFTWARE])
        k->soft = soft_key(name);
    return k;
}

/* ---- the provider's and the software's operations --------------------- */

/* As libssl signs a CertificateVerify: a new context, the size, the
 * signature. */
static int evp_sign(struct prepared *p, EVP_PKEY *pk, const char *propq,
                    unsigned char *out, size_t *outlen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    size_t len = 0;
    int ok;

    ok = m != NULL &&
         EVP_DigestSignInit_ex(m, &pc, p->c->md, NULL, propq, pk, NULL) == 1;
    if (ok && p->c->pad == PAD_PSS)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestSign(m, NULL, &len, p->msg, MSG_LEN) == 1 &&
         len <= MAX_SIG && EVP_DigestSign(m, out, &len, p->msg, MSG_LEN) == 1;
    EVP_MD_CTX_free(m);
    *outlen = len;
    return ok;
}

/* Decryption (PKCS#1 v1.5) or ECDH, as libssl derives: the peer is
 * checked by EVP_PKEY_derive_set_peer. */
static int evp_decrypt_derive(struct prepared *p, EVP_PKEY *pk,
                              const char *propq, unsigned char *out,
                              size_t *outlen)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pk, propq);
    int soft = pk != p->key->prov;
    int ok;

    *outlen = MAX_SIG;
    if (p->c->kind == K_DECRYPT)
        ok = pc != NULL && EVP_PKEY_decrypt_init(pc) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_decrypt(pc, out, outlen, soft ? p->ct_soft : p->ct_tok,
                              soft ? p->ct_soft_len : p->ct_tok_len) == 1;
    else
        ok = pc != NULL && EVP_PKEY_derive_init(pc) == 1 &&
             EVP_PKEY_derive_set_peer(pc, p->peer) == 1 &&
             EVP_PKEY_derive(pc, out, outlen) == 1;
    EVP_PKEY_CTX_free(pc);
    return ok;
}

static int do_op(struct prepared *p, enum contender ct, int idx,
                 unsigned char *out, size_t *outlen)
{
    /* The provider as libssl reaches it (no property query); the software
     * reference is the default provider alone. */
    EVP_PKEY *pk = ct == CT_PROVIDER ? p->key->prov : p->key->soft;
    const char *propq = ct == CT_PROVIDER ? NULL : SOFT_PROPQ;

    if (ct == CT_LIMIT)
        return limit_op(p, idx, out, outlen);
    if (p->c->kind == K_SIGN)
        return evp_sign(p, pk, propq, out, outlen);
    return evp_decrypt_derive(p, pk, propq, out, outlen);
}

/* The signing runs where it should. Init only: no token call outside the
 * measured threads, so profiles of those threads see all of them. */
static void check_provider(struct prepared *p, EVP_PKEY *pk,
                           const char *propq, const char *want)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    const char *got = "none";

    if (m != NULL &&
        EVP_DigestSignInit_ex(m, &pc, p->c->md, NULL, propq, pk, NULL) == 1)
        got = OSSL_PROVIDER_get0_name(EVP_PKEY_CTX_get0_provider(pc));
    if (strcmp(got, want) != 0)
        die("%s: signing by provider '%s', not '%s'", p->c->name, got, want);
    EVP_MD_CTX_free(m);
}

/* ---- checking results in software ------------------------------------ */

/* CKM_ECDSA gives r||s; OpenSSL verifies DER. */
static size_t ecdsa_raw_to_der(const unsigned char *raw, size_t len,
                               unsigned char *der)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(len / 2), NULL);
    BIGNUM *s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
    int n = 0;

    if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s)) {
        r = s = NULL;
        n = i2d_ECDSA_SIG(sig, &der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return n > 0 ? (size_t)n : 0;
}

static int verify_sig(struct prepared *p, EVP_PKEY *pub,
                      const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    int ok;

    ok = m != NULL && EVP_DigestVerifyInit_ex(m, &pc, p->c->md, NULL,
                                              SOFT_PROPQ, pub, NULL) == 1;
    if (ok && p->c->pad == PAD_PSS)
        ok = EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) == 1;
    ok = ok && EVP_DigestVerify(m, sig, siglen, p->msg, MSG_LEN) == 1;
    EVP_MD_CTX_free(m);
    return ok;
}

static void check_result(struct prepared *p, enum contender ct,
                         const unsigned char *out, size_t len)
{
    unsigned char der[MAX_SIG + 16];
    const unsigned char *want = p->plain;
    size_t want_len = SECRET_LEN;
    int ok;

    if (p->c->kind == K_SIGN) {
        if (ct == CT_LIMIT && p->c->mech == CKM_ECDSA) {
            len = ecdsa_raw_to_der(out, len, der);
            out = der;
        }
        ok = verify_sig(p, ct == CT_SOFTWARE ? p->key->soft : p->key->pub,
                        out, len);
    } else {
        if (p->c->kind == K_DERIVE) {
            want = ct == CT_SOFTWARE ? p->secret_soft : p->secret_tok;
            want_len = p->secret_len;
        }
        ok = len == want_len && memcmp(out, want, len) == 0;
    }
    if (!ok)
        die("%s by %s: the result does not verify in software", p->c->name,
            ct_names[ct]);
    n_verified++;
}

/* ---- preparing a case ------------------------------------------------- */

static size_t encrypt_soft(EVP_PKEY *pub, const unsigned char *in,
                           unsigned char *out)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, pub, SOFT_PROPQ);
    size_t len = MAX_SIG;

    if (pc == NULL || EVP_PKEY_encrypt_init(pc) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_encrypt(pc, out, &len, in, SECRET_LEN) != 1)
        die("RSA encryption in software failed");
    EVP_PKEY_CTX_free(pc);
    return len;
}

static size_t derive_soft(EVP_PKEY *a, EVP_PKEY *b, unsigned char *out)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_pkey(NULL, a, SOFT_PROPQ);
    size_t len = 66;

    if (pc == NULL || EVP_PKEY_derive_init(pc) != 1 ||
        EVP_PKEY_derive_set_peer(pc, b) != 1 ||
        EVP_PKEY_derive(pc, out, &len) != 1)
        die("ECDH in software failed");
    EVP_PKEY_CTX_free(pc);
    return len;
}

static void prepare(struct prepared *p, const struct bcase *c)
{
    struct key *k = key_get(c->key);

    memset(p, 0, sizeof(*p));
    p->c = c;
    p->key = k;
    if (RAND_bytes(p->msg, MSG_LEN) != 1 ||
        RAND_bytes(p->plain, SECRET_LEN) != 1)
        die("RAND_bytes failed");
    if (c->md != NULL) {
        p->md = EVP_MD_fetch(NULL, c->md, SOFT_PROPQ);
        if (p->md == NULL)
            die("no digest %s", c->md);
    }
    if (c->kind == K_DECRYPT && k->pub != NULL)
        p->ct_tok_len = encrypt_soft(k->pub, p->plain, p->ct_tok);
    if (c->kind == K_DECRYPT && k->soft != NULL)
        p->ct_soft_len = encrypt_soft(k->soft, p->plain, p->ct_soft);
    if (c->kind != K_DERIVE)
        return;
    /* A software peer, and the secrets it derives with each of our keys. */
    p->peer = EVP_PKEY_Q_keygen(NULL, SOFT_PROPQ, "EC", "P-256");
    if (p->peer == NULL ||
        !EVP_PKEY_get_octet_string_param(p->peer, OSSL_PKEY_PARAM_PUB_KEY,
                                         p->peer_point, sizeof(p->peer_point),
                                         &p->peer_point_len))
        die("cannot make an ECDH peer key");
    if (k->pub != NULL)
        p->secret_len = derive_soft(p->peer, k->pub, p->secret_tok);
    if (k->soft != NULL)
        p->secret_len = derive_soft(p->peer, k->soft, p->secret_soft);
}

/* ---- measuring -------------------------------------------------------- */

static void push_lat(uint32_t **lat, size_t *n, size_t *cap, uint32_t v)
{
    if (*n == *cap) {
        *cap = *cap != 0 ? *cap * 2 : 4096;
        *lat = realloc(*lat, *cap * sizeof(**lat));
        if (*lat == NULL)
            die("out of memory");
    }
    (*lat)[(*n)++] = v;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    uint64_t t0, t1;

    pthread_barrier_wait(&r->start);
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed) &&
           (r->ops == 0 || w->n < r->ops)) {
        t0 = now_ns();
        if (!do_op(r->p, r->ct, w->idx, w->out, &w->outlen)) {
            w->failed = 1;
            break;
        }
        t1 = now_ns();
        push_lat(&w->lat, &w->n, &w->cap,
                 t1 - t0 > UINT32_MAX ? UINT32_MAX : (uint32_t)(t1 - t0));
    }
    return NULL;
}

static void sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* One measurement: `nthr` threads for the duration, or `ops` each. With
 * out == NULL, a warm-up: nothing recorded, no markers. */
static void measure(struct prepared *p, enum contender ct, int nthr,
                    unsigned long ops, struct series *out)
{
    struct worker w[MAX_THREADS];
    struct run r = { .p = p, .ct = ct, .ops = ops };
    unsigned long total = 0;
    double c0, c1;
    uint64_t t0, t1;
    char tag[96];
    int i;

    snprintf(tag, sizeof(tag), "%s %s threads=%d", ct_names[ct], p->c->name,
             nthr);
    memset(w, 0, sizeof(w));
    atomic_init(&r.stop, 0);
    pthread_barrier_init(&r.start, NULL, (unsigned)nthr + 1);
    for (i = 0; i < nthr; i++) {
        w[i].run = &r;
        w[i].idx = i;
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0)
            die("pthread_create failed");
    }
    if (ct == CT_PROVIDER && out != NULL)
        mark("begin", tag, 0);
    c0 = cpu_us();
    pthread_barrier_wait(&r.start);
    t0 = now_ns();
    if (ops == 0) {
        sleep_s(opt.duration);
        atomic_store(&r.stop, 1);
    }
    for (i = 0; i < nthr; i++)
        pthread_join(w[i].tid, NULL);
    t1 = now_ns();
    c1 = cpu_us();
    pthread_barrier_destroy(&r.start);
    for (i = 0; i < nthr; i++) {
        if (w[i].failed)
            die("%s: an operation failed", tag);
        for (size_t j = 0; out != NULL && j < w[i].n; j++)
            push_lat(&out->lat, &out->n, &out->cap, w[i].lat[j]);
        total += w[i].n;
        free(w[i].lat);
    }
    if (total == 0)
        die("%s: no operation finished", tag);
    check_result(p, ct, w[0].out, w[0].outlen);
    if (out == NULL)
        return;
    if (ct == CT_PROVIDER)
        mark("end", tag, total);
    out->ops[out->nr] = total;
    out->cpu_us[out->nr] = (c1 - c0) / (double)total;
    out->tput[out->nr++] = (double)total / ((double)(t1 - t0) / 1e9);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile of sorted latencies, in microseconds. */
static double pct_us(const uint32_t *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n + 0.999999);

    if (n == 0)
        return 0;
    i = i == 0 ? 0 : i - 1;
    return v[i < n ? i : n - 1] / 1e3;
}

/* Median over rounds of the per-round ratio a/b (or b/a): each pair of
 * contenders was measured side by side. */
static double round_ratio(const double *a, const double *b, int n, int inv)
{
    double v[MAX_ROUNDS];
    int r;

    for (r = 0; r < n; r++)
        v[r] = inv ? b[r] / a[r] : a[r] / b[r];
    return median(v, n);
}

static void report_case(const struct bcase *c, int nthr,
                        struct series s[N_CONTENDERS], FILE *tsv)
{
    double tput[N_CONTENDERS] = { 0 }, cpu[N_CONTENDERS] = { 0 };
    double p50[N_CONTENDERS] = { 0 }, p99[N_CONTENDERS] = { 0 };
    double tmp[MAX_ROUNDS], rt = 0, rc = 0;
    int ct, r, both = opt.want_ct[CT_PROVIDER] && opt.want_ct[CT_LIMIT];
    struct series *sp = &s[CT_PROVIDER], *sl = &s[CT_LIMIT];

    for (ct = 0; ct < N_CONTENDERS; ct++) {
        if (!opt.want_ct[ct])
            continue;
        qsort(s[ct].lat, s[ct].n, sizeof(uint32_t), cmp_u32);
        p50[ct] = pct_us(s[ct].lat, s[ct].n, 0.50);
        p99[ct] = pct_us(s[ct].lat, s[ct].n, 0.99);
        for (r = 0; r < s[ct].nr && tsv != NULL; r++)
            fprintf(tsv, "round\t%s\t%s\t%d\t%d\t%lu\t%.1f\t%.2f\n", c->name,
                    ct_names[ct], nthr, r + 1, s[ct].ops[r], s[ct].tput[r],
                    s[ct].cpu_us[r]);
        memcpy(tmp, s[ct].tput, sizeof(tmp));
        tput[ct] = median(tmp, s[ct].nr);
        memcpy(tmp, s[ct].cpu_us, sizeof(tmp));
        cpu[ct] = median(tmp, s[ct].nr);
    }
    if (both) {
        rt = round_ratio(sp->tput, sl->tput, sp->nr, 0);
        rc = round_ratio(sp->cpu_us, sl->cpu_us, sp->nr, 1);
    }
    for (ct = 0; ct < N_CONTENDERS && tsv != NULL; ct++)
        if (opt.want_ct[ct])
            fprintf(tsv, "summary\t%s\t%s\t%d\t%d\t%zu\t%.1f\t%.1f\t%.1f"
                    "\t%.4f\t%.2f\t%.4f\n", c->name, ct_names[ct], nthr,
                    s[ct].nr, s[ct].n, tput[ct], p50[ct], p99[ct],
                    ct == CT_PROVIDER ? rt : 0.0, cpu[ct],
                    ct == CT_PROVIDER ? rc : 0.0);
    if (opt.quiet)
        return;
    printf("%-15s %3d", c->name, nthr);
    for (ct = 0; ct < N_CONTENDERS; ct++) {
        if (opt.want_ct[ct])
            printf(" |%7.0f %7.0f %7.0f %6.0f", tput[ct], p50[ct], p99[ct],
                   cpu[ct]);
        else
            printf(" |%7s %7s %7s %6s", "-", "-", "-", "-");
    }
    if (both)
        printf(" | %5.3f %5.3f\n", rt, rc);
    else
        printf(" | %5s %5s\n", "-", "-");
}

static void run_case(const struct bcase *c, FILE *tsv)
{
    struct series s[8][N_CONTENDERS];
    struct prepared *p = xcalloc(1, sizeof(*p));
    int ct, r, t;

    prepare(p, c);
    if (c->kind == K_SIGN && opt.want_ct[CT_PROVIDER])
        check_provider(p, p->key->prov, NULL, "pkcs11");
    if (c->kind == K_SIGN && opt.want_ct[CT_SOFTWARE])
        check_provider(p, p->key->soft, SOFT_PROPQ, "default");
    memset(s, 0, sizeof(s));
    /* Warm up as many threads as will run (the provider's session pool
     * grows to fit); its result is checked like every measurement's. */
    for (ct = 0; ct < N_CONTENDERS; ct++)
        if (opt.want_ct[ct])
            measure(p, (enum contender)ct, opt.max_threads, 10, NULL);
    for (r = 0; r < opt.rounds; r++)
        for (t = 0; t < opt.nthreads; t++)
            for (ct = 0; ct < N_CONTENDERS; ct++)
                if (opt.want_ct[ct])
                    measure(p, (enum contender)ct, opt.threads[t],
                            opt.ops, &s[t][ct]);
    for (t = 0; t < opt.nthreads; t++) {
        report_case(c, opt.threads[t], s[t], tsv);
        for (ct = 0; ct < N_CONTENDERS; ct++)
            free(s[t][ct].lat);
    }
    fflush(stdout);
    EVP_MD_free(p->md);
    EVP_PKEY_free(p->peer);
    free(p);
}

/* ---- key loading ------------------------------------------------------ */

static double load_provider_ms(void)
{
    uint64_t t0 = now_ns();
    EVP_PKEY *pk = store_load(opt.load_uri);
    uint64_t t1 = now_ns();

    if (pk == NULL || EVP_PKEY_get_bits(pk) <= 0)
        die("cannot load %s", opt.load_uri);
    EVP_PKEY_free(pk);
    return (double)(t1 - t0) / 1e6;
}

/* The first load in a fresh process: a child, before anything is set up. */
static double cold_ms(enum contender ct)
{
    int fds[2], status;
    double ms = -1;
    CK_OBJECT_HANDLE h;
    uint64_t t0;
    pid_t pid;

    if (pipe(fds) != 0)
        die("pipe failed");
    pid = fork();
    if (pid < 0)
        die("cannot fork");
    if (pid == 0) {
        close(fds[0]);
        if (ct == CT_PROVIDER) {
            OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
            ms = load_provider_ms();
        } else {
            t0 = now_ns();
            token_open();
            token_login();
            ms = (double)(now_ns() - t0) / 1e6 +
                 token_find(opt.load_label, &h);
        }
        if (write(fds[1], &ms, sizeof(ms)) != sizeof(ms))
            _exit(1);
        _exit(0); /* no exit handlers: nothing to tear down here */
    }
    close(fds[1]);
    if (read(fds[0], &ms, sizeof(ms)) != sizeof(ms))
        ms = -1;
    close(fds[0]);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || ms < 0)
        die("the cold %s load failed", ct_names[ct]);
    return ms;
}

static void load_report(const char *ct, const char *phase, double *v, int n,
                        FILE *tsv)
{
    double p99;

    qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
    p99 = v[(size_t)(0.99 * n + 0.999999) - 1];
    if (tsv != NULL)
        fprintf(tsv, "load\t%s\t%s\t%s\t%d\t%.4f\t%.4f\t%.4f\n",
                opt.tag, ct, phase, n, median(v, n), p99, v[0]);
    if (!opt.quiet)
        printf("%-10s %-8s %-5s %6d %10.3f %10.3f %10.3f\n", opt.tag,
               ct, phase, n, median(v, n), p99, v[0]);
}

static void run_load(FILE *tsv)
{
    enum { MAXN = 100000 };
    double *pv = xcalloc(MAXN, sizeof(double));
    double *dv = xcalloc(MAXN, sizeof(double));
    int np = 0, nd = 0, i, r;
    CK_OBJECT_HANDLE h;
    char tag[128];
    uint64_t end;

    if (!opt.quiet)
        printf("%-10s %-8s %-5s %6s %10s %10s %10s\n", "objects", "path",
               "phase", "n", "p50 ms", "p99 ms", "min ms");
    for (i = 0; i < opt.cold; i++) {
        pv[np++] = cold_ms(CT_PROVIDER);
        dv[nd++] = cold_ms(CT_LIMIT);
    }
    load_report("provider", "cold", pv, np, tsv);
    load_report("direct", "cold", dv, nd, tsv);
    load_provider_ms(); /* this process's own first load: not counted */
    token_open();
    token_login();
    np = nd = 0;
    snprintf(tag, sizeof(tag), "load-warm objects=%s", opt.tag);
    for (r = 0; r < opt.rounds; r++) {
        mark("begin", tag, 0);
        end = now_ns() + (uint64_t)(opt.duration * 1e9);
        for (i = 0; np < MAXN && (i < 3 || now_ns() < end); i++)
            pv[np++] = load_provider_ms();
        mark("end", tag, (unsigned long)i);
        end = now_ns() + (uint64_t)(opt.duration * 1e9);
        for (i = 0; nd < MAXN && (i < 3 || now_ns() < end); i++)
            dv[nd++] = token_find(opt.load_label, &h);
    }
    load_report("provider", "warm", pv, np, tsv);
    load_report("direct", "warm", dv, nd, tsv);
    free(pv);
    free(dv);
}

/* ---- options and main ------------------------------------------------- */

static void usage(FILE *fp)
{
    fprintf(fp,
"usage: p11b-bench [options]        (OPENSSL_CONF loads the provider)\n"
"  --module PATH      PKCS#11 module for the limit contender\n"
"  --token LABEL      token holding keys labelled rsa2048, rsa3072, p256,\n"
"                     p384, ed25519\n"
"  --pin-file FILE    user PIN for the limit contender\n"
"  --soft-dir DIR     software keys DIR/<label>.pem (default: generated)\n"
"  --cases LIST       comma-separated, or 'all' (default):\n"
"                     rsa2048-pkcs1 rsa2048-pss rsa3072-pkcs1 rsa3072-pss\n"
"                     p256-ecdsa p384-ecdsa ed25519 rsa2048-decrypt p256-ecdh\n"
"  --contenders LIST  provider,limit,software (default: all three)\n"
"  --threads LIST     thread counts (default 1,2,4)\n"
"  --duration SEC     per measurement (default 0.3)\n"
"  --rounds N         alternated rounds (default 3)\n"
"  --ops N            fixed operations per thread instead of --duration\n"
"  --tsv FILE         machine-readable results\n"
"  --log-marks FILE   write begin/end markers into this debug log\n"
"  --quiet            no human-readable table\n"
"key loading instead (with --module, --token, --pin-file):\n"
"  --load-uri URI     time OSSL_STORE loads of URI, cold and warm\n"
"  --load-label L     vs C_FindObjects by CKA_CLASS=private, CKA_LABEL=L\n"
"  --cold N           cold loads per path, each in a fresh process (3)\n"
"  --tag TEXT         first column of the load results (e.g. object count)\n");
}

static void parse_list(char *arg, void (*each)(const char *item))
{
    char *save = NULL, *item;

    for (item = strtok_r(arg, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save))
        each(item);
}

static void add_case(const char *name)
{
    int all = strcmp(name, "all") == 0, found = 0;
    size_t i;

    for (i = 0; i < N_CASES; i++) {
        if (all || strcmp(name, cases[i].name) == 0) {
            opt.want_case[i] = 1;
            found = 1;
        }
    }
    if (!found)
        die("unknown case '%s'", name);
}

static void add_contender(const char *name)
{
    int i;

    for (i = 0; i < N_CONTENDERS && strcmp(name, ct_names[i]) != 0; i++)
        ;
    if (i == N_CONTENDERS)
        die("unknown contender '%s'", name);
    opt.want_ct[i] = 1;
}

static void add_threads(const char *s)
{
    int n = atoi(s);

    if (n < 1 || n > MAX_THREADS || opt.nthreads == 8)
        die("bad thread count '%s' (1..%d, at most 8 values)", s,
                  MAX_THREADS);
    opt.threads[opt.nthreads++] = n;
    if (n > opt.max_threads)
        opt.max_threads = n;
}

static const struct option long_opts[] = {
    { "module", 1, NULL, 'm' },     { "token", 1, NULL, 't' },
    { "pin-file", 1, NULL, 'p' },   { "soft-dir", 1, NULL, 's' },
    { "cases", 1, NULL, 'c' },      { "contenders", 1, NULL, 'C' },
    { "threads", 1, NULL, 'T' },    { "duration", 1, NULL, 'd' },
    { "rounds", 1, NULL, 'r' },     { "ops", 1, NULL, 'o' },
    { "tsv", 1, NULL, 'x' },        { "log-marks", 1, NULL, 'L' },
    { "quiet", 0, NULL, 'q' },      { "load-uri", 1, NULL, 'u' },
    { "load-label", 1, NULL, 'l' }, { "cold", 1, NULL, 'k' },
    { "tag", 1, NULL, 'g' },        { "help", 0, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

static void parse_opt(int ch)
{
    switch (ch) {
    case 'm': opt.module = optarg; break;
    case 't': opt.token = optarg; break;
    case 'p': opt.pin_file = optarg; break;
    case 's': opt.soft_dir = optarg; break;
    case 'c': parse_list(optarg, add_case); break;
    case 'C': parse_list(optarg, add_contender); break;
    case 'T': parse_list(optarg, add_threads); break;
    case 'd': opt.duration = atof(optarg); break;
    case 'r': opt.rounds = atoi(optarg); break;
    case 'o': opt.ops = strtoul(optarg, NULL, 10); break;
    case 'x': opt.tsv = optarg; break;
    case 'L': opt.log_marks = optarg; break;
    case 'q': opt.quiet = 1; break;
    case 'u': opt.load_uri = optarg; break;
    case 'l': opt.load_label = optarg; break;
    case 'k': opt.cold = atoi(optarg); break;
    case 'g': opt.tag = optarg; break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); exit(2);
    }
}

static void parse_args(int argc, char **argv)
{
    size_t i;
    int ch, any = 0;

    opt.duration = 0.3;
    opt.rounds = 3;
    opt.cold = 3;
    opt.tag = "-";
    for (ch = getopt_long(argc, argv, "h", long_opts, NULL); ch != -1;
         ch = getopt_long(argc, argv, "h", long_opts, NULL))
        parse_opt(ch);
    if (optind != argc || opt.rounds < 1 ||
        opt.rounds > MAX_ROUNDS || opt.duration <= 0 ||
        opt.cold < 1 || opt.cold > 1000) {
        usage(stderr);
        exit(2);
    }
    for (i = 0; i < N_CASES; i++)
        any |= opt.want_case[i];
    for (i = 0; !any && i < N_CASES; i++)
        opt.want_case[i] = 1;
    any = 0;
    for (i = 0; i < N_CONTENDERS; i++)
        any |= opt.want_ct[i];
    for (i = 0; !any && i < N_CONTENDERS; i++)
        opt.want_ct[i] = 1;
    if (opt.nthreads == 0) {
        add_threads("1");
        add_threads("2");
        add_threads("4");
    }
}

static void run_ops(FILE *tsv)
{
    const struct key *k;
    size_t i;

    if (!opt.quiet)
        printf("%-19s |%-29s |%-29s |%-29s | %s\n%-19s |"
               "%s |%s |%s | %s\n", "", " provider",
               " limit (token, direct)", " software (default provider)",
               "prov/limit", "case            thr",
               "  ops/s  p50 us  p99 us cpu us", "  ops/s  p50 us  p99 us cpu us",
               "  ops/s  p50 us  p99 us cpu us", "ops/s   cpu");
    for (i = 0; i < N_CASES; i++)
        if (opt.want_case[i])
            run_case(&cases[i], tsv);
    for (i = 0; tsv != NULL && opt.want_ct[CT_LIMIT] &&
                i < nkeys; i++) {
        k = &keys[i];
        fprintf(tsv, "keyobj\t%s\t%s\n", k->name,
                k->session_copy ? "session-copy" : "token-object");
    }
    if (tsv != NULL)
        fprintf(tsv, "verified\t%lu\n", n_verified);
    if (!opt.quiet)
        printf("verified in software: %lu results, none failed\n",
               n_verified);
}

int main(int argc, char **argv)
{
    FILE *tsv = NULL;

    parse_args(argc, argv);
    if (opt.log_marks != NULL) {
        marks_fd = open(opt.log_marks, O_WRONLY | O_APPEND | O_CREAT,
                        0600);
        if (marks_fd < 0)
            die("cannot open %s", opt.log_marks);
    }
    if (opt.tsv != NULL) {
        tsv = fopen(opt.tsv, "a");
        if (tsv == NULL)
            die("cannot open %s", opt.tsv);
    }
    if (opt.load_uri != NULL && opt.load_label == NULL)
        die("--load-uri needs --load-label");
    if (opt.load_uri != NULL)
        run_load(tsv);
    else
        run_ops(tsv);
    if (tsv != NULL && fclose(tsv) != 0)
        die("cannot write %s", opt.tsv);
    /* No C_Finalize: see the field notes on SoftHSM's teardown at exit.
     * The provider handles its own exit. */
    return 0;
}
