"""The pkcs11 OSSL_STORE loader: listings, searches, URIs, public keys, PINs.

OpenSSL 3.0's storeutl has -keys (private keys only) and -certs but no
-pubkeys; public key objects are listed with type=public in the URI, or
with no expectation at all.
"""

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import p11b_util as u
from p11b_secrets import PIN

ALL_KEYS = ["rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521",
            "nopub-rsa", "nopub-ec"]
WITH_PUBLIC = ALL_KEYS[:6]
CERTS = ["ca-cert", "rsa2048", "p256", "nopub-ec"]


def check_canonical(token, uri, label, type):
    """uri is the canonical URI of token's object `label` of `type`."""
    attrs = u.parse_uri(uri)
    assert attrs.get("token") == token.label.encode(), uri
    assert attrs.get("manufacturer") == token.manufacturer.encode(), uri
    assert attrs.get("serial") == token.serial.encode(), uri
    assert attrs.get("model") == token.model.encode(), uri
    assert attrs.get("object") == label.encode(), uri
    assert attrs.get("id") == bytes.fromhex(token.keys[label].id
                                            if label in token.keys
                                            else token.certs[label].id), uri
    assert attrs.get("type") == type.encode(), uri
    assert "pin-value" not in attrs and "pin-source" not in attrs, uri


def labels_of(uris):
    return sorted(u.parse_uri(x)["object"].decode() for x in uris)


def certs_in(stdout):
    return sorted(u.pem_blocks(stdout, "CERTIFICATE"))


def test_keys_listing_shows_every_private_key_with_its_uri(token, ossl):
    p = ossl("storeutl", "-keys", "-text", "-noout", token.uri())
    items, total = u.store_items(p.stdout)
    assert [kind for _, kind in items] == ["Pkey"] * len(ALL_KEYS), p.stdout
    assert total == len(ALL_KEYS)
    uris = u.uris_in(p.stdout)
    assert labels_of(uris) == sorted(ALL_KEYS), p.stdout
    for uri in uris:
        check_canonical(token, uri, u.parse_uri(uri)["object"].decode(),
                        "private")


def test_public_key_listing_shows_every_public_key_with_its_uri(token, ossl):
    p = ossl("storeutl", "-text", "-noout", token.uri(type="public"))
    items, total = u.store_items(p.stdout)
    assert [kind for _, kind in items] == \
        ["Public key"] * len(WITH_PUBLIC), p.stdout
    assert total == len(WITH_PUBLIC)
    uris = u.uris_in(p.stdout)
    assert labels_of(uris) == sorted(WITH_PUBLIC), p.stdout
    for uri in uris:
        check_canonical(token, uri, u.parse_uri(uri)["object"].decode(),
                        "public")


def test_unfiltered_listing_has_keys_public_keys_and_certs(token, ossl):
    p = ossl("storeutl", "-text", "-noout", token.uri())
    items, total = u.store_items(p.stdout)
    kinds = [kind for _, kind in items]
    assert kinds.count("Pkey") == len(ALL_KEYS), p.stdout
    assert kinds.count("Public key") == len(WITH_PUBLIC), p.stdout
    assert kinds.count("Certificate") == len(CERTS), p.stdout
    assert total == len(ALL_KEYS) + len(WITH_PUBLIC) + len(CERTS)
    assert len(u.uris_in(p.stdout)) == len(ALL_KEYS) + len(WITH_PUBLIC)


def test_certs_listing_has_exactly_the_certificates(token, ossl):
    p = ossl("storeutl", "-certs", token.uri())
    items, total = u.store_items(p.stdout)
    assert [kind for _, kind in items] == ["Certificate"] * len(CERTS)
    assert total == len(CERTS)
    assert certs_in(p.stdout) == sorted(c.der for c in token.certs.values())


