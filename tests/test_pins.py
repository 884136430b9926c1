"""PINs: where they come from, what a wrong one costs, and where they never go.

Every case runs the provider against a token reached through tests/faultmod
(the provider config's pkcs11-module-path), so two independent witnesses
count logins: faultmod's count file (FAULTMOD_COUNT_FILE, one line per
call with its CK_RV) and the provider's own debug log at level 3, whose
level-2 lines read 'C_Login(slot N, CKU_USER) -> CKR_...'.

PIN sources (docs/DESIGN.md, "Slots, sessions, login"):
  config-literal       pkcs11-module-token-pin = <PIN>
  config-file          pkcs11-module-token-pin = file:<path>
  uri-pin-value        ...?pin-value=<PIN>
  uri-pin-source       ...?pin-source=file:<path>
  uri-pin-source-path  ...?pin-source=<path>
  passin-pass/-file/-env   openssl's -passin, through the passphrase callback
  app-callback         an application's own callback (tests/tools/p11b_ops.py
                       gives OSSL_STORE a UI_METHOD wrapping a PEM callback)
  prompt               openssl's interactive prompt, typed on a pty

The token flags come from faultmod's control file: `final-try` sets
CKF_USER_PIN_FINAL_TRY, `locked` sets CKF_USER_PIN_LOCKED (and makes C_Login
answer CKR_PIN_LOCKED, so a login that slipped through would show), and
`always-authenticate` gives private keys CKA_ALWAYS_AUTHENTICATE.

The PINs (p11b_util.SECRETS: the right one, the wrong one, the SO PIN) are
looked for in every debug log, stdout, stderr, the count file, storeutl's
-text output, the terminal and the files written, in every case, the
failing ones included.
"""

import os
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u
from p11b_secrets import PIN, WRONG_PIN

PROMPT = r"PIN for token '[^']*':"
CB_VAR = "P11B_CB_PIN"      # the app-callback source reads its PIN here
PASSIN_VAR = "P11B_PASSIN"  # -passin env:

# source name -> the words the provider's login error uses for it
SOURCES = {
    "config-literal": "the configured PIN",
    "config-file": "the configured PIN",
    "uri-pin-value": "the URI's pin-value",
    "uri-pin-source": "the URI's pin-source",
    "uri-pin-source-path": "the URI's pin-source",
    "passin-pass": "the application's PIN prompt",
    "passin-file": "the application's PIN prompt",
    "passin-env": "the application's PIN prompt",
    "app-callback": "the application's PIN prompt",
    "prompt": "the application's PIN prompt",
}


@dataclass
class Setup:
    """How one PIN source is wired: config keys, URI query, argv, env."""
    source: str
    config: dict
    uri_extra: dict = field(default_factory=dict)
    args: list = field(default_factory=list)
    env: dict = field(default_factory=dict)


def pin_setup(source, pin, tmp_path):
    pin_file = tmp_path / f"pin-{source}.txt"
    pin_file.write_text(pin + "\n")
    pin_file.chmod(0o600)
    none = {"pkcs11_module_token_pin": None}
    if source == "config-literal":
        return Setup(source, {"pkcs11_module_token_pin": pin})
    if source == "config-file":
        return Setup(source, {"pkcs11_module_token_pin": f"file:{pin_file}"})
    if source == "uri-pin-value":
        return Setup(source, none, {"pin_value": pin})
    if source == "uri-pin-source":
        return Setup(source, none, {"pin_source": f"file:{pin_file}"})
    if source == "uri-pin-source-path":
        return Setup(source, none, {"pin_source": str(pin_file)})
    if source == "passin-pass":
        return Setup(source, none, args=["-passin", f"pass:{pin}"])
    if source == "passin-file":
        return Setup(source, none, args=["-passin", f"file:{pin_file}"])
    if source == "passin-env":
        return Setup(source, none, args=["-passin", f"env:{PASSIN_VAR}"],
                     env={PASSIN_VAR: pin})
    if source == "app-callback":
        return Setup(source, none, env={CB_VAR: pin})
    if source == "prompt":
        return Setup(source, none)
    raise AssertionError(f"unknown PIN source {source}")


