/*
 * faultmod: general-purpose, slot and token, session and object functions.
 * Part of the single translation unit faultmod.c (see there).
 */

/* ---- general-purpose and slot functions ---------------------------------- */

static CK_RV fm_Initialize(CK_VOID_PTR args)
{
    struct call c = CALL("C_Initialize", 0, 0, NULL);
    CK_RV rv;

    pthread_once(&atfork_once, install_atfork);
    if (st.initialized && st.init_pid == getpid())
        return CKR_CRYPTOKI_ALREADY_INITIALIZED;
    rv = setup();
    if (rv != CKR_OK)
        return rv;
    st.initialized = true;
    st.init_pid = getpid();
    if (enter(&c) == CKR_OK)
        c.rv = real->C_Initialize(args);
    leave(&c);
    if (c.rv != CKR_OK && c.rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
        teardown();
    return c.rv;
}

static CK_RV fm_Finalize(CK_VOID_PTR reserved)
{
    struct call c = CALL("C_Finalize", 0, 0, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_Finalize(reserved);
    leave(&c);
    if (c.rv == CKR_OK)
        teardown();
    return c.rv;
}

static CK_RV fm_GetInfo(CK_INFO_PTR info)
{
    struct call c = CALL("C_GetInfo", 0, 0, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetInfo(info);
    return leave(&c);
}

static CK_RV fm_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list,
                            CK_ULONG_PTR count)
{
    struct call c = CALL("C_GetSlotList", 0, 0, NULL);

    if (enter(&c) != CKR_OK)
        return leave(&c);
    if (present && c.t.removed && count == NULL)
        c.rv = CKR_ARGUMENTS_BAD;
    else if (present && c.t.removed)
        *count = 0;
    else
        c.rv = real->C_GetSlotList(present, list, count);
    return leave(&c);
}

static CK_RV fm_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    struct call c = CALL("C_GetSlotInfo", 0, 0, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetSlotInfo(slot, info);
    if (c.rv == CKR_OK && c.t.removed)
        info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
    return leave(&c);
}

static CK_RV fm_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    struct call c = CALL("C_GetTokenInfo", 0, ON_SLOT, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetTokenInfo(slot, info);
    if (c.rv != CKR_OK)
        return leave(&c);
    if (c.t.final_try)
        info->flags |= CKF_USER_PIN_FINAL_TRY;
    if (c.t.locked)
        info->flags |= CKF_USER_PIN_LOCKED;
    if (c.t.max_sessions > 0)
        info->ulMaxSessionCount = c.t.max_sessions;
    return leave(&c);
}

static CK_RV fm_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot,
                                 CK_VOID_PTR reserved)
{
    struct call c = CALL("C_WaitForSlotEvent", 0, 0, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_WaitForSlotEvent(flags, slot, reserved);
    return leave(&c);
}

/* The real list minus the hidden mechanisms, with the usual two calls. */
static CK_RV filter_mechs(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR out,
                          CK_ULONG_PTR count)
{
    CK_MECHANISM_TYPE_PTR all;
    CK_ULONG n = 0, kept = 0, i;
    CK_RV rv;

    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    rv = real->C_GetMechanismList(slot, NULL, &n);
    if (rv != CKR_OK)
        return rv;
    all = calloc(n > 0 ? n : 1, sizeof(*all));
    if (all == NULL)
        return CKR_HOST_MEMORY;
    rv = real->C_GetMechanismList(slot, all, &n);
    for (i = 0; rv == CKR_OK && i < n; i++) {
        if (is_hidden(all[i]))
            continue;
        if (out != NULL && kept < *count)
            out[kept] = all[i];
        kept++;
    }
    free(all);
    if (rv == CKR_OK && out != NULL && kept > *count)
        rv = CKR_BUFFER_TOO_SMALL;
    if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
        *count = kept;
    return rv;
}

static CK_RV fm_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list,
                                 CK_ULONG_PTR count)
{
    struct call c = CALL("C_GetMechanismList", 0, ON_SLOT, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = filter_mechs(slot, list, count);
    return leave(&c);
}

static CK_RV fm_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type,
                                 CK_MECHANISM_INFO_PTR info)
{
    struct call c = CALL("C_GetMechanismInfo", 0, ON_SLOT, &type);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetMechanismInfo(slot, type, info);
    return leave(&c);
}

static CK_RV fm_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG len,
                          CK_UTF8CHAR_PTR label)
{
    struct call c = CALL("C_InitToken", 0, ON_SLOT, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_InitToken(slot, pin, len, label);
    return leave(&c);
}

static CK_RV fm_InitPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    struct call c = CALL("C_InitPIN", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_InitPIN(s, pin, len);
    return leave(&c);
}

static CK_RV fm_SetPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old_pin,
                       CK_ULONG old_len, CK_UTF8CHAR_PTR new_pin,
                       CK_ULONG new_len)
{
    struct call c = CALL("C_SetPIN", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SetPIN(s, old_pin, old_len, new_pin, new_len);
    return leave(&c);
}

/* ---- sessions ------------------------------------------------------------ */

/* A place for one more session of this process, under "max-sessions". */
static CK_RV reserve_session(void)
{
    CK_RV rv = CKR_OK;

    pthread_mutex_lock(&st.lock);
    if (st.t.max_sessions > 0 &&
        live_sessions() + st.pending_opens >= st.t.max_sessions)
        rv = CKR_SESSION_COUNT;
    else
        st.pending_opens++;
    pthread_mutex_unlock(&st.lock);
    return rv;
}

static void track_session(CK_RV rv, CK_SESSION_HANDLE h, CK_SLOT_ID slot)
{
    struct session *s;

    pthread_mutex_lock(&st.lock);
    st.pending_opens--;
    if (rv == CKR_OK && st.nsess == st.cap) {
        size_t cap = st.cap > 0 ? 2 * st.cap : 16;

        s = realloc(st.sess, cap * sizeof(*s));
        if (s != NULL) {
            st.sess = s;
            st.cap = cap;
        }
    }
    if (rv == CKR_OK && st.nsess < st.cap) {
        s = &st.sess[st.nsess++];
        memset(s, 0, sizeof(*s));
        s->handle = h;
        s->slot = slot;
        s->gen = st.gen;
    }
    pthread_mutex_unlock(&st.lock);
}

static CK_RV fm_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app,
                            CK_NOTIFY notify, CK_SESSION_HANDLE_PTR out)
{
    struct call c = CALL("C_OpenSession", 0, ON_SLOT, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = reserve_session();
    if (c.rv != CKR_OK)
        return leave(&c);
    c.rv = real->C_OpenSession(slot, flags, app, notify, out);
    track_session(c.rv, c.rv == CKR_OK ? *out : 0, slot);
    return leave(&c);
}

/* Dropped before the real close, so that a handle the real module hands out
 * again is never mistaken for this one. */
static CK_RV forget_session(CK_SESSION_HANDLE h)
{
    struct session *s;
    CK_RV rv = CKR_OK;

    pthread_mutex_lock(&st.lock);
    s = find_session(h);
    if (st.t.removed)
        rv = CKR_DEVICE_REMOVED;
    else if (s != NULL && s->gen != st.gen)
        rv = CKR_SESSION_HANDLE_INVALID;
    if (s != NULL)
        drop_session(s);
    pthread_mutex_unlock(&st.lock);
    return rv;
}

static CK_RV fm_CloseSession(CK_SESSION_HANDLE s)
{
    struct call c = CALL("C_CloseSession", s, 0, NULL);
    CK_RV gone;

    if (enter(&c) != CKR_OK)
        return leave(&c);
    gone = forget_session(s);
    c.rv = real->C_CloseSession(s);
    if (gone != CKR_OK)
        c.rv = gone;
    return leave(&c);
}

static CK_RV fm_CloseAllSessions(CK_SLOT_ID slot)
{
    struct call c = CALL("C_CloseAllSessions", 0, 0, NULL);
    size_t i = 0;

    if (enter(&c) != CKR_OK)
        return leave(&c);
    pthread_mutex_lock(&st.lock);
    while (i < st.nsess) {
        if (st.sess[i].slot == slot)
            drop_session(&st.sess[i]);
        else
            i++;
    }
    pthread_mutex_unlock(&st.lock);
    c.rv = real->C_CloseAllSessions(slot);
    if (c.t.removed)
        c.rv = CKR_TOKEN_NOT_PRESENT;
    return leave(&c);
}

static CK_RV fm_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
    struct call c = CALL("C_GetSessionInfo", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetSessionInfo(s, info);
    return leave(&c);
}

static CK_RV fm_GetOperationState(CK_SESSION_HANDLE s, CK_BYTE_PTR state,
                                  CK_ULONG_PTR len)
{
    struct call c = CALL("C_GetOperationState", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetOperationState(s, state, len);
    return leave(&c);
}

static CK_RV fm_SetOperationState(CK_SESSION_HANDLE s, CK_BYTE_PTR state,
                                  CK_ULONG len, CK_OBJECT_HANDLE enc_key,
                                  CK_OBJECT_HANDLE auth_key)
{
    struct call c = CALL("C_SetOperationState", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SetOperationState(s, state, len, enc_key, auth_key);
    return leave(&c);
}

static void remember_pin(CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    pthread_mutex_lock(&st.lock);
    explicit_bzero(st.pin, sizeof(st.pin));
    st.have_pin = pin != NULL && len <= sizeof(st.pin);
    st.pin_len = st.have_pin ? len : 0;
    if (st.have_pin)
        memcpy(st.pin, pin, len);
    pthread_mutex_unlock(&st.lock);
}

/* CKU_CONTEXT_SPECIFIC under "always-authenticate": SoftHSM knows no such
 * login, so it is checked here against the last good CKU_USER PIN. */
static CK_RV context_login(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin,
                           CK_ULONG len)
{
    struct session *s;
    CK_RV rv;

    pthread_mutex_lock(&st.lock);
    s = find_session(h);
    if (s == NULL || !s->need_ctx)
        rv = CKR_OPERATION_NOT_INITIALIZED;
    else if (!st.have_pin)
        rv = CKR_USER_NOT_LOGGED_IN;
    else if (pin == NULL || len != st.pin_len || memcmp(pin, st.pin, len) != 0)
        rv = CKR_PIN_INCORRECT;
    else
        rv = CKR_OK;
    if (rv == CKR_OK)
        s->ctx_ok = true;
    pthread_mutex_unlock(&st.lock);
    return rv;
}

static CK_RV fm_Login(CK_SESSION_HANDLE s, CK_USER_TYPE user,
                      CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    struct call c = CALL("C_Login", s, ON_SESSION, NULL);

    if (enter(&c) != CKR_OK)
        return leave(&c);
    if (c.t.locked && user != CKU_SO) {
        c.rv = CKR_PIN_LOCKED;
    } else if (c.t.always_auth && user == CKU_CONTEXT_SPECIFIC) {
        c.rv = context_login(s, pin, len);
    } else {
        c.rv = real->C_Login(s, user, pin, len);
        if (c.rv == CKR_OK && user == CKU_USER)
            remember_pin(pin, len);
    }
    return leave(&c);
}

static CK_RV fm_Logout(CK_SESSION_HANDLE s)
{
    struct call c = CALL("C_Logout", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_Logout(s);
    return leave(&c);
}

/* ---- objects ------------------------------------------------------------- */

static CK_RV fm_CreateObject(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl,
                             CK_ULONG n, CK_OBJECT_HANDLE_PTR obj)
{
    struct call c = CALL("C_CreateObject", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_CreateObject(s, tmpl, n, obj);
    return leave(&c);
}

static CK_RV fm_CopyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                           CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                           CK_OBJECT_HANDLE_PTR copy)
{
    struct call c = CALL("C_CopyObject", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_CopyObject(s, obj, tmpl, n, copy);
    return leave(&c);
}

static CK_RV fm_DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj)
{
    struct call c = CALL("C_DestroyObject", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DestroyObject(s, obj);
    return leave(&c);
}

static CK_RV fm_GetObjectSize(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                              CK_ULONG_PTR size)
{
    struct call c = CALL("C_GetObjectSize", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetObjectSize(s, obj, size);
    return leave(&c);
}

/* "always-authenticate": a private key says CKA_ALWAYS_AUTHENTICATE=TRUE. */
static CK_RV force_always_auth(CK_RV rv, CK_SESSION_HANDLE s,
                               CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl,
                               CK_ULONG n)
{
    CK_ATTRIBUTE_PTR a = NULL;
    CK_ULONG i;

    for (i = 0; i < n; i++) {
        if (tmpl[i].type == CKA_ALWAYS_AUTHENTICATE)
            a = &tmpl[i];
    }
    if (a == NULL || (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID) ||
        !is_private_key(s, obj))
        return rv;
    if (a->pValue != NULL && a->ulValueLen < sizeof(CK_BBOOL))
        return CKR_BUFFER_TOO_SMALL;
    if (a->pValue != NULL)
        *(CK_BBOOL *)a->pValue = CK_TRUE;
    a->ulValueLen = sizeof(CK_BBOOL);
    for (i = 0; i < n; i++) {
        if (tmpl[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
            return rv; /* another attribute made the real module complain */
    }
    return CKR_OK;
}

static CK_RV fm_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                                  CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct call c = CALL("C_GetAttributeValue", s, ON_SESSION, NULL);

    if (enter(&c) != CKR_OK)
        return leave(&c);
    c.rv = real->C_GetAttributeValue(s, obj, tmpl, n);
    if (c.t.always_auth)
        c.rv = force_always_auth(c.rv, s, obj, tmpl, n);
    return leave(&c);
}

static CK_RV fm_SetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                                  CK_ATTRIBUTE_PTR tmpl, CK_ULONG n)
{
    struct call c = CALL("C_SetAttributeValue", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SetAttributeValue(s, obj, tmpl, n);
    return leave(&c);
}

static CK_RV fm_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR tmpl,
                                CK_ULONG n)
{
    struct call c = CALL("C_FindObjectsInit", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_FindObjectsInit(s, tmpl, n);
    return leave(&c);
}

static CK_RV fm_FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR objs,
                            CK_ULONG max, CK_ULONG_PTR n)
{
    struct call c = CALL("C_FindObjects", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_FindObjects(s, objs, max, n);
    return leave(&c);
}

static CK_RV fm_FindObjectsFinal(CK_SESSION_HANDLE s)
{
    struct call c = CALL("C_FindObjectsFinal", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_FindObjectsFinal(s);
    else if (c.injected)
        real->C_FindObjectsFinal(s);
    return leave(&c);
}
