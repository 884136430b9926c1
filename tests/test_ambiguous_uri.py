"""A URI that matches several keys never silently gives one of them.

Where one key is wanted, an ambiguous URI is refused with an error that
says how many keys matched and how to narrow the URI (issue #11 item 3):

- the PEM-wrapped URI decoder (PEM_read_bio_PrivateKey: nginx, Python,
  curl) refuses at once: that path never lists;
- the OSSL_STORE loader cannot tell `openssl pkey -in URI` from `openssl
  storeutl -keys URI` when it hands out the first key (both set the same
  expectation and load the same way). It tells them apart when the store
  is closed: a caller that took a key and left the others unread gets a
  key that refuses every use, with the error; a caller that read them all
  (a listing) has keys that work.

A URI that matches one private key with its public key and certificate
is not ambiguous.
"""

import base64
import json
import sys

import pytest

import p11b_util as u

MANY = "matches 2 keys"

# In a child: open the store (no expectation, like Apache's mod_ssl), take
# the first private key, close the store, then sign with the key.
FIRST_KEY_SCRIPT = r"""
import ctypes, json, os, sys
L = ctypes.CDLL("libcrypto.so.3")
vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
for name, res, args in [
    ("OPENSSL_init_crypto", ctypes.c_int, [ctypes.c_uint64, vp]),
    ("OSSL_STORE_open_ex", vp, [cp, vp, cp, vp, vp, vp, vp, vp]),
    ("OSSL_STORE_load", vp, [vp]), ("OSSL_STORE_eof", ctypes.c_int, [vp]),
    ("OSSL_STORE_close", ctypes.c_int, [vp]),
    ("OSSL_STORE_INFO_get_type", ctypes.c_int, [vp]),
    ("OSSL_STORE_INFO_get1_PKEY", vp, [vp]),
    ("OSSL_STORE_INFO_free", None, [vp]),
    ("EVP_MD_CTX_new", vp, []),
    ("EVP_DigestSignInit_ex", ctypes.c_int, [vp, vp, cp, vp, cp, vp, vp]),
    ("EVP_DigestSign", ctypes.c_int, [vp, vp, ctypes.POINTER(sz), cp, sz]),
    ("ERR_get_error_all", ctypes.c_ulong, [ctypes.POINTER(cp),
        ctypes.POINTER(ctypes.c_int), ctypes.POINTER(cp),
        ctypes.POINTER(cp), ctypes.POINTER(ctypes.c_int)]),
    ("ERR_reason_error_string", cp, [ctypes.c_ulong])]:
    getattr(L, name).restype = res
    getattr(L, name).argtypes = args

def drain():
    out = []
    while True:
        f, l, fn, d, fl = cp(), ctypes.c_int(), cp(), cp(), ctypes.c_int()
        e = L.ERR_get_error_all(ctypes.byref(f), ctypes.byref(l),
                                ctypes.byref(fn), ctypes.byref(d),
                                ctypes.byref(fl))
        if not e:
            return out
        why = L.ERR_reason_error_string(e) or b""
        out.append(why.decode() + ": " + (d.value or b"").decode())

assert L.OPENSSL_init_crypto(0x40, None) == 1
drain()
store = L.OSSL_STORE_open_ex(sys.argv[1].encode(), None, None, None, None,
                             None, None, None)
pkey = None
while store and not pkey and not L.OSSL_STORE_eof(store):
    info = L.OSSL_STORE_load(store)
    if info and L.OSSL_STORE_INFO_get_type(info) == 4:
        pkey = L.OSSL_STORE_INFO_get1_PKEY(info)
    if info:
        L.OSSL_STORE_INFO_free(info)
if store:
    L.OSSL_STORE_close(store)
drain()
md = L.EVP_MD_CTX_new()
siglen = sz(1024)
sig = ctypes.create_string_buffer(1024)
msg = b"which key signs this?"
ok = bool(pkey) and L.EVP_DigestSignInit_ex(md, None, b"SHA256", None,
                                            None, pkey, None) == 1 and \
    L.EVP_DigestSign(md, sig, ctypes.byref(siglen), msg, len(msg)) == 1
print(json.dumps({"loaded": bool(pkey), "signed": bool(ok),
                  "errors": drain()}))
"""


def first_key_then_sign(env, uri):
    p = u.run([sys.executable, "-c", FIRST_KEY_SCRIPT, uri], env)
    return json.loads(p.stdout.strip().splitlines()[-1])


# In a child: PEM_read_bio_PrivateKey on a file, as nginx and Python do.
PEM_READ_SCRIPT = r"""
import ctypes, json, sys
L = ctypes.CDLL("libcrypto.so.3")
vp, cp = ctypes.c_void_p, ctypes.c_char_p
L.OPENSSL_init_crypto.argtypes = [ctypes.c_uint64, vp]
L.BIO_new_file.restype = vp
L.BIO_new_file.argtypes = [cp, cp]
L.PEM_read_bio_PrivateKey.restype = vp
L.PEM_read_bio_PrivateKey.argtypes = [vp, vp, vp, vp]
L.ERR_get_error_all.restype = ctypes.c_ulong
L.ERR_get_error_all.argtypes = [ctypes.POINTER(cp),
    ctypes.POINTER(ctypes.c_int), ctypes.POINTER(cp), ctypes.POINTER(cp),
    ctypes.POINTER(ctypes.c_int)]
assert L.OPENSSL_init_crypto(0x40, None) == 1
bio = L.BIO_new_file(sys.argv[1].encode(), b"r")
key = L.PEM_read_bio_PrivateKey(bio, None, None, None)
data = []
while True:
    f, l, fn, d, fl = cp(), ctypes.c_int(), cp(), cp(), ctypes.c_int()
    if not L.ERR_get_error_all(ctypes.byref(f), ctypes.byref(l),
                               ctypes.byref(fn), ctypes.byref(d),
                               ctypes.byref(fl)):
        break
    data.append((d.value or b"").decode())
print(json.dumps({"key": bool(key), "errors": data}))
"""


