"""PEM-wrapped URI files as other tools write them.

The format (label `PKCS#11 PROVIDER URI`, DER SEQUENCE { VisibleString,
UTF8String }) is shared between providers, and the DER is written by
hand in several of them: some use BER long-form lengths (0x82 0x00 0x2a,
or always four length octets). Those files must load; indefinite lengths
and lengths past the end must not. A file naming a public key must be
found by `openssl storeutl`, which asks the decoders for anything.
Every public key read is compared with the one pkcs11-tool exported
(independent code).
"""

import base64

import pytest

import p11b_util as u

DESC = b"PKCS#11 Provider URI v1.0"


def tlv(tag, content, octets):
    """A TLV; octets=0: the DER length, else that many long-form octets."""
    n = len(content)
    if octets == 0:
        if n < 0x80:
            length = bytes([n])
        else:
            size = (n.bit_length() + 7) // 8
            length = bytes([0x80 | size]) + n.to_bytes(size, "big")
    else:
        length = bytes([0x80 | octets]) + n.to_bytes(octets, "big")
    return bytes([tag]) + length + content


def wrap(uri, octets=0, inner=None):
    inner = octets if inner is None else inner
    body = tlv(0x1A, DESC, inner) + tlv(0x0C, uri.encode(), inner)
    return pem(tlv(0x30, body, octets))


def pem(der):
    b64 = base64.encodebytes(der).decode()
    return ("-----BEGIN PKCS#11 PROVIDER URI-----\n" + b64 +
            "-----END PKCS#11 PROVIDER URI-----\n")


def pubkey_pem(tok, env, path, pubin=False):
    args = ["pkey", "-in", path, "-pubout"]
    if pubin:
        args.insert(1, "-pubin")
    return tok.ossl(*args, env=env).stdout


@pytest.mark.parametrize("octets, inner", [(1, 1), (2, 2), (4, 4), (4, 0),
                                           (0, 3)],
                         ids=["81", "82", "84", "84-outer", "83-inner"])
def test_i11_10_pem_uri_long_form_length(scratch_token, tmp_path, octets,
                                         inner):
    tok = scratch_token
    env = tok.fresh_env(tmp_path)
    path = tmp_path / "key.pem"
    path.write_text(wrap(tok.uri("p256", "private"), octets, inner))
    got = pubkey_pem(tok, env, path)
    assert u.normalize_spki(got.encode()) == tok.keys["p256"].spki
    # The key signs: a private key, not only its public half.
    msg = tmp_path / "msg"
    msg.write_bytes(b"long-form lengths")
    sig = tmp_path / "sig"
    tok.ossl("pkeyutl", "-sign", "-rawin", "-digest", "sha256", "-inkey",
             path, "-in", msg, "-out", sig, env=env)
    pub = tmp_path / "pub.pem"
    pub.write_text(got)
    u.openssl(u.default_only_env(tmp_path), "pkeyutl", "-verify", "-rawin",
              "-digest", "sha256", "-pubin", "-inkey", pub, "-in", msg,
              "-sigfile", sig)


@pytest.mark.parametrize("der", [
    # indefinite length on the SEQUENCE, with its end-of-contents octets
    bytes([0x30, 0x80]) + tlv(0x1A, DESC, 0) + tlv(0x0C, b"pkcs11:", 0)
    + b"\0\0",
    # a long-form length that runs past the end of the data
    bytes([0x30, 0x84, 0, 0, 1, 0]) + tlv(0x1A, DESC, 0)
    + tlv(0x0C, b"pkcs11:", 0),
    # five length octets
    bytes([0x30, 0x85, 0, 0, 0, 0, 2 + len(DESC) + 9]) + tlv(0x1A, DESC, 0)
    + tlv(0x0C, b"pkcs11:", 0),
    # a trailing byte after the SEQUENCE
    tlv(0x30, tlv(0x1A, DESC, 2) + tlv(0x0C, b"pkcs11:", 2), 2) + b"\0",
], ids=["indefinite", "past-the-end", "five-octets", "trailing"])
def test_i11_10_pem_uri_bad_lengths_still_refused(scratch_token, tmp_path,
                                                  der):
    tok = scratch_token
    env = tok.fresh_env(tmp_path)
    path = tmp_path / "key.pem"
    path.write_text(pem(der))
    p = tok.ossl("pkey", "-in", path, "-pubout", env=env, ok=False)
    assert p.returncode != 0 and "BEGIN PUBLIC KEY" not in p.stdout


@pytest.mark.parametrize("octets", [0, 4], ids=["der", "ber"])
def test_i11_10_pem_uri_public_key_in_storeutl(scratch_token, tmp_path,
                                               octets):
    tok = scratch_token
    env = tok.fresh_env(tmp_path)
    path = tmp_path / "pub.pem"
    path.write_text(wrap(tok.uri("p256", "public"), octets))
    p = tok.ossl("storeutl", path, env=env)
    items, total = u.store_items(p.stdout)
    assert [kind for _, kind in items] == ["Public key"], p.stdout
    assert total == 1
    blocks = u.pem_blocks(p.stdout, "PUBLIC KEY")
    assert len(blocks) == 1, p.stdout
    assert u.normalize_spki(blocks[0]) == tok.keys["p256"].spki
    # pkey -pubin reads it too, and a private-key read is refused.
    got = pubkey_pem(tok, env, path, pubin=True)
    assert u.normalize_spki(got.encode()) == tok.keys["p256"].spki
    p = tok.ossl("pkey", "-in", path, "-noout", env=env, ok=False)
    assert p.returncode != 0
