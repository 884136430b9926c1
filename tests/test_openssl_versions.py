"""What differs between OpenSSL 3.0, 3.5 and 3.6, seen through the provider.

The suite runs on whichever OpenSSL the system has (Debian 12: 3.0,
Debian 13: 3.5, unstable: 3.6). These tests ask the running `openssl`
for its version and expect what that version's own default provider
does (docs/DESIGN.md, "OpenSSL versions"):

- RSA-PSS salt lengths: 3.1+ signs with "auto-digestmax" (-4) by default
  (the digest's length when it fits); 3.0 signs with "auto" (the maximum)
  and reads the unknown name "auto-digestmax" as the number 0.
- PKCS#1 v1.5 decryption: 3.2+ does implicit rejection.
- Deterministic ECDSA (`nonce-type`, 3.2+): refused unless the token can.
- The message-signing API with composite names ("RSA-SHA256", 3.4+).

Every signature is verified by OpenSSL's default provider alone and by
python3-cryptography with the exact salt length expected.
"""

import os
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

import p11b_util as u

LABEL = "rsa2048"
BITS = 2048


def openssl_version(tmp_path):
    """(major, minor) of the openssl program the suite runs."""
    out = u.openssl(u.default_only_env(tmp_path), "version").stdout
    m = re.match(r"OpenSSL (\d+)\.(\d+)\.", out)
    assert m, f"cannot read the version in {out!r}"
    return int(m.group(1)), int(m.group(2))


def expected_salt(version, digest, setting):
    """The salt length the default provider of `version` signs with."""
    hlen = u.crypto_hash(digest).digest_size
    emlen = (BITS - 1 + 7) // 8
    most = emlen - hlen - 2
    if setting is None:  # no option: the version's default
        setting = "auto-digestmax" if version >= (3, 1) else "auto"
    if setting in ("digest", "-1"):
        return hlen
    if setting in ("max", "auto", "-3", "-2"):
        return most
    if setting in ("auto-digestmax", "-4"):
        if version < (3, 1):
            return 0  # 3.0 parses the unknown name as a number
        return min(hlen, most)
    return int(setting)


def write_pub(token, tmp_path):
    pem = tmp_path / "pub.pem"
    pem.write_bytes(token.ossl("pkey", "-in", token.uri(LABEL, "private"),
                               "-pubout").stdout.encode())
    return pem


def pss_sign(token, env, tmp_path, method, digest, setting, msg):
    """Sign msg on the token; returns the signature (raw or CMS DER)."""
    opts = ["rsa_padding_mode:pss"]
    if setting is not None:
        opts.append(f"rsa_pss_saltlen:{setting}")
    data, sig = tmp_path / "msg.bin", tmp_path / "msg.sig"
    data.write_bytes(msg)
    key = token.uri(LABEL, "private")
    if method == "dgst":
        args = ["dgst", f"-{digest}", "-sign", key, "-out", sig]
        args += [a for o in opts for a in ("-sigopt", o)] + [data]
    elif method == "rawin":
        args = ["pkeyutl", "-sign", "-rawin", "-digest", digest,
                "-inkey", key, "-in", data, "-out", sig]
        args += [a for o in opts for a in ("-pkeyopt", o)]
    else:  # cms, with a self-signed certificate of the token key
        cert = tmp_path / "signer.pem"
        token.ossl("req", "-new", "-x509", "-key", key, "-days", "1",
                   "-subj", "/CN=p11b PSS signer", "-out", cert)
        args = ["cms", "-sign", "-binary", "-md", digest, "-signer", cert,
                "-inkey", key, "-in", data, "-outform", "DER", "-out", sig]
        args += [a for o in opts for a in ("-keyopt", o)]
    token.ossl(*args, env=env)
    return sig


def cms_salt_length(env, sig):
    """The saltLength of the signer's RSASSA-PSS parameters (RFC 4055:
    absent means 20), read with `openssl asn1parse`."""
    text = u.openssl(env, "asn1parse", "-inform", "DER", "-in", sig).stdout
    assert ":rsassaPss" in text, text
    params = text[text.rindex(":rsassaPss"):]
    params = params[:params.index("OCTET STRING")]
    m = re.search(r"cont \[ 2 \][^\n]*\n[^\n]*INTEGER *:([0-9A-F]+)", params)
    return 20 if m is None else int(m.group(1), 16)


