/*
 * faultmod: the FAULTMOD_* variables and the control file.
 * Part of the single translation unit faultmod.c (see there).
 */

/* ---- names and parsing ------------------------------------------------- */

/* "CKM_SHA256", "SHA256" or "0x250" -> value; false if none of those. */
static bool parse_value(const char *s, const struct name_value *tab, size_t n,
                        const char *prefix, CK_ULONG *out)
{
    size_t plen = strlen(prefix);
    char *end;
    size_t i;

    if (s[0] >= '0' && s[0] <= '9') {
        errno = 0;
        *out = strtoul(s, &end, 0);
        return errno == 0 && *end == '\0';
    }
    for (i = 0; i < n; i++) {
        const char *name = tab[i].name;

        if (strcmp(s, name) == 0 || strcmp(s, name + plen) == 0) {
            *out = tab[i].value;
            return true;
        }
    }
    return false;
}

/* A comma-separated list of mechanisms, from variable var. */
static size_t parse_mechs(const char *var, const char *list,
                          CK_MECHANISM_TYPE *out)
{
    char buf[4096];
    char *save = NULL;
    char *tok;
    size_t n = 0;

    snprintf(buf, sizeof(buf), "%s", list);
    for (tok = strtok_r(buf, ", \t", &save); tok != NULL;
         tok = strtok_r(NULL, ", \t", &save)) {
        CK_ULONG v;

        if (!parse_value(tok, mech_names, ARRAY_LEN(mech_names), "CKM_", &v)) {
            fprintf(stderr, "faultmod: %s: unknown mechanism '%s' ignored\n",
                    var, tok);
        } else if (n < MAX_MECHS) {
            out[n++] = v;
        }
    }
    return n;
}

static bool in_list(CK_MECHANISM_TYPE m, const CK_MECHANISM_TYPE *l, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (l[i] == m)
            return true;
    }
    return false;
}

static bool is_hidden(CK_MECHANISM_TYPE m)
{
    if (in_list(m, st.cfg.hide, st.cfg.nhide))
        return true;
    return st.cfg.only_set && !in_list(m, st.cfg.only, st.cfg.nonly);
}

static void read_env(const char *module)
{
    struct config *c = &st.cfg;
    const char *v;

    memset(c, 0, sizeof(*c));
    snprintf(c->module, sizeof(c->module), "%s", module);
    v = getenv("FAULTMOD_CONTROL");
    snprintf(c->control, sizeof(c->control), "%s", v != NULL ? v : "");
    v = getenv("FAULTMOD_COUNT_FILE");
    snprintf(c->count_file, sizeof(c->count_file), "%s", v != NULL ? v : "");
    v = getenv("FAULTMOD_HIDE_MECHS");
    if (v != NULL)
        c->nhide = parse_mechs("FAULTMOD_HIDE_MECHS", v, c->hide);
    v = getenv("FAULTMOD_ONLY_MECHS");
    if (v != NULL && *v != '\0') {
        c->only_set = true;
        c->nonly = parse_mechs("FAULTMOD_ONLY_MECHS", v, c->only);
    }
    v = getenv("FAULTMOD_ECDH_DER_POINT");
    c->der_point = v != NULL && strcmp(v, "1") == 0;
    st.have_cfg = true;
}

/* ---- the control file ---------------------------------------------------- */

static bool parse_ulong(const char *s, unsigned long *out)
{
    char *end;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    *out = strtoul(s, &end, 0);
    return errno == 0 && *end == '\0';
}

static bool parse_rule(char **arg, int nargs, struct rule *r)
{
    unsigned long n = 0;

    memset(r, 0, sizeof(*r));
    if (nargs < 3)
        return false;
    if (strncmp(arg[1], "C_", 2) != 0 && strcmp(arg[1], "*") != 0)
        return false;
    snprintf(r->func, sizeof(r->func), "%s", arg[1]);
    if (strcmp(arg[0], "delay") == 0) {
        r->is_delay = true;
        return nargs == 3 && parse_ulong(arg[2], &r->usec);
    }
    r->keep_active = strcmp(arg[0], "fail-active") == 0;
    r->count = -1;
    if (nargs == 4) {
        if (!parse_ulong(arg[3], &n) || n == 0 || n > LONG_MAX)
            return false;
        r->count = (long)n;
    }
    return nargs <= 4 &&
           parse_value(arg[2], rv_names, ARRAY_LEN(rv_names), "CKR_", &r->rv);
}

