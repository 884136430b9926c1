/*
 * faultmod: cryptographic, key and random-number functions.
 * Part of the single translation unit faultmod.c (see there).
 */

/* ---- encryption and decryption ------------------------------------------- */

static CK_RV fm_EncryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                            CK_OBJECT_HANDLE key)
{
    struct call c = CALL("C_EncryptInit", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_EncryptInit(s, m, key);
    return leave(&c);
}

static CK_RV fm_Encrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_Encrypt", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_Encrypt(s, in, n, out, out_len);
    else if (c.injected)
        finish_step(real->C_Encrypt, s, in, n);
    return leave(&c);
}

static CK_RV fm_EncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                              CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_EncryptUpdate", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_EncryptUpdate(s, in, n, out, out_len);
    else if (c.injected)
        finish_final(real->C_EncryptFinal, s);
    return leave(&c);
}

static CK_RV fm_EncryptFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                             CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_EncryptFinal", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_EncryptFinal(s, out, out_len);
    else if (c.injected)
        finish_final(real->C_EncryptFinal, s);
    return leave(&c);
}

static CK_RV fm_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                            CK_OBJECT_HANDLE key)
{
    struct call c = CALL("C_DecryptInit", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DecryptInit(s, m, key);
    if (c.rv == CKR_OK)
        note_auth_op(&c, key);
    return leave(&c);
}

static CK_RV fm_Decrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_Decrypt", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_Decrypt(s, in, n, out, out_len);
    else if (c.injected)
        finish_step(real->C_Decrypt, s, in, n);
    return leave(&c);
}

static CK_RV fm_DecryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                              CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_DecryptUpdate", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DecryptUpdate(s, in, n, out, out_len);
    else if (c.injected)
        finish_final(real->C_DecryptFinal, s);
    return leave(&c);
}

static CK_RV fm_DecryptFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                             CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_DecryptFinal", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DecryptFinal(s, out, out_len);
    else if (c.injected)
        finish_final(real->C_DecryptFinal, s);
    return leave(&c);
}

/* ---- digests ------------------------------------------------------------ */

static CK_RV fm_DigestInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m)
{
    struct call c = CALL("C_DigestInit", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DigestInit(s, m);
    return leave(&c);
}

static CK_RV fm_Digest(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                       CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_Digest", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_Digest(s, in, n, out, out_len);
    else if (c.injected)
        finish_step(real->C_Digest, s, in, n);
    return leave(&c);
}

static CK_RV fm_DigestUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n)
{
    struct call c = CALL("C_DigestUpdate", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DigestUpdate(s, in, n);
    else if (c.injected)
        finish_final(real->C_DigestFinal, s);
    return leave(&c);
}

static CK_RV fm_DigestKey(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
    struct call c = CALL("C_DigestKey", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DigestKey(s, key);
    else if (c.injected)
        finish_final(real->C_DigestFinal, s);
    return leave(&c);
}

static CK_RV fm_DigestFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                            CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_DigestFinal", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DigestFinal(s, out, out_len);
    else if (c.injected)
        finish_final(real->C_DigestFinal, s);
    return leave(&c);
}

/* ---- signatures ---------------------------------------------------------- */

static CK_RV fm_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                         CK_OBJECT_HANDLE key)
{
    struct call c = CALL("C_SignInit", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SignInit(s, m, key);
    if (c.rv == CKR_OK)
        note_auth_op(&c, key);
    return leave(&c);
}

static CK_RV fm_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                     CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_Sign", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_Sign(s, in, n, out, out_len);
    else if (c.injected)
        finish_step(real->C_Sign, s, in, n);
    return leave(&c);
}

static CK_RV fm_SignUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n)
{
    struct call c = CALL("C_SignUpdate", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SignUpdate(s, in, n);
    else if (c.injected)
        finish_final(real->C_SignFinal, s);
    return leave(&c);
}

static CK_RV fm_SignFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR out,
                          CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_SignFinal", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SignFinal(s, out, out_len);
    else if (c.injected)
        finish_final(real->C_SignFinal, s);
    return leave(&c);
}