SALT_SETTINGS = [None, "digest", "max", "auto", "auto-digestmax", "0", "20",
                 "-1", "-2", "-3"]


@pytest.mark.parametrize("digest", ["sha256", "sha512"])
@pytest.mark.parametrize("setting", SALT_SETTINGS,
                         ids=[s or "default" for s in SALT_SETTINGS])
@pytest.mark.parametrize("method", ["dgst", "rawin", "cms"])
def test_pss_salt_length_settings_verify_in_software(token, tmp_path, method,
                                                     setting, digest):
    version = openssl_version(tmp_path)
    env = token.fresh_env(tmp_path)
    msg = os.urandom(777)
    sig = pss_sign(token, env, tmp_path, method, digest, setting, msg)
    soft = u.default_only_env(tmp_path)
    pub = write_pub(token, tmp_path)
    data = tmp_path / "msg.bin"
    if method == "cms":
        # default provider alone; the salt length is read from the
        # signature's own RSASSA-PSS parameters
        p = u.openssl(soft, "cms", "-verify", "-noverify", "-binary",
                      "-inform", "DER", "-in", sig, "-content", data,
                      "-out", tmp_path / "out.bin", ok=False)
        assert p.returncode == 0 and "Verification successful" in p.stderr, \
            u.describe(p)
        want = expected_salt(version, digest, setting)
        assert cms_salt_length(soft, sig) == want
        raw = None
    else:
        opts = ["-sigopt", "rsa_padding_mode:pss"]
        if setting is not None:
            opts += ["-sigopt", f"rsa_pss_saltlen:{setting}"]
        p = u.openssl(soft, "dgst", f"-{digest}", "-verify", pub, *opts,
                      "-signature", sig, data, ok=False)
        assert p.returncode == 0 and "Verified OK" in p.stdout, u.describe(p)
        raw = sig.read_bytes()
    if raw is not None:
        # exactly the salt length this OpenSSL's own provider would use
        key = serialization.load_pem_public_key(pub.read_bytes())
        key.verify(raw, msg, padding.PSS(
            mgf=padding.MGF1(u.crypto_hash(digest)),
            salt_length=expected_salt(version, digest, setting)),
            u.crypto_hash(digest))


@pytest.mark.parametrize("setting", [None, "auto-digestmax", "digest"],
                         ids=["default", "auto-digestmax", "digest"])
def test_pss_default_salt_with_raw_rsa_only(token, make_config, tmp_path,
                                            setting):
    """The same on a token with raw RSA only: the EMSA-PSS encoding is
    done here, with the salt length the running OpenSSL would use."""
    faultmod = os.environ.get("P11BRIDGE_FAULTMOD")
    if not faultmod or not os.path.exists(faultmod):
        pytest.fail(f"P11BRIDGE_FAULTMOD={faultmod!r}: `make check` exports "
                    "the built fault-injection module", pytrace=False)
    version = openssl_version(tmp_path)
    env = make_config(token, pkcs11_module_path=faultmod)
    env.update(FAULTMOD_MODULE=token.module, FAULTMOD_ONLY_MECHS="",
               FAULTMOD_HIDE_MECHS="CKM_RSA_PKCS,CKM_RSA_PKCS_PSS",
               FAULTMOD_COUNT_FILE=str(tmp_path / "faultmod-calls.txt"))
    env = u.with_log(env, tmp_path / "raw.log")
    msg = os.urandom(300)
    sig = pss_sign(token, env, tmp_path, "dgst", "sha256", setting, msg)
    assert u.sign_inits(u.read_log(env)) == [("CKM_RSA_X_509", "CKR_OK")]
    pub = write_pub(token, tmp_path)
    key = serialization.load_pem_public_key(pub.read_bytes())
    key.verify(sig.read_bytes(), msg, padding.PSS(
        mgf=padding.MGF1(u.crypto_hash("sha256")),
        salt_length=expected_salt(version, "sha256", setting)),
        u.crypto_hash("sha256"))


# ---- deterministic ECDSA (nonce-type, OpenSSL 3.2+) -------------------------

