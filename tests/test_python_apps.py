"""pyOpenSSL and Python's ssl module with token keys, and no PKCS#11 code.

The Python programs are the recipes of docs/HOWTO.md (u.recipe), run by
/usr/bin/python3 in a child process whose environment loads the provider
(OPENSSL_CONF, SOFTHSM2_CONF, and LD_PRELOAD of libasan for sanitizer
builds: u.provider_env via the token's env). The key they read is the
PEM-wrapped URI file that the wrap-key recipe writes. The checks run here,
in software: cryptography verifies the certificate pyOpenSSL signed, and
this process's own ssl module, which has no provider, is the TLS client.
The debug log must show the child process signing on the token.
"""

import shutil
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

import p11b_util as u

PYTHON = "/usr/bin/python3"  # Debian's python3-openssl lives there


def wrap_key(tok, directory, label, filename="server-key.pem", env=None):
    """The wrap-key recipe for token key `label`, written to filename."""
    subs = u.recipe_subs(directory, tok, {"server-key": label})
    subs["server-key.pem"] = filename
    u.run_shell_recipe("wrap-key", subs, env or tok.fresh_env(directory))
    return directory / filename


def python_recipe(name, directory, port=None):
    """Write recipe `name` (Python) to directory; the script's path."""
    subs = u.recipe_subs(directory, port=port)
    script = directory / f"{name}.py"
    script.write_text(u.recipe(name, subs))
    return script


def token_signs(env, pid):
    """[(mechanism, rv)] of the C_SignInit calls process pid logged."""
    return u.sign_inits("\n".join(u.log_lines_of(u.read_log(env), pid)))


def verify_signature(cert, issuer_public):
    if isinstance(issuer_public, rsa.RSAPublicKey):
        issuer_public.verify(cert.signature, cert.tbs_certificate_bytes,
                             padding.PKCS1v15(),
                             cert.signature_hash_algorithm)
    else:
        issuer_public.verify(cert.signature, cert.tbs_certificate_bytes,
                             ec.ECDSA(cert.signature_hash_algorithm))


# ---- pyOpenSSL signs a certificate ------------------------------------------

@pytest.mark.parametrize("label, mechanism", [("p256", "CKM_ECDSA"),
                                              ("rsa2048", "CKM_RSA_PKCS")])
def test_pyopenssl_signs_a_certificate_with_a_token_ca_key(token, tmp_path,
                                                           label, mechanism):
    env = token.fresh_env(tmp_path, level=2)
    wrap_key(token, tmp_path, label, "ca-key.pem", env)
    token.ossl("req", "-new", "-x509", "-key", token.uri(label, "private"),
               "-subj", f"/O=p11bridge tests/CN=pyOpenSSL CA {label}",
               "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign",
               "-out", tmp_path / "ca.crt", env=env)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "leaf.pub.pem").write_bytes(leaf_key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))

    script = python_recipe("pyopenssl-sign", tmp_path)
    p = u.run([PYTHON, script], env, ok=False)
    assert p.returncode == 0, u.describe(p)
    assert p.stdout.strip() == "issued leaf signed on the token", p.stdout

    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    leaf = x509.load_pem_x509_certificate(
        (tmp_path / "leaf.crt").read_bytes())
    ca_public = serialization.load_der_public_key(token.keys[label].spki)
    verify_signature(leaf, ca_public)   # raises if the signature is bad
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert leaf.issuer == ca.subject and leaf.serial_number == 0x5A17
    assert leaf.public_key().public_numbers() == \
        leaf_key.public_key().public_numbers()
    check = u.openssl(u.default_only_env(tmp_path), "verify", "-CAfile",
                      tmp_path / "ca.crt", tmp_path / "leaf.crt", ok=False)
    assert check.returncode == 0 and check.stdout.strip().endswith(": OK"), \
        u.describe(check)
    assert token_signs(env, p.pid) == [(mechanism, "CKR_OK")], \
        f"python (pid {p.pid}) should sign once on the token:\n" \
        f"{u.read_log(env)}"


# ---- TLS servers in Python --------------------------------------------------

