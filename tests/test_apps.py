"""openssl applications signing with token keys.

The key is a pkcs11: URI everywhere (req -key, x509 -CAkey, ca -keyfile,
cms -inkey, dgst -sign, pkeyutl -inkey); every result is then checked by
OpenSSL with only its default provider (OPENSSL_CONF is an empty file) and
by python3-cryptography: certificates, CSRs, CMS signatures, raw
signatures.
"""

import os
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

import p11b_util as u

CA_KEYS = ["p256", "rsa2048"]
# the signature algorithm each CA key makes with -sha384 / the default
CA_DIGEST = {"p256": "sha384", "rsa2048": "sha256"}
CA_SIG_OID = {"p256": SignatureAlgorithmOID.ECDSA_WITH_SHA384,
              "rsa2048": SignatureAlgorithmOID.RSA_WITH_SHA256}

OID_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
HASH_OIDS = {"1.3.14.3.2.26": "sha1",
             "2.16.840.1.101.3.4.2.4": "sha224",
             "2.16.840.1.101.3.4.2.1": "sha256",
             "2.16.840.1.101.3.4.2.2": "sha384",
             "2.16.840.1.101.3.4.2.3": "sha512"}


# ---- helpers ----------------------------------------------------------------

def default_openssl(tmp_path, *args, ok=True):
    """openssl with the default provider only: the independent check."""
    return u.openssl(u.default_only_env(tmp_path), *args, ok=ok)


def load_cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def spki(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def software_key(tmp_path, name="leaf", curve=ec.SECP256R1):
    key = ec.generate_private_key(curve())
    path = tmp_path / f"{name}.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return key, path


def pss_parameters(der):
    """(hash, MGF1 hash, salt length) of the RSASSA-PSS AlgorithmIdentifier
    of a certificate's signature, read from its DER by our own code."""
    _, body, _ = u.der_read(der)
    _tbs, (atag, alg), _sig = u.der_children(body)
    assert atag == 0x30
    fields = u.der_children(alg)
    assert u.oid_to_str(fields[0][1]) == OID_PSS, "not an RSASSA-PSS cert"
    hash_name, mgf_hash, salt = "sha1", "sha1", 20  # RFC 4055 defaults
    for tag, value in u.der_children(fields[1][1]):
        if tag == 0xA0:      # [0] hashAlgorithm
            (_, h), = u.der_children(value)
            hash_name = HASH_OIDS[u.oid_to_str(u.der_children(h)[0][1])]
        elif tag == 0xA1:    # [1] maskGenAlgorithm
            (_, m), = u.der_children(value)
            (_, mgf_oid), (_, mgf_hash_alg) = u.der_children(m)
            assert u.oid_to_str(mgf_oid) == OID_MGF1
            mgf_hash = HASH_OIDS[u.oid_to_str(
                u.der_children(mgf_hash_alg)[0][1])]
        elif tag == 0xA2:    # [2] saltLength
            (_, n), = u.der_children(value)
            salt = int.from_bytes(n, "big")
    return hash_name, mgf_hash, salt


def verify_signed_by(signed, issuer_public):
    """cryptography's check of a certificate's or CSR's signature."""
    data = signed.tbs_certificate_bytes if isinstance(
        signed, x509.Certificate) else signed.tbs_certrequest_bytes
    if signed.signature_algorithm_oid.dotted_string == OID_PSS:
        h, m, salt = pss_parameters(signed.public_bytes(
            serialization.Encoding.DER))
        issuer_public.verify(signed.signature, data,
                             padding.PSS(mgf=padding.MGF1(u.crypto_hash(m)),
                                         salt_length=salt),
                             u.crypto_hash(h))
    elif isinstance(issuer_public, ec.EllipticCurvePublicKey):
        issuer_public.verify(signed.signature, data,
                             ec.ECDSA(signed.signature_hash_algorithm))
    else:
        issuer_public.verify(signed.signature, data, padding.PKCS1v15(),
                             signed.signature_hash_algorithm)


def token_public(token, label):
    return serialization.load_der_public_key(token.keys[label].spki)


def make_ca(token, tmp_path, label, extra=()):
    """A self-signed CA certificate whose key is the token key `label`."""
    ca = tmp_path / f"ca-{label}.pem"
    token.ossl("req", "-new", "-x509", "-key", token.uri(label, "private"),
               f"-{CA_DIGEST[label]}", "-days", "2",
               "-subj", f"/O=p11bridge tests/CN=token CA {label}",
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign,cRLSign",
               *extra, "-out", ca)
    return ca


def assert_chain_ok(tmp_path, ca, cert):
    """`openssl verify` without our provider accepts cert under ca."""
    p = default_openssl(tmp_path, "verify", "-CAfile", ca, cert, ok=False)
    assert p.returncode == 0 and p.stdout.strip() == f"{cert}: OK", \
        u.describe(p)


def software_csr(tmp_path, name="leaf", cn="p11b leaf"):
    key, key_path = software_key(tmp_path, name)
    csr = tmp_path / f"{name}.csr"
    default_openssl(tmp_path, "req", "-new", "-key", key_path,
                    "-subj", f"/O=p11bridge tests/CN={cn}", "-out", csr)
    return key, csr


# ---- certificates -----------------------------------------------------------

@pytest.mark.parametrize("label", CA_KEYS)
def test_req_x509_makes_a_self_signed_ca(token, tmp_path, label):
    ca = make_ca(token, tmp_path, label)
    cert = load_cert(ca)
    assert spki(cert.public_key()) == token.keys[label].spki
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0] \
        .value == f"token CA {label}"
    assert cert.signature_algorithm_oid == CA_SIG_OID[label]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    verify_signed_by(cert, token_public(token, label))
    assert_chain_ok(tmp_path, ca, ca)


