"""ECDSA signatures with token keys, checked by independent code.

SoftHSM has CKM_ECDSA but no CKM_ECDSA_SHA*: the provider hashes in
software and the token signs the digest. Its raw r || s comes back to
OpenSSL as a DER ECDSA-Sig-Value, which python3-cryptography verifies
against the public key the provider exports. Signatures made in software
are verified through the provider.
"""

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed, decode_dss_signature, encode_dss_signature)

import p11b_util as u

CURVES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1}
DIGESTS = ["sha1", "sha256", "sha384", "sha512", "sha3-256"]
METHODS = ["pkeyutl", "dgst"]


@pytest.fixture(scope="module")
def exported_key(token):
    """label -> the cryptography public key of `openssl pkey -pubout`."""
    cache = {}

    def get(label):
        if label not in cache:
            p = token.ossl("pkey", "-in", token.uri(label, "private"),
                           "-pubout")
            der = u.spki_der_from_pem(p.stdout)
            assert der == token.keys[label].spki, \
                f"{label}: exported SPKI differs from the token's public key"
            cache[label] = serialization.load_der_public_key(der)
        return cache[label]
    return get


def token_sign(token, env, tmp_path, label, method, digest, msg):
    sig = tmp_path / f"{method}.sig"
    if method == "pkeyutl":
        (tmp_path / "digest.bin").write_bytes(u.digest_of(digest, msg))
        token.ossl("pkeyutl", "-sign", "-inkey", token.uri(label, "private"),
                   "-in", tmp_path / "digest.bin", "-out", sig,
                   "-pkeyopt", f"digest:{digest}", env=env)
    else:
        (tmp_path / "msg.bin").write_bytes(msg)
        token.ossl("dgst", f"-{digest}", "-sign",
                   token.uri(label, "private"), "-out", sig,
                   tmp_path / "msg.bin", env=env)
    return sig.read_bytes()


def soft_verify(pub, sig, msg, digest, method):
    if method == "pkeyutl":
        pub.verify(sig, u.digest_of(digest, msg),
                   ec.ECDSA(Prehashed(u.crypto_hash(digest))))
    else:
        pub.verify(sig, msg, ec.ECDSA(u.crypto_hash(digest)))


def check_der(sig, bits):
    """A minimal DER ECDSA-Sig-Value whose r and s fit the curve."""
    r, s = decode_dss_signature(sig)
    assert encode_dss_signature(r, s) == sig, "signature is not minimal DER"
    assert 0 < r and 0 < s, (r, s)
    assert r.bit_length() <= bits and s.bit_length() <= bits, (r, s)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("digest", DIGESTS)
@pytest.mark.parametrize("label", list(CURVES))
def test_token_signature_verifies_in_software(token, exported_key, tmp_path,
                                              label, digest, method):
    pub = exported_key(label)
    assert isinstance(pub.curve, CURVES[label]), pub.curve.name
    env = token.fresh_env(tmp_path)
    msg = os.urandom(2000)
    sig = token_sign(token, env, tmp_path, label, method, digest, msg)
    check_der(sig, pub.curve.key_size)
    soft_verify(pub, sig, msg, digest, method)
    assert u.sign_inits(u.read_log(env)) == [("CKM_ECDSA", "CKR_OK")]


@pytest.mark.parametrize("method", METHODS)
def test_key_without_public_object_signs(token, tmp_path, method):
    """nopub-ec: its public half comes from the certificate."""
    pub = serialization.load_der_public_key(token.keys["nopub-ec"].spki)
    msg = os.urandom(500)
    sig = token_sign(token, token.fresh_env(tmp_path), tmp_path, "nopub-ec",
                     method, "sha256", msg)
    check_der(sig, 256)
    soft_verify(pub, sig, msg, "sha256", method)


def test_two_signatures_of_one_digest_differ(token, exported_key, tmp_path):
    """ECDSA's per-signature nonce: equal signatures would mean a fixed k."""
    msg = os.urandom(64)
    env = token.fresh_env(tmp_path)
    a = token_sign(token, env, tmp_path, "p384", "pkeyutl", "sha384", msg)
    b = token_sign(token, env, tmp_path, "p384", "pkeyutl", "sha384", msg)
    assert a != b
    for sig in (a, b):
        soft_verify(exported_key("p384"), sig, msg, "sha384", "pkeyutl")


# ---- software signatures verified through the provider ----------------------

REVERSE_CASES = [("pkeyutl", "sha256"), ("pkeyutl", "sha384"),
                 ("pkeyutl", "sha1"), ("dgst", "sha256"), ("dgst", "sha512"),
                 ("dgst", "sha3-256")]


