/*
 * The reason table and enum p11b_reason stay in step: one string per
 * value, in order, none empty, none repeated; CK_RVs users act on get
 * their own reasons.
 */
#include <stdio.h>
#include <string.h>

#include "provider/errors.h"

static int passed, failed;

static void check(int cond, const char *what, int n)
{
    if (cond) {
        passed++;
        return;
    }
    failed++;
    printf("FAIL: %s (%d)\n", what, n);
}

int main(void)
{
    const OSSL_ITEM *t = p11b_reason_strings();
    int i, j;

    for (i = 0; t[i].ptr != NULL; i++) {
        check(t[i].id == (unsigned int)(i + 1), "reason ids in enum order", i);
        check(strlen(t[i].ptr) > 0, "reason string not empty", i);
        check(strcmp(p11b_reason_string(i + 1), t[i].ptr) == 0,
              "p11b_reason_string agrees with the table", i);
        for (j = 0; j < i; j++)
            check(strcmp(t[i].ptr, t[j].ptr) != 0, "reason strings unique", i);
    }
    check(i == P11B_R_MAX_ - 1, "one string per enum value", i);
    check(p11b_reason_string(0) == NULL, "reason 0 has no string", 0);
    check(p11b_reason_string(P11B_R_MAX_) == NULL, "past the end", 0);

    check(p11b_reason_for_rv(CKR_PIN_INCORRECT, P11B_R_LOGIN) ==
              P11B_R_PIN_INCORRECT, "CKR_PIN_INCORRECT", 0);
    check(p11b_reason_for_rv(CKR_PIN_LOCKED, P11B_R_LOGIN) == P11B_R_PIN_LOCKED,
          "CKR_PIN_LOCKED", 0);
    check(p11b_reason_for_rv(CKR_DEVICE_REMOVED, P11B_R_FIND) ==
              P11B_R_TOKEN_GONE, "CKR_DEVICE_REMOVED", 0);
    check(p11b_reason_for_rv(CKR_TOKEN_NOT_PRESENT, P11B_R_FIND) ==
              P11B_R_TOKEN_GONE, "CKR_TOKEN_NOT_PRESENT", 0);
    check(p11b_reason_for_rv(CKR_MECHANISM_INVALID, P11B_R_OPERATION_FAILED) ==
              P11B_R_MECH_UNSUPPORTED, "CKR_MECHANISM_INVALID", 0);
    check(p11b_reason_for_rv(CKR_KEY_FUNCTION_NOT_PERMITTED,
                             P11B_R_OPERATION_FAILED) == P11B_R_KEY_USAGE,
          "CKR_KEY_FUNCTION_NOT_PERMITTED", 0);
    check(p11b_reason_for_rv(P11B_CKR_PIN_FINAL_TRY, P11B_R_LOGIN) ==
              P11B_R_PIN_FINAL_TRY, "final try", 0);
    check(p11b_reason_for_rv(CKR_GENERAL_ERROR, P11B_R_FIND) == P11B_R_FIND,
          "fallback", 0);

    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