def serve_one(tok, tls_ca, tmp_path, label, recipe_name):
    """Run a Python server recipe with token key `label`; connect with this
    process's ssl; (what the server sent, the client's TLS version, the
    server's pid, its env)."""
    shutil.copy(tls_ca.pem, tmp_path / "ca.crt")
    tls_ca.issue(tok.keys[label].spki, f"p11b-py-{label}",
                 tmp_path / "server.crt")
    env = tok.fresh_env(tmp_path, level=2)
    wrap_key(tok, tmp_path, label, env=env)
    script = python_recipe(recipe_name, tmp_path, port=0)
    server = u.Server([PYTHON, script], env, tmp_path, recipe_name,
                      pipe_stdout=True)
    with server:
        line = server.wait_line(r"^listening on port \d+$")
        port = int(line.split()[-1])
        client = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            with client.wrap_socket(s, server_hostname="localhost") as tls:
                version = tls.version()
                peer = tls.getpeercert()
                data = b""
                while chunk := tls.recv(4096):
                    data += chunk
        rc = server.wait_exit()
    assert rc == 0, server.output()
    assert dict(x[0] for x in peer["subject"])["commonName"] == \
        f"p11b-py-{label}"
    return data.decode(), version, server.pid, env


@pytest.mark.parametrize("label, mechanism", [("rsa2048", "CKM_RSA_PKCS_PSS"),
                                              ("p384", "CKM_ECDSA")])
def test_pyopenssl_serves_tls_with_use_privatekey_file(token, tls_ca,
                                                       tmp_path, label,
                                                       mechanism):
    data, version, pid, env = serve_one(token, tls_ca, tmp_path, label,
                                        "pyopenssl-server")
    assert version == "TLSv1.3"
    assert data == "served by pyOpenSSL over TLSv1.3\n"
    assert token_signs(env, pid) == [(mechanism, "CKR_OK")], u.read_log(env)


@pytest.mark.parametrize("label, mechanism", [("p256", "CKM_ECDSA"),
                                              ("rsa2048", "CKM_RSA_PKCS_PSS")])
def test_python_ssl_serves_tls_with_load_cert_chain(token, tls_ca, tmp_path,
                                                    label, mechanism):
    data, version, pid, env = serve_one(token, tls_ca, tmp_path, label,
                                        "python-ssl-server")
    assert version == "TLSv1.3"
    assert data == "served by Python ssl over TLSv1.3\n"
    assert token_signs(env, pid) == [(mechanism, "CKR_OK")], u.read_log(env)


# ---- the one-liner ----------------------------------------------------------

LOAD_SCRIPT = """
import sys
from OpenSSL import crypto
with open(sys.argv[1], "rb") as f:
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
sys.stdout.write(crypto.dump_publickey(crypto.FILETYPE_PEM, key).decode())
"""


def test_wrap_key_oneliner_makes_a_file_programs_load(token, tmp_path):
    """The one-liner (no provider, no token needed) writes the same
    structure as the provider's encoder; pyOpenSSL loads the token key
    from either file."""
    subs = u.recipe_subs(tmp_path, token, {"server-key": "p256"})
    uri = token.uri("p256", "private")
    u.run_shell_recipe("wrap-key-oneliner", subs,
                       u.default_only_env(tmp_path))
    made = (tmp_path / "server-key.pem").read_text()
    (tmp_path / "oneliner.pem").write_text(made)
    wrap_key(token, tmp_path, "p256")  # the provider's encoder

    def body(name):
        blocks = u.pem_blocks((tmp_path / name).read_text(),
                              "PKCS#11 PROVIDER URI")
        assert len(blocks) == 1, (tmp_path / name).read_text()
        tag, content, end = u.der_read(blocks[0])
        assert tag == 0x30 and end == len(blocks[0])
        return u.der_children(content)

    (dt, desc), (ut, got_uri) = body("oneliner.pem")
    (edt, edesc), (eut, _) = body("server-key.pem")
    assert (dt, ut) == (edt, eut) == (0x1A, 0x0C)
    assert desc == edesc == b"PKCS#11 Provider URI v1.0"
    assert got_uri.decode() == uri

    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    for name in ("oneliner.pem", "server-key.pem"):
        p = u.run([PYTHON, script, tmp_path / name],
                  token.fresh_env(tmp_path), ok=False)
        assert p.returncode == 0, u.describe(p)
        assert u.normalize_spki(p.stdout.encode()) == \
            token.keys["p256"].spki, name

