"""Key generation on the token through OpenSSL.

`openssl genpkey -propquery provider=pkcs11 -algorithm ... -pkeyopt
pkcs11_uri:'pkcs11:...'` makes the key pair with C_GenerateKeyPair: the
private half sensitive and never extractable, both halves with the same
CKA_ID and label, and writes the PEM-wrapped URI instead of key material.
Each key is then used to sign, and the signature is verified in software
from the public key pkcs11-tool exports (independent code).
"""

import re

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding

import p11b_util as u
from p11b_tokens import export_pubkey

GEN = {
    "rsa": (["-algorithm", "RSA", "-pkeyopt", "bits:2048"], "CKM_RSA_PKCS_KEY_PAIR_GEN"),
    "rsa-pss": (["-algorithm", "RSA-PSS", "-pkeyopt", "bits:2048"],
                "CKM_RSA_PKCS_KEY_PAIR_GEN"),
    "p256": (["-algorithm", "EC", "-pkeyopt", "group:P-256"], "CKM_EC_KEY_PAIR_GEN"),
    "p384": (["-algorithm", "EC", "-pkeyopt", "group:secp384r1"], "CKM_EC_KEY_PAIR_GEN"),
    "ed25519": (["-algorithm", "ED25519"], "CKM_EC_EDWARDS_KEY_PAIR_GEN"),
}


def objects_of(tok, label):
    """pkcs11-tool's view of the objects with this label: [(kind, text)]."""
    out = tok.tool("--list-objects").stdout
    blocks = re.split(r"\n(?=\S)", out)
    return [(b.split()[0], b) for b in blocks
            if re.search(rf"label:\s+{re.escape(label)}\s*$", b, re.M)]


def genpkey(tok, env, tmp_path, name, label, extra=()):
    out = tmp_path / f"{label}.pem"
    args, _ = GEN[name]
    uri = u.make_uri(token=tok.label, object=label, id="4b" + label.encode().hex())
    p = tok.ossl("genpkey", "-propquery", "provider=pkcs11", *args,
                 "-pkeyopt", f"pkcs11_uri:{uri}", *extra, "-out", out, env=env)
    return p, out


@pytest.mark.parametrize("name", sorted(GEN))
def test_genpkey_makes_a_non_extractable_key_pair(scratch_token, tmp_path, name):
    tok = scratch_token
    env = tok.fresh_env(tmp_path, level=2)
    label = f"gen-{name}"
    _, out = genpkey(tok, env, tmp_path, name, label)

    # The file is the PEM-wrapped URI of the new key, no key material.
    text = out.read_text()
    assert "-----BEGIN PKCS#11 PROVIDER URI-----" in text
    assert "PRIVATE KEY" not in text
    log = u.read_log(env)
    assert f"C_GenerateKeyPair(slot" in log and GEN[name][1] in log, log[-2000:]

    objs = objects_of(tok, label)
    kinds = sorted(k for k, _ in objs)
    assert kinds == ["Private", "Public"], objs
    # pkcs11-tool 0.27 prints the ID with colons ("4b:67:..."), 0.23 and
    # 0.26 without; the bytes are what is compared.
    ids = {tool_id_hex(re.search(r"ID:\s+(.*?)\s*$", t, re.M).group(1))
           for _, t in objs}
    assert ids == {"4b" + label.encode().hex()}, objs
    priv = next(t for k, t in objs if k == "Private")
    assert "never extractable" in priv and "sensitive" in priv, priv

    # The key works through the provider (the wrapped file and the URI),
    # and its signature verifies in software.
    msg = tmp_path / "msg"
    msg.write_bytes(b"generated on the token\n" * 50)
    sig = tmp_path / "sig"
    if name == "ed25519":
        tok.ossl("pkeyutl", "-sign", "-rawin", "-inkey",
                 tok.uri(label, "private"), "-in", msg, "-out", sig, env=env)
    else:
        tok.ossl("dgst", "-sha256", "-sign", tok.uri(label, "private"),
                 "-out", sig, msg, env=env)
    # The public key as the token gives it to another tool (conftest's
    # exporter: pkcs11-tool, or p11tool where pkcs11-tool cannot).
    spec = type("Spec", (), {"label": label,
                             "id": "4b" + label.encode().hex()})
    spki, _ = export_pubkey(tok, spec)
    pub = serialization.load_der_public_key(spki)
    data, signature = msg.read_bytes(), sig.read_bytes()
    if name == "ed25519":
        assert isinstance(pub, ed25519.Ed25519PublicKey)
        pub.verify(signature, data)
    elif name.startswith("p"):
        pub.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif name == "rsa-pss":
        # An RSA-PSS key signs PSS by default, salt "auto" = the longest.
        pub.verify(signature, data,
                   padding.PSS(padding.MGF1(hashes.SHA256()),
                               padding.PSS.MAX_LENGTH),
                   hashes.SHA256())
    else:
        pub.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("name", ["rsa-pss", "p256"])