/* locked: st.lock. One line, split into words; complains on stderr. */
static void parse_line(char **arg, int nargs, unsigned line)
{
    const char *d = arg[0];
    struct toggles *t = &st.t;
    bool ok = nargs == 1;

    if (strcmp(d, "removed") == 0) {
        t->removed = ok;
    } else if (strcmp(d, "final-try") == 0) {
        t->final_try = ok;
    } else if (strcmp(d, "locked") == 0) {
        t->locked = ok;
    } else if (strcmp(d, "always-authenticate") == 0) {
        t->always_auth = ok;
    } else if (strcmp(d, "max-sessions") == 0) {
        ok = nargs == 2 && parse_ulong(arg[1], &t->max_sessions) &&
             t->max_sessions > 0;
    } else if (strcmp(d, "fail") == 0 || strcmp(d, "fail-active") == 0 ||
               strcmp(d, "delay") == 0) {
        ok = st.nrules < MAX_RULES &&
             parse_rule(arg, nargs, &st.rules[st.nrules]);
        if (ok)
            st.nrules++;
    } else {
        fprintf(stderr, "faultmod: %s:%u: unknown directive '%s' ignored\n",
                st.cfg.control, line, d);
        return;
    }
    if (!ok)
        fprintf(stderr, "faultmod: %s:%u: bad '%s' line ignored\n",
                st.cfg.control, line, d);
}

/* locked: st.lock. Replaces every rule and switch with the file's. */
static void read_control(bool exists)
{
    FILE *f = exists ? fopen(st.cfg.control, "re") : NULL;
    char buf[512];
    unsigned line = 0;

    if (exists && f == NULL)
        fprintf(stderr, "faultmod: cannot read %s: %s\n", st.cfg.control,
                strerror(errno));
    memset(&st.t, 0, sizeof(st.t));
    st.nrules = 0;
    while (f != NULL && fgets(buf, sizeof(buf), f) != NULL) {
        char *arg[8];
        char *save = NULL;
        char *hash = strchr(buf, '#');
        int n = 0;

        line++;
        if (hash != NULL)
            *hash = '\0';
        arg[0] = strtok_r(buf, " \t\r\n", &save);
        while (arg[n] != NULL && n < (int)ARRAY_LEN(arg) - 1)
            arg[++n] = strtok_r(NULL, " \t\r\n", &save);
        if (n > 0)
            parse_line(arg, n, line);
    }
    if (f != NULL)
        fclose(f);
}

/* locked: st.lock. Re-reads the file if its inode, size or mtime changed;
 * true when that ended a "removed" (the token is back). */
static bool control_refresh(const struct stat *sb)
{
    struct file_id id = {0};
    bool was_removed = st.t.removed;

    if (sb != NULL) {
        id.exists = true;
        id.dev = sb->st_dev;
        id.ino = sb->st_ino;
        id.size = sb->st_size;
        id.mtime = sb->st_mtim;
    }
    if (st.ctl_loaded && id.exists == st.ctl_id.exists &&
        id.dev == st.ctl_id.dev && id.ino == st.ctl_id.ino &&
        id.size == st.ctl_id.size &&
        id.mtime.tv_sec == st.ctl_id.mtime.tv_sec &&
        id.mtime.tv_nsec == st.ctl_id.mtime.tv_nsec)
        return false;
    st.ctl_id = id;
    st.ctl_loaded = true;
    read_control(id.exists);
    if (st.t.removed && !was_removed)
        st.gen++;
    return was_removed && !st.t.removed;
}
