"""One failed operation, one error of ours.

Whether the provider raises an error is decided by what the operation came
to (a CK_RV and an explicit result, docs/DESIGN.md "One door to the
token"), never by a look at OpenSSL's error queue. So a failure is neither
reported twice (where it happened, and again by a caller that did not know)
nor left unreported because something else was on the queue already.

Failures come from below, through tests/faultmod: a token call that fails
(`fail FUNCTION RV`), a per-operation login that cannot be made
(`always-authenticate` with the PIN only in the URI, which is not kept),
mechanisms the token does not have (FAULTMOD_HIDE_MECHS).
"""

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u
from p11b_secrets import PIN

RSA_PKCS1 = []
RSA_PSS = ["-pkeyopt", "rsa_padding_mode:pss"]
OAEP_SHA1 = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt",
             "rsa_oaep_md:sha1"]
OAEP_SHA256 = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt",
               "rsa_oaep_md:sha256"]  # SoftHSM: raw RSA, OAEP checked here
RAW = ["-pkeyopt", "rsa_padding_mode:none"]
OAEP_HASH = {"rsa_oaep_md:sha1": hashes.SHA1,
             "rsa_oaep_md:sha256": hashes.SHA256}

# name: (key label, operation, pkeyutl options)
OPERATIONS = {
    "sign-pkcs1": ("rsa2048", "sign", RSA_PKCS1),
    "sign-pss": ("rsa2048", "sign", RSA_PSS),
    "sign-ecdsa": ("p256", "sign", []),
    "decrypt-pkcs1": ("rsa2048", "decrypt", RSA_PKCS1),
    "decrypt-oaep-sha1": ("rsa2048", "decrypt", OAEP_SHA1),
    "decrypt-oaep-sha256": ("rsa2048", "decrypt", OAEP_SHA256),
    "decrypt-raw": ("rsa2048", "decrypt", RAW),
    "derive": ("p256", "derive", []),
}
FAILING_CALL = {"sign": "C_Sign", "decrypt": "C_Decrypt",
                "derive": "C_DeriveKey"}


def input_for(token, label, op, opts, tmp_path):
    """The pkeyutl arguments giving op its input: a SHA-256 digest to sign,
    a ciphertext made in software for the padding, a peer key."""
    path = tmp_path / "in.bin"
    if op == "derive":
        peer = ec.generate_private_key(ec.SECP256R1()).public_key()
        path.write_bytes(peer.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo))
        return ["-derive", "-peerkey", path]
    if op == "sign":
        path.write_bytes(os.urandom(32))
        return ["-sign", "-pkeyopt", "digest:sha256", "-in", path]
    pub = serialization.load_der_public_key(token.keys[label].spki)
    if opts == RAW:
        n = pub.public_numbers()
        m = int.from_bytes(os.urandom(32), "big")
        ct = pow(m, n.e, n.n).to_bytes((pub.key_size + 7) // 8, "big")
    elif opts == RSA_PKCS1:
        ct = pub.encrypt(os.urandom(32), padding.PKCS1v15())
    else:
        h = OAEP_HASH[opts[-1]]()
        ct = pub.encrypt(os.urandom(32), padding.OAEP(
            mgf=padding.MGF1(h), algorithm=h, label=None))
    path.write_bytes(ct)
    return ["-decrypt", "-in", path]


def run_failing(rig, token, name, tmp_path, uri=None):
    label, op, opts = OPERATIONS[name]
    out = tmp_path / "out.bin"
    p = rig.ossl("pkeyutl", "-inkey", uri or token.uri(label, "private"),
                 *input_for(token, label, op, opts, tmp_path), *opts,
                 "-out", out, ok=False)
    assert p.returncode != 0, u.describe(p)
    assert not out.exists() or out.read_bytes() == b"", \
        "a failed operation wrote output"
    return p


def assert_one_error(p, text):
    ours = u.provider_errors(p.stderr)
    assert len(ours) == 1, (
        f"expected exactly one error of ours, got {len(ours)}:\n{p.stderr}")
    line = ours[0]["reason"] + ": " + ours[0]["data"]
    assert text in line, f"{text!r} not in our error:\n{p.stderr}"


@pytest.mark.parametrize("name", OPERATIONS)
def test_token_call_failure_is_one_error(token, fault_rig, tmp_path, name):
    """The token's own call fails: one error, from its CK_RV."""
    op = OPERATIONS[name][1]
    call = FAILING_CALL[op]
    rig = fault_rig(token, control=f"fail {call} CKR_DEVICE_ERROR\n",
                    log_level=2)
    p = run_failing(rig, token, name, tmp_path)
    assert any(rv == u.CKR["CKR_DEVICE_ERROR"]
               for rv in u.rvs_of(rig.calls(), call)), \
        f"{call} was never made to fail"
    # A failed decryption says nothing of why (Bleichenbacher): not even
    # the CK_RV, which may depend on the padding.
    text = "RSA decryption" if op == "decrypt" else "CKR_DEVICE_ERROR"
    assert_one_error(p, text)


@pytest.mark.parametrize("name", [n for n, (_, op, _) in OPERATIONS.items()
                                  if op != "derive"])
def test_context_login_failure_is_one_error(token, fault_rig, tmp_path,
                                            name):
    """The per-operation login of a CKA_ALWAYS_AUTHENTICATE key cannot be
    made (no PIN is kept): its error, and no second one from the
    operation (the PSS signature, which may try raw RSA next, said
    'C_Sign ... CKR_GENERAL_ERROR' after it)."""
    label = OPERATIONS[name][0]
    rig = fault_rig(token, control="always-authenticate\n",
                    pkcs11_module_token_pin=None)
    p = run_failing(rig, token, name, tmp_path,
                    uri=token.uri(label, "private", pin_value=PIN))
    assert_one_error(p, "no PIN available for login")
    assert PIN not in p.stderr


def test_no_mechanism_is_raised_beside_an_old_error(token, fault_rig):
    """An application left an old error on the queue (lighttpd does): a
    PKCS#1 v1.5 decryption the token has no mechanism for (neither
    CKM_RSA_PKCS nor raw RSA) still says so, once, and the old error
    stays."""
    rig = fault_rig(token)
    rig.env["FAULTMOD_HIDE_MECHS"] = "CKM_RSA_PKCS,CKM_RSA_X_509"
    p, doc = u.run_ops(rig.env, "steps", "--uri",
                       token.uri("rsa2048", "private"), "decrypt+stale",
                       ok=False)
    errors = doc["steps"][0]["errors"]
    assert not doc["steps"][0]["ok"], doc
    assert any("p11b-ops-stale-error" in e for e in errors), \
        f"the old error is gone:\n{errors}"
    ours = [e for e in errors if ":pkcs11:" in e]
    assert len(ours) == 1 and "no token mechanism for RSA padding mode" \
        in ours[0], f"expected one 'no token mechanism' error:\n{errors}"
