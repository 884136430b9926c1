"""Loading the provider: identity, lazy/early module loading, configuration.

A note on OpenSSL 3.0: when a provider named in the config file fails to
initialise, `openssl` carries on without it, exits 0 and prints nothing
(checked on 3.0.22 with a provider whose init raises an error). So a bad
configuration does not fail the provider's init: the provider loads,
shows itself inactive and misconfigured in `list -providers`, and every
pkcs11: operation fails with the problem (docs/DESIGN.md).
"""

import re
from pathlib import Path

import pytest

import p11b_util as u

NAME = "p11bridge PKCS#11 provider"
REPO = Path(__file__).resolve().parent.parent


def providers(stdout):
    """{provider: {field: value}} from `openssl list -providers`."""
    out, current = {}, None
    for line in stdout.splitlines():
        m = re.match(r"^  (\S+)\s*$", line)
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        m = re.match(r"^    (\w+): (.*)$", line)
        if m and current is not None:
            current[m.group(1)] = m.group(2).strip()
    return out


def is_active(stdout):
    info = providers(stdout).get("pkcs11", {})
    return info.get("name") == NAME and info.get("status") == "active"


def test_list_providers_shows_it_active_with_a_version(ossl):
    p = ossl("list", "-providers")
    info = providers(p.stdout).get("pkcs11")
    assert info is not None, f"pkcs11 not listed:\n{p.stdout}"
    assert info.get("name") == NAME
    assert info.get("status") == "active"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", info.get("version", "")), info
    configure = REPO / "configure.ac"
    if configure.exists():
        m = re.search(r"AC_INIT\(\[p11bridge\],\s*\[([^\]]+)\]",
                      configure.read_text())
        if m:
            assert info["version"] == m.group(1)
    # the default provider is still there (config activates both)
    assert providers(p.stdout).get("default", {}).get("status") == "active"


@pytest.mark.parametrize("behavior", [None, "lazy"],
                         ids=["default", "lazy"])
def test_lazy_load_makes_no_cryptoki_call(token, ossl, make_config,
                                          behavior):
    env = make_config(token, log_level=2,
                      pkcs11_module_load_behavior=behavior)
    p = ossl("list", "-providers", env=env)
    assert is_active(p.stdout), p.stdout
    log = u.read_log(env)
    assert not u.cryptoki_calls(log, "C_Initialize"), log
    assert not u.pids_calling_cryptoki(log), \
        f"a Cryptoki call during `list -providers`:\n{log}"


def test_early_load_initializes_the_module(token, ossl, make_config):
    env = make_config(token, log_level=2,
                      pkcs11_module_load_behavior="early")
    p = ossl("list", "-providers", env=env)
    assert is_active(p.stdout), p.stdout
    log = u.read_log(env)
    assert len(u.cryptoki_calls(log, "C_Initialize")) == 1, log


# (key, malformed value): each makes the provider misconfigured.
BAD_CONFIG = [
    ("pkcs11-module-load-behavior", "sometimes"),
    ("pkcs11-module-load-behavior", "1"),
    ("pkcs11-module-login-behavior", "maybe"),
    ("pkcs11-module-login-behavior", "yes"),
    ("pkcs11-module-cache-pins", "forever"),
    ("pkcs11-module-cache-pins", "1"),
    ("pkcs11-module-cache-sessions", "many"),
    ("pkcs11-module-cache-sessions", "10x"),
    ("pkcs11-module-cache-sessions", "-1"),
    ("pkcs11-module-cache-sessions", "99999999999999999999999"),
    ("pkcs11-module-allow-export", "2"),
    ("pkcs11-module-allow-export", "yes"),
    # the configured PIN's token selector names tokens only
    ("pkcs11-module-token-pin-token", "pkcs11:object=p256"),
    ("pkcs11-module-token-pin-token", "pkcs11:token=a;type=private"),
    ("pkcs11-module-token-pin-token", "pkcs11:token=%zz"),
    # a PIN file that cannot be read
    ("pkcs11-module-token-pin", "file:/nonexistent"),
    # unknown keys, one a plausible typo
    ("pkcs11-module-frobnicate", "1"),
    ("pkcs11-module-pathname", "/usr/lib/softhsm/libsofthsm2.so"),
]


def assert_misconfigured(ossl, token, env, key, what=None):
    """The documented behaviour of a bad configuration (docs/DESIGN.md):
    the provider loads, `list -providers` shows it inactive with the
    problem in its name, every pkcs11: operation fails with our error
    naming the key, the section and the file as its first error line,
    and software algorithms keep working."""
    where = f"([pkcs11_sect] in {env['OPENSSL_CONF']})"
    p = ossl("list", "-providers", env=env)
    info = providers(p.stdout).get("pkcs11", {})
    assert info.get("status") == "inactive", p.stdout
    assert info.get("name", "").startswith(NAME + " (misconfigured: " + key), \
        p.stdout
    for argv in (["storeutl", "pkcs11:"],
                 ["pkey", "-in", token.uri("p256", "private"), "-noout"]):
        p = ossl(*argv, env=env, ok=False)
        assert p.returncode != 0, f"{argv} succeeded:\n{p.stdout}"
        errors = u.openssl_errors(p.stderr)
        assert errors, f"{argv}: no error line:\n{p.stderr}"
        first = errors[0]
        assert (first["lib"], first["reason"]) == \
            ("pkcs11", "bad provider configuration"), p.stderr
        assert first["data"].startswith(key + ": "), p.stderr
        assert first["data"].endswith(where), p.stderr
        if what is not None:
            assert what in first["data"], p.stderr
    p = ossl("dgst", "-sha256", "-r", "/dev/null", env=env)
    assert p.stdout.startswith("e3b0c442"), p.stdout


