"""Every Cryptoki call goes through one door (src/pkcs11/calls.h).

The door counts each call per function, logs it at level 2 and names the
call that failed. Checked from outside: the token is reached through
tests/faultmod, which records every call it gets from the provider, and
for each real `openssl` run the module's record, the provider's own count
(the "Cryptoki calls of this process" line at teardown) and the level-2
log lines must agree function by function. A call made around the door
would be in the module's record but missing from the other two.
"""

import re
from collections import Counter

import pytest

from test_recovery import decrypt_op, derive_op, sign_op

import p11b_util as u

# Found by dlsym, before there is a function list: not through the door.
LOADER = {"C_GetFunctionList", "C_GetInterface", "C_GetInterfaceList"}
SUMMARY = re.compile(r"Cryptoki calls of this process: (\d+) \(([^)]*)\)")
CALL_LINE = re.compile(r"(?<![A-Za-z0-9_])(C_[A-Za-z]+)\((?:[^)]*)\) -> "
                       r"(CKR_[A-Z0-9_]+|0x[0-9a-f]+)")


def door_counts(log):
    """{function: count} from the teardown summary line of one process."""
    m = SUMMARY.findall(log)
    assert len(m) == 1, f"expected one summary line, got {m}\n{log[-3000:]}"
    total, text = m[0]
    counts = Counter()
    for item in text.split():
        name, n = item.split("=")
        counts[name] = int(n)
    assert sum(counts.values()) == int(total)
    return counts


def logged_counts(log):
    return Counter(m.group(1) for line in log.splitlines()
                   for m in [CALL_LINE.search(line)] if m)


def module_counts(rig):
    return Counter(name for _, name, _ in rig.calls() if name not in LOADER)


OPS = {"sign-p256": lambda r, t: sign_op(r, t, "p256"),
       "sign-rsa2048": lambda r, t: sign_op(r, t, "rsa2048"),
       "decrypt-rsa2048": decrypt_op,
       "derive-p256": derive_op}


@pytest.mark.parametrize("op", OPS)
def test_every_call_goes_through_the_door(token, fault_rig, tmp_path, op):
    rig = fault_rig(token, log_level=2)
    p, check = OPS[op](rig, tmp_path)
    assert p.returncode == 0, u.describe(p)
    check()
    log = rig.log()
    seen = module_counts(rig)
    assert seen, "faultmod recorded no call"
    assert door_counts(log) == seen, \
        f"provider count {door_counts(log)} != module record {seen}"
    assert logged_counts(log) == seen, \
        f"log lines {logged_counts(log)} != module record {seen}"


def test_a_failed_call_is_counted_logged_and_named(token, fault_rig, tmp_path):
    """A call the module fails still goes through the door once, its
    failure is in the log, and the error names it."""
    rig = fault_rig(token, "fail C_SignInit CKR_DEVICE_ERROR", log_level=2)
    p, _ = sign_op(rig, tmp_path, "p256")
    assert p.returncode != 0
    assert "C_SignInit" in p.stderr and "CKR_DEVICE_ERROR" in p.stderr, \
        u.describe(p)
    log = rig.log()
    assert door_counts(log) == module_counts(rig)
    assert any("C_SignInit(" in line and "-> CKR_DEVICE_ERROR" in line
               for line in log.splitlines()), log[-3000:]