@pytest.mark.parametrize("method, digest", REVERSE_CASES,
                         ids=[f"{m}-{d}" for m, d in REVERSE_CASES])
def test_software_signature_verified_through_provider(soft_key_token,
                                                      tmp_path, method,
                                                      digest):
    tok = soft_key_token
    key = tok.private_keys["nopub-ec"]
    uri = tok.uri("nopub-ec", "private")
    msg = os.urandom(1234)
    (tmp_path / "msg.bin").write_bytes(msg)
    (tmp_path / "digest.bin").write_bytes(u.digest_of(digest, msg))
    if method == "pkeyutl":
        good = key.sign(u.digest_of(digest, msg),
                        ec.ECDSA(Prehashed(u.crypto_hash(digest))))
        ok_text, bad_text = ("Signature Verified Successfully",
                             "Signature Verification Failure")
    else:
        good = key.sign(msg, ec.ECDSA(u.crypto_hash(digest)))
        ok_text, bad_text = "Verified OK", "Verification failure"
    env = tok.fresh_env(tmp_path)

    def verify(sig):
        (tmp_path / "sig.bin").write_bytes(sig)
        if method == "pkeyutl":
            args = ["pkeyutl", "-verify", "-inkey", uri,
                    "-in", tmp_path / "digest.bin",
                    "-sigfile", tmp_path / "sig.bin",
                    "-pkeyopt", f"digest:{digest}"]
        else:
            args = ["dgst", f"-{digest}", "-verify", uri,
                    "-signature", tmp_path / "sig.bin", tmp_path / "msg.bin"]
        return tok.ossl(*args, env=env, ok=False)

    p = verify(good)
    assert p.returncode == 0 and ok_text in p.stdout, u.describe(p)
    # the last byte is inside s: still well-formed DER, a wrong signature
    p = verify(u.flip_byte(good, -1))
    assert p.returncode == 1, u.describe(p)
    assert bad_text in p.stdout + p.stderr, u.describe(p)
    assert ok_text not in p.stdout, u.describe(p)
    log = u.read_log(env)
    assert any(n > 0 for n in u.found_counts(log)), \
        "the provider never found the key"
    assert not u.sign_inits(log), "verification must not use the token"


def test_signature_of_another_key_is_rejected(soft_key_token, token,
                                              tmp_path):
    """A valid signature by the shared token's p256 key does not verify
    with nopub-ec's public half."""
    msg = os.urandom(100)
    sig = token_sign(token, token.fresh_env(tmp_path), tmp_path, "p256",
                     "dgst", "sha256", msg)
    p = soft_key_token.ossl("dgst", "-sha256", "-verify",
                            soft_key_token.uri("nopub-ec", "private"),
                            "-signature", tmp_path / "dgst.sig",
                            tmp_path / "msg.bin", ok=False)
    assert len(sig) > 0
    assert p.returncode == 1 and "Verification failure" in p.stdout, \
        u.describe(p)


# ---- negative cases ---------------------------------------------------------
# (arguments, reason text expected on stderr); {p256} and {public} are URIs,
# {d20}, {d32}, {d64} files of that many bytes.

NEGATIVE = [
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{p256}", "-in", "{d20}",
         "-pkeyopt", "digest:sha256"],
        "input of 20 bytes", id="digest-too-short-for-sha256"),
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{p256}", "-in", "{d64}",
         "-pkeyopt", "digest:sha384"],
        "input of 64 bytes", id="digest-too-long-for-sha384"),
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{public}", "-in", "{d32}",
         "-pkeyopt", "digest:sha256"],
        "no object matches the pkcs11 URI", id="public-key-uri-pkeyutl"),
    pytest.param(
        ["dgst", "-sha256", "-sign", "{public}", "{d32}"],
        "no object matches the pkcs11 URI", id="public-key-uri-dgst"),
]


@pytest.mark.parametrize("args, reason", NEGATIVE)
def test_bad_ecdsa_signature_request_is_a_clear_error(token, tmp_path, args,
                                                      reason):
    names = {"p256": token.uri("p256", "private"),
             "public": token.uri("p256", "public")}
    for size in (20, 32, 64):
        path = tmp_path / f"d{size}.bin"
        path.write_bytes(os.urandom(size))
        names[f"d{size}"] = str(path)
    argv = [a.format(**names) for a in args]
    argv[1:1] = ["-out", str(tmp_path / "sig.bin")]
    p = token.ossl(*argv, env=token.fresh_env(tmp_path), ok=False)
    assert p.returncode == 1, u.describe(p)
    assert u.provider_errors(p.stderr), \
        f"no error line from the provider:\n{u.describe(p)}"
    assert reason in p.stderr, \
        f"expected {reason!r} in the error:\n{u.describe(p)}"