static CK_RV fm_SignRecoverInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                CK_OBJECT_HANDLE key)
{
    struct call c = CALL("C_SignRecoverInit", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SignRecoverInit(s, m, key);
    if (c.rv == CKR_OK)
        note_auth_op(&c, key);
    return leave(&c);
}

static CK_RV fm_SignRecover(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                            CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_SignRecover", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SignRecover(s, in, n, out, out_len);
    else if (c.injected)
        finish_step(real->C_SignRecover, s, in, n);
    return leave(&c);
}

static CK_RV fm_VerifyInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                           CK_OBJECT_HANDLE key)
{
    struct call c = CALL("C_VerifyInit", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_VerifyInit(s, m, key);
    return leave(&c);
}

static CK_RV fm_Verify(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n,
                       CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    struct call c = CALL("C_Verify", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_Verify(s, in, n, sig, sig_len);
    else if (c.injected)
        real->C_Verify(s, in, n, sig, sig_len); /* ends it, whatever it says */
    return leave(&c);
}

static CK_RV fm_VerifyUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG n)
{
    struct call c = CALL("C_VerifyUpdate", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_VerifyUpdate(s, in, n);
    else if (c.injected)
        finish_verify(s);
    return leave(&c);
}

static CK_RV fm_VerifyFinal(CK_SESSION_HANDLE s, CK_BYTE_PTR sig,
                            CK_ULONG sig_len)
{
    struct call c = CALL("C_VerifyFinal", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_VerifyFinal(s, sig, sig_len);
    else if (c.injected)
        finish_verify(s);
    return leave(&c);
}

static CK_RV fm_VerifyRecoverInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                  CK_OBJECT_HANDLE key)
{
    struct call c = CALL("C_VerifyRecoverInit", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_VerifyRecoverInit(s, m, key);
    return leave(&c);
}

static CK_RV fm_VerifyRecover(CK_SESSION_HANDLE s, CK_BYTE_PTR sig,
                              CK_ULONG sig_len, CK_BYTE_PTR out,
                              CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_VerifyRecover", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_VerifyRecover(s, sig, sig_len, out, out_len);
    else if (c.injected)
        finish_step(real->C_VerifyRecover, s, sig, sig_len);
    return leave(&c);
}

/* ---- dual-function operations (SoftHSM has none: not finished on a fault) */

static CK_RV fm_DigestEncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                    CK_ULONG n, CK_BYTE_PTR out,
                                    CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_DigestEncryptUpdate", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DigestEncryptUpdate(s, in, n, out, out_len);
    return leave(&c);
}

static CK_RV fm_DecryptDigestUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                    CK_ULONG n, CK_BYTE_PTR out,
                                    CK_ULONG_PTR out_len)
{
    struct call c =
        CALL("C_DecryptDigestUpdate", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DecryptDigestUpdate(s, in, n, out, out_len);
    return leave(&c);
}

static CK_RV fm_SignEncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                  CK_ULONG n, CK_BYTE_PTR out,
                                  CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_SignEncryptUpdate", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SignEncryptUpdate(s, in, n, out, out_len);
    return leave(&c);
}

static CK_RV fm_DecryptVerifyUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR in,
                                    CK_ULONG n, CK_BYTE_PTR out,
                                    CK_ULONG_PTR out_len)
{
    struct call c =
        CALL("C_DecryptVerifyUpdate", s, ON_SESSION | AUTH_OP, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_DecryptVerifyUpdate(s, in, n, out, out_len);
    return leave(&c);
}

/* ---- keys ---------------------------------------------------------------- */

static CK_RV fm_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                            CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                            CK_OBJECT_HANDLE_PTR key)
{
    struct call c = CALL("C_GenerateKey", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GenerateKey(s, m, tmpl, n, key);
    return leave(&c);
}

static CK_RV fm_GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                                CK_ATTRIBUTE_PTR pub_tmpl, CK_ULONG pub_n,
                                CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_n,
                                CK_OBJECT_HANDLE_PTR pub,
                                CK_OBJECT_HANDLE_PTR priv)
{
    struct call c = CALL("C_GenerateKeyPair", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GenerateKeyPair(s, m, pub_tmpl, pub_n, priv_tmpl, priv_n,
                                       pub, priv);
    return leave(&c);
}

static CK_RV fm_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                        CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct call c = CALL("C_WrapKey", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_WrapKey(s, m, wrapping, key, out, out_len);
    return leave(&c);
}

static CK_RV fm_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                          CK_OBJECT_HANDLE unwrapping, CK_BYTE_PTR in,
                          CK_ULONG n, CK_ATTRIBUTE_PTR tmpl, CK_ULONG tmpl_n,
                          CK_OBJECT_HANDLE_PTR key)
{
    struct call c = CALL("C_UnwrapKey", s, ON_SESSION, MECH(m));

    if (enter(&c) == CKR_OK)
        c.rv = real->C_UnwrapKey(s, m, unwrapping, in, n, tmpl, tmpl_n, key);
    return leave(&c);
}

