"""RSA signatures with token keys, checked by independent code.

Every signature made on the token (`pkeyutl -sign` of a digest computed
here, `dgst -sign` of a message, `rsautl -sign -raw` of a block) is
verified with python3-cryptography against the public key the provider
exports; signatures made in software are verified through the provider.
The debug log's C_SignInit lines tell which mechanism did the work.

OpenSSL 3.0's pkeyutl refuses a non-raw input longer than 64 bytes ("The
input data looks too long to be a hash"), so the raw (no padding) case of
a modulus-length block goes through `rsautl -sign -raw`, which is
EVP_PKEY_sign with RSA_NO_PADDING all the same.
"""

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

import p11b_util as u

RSA_KEYS = {"rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}
DIGESTS = ["sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256",
           "sha3-512"]
# padding -> PSS salt length setting (None: PKCS#1 v1.5)
PADDINGS = {"pkcs1": None, "pss-digest": "digest", "pss-max": "max",
            "pss-auto": "auto", "pss-20": "20"}
# OpenSSL's special salt lengths: pkeyutl gets the names, dgst the numbers
SALT_NUMBERS = {"digest": "-1", "auto": "-2", "max": "-3"}
METHODS = ["pkeyutl", "dgst"]
SHA2 = {"sha1", "sha224", "sha256", "sha384", "sha512"}

OK_PKEYUTL = "Signature Verified Successfully"
BAD_PKEYUTL = "Signature Verification Failure"
OK_DGST = "Verified OK"
BAD_DGST = "Verification failure"


@pytest.fixture(scope="module")
def exported_key(token):
    """label -> the cryptography public key of `openssl pkey -pubout` on
    the token key's URI (cached per module)."""
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


def salt_length(bits, digest, setting):
    """The PSS salt length OpenSSL's setting means when signing."""
    hlen = u.crypto_hash(digest).digest_size
    emlen = (bits - 1 + 7) // 8
    if setting == "digest":
        return hlen
    if setting in ("max", "auto"):  # signing with "auto" means "max"
        return emlen - hlen - 2
    return int(setting)


def sig_opts(salt, mgf1=None, numeric=False):
    """-pkeyopt/-sigopt values for PKCS#1 (salt None) or PSS."""
    if salt is None:
        return ["rsa_padding_mode:pkcs1"]
    value = SALT_NUMBERS.get(salt, salt) if numeric else salt
    opts = ["rsa_padding_mode:pss", f"rsa_pss_saltlen:{value}"]
    if mgf1 is not None:
        opts.append(f"rsa_mgf1_md:{mgf1}")
    return opts


def token_sign(token, env, tmp_path, label, method, digest, opts, msg):
    """Sign msg (dgst) or its digest (pkeyutl) on the token; the signature."""
    sig = tmp_path / f"{method}.sig"
    if method == "pkeyutl":
        tbs = tmp_path / "digest.bin"
        tbs.write_bytes(u.digest_of(digest, msg))
        args = ["pkeyutl", "-sign", "-inkey", token.uri(label, "private"),
                "-in", tbs, "-out", sig, "-pkeyopt", f"digest:{digest}"]
        for o in opts:
            args += ["-pkeyopt", o]
    else:
        data = tmp_path / "msg.bin"
        data.write_bytes(msg)
        args = ["dgst", f"-{digest}", "-sign", token.uri(label, "private"),
                "-out", sig]
        for o in opts:
            args += ["-sigopt", o]
        args.append(data)
    token.ossl(*args, env=env)
    return sig.read_bytes()


def soft_verify(pub, sig, msg, digest, pad, method):
    """cryptography's verdict (raises InvalidSignature on a bad one)."""
    if method == "pkeyutl":
        pub.verify(sig, u.digest_of(digest, msg), pad,
                   Prehashed(u.crypto_hash(digest)))
    else:
        pub.verify(sig, msg, pad, u.crypto_hash(digest))


def expected_mechanism(digest, salt, mgf1):
    """The raw mechanism SoftHSM's token should get for these settings."""
    if salt is None:
        return "CKM_RSA_PKCS"  # SHA-3 too: DigestInfo + CKM_RSA_PKCS
    if digest in SHA2 and (mgf1 or digest) in SHA2:
        return "CKM_RSA_PKCS_PSS"
    return "CKM_RSA_X_509"  # no Cryptoki name for SHA-3: our EMSA-PSS


def check_sign_and_verify(token, exported_key, tmp_path, label, method,
                          digest, salt, mgf1=None):
    bits = RSA_KEYS.get(label, token.keys[label].bits)
    env = token.fresh_env(tmp_path)
    msg = os.urandom(1500)
    opts = sig_opts(salt, mgf1, numeric=(method == "dgst"))
    sig = token_sign(token, env, tmp_path, label, method, digest, opts, msg)
    assert len(sig) == bits // 8, f"signature of {len(sig)} bytes"
    if salt is None:
        pad = padding.PKCS1v15()
    else:
        pad = padding.PSS(
            mgf=padding.MGF1(u.crypto_hash(mgf1 or digest)),
            salt_length=salt_length(bits, digest, salt))
    # a PSS signature verifies only with exactly this salt length
    soft_verify(exported_key(label), sig, msg, digest, pad, method)
    inits = u.sign_inits(u.read_log(env))
    want = expected_mechanism(digest, salt, mgf1)
    assert inits == [(want, "CKR_OK")], \
        f"expected one C_SignInit with {want}, the log has {inits}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pad", list(PADDINGS))
