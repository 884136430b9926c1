"""Login: which token a PIN goes to, tokens with one session, and what
reaches the error queue when a login fails (issue #11, items 2, 11, 13).

Two tokens in one SoftHSM configuration: the scratch token (PIN) and a
second token, "p11b-other", whose user PIN is WRONG_PIN, so the scratch
token's PIN is wrong for it. The provider reaches both through
tests/faultmod; the debug log's level-2 lines 'C_Login(slot N, CKU_USER)'
count the logins per slot, and the slot of each token comes from PyKCS11.
"""

import dataclasses
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u
from p11b_faultmod import CKR
from p11b_secrets import PIN, SO_PIN, WRONG_PIN
from p11b_tokens import token_info

OTHER = "p11b-other"
OTHER_PIN = WRONG_PIN  # distinctive, and wrong for the scratch token


def add_other_token(tok):
    """A second token beside tok, in tok's SoftHSM config, holding one P-256
    key pair ("other-key"); returns {label: slot id} of both tokens."""
    u.run(["softhsm2-util", "--init-token", "--free", "--label", OTHER,
           "--pin", OTHER_PIN, "--so-pin", SO_PIN], tok.tool_env())
    u.run(["pkcs11-tool", "--module", tok.module, "--token-label", OTHER,
           "--login", "--pin", OTHER_PIN, "--keypairgen", "--key-type",
           "EC:prime256v1", "--label", "other-key", "--id", "09"],
          tok.tool_env())
    other = dataclasses.replace(tok, label=OTHER)
    return {tok.label: token_info(tok)["slot"],
            OTHER: token_info(other)["slot"]}


def logins_per_slot(log):
    """{slot id: number of C_Login(CKU_USER) calls} from a debug log."""
    counts = {}
    for line in u.cryptoki_calls(log, "C_Login"):
        if "CKU_USER" in line:
            slot = int(line.split("C_Login(slot ")[1].split(",")[0])
            counts[slot] = counts.get(slot, 0) + 1
    return counts


# ---- item 2: a PIN goes only to the token it is meant for --------------------

def test_i11_02_configured_pin_only_to_its_token(scratch_token, fault_rig):
    tok = scratch_token
    slots = add_other_token(tok)

    # No selector, two tokens that want a login: the configured PIN is
    # meant for neither in particular, so it goes to none. The listing of
    # both tokens works and shows what is public.
    rig = fault_rig(tok, log_level=2)
    p = rig.ossl("storeutl", "-text", "pkcs11:", ok=False)
    assert p.returncode == 0, u.describe(p)
    uris = u.uris_in(p.stdout)
    assert any(f"token={OTHER}" in x and "type=public" in x for x in uris), \
        p.stdout
    assert any(f"token={tok.label}" in x and "type=public" in x
               for x in uris), p.stdout
    assert logins_per_slot(rig.log()) == {}, rig.log()

    # The selector names the scratch token: the PIN goes there, once, and
    # never to the other token, whose retry counter must not move.
    rig = fault_rig(tok, log_level=2,
                    pkcs11_module_token_pin_token=tok.label)
    p = rig.ossl("storeutl", "-text", "pkcs11:", ok=False)
    assert p.returncode == 0, u.describe(p)
    uris = u.uris_in(p.stdout)
    assert any(f"token={tok.label}" in x and "type=private" in x
               for x in uris), p.stdout
    assert any(f"token={OTHER}" in x and "type=public" in x for x in uris), \
        p.stdout
    assert not any(f"token={OTHER}" in x and "type=private" in x
                   for x in uris), p.stdout
    assert logins_per_slot(rig.log()) == {slots[tok.label]: 1}, rig.log()

    # A URI without token= loads the scratch token's key, with no login
    # attempt on the other token.
    rig = fault_rig(tok, log_level=2,
                    pkcs11_module_token_pin_token=f"pkcs11:token={tok.label}")
    p = rig.ossl("pkey", "-in", "pkcs11:object=p256;type=private", "-pubout",
                 ok=False)
    assert p.returncode == 0, u.describe(p)
    assert u.spki_der_from_pem(p.stdout) == tok.keys["p256"].spki
    assert slots[OTHER] not in logins_per_slot(rig.log()), rig.log()

    # A PIN in a URI that selects both tokens goes to neither: the error
    # says to name the token.
    rig = fault_rig(tok, log_level=2, pkcs11_module_token_pin=None)
    uri = u.make_uri(object="p256", type="private", pin_value=PIN)
    p = rig.ossl("pkey", "-in", uri, "-pubout", ok=False)
    assert p.returncode != 0
    reasons = [e["reason"] for e in u.provider_errors(p.stderr)]
    assert "no PIN available for login" in reasons, u.describe(p)
    assert "token=" in p.stderr, u.describe(p)
    assert logins_per_slot(rig.log()) == {}, rig.log()

    # Named, the URI's PIN goes to its token only.
    uri = u.make_uri(token=tok.label, object="p256", type="private",
                     pin_value=PIN)
    rig = fault_rig(tok, log_level=2, pkcs11_module_token_pin=None)
    p = rig.ossl("pkey", "-in", uri, "-pubout", ok=False)
    assert p.returncode == 0, u.describe(p)
    assert logins_per_slot(rig.log()) == {slots[tok.label]: 1}, rig.log()
    u.assert_no_secret(("the debug log", u.log_path(rig.env)),
                       ("stderr", u._hide_args(p.stderr, p.args)))


# ---- item 11: a token that allows one session --------------------------------

