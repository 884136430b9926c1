"""Key management: what a token key says about itself, and key/cert matching.

s_server is started with a certificate and a token key. OpenSSL 3.0
refuses a mismatching pair in SSL_CTX_use_PrivateKey ("key values
mismatch" / "key type mismatch", after "error setting private key") before
its own "does not match" check can run, so any of those texts is accepted.
The server is never waited on with sleep: its stdout is read line by line
until "ACCEPT" or EOF, with a deadline.
"""

import re
import subprocess

import pytest

import p11b_util as u

KEY_BITS = [("rsa2048", 2048), ("rsa3072", 3072), ("rsa4096", 4096),
            ("p256", 256), ("p384", 384), ("p521", 521),
            ("nopub-rsa", 2048), ("nopub-ec", 256)]
PUBLIC_BITS = KEY_BITS[:6]


def check_text(token, out, label, bits, type):
    assert re.search(rf"(?<!\d){bits}[ -]?bits?\b", out), \
        f"{label}: no '{bits} bit' in:\n{out}"
    uris = u.uris_in(out)
    assert len(uris) == 1, f"{label}: expected one URI line in:\n{out}"
    attrs = u.parse_uri(uris[0])
    assert attrs.get("object") == label.encode()
    assert attrs.get("type") == type.encode()
    assert attrs.get("token") == token.label.encode()


@pytest.mark.parametrize("label, bits", KEY_BITS, ids=[k for k, _ in KEY_BITS])
def test_private_key_text_shows_bits_and_uri(token, ossl, label, bits):
    p = ossl("pkey", "-in", token.uri(label, "private"), "-text", "-noout")
    check_text(token, p.stdout, label, bits, "private")


@pytest.mark.parametrize("label, bits", PUBLIC_BITS,
                         ids=[k for k, _ in PUBLIC_BITS])
def test_public_key_text_shows_bits_and_uri(token, ossl, label, bits):
    p = ossl("pkey", "-pubin", "-in", token.uri(label, "public"), "-text",
             "-noout")
    check_text(token, p.stdout, label, bits, "public")


MISMATCH = ("does not match", "key values mismatch", "key type mismatch")


