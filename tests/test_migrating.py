"""Configurations written for the de-facto PKCS#11 provider (pkcs11-provider).

The provider section below uses every key and word that provider's man
page (provider-pkcs11(7)) and its own test configuration use; it is our
own text, written from those documented keys. p11bridge must load it,
sign and list with it, and say in the debug log which settings change
nothing here (docs/MIGRATING.md has the table).
"""

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import p11b_util as u

from test_provider import assert_misconfigured, is_active

# [pkcs11_sect] as a pkcs11-provider user has it (module, path and PIN
# come from the token's own section).
PKCS11_PROVIDER_SECTION = {
    "pkcs11-module-load-behavior": "early",
    "pkcs11-module-login-behavior": "auto",
    "pkcs11-module-allow-export": "0",
    "pkcs11-module-cache-pins": "cache",
    "pkcs11-module-cache-keys": "true",
    "pkcs11-module-cache-sessions": "5",
    "pkcs11-module-quirks": "no-deinit no-operation-state "
                            "no-session-callbacks no-allowed-mechanisms",
    "pkcs11-module-block-operations": "digest cipher skeymgmt",
    "pkcs11-module-encode-provider-uri-to-pem": "true",
    "pkcs11-module-assume-fips": "false",
    "pkcs11-module-default-slot-id": "0",
}

# What the debug log must say about each setting that has no effect.
NO_EFFECT = [
    "pkcs11-module-quirks no-operation-state",
    "pkcs11-module-quirks no-session-callbacks",
    "pkcs11-module-quirks no-allowed-mechanisms",
    "pkcs11-module-block-operations digest",
    "pkcs11-module-block-operations cipher",
    "pkcs11-module-block-operations skeymgmt",
    "pkcs11-module-encode-provider-uri-to-pem",
    "pkcs11-module-assume-fips",
    "pkcs11-module-default-slot-id",
]


@pytest.fixture
def compat_env(token, make_config):
    return make_config(token, log_level=1, **PKCS11_PROVIDER_SECTION)


def test_pkcs11_provider_section_loads(ossl, compat_env):
    p = ossl("list", "-providers", env=compat_env)
    assert is_active(p.stdout), p.stdout
    log = u.read_log(compat_env)
    for what in NO_EFFECT:
        assert f"config: {what} has no effect here: " in log, \
            f"no debug line for {what}:\n{log}"
    # the words that work here are not reported as ineffective
    assert "no-deinit has no effect" not in log


def test_pkcs11_provider_section_signs_and_lists(ossl, token, compat_env,
                                                 tmp_path):
    msg, sig = tmp_path / "msg", tmp_path / "sig"
    msg.write_bytes(os.urandom(1000))
    ossl("pkeyutl", "-sign", "-rawin", "-digest", "sha256",
         "-inkey", token.uri("p256", "private"), "-in", msg, "-out", sig,
         env=compat_env)
    pub = serialization.load_der_public_key(token.keys["p256"].spki)
    pub.verify(sig.read_bytes(), msg.read_bytes(), ec.ECDSA(hashes.SHA256()))
    p = ossl("storeutl", "-keys", "-text", "pkcs11:",
             env=compat_env)
    uris = u.uris_in(p.stdout)
    assert any("object=p256" in x and "type=private" in x for x in uris), \
        p.stdout
    # the digest a user "blocked" still works: it never was ours
    ossl("dgst", "-sha256", msg, env=compat_env)


@pytest.mark.parametrize("word", ["digest", "keymgmt"])
def test_block_operations_words(ossl, token, make_config, word, tmp_path):
    """keymgmt is honoured (no token keys), digest changes nothing."""
    env = make_config(token, pkcs11_module_block_operations=word)
    p = ossl("pkey", "-in", token.uri("p256", "private"), "-pubout",
             env=env, ok=(word != "keymgmt"))
    if word == "keymgmt":
        assert p.returncode != 0
    else:
        assert u.normalize_spki(p.stdout.encode()) == \
            token.keys["p256"].spki


@pytest.mark.parametrize("key, value", [
    ("pkcs11-module-encode-provider-uri-to-pem", "yes"),
    ("pkcs11-module-assume-fips", "1"),
    ("pkcs11-module-default-slot-id", "first"),
    ("pkcs11-module-quirks", "no-deinit no-such-quirk"),
    ("pkcs11-module-block-operations", "digest frobs"),
])
def test_compat_keys_check_their_values(ossl, token, make_config, key, value):
    env = make_config(token, **{key: value})
    assert_misconfigured(ossl, token, env, key)