@pytest.mark.parametrize("label", ["rsa2048", "p384", "nopub-ec"])
def test_req_signs_a_csr_with_a_token_key(token, tmp_path, label):
    csr_path = tmp_path / "token.csr"
    token.ossl("req", "-new", "-key", token.uri(label, "private"),
               "-subj", "/O=p11bridge tests/CN=token csr", "-out", csr_path)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert spki(csr.public_key()) == token.keys[label].spki
    assert csr.is_signature_valid
    verify_signed_by(csr, token_public(token, label))
    p = default_openssl(tmp_path, "req", "-verify", "-noout",
                        "-in", csr_path)
    assert "self-signature verify OK" in p.stdout + p.stderr, u.describe(p)


@pytest.mark.parametrize("label", CA_KEYS)
def test_x509_req_issues_a_leaf_with_the_token_ca_key(token, tmp_path,
                                                      label):
    ca = make_ca(token, tmp_path, label)
    leaf_key, csr = software_csr(tmp_path)
    leaf = tmp_path / "leaf.pem"
    ext = tmp_path / "ext.cnf"
    ext.write_text("basicConstraints=critical,CA:FALSE\n"
                   "subjectAltName=DNS:leaf.example\n")
    token.ossl("x509", "-req", "-in", csr, "-CA", ca,
               "-CAkey", token.uri(label, "private"), "-set_serial", "4660",
               "-days", "1", "-sha512", "-extfile", ext, "-out", leaf)
    cert = load_cert(leaf)
    assert cert.serial_number == 4660
    assert cert.issuer == load_cert(ca).subject
    assert spki(cert.public_key()) == spki(leaf_key.public_key())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA512)
    verify_signed_by(cert, token_public(token, label))
    assert_chain_ok(tmp_path, ca, leaf)