@pytest.mark.parametrize("method", ["pkeyutl", "dgst"])
def test_deterministic_ecdsa_is_refused_clearly(token, tmp_path, method):
    """No PKCS#11 mechanism makes RFC 6979 nonces: nonce-type 1 fails with
    our reason on every version, rather than signing with a random nonce."""
    data = tmp_path / "msg.bin"
    data.write_bytes(os.urandom(100))
    tbs = tmp_path / "digest.bin"
    tbs.write_bytes(u.digest_of("sha256", data.read_bytes()))
    key = token.uri("p256", "private")
    if method == "pkeyutl":
        args = ["pkeyutl", "-sign", "-inkey", key, "-in", tbs,
                "-pkeyopt", "digest:sha256", "-pkeyopt", "nonce-type:1",
                "-out", tmp_path / "sig"]
    else:
        args = ["dgst", "-sha256", "-sign", key, "-sigopt", "nonce-type:1",
                "-out", tmp_path / "sig", data]
    p = token.ossl(*args, ok=False)
    assert p.returncode != 0, u.describe(p)
    assert "deterministic ECDSA (nonce-type 1, RFC 6979) is not available" \
        in p.stderr, u.describe(p)


def test_random_nonce_type_signs(token, tmp_path):
    """nonce-type 0 (random) is what the token does: it signs, and the
    default provider alone verifies."""
    data = tmp_path / "msg.bin"
    data.write_bytes(os.urandom(100))
    sig = tmp_path / "sig"
    token.ossl("dgst", "-sha256", "-sign", token.uri("p256", "private"),
               "-sigopt", "nonce-type:0", "-out", sig, data)
    pub = tmp_path / "p256.pem"
    pub.write_bytes(token.ossl("pkey", "-in", token.uri("p256", "private"),
                               "-pubout").stdout.encode())
    p = u.openssl(u.default_only_env(tmp_path), "dgst", "-sha256", "-verify",
                  pub, "-signature", sig, data, ok=False)
    assert p.returncode == 0 and "Verified OK" in p.stdout, u.describe(p)


# ---- PKCS#1 v1.5 decryption: implicit rejection (OpenSSL 3.2+) --------------

SOFT_RSA = "nopub-rsa"


@pytest.fixture
def soft_rsa(soft_key_token, make_config, tmp_path):
    """(token, software private key PEM, env for the token itself, env
    whose provider reaches it through faultmod with raw RSA only)."""
    faultmod = os.environ.get("P11BRIDGE_FAULTMOD")
    if not faultmod or not os.path.exists(faultmod):
        pytest.fail(f"P11BRIDGE_FAULTMOD={faultmod!r}: `make check` exports "
                    "the built fault-injection module", pytrace=False)
    tok = soft_key_token
    key = tok.private_keys[SOFT_RSA]
    pem = tmp_path / "soft.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    raw = make_config(tok, pkcs11_module_path=faultmod)
    raw["FAULTMOD_MODULE"] = tok.module
    raw["FAULTMOD_HIDE_MECHS"] = "CKM_RSA_PKCS,CKM_RSA_PKCS_OAEP"
    raw["FAULTMOD_ONLY_MECHS"] = ""
    raw["FAULTMOD_COUNT_FILE"] = str(tmp_path / "faultmod-calls.txt")
    return tok, key, pem, tok.fresh_env(tmp_path), u.with_log(
        raw, tmp_path / "raw.log")


def bad_ciphertext(key, seed):
    """A value below the modulus whose raw decryption is not a PKCS#1 v1.5
    block (checked with the software key)."""
    nums = key.private_numbers()
    k = (key.key_size + 7) // 8
    x = int.from_bytes(u.digest_of("sha512", seed) * 8, "big") % nums.public_numbers.n
    m = pow(x, nums.d, nums.public_numbers.n).to_bytes(k, "big")
    assert m[:2] != b"\x00\x02", "unlucky seed: valid padding"
    return x.to_bytes(k, "big")


def decrypt_with(env, tmp_path, keyarg, ct, opts=(), name="out"):
    ct_path, out = tmp_path / f"{name}.ct", tmp_path / f"{name}.bin"
    ct_path.write_bytes(ct)
    p = u.openssl(env, "pkeyutl", "-decrypt", "-inkey", keyarg, "-in",
                  ct_path, "-out", out, *opts, ok=False)
    return p, (out.read_bytes() if p.returncode == 0 else None)


