"""Private keys are used through session copies (issue 6's hot path).

With the default configuration, the first signature with a key copies it
once to a session object (C_CopyObject, CKA_TOKEN=FALSE), which the token
uses faster than the stored key; later signatures, from any thread, reuse
the copy. `pkcs11-module-cache-keys = false` turns that off. Searches stay
on token objects, so a copy never shows up as a second key.
"""

import pytest

import p11b_util as u
from p11b_tokens import make_config


def stress(token, tools_dir, env, uris, threads=4, iterations=10):
    argv = [tools_dir / "p11b-stress", "--sign", "--threads", str(threads),
            "--iterations", str(iterations)]
    for uri in uris:
        argv += ["--uri", uri]
    p = token.run(argv, env=env, timeout=300)
    assert "stress ok:" in p.stdout, p.stdout
    return u.read_log(env)


def test_one_copy_per_key_and_process(token, tools_dir):
    env = make_config(token, log_level=2)
    uris = [token.uri("p256", "private"), token.uri("rsa2048", "private")]
    log = stress(token, tools_dir, env, uris)
    copies = u.cryptoki_calls(log, "C_CopyObject")
    assert len(copies) == 2 and all("CKR_OK" in c for c in copies), copies
    assert len(u.cryptoki_calls(log, "C_Sign")) == 4 * 10


def test_copies_can_be_turned_off(token, tools_dir):
    env = make_config(token, log_level=2, pkcs11_module_cache_keys="false")
    log = stress(token, tools_dir, env, [token.uri("p256", "private")])
    assert not u.cryptoki_calls(log, "C_CopyObject")
    assert len(u.cryptoki_calls(log, "C_Sign")) == 4 * 10


def test_a_copy_is_not_a_second_key(token, tools_dir):
    """After copies exist, listing the token still shows each key once."""
    env = make_config(token, log_level=2)
    stress(token, tools_dir, env, [token.uri("p384", "private")], threads=1,
           iterations=2)
    p = token.ossl("storeutl", "-keys", token.uri("p384"), env=env)
    assert "Total found: 1" in p.stdout, p.stdout


@pytest.mark.parametrize("value", ["yes", "1", "TRUE", ""])
def test_bad_cache_keys_value_is_refused(token, value):
    env = make_config(token, pkcs11_module_cache_keys=value)
    p = token.ossl("list", "-providers", env=env, ok=False)
    text = p.stdout + p.stderr + u.read_log(env)
    assert "bad provider configuration" in text
    assert "pkcs11-module-cache-keys" in text