@pytest.mark.parametrize("digest", DIGESTS)
@pytest.mark.parametrize("label", list(RSA_KEYS))
def test_token_signature_verifies_in_software(token, exported_key, tmp_path,
                                              label, digest, pad, method):
    check_sign_and_verify(token, exported_key, tmp_path, label, method,
                          digest, PADDINGS[pad])


# PSS whose MGF1 digest differs from the message digest. SoftHSM's
# CKM_RSA_PKCS_PSS insists that they match (CKR_ARGUMENTS_BAD otherwise);
# the token still has CKM_RSA_X_509, so the signature must be made anyway.
MGF1_CASES = [("sha256", "sha1"), ("sha384", "sha512"),
              ("sha3-256", "sha256"), ("sha256", "sha3-512")]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("digest, mgf1", MGF1_CASES,
                         ids=[f"{d}-mgf1-{m}" for d, m in MGF1_CASES])
def test_pss_with_a_different_mgf1_digest(token, exported_key, tmp_path,
                                          digest, mgf1, method):
    bits = RSA_KEYS["rsa2048"]
    env = token.fresh_env(tmp_path)
    msg = os.urandom(700)
    opts = sig_opts("digest", mgf1, numeric=(method == "dgst"))
    sig = token_sign(token, env, tmp_path, "rsa2048", method, digest, opts,
                     msg)
    pad = padding.PSS(mgf=padding.MGF1(u.crypto_hash(mgf1)),
                      salt_length=salt_length(bits, digest, "digest"))
    soft_verify(exported_key("rsa2048"), sig, msg, digest, pad, method)
    inits = u.sign_inits(u.read_log(env))
    assert inits and inits[-1][1] == "CKR_OK", inits


@pytest.mark.parametrize("label", list(RSA_KEYS))
def test_raw_rsa_is_the_bare_private_key_operation(token, exported_key,
                                                   tmp_path, label):
    modlen = RSA_KEYS[label] // 8
    block = b"\x00" + os.urandom(modlen - 1)
    (tmp_path / "block.bin").write_bytes(block)
    env = token.fresh_env(tmp_path)
    token.ossl("rsautl", "-sign", "-raw", "-inkey",
               token.uri(label, "private"), "-in", tmp_path / "block.bin",
               "-out", tmp_path / "sig.bin", env=env)
    sig = (tmp_path / "sig.bin").read_bytes()
    assert len(sig) == modlen
    numbers = exported_key(label).public_numbers()
    s = int.from_bytes(sig, "big")
    assert s < numbers.n
    assert pow(s, numbers.e, numbers.n) == int.from_bytes(block, "big"), \
        "sig^e mod n is not the input block"
    assert u.sign_inits(u.read_log(env)) == [("CKM_RSA_X_509", "CKR_OK")]


@pytest.mark.parametrize("method, digest, salt", [
    ("pkeyutl", "sha256", None), ("pkeyutl", "sha384", "digest"),
    ("dgst", "sha512", None), ("dgst", "sha3-256", "max"),
])
def test_key_without_public_object_signs(token, tmp_path, method, digest,
                                         salt):
    """The shared token's nopub-rsa: the provider takes the public half
    from the private object; the check uses the software copy's SPKI."""
    pub = serialization.load_der_public_key(token.keys["nopub-rsa"].spki)
    msg = os.urandom(300)
    sig = token_sign(token, token.fresh_env(tmp_path), tmp_path, "nopub-rsa",
                     method, digest, sig_opts(salt, numeric=False), msg)
    pad = padding.PKCS1v15() if salt is None else padding.PSS(
        mgf=padding.MGF1(u.crypto_hash(digest)),
        salt_length=salt_length(2048, digest, salt))
    soft_verify(pub, sig, msg, digest, pad, method)