def test_raw_rsa_pkcs1_decryption_follows_implicit_rejection(soft_rsa,
                                                             tmp_path):
    """Raw RSA only (padding removed here): a good ciphertext decrypts; a
    bad one does what the running OpenSSL's default provider does with the
    same key - an error on 3.0, a synthetic message on 3.2+ (deterministic,
    per ciphertext; its bytes differ from OpenSSL's, whose derivation key
    is the private exponent a token never reveals)."""
    tok, key, pem, _env, raw = soft_rsa
    version = openssl_version(tmp_path)
    soft = u.default_only_env(tmp_path)
    uri = tok.uri(SOFT_RSA, "private")
    k = (key.key_size + 7) // 8
    msg = os.urandom(32)
    good = key.public_key().encrypt(msg, padding.PKCS1v15())
    p, out = decrypt_with(raw, tmp_path, uri, good, name="good")
    assert out == msg, u.describe(p)
    bad1, bad2 = bad_ciphertext(key, b"one"), bad_ciphertext(key, b"two")
    sp, sout = decrypt_with(soft, tmp_path, pem, bad1, name="soft")
    p1, out1 = decrypt_with(raw, tmp_path, uri, bad1, name="bad1")
    assert (out1 is None) == (sout is None), \
        f"default provider: {u.describe(sp)}\nours: {u.describe(p1)}"
    log = u.read_log(raw)
    assert "CKM_RSA_X_509" in log and "C_DecryptInit(slot" in log
    assert "CKM_RSA_PKCS)" not in log, "the hidden mechanism was used"
    if version < (3, 2):
        assert out1 is None and "RSA decryption (PKCS#1 v1.5)" in p1.stderr, \
            u.describe(p1)
        return
    assert out1 is not None and len(out1) <= k - 11
    _, again = decrypt_with(raw, tmp_path, uri, bad1, name="again")
    _, out2 = decrypt_with(raw, tmp_path, uri, bad2, name="bad2")
    assert again == out1, "the synthetic message is not deterministic"
    assert out2 != out1, "two ciphertexts gave the same synthetic message"
    # turned off, as CMS does: the error of old, on both sides
    off = ["-pkeyopt", "rsa_pkcs1_implicit_rejection:0"]
    sp, sout = decrypt_with(soft, tmp_path, pem, bad1, off, name="soft0")
    p0, out0 = decrypt_with(raw, tmp_path, uri, bad1, off, name="off")
    assert sout is None and out0 is None, u.describe(p0)
    assert "RSA decryption (PKCS#1 v1.5)" in p0.stderr, u.describe(p0)
    p, out = decrypt_with(raw, tmp_path, uri, good, off, name="good0")
    assert out == msg, u.describe(p)


def test_token_pkcs1_decryption_matches_the_default_provider(soft_rsa,
                                                             tmp_path):
    """With CKM_RSA_PKCS the token removes the padding: for a bad
    ciphertext ours and the default provider (same key, in software) give
    the same outcome, and the same bytes when both succeed."""
    tok, key, pem, env, _raw = soft_rsa
    soft = u.default_only_env(tmp_path)
    uri = tok.uri(SOFT_RSA, "private")
    bad = bad_ciphertext(key, b"token")
    sp, sout = decrypt_with(soft, tmp_path, pem, bad, name="soft")
    p, out = decrypt_with(env, tmp_path, uri, bad, name="tok")
    assert out == sout, \
        f"default provider: {u.describe(sp)}\nours: {u.describe(p)}"



def test_implicit_rejection_off_is_an_error_even_if_the_token_rejects_implicitly(
        soft_rsa, tmp_path):
    """rsa_pkcs1_implicit_rejection:0 (what CMS sets on 3.2+): a bad
    ciphertext is an error, as with the default provider, even though
    SoftHSM linked to 3.2+ rejects implicitly in CKM_RSA_PKCS: the
    provider then checks the padding itself after raw RSA."""
    tok, key, pem, env, _raw = soft_rsa
    if openssl_version(tmp_path) < (3, 2):
        pytest.skip("implicit rejection (and turning it off) is OpenSSL "
                    "3.2+")
    soft = u.default_only_env(tmp_path)
    uri = tok.uri(SOFT_RSA, "private")
    off = ["-pkeyopt", "rsa_pkcs1_implicit_rejection:0"]
    bad = bad_ciphertext(key, b"cms")
    sp, sout = decrypt_with(soft, tmp_path, pem, bad, off, name="soft")
    p, out = decrypt_with(env, tmp_path, uri, bad, off, name="tok")
    assert sout is None, u.describe(sp)
    assert out is None and "RSA decryption (PKCS#1 v1.5)" in p.stderr, \
        u.describe(p)
    msg = os.urandom(24)
    good = key.public_key().encrypt(msg, padding.PKCS1v15())
    p, out = decrypt_with(env, tmp_path, uri, good, off, name="good")
    assert out == msg, u.describe(p)

