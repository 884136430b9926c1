"""The same checks on every real PKCS#11 token we can run (issue #13).

One rig per token from tests/tokens (SoftHSM, p11-kit proxy, p11-kit
client -> server, NSS softokn, openCryptoki, tpm2-pkcs11, OpenSC over a
virtual CAC card), built once per session. Every check runs the real openssl binary with the provider and
verifies the result with independent code (python cryptography or the
default provider). A check the token cannot do is skipped with the
token's reason; a token that cannot be set up here is skipped with why.

P11BRIDGE_TOKENS=softhsm,nss limits the run to some tokens.
scripts/compat.sh runs this module and writes docs/COMPATIBILITY.md.
"""

import json
import os
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u
import tokens

NAMES = [n for n in tokens.SETUPS
         if n in os.environ.get("P11BRIDGE_TOKENS", n).split(",")]
RIGS = {}
TIMES = {}


@pytest.fixture(scope="session")
def rigs(tmp_path_factory, provider_path):
    yield RIGS
    report = {}
    for name, rig in RIGS.items():
        if isinstance(rig, (tokens.Unavailable, SetupFailed)):
            report[name] = {"title": tokens.TITLES[name],
                            "unavailable": str(rig)}
            continue
        rig.close()
        report[name] = {
            "title": rig.title, "module": rig.module,
            "setup_seconds": round(rig.setup_seconds, 2),
            "cannot": rig.cannot,
            "versions": {p: tokens.package_version(p) for p in rig.packages},
        }
    # scripts/compat.sh reads this next to pytest's junit xml
    out = os.environ.get("P11BRIDGE_MATRIX_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)


def get_rig(name, rigs, tmp_path_factory, provider_path):
    if name not in rigs:
        root = tmp_path_factory.mktemp(f"tok-{name}")
        t0 = time.monotonic()
        try:
            rig = tokens.SETUPS[name](root)
        except tokens.Unavailable as e:
            rigs[name] = e
        except Exception as e:  # a broken setup fails every check, once
            rigs[name] = SetupFailed(f"setting up token {name} failed: {e}")
        else:
            rig.write_provider_conf(provider_path, root / "p11bridge.log")
            rig.setup_seconds = time.monotonic() - t0
            rigs[name] = rig
    rig = rigs[name]
    if isinstance(rig, tokens.Unavailable):
        pytest.skip(f"token {name} not available here: {rig}")
    if isinstance(rig, SetupFailed):
        pytest.fail(str(rig), pytrace=False)
    return rig


class SetupFailed(Exception):
    """A token's setup failed: its checks fail at once with this, instead
    of each trying (and timing out) again."""


@pytest.fixture(params=NAMES)
def rig(request, rigs, tmp_path_factory, provider_path):
    return get_rig(request.param, rigs, tmp_path_factory, provider_path)


def need(rig, check, key=None):
    # P11BRIDGE_MATRIX_ALL=1 runs the checks a token is declared to lack:
    # how a declaration is confirmed to still be needed.
    if check in rig.cannot and not os.environ.get("P11BRIDGE_MATRIX_ALL"):
        pytest.skip(rig.cannot[check])
    if key is not None and key not in rig.keys:
        pytest.skip(f"token lacks {key.upper()} keys")


def public_key(rig, kind):
    return serialization.load_der_public_key(rig.export_public(kind))


def key_uri(rig, kind, type="private"):
    return rig.uri(kind, type)


# ---- the checks -------------------------------------------------------------

def test_list(rig):
    """openssl storeutl lists the token's keys by label."""
    need(rig, "list")
    out = rig.ossl("storeutl", "-keys", "-text", "-noout", rig.uri()).stdout
    ids = [u.parse_uri(x).get("id") for x in u.uris_in(out)]
    for kind, kid in rig.keys.items():
        assert bytes.fromhex(kid) in ids, f"{kind} key not listed:\n{out}"


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_pubkey_match(rig, kind):
    """The provider's public key is the one the token's own tool exports."""
    need(rig, "pubkey-match", kind)
    pem = rig.ossl("pkey", "-pubin", "-in", key_uri(rig, kind, "public"),
                   "-pubout").stdout
    ours = serialization.load_pem_public_key(pem.encode())
    theirs = public_key(rig, kind)
    fmt = (serialization.Encoding.DER,
           serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ours.public_bytes(*fmt) == theirs.public_bytes(*fmt)


def self_signed(rig, kind, tmp_path, extra=()):
    cert = tmp_path / f"{kind}.crt"
    rig.ossl("req", "-x509", "-new", "-key", key_uri(rig, kind), "-subj",
             "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
             "-days", "2", "-sha256", *extra, "-out", cert)
    return cert


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_cert(rig, kind, tmp_path):
    """req -x509 signs a certificate; its signature verifies in software."""
    need(rig, "cert", kind)
    cert = x509.load_pem_x509_certificate(
        self_signed(rig, kind, tmp_path).read_bytes())
    pub = public_key(rig, kind)
    assert cert.public_key().public_numbers() == pub.public_numbers()
    if kind == "rsa":
        pub.verify(cert.signature, cert.tbs_certificate_bytes,
                   padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        pub.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))


@pytest.mark.parametrize("salt", ["digest", "max", "default"])
def test_rsa_pss(rig, salt, tmp_path):
    """RSA-PSS (SHA-256) verifies in software with the salt length asked
    for: the digest's, the maximum (which a TPM refuses on the token: the
    provider then pads in software), or OpenSSL's default for dgst: the
    maximum on 3.0, "auto-digestmax" (the digest's length) from 3.1 on."""
    need(rig, "rsa-pss", "rsa")
    msg, sig = tmp_path / "msg", tmp_path / "sig"
    msg.write_bytes(os.urandom(1000))
    opts = ["-sigopt", "rsa_padding_mode:pss"]
    if salt != "default":
        opts += ["-sigopt", f"rsa_pss_saltlen:{salt}"]
    rig.ossl("dgst", "-sha256", "-sign", key_uri(rig, "rsa"), *opts,
             "-out", sig, msg)
    pub = public_key(rig, "rsa")
    # the maximum for a k-byte modulus: k - hLen - 2 (explicit: a verifier
    # given MAX_LENGTH would accept any salt length)
    largest = (pub.key_size + 7) // 8 - 32 - 2
    if salt == "default":
        salt = "max" if u.openssl_version() < (3, 1, 0) else "digest"
    length = 32 if salt == "digest" else largest
    pub.verify(
        sig.read_bytes(), msg.read_bytes(),
        padding.PSS(padding.MGF1(hashes.SHA256()), length), hashes.SHA256())


def test_ecdsa(rig, tmp_path):
    need(rig, "ecdsa", "ec")
    msg, sig = tmp_path / "msg", tmp_path / "sig"
    msg.write_bytes(os.urandom(1000))
    rig.ossl("dgst", "-sha256", "-sign", key_uri(rig, "ec"), "-out", sig, msg)
    public_key(rig, "ec").verify(sig.read_bytes(), msg.read_bytes(),
                                 ec.ECDSA(hashes.SHA256()))


DECRYPT = {
    "pkcs1": ([], lambda: padding.PKCS1v15()),
    "oaep-sha1": (["rsa_padding_mode:oaep"],
                  lambda: padding.OAEP(padding.MGF1(hashes.SHA1()),
                                       hashes.SHA1(), None)),
    "oaep-sha256": (["rsa_padding_mode:oaep", "rsa_oaep_md:sha256",
                     "rsa_mgf1_md:sha256"],
                    lambda: padding.OAEP(padding.MGF1(hashes.SHA256()),
                                         hashes.SHA256(), None)),
}


@pytest.mark.parametrize("pad", sorted(DECRYPT))
def test_decrypt(rig, pad, tmp_path):
    """Encrypted in software, decrypted on the token."""
    need(rig, f"decrypt-{pad}", "rsa")
    opts, pad_of = DECRYPT[pad]
    secret = os.urandom(32)
    ct = tmp_path / "ct"
    ct.write_bytes(public_key(rig, "rsa").encrypt(secret, pad_of()))
    out = tmp_path / "pt"
    args = []
    for o in opts:
        args += ["-pkeyopt", o]
    rig.ossl("pkeyutl", "-decrypt", "-inkey", key_uri(rig, "rsa"), *args,
             "-in", ct, "-out", out)
    assert out.read_bytes() == secret


def test_ecdh(rig, tmp_path):
    """ECDH with a software peer: the same secret as cryptography's."""
    need(rig, "ecdh", "ec")
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_pem = tmp_path / "peer.pem"
    peer_pem.write_bytes(peer.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    out = tmp_path / "z"
    rig.ossl("pkeyutl", "-derive", "-inkey", key_uri(rig, "ec"), "-peerkey",
             peer_pem, "-out", out)
    assert out.read_bytes() == peer.exchange(ec.ECDH(), public_key(rig, "ec"))


@pytest.mark.parametrize("version", ["tls13", "tls12"])
def test_tls(rig, version, tmp_path):
    """s_server with the token's RSA key; s_client verifies the chain."""
    need(rig, version, "rsa")
    cert = self_signed(rig, "rsa", tmp_path)
    flag = "-tls1_3" if version == "tls13" else "-tls1_2"
    srv = u.SServer(rig.provider_env(), cert, key_uri(rig, "rsa"), tmp_path, cert,
                    prefix=rig.prefix, extra=[flag])
    try:
        p = u.run(rig.prefix + [u.OPENSSL, "s_client", "-connect",
                                f"127.0.0.1:{srv.port}", flag, "-CAfile",
                                cert, "-verify_return_error", "-brief"],
                  u.base_env(), input="Q\n", timeout=60)
    finally:
        err = srv.stop()
    text = p.stdout + p.stderr
    want = "TLSv1.3" if version == "tls13" else "TLSv1.2"
    assert f"Protocol version: {want}" in text, text + err
    assert "Verification: OK" in text, text + err


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_genpkey(rig, kind, tmp_path):
    """genpkey makes a key pair on the token; it signs, verified outside."""
    need(rig, f"genpkey-{kind}")
    label = f"gen{kind}{os.getpid() % 1000}{int(time.time() * 1000) % 100000}"
    uri = u.make_uri(token=rig.label, object=label,
                     id="4b" + label.encode().hex())
    alg = (["-algorithm", "RSA", "-pkeyopt", "bits:2048"] if kind == "rsa"
           else ["-algorithm", "EC", "-pkeyopt", "group:P-256"])
    out = tmp_path / "gen.pem"
    rig.ossl("genpkey", "-propquery", "provider=pkcs11", *alg, "-pkeyopt",
             f"pkcs11_uri:{uri}", "-out", out)
    msg, sig = tmp_path / "msg", tmp_path / "sig"
    msg.write_bytes(os.urandom(100))
    priv = rig.uri(label, "private")
    rig.ossl("dgst", "-sha256", "-sign", priv, "-out", sig, msg)
    pem = rig.ossl("pkey", "-pubin", "-in", rig.uri(label, "public"),
                   "-pubout").stdout
    pub = serialization.load_pem_public_key(pem.encode())
    if kind == "rsa":
        pub.verify(sig.read_bytes(), msg.read_bytes(), padding.PKCS1v15(),
                   hashes.SHA256())
    else:
        pub.verify(sig.read_bytes(), msg.read_bytes(),
                   ec.ECDSA(hashes.SHA256()))