def test_bare_scheme_lists_everything(token, ossl):
    p = ossl("storeutl", "-noout", "pkcs11:")
    items, total = u.store_items(p.stdout)
    kinds = [kind for _, kind in items]
    assert kinds.count("Pkey") == len(ALL_KEYS), p.stdout
    assert kinds.count("Public key") == len(WITH_PUBLIC), p.stdout
    assert kinds.count("Certificate") == len(CERTS), p.stdout
    assert total == len(kinds)


def _search_args(token, how):
    certs = token.certs
    if how == "subject":
        return ["-subject", certs["rsa2048"].subject], "rsa2048"
    if how == "alias":
        return ["-alias", "ca-cert"], "ca-cert"
    if how == "issuer-serial-decimal":
        c = certs["p256"]
        return ["-issuer", c.issuer, "-serial", str(c.serial)], "p256"
    if how == "issuer-serial-hex":
        c = certs["nopub-ec"]
        return ["-issuer", c.issuer, "-serial", hex(c.serial)], "nopub-ec"
    if how == "fingerprint":
        c = certs["nopub-ec"]
        return ["-sha1", "-fingerprint", c.sha1], "nopub-ec"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["subject", "alias", "issuer-serial-decimal",
                                 "issuer-serial-hex", "fingerprint"])
def test_search_finds_exactly_the_right_certificate(token, ossl, how):
    args, label = _search_args(token, how)
    p = ossl("storeutl", *args, token.uri())
    items, total = u.store_items(p.stdout)
    assert total == 1 and [k for _, k in items] == ["Certificate"], p.stdout
    assert certs_in(p.stdout) == [token.certs[label].der]


def test_alias_search_for_a_key(token, ossl):
    p = ossl("storeutl", "-keys", "-text", "-noout", "-alias", "rsa3072",
             token.uri())
    items, total = u.store_items(p.stdout)
    assert total == 1 and [k for _, k in items] == ["Pkey"], p.stdout
    assert labels_of(u.uris_in(p.stdout)) == ["rsa3072"]


def test_every_printed_uri_loads_the_same_object(token, ossl):
    listing = ossl("storeutl", "-text", "-noout", token.uri()).stdout
    uris = u.uris_in(listing)
    assert len(uris) == len(ALL_KEYS) + len(WITH_PUBLIC), listing
    for uri in uris:
        attrs = u.parse_uri(uri)
        label, type = attrs["object"].decode(), attrs["type"].decode()
        p = ossl("storeutl", "-text", "-noout", uri)
        items, total = u.store_items(p.stdout)
        want = "Pkey" if type == "private" else "Public key"
        assert total == 1 and [k for _, k in items] == [want], \
            f"{uri}:\n{p.stdout}"
        again = u.uris_in(p.stdout)
        assert [u.parse_uri(x) for x in again] == [attrs], p.stdout
        pubin = ["-pubin"] if type == "public" else []
        out = ossl("pkey", *pubin, "-in", uri, "-pubout").stdout
        assert u.normalize_spki(out.encode()) == token.keys[label].spki, uri


@pytest.mark.parametrize("label", CERTS)
def test_cert_uri_loads_the_certificate(token, ossl, label):
    p = ossl("storeutl", "-certs", token.uri(label, "cert"))
    assert certs_in(p.stdout) == [token.certs[label].der], p.stdout


@pytest.mark.parametrize("label", ALL_KEYS)
def test_public_keys_agree_everywhere(token, ossl, label):
    """type=public == private key's -pubout == pkcs11-tool/p11tool export
    (or the software copy, for keys imported without a public object)."""
    key = token.keys[label]
    priv = ossl("pkey", "-in", token.uri(label, "private"), "-pubout")
    assert u.normalize_spki(priv.stdout.encode()) == key.spki, \
        f"{label}: private key's public half differs from {key.spki_source}"
    if key.has_public:
        pub = ossl("pkey", "-pubin", "-in", token.uri(label, "public"),
                   "-pubout")
        assert u.normalize_spki(pub.stdout.encode()) == key.spki, \
            f"{label}: public object differs from {key.spki_source}"
    if label in token.certs:
        cert = x509.load_der_x509_certificate(token.certs[label].der)
        assert cert.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo) == key.spki