def test_new_key_is_built_from_the_generated_handles(scratch_token, tmp_path,
                                                     name):
    """The key genpkey hands back is made from the two objects
    C_GenerateKeyPair returned: no search of the token after it (a search
    could find another key of the same name)."""
    tok = scratch_token
    env = tok.fresh_env(tmp_path, level=2)
    _, out = genpkey(tok, env, tmp_path, name, f"handles-{name}")
    assert "-----BEGIN PKCS#11 PROVIDER URI-----" in out.read_text()
    log = u.read_log(env)
    before, sep, after = log.partition("C_GenerateKeyPair(slot")
    assert sep and "C_FindObjectsInit(" in before, log[-3000:]
    assert "C_GetAttributeValue" in after, after[-3000:]
    assert "C_FindObjectsInit(" not in after, after[-3000:]


def test_generated_key_file_loads_in_pyopenssl(scratch_token, tmp_path):
    tok = scratch_token
    _, out = genpkey(tok, tok.env, tmp_path, "p256", "gen-py")
    script = ("import sys\nfrom OpenSSL import crypto\n"
              "k = crypto.load_privatekey(crypto.FILETYPE_PEM,"
              " open(sys.argv[1], 'rb').read())\nprint(k.bits())\n")
    p = tok.run(["/usr/bin/python3", "-c", script, str(out)])
    assert p.stdout.strip() == "256"


def test_same_name_twice_is_refused(scratch_token, tmp_path):
    tok = scratch_token
    genpkey(tok, tok.env, tmp_path, "p256", "gen-dup")
    args, _ = GEN["p256"]
    uri = u.make_uri(token=tok.label, object="gen-dup")
    p = tok.ossl("genpkey", "-propquery", "provider=pkcs11", *args,
                 "-pkeyopt", f"pkcs11_uri:{uri}", ok=False)
    assert p.returncode == 1
    assert "a key with this label (CKA_LABEL) is already on the token" in p.stderr
    assert len([k for k, _ in objects_of(tok, "gen-dup") if k == "Private"]) == 1


@pytest.mark.parametrize("pkeyopts, reason", [
    ([], "key generation needs -pkeyopt pkcs11_uri"),
    (["-pkeyopt", "pkcs11_uri:pkcs11:token=p11b-scratch"],
     "must name the new key"),
    (["-pkeyopt", "pkcs11_uri:pkcs11:token=no-such-token;object=x"],
     "no token matches the pkcs11 URI"),
    (["-pkeyopt", "pkcs11_uri:pkcs11:object=x;object=y"], "given twice"),
    (["-pkeyopt", "pkcs11_uri:pkcs11:object=x", "-pkeyopt",
      "pkcs11_key_usage:sign,fly"], "unknown usage 'fly'"),
])
def test_bad_generation_request_is_a_clear_error(scratch_token, pkeyopts,
                                                 reason):
    p = scratch_token.ossl("genpkey", "-propquery", "provider=pkcs11",
                           "-algorithm", "EC", "-pkeyopt", "group:P-256",
                           *pkeyopts, ok=False)
    assert p.returncode == 1, u.describe(p)
    assert reason in p.stderr, p.stderr


def tool_id_hex(text):
    """An ID as pkcs11-tool prints it, in hex: 0.23 and 0.26 print "4b67",
    0.27 prints "4b:67" and a short id as a number with its hex ("1
    (0x01)")."""
    m = re.search(r"\(0x([0-9a-fA-F]+)\)", text)
    return (m.group(1) if m else text.strip()).replace(":", "").lower()


def private_keys_with_id(tok, kid):
    """How many private keys pkcs11-tool lists with this id (hex)."""
    out = tok.tool("--list-objects", "--type", "privkey").stdout
    ids = re.findall(r"ID:\s+(.*?)\s*$", out, re.M)
    return sum(1 for i in ids if tool_id_hex(i) == kid)


@pytest.mark.parametrize("uri_attrs, names", [
    ({"object": "fresh-label", "id": "01"}, "id (CKA_ID)"),
    ({"object": "p256", "id": "9911"}, "label (CKA_LABEL)"),
    ({"id": "04"}, "id (CKA_ID)"),
    ({"object": "rsa2048"}, "label (CKA_LABEL)"),
], ids=["id-of-rsa2048", "label-of-p256", "id-only", "label-only"])
def test_i11_04_keygen_refuses_existing_id(scratch_token, tmp_path,
                                           uri_attrs, names):
    """An id or a label already in use by a key is refused, each on its
    own (scratch_token holds rsa2048 with id 01 and p256 with id 04), and
    the error names the attribute; no key is made."""
    tok = scratch_token
    before = tok.tool("--list-objects").stdout
    uri = u.make_uri(token=tok.label, **uri_attrs)
    env = tok.fresh_env(tmp_path, level=2)
    p = tok.ossl("genpkey", "-propquery", "provider=pkcs11", "-algorithm",
                 "EC", "-pkeyopt", "group:P-256", "-pkeyopt",
                 f"pkcs11_uri:{uri}", "-out", tmp_path / "k.pem", env=env,
                 ok=False)
    assert p.returncode == 1, u.describe(p)
    assert f"a key with this {names} is already on the token" in p.stderr, \
        u.describe(p)
    assert "C_GenerateKeyPair" not in u.read_log(env)
    assert tok.tool("--list-objects").stdout == before
    assert private_keys_with_id(tok, "01") == 1

