"""No session goes back to the pool with an operation still active in it.

Under PKCS#11, C_Sign or C_Decrypt answering CKR_BUFFER_TOO_SMALL leaves
the operation active (the caller is meant to call again with a bigger
buffer), and some tokens leave it active after other errors too. A pooled
session in that state fails the next C_SignInit/C_DecryptInit of whoever
gets it, with any key on the token: one bad call would poison the token
for the whole process (issue #11, item 1).

Two defences, each tested on its own:
  - output buffers too small for the result are refused before the token
    sees them, as OpenSSL's default provider refuses them;
  - a session given back after a failed call is closed, never pooled.
The second is tested with faultmod's `fail-active`, which fails a call and
leaves the real module's operation active, as a real token would.

Every run is one process (tests/tools/p11b_ops.py `steps`) with both token
keys loaded once, so later steps reuse the provider's pooled sessions.
Decryptions are checked against the plaintext encrypted in-process;
signatures are verified with `cryptography` on the public keys the token
fixture exported.
"""

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

import p11b_util as u

RSA, EC = "rsa2048", "p256"
OPERATION_ACTIVE = 0x90


def run_steps(token, env, steps, ok=True):
    """The JSON steps of one p11b_ops process on the RSA (0) and EC (1)
    keys."""
    p, doc = u.run_ops(env, "steps", "--uri", token.uri(RSA, "private"),
                       "--uri", token.uri(EC, "private"), *steps, ok=ok)
    assert doc is not None, u.describe(p)
    return doc["steps"]


def check_result(token, res):
    """A successful step's output is right, checked outside the provider."""
    step = res["step"]
    label = EC if step.endswith("@1") else RSA
    data, out = bytes.fromhex(res["in"]), bytes.fromhex(res["out"])
    if step.startswith("decrypt"):
        assert out == data, f"{step}: wrong plaintext"
        return
    pub = serialization.load_der_public_key(token.keys[label].spki)
    prehashed = utils.Prehashed(hashes.SHA256())
    if label == EC:
        pub.verify(out, data, ec.ECDSA(prehashed))
    else:
        pub.verify(out, data, padding.PKCS1v15(), prehashed)


def assert_steps(token, steps, failed):
    """Steps at the indexes in `failed` failed, every other one succeeded
    with a right result."""
    for i, res in enumerate(steps):
        if i in failed:
            assert not res["ok"], f"step {res['step']} should have failed"
        else:
            assert res["ok"], f"step {res['step']} failed: {res['errors']}"
            check_result(token, res)


# ---- buffers refused before the token sees them --------------------------

# (steps, index of the short one, reason text). RSA-2048: 256 bytes;
# ECDSA P-256: at most 72 bytes of DER.
SHORT = [
    ("decrypt:32", "RSA decryption output buffer of 32 bytes, 256 needed"),
    ("decrypt:255", "RSA decryption output buffer of 255 bytes, 256 needed"),
    ("sign:255", "signature buffer of 255 bytes, 256 needed"),
    ("sign:16@1", "signature buffer of 16 bytes, 72 needed"),
]
AFTER = ["decrypt", "sign@1", "sign", "decrypt", "sign@1"]


@pytest.mark.parametrize("short, reason", SHORT)
def test_i11_01_short_buffer_does_not_poison_the_token(token, short, reason):
    log_before = token.log.read_text() if token.log.exists() else ""
    steps = run_steps(token, token.env, [short, *AFTER], ok=False)
    assert_steps(token, steps, failed={0})
    assert any(reason in line for line in steps[0]["errors"]), \
        steps[0]["errors"]
    # refused before the token: no call answered CKR_BUFFER_TOO_SMALL, and
    # nothing met an operation left active
    new = token.log.read_text()[len(log_before):]
    assert "CKR_BUFFER_TOO_SMALL" not in new
    assert "CKR_OPERATION_ACTIVE" not in new


@pytest.mark.parametrize("short", ["decrypt:32", "decrypt:255", "sign:255"])
def test_i11_01_default_provider_refuses_the_same_buffers(token, tmp_path,
                                                          short):
    """What the test above expects is what OpenSSL's default provider does
    with the same request on a software RSA key."""
    env = u.default_only_env(tmp_path)
    key = tmp_path / "rsa.pem"
    u.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
           "rsa_keygen_bits:2048", "-out", key], env)
    p, doc = u.run_ops(env, "steps", "--uri", str(key), short, "decrypt",
                       "sign", ok=False)
    assert [s["ok"] for s in doc["steps"]] == [False, True, True], \
        u.describe(p)


# ---- a failed call leaves the operation active: the session is closed ----

# (faultmod line, steps): the first call of the function fails with the
# operation left active; every later step must work.
ACTIVE = [
    ("fail-active C_Decrypt CKR_BUFFER_TOO_SMALL 1",
     ["decrypt", "decrypt", "sign", "sign@1", "decrypt"]),
    ("fail-active C_Sign CKR_BUFFER_TOO_SMALL 1",
     ["sign@1", "sign@1", "sign", "decrypt", "sign@1"]),
    ("fail-active C_Sign CKR_FUNCTION_FAILED 1",
     ["sign", "sign", "sign@1", "decrypt", "sign"]),
    ("fail-active C_Decrypt CKR_ENCRYPTED_DATA_INVALID 1",
     ["decrypt", "sign", "decrypt", "sign@1", "decrypt"]),
]


@pytest.mark.parametrize("control, steps", ACTIVE,
                         ids=[c.split()[1] + "-" + c.split()[2]
                              for c, _ in ACTIVE])
def test_i11_01_session_with_active_operation_is_not_pooled(token, fault_rig,
                                                            control, steps):
    rig = fault_rig(token)
    doc = run_steps_with(rig, token, steps, control)
    assert_steps(token, doc, failed={0})
    calls = rig.calls()
    active = [c for c in calls if c[2] == OPERATION_ACTIVE]
    assert not active, f"calls met an operation left active: {active}"
    # the session of the failed call was closed (the pool keeps the others)
    assert u.rvs_of(calls, "C_CloseSession"), "no session was closed"


def run_steps_with(rig, token, steps, control):
    """Steps through faultmod, with `control` set once the keys are
    loaded (so the fault hits the operations, not the loading)."""
    p, doc = u.run_ops(rig.env, "--after-load-control", control + "\n",
                       "steps", "--uri", token.uri(RSA, "private"),
                       "--uri", token.uri(EC, "private"), *steps, ok=False)
    assert doc is not None, u.describe(p)
    return doc["steps"]


def test_i11_01_one_session_token_survives_a_failed_operation(token,
                                                              fault_rig):
    """On a token that allows one session, the session closed after a
    failure is the one that held the login: the token logs us out with it,
    and the next operation logs in again instead of failing."""
    rig = fault_rig(token, control="max-sessions 1\n")
    steps = run_steps_with(rig, token, ["sign", "sign@1", "decrypt", "sign"],
                           "max-sessions 1\nfail-active C_Sign "
                           "CKR_FUNCTION_FAILED 1")
    assert_steps(token, steps, failed={0})
    calls = rig.calls()
    assert not [c for c in calls if c[2] in (OPERATION_ACTIVE, 0xB1)], \
        "a call met a busy session or the session count"
    # no call had to find out about the lost login the hard way
    assert not [c for c in calls if c[1] != "C_Login" and c[2] == 0x101]
    assert u.rvs_of(calls, "C_Login") == [0, 0]