# ---- software signatures verified through the provider ----------------------

REVERSE_CASES = [
    # method, digest, PSS salt length (None: PKCS#1 v1.5)
    ("pkeyutl", "sha256", None),
    ("pkeyutl", "sha3-512", None),
    ("pkeyutl", "sha384", 48),
    ("pkeyutl", "sha256", 0),
    ("dgst", "sha512", None),
    ("dgst", "sha256", 32),
    ("dgst", "sha3-256", 100),
]


@pytest.mark.parametrize(
    "method, digest, salt", REVERSE_CASES,
    ids=[f"{m}-{d}-{'pkcs1' if s is None else f'pss{s}'}"
         for m, d, s in REVERSE_CASES])
def test_software_signature_verified_through_provider(soft_key_token,
                                                      tmp_path, method,
                                                      digest, salt):
    tok = soft_key_token
    key = tok.private_keys["nopub-rsa"]
    assert isinstance(key, rsa.RSAPrivateKey)
    uri = tok.uri("nopub-rsa", "private")
    msg = os.urandom(999)
    (tmp_path / "msg.bin").write_bytes(msg)
    (tmp_path / "digest.bin").write_bytes(u.digest_of(digest, msg))
    if salt is None:
        pad = padding.PKCS1v15()
        opts = ["rsa_padding_mode:pkcs1"]
    else:
        pad = padding.PSS(mgf=padding.MGF1(u.crypto_hash(digest)),
                          salt_length=salt)
        opts = ["rsa_padding_mode:pss", f"rsa_pss_saltlen:{salt}"]
    if method == "pkeyutl":
        good = key.sign(u.digest_of(digest, msg), pad,
                        Prehashed(u.crypto_hash(digest)))
    else:
        good = key.sign(msg, pad, u.crypto_hash(digest))
    env = tok.fresh_env(tmp_path)

    def verify(sig):
        (tmp_path / "sig.bin").write_bytes(sig)
        if method == "pkeyutl":
            args = ["pkeyutl", "-verify", "-inkey", uri,
                    "-in", tmp_path / "digest.bin",
                    "-sigfile", tmp_path / "sig.bin",
                    "-pkeyopt", f"digest:{digest}"]
            for o in opts:
                args += ["-pkeyopt", o]
        else:
            args = ["dgst", f"-{digest}", "-verify", uri,
                    "-signature", tmp_path / "sig.bin"]
            for o in opts:
                args += ["-sigopt", o]
            args.append(tmp_path / "msg.bin")
        return tok.ossl(*args, env=env, ok=False)

    ok_text = OK_PKEYUTL if method == "pkeyutl" else OK_DGST
    bad_text = BAD_PKEYUTL if method == "pkeyutl" else BAD_DGST
    p = verify(good)
    assert p.returncode == 0 and ok_text in p.stdout, u.describe(p)
    p = verify(u.flip_byte(good))
    assert p.returncode == 1, u.describe(p)
    assert bad_text in p.stdout + p.stderr, u.describe(p)
    assert ok_text not in p.stdout, u.describe(p)
    log = u.read_log(env)
    assert any(n > 0 for n in u.found_counts(log)), \
        "the provider never found the key"
    assert not u.sign_inits(log), "verification must not use the token"


# ---- negative cases ---------------------------------------------------------
# (arguments, reason text expected on stderr). {rsa2048} and {public} are
# URIs; {d20}, {d32}, {d64}, {b255} and {msg} are files of that many bytes.

NEGATIVE = [
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{rsa2048}", "-in", "{d32}",
         "-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss",
         "-pkeyopt", "rsa_pss_saltlen:223"],
        "salt", id="pss-salt-one-too-long-sha256"),
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{rsa2048}", "-in", "{d32}",
         "-pkeyopt", "digest:sha3-256", "-pkeyopt", "rsa_padding_mode:pss",
         "-pkeyopt", "rsa_pss_saltlen:300"],
        "salt", id="pss-salt-too-long-sha3"),
    pytest.param(
        ["dgst", "-sha512", "-sign", "{rsa2048}", "-sigopt",
         "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:250", "{msg}"],
        "salt", id="pss-salt-too-long-dgst"),
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{rsa2048}", "-in", "{d64}",
         "-pkeyopt", "rsa_padding_mode:none"],
        "input of 64 bytes", id="raw-input-too-short-pkeyutl"),
    pytest.param(
        ["rsautl", "-sign", "-raw", "-inkey", "{rsa2048}", "-in", "{b255}"],
        "input of 255 bytes", id="raw-input-255-of-256-bytes"),
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{rsa2048}", "-in", "{d20}",
         "-pkeyopt", "digest:sha256"],
        "input of 20 bytes is not a SHA2-256 digest",
        id="digest-size-mismatch-pkcs1"),
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{rsa2048}", "-in", "{d64}",
         "-pkeyopt", "digest:sha384", "-pkeyopt", "rsa_padding_mode:pss"],
        "input of 64 bytes is not a SHA2-384 digest",
        id="digest-size-mismatch-pss"),
    pytest.param(
        ["pkeyutl", "-sign", "-inkey", "{public}", "-in", "{d32}",
         "-pkeyopt", "digest:sha256"],
        "no object matches the pkcs11 URI", id="public-key-uri-pkeyutl"),
    pytest.param(
        ["dgst", "-sha256", "-sign", "{public}", "{msg}"],
        "no object matches the pkcs11 URI", id="public-key-uri-dgst"),
]


