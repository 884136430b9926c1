"""Every common mistake gets an answer (issue #12): the table of mistakes.

Each row makes one mistake with the real `openssl` command and checks the
first error line it prints: it is ours (library "pkcs11"), and it reads
as docs/HOWTO.md's Troubleshooting section shows it. The expected lines
are not written here: they are read from the HOWTO's <!-- mistake: NAME
--> blocks, so the documentation and what users see cannot drift apart.

Other files test each mechanism in depth (test_errors.py, test_provider.py,
test_ambiguous_uri.py, test_pins.py); this file is the user's view of them.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import p11b_util as u
from p11b_secrets import WRONG_PIN
from test_provider import _no_default_config

_MISTAKE_RX = re.compile(r"^<!-- mistake: (\S+) -->[ \t]*\n```text\n(.*?)\n```",
                         re.S | re.M)
_PLACEHOLDER = re.compile(r"<[a-z-]+>")


def documented():
    """{name: message template} from docs/HOWTO.md."""
    found = {}
    for name, body in _MISTAKE_RX.findall(u.HOWTO.read_text()):
        assert name not in found, f"mistake {name!r} twice in {u.HOWTO}"
        assert "\n" not in body, f"mistake {name!r}: one line expected"
        found[name] = body
    return found


def as_regex(template):
    """The template as a regex: literal text, each <placeholder> any text."""
    parts = _PLACEHOLDER.split(template)
    return "^" + "(.+?)".join(re.escape(p) for p in parts) + "$"


def shown(err):
    """An error line as HOWTO shows it: 'lib: reason: data'."""
    return f"{err['lib']}: {err['reason']}: {err['data']}"


def libc_path():
    """The C library this process runs with: a real shared object with no
    PKCS#11 entry point."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if re.search(r"/libc(-[\d.]+)?\.so(\.6)?$", path):
            return path
    pytest.skip("no libc path in /proc/self/maps")


@dataclass
class Made:
    """A mistake made: the openssl arguments, the environment, and what
    the first error line must say beyond the documented template."""
    argv: list
    env: dict
    rc: int = 1
    also: list = field(default_factory=list)   # substrings of that line


P256 = "pkcs11:token={t};object=p256;type=private"


def wrong_pin(tok, make_config, tmp_path):
    wrong = tmp_path / "wrong-pin.txt"
    wrong.write_text(WRONG_PIN)
    env = make_config(tok, pkcs11_module_token_pin=f"file:{wrong}")
    return Made(["pkey", "-in", tok.uri("p256", "private"), "-noout"], env,
                also=[f"slot {tok.slot} (token '{tok.label}')"])


def no_pin(tok, make_config, tmp_path):
    env = make_config(tok, pkcs11_module_token_pin=None)
    return Made(["pkey", "-in", tok.uri("p256", "private"), "-noout"], env,
                also=[f"token '{tok.label}' (slot {tok.slot})"])


def no_pin_storeutl(tok, make_config, tmp_path):
    """storeutl asked for private keys only: an error, status 1."""
    env = make_config(tok, pkcs11_module_token_pin=None)
    return Made(["storeutl", "-noout", tok.uri(None, "private")], env,
                also=[f"token '{tok.label}' (slot {tok.slot})"])


def no_pin_listing(tok, make_config, tmp_path):
    """A listing that found public objects lists them, exits 0, and says
    on stderr what it left out."""
    env = make_config(tok, pkcs11_module_token_pin=None)
    return Made(["storeutl", "-noout", tok.uri()], env, rc=0,
                also=[f"token '{tok.label}' (slot {tok.slot})"])


def token_typo(tok, make_config, tmp_path):
    return Made(["pkey", "-in", P256.format(t="p11b-tset"), "-noout"],
                tok.env,
                also=["pkcs11:token=p11b-tset;object=p256;type=private",
                      f"'{tok.label}' (serial {tok.serial}, slot {tok.slot})",
                      f"(module {tok.module})"])


def object_typo(tok, make_config, tmp_path):
    uri = f"pkcs11:token={tok.label};object=p265;type=private"
    return Made(["pkey", "-in", uri, "-noout"], tok.env,
                also=[uri + ": no private key with object=p265 on token "
                      f"'{tok.label}' (slot {tok.slot})"])


