/*
 * faultmod: a PKCS#11 module for the tests. It wraps a real module
 * (SoftHSMv2), forwards every call of the 2.40 function list to it, and on
 * request hides mechanisms, fails calls, "pulls" the token, slows calls
 * down, limits sessions, flags the user PIN, demands context-specific
 * logins, insists on DER-wrapped ECDH points and counts calls.
 * tests/faultmod/README.md describes the variables and directives.
 *
 * Builds with libc, libdl, pthread and p11-kit's <p11-kit/pkcs11.h> only.
 * Exports C_GetFunctionList and nothing else (no C_GetInterface): every
 * other function is static. Every entry point goes through enter() and
 * leave() (core.c); our state sits in one struct under one lock, which is
 * never held while the real module runs.
 *
 * One translation unit, because Makefile.am builds this file alone: the
 * parts below are included in dependency order. Each is a .c file of its
 * own so that it reads and diffs as one; none compiles by itself.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faultmod.h"
#include "names.h"

static struct state st = {.lock = PTHREAD_MUTEX_INITIALIZER, .count_fd = -1};
static CK_FUNCTION_LIST *real; /* the wrapped module's list */

#include "config.c"       /* FAULTMOD_* variables, the control file */
#include "core.c"         /* sessions, enter()/leave(), loading the module */
#include "calls_token.c"  /* general-purpose, slot, session, object calls */
#include "calls_crypto.c" /* cryptographic, key and random calls */

/* ---- the function list --------------------------------------------------- */

static CK_FUNCTION_LIST fm_list = {
    .version = {2, 40},
    .C_Initialize = fm_Initialize,
    .C_Finalize = fm_Finalize,
    .C_GetInfo = fm_GetInfo,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = fm_GetSlotList,
    .C_GetSlotInfo = fm_GetSlotInfo,
    .C_GetTokenInfo = fm_GetTokenInfo,
    .C_GetMechanismList = fm_GetMechanismList,
    .C_GetMechanismInfo = fm_GetMechanismInfo,
    .C_InitToken = fm_InitToken,
    .C_InitPIN = fm_InitPIN,
    .C_SetPIN = fm_SetPIN,
    .C_OpenSession = fm_OpenSession,
    .C_CloseSession = fm_CloseSession,
    .C_CloseAllSessions = fm_CloseAllSessions,
    .C_GetSessionInfo = fm_GetSessionInfo,
    .C_GetOperationState = fm_GetOperationState,
    .C_SetOperationState = fm_SetOperationState,
    .C_Login = fm_Login,
    .C_Logout = fm_Logout,
    .C_CreateObject = fm_CreateObject,
    .C_CopyObject = fm_CopyObject,
    .C_DestroyObject = fm_DestroyObject,
    .C_GetObjectSize = fm_GetObjectSize,
    .C_GetAttributeValue = fm_GetAttributeValue,
    .C_SetAttributeValue = fm_SetAttributeValue,
    .C_FindObjectsInit = fm_FindObjectsInit,
    .C_FindObjects = fm_FindObjects,
    .C_FindObjectsFinal = fm_FindObjectsFinal,
    .C_EncryptInit = fm_EncryptInit,
    .C_Encrypt = fm_Encrypt,
    .C_EncryptUpdate = fm_EncryptUpdate,
    .C_EncryptFinal = fm_EncryptFinal,
    .C_DecryptInit = fm_DecryptInit,
    .C_Decrypt = fm_Decrypt,
    .C_DecryptUpdate = fm_DecryptUpdate,
    .C_DecryptFinal = fm_DecryptFinal,
    .C_DigestInit = fm_DigestInit,
    .C_Digest = fm_Digest,
    .C_DigestUpdate = fm_DigestUpdate,
    .C_DigestKey = fm_DigestKey,
    .C_DigestFinal = fm_DigestFinal,
    .C_SignInit = fm_SignInit,
    .C_Sign = fm_Sign,
    .C_SignUpdate = fm_SignUpdate,
    .C_SignFinal = fm_SignFinal,
    .C_SignRecoverInit = fm_SignRecoverInit,
    .C_SignRecover = fm_SignRecover,
    .C_VerifyInit = fm_VerifyInit,
    .C_Verify = fm_Verify,
    .C_VerifyUpdate = fm_VerifyUpdate,
    .C_VerifyFinal = fm_VerifyFinal,
    .C_VerifyRecoverInit = fm_VerifyRecoverInit,
    .C_VerifyRecover = fm_VerifyRecover,
    .C_DigestEncryptUpdate = fm_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = fm_DecryptDigestUpdate,
    .C_SignEncryptUpdate = fm_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = fm_DecryptVerifyUpdate,
    .C_GenerateKey = fm_GenerateKey,
    .C_GenerateKeyPair = fm_GenerateKeyPair,
    .C_WrapKey = fm_WrapKey,
    .C_UnwrapKey = fm_UnwrapKey,
    .C_DeriveKey = fm_DeriveKey,
    .C_SeedRandom = fm_SeedRandom,
    .C_GenerateRandom = fm_GenerateRandom,
    .C_GetFunctionStatus = fm_GetFunctionStatus,
    .C_CancelFunction = fm_CancelFunction,
    .C_WaitForSlotEvent = fm_WaitForSlotEvent,
};

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &fm_list;
    return CKR_OK;
}
