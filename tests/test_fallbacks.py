"""Signature mechanism fallbacks, on tokens that lack mechanisms.

tests/faultmod wraps the shared token's SoftHSM and hides mechanisms
(FAULTMOD_HIDE_MECHS / FAULTMOD_ONLY_MECHS, see tests/faultmod/README.md);
the openssl config's pkcs11-module-path points at faultmod.so. Each case
checks the mechanism the provider used (the debug log's C_SignInit lines),
that the calls really went through faultmod (its count file), and the
signature with python3-cryptography.

  - no CKM_RSA_PKCS / CKM_RSA_PKCS_PSS, but CKM_RSA_X_509: the provider
    pads (PKCS#1 v1.5 and EMSA-PSS) and the token does raw RSA;
  - combined mechanisms only (no raw RSA at all): digest-sign hands the
    whole message to CKM_SHA*_RSA_PKCS(_PSS); signing a bare digest is
    "mechanism not supported";
  - no CKM_ECDSA (SoftHSM has no CKM_ECDSA_SHA*): "mechanism not
    supported", exit 1, no crash.
"""

import os
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

import p11b_util as u

RAW_RSA_ONLY = ["CKM_RSA_PKCS", "CKM_RSA_PKCS_PSS"]
COMBINED_ONLY = ["CKM_RSA_PKCS", "CKM_RSA_PKCS_PSS", "CKM_RSA_X_509"]
NO_ECDSA = ["CKM_ECDSA"]
MECH_UNSUPPORTED = "mechanism not supported"


@pytest.fixture(scope="session")
def faultmod_path():
    path = os.environ.get("P11BRIDGE_FAULTMOD")
    if not path or not os.path.exists(path):
        pytest.fail(f"P11BRIDGE_FAULTMOD={path!r}: it must name the built "
                    "fault-injection module (tests/faultmod/.libs/"
                    "faultmod.so); `make check` exports it", pytrace=False)
    return path


@pytest.fixture
def fault_env(token, make_config, faultmod_path, tmp_path):
    """fault_env(hide=[...], only=[...]) -> env whose provider reaches the
    shared token through faultmod with those mechanisms hidden."""
    def make(hide=(), only=()):
        env = make_config(token, pkcs11_module_path=faultmod_path)
        env["FAULTMOD_MODULE"] = token.module
        env["FAULTMOD_HIDE_MECHS"] = ",".join(hide)
        env["FAULTMOD_ONLY_MECHS"] = ",".join(only)
        env["FAULTMOD_COUNT_FILE"] = str(tmp_path / "faultmod-calls.txt")
        return env
    return make


def faultmod_calls(tmp_path, name):
    """The return values (ints) faultmod recorded for function `name`."""
    path = tmp_path / "faultmod-calls.txt"
    text = path.read_text() if path.exists() else ""
    return [int(rv, 16) for _pid, fn, rv in
            (line.split() for line in text.splitlines() if line.strip())
            if fn == name]


def public_key(token, label):
    return serialization.load_der_public_key(token.keys[label].spki)


def sign(token, env, tmp_path, label, method, digest, opts=(), msg=None,
         ok=True):
    """Sign on the token; (CompletedProcess, message, signature bytes)."""
    msg = os.urandom(3000) if msg is None else msg
    sig = tmp_path / "sig.bin"
    if method == "pkeyutl":       # a digest computed here
        (tmp_path / "in.bin").write_bytes(u.digest_of(digest, msg))
        args = ["pkeyutl", "-sign", "-inkey", token.uri(label, "private"),
                "-in", tmp_path / "in.bin", "-out", sig,
                "-pkeyopt", f"digest:{digest}"]
        for o in opts:
            args += ["-pkeyopt", o]
    elif method == "rawin":       # pkeyutl's digest-sign
        (tmp_path / "in.bin").write_bytes(msg)
        args = ["pkeyutl", "-sign", "-rawin", "-digest", digest,
                "-inkey", token.uri(label, "private"),
                "-in", tmp_path / "in.bin", "-out", sig]
        for o in opts:
            args += ["-pkeyopt", o]
    else:                         # dgst
        (tmp_path / "in.bin").write_bytes(msg)
        args = ["dgst", f"-{digest}", "-sign", token.uri(label, "private"),
                "-out", sig]
        for o in opts:
            args += ["-sigopt", o]
        args.append(tmp_path / "in.bin")
    p = token.ossl(*args, env=env, ok=ok)
    return p, msg, (sig.read_bytes() if sig.exists() else b"")


