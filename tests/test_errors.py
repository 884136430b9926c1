"""Errors are data: (input, expected reason text), and never a crash.

Every failing command must exit 1 (not a signal: p11b_util.run checks that
for every command) and say why in our reason strings.
"""

import pytest

import p11b_util as u
from p11b_secrets import PIN, WRONG_PIN

MALFORMED = "malformed pkcs11 URI"
NO_TOKEN = "no token matches the pkcs11 URI"
NO_OBJECT = "no object matches the pkcs11 URI"

# (name, uri, substrings the error output must contain)
BAD_URIS = [
    # malformed URIs: the reason, and which attribute is wrong
    ("object-twice",
     "pkcs11:token=p11b-test;object=rsa2048;object=p256;type=private",
     [MALFORMED, "attribute 'object': given twice"]),
    ("token-twice",
     "pkcs11:token=p11b-test;token=p11b-test;object=rsa2048;type=private",
     [MALFORMED, "attribute 'token': given twice"]),
    ("type-twice",
     "pkcs11:token=p11b-test;object=rsa2048;type=private;type=public",
     [MALFORMED, "attribute 'type': given twice"]),
    ("id-non-hex-escape", "pkcs11:token=p11b-test;id=%G1;type=private",
     [MALFORMED, "attribute 'id': bad percent-encoding"]),
    ("id-truncated-escape", "pkcs11:token=p11b-test;id=%0;type=private",
     [MALFORMED, "attribute 'id': bad percent-encoding"]),
    ("object-truncated-escape",
     "pkcs11:token=p11b-test;object=rsa%2;type=private",
     [MALFORMED, "attribute 'object': bad percent-encoding"]),
    ("unknown-attribute",
     "pkcs11:token=p11b-test;foo=bar;object=rsa2048;type=private",
     [MALFORMED, "attribute 'foo': unknown attribute"]),
    ("bad-type-value", "pkcs11:token=p11b-test;object=rsa2048;type=secret-ish",
     [MALFORMED, "'type'"]),
    ("bad-slot-id-value",
     "pkcs11:token=p11b-test;slot-id=zero;object=rsa2048;type=private",
     [MALFORMED, "'slot-id'"]),
    ("attribute-without-value", "pkcs11:token=p11b-test;object;type=private",
     [MALFORMED]),
    ("empty-attribute-name", "pkcs11:token=p11b-test;=rsa2048;type=private",
     [MALFORMED]),
    # no such token
    ("unknown-token", "pkcs11:token=no-such-token;object=rsa2048;type=private",
     [NO_TOKEN]),
    ("unknown-serial",
     "pkcs11:serial=0000000000000000;object=rsa2048;type=private",
     [NO_TOKEN]),
    ("unknown-model",
     "pkcs11:model=No%20Such%20Model;object=rsa2048;type=private",
     [NO_TOKEN]),
    ("absent-slot-id", "pkcs11:slot-id=4242;object=rsa2048;type=private",
     [NO_TOKEN]),
    # the token is there, the object is not
    ("unknown-label", "pkcs11:token=p11b-test;object=no-such-key;type=private",
     [NO_OBJECT]),
    ("unknown-id", "pkcs11:token=p11b-test;id=%EE%FF;type=private",
     [NO_OBJECT]),
    ("label-and-id-of-different-keys",
     "pkcs11:token=p11b-test;object=rsa2048;id=%04;type=private",
     [NO_OBJECT]),
    ("cert-asked-as-private-key",
     "pkcs11:token=p11b-test;object=ca-cert;type=private", [NO_OBJECT]),
    ("private-only-key-asked-as-public",
     "pkcs11:token=p11b-test;object=nopub-rsa;type=public", [NO_OBJECT]),
]


@pytest.mark.parametrize("uri, reasons", [c[1:] for c in BAD_URIS],
                         ids=[c[0] for c in BAD_URIS])
def test_bad_uri_is_a_clear_error(token, ossl, uri, reasons):
    if "slot-id=4242" in uri:
        assert token.slot != 4242
    # type=public (the last type given) is loaded as a public key
    pubin = ["-pubin"] if uri.endswith("type=public") else []
    p = ossl("pkey", *pubin, "-in", uri, "-noout", ok=False)
    assert p.returncode == 1, u.describe(p)
    for reason in reasons:
        assert reason in p.stderr, f"{reason!r} not in:\n{p.stderr}"


def _wrong_pin(scratch_token, make_config, tmp_path, source):
    """(env, extra openssl args, uri) giving WRONG_PIN through source."""
    uri = scratch_token.uri("p256", "private")
    if source == "config":
        wrong = tmp_path / "wrong-pin.txt"
        wrong.write_text(WRONG_PIN)
        env = make_config(scratch_token,
                          pkcs11_module_token_pin=f"file:{wrong}")
        return env, [], uri
    env = make_config(scratch_token, pkcs11_module_token_pin=None)
    if source == "uri":
        return env, [], scratch_token.uri("p256", "private",
                                          pin_value=WRONG_PIN)
    if source == "passin":
        return env, ["-passin", f"pass:{WRONG_PIN}"], uri
    raise AssertionError(source)


@pytest.mark.parametrize("source", ["config", "uri", "passin"])
def test_wrong_pin_fails_after_exactly_one_login(scratch_token, make_config,
                                                 tmp_path, source):
    env, extra, uri = _wrong_pin(scratch_token, make_config, tmp_path,
                                 source)
    p = scratch_token.ossl("pkey", *extra, "-in", uri, "-pubout", env=env,
                           ok=False)
    assert p.returncode == 1, u.describe(p)
    assert "PIN incorrect" in p.stderr, p.stderr
    assert "CKR_PIN_INCORRECT" in p.stderr, p.stderr
    logins = u.cryptoki_calls(u.read_log(env), "C_Login")
    assert len(logins) == 1, "expected exactly one C_Login:\n" + \
        "\n".join(logins)
    assert "CKR_PIN_INCORRECT" in logins[0]


def test_no_pin_anywhere_is_a_clear_error(token, ossl, make_config):
    env = make_config(token, pkcs11_module_token_pin=None)
    p = ossl("pkey", "-in", token.uri("rsa2048", "private"), "-pubout",
             env=env, ok=False)
    assert p.returncode == 1, u.describe(p)
    assert "no PIN available for login" in p.stderr, p.stderr
    assert not u.cryptoki_calls(u.read_log(env), "C_Login")


def test_right_pin_after_wrong_one_still_works(scratch_token, make_config):
    """A failed login leaves nothing behind that breaks the next process."""
    env = make_config(scratch_token, pkcs11_module_token_pin=None)
    bad = scratch_token.uri("rsa2048", "private", pin_value=WRONG_PIN)
    p = scratch_token.ossl("pkey", "-in", bad, "-noout", env=env, ok=False)
    assert p.returncode == 1 and "PIN incorrect" in p.stderr, u.describe(p)
    good = scratch_token.uri("rsa2048", "private", pin_value=PIN)
    p = scratch_token.ossl("pkey", "-in", good, "-pubout", env=env)
    assert u.normalize_spki(p.stdout.encode()) == \
        scratch_token.keys["rsa2048"].spki
