/*
 * faultmod: tracked sessions, what every call goes through (enter/leave),
 * loading the real module.
 * Part of the single translation unit faultmod.c (see there).
 */

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* ---- sessions (all locked: st.lock) -------------------------------------- */

static struct session *find_session(CK_SESSION_HANDLE h)
{
    size_t i;

    for (i = 0; i < st.nsess; i++) {
        if (st.sess[i].handle == h)
            return &st.sess[i];
    }
    return NULL;
}

static void drop_session(struct session *s)
{
    *s = st.sess[--st.nsess];
}

static size_t live_sessions(void)
{
    size_t i, n = 0;

    for (i = 0; i < st.nsess; i++) {
        if (st.sess[i].gen == st.gen)
            n++;
    }
    return n;
}

/* Sessions from before the last removal, to log the token out through. */
static size_t collect_stale(CK_SESSION_HANDLE *out, size_t max)
{
    size_t i, n = 0;

    for (i = 0; i < st.nsess && n < max; i++) {
        if (st.sess[i].gen != st.gen)
            out[n++] = st.sess[i].handle;
    }
    return n;
}

/* ---- every call ---------------------------------------------------------- */

/* locked: st.lock. What the call must return instead of going on, if
 * anything; the delay it must take in *usec. */
static CK_RV check_call(struct call *c, unsigned long *usec)
{
    struct session *s = NULL;
    size_t i;

    for (i = 0; i < st.nrules; i++) {
        struct rule *r = &st.rules[i];

        if (strcmp(r->func, c->name) != 0 && strcmp(r->func, "*") != 0)
            continue;
        if (r->is_delay) {
            *usec = r->usec;
        } else if (!c->injected && !c->kept && r->count != 0) {
            r->count -= r->count > 0 ? 1 : 0;
            c->injected = !r->keep_active;
            c->kept = r->keep_active;
            c->rv = r->rv;
        }
    }
    if (c->injected || c->kept)
        return c->rv;
    if (st.t.removed && (c->flags & ON_SLOT))
        return CKR_TOKEN_NOT_PRESENT;
    if (st.t.removed && (c->flags & ON_SESSION))
        return CKR_DEVICE_REMOVED;
    if (c->flags & ON_SESSION)
        s = find_session(c->session);
    if (s != NULL && s->gen != st.gen)
        return CKR_SESSION_HANDLE_INVALID;
    if (c->mech != NULL && is_hidden(*c->mech))
        return CKR_MECHANISM_INVALID;
    if ((c->flags & AUTH_OP) && st.t.always_auth && s != NULL && s->need_ctx &&
        !s->ctx_ok)
        return CKR_USER_NOT_LOGGED_IN;
    return CKR_OK;
}

static void sleep_usec(unsigned long usec)
{
    struct timespec ts = {(time_t)(usec / 1000000),
                          (long)(usec % 1000000) * 1000};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        continue;
}

/* Before a call: re-read the control file, apply it; c->rv is the verdict
 * (CKR_OK: forward the call). */
static CK_RV enter(struct call *c)
{
    CK_SESSION_HANDLE stale[MAX_STALE];
    size_t i, nstale = 0;
    unsigned long usec = 0;
    struct stat sb;
    bool exists;

    if (!st.initialized) {
        c->rv = CKR_CRYPTOKI_NOT_INITIALIZED;
        return c->rv;
    }
    exists = st.cfg.control[0] != '\0' && stat(st.cfg.control, &sb) == 0;
    pthread_mutex_lock(&st.lock);
    if (control_refresh(exists ? &sb : NULL))
        nstale = collect_stale(stale, MAX_STALE);
    c->t = st.t;
    c->rv = check_call(c, &usec);
    pthread_mutex_unlock(&st.lock);
    /* A re-inserted token is logged out: log the old sessions out, without
     * closing them, so that the real module cannot hand their handles out
     * again while the application may still hold them. */
    for (i = 0; i < nstale; i++)
        real->C_Logout(stale[i]);
    if (usec > 0)
        sleep_usec(usec);
    return c->rv;
}

/* After a call: the count-file line; returns the call's result. */
static CK_RV leave(const struct call *c)
{
    char line[128];
    int n;

    if (st.count_fd >= 0) {
        n = snprintf(line, sizeof(line), "%ld %s 0x%08lx\n", (long)getpid(),
                     c->name, (unsigned long)c->rv);
        if (n > 0 && (size_t)n < sizeof(line)) {
            ssize_t w = write(st.count_fd, line, (size_t)n);

            (void)w;
        }
    }
    return c->rv;
}

/* An injected failure of an operation step must end the token's operation,
 * as a real one would; otherwise the next *Init gets CKR_OPERATION_ACTIVE.
 * These finish it into a scratch buffer that is wiped and dropped. */
static void finish_step(CK_C_Encrypt fn, CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                        CK_ULONG n)
{
    CK_ULONG len = 0;
    CK_ULONG size;
    CK_BYTE_PTR buf;

    if (fn(s, in, n, NULL, &len) != CKR_OK)
        return; /* an error ended it already */
    size = len > 0 ? len : 1;
    buf = malloc(size);
    if (buf == NULL)
        return;
    fn(s, in, n, buf, &len);
    explicit_bzero(buf, size);
    free(buf);
}