@dataclass
class Attempt:
    returncode: int
    stdout: str
    stderr: str
    spki: bytes = b""    # the loaded key's SubjectPublicKeyInfo, DER
    argv: list = field(default_factory=list)

    def outputs(self, what=""):
        """(what, text) pairs for assert_secret_free. openssl repeats an
        argument it could not load ("Could not read key from <URI>"): the
        exact argv strings are masked first, as p11b_util.run does;
        anything else holding a PIN is a leak."""
        return [(f"{what}stdout", u._hide_args(self.stdout, self.argv)),
                (f"{what}stderr", u._hide_args(self.stderr, self.argv))]


def attempt(rig, setup, pin, command="pkey", label="p256"):
    """Load the private key `label` through `setup`; an Attempt.

    command "pkey": openssl pkey -in URI -pubout; "storeutl": openssl
    storeutl -text URI. The app-callback source always loads with
    p11b_ops.py (its own process, its own callback).
    """
    env = dict(rig.env, **setup.env)
    uri = rig.token.uri(label, "private", **setup.uri_extra)
    if setup.source == "app-callback":
        p, doc = u.run_ops(env, "--pin-callback-env", CB_VAR, "load", uri,
                           ok=False)
        assert doc is not None, u.describe(p)
        load = doc["loads"][0]
        assert doc.get("callback_calls", 0) >= 1 or not load["ok"], doc
        spki = bytes.fromhex(load["spki"]) if load["spki"] else b""
        return Attempt(p.returncode, p.stdout, p.stderr, spki, p.args)
    if command == "pkey":
        args = ["pkey", *setup.args, "-in", uri, "-pubout"]
    else:  # storeutl wants its options before the URI
        args = ["storeutl", "-text", *setup.args, uri]
    if setup.source == "prompt":
        r = u.run_with_pty([u.OPENSSL, *args], env, pin, PROMPT)
        # the terminal must not echo what was typed
        u.check_no_secret(r.output, "the terminal", r.args)
        out = r.output
        blocks = u.pem_blocks(out, "PUBLIC KEY")
        return Attempt(r.returncode, out, out, blocks[0] if blocks else b"",
                       r.args)
    p = u.openssl(env, *args, ok=False)
    spki = b""
    if command == "pkey" and p.returncode == 0:
        spki = u.spki_der_from_pem(p.stdout)
    return Attempt(p.returncode, p.stdout, p.stderr, spki, p.args)


def assert_secret_free(rig, *outputs):
    u.assert_no_secret(("the level-3 debug log", u.log_path(rig.env)),
                       ("faultmod's count file", rig.count), *outputs)


def provider_reasons(text):
    return [(e["reason"], e["data"]) for e in u.provider_errors(text)]


def outputs_of(p):
    """A finished run's stdout and stderr, argv masked (see Attempt)."""
    return [("stdout", u._hide_args(p.stdout, p.args)),
            ("stderr", u._hide_args(p.stderr, p.args))]


def error_reasons(lines):
    """The reasons of p11b_ops' error lines (openssl's format)."""
    return [e["reason"] for e in u.openssl_errors("\n".join(lines))]


def login_rvs(rig):
    return u.rvs_of(rig.calls(), "C_Login")


# ---- every source logs in, once ---------------------------------------------