@pytest.mark.parametrize("args, reason", NEGATIVE)
def test_bad_rsa_signature_request_is_a_clear_error(token, tmp_path, args,
                                                    reason):
    files = {"d20": 20, "d32": 32, "d64": 64, "b255": 255, "msg": 100}
    names = {"rsa2048": token.uri("rsa2048", "private"),
             "public": token.uri("rsa2048", "public")}
    for name, size in files.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(b"\x00" + os.urandom(size - 1))
        names[name] = str(path)
    argv = [a.format(**names) for a in args]
    # -out before dgst's file operand
    argv[1:1] = ["-out", str(tmp_path / "sig.bin")]
    p = token.ossl(*argv, env=token.fresh_env(tmp_path), ok=False)
    assert p.returncode == 1, u.describe(p)
    ours = u.provider_errors(p.stderr)
    assert ours, f"no error line from the provider:\n{u.describe(p)}"
    assert reason in p.stderr, \
        f"expected {reason!r} in the error:\n{u.describe(p)}"
    assert not (tmp_path / "sig.bin").exists() or \
        (tmp_path / "sig.bin").stat().st_size == 0, "a signature was written"


# ---- issue 11: raw PKCS#1 v1.5 input size, verify-recover ------------------

@pytest.mark.parametrize("label", ["rsa2048", "rsa3072"])
def test_i11_08_raw_pkcs1_up_to_k_minus_11(token, exported_key, tmp_path,
                                           label):
    """PKCS#1 v1.5 without a digest signs up to k - 11 bytes, as the
    default provider does (RFC 8017 9.2); k - 10 is a clear error. The
    signature is recovered by cryptography and by the default provider."""
    k = RSA_KEYS[label] // 8
    env = token.fresh_env(tmp_path)
    data = os.urandom(k - 11)
    (tmp_path / "data.bin").write_bytes(data)
    token.ossl("rsautl", "-sign", "-inkey", token.uri(label, "private"),
               "-in", tmp_path / "data.bin", "-out", tmp_path / "sig.bin",
               env=env)
    sig = (tmp_path / "sig.bin").read_bytes()
    assert exported_key(label).recover_data_from_signature(
        sig, padding.PKCS1v15(), None) == data
    u.openssl(u.default_only_env(tmp_path), "pkeyutl", "-verifyrecover",
              "-pubin", "-inkey", token.keys[label].pub_pem,
              "-in", tmp_path / "sig.bin", "-out", tmp_path / "rec.bin")
    assert (tmp_path / "rec.bin").read_bytes() == data

    (tmp_path / "long.bin").write_bytes(os.urandom(k - 10))
    p = token.ossl("rsautl", "-sign", "-inkey", token.uri(label, "private"),
                   "-in", tmp_path / "long.bin", "-out",
                   tmp_path / "long.sig", env=env, ok=False)
    assert p.returncode == 1, u.describe(p)
    assert u.provider_errors(p.stderr), u.describe(p)
    assert f"input of {k - 10} bytes: PKCS#1 v1.5 without a digest takes " \
           f"at most {k - 11} bytes" in p.stderr, u.describe(p)
    assert not (tmp_path / "long.sig").exists() or \
        (tmp_path / "long.sig").stat().st_size == 0


def recover(token, env, tmp_path, key_args, sig, opts=(), name="rec"):
    out = tmp_path / f"{name}.bin"
    token.ossl("pkeyutl", "-verifyrecover", *key_args, "-in", sig,
               "-out", out, *opts, env=env)
    return out.read_bytes()