static void finish_final(CK_C_EncryptFinal fn, CK_SESSION_HANDLE s)
{
    CK_ULONG len = 0;
    CK_ULONG size;
    CK_BYTE_PTR buf;

    if (fn(s, NULL, &len) != CKR_OK)
        return;
    size = len > 0 ? len : 1;
    buf = malloc(size);
    if (buf == NULL)
        return;
    fn(s, buf, &len);
    explicit_bzero(buf, size);
    free(buf);
}

static void finish_verify(CK_SESSION_HANDLE s)
{
    CK_BYTE none = 0;

    real->C_VerifyFinal(s, &none, 1); /* wrong length: ends it */
}

static bool is_private_key(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj)
{
    CK_OBJECT_CLASS cls = 0;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};

    return real->C_GetAttributeValue(s, obj, &a, 1) == CKR_OK &&
           cls == CKO_PRIVATE_KEY;
}

/* After a successful Sign/Decrypt(Recover)Init: does it need a context
 * login ("always-authenticate" and a private key)? */
static void note_auth_op(const struct call *c, CK_OBJECT_HANDLE key)
{
    bool need = c->t.always_auth && is_private_key(c->session, key);
    struct session *s;

    pthread_mutex_lock(&st.lock);
    s = find_session(c->session);
    if (s != NULL) {
        s->need_ctx = need;
        s->ctx_ok = false;
    }
    pthread_mutex_unlock(&st.lock);
}

/* ---- setup and teardown -------------------------------------------------- */

static void atfork_prepare(void)
{
    pthread_mutex_lock(&st.lock);
}

static void atfork_release(void)
{
    pthread_mutex_unlock(&st.lock);
}

static void install_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_release, atfork_release);
}

/* locked: st.lock. Forgets sessions and rules (the control file is read
 * again at the next call). The PIN stays: a forked child re-initialises,
 * and SoftHSM, which does not notice the fork, keeps it logged in. */
static void reset_state(void)
{
    free(st.sess);
    st.sess = NULL;
    st.nsess = st.cap = st.pending_opens = 0;
    st.ctl_loaded = false;
    memset(&st.t, 0, sizeof(st.t));
    st.nrules = 0;
}

static CK_RV load_real(void)
{
    CK_C_GetFunctionList get_list;
    CK_RV rv;

    if (st.dl == NULL || strcmp(st.dl_path, st.cfg.module) != 0) {
        /* Never dlclose()d: SoftHSM's teardown may race a process exit. */
        st.dl = dlopen(st.cfg.module, RTLD_NOW | RTLD_LOCAL);
        if (st.dl == NULL) {
            fprintf(stderr, "faultmod: cannot load %s: %s\n", st.cfg.module,
                    dlerror());
            return CKR_GENERAL_ERROR;
        }
        snprintf(st.dl_path, sizeof(st.dl_path), "%s", st.cfg.module);
    }
    get_list = (CK_C_GetFunctionList)dlsym(st.dl, "C_GetFunctionList");
    if (get_list == NULL) {
        fprintf(stderr, "faultmod: %s has no C_GetFunctionList: %s\n",
                st.cfg.module, dlerror());
        return CKR_GENERAL_ERROR;
    }
    rv = get_list(&real);
    if (rv != CKR_OK || real == NULL) {
        fprintf(stderr, "faultmod: %s: C_GetFunctionList failed (0x%lx)\n",
                st.cfg.module, (unsigned long)rv);
        return CKR_GENERAL_ERROR;
    }
    return CKR_OK;
}

/* The environment wins if FAULTMOD_MODULE is in it; a forked child (or a
 * re-initialisation) with no FAULTMOD_* keeps the configuration it had. */
static CK_RV setup(void)
{
    const char *module = getenv("FAULTMOD_MODULE");
    CK_RV rv;

    if (module != NULL && *module != '\0') {
        read_env(module);
    } else if (!st.have_cfg) {
        fprintf(stderr, "faultmod: FAULTMOD_MODULE is not set: it must name "
                        "the PKCS#11 module to wrap\n");
        return CKR_GENERAL_ERROR;
    }
    rv = load_real();
    if (rv != CKR_OK)
        return rv;
    if (st.count_fd >= 0)
        close(st.count_fd);
    st.count_fd = -1;
    if (st.cfg.count_file[0] != '\0') {
        st.count_fd = open(st.cfg.count_file,
                           O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (st.count_fd < 0)
            fprintf(stderr, "faultmod: cannot open %s: %s\n", st.cfg.count_file,
                    strerror(errno));
    }
    pthread_mutex_lock(&st.lock);
    reset_state();
    pthread_mutex_unlock(&st.lock);
    return CKR_OK;
}

static void teardown(void)
{
    pthread_mutex_lock(&st.lock);
    reset_state();
    explicit_bzero(st.pin, sizeof(st.pin));
    st.pin_len = 0;
    st.have_pin = false;
    pthread_mutex_unlock(&st.lock);
    if (st.count_fd >= 0)
        close(st.count_fd);
    st.count_fd = -1;
    st.initialized = false;
}