# ---- the message-signing API with composite names (OpenSSL 3.4+) -------------

COMPOSITES = [("RSA-SHA256", "rsa2048", "sha256"),
              ("RSA-SHA2-512", "rsa3072", "sha512"),
              ("ECDSA-SHA256", "p256", "sha256"),
              ("ECDSA-SHA384", "p384", "sha384")]


def sigmsg_tool():
    tool = os.path.join(os.environ.get("P11BRIDGE_TOOLS", ""), "p11b-sigmsg")
    if not os.path.exists(tool):
        pytest.fail(f"{tool}: build it (`make check` builds "
                    "tests/tools/p11b-sigmsg)", pytrace=False)
    return tool


@pytest.mark.parametrize("mode", ["stream", "oneshot", "digest"])
@pytest.mark.parametrize("alg, label, digest", COMPOSITES,
                         ids=[c[0] for c in COMPOSITES])
def test_composite_message_signature_verifies_in_software(token, tmp_path,
                                                          alg, label,
                                                          digest, mode):
    if openssl_version(tmp_path) < (3, 4):
        pytest.skip("EVP_PKEY_sign_message_init and composite signature "
                    "names are OpenSSL 3.4+")
    env = token.fresh_env(tmp_path)
    msg = tmp_path / "msg.bin"
    msg.write_bytes(os.urandom(5000))
    tbs = tmp_path / "tbs.bin"
    tbs.write_bytes(u.digest_of(digest, msg.read_bytes())
                    if mode == "digest" else msg.read_bytes())
    sig = tmp_path / "sig.bin"
    p = u.run([sigmsg_tool(), alg, token.uri(label, "private"), str(tbs),
               str(sig), mode], env, ok=False)
    if p.returncode == 77:
        pytest.fail(f"p11b-sigmsg was built without the 3.4 API but runs "
                    f"under 3.4+: {p.stdout}")
    assert p.returncode == 0, u.describe(p)
    inits = u.sign_inits(u.read_log(env))
    assert len(inits) == 1 and inits[0][1] == "CKR_OK", inits
    pub = tmp_path / "pub.pem"
    pub.write_bytes(token.ossl("pkey", "-in", token.uri(label, "private"),
                               "-pubout").stdout.encode())
    v = u.openssl(u.default_only_env(tmp_path), "dgst", f"-{digest}",
                  "-verify", pub, "-signature", sig, msg, ok=False)
    assert v.returncode == 0 and "Verified OK" in v.stdout, u.describe(v)


def test_composite_names_are_listed_where_openssl_has_them(token, tmp_path):
    """openssl list: the composites are ours on 3.4+ only."""
    out = token.ossl("list", "-signature-algorithms").stdout
    ours = [line for line in out.splitlines() if line.endswith("@ pkcs11")]
    have = any("RSA-SHA2-256" in line for line in ours) and \
        any("ECDSA-SHA2-256" in line for line in ours)
    assert have == (openssl_version(tmp_path) >= (3, 4)), "\n".join(ours)
    assert any("ECDSA" in line and "SHA" not in line for line in ours)


# ---- a provider built with newer headers than the running libcrypto ---------

def test_provider_built_for_a_newer_openssl_fails_cleanly(tmp_path):
    """P11BRIDGE_NEWER_PROVIDER: a pkcs11.so built with the headers of a
    newer OpenSSL than the one running (e.g. 3.5's headers, this host's
    3.0 libcrypto; docs/DESIGN.md says how). Loading it must fail with our
    message, not crash or half-work."""
    so = os.environ.get("P11BRIDGE_NEWER_PROVIDER")
    if not so:
        pytest.skip("P11BRIDGE_NEWER_PROVIDER is not set: no provider built "
                    "with newer OpenSSL headers to load")
    env = u.default_only_env(tmp_path)
    p = u.openssl(env, "list", "-providers", "-provider-path",
                  os.path.dirname(so), "-provider", "pkcs11", ok=False)
    assert p.returncode == 1, u.describe(p)
    assert "p11bridge was built for OpenSSL 3." in p.stderr, u.describe(p)
    assert "rebuild p11bridge against it" in p.stderr, u.describe(p)
