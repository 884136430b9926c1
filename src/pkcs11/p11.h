/*
 * Cryptoki types for the whole project.
 *
 * The types come from p11-kit's <p11-kit/pkcs11.h> (PKCS#11 2.40). The few
 * PKCS#11 3.0 additions we use (C_GetInterface) are declared here, from the
 * PKCS#11 3.0 specification.
 */
#ifndef P11B_P11_H
#define P11B_P11_H

#include <p11-kit/pkcs11.h>

#ifndef CKR_OPERATION_CANCEL_FAILED
#define CKR_OPERATION_CANCEL_FAILED (0x202UL)
#endif

/* PKCS#11 3.0, section 5.1.x: the interface structure. */
struct p11b_ck_interface {
    CK_UTF8CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
};

typedef CK_RV (*p11b_get_interface_fn)(CK_UTF8CHAR *name, CK_VERSION *version,
                                       struct p11b_ck_interface **iface,
                                       CK_FLAGS flags);

/*
 * Our own result codes, in the vendor range, for refusals we make without
 * asking the token. They never reach a module.
 */
#define P11B_CKR_PIN_FINAL_TRY (CKR_VENDOR_DEFINED | 0x7B110001UL)
#define P11B_CKR_PIN_NOT_RETRIED (CKR_VENDOR_DEFINED | 0x7B110002UL)

/* Number of elements of a fixed array. */
#define P11B_NELEM(a) (sizeof(a) / sizeof((a)[0]))

#endif