@pytest.mark.parametrize("source", list(SOURCES))
def test_pin_source_loads_the_key_with_one_login(token, fault_rig, tmp_path,
                                                 source):
    setup = pin_setup(source, PIN, tmp_path)
    rig = fault_rig(token, **setup.config)
    a = attempt(rig, setup, PIN)
    assert a.returncode == 0, f"{source}: load failed\n{a.stderr}"
    assert a.spki == token.keys["p256"].spki, \
        f"{source}: the loaded key is not p256"
    assert login_rvs(rig) == [0], \
        f"{source}: faultmod counted C_Login results {login_rvs(rig)}"
    assert u.log_logins(rig.log()) == ["CKR_OK"], \
        f"{source}: the debug log's logins are {u.log_logins(rig.log())}"
    outputs = a.outputs()
    if source != "app-callback":
        s = attempt(rig, setup, PIN, command="storeutl")
        assert s.returncode == 0, f"{source}: storeutl failed\n{s.stderr}"
        assert "private key on a PKCS#11 token" in s.stdout, s.stdout
        outputs += s.outputs("storeutl -text ")
    assert_secret_free(rig, *outputs)


# ---- a wrong PIN costs one C_Login ------------------------------------------

@pytest.mark.parametrize("source", list(SOURCES))
def test_wrong_pin_costs_exactly_one_login(scratch_token, fault_rig, tmp_path,
                                           source):
    setup = pin_setup(source, WRONG_PIN, tmp_path)
    rig = fault_rig(scratch_token, **setup.config)
    a = attempt(rig, setup, WRONG_PIN)
    assert a.returncode != 0, f"{source}: a wrong PIN loaded the key"
    reasons = provider_reasons(a.stderr)
    assert any(r == "PIN incorrect" and SOURCES[source] in d
               for r, d in reasons), \
        f"{source}: expected 'PIN incorrect' naming " \
        f"{SOURCES[source]!r}; got {reasons}\n{a.stderr}"
    assert login_rvs(rig) == [u.CKR["CKR_PIN_INCORRECT"]], \
        f"{source}: faultmod counted C_Login results {login_rvs(rig)}"
    assert u.log_logins(rig.log()) == ["CKR_PIN_INCORRECT"], \
        f"{source}: logins in the debug log: {u.log_logins(rig.log())}"
    assert_secret_free(rig, *a.outputs())


@pytest.mark.parametrize("source", ["config-literal", "uri-pin-value",
                                    "app-callback"])
def test_rejected_pin_is_not_presented_again(scratch_token, fault_rig,
                                             tmp_path, source):
    """One process loads two keys with the same wrong PIN: the second load
    is refused without a C_Login ("PIN already rejected, not retried")."""
    setup = pin_setup(source, WRONG_PIN, tmp_path)
    rig = fault_rig(scratch_token, **setup.config)
    env = dict(rig.env, **setup.env)
    args = ["--pin-callback-env", CB_VAR] if source == "app-callback" else []
    uris = [scratch_token.uri(k, "private", **setup.uri_extra)
            for k in ("rsa2048", "p256")]
    p, doc = u.run_ops(env, *args, "load", *uris, ok=False)
    assert p.returncode == 1 and doc is not None, u.describe(p)
    first, second = doc["loads"]
    assert not first["ok"] and not second["ok"], doc
    assert "PIN incorrect" in error_reasons(first["errors"]), first
    assert "PIN already rejected, not retried" in \
        error_reasons(second["errors"]), second
    assert login_rvs(rig) == [u.CKR["CKR_PIN_INCORRECT"]], \
        f"faultmod counted C_Login results {login_rvs(rig)}"
    assert u.log_logins(rig.log()) == ["CKR_PIN_INCORRECT"]
    assert_secret_free(rig, *outputs_of(p))