@pytest.mark.parametrize("pad", ["pkcs1", "pkcs1-sha256", "none"])
def test_i11_09_verify_recover(token, exported_key, tmp_path, pad):
    """pkeyutl -verifyrecover and rsautl -verify with token keys (private
    and public URIs) recover what the default provider recovers from the
    same signature, with PKCS#1 v1.5 (with and without a digest) and raw
    padding. Public-key work: no C_* operation on the token."""
    label, k = "rsa2048", RSA_KEYS["rsa2048"] // 8
    if pad == "none":
        data = b"\x00" + os.urandom(k - 1)
        sign_opts, opts = ["-raw"], ["-pkeyopt", "rsa_padding_mode:none"]
    elif pad == "pkcs1-sha256":
        data = os.urandom(32)
        sign_opts, opts = [], ["-pkeyopt", "digest:sha256"]
    else:
        data = os.urandom(100)
        sign_opts, opts = [], []
    (tmp_path / "data.bin").write_bytes(data)
    sig = tmp_path / "sig.bin"
    if pad == "pkcs1-sha256":
        token.ossl("pkeyutl", "-sign", "-inkey", token.uri(label, "private"),
                   "-in", tmp_path / "data.bin", "-out", sig, *opts)
    else:
        token.ossl("rsautl", "-sign", *sign_opts, "-inkey",
                   token.uri(label, "private"), "-in", tmp_path / "data.bin",
                   "-out", sig)

    soft = recover(token, u.default_only_env(tmp_path), tmp_path,
                   ["-pubin", "-inkey", token.keys[label].pub_pem], sig, opts,
                   "soft")
    assert soft == data
    env = token.fresh_env(tmp_path, level=2)
    for i, key_args in enumerate(
            (["-inkey", token.uri(label, "private")],
             ["-pubin", "-inkey", token.uri(label, "public")])):
        ours = recover(token, env, tmp_path, key_args, sig, opts, f"ours{i}")
        assert ours == soft, f"{key_args}: recovered data differs"
    if pad != "pkcs1-sha256":
        token.ossl("rsautl", "-verify", *sign_opts, "-inkey",
                   token.uri(label, "private"), "-in", sig, "-out",
                   tmp_path / "rsautl.bin", env=env)
        assert (tmp_path / "rsautl.bin").read_bytes() == data
    log = u.read_log(env)
    assert "C_SignInit" not in log and "C_VerifyInit" not in log, log

    # A tampered signature recovers nothing.
    (tmp_path / "bad.bin").write_bytes(u.flip_byte(sig.read_bytes()))
    if pad != "none":
        p = token.ossl("pkeyutl", "-verifyrecover", "-inkey",
                       token.uri(label, "private"), "-in",
                       tmp_path / "bad.bin", *opts, env=env, ok=False)
        assert p.returncode == 1, u.describe(p)


def _token_public(tok, label, kid):
    """The public key pkcs11-tool exports for the object (independent)."""
    from p11b_tokens import export_pubkey
    spec = type("Spec", (), {"label": label, "id": kid})
    spki, _ = export_pubkey(tok, spec)
    return serialization.load_der_public_key(spki)


@pytest.mark.parametrize("allowed, mech, opts", [
    ("SHA256-RSA-PKCS-PSS", "CKM_SHA256_RSA_PKCS_PSS",
     ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]),
    ("SHA256-RSA-PKCS", "CKM_SHA256_RSA_PKCS", []),
], ids=["pss", "pkcs1"])
def test_i11_06_combined_only_allowed_mechanism(scratch_token, tmp_path,
                                                allowed, mech, opts):
    """A key whose CKA_ALLOWED_MECHANISMS lists only a combined mechanism
    signs with it (the message goes to the token), although the token
    also has the raw mechanisms the key may not use."""
    tok = scratch_token
    tok.tool("--keypairgen", "--key-type", "rsa:2048", "--label", "combined",
             "--id", "c6", "--allowed-mechanisms", allowed)
    listing = tok.tool("--list-objects", "--type", "privkey").stdout
    assert allowed in listing, f"pkcs11-tool did not restrict the key:\n" \
                               f"{listing}"
    msg, sig = tmp_path / "msg.bin", tmp_path / "sig.bin"
    msg.write_bytes(os.urandom(3000))
    env = tok.fresh_env(tmp_path, level=2)
    tok.ossl("dgst", "-sha256", "-sign", tok.uri("combined", "private"),
             *opts, "-out", sig, msg, env=env)
    pub = _token_public(tok, "combined", "c6")
    if "PSS" in allowed:
        pub.verify(sig.read_bytes(), msg.read_bytes(),
                   padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                   hashes.SHA256())
    else:
        pub.verify(sig.read_bytes(), msg.read_bytes(), padding.PKCS1v15(),
                   hashes.SHA256())
    assert u.sign_inits(u.read_log(env)) == [(mech, "CKR_OK")]