def s_server(token, tmp_path, cert_label, key_label, timeout=120):
    """Start s_server; (saw ACCEPT, returncode or None, stdout, stderr)."""
    err_path = tmp_path / "s_server.err"
    argv = [u.OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1",
            "-cert", str(token.certs[cert_label].pem_path),
            "-key", token.uri(key_label, "private")]
    u.USED_LOGS.add(u.log_path(token.env))
    with open(err_path, "w") as err:
        proc = subprocess.Popen(argv, env=token.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
    reader = u.LineReader(proc.stdout)
    try:
        line = reader.wait_for(r"^ACCEPT", timeout)
        if line is not None:
            proc.terminate()  # we saw what we came for
            rc = None
        else:
            rc = proc.wait(timeout=timeout)
            assert rc >= 0, f"s_server killed by signal {-rc}"
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                u.kill_group(proc)
                proc.wait()
        reader.close()
        proc.stdout.close()
    stdout = "\n".join(reader.lines)
    stderr = err_path.read_text(errors="backslashreplace")
    u.check_no_secret(stdout, "s_server stdout")
    u.check_no_secret(stderr, "s_server stderr")
    return line is not None, rc, stdout, stderr


@pytest.mark.parametrize("cert_label, key_label", [
    ("rsa2048", "rsa2048"),
    ("p256", "p256"),
    ("nopub-ec", "nopub-ec"),  # public half known only through the cert
])
def test_s_server_starts_with_the_matching_key(token, tmp_path, cert_label,
                                               key_label):
    accepted, rc, out, err = s_server(token, tmp_path, cert_label, key_label)
    assert accepted, f"no ACCEPT (exit {rc})\n{out}\n{err}"


@pytest.mark.parametrize("cert_label, key_label", [
    ("rsa2048", "rsa3072"),
    ("rsa2048", "nopub-rsa"),
    ("p256", "p384"),
    ("nopub-ec", "p256"),
    ("p256", "rsa2048"),
])
def test_s_server_refuses_a_key_of_another_certificate(token, tmp_path,
                                                       cert_label,
                                                       key_label):
    accepted, rc, out, err = s_server(token, tmp_path, cert_label, key_label)
    assert not accepted, f"s_server started with {key_label}'s key and " \
                         f"{cert_label}'s certificate"
    assert rc != 0
    assert any(m in err for m in MISMATCH), err


# ---- a key the token restricts to PSS (issue 11, item 7) ---------------------

OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
CHECK_PAIR = """
import sys
from OpenSSL import SSL
ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
ctx.use_certificate_file(sys.argv[1])
ctx.use_privatekey_file(sys.argv[2])
ctx.check_privatekey()
print("pair ok")
"""



@pytest.mark.parametrize("maker", ["pkcs11-tool", "genpkey"])
def test_i11_07_pss_restricted_public_half(scratch_token, tmp_path, maker):
    """Both halves of an RSA key pair the token restricts to PSS load as
    one type, and a certificate made from either half matches the private
    key (OpenSSL compares key types before values: a mixed pair never
    matches). pkcs11-tool restricts the private object only: the pair is
    plain RSA (PSS-only on the token), so an rsaEncryption certificate,
    the usual one, matches. Our genpkey -algorithm RSA-PSS restricts both
    halves: the pair is RSA-PSS from either."""
    tok = scratch_token
    if maker == "pkcs11-tool":
        tok.tool("--keypairgen", "--key-type", "rsa:2048", "--label",
                 "pss7", "--id", "77", "--allowed-mechanisms",
                 "RSA-PKCS-PSS,SHA256-RSA-PKCS-PSS")
        # pkcs11-tool 0.23 and 0.26 restrict the private object only: the
        # pair is plain RSA; 0.27 restricts the public one too: RSA-PSS.
        listing = tok.tool("--list-objects", "--type", "pubkey").stdout
        block = listing[listing.index("label:      pss7"):]
        block = block.split("Public Key Object", 1)[0]
        oid = OID_RSASSA_PSS if "Allowed mechanisms: RSA-PKCS-PSS" in block \
            else u.OID_RSA
    else:
        uri = u.make_uri(token=tok.label, object="pss7", id="77")
        tok.ossl("genpkey", "-propquery", "provider=pkcs11", "-algorithm",
                 "RSA-PSS", "-pkeyopt", "bits:2048", "-pkeyopt",
                 f"pkcs11_uri:{uri}", "-out", tmp_path / "gen.pem")
        oid = OID_RSASSA_PSS
    priv, pub = tok.uri("pss7", "private"), tok.uri("pss7", "public")
    from_priv = u.spki_der_from_pem(
        tok.ossl("pkey", "-in", priv, "-pubout").stdout)
    from_pub = u.spki_der_from_pem(
        tok.ossl("pkey", "-pubin", "-in", pub, "-pubout").stdout)
    assert u.spki_algorithm(from_priv)[0] == oid
    assert from_pub == from_priv, "the two halves load as different types"

    # Certificates from the private half (req -x509) and from the public
    # object (x509 -new -force_pubkey), signed with PSS: both carry that
    # public key, and both match the key in SSL_CTX_check_private_key.
    key_pem = tmp_path / "key.pem"
    tok.ossl("pkey", "-in", priv, "-out", key_pem)
    pss = ["-sigopt", "rsa_padding_mode:pss"]
    certs = {"req": tmp_path / "req.crt", "x509": tmp_path / "x509.crt"}
    tok.ossl("req", "-new", "-x509", "-key", priv, "-subj", "/CN=pss7",
             "-days", "1", *pss, "-out", certs["req"])
    tok.ossl("x509", "-new", "-subj", "/CN=pss7-pub", "-key", priv,
             "-force_pubkey", pub, "-days", "1", *pss, "-out", certs["x509"])
    for name, cert in certs.items():
        in_cert = u.spki_der_from_pem(
            tok.ossl("x509", "-in", cert, "-noout", "-pubkey").stdout)
        assert in_cert == from_priv, f"{name}: certificate key differs"
        p = tok.run(["/usr/bin/python3", "-c", CHECK_PAIR, cert, key_pem])
        assert p.stdout.strip() == "pair ok", u.describe(p)