def test_another_pin_is_tried_after_a_rejected_one(scratch_token, fault_rig):
    """Only the PIN the token refused is remembered: a different PIN in the
    next URI of the same process logs in."""
    rig = fault_rig(scratch_token, pkcs11_module_token_pin=None)
    uris = [scratch_token.uri("rsa2048", "private", pin_value=WRONG_PIN),
            scratch_token.uri("p256", "private", pin_value=PIN)]
    p, doc = u.run_ops(rig.env, "load", *uris, ok=False)
    assert doc is not None, u.describe(p)
    assert [x["ok"] for x in doc["loads"]] == [False, True], doc
    assert bytes.fromhex(doc["loads"][1]["spki"]) == \
        scratch_token.keys["p256"].spki
    assert login_rvs(rig) == [u.CKR["CKR_PIN_INCORRECT"], 0]
    assert u.log_logins(rig.log()) == ["CKR_PIN_INCORRECT", "CKR_OK"]
    assert_secret_free(rig, *outputs_of(p))


# ---- the lockout guard -------------------------------------------------------

GUARDS = [("final-try", "PIN at final try, not logging in"),
          ("locked", "PIN locked")]


@pytest.mark.parametrize("flag, reason", GUARDS, ids=[g for g, _ in GUARDS])
@pytest.mark.parametrize("source", ["config-file", "uri-pin-value",
                                    "passin-pass", "app-callback"])
def test_pin_guard_refuses_before_any_login(scratch_token, fault_rig,
                                            tmp_path, flag, reason, source):
    setup = pin_setup(source, PIN, tmp_path)
    rig = fault_rig(scratch_token, control=f"{flag}\n", **setup.config)
    a = attempt(rig, setup, PIN)
    assert a.returncode != 0, f"{flag}: the key loaded"
    reasons = provider_reasons(a.stderr)
    assert reason in [r for r, _ in reasons], \
        f"{flag}: expected reason {reason!r}, got {reasons}\n{a.stderr}"
    assert login_rvs(rig) == [], \
        f"{flag}: C_Login was called: {login_rvs(rig)}"
    assert u.cryptoki_calls(rig.log(), "C_Login") == [], \
        "the debug log shows a C_Login"
    assert_secret_free(rig, *a.outputs())


# ---- CKA_ALWAYS_AUTHENTICATE -------------------------------------------------

def verify(token, label, msg, sig):
    pub = serialization.load_der_public_key(token.keys[label].spki)
    if token.keys[label].kind == "EC":
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    else:
        pub.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())


def op_log_sequence(text):
    """The order of C_SignInit / C_DecryptInit / context logins / C_Sign /
    C_Decrypt lines in a debug log, as short names."""
    out = []
    for line in text.splitlines():
        if "C_Login(" in line and "CKU_CONTEXT_SPECIFIC" in line:
            out.append("ctx-login")
        elif "C_SignInit(" in line:
            out.append("SignInit")
        elif "C_DecryptInit(" in line:
            out.append("DecryptInit")
        elif u.cryptoki_calls(line, "C_Sign"):
            out.append("Sign")
        elif u.cryptoki_calls(line, "C_Decrypt"):
            out.append("Decrypt")
    return out


@pytest.mark.parametrize("label", ["p256", "rsa2048"])
def test_always_authenticate_logs_in_per_signature(token, fault_rig, tmp_path,
                                                   label):
    rig = fault_rig(token, control="always-authenticate\n")
    n = 3
    p, doc = u.run_ops(rig.env, "sign", "--uri", token.uri(label, "private"),
                       "--count", str(n), "--out", tmp_path)
    assert doc["signed"] == n, doc
    for i in range(n):
        verify(token, label, (tmp_path / f"msg-{i}.bin").read_bytes(),
               (tmp_path / f"sig-{i}.bin").read_bytes())
    log = rig.log()
    assert u.log_logins(log, "CKU_CONTEXT_SPECIFIC") == ["CKR_OK"] * n, \
        "expected one context-specific login per signature"
    assert u.log_logins(log, "CKU_USER") == ["CKR_OK"]
    assert op_log_sequence(log) == ["SignInit", "ctx-login", "Sign"] * n
    assert login_rvs(rig) == [0] * (n + 1)
    assert_secret_free(rig, *outputs_of(p))