ONE = "max-sessions 1\n"
QUICK = 20  # seconds: the pool's wait for a session is 30 s


def test_i11_11_one_session_token(token, fault_rig, tmp_path):
    rig = fault_rig(token, control=ONE, log_level=2)
    msg = tmp_path / "msg"
    msg.write_bytes(b"one session is enough" * 10)

    # sign with RSA and EC keys, checked in software
    for label in ("rsa2048", "p256"):
        sig = tmp_path / f"{label}.sig"
        t0 = time.monotonic()
        p = rig.ossl("pkeyutl", "-sign", "-rawin", "-digest", "sha256",
                     "-inkey", token.uri(label, "private"), "-in", msg,
                     "-out", sig, ok=False, timeout=QUICK)
        assert p.returncode == 0, u.describe(p)
        assert time.monotonic() - t0 < QUICK / 2
        pub = serialization.load_der_public_key(token.keys[label].spki)
        if label == "p256":
            pub.verify(sig.read_bytes(), msg.read_bytes(),
                       ec.ECDSA(hashes.SHA256()))
        else:
            pub.verify(sig.read_bytes(), msg.read_bytes(),
                       padding.PKCS1v15(), hashes.SHA256())

    # decrypt what software encrypted
    pub = serialization.load_der_public_key(token.keys["rsa2048"].spki)
    secret = b"decrypted on a one-session token"
    ct = tmp_path / "ct"
    ct.write_bytes(pub.encrypt(secret, padding.PKCS1v15()))
    p = rig.ossl("pkeyutl", "-decrypt", "-inkey",
                 token.uri("rsa2048", "private"), "-in", ct,
                 ok=False, timeout=QUICK)
    assert p.returncode == 0, u.describe(p)
    assert p.stdout == secret.decode(), u.describe(p)

    # load several keys, and list the token, in one process each
    p = rig.ossl("storeutl", "-text", u.make_uri(token=token.label),
                 ok=False, timeout=QUICK)
    assert p.returncode == 0, u.describe(p)
    assert any("type=private" in x for x in u.uris_in(p.stdout)), p.stdout
    p, doc = u.run_ops(rig.env, "load", token.uri("rsa2048", "private"),
                       token.uri("p256", "private"),
                       token.uri("p384", "public"), ok=False, timeout=QUICK)
    assert doc is not None and all(x["ok"] for x in doc["loads"]), \
        u.describe(p)

    calls = rig.calls()
    assert CKR["CKR_SESSION_COUNT"] not in u.rvs_of(calls, "C_OpenSession")
    peaks = u.open_session_peaks(calls)
    assert max(peaks.values()) <= 1, peaks
    assert "no session free" not in rig.log()


def test_i11_11_one_session_token_threads(token, fault_rig, tmp_path):
    """Eight threads sign at once through the token's one session."""
    rig = fault_rig(token, control=ONE + "delay C_Sign 1000\n", log_level=2)
    args = ["threads", "--threads", "8", "--seconds", "1", "--out", tmp_path,
            "--uri", token.uri("p256", "private"),
            "--uri", token.uri("rsa2048", "private")]
    p, doc = u.run_ops(rig.env, *args, ok=False, timeout=QUICK * 2)
    assert doc is not None, u.describe(p)
    assert p.returncode == 0 and not doc["errors"], \
        "\n".join(doc.get("errors", [])) or u.describe(p)
    labels = ["p256", "rsa2048"]
    for i, r in enumerate(doc["threads"]):
        assert r["ops"] > 0, doc["threads"]
        label = labels[r["key"]]
        pub = serialization.load_der_public_key(token.keys[label].spki)
        m = (tmp_path / f"t{i}.msg").read_bytes()
        s = (tmp_path / f"t{i}.sig").read_bytes()
        if label == "p256":
            pub.verify(s, m, ec.ECDSA(hashes.SHA256()))
        else:
            pub.verify(s, m, padding.PKCS1v15(), hashes.SHA256())
    calls = rig.calls()
    assert set(u.rvs_of(calls, "C_Sign")) == {0}
    assert max(u.open_session_peaks(calls).values()) <= 1
    assert u.rvs_of(calls, "C_Login") == [0], "one login serves all threads"


# ---- item 13: the token's own libcrypto noise stays off the error queue -----

def test_i11_13_token_noise_not_in_error_queue(scratch_token, fault_rig):
    tok = scratch_token
    rig = fault_rig(tok, log_level=2, pkcs11_module_token_pin=WRONG_PIN)
    p = rig.ossl("pkey", "-in", tok.uri("p256", "private"), "-pubout",
                 ok=False)
    assert p.returncode != 0
    errors = u.openssl_errors(p.stderr)
    assert errors, u.describe(p)
    ours = [e for e in errors if e["lib"] == "pkcs11"]
    assert ours and "CKR_PIN_INCORRECT" in ours[0]["data"], u.describe(p)
    assert ours[0]["reason"] in ("PIN incorrect", "login failed"), \
        u.describe(p)
    # every error line before ours, and every other one, is not the token's
    noise = [e for e in errors if e["lib"] != "pkcs11" and
             e["lib"] not in ("STORE routines", "OSSL_STORE routines",
                              "DECODER routines", "OSSL_DECODER routines")]
    assert not noise, "token-side errors on the queue:\n" + p.stderr
    assert "bad decrypt" not in p.stderr and "engine" not in p.stderr.lower()
    assert errors[0]["lib"] == "pkcs11", u.describe(p)
