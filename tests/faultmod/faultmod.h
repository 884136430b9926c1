/*
 * faultmod's types: the configuration, the control file's switches and
 * rules, the sessions it tracks, and one call on its way through. Part of
 * the single translation unit faultmod.c (see there).
 */
#ifndef FAULTMOD_H
#define FAULTMOD_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MECH(m) ((m) != NULL ? &(m)->mechanism : NULL)
/* The start of a call: its name, session (0 for none), flags, mechanism. */
#define CALL(n, s, f, m)                                                       \
    ((struct call){.name = (n), .session = (s), .flags = (f), .mech = (m)})

#define MAX_MECHS 128 /* per FAULTMOD_HIDE_MECHS / FAULTMOD_ONLY_MECHS */
#define MAX_RULES 64  /* fail + delay lines in the control file */
#define MAX_STALE 64  /* sessions logged out at one re-insertion */
#define MAX_PIN 256

/* From the environment at C_Initialize; read-only until C_Finalize. */
struct config {
    char module[PATH_MAX];
    char control[PATH_MAX];
    char count_file[PATH_MAX];
    CK_MECHANISM_TYPE hide[MAX_MECHS];
    size_t nhide;
    CK_MECHANISM_TYPE only[MAX_MECHS];
    size_t nonly;
    bool only_set;
    bool der_point;
};

/* The control file's switches, as one call sees them. */
struct toggles {
    bool removed;
    bool final_try;
    bool locked;
    bool always_auth;
    unsigned long max_sessions; /* 0: no limit */
};

struct rule {
    char func[48]; /* "C_Sign", or "*" for every function */
    bool is_delay;
    bool keep_active;   /* fail-active: the token's operation goes on */
    CK_RV rv;           /* fail, fail-active */
    long count;         /* fail: calls left; -1: every call */
    unsigned long usec; /* delay */
};

struct session {
    CK_SESSION_HANDLE handle;
    CK_SLOT_ID slot;
    unsigned long gen; /* st.gen when it was opened */
    bool need_ctx;     /* the last Sign/DecryptInit used an always-auth key */
    bool ctx_ok;       /* ...and CKU_CONTEXT_SPECIFIC login happened since */
};

struct file_id {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct state {
    pthread_mutex_t lock;
    bool initialized; /* set and cleared by C_Initialize/C_Finalize only */
    pid_t init_pid;
    void *dl;
    char dl_path[PATH_MAX];
    bool have_cfg;
    struct config cfg;
    int count_fd;
    /* locked: st.lock, from here on */
    bool ctl_loaded;
    struct file_id ctl_id;
    struct toggles t;
    struct rule rules[MAX_RULES];
    size_t nrules;
    unsigned long gen; /* removal generation: +1 each time "removed" starts */
    struct session *sess;
    size_t nsess, cap;
    size_t pending_opens;
    unsigned char pin[MAX_PIN]; /* the last good CKU_USER PIN */
    size_t pin_len;
    bool have_pin;
};

enum {
    ON_SLOT = 1 << 0,    /* takes a slot: CKR_TOKEN_NOT_PRESENT if removed */
    ON_SESSION = 1 << 1, /* takes a session: removed, or from before that */
    AUTH_OP = 1 << 2,    /* signs or decrypts: may need a context login */
};

struct call {
    const char *name;
    CK_SESSION_HANDLE session;
    unsigned flags;
    const CK_MECHANISM_TYPE *mech; /* checked against the hidden ones */
    CK_RV rv;
    bool injected;    /* rv comes from a "fail" line: end the operation */
    bool kept;        /* rv comes from a "fail-active" line: leave it on */
    struct toggles t; /* the control file as this call saw it */
};

#endif