/* "FAULTMOD_ECDH_DER_POINT=1": the peer point must come as a DER OCTET
 * STRING, which is unwrapped into *copy for the real module; anything else,
 * a raw point included, is CKR_ARGUMENTS_BAD. */
static CK_RV unwrap_point(const CK_MECHANISM *m, CK_MECHANISM *copy,
                          CK_ECDH1_DERIVE_PARAMS *p)
{
    const CK_BYTE *d;
    CK_ULONG len, hdr, inner;

    if (m->pParameter == NULL || m->ulParameterLen != sizeof(*p))
        return CKR_MECHANISM_PARAM_INVALID;
    *p = *(const CK_ECDH1_DERIVE_PARAMS *)m->pParameter;
    d = p->pPublicData;
    len = p->ulPublicDataLen;
    if (d == NULL || len < 3 || d[0] != 0x04)
        return CKR_ARGUMENTS_BAD;
    hdr = d[1] < 0x80 ? 2 : 3;
    inner = d[1] < 0x80 ? d[1] : d[2];
    if ((d[1] >= 0x80 && (d[1] != 0x81 || d[2] < 0x80)) || hdr + inner != len)
        return CKR_ARGUMENTS_BAD;
    /* a point inside: uncompressed (odd length) or compressed */
    if (!(d[hdr] == 0x04 && inner % 2 == 1) && d[hdr] != 0x02 && d[hdr] != 0x03)
        return CKR_ARGUMENTS_BAD;
    p->pPublicData = (CK_BYTE_PTR)d + hdr;
    p->ulPublicDataLen = inner;
    *copy = *m;
    copy->pParameter = p;
    return CKR_OK;
}

static CK_RV fm_DeriveKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m,
                          CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR tmpl,
                          CK_ULONG n, CK_OBJECT_HANDLE_PTR key)
{
    struct call c = CALL("C_DeriveKey", s, ON_SESSION, MECH(m));
    CK_MECHANISM copy;
    CK_ECDH1_DERIVE_PARAMS params;

    if (enter(&c) != CKR_OK)
        return leave(&c);
    if (st.cfg.der_point && m != NULL &&
        (m->mechanism == CKM_ECDH1_DERIVE ||
         m->mechanism == CKM_ECDH1_COFACTOR_DERIVE)) {
        c.rv = unwrap_point(m, &copy, &params);
        m = &copy;
    }
    if (c.rv == CKR_OK)
        c.rv = real->C_DeriveKey(s, m, base, tmpl, n, key);
    return leave(&c);
}

/* ---- random numbers and legacy functions --------------------------------- */

static CK_RV fm_SeedRandom(CK_SESSION_HANDLE s, CK_BYTE_PTR seed, CK_ULONG n)
{
    struct call c = CALL("C_SeedRandom", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_SeedRandom(s, seed, n);
    return leave(&c);
}

static CK_RV fm_GenerateRandom(CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG n)
{
    struct call c = CALL("C_GenerateRandom", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GenerateRandom(s, out, n);
    return leave(&c);
}

static CK_RV fm_GetFunctionStatus(CK_SESSION_HANDLE s)
{
    struct call c = CALL("C_GetFunctionStatus", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_GetFunctionStatus(s);
    return leave(&c);
}

static CK_RV fm_CancelFunction(CK_SESSION_HANDLE s)
{
    struct call c = CALL("C_CancelFunction", s, ON_SESSION, NULL);

    if (enter(&c) == CKR_OK)
        c.rv = real->C_CancelFunction(s);
    return leave(&c);
}