def _spki_cases():
    cases = []
    for label in ALL_KEYS:
        cases.append((label, "private"))
        if label in WITH_PUBLIC:
            cases.append((label, "public"))
    return cases


@pytest.mark.parametrize("label, type", _spki_cases(),
                         ids=[f"{a}-{b}" for a, b in _spki_cases()])
def test_spki_encoding_is_standard(token, ossl, label, type):
    """EC: id-ecPublicKey with a named-curve OID (never explicit
    parameters); RSA: rsaEncryption with NULL parameters."""
    key = token.keys[label]
    pubin = ["-pubin"] if type == "public" else []
    p = ossl("pkey", *pubin, "-in", token.uri(label, type), "-pubout")
    der = u.spki_der_from_pem(p.stdout)
    alg, params = u.spki_algorithm(der)
    if key.kind == "EC":
        assert alg == u.OID_EC
        assert params is not None and params[0] == 0x06, \
            f"{label}: EC parameters are not a named curve OID: {params}"
        assert u.oid_to_str(params[1]) == u.CURVE_OIDS[key.bits]
    else:
        assert alg == u.OID_RSA
        assert params == (0x05, b""), f"{label}: RSA params {params}"
    assert der == key.spki  # byte for byte the standard encoding


# ---- where the PIN comes from ----------------------------------------------

def test_pin_value_in_uri(token, ossl, make_config):
    env = make_config(token, pkcs11_module_token_pin=None)
    uri = token.uri("rsa2048", "private", pin_value=PIN)
    p = ossl("pkey", "-in", uri, "-pubout", env=env)
    assert u.normalize_spki(p.stdout.encode()) == token.keys["rsa2048"].spki


def test_pin_source_file_in_uri(token, ossl, make_config):
    env = make_config(token, pkcs11_module_token_pin=None)
    uri = token.uri("p384", "private", pin_source=f"file:{token.pin_file}")
    p = ossl("pkey", "-in", uri, "-pubout", env=env)
    assert u.normalize_spki(p.stdout.encode()) == token.keys["p384"].spki


def test_passin_for_storeutl_and_pkey(token, ossl, make_config):
    env = make_config(token, pkcs11_module_token_pin=None)
    p = ossl("storeutl", "-keys", "-noout", "-passin", f"pass:{PIN}",
             token.uri(), env=env)
    items, total = u.store_items(p.stdout)
    assert total == len(ALL_KEYS), p.stdout
    p = ossl("pkey", "-passin", f"pass:{PIN}", "-in",
             token.uri("nopub-ec", "private"), "-pubout", env=env)
    assert u.normalize_spki(p.stdout.encode()) == token.keys["nopub-ec"].spki


def test_login_behavior_never_hides_private_keys(token, ossl, make_config):
    env = make_config(token, pkcs11_module_login_behavior="never")
    p = ossl("pkey", "-in", token.uri("rsa2048", "private"), "-noout",
             env=env, ok=False)
    assert p.returncode == 1
    assert "no object matches the pkcs11 URI" in p.stderr, p.stderr
    # public objects need no login
    p = ossl("pkey", "-pubin", "-in", token.uri("rsa2048", "public"),
             "-pubout", env=env)
    assert u.normalize_spki(p.stdout.encode()) == token.keys["rsa2048"].spki
    assert not u.cryptoki_calls(u.read_log(env), "C_Login")


def test_login_behavior_always_logs_in_for_public_keys(token, ossl,
                                                       make_config):
    env = make_config(token, pkcs11_module_login_behavior="always")
    p = ossl("pkey", "-pubin", "-in", token.uri("p256", "public"),
             "-pubout", env=env)
    assert u.normalize_spki(p.stdout.encode()) == token.keys["p256"].spki
    logins = u.cryptoki_calls(u.read_log(env), "C_Login")
    assert logins, "login-behavior always, yet no C_Login"
    assert all("CKR_OK" in line for line in logins), logins