def test_always_authenticate_decryption(token, fault_rig, tmp_path):
    rig = fault_rig(token, control="always-authenticate\n")
    secret = os.urandom(32)
    pub = serialization.load_der_public_key(token.keys["rsa2048"].spki)
    (tmp_path / "ct.bin").write_bytes(pub.encrypt(secret, padding.PKCS1v15()))
    p = rig.ossl("pkeyutl", "-decrypt", "-inkey",
                 token.uri("rsa2048", "private"), "-in", tmp_path / "ct.bin",
                 "-out", tmp_path / "pt.bin")
    assert (tmp_path / "pt.bin").read_bytes() == secret
    log = rig.log()
    assert op_log_sequence(log) == ["DecryptInit", "ctx-login", "Decrypt"]
    assert u.log_logins(log, "CKU_CONTEXT_SPECIFIC") == ["CKR_OK"]
    assert_secret_free(rig, *outputs_of(p))


def test_always_authenticate_with_a_prompted_pin(token, fault_rig, tmp_path):
    """No PIN configured: the PIN given to openssl's passphrase callback is
    kept, and serves the context-specific login too."""
    rig = fault_rig(token, control="always-authenticate\n",
                    pkcs11_module_token_pin=None)
    msg = tmp_path / "msg.bin"
    msg.write_bytes(os.urandom(2000))
    p = rig.ossl("dgst", "-sha256", "-sign", token.uri("p256", "private"),
                 "-passin", f"pass:{PIN}", "-out", tmp_path / "sig.bin", msg)
    verify(token, "p256", msg.read_bytes(),
           (tmp_path / "sig.bin").read_bytes())
    log = rig.log()
    assert u.log_logins(log, "CKU_USER") == ["CKR_OK"]
    assert u.log_logins(log, "CKU_CONTEXT_SPECIFIC") == ["CKR_OK"]
    assert_secret_free(rig, *outputs_of(p))


def test_always_authenticate_without_a_kept_pin_is_a_clear_error(
        token, fault_rig, tmp_path):
    """A URI's PIN is not kept (pkcs11-module-cache-pins = none): the
    per-operation login has no PIN, and says so, with no C_Login tried."""
    rig = fault_rig(token, control="always-authenticate\n",
                    pkcs11_module_token_pin=None)
    msg = tmp_path / "msg.bin"
    msg.write_bytes(b"x" * 100)
    p = rig.ossl("dgst", "-sha256", "-sign",
                 token.uri("p256", "private", pin_value=PIN),
                 "-out", tmp_path / "sig.bin", msg, ok=False)
    assert p.returncode == 1
    assert "no PIN available for login" in \
        [e["reason"] for e in u.provider_errors(p.stderr)], p.stderr
    assert u.log_logins(rig.log(), "CKU_CONTEXT_SPECIFIC") == []
    assert_secret_free(rig, *outputs_of(p))


# ---- what the provider writes never carries a PIN -----------------------------

def test_pem_wrapped_uri_and_text_never_carry_the_pin(token, fault_rig,
                                                      tmp_path):
    """`pkey -in URI?pin-value=...` writes the key as a PEM-wrapped URI and
    `storeutl -text` prints URIs: neither may hold the pin-value."""
    rig = fault_rig(token, pkcs11_module_token_pin=None)
    uri = token.uri("p256", "private", pin_value=PIN)
    out = tmp_path / "key.pem"
    p = rig.ossl("pkey", "-in", uri, "-out", out)
    text = out.read_text()
    blocks = u.pem_blocks(text, "PKCS#11 PROVIDER URI")
    assert len(blocks) == 1, text
    s = rig.ossl("storeutl", "-text", uri)
    assert u.uris_in(s.stdout), s.stdout
    for shown in u.uris_in(s.stdout):
        assert "pin-" not in shown, shown
    assert_secret_free(rig, ("the PEM-wrapped URI", text),
                       ("its DER body", blocks[0]),
                       *outputs_of(p), *outputs_of(s))