def uri_attribute_typo(tok, make_config, tmp_path):
    uri = f"pkcs11:token={tok.label};objcet=p256;type=private"
    return Made(["pkey", "-in", uri, "-noout"], tok.env,
                also=["attribute 'objcet'"])


def wrong_module_path(tok, make_config, tmp_path):
    path = tmp_path / "absent" / "libsofthsm2.so"
    return Made(["pkey", "-in", tok.uri("p256", "private"), "-noout"],
                make_config(tok, pkcs11_module_path=path),
                also=[f"dlopen({path}): {path}: "])


def not_a_pkcs11_module(tok, make_config, tmp_path):
    path = libc_path()
    return Made(["pkey", "-in", tok.uri("p256", "private"), "-noout"],
                make_config(tok, pkcs11_module_path=path),
                also=[f"{path}: no C_GetInterface"])


def default_provider_missing(tok, make_config, tmp_path):
    env = _no_default_config(tok, tmp_path, activate=False)
    return Made(["pkey", "-provider", "pkcs11", "-in",
                 tok.uri("p256", "private"), "-pubout"], env)


def ambiguous_uri(tok, make_config, tmp_path):
    # every private key of the token; pkey takes the first and closes
    return Made(["pkey", "-in", tok.uri(None, "private"), "-pubout"],
                tok.env, also=["the URI matches "])


def unreadable_pin_file(tok, make_config, tmp_path):
    pin = tmp_path / "absent" / "token.pin"
    env = make_config(tok, pkcs11_module_token_pin=f"file:{pin}")
    return Made(["pkey", "-in", tok.uri("p256", "private"), "-noout"], env,
                also=[f"cannot open PIN file {pin}: ",
                      f"in {env['OPENSSL_CONF']})"])


def misspelt_config_key(tok, make_config, tmp_path):
    pin = tok.pkcs11_keys["pkcs11-module-token-pin"]
    env = make_config(tok, pkcs11_module_token_pin=None,
                      pkcs11_module_tokn_pin=pin)
    return Made(["pkey", "-in", tok.uri("p256", "private"), "-noout"], env,
                also=["pkcs11-module-tokn-pin: unknown key",
                      f"in {env['OPENSSL_CONF']})"])


# (id, documented message, how to make the mistake, needs its own token)
MISTAKES = [
    ("wrong-pin", "wrong-pin", wrong_pin, True),
    ("no-pin", "no-pin", no_pin, False),
    ("no-pin-storeutl", "no-pin", no_pin_storeutl, False),
    ("no-pin-listing", "no-pin-listing", no_pin_listing, False),
    ("token-typo", "token-typo", token_typo, False),
    ("object-typo", "object-typo", object_typo, False),
    ("uri-attribute-typo", "uri-attribute-typo", uri_attribute_typo, False),
    ("wrong-module-path", "wrong-module-path", wrong_module_path, False),
    ("not-a-pkcs11-module", "not-a-pkcs11-module", not_a_pkcs11_module,
     False),
    ("default-provider-missing", "default-provider-missing",
     default_provider_missing, False),
    ("ambiguous-uri", "ambiguous-uri", ambiguous_uri, False),
    ("unreadable-pin-file", "unreadable-pin-file", unreadable_pin_file,
     False),
    ("misspelt-config-key", "misspelt-config-key", misspelt_config_key,
     False),
]