@pytest.fixture
def dup_token(scratch_token):
    """The scratch token plus two P-256 key pairs labelled "dup"."""
    for kid in ("0a", "0b"):
        scratch_token.tool("--keypairgen", "--key-type", "EC:prime256v1",
                           "--label", "dup", "--id", kid)
    return scratch_token


def tlv(tag, content):
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + length + content


def pem_wrapped(path, uri):
    der = tlv(0x30, tlv(0x1A, b"PKCS#11 Provider URI v1.0") +
              tlv(0x0C, uri.encode()))
    path.write_text("-----BEGIN PKCS#11 PROVIDER URI-----\n" +
                    base64.encodebytes(der).decode() +
                    "-----END PKCS#11 PROVIDER URI-----\n")
    return path


def test_i11_03_ambiguous_uri_refused_for_one_key(dup_token, tmp_path):
    tok = dup_token
    env = tok.fresh_env(tmp_path)
    dup = tok.uri("dup")
    # openssl pkey/pkeyutl take the first key and close the store.
    p = tok.ossl("pkey", "-in", dup, "-pubout", env=env, ok=False)
    assert p.returncode != 0 and "BEGIN PUBLIC KEY" not in p.stdout
    assert MANY in p.stderr and "id=" in p.stderr, p.stderr
    msg = tmp_path / "msg"
    msg.write_bytes(b"m")
    p = tok.ossl("pkeyutl", "-sign", "-rawin", "-digest", "sha256",
                 "-inkey", dup, "-in", msg, "-out", tmp_path / "sig",
                 env=env, ok=False)
    assert p.returncode != 0 and MANY in p.stderr, p.stderr
    # Bare pkcs11: on a token of four key pairs.
    p = tok.ossl("pkey", "-in", "pkcs11:", "-pubout", env=env, ok=False)
    assert p.returncode != 0 and "matches 4 keys" in p.stderr, p.stderr
    # An application's own loop: first private key, close, sign.
    res = first_key_then_sign(env, dup)
    assert res["loaded"] and not res["signed"], res
    assert any(MANY in e for e in res["errors"]), res
    # The PEM-wrapped URI, read as nginx and Python read key files.
    pem = pem_wrapped(tmp_path / "dup.pem", dup)
    p = u.run([sys.executable, "-c", PEM_READ_SCRIPT, pem], env)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert not res["key"], res
    assert any("matches 2 private keys" in e and "id=" in e
               for e in res["errors"]), res


def test_i11_03_listings_still_list_every_key(dup_token, tmp_path):
    tok = dup_token
    env = tok.fresh_env(tmp_path)
    p = tok.ossl("storeutl", "-keys", tok.uri("dup"), env=env)
    items, total = u.store_items(p.stdout)
    assert [k for _, k in items] == ["Pkey", "Pkey"] and total == 2
    p = tok.ossl("storeutl", "-keys", "-text", "-noout", "pkcs11:", env=env)
    items, total = u.store_items(p.stdout)
    assert total == 4 and p.stdout.count("private key on a PKCS#11") == 4
    ids = sorted(u.parse_uri(x)["id"].hex() for x in u.uris_in(p.stdout))
    assert ids == sorted(["0a", "0b", tok.keys["rsa2048"].id,
                          tok.keys["p256"].id])


def test_i11_03_one_key_with_its_companions_is_not_ambiguous(
        dup_token, token, tmp_path):
    tok = dup_token
    env = tok.fresh_env(tmp_path)
    # Narrowed by id: one key; it signs, and the signature verifies in
    # software with the public key pkcs11-tool exported.
    narrowed = u.make_uri(token=tok.label, object="dup", id="0b")
    res = first_key_then_sign(env, narrowed)
    assert res["loaded"] and res["signed"], res
    p = tok.ossl("pkey", "-in", narrowed, "-pubout", env=env)
    spki = u.normalize_spki(p.stdout.encode())
    exported = tok.tool("--read-object", "--type", "pubkey", "--id", "0b",
                        "--output-file", tmp_path / "pub.der")
    assert exported.returncode == 0
    assert spki == u.normalize_spki((tmp_path / "pub.der").read_bytes())
    # A private key, its public key and its certificate under one URI.
    shared_env = token.fresh_env(tmp_path / "shared")
    uri = token.uri("rsa2048")
    res = first_key_then_sign(shared_env, uri)
    assert res["loaded"] and res["signed"], res
    p = token.ossl("pkey", "-in", uri, "-pubout", env=shared_env)
    assert u.normalize_spki(p.stdout.encode()) == token.keys["rsa2048"].spki
    pem = pem_wrapped(tmp_path / "one.pem", uri)
    p = u.run([sys.executable, "-c", PEM_READ_SCRIPT, pem], shared_env)
    assert json.loads(p.stdout.strip().splitlines()[-1])["key"]