@pytest.mark.parametrize("label", CA_KEYS)
def test_openssl_ca_signs_with_a_token_keyfile(token, tmp_path, label):
    ca = make_ca(token, tmp_path, label)
    _, csr = software_csr(tmp_path, cn="p11b ca-issued")
    d = tmp_path / "ca"
    (d / "newcerts").mkdir(parents=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1A2B\n")
    cnf = tmp_path / "ca.cnf"
    cnf.write_text(f"""[ca]
default_ca = token_ca
[token_ca]
dir = {d}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = {ca}
default_md = sha256
default_days = 1
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
organizationName = optional
""")
    out = tmp_path / "issued.pem"
    token.ossl("ca", "-batch", "-config", cnf,
               "-keyfile", token.uri(label, "private"),
               "-in", csr, "-out", out)
    cert = load_cert(out)
    assert cert.serial_number == 0x1A2B
    assert cert.issuer == load_cert(ca).subject
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    verify_signed_by(cert, token_public(token, label))
    assert_chain_ok(tmp_path, ca, out)
    index = (d / "index.txt").read_text()
    assert re.search(r"^V\t\S+\t\t1A2B\t", index, re.M), index


PSS_CASES = [("sha256", "32", 32), ("sha384", "digest", 48),
             ("sha512", "max", 256 - 64 - 2)]


@pytest.mark.parametrize("digest, setting, salt", PSS_CASES,
                         ids=[f"{d}-salt-{s}" for d, s, _ in PSS_CASES])
def test_rsa_pss_signed_certificates(token, tmp_path, digest, setting,
                                     salt):
    """Self-signed (req -x509) and issued (x509 -req -CAkey) certificates
    signed with RSASSA-PSS by the token's rsa2048."""
    sigopts = ["-sigopt", "rsa_padding_mode:pss",
               "-sigopt", f"rsa_pss_saltlen:{setting}"]
    ca = tmp_path / "pss-ca.pem"
    token.ossl("req", "-new", "-x509", "-key",
               token.uri("rsa2048", "private"),
               f"-{digest}", *sigopts, "-days", "1",
               "-subj", "/O=p11bridge tests/CN=PSS CA",
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign",
               "-out", ca)
    _, csr = software_csr(tmp_path)
    leaf = tmp_path / "leaf.pem"
    token.ossl("x509", "-req", "-in", csr, "-CA", ca,
               "-CAkey", token.uri("rsa2048", "private"),
               "-set_serial", "77", f"-{digest}", *sigopts, "-days", "1",
               "-out", leaf)
    pub = token_public(token, "rsa2048")
    for path in (ca, leaf):
        cert = load_cert(path)
        assert cert.signature_algorithm_oid.dotted_string == OID_PSS
        der = cert.public_bytes(serialization.Encoding.DER)
        assert pss_parameters(der) == (digest, digest, salt)
        verify_signed_by(cert, pub)
    assert_chain_ok(tmp_path, ca, ca)
    assert_chain_ok(tmp_path, ca, leaf)


# ---- CMS --------------------------------------------------------------------

CMS_CASES = [("rsa2048", "p256", []),
             ("rsa2048", "p256", ["-keyopt", "rsa_padding_mode:pss"]),
             ("p256", "rsa2048", [])]


@pytest.mark.parametrize("signer, ca_label, keyopts", CMS_CASES,
                         ids=["rsa-pkcs1", "rsa-pss", "ecdsa"])
def test_cms_signature_with_a_token_key(token, tmp_path, signer, ca_label,
                                        keyopts):
    ca = make_ca(token, tmp_path, ca_label)
    csr = tmp_path / "signer.csr"
    token.ossl("req", "-new", "-key", token.uri(signer, "private"),
               "-subj", "/O=p11bridge tests/CN=p11b CMS signer",
               "-out", csr)
    ext = tmp_path / "ext.cnf"
    ext.write_text("keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=emailProtection\n")
    cert = tmp_path / "signer.pem"
    token.ossl("x509", "-req", "-in", csr, "-CA", ca,
               "-CAkey", token.uri(ca_label, "private"), "-set_serial", "9",
               "-days", "1", "-extfile", ext, "-out", cert)
    data = tmp_path / "data.txt"
    data.write_bytes(os.urandom(16).hex().encode() + b"\nsigned on a token\n")
    sig = tmp_path / "data.p7s"
    token.ossl("cms", "-sign", "-binary", "-signer", cert,
               "-inkey", token.uri(signer, "private"), *keyopts,
               "-in", data, "-outform", "DER", "-out", sig)
    out = tmp_path / "verified.txt"
    p = default_openssl(tmp_path, "cms", "-verify", "-binary",
                        "-CAfile", ca, "-inform", "DER", "-in", sig,
                        "-content", data, "-out", out, ok=False)
    assert p.returncode == 0, u.describe(p)
    assert "Verification successful" in p.stderr, u.describe(p)
    assert out.read_bytes() == data.read_bytes()
    if keyopts:
        printed = default_openssl(tmp_path, "cms", "-cmsout", "-print",
                                  "-inform", "DER", "-in", sig).stdout
        assert "rsassaPss" in printed, printed
    # the same signature over other content is rejected
    other = tmp_path / "other.txt"
    other.write_bytes(data.read_bytes() + b"x")
    p = default_openssl(tmp_path, "cms", "-verify", "-binary",
                        "-CAfile", ca, "-inform", "DER", "-in", sig,
                        "-content", other, "-out", tmp_path / "o", ok=False)
    assert p.returncode != 0 and "Verification failure" in p.stderr, \
        u.describe(p)


# ---- dgst and pkeyutl round trips -------------------------------------------

ROUND_TRIP_KEYS = ["rsa2048", "rsa4096", "p256", "p521"]


def write_pubkey(token, tmp_path, label):
    pem = tmp_path / f"{label}.pub.pem"
    token.ossl("pkey", "-in", token.uri(label, "private"), "-pubout",
               "-out", pem)
    assert u.normalize_spki(pem.read_bytes()) == token.keys[label].spki
    return pem


@pytest.mark.parametrize("label", ROUND_TRIP_KEYS)
def test_dgst_sign_and_verify_round_trip(token, tmp_path, label):
    msg, other = tmp_path / "msg.bin", tmp_path / "other.bin"
    msg.write_bytes(os.urandom(5000))
    other.write_bytes(msg.read_bytes()[:-1])
    sig = tmp_path / "sig.bin"
    uri = token.uri(label, "private")
    token.ossl("dgst", "-sha384", "-sign", uri, "-out", sig, msg)
    pem = write_pubkey(token, tmp_path, label)
    for who, key, run in (
            ("provider", uri,
             lambda *a: token.ossl(*a, ok=False)),
            ("default provider", pem,
             lambda *a: default_openssl(tmp_path, *a, ok=False))):
        p = run("dgst", "-sha384", "-verify", key, "-signature", sig, msg)
        assert p.returncode == 0 and p.stdout.strip() == "Verified OK", \
            f"{who}:\n{u.describe(p)}"
        p = run("dgst", "-sha384", "-verify", key, "-signature", sig, other)
        assert p.returncode == 1 and "Verification failure" in p.stdout, \
            f"{who}:\n{u.describe(p)}"
    pub = serialization.load_pem_public_key(pem.read_bytes())
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(sig.read_bytes(), msg.read_bytes(), padding.PKCS1v15(),
                   hashes.SHA384())
    else:
        pub.verify(sig.read_bytes(), msg.read_bytes(),
                   ec.ECDSA(hashes.SHA384()))


@pytest.mark.parametrize("rawin", [False, True], ids=["digest", "rawin"])
@pytest.mark.parametrize("label", ROUND_TRIP_KEYS)
def test_pkeyutl_sign_and_verify_round_trip(token, tmp_path, label, rawin):
    msg = os.urandom(48 if not rawin else 3000)
    data = tmp_path / "in.bin"
    if rawin:
        data.write_bytes(msg)
        mode = ["-rawin", "-digest", "sha256"]
    else:
        data.write_bytes(u.digest_of("sha256", msg))
        mode = ["-pkeyopt", "digest:sha256"]
    sig = tmp_path / "sig.bin"
    uri = token.uri(label, "private")
    token.ossl("pkeyutl", "-sign", "-inkey", uri, *mode, "-in", data,
               "-out", sig)
    pem = write_pubkey(token, tmp_path, label)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(u.flip_byte(sig.read_bytes(), -1))
    for who, keyargs, run in (
            ("provider", ["-inkey", uri],
             lambda *a: token.ossl(*a, ok=False)),
            ("default provider", ["-pubin", "-inkey", pem],
             lambda *a: default_openssl(tmp_path, *a, ok=False))):
        p = run("pkeyutl", "-verify", *keyargs, *mode, "-in", data,
                "-sigfile", sig)
        assert p.returncode == 0 and \
            p.stdout.strip() == "Signature Verified Successfully", \
            f"{who}:\n{u.describe(p)}"
        p = run("pkeyutl", "-verify", *keyargs, *mode, "-in", data,
                "-sigfile", bad)
        assert p.returncode == 1 and \
            "Signature Verification Failure" in p.stdout, \
            f"{who}:\n{u.describe(p)}"
    pub = serialization.load_pem_public_key(pem.read_bytes())
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(sig.read_bytes(), msg, padding.PKCS1v15(),
                   hashes.SHA256())
    else:
        pub.verify(sig.read_bytes(), msg, ec.ECDSA(hashes.SHA256()))