@pytest.mark.parametrize("doc, make, own_token",
                         [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistake_gets_our_documented_answer(request, make_config, tmp_path,
                                            doc, make, own_token):
    # a wrong PIN changes token state (retry counters): a token of its own
    tok = request.getfixturevalue("scratch_token" if own_token else "token")
    made = make(tok, make_config, tmp_path)
    p = tok.ossl(*made.argv, env=made.env, ok=False)
    assert p.returncode == made.rc, u.describe(p)
    errors = u.openssl_errors(p.stderr)
    assert errors, f"no error line:\n{p.stderr}"
    first = errors[0]
    assert first["lib"] == "pkcs11", \
        f"the first error line is not ours:\n{p.stderr}"
    template = documented()[doc]
    assert re.match(as_regex(template), shown(first)), \
        f"HOWTO.md documents\n  {template}\nopenssl printed\n  " \
        f"{shown(first)}"
    for part in made.also:
        assert part in first["data"], f"{part!r} not in {first['data']!r}"
    assert WRONG_PIN not in p.stderr


def test_no_pin_listing_still_lists_public_objects(token, make_config):
    """Listing public objects without a PIN is legitimate: the listing is
    complete for them, and the note above says what was left out."""
    env = make_config(token, pkcs11_module_token_pin=None)
    p = token.ossl("storeutl", "-noout", token.uri(), env=env)
    items, total = u.store_items(p.stdout)
    kinds = {k for _, k in items}
    assert total == len(items) > 0 and "Pkey" not in kinds, p.stdout
    assert {"Public key", "Certificate"} <= kinds, p.stdout
    # with the PIN, nothing is left out and nothing is said
    p = token.ossl("storeutl", "-noout", token.uri())
    assert not u.openssl_errors(p.stderr), p.stderr
    assert "Pkey" in {k for _, k in u.store_items(p.stdout)[0]}


def test_storeutl_failure_is_a_failure(ossl, token):
    """`openssl storeutl` exited 0 after "Total found: 0" for any error
    (it counts an error only when the store is not at its end)."""
    p = ossl("storeutl", "-noout", "pkcs11:token=p11b-tset", ok=False)
    assert p.returncode == 1, u.describe(p)
    if u.openssl_version() < (3, 5, 0):
        # 3.0's storeutl prints its count after the error too
        assert "Total found: 0" in p.stdout, u.describe(p)
    else:
        # 3.5 and 3.6 stop at the error without a count (seen on Debian
        # 13's 3.5 and unstable's 3.6)
        assert "Total found" not in p.stdout, u.describe(p)
    assert u.openssl_errors(p.stderr)[0]["lib"] == "pkcs11", u.describe(p)


def test_missing_activate_is_openssls_own_message(token, make_config):
    """A provider section without `activate = 1` never reaches p11bridge:
    OpenSSL answers, as HOWTO.md says, and no line is ours."""
    env = make_config(token, activate=None)
    p = token.ossl("storeutl", "-noout", token.uri("p256"), env=env,
                   ok=False)
    assert p.returncode == 1, u.describe(p)
    errors = u.openssl_errors(p.stderr)
    assert errors and not u.provider_errors(p.stderr), p.stderr
    # the lines name the file: and pkcs11: schemes first, then this
    lines = [shown(e) for e in errors]
    template = documented()["not-activated"]
    assert any(re.match(as_regex(template), line) for line in lines), \
        f"HOWTO.md documents\n  {template}\nopenssl printed\n" + \
        "\n".join(lines)


def test_every_documented_mistake_is_made_here():
    made = {m[1] for m in MISTAKES} | {"not-activated"}
    assert set(documented()) == made


def test_listing_shows_a_uri_for_every_object(ossl, token):
    """`storeutl -text` prints a URI for keys (the key printers' "URI:"
    line) and for certificates (their X.509 alias, "Alias:")."""
    p = ossl("storeutl", "-text", token.uri("p256"))
    text = p.stdout
    items, total = u.store_items(text)
    assert {k for _, k in items} == {"Pkey", "Public key", "Certificate"}, \
        text
    uris = re.findall(r"^(?:URI|Alias): (pkcs11:\S+)$", text, re.M)
    assert len(uris) == total, text
    types = sorted(u.parse_uri(x)["type"] for x in uris)
    assert types == [b"cert", b"private", b"public"], uris
    # the certificate's URI opens that certificate
    cert_uri = next(x for x in uris if x.endswith("type=cert"))
    p = ossl("x509", "-in", cert_uri, "-noout", "-fingerprint", "-sha1")
    got = p.stdout.strip().split("=", 1)[1].replace(":", "").lower()
    assert got == token.certs["p256"].sha1.lower(), p.stdout