@pytest.mark.parametrize("key, value", BAD_CONFIG,
                         ids=[f"{k}={v}" for k, v in BAD_CONFIG])
def test_bad_config_names_the_key_in_every_operation(token, ossl,
                                                     make_config, key, value):
    env = make_config(token, **{key: value})
    assert_misconfigured(ossl, token, env, key)


@pytest.mark.parametrize("key, value, message", [
    ("pkcs11-module-tokn-pin", "p11b-not-a-pin",
     "pkcs11-module-tokn-pin: unknown key"),
    ("pkcs11-module-load-behavior", "sometimes",
     "pkcs11-module-load-behavior: must be early or lazy"),
    ("pkcs11-module-token-pin", "file:/nonexistent",
     "pkcs11-module-token-pin: cannot open PIN file /nonexistent: "
     "No such file or directory"),
])
def test_bad_config_exact_message(token, ossl, make_config, key, value,
                                  message):
    env = make_config(token, **{key: value})
    p = ossl("storeutl", "pkcs11:", env=env, ok=False)
    first = u.openssl_errors(p.stderr)[0]
    assert first["data"] == \
        f"{message} ([pkcs11_sect] in {env['OPENSSL_CONF']})", p.stderr
    assert "p11b-not-a-pin" not in p.stderr  # a value may be a PIN


def test_env_module_overrides_config_path(token, ossl, make_config,
                                          tmp_path):
    env = make_config(token,
                      pkcs11_module_path=tmp_path / "absent" / "libnone.so")
    env["PKCS11_PROVIDER_MODULE"] = token.module
    p = ossl("pkey", "-in", token.uri("p256", "private"), "-pubout",
             env=env)
    assert u.normalize_spki(p.stdout.encode()) == token.keys["p256"].spki


def test_env_module_wins_over_a_good_config_path(token, ossl, tmp_path):
    bogus = tmp_path / "absent" / "libnone.so"
    env = dict(token.env, PKCS11_PROVIDER_MODULE=str(bogus))
    p = ossl("pkey", "-in", token.uri("p256", "private"), "-noout",
             env=env, ok=False)
    assert p.returncode == 1
    assert "cannot load the PKCS#11 module" in p.stderr
    assert str(bogus) in p.stderr


def _missing(tmp_path, token):
    return tmp_path / "absent" / "libnone.so"


def _garbage(tmp_path, token):
    path = tmp_path / "libgarbage.so"
    path.write_bytes(b"this is not an ELF file\n" * 8)
    return path


def _not_cryptoki(tmp_path, token):
    # a real shared object without C_GetFunctionList/C_GetInterface
    return Path(token.provider)


@pytest.mark.parametrize("make_path", [_missing, _garbage, _not_cryptoki],
                         ids=["missing", "not-elf", "no-cryptoki-symbols"])
def test_bad_module_path_fails_naming_the_path(token, ossl, make_config,
                                               tmp_path, make_path):
    path = make_path(tmp_path, token)
    env = make_config(token, pkcs11_module_path=path)
    p = ossl("pkey", "-in", token.uri("rsa2048", "private"), "-noout",
             env=env, ok=False)
    assert p.returncode == 1, u.describe(p)
    assert "cannot load the PKCS#11 module" in p.stderr, p.stderr
    assert str(path) in p.stderr, p.stderr


def test_default_module_is_p11kit_proxy(token, ossl, make_config):
    """No pkcs11-module-path: p11-kit's proxy. Whatever tokens it shows,
    listing them must work and exit cleanly."""
    env = make_config(token, pkcs11_module_path=None)
    p = ossl("storeutl", "-noout", "pkcs11:", env=env, ok=False)
    assert p.returncode == 0, u.describe(p)
    assert re.search(r"^Total found: \d+", p.stdout, re.M), p.stdout


def _no_default_config(token, tmp_path, activate):
    """A config whose provider section is pkcs11 alone, no default."""
    lines = ["openssl_conf = openssl_init", "[openssl_init]",
             "providers = provider_sect", "[provider_sect]",
             "pkcs11 = pkcs11_sect", "[pkcs11_sect]"]
    lines += [f"{k} = {v}" for k, v in token.pkcs11_keys.items()
              if k != "activate"]
    if activate:
        lines.append("activate = 1")
    conf = tmp_path / "openssl.cnf"
    conf.write_text("\n".join(lines) + "\n")
    env = u.with_log(token.env, tmp_path / "p11bridge.log", 3)
    env["OPENSSL_CONF"] = str(conf)
    return env


@pytest.mark.parametrize("how", ["command-line", "config"])
def test_default_provider_missing_is_named(token, ossl, tmp_path, how):
    """`-provider pkcs11` alone (or a config activating only pkcs11) read
    as "PIN incorrect" for a correct PIN: SoftHSM cannot decrypt its key
    store without a software provider. The first error must say what to
    do."""
    env = _no_default_config(token, tmp_path, activate=(how == "config"))
    argv = ["-provider", "pkcs11"] if how == "command-line" else []
    p = ossl("pkey", *argv, "-in", token.uri("p256", "private"), "-pubout",
             env=env, ok=False)
    assert p.returncode != 0, p.stdout
    first = u.openssl_errors(p.stderr)[0]
    assert (first["lib"], first["reason"]) == \
        ("pkcs11", "default provider not active"), p.stderr
    assert "activate the default provider beside pkcs11 " \
           "(-provider pkcs11 -provider default" in first["data"], p.stderr
    assert "PIN" not in p.stderr.replace("pkcs11", ""), p.stderr
    if how == "command-line":
        p = ossl("pkey", "-provider", "pkcs11", "-provider", "default",
                 "-in", token.uri("p256", "private"), "-pubout", env=env)
        assert u.normalize_spki(p.stdout.encode()) == \
            token.keys["p256"].spki