def rsa_padding(bits, digest, opts):
    if "rsa_padding_mode:pss" not in opts:
        return padding.PKCS1v15()
    salt = next(o.split(":", 1)[1] for o in opts
                if o.startswith("rsa_pss_saltlen:"))
    mgf1 = next((o.split(":", 1)[1] for o in opts
                 if o.startswith("rsa_mgf1_md:")), digest)
    hlen = u.crypto_hash(digest).digest_size
    length = {"digest": hlen, "max": (bits + 6) // 8 - hlen - 2,
              "auto": (bits + 6) // 8 - hlen - 2}.get(salt)
    return padding.PSS(mgf=padding.MGF1(u.crypto_hash(mgf1)),
                       salt_length=int(salt) if length is None else length)


def verify_rsa(token, label, method, digest, opts, msg, sig):
    pub = public_key(token, label)
    pad = rsa_padding(token.keys[label].bits, digest, opts)
    if method == "pkeyutl":
        pub.verify(sig, u.digest_of(digest, msg), pad,
                   Prehashed(u.crypto_hash(digest)))
    else:
        pub.verify(sig, msg, pad, u.crypto_hash(digest))


def check_used(env, tmp_path, mechanism):
    """Exactly one C_SignInit, with `mechanism`, that went through faultmod
    and was followed by a successful C_Sign."""
    inits = u.sign_inits(u.read_log(env))
    assert inits == [(mechanism, "CKR_OK")], \
        f"expected one C_SignInit with {mechanism}; the log has {inits}"
    assert faultmod_calls(tmp_path, "C_SignInit") == [0]
    assert faultmod_calls(tmp_path, "C_Sign") == [0]


# ---- raw RSA only: the provider pads ----------------------------------------

PSS = "rsa_padding_mode:pss"
RAW_CASES = [
    ("rsa2048", "pkeyutl", "sha256", ["rsa_padding_mode:pkcs1"]),
    ("rsa2048", "dgst", "sha384", ["rsa_padding_mode:pkcs1"]),
    ("rsa3072", "pkeyutl", "sha1", ["rsa_padding_mode:pkcs1"]),
    ("rsa2048", "dgst", "sha3-256", ["rsa_padding_mode:pkcs1"]),
    ("rsa2048", "pkeyutl", "sha256", [PSS, "rsa_pss_saltlen:digest"]),
    ("rsa2048", "dgst", "sha512", [PSS, "rsa_pss_saltlen:max"]),
    ("rsa4096", "pkeyutl", "sha384", [PSS, "rsa_pss_saltlen:auto"]),
    ("rsa2048", "rawin", "sha224", [PSS, "rsa_pss_saltlen:20"]),
    ("rsa3072", "dgst", "sha256", [PSS, "rsa_pss_saltlen:0",
                                   "rsa_mgf1_md:sha1"]),
    ("rsa2048", "pkeyutl", "sha3-512", [PSS, "rsa_pss_saltlen:digest"]),
]


@pytest.mark.parametrize(
    "label, method, digest, opts", RAW_CASES,
    ids=[f"{k}-{m}-{d}-{'pss' if PSS in o else 'pkcs1'}"
         for k, m, d, o in RAW_CASES])
def test_raw_rsa_token_signs_with_provider_padding(token, fault_env,
                                                   tmp_path, label, method,
                                                   digest, opts):
    env = fault_env(hide=RAW_RSA_ONLY)
    _, msg, sig = sign(token, env, tmp_path, label, method, digest, opts)
    assert len(sig) == token.keys[label].bits // 8
    verify_rsa(token, label, method, digest, opts, msg, sig)
    check_used(env, tmp_path, "CKM_RSA_X_509")


def test_only_mechs_with_raw_rsa_and_ecdsa(token, fault_env, tmp_path):
    """FAULTMOD_ONLY_MECHS: a token with nothing but CKM_RSA_X_509 and
    CKM_ECDSA still makes PKCS#1 v1.5 and ECDSA signatures."""
    env = fault_env(only=["CKM_RSA_X_509", "CKM_ECDSA"])
    opts = ["rsa_padding_mode:pkcs1"]
    _, msg, sig = sign(token, env, tmp_path, "rsa2048", "dgst", "sha256",
                       opts)
    verify_rsa(token, "rsa2048", "dgst", "sha256", opts, msg, sig)
    _, msg, sig = sign(token, env, tmp_path, "p256", "dgst", "sha256")
    public_key(token, "p256").verify(sig, msg,
                                     ec.ECDSA(u.crypto_hash("sha256")))
    assert u.sign_inits(u.read_log(env)) == [("CKM_RSA_X_509", "CKR_OK"),
                                             ("CKM_ECDSA", "CKR_OK")]


# ---- combined mechanisms only -----------------------------------------------

COMBINED_CASES = [
    ("dgst", "sha256", ["rsa_padding_mode:pkcs1"], "CKM_SHA256_RSA_PKCS"),
    ("dgst", "sha1", ["rsa_padding_mode:pkcs1"], "CKM_SHA1_RSA_PKCS"),
    ("dgst", "sha512", ["rsa_padding_mode:pkcs1"], "CKM_SHA512_RSA_PKCS"),
    ("rawin", "sha384", ["rsa_padding_mode:pkcs1"], "CKM_SHA384_RSA_PKCS"),
    ("dgst", "sha256", [PSS, "rsa_pss_saltlen:digest"],
     "CKM_SHA256_RSA_PKCS_PSS"),
    ("dgst", "sha384", [PSS, "rsa_pss_saltlen:max"],
     "CKM_SHA384_RSA_PKCS_PSS"),
    ("rawin", "sha224", [PSS, "rsa_pss_saltlen:10"],
     "CKM_SHA224_RSA_PKCS_PSS"),
]


@pytest.mark.parametrize(
    "method, digest, opts, mechanism", COMBINED_CASES,
    ids=[f"{m}-{d}-{'pss' if PSS in o else 'pkcs1'}"
         for m, d, o, _ in COMBINED_CASES])
def test_combined_mechanism_gets_the_message(token, fault_env, tmp_path,
                                             method, digest, opts,
                                             mechanism):
    env = fault_env(hide=COMBINED_ONLY)
    _, msg, sig = sign(token, env, tmp_path, "rsa2048", method, digest, opts)
    verify_rsa(token, "rsa2048", method, digest, opts, msg, sig)
    check_used(env, tmp_path, mechanism)
    assert re.search(rf"C_Sign\(slot \d+, {len(msg)} bytes\)", u.read_log(env)), \
        "the token did not get the whole message"


def test_combined_mechanism_with_a_large_message(token, fault_env,
                                                 tmp_path):
    env = fault_env(hide=COMBINED_ONLY)
    opts = ["rsa_padding_mode:pkcs1"]
    _, msg, sig = sign(token, env, tmp_path, "rsa3072", "dgst", "sha256",
                       opts, msg=os.urandom(3 * 1024 * 1024 + 5))
    verify_rsa(token, "rsa3072", "dgst", "sha256", opts, msg, sig)
    check_used(env, tmp_path, "CKM_SHA256_RSA_PKCS")


@pytest.mark.parametrize("pss", [False, True], ids=["pkcs1", "pss"])
def test_combined_mechanism_signs_an_empty_message(token, fault_env,
                                                   tmp_path, pss):
    """An empty message is a message too: RFC 8017 signs it like any other."""
    env = fault_env(hide=COMBINED_ONLY)
    opts = [PSS, "rsa_pss_saltlen:digest"] if pss else \
        ["rsa_padding_mode:pkcs1"]
    p, msg, sig = sign(token, env, tmp_path, "rsa2048", "dgst", "sha256",
                       opts, msg=b"", ok=False)
    assert p.returncode == 0, u.describe(p)
    verify_rsa(token, "rsa2048", "dgst", "sha256", opts, msg, sig)
    check_used(env, tmp_path, "CKM_SHA256_RSA_PKCS_PSS" if pss
               else "CKM_SHA256_RSA_PKCS")


# (method, digest, options): what a token with combined mechanisms only
# cannot do: sign a bare digest, or use a digest PKCS#11 has no
# combined mechanism for.
COMBINED_REFUSED = [
    ("pkeyutl", "sha256", ["rsa_padding_mode:pkcs1"]),
    ("pkeyutl", "sha384", [PSS, "rsa_pss_saltlen:digest"]),
    ("dgst", "sha3-256", ["rsa_padding_mode:pkcs1"]),
    ("dgst", "sha3-512", [PSS, "rsa_pss_saltlen:digest"]),
]


@pytest.mark.parametrize(
    "method, digest, opts", COMBINED_REFUSED,
    ids=[f"{m}-{d}-{'pss' if PSS in o else 'pkcs1'}"
         for m, d, o in COMBINED_REFUSED])
def test_combined_only_token_refuses_what_it_cannot_do(token, fault_env,
                                                       tmp_path, method,
                                                       digest, opts):
    env = fault_env(hide=COMBINED_ONLY)
    p, _, sig = sign(token, env, tmp_path, "rsa2048", method, digest, opts,
                     ok=False)
    assert p.returncode == 1, u.describe(p)
    reasons = [e["reason"] for e in u.provider_errors(p.stderr)]
    assert MECH_UNSUPPORTED in reasons, u.describe(p)
    assert not sig, "a signature was written"
    assert not u.sign_inits(u.read_log(env)), \
        "the provider called C_SignInit with a mechanism the token lacks"


# ---- no CKM_ECDSA -----------------------------------------------------------

@pytest.mark.parametrize("method", ["pkeyutl", "dgst", "rawin"])
@pytest.mark.parametrize("label", ["p256", "p384", "nopub-ec"])
def test_token_without_ecdsa_refuses_cleanly(token, fault_env, tmp_path,
                                             label, method):
    env = fault_env(hide=NO_ECDSA)
    p, _, sig = sign(token, env, tmp_path, label, method, "sha256", ok=False)
    assert p.returncode == 1, u.describe(p)   # a signal fails in u.run
    errors = u.provider_errors(p.stderr)
    assert [e for e in errors if e["reason"] == MECH_UNSUPPORTED], \
        u.describe(p)
    assert any("CKM_ECDSA" in e["data"] for e in errors), \
        f"the error does not name the missing mechanism:\n{u.describe(p)}"
    assert not sig, "a signature was written"
    assert not u.sign_inits(u.read_log(env))
    assert faultmod_calls(tmp_path, "C_SignInit") == []
