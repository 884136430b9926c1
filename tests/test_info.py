"""p11bridge-info: a token's mechanisms and what p11bridge does with them.

The tool runs against the shared SoftHSM token, directly and through
tests/faultmod with mechanisms hidden. What it prints is checked against
independent sources: pkcs11-tool's mechanism list for the key sizes, and
the provider itself (openssl signing through it, the debug log's
C_SignInit mechanism) for the "p11bridge will do" verdicts.
"""

import json
import os
import re

import pytest

import p11b_util as u

NO_ECDSA = ["CKM_ECDSA"]
RAW_RSA_ONLY = ["CKM_RSA_PKCS", "CKM_RSA_PKCS_PSS"]
COMBINED_ONLY = ["CKM_RSA_PKCS", "CKM_RSA_PKCS_PSS", "CKM_RSA_X_509"]
MECH_UNSUPPORTED = "mechanism not supported"


def info(info_tool, env, *args, ok=True):
    return u.run([info_tool, *args], env, ok=ok)


def token_section(text, label):
    """The lines of the tool's text output for the token `label`."""
    blocks = re.split(r"\n(?=Slot \d+: )", text)
    for b in blocks:
        if re.search(rf"^  token:\s+{re.escape(label)}$", b, re.M):
            return b
    raise AssertionError(f"token {label!r} not in the output:\n{text}")


def verdict(section, operation):
    m = re.search(rf"^    {re.escape(operation)}\s+(.*)$", section, re.M)
    assert m, f"no line for {operation!r}:\n{section}"
    return m.group(1)


@pytest.fixture
def fault_env(token, make_config, faultmod_lib, tmp_path):
    """fault_env(hide) -> env whose provider (and PKCS11_PROVIDER_MODULE)
    reach the shared token through faultmod with `hide` hidden."""
    def make(hide=()):
        env = make_config(token, log_level=2, pkcs11_module_path=faultmod_lib)
        env["FAULTMOD_MODULE"] = token.module
        env["FAULTMOD_HIDE_MECHS"] = ",".join(hide)
        env["FAULTMOD_COUNT_FILE"] = str(tmp_path / "faultmod-calls.txt")
        return env
    return make


def test_info_shows_the_token_and_a_working_uri(token, info_tool, tmp_path):
    env = token.fresh_env(tmp_path, level=2)
    p = info(info_tool, env, "--module", token.module)
    sec = token_section(p.stdout, token.label)
    uri = re.search(r"^  URI:\s+(\S+)$", sec, re.M).group(1)
    assert u.parse_uri(uri) == {
        "token": token.label.encode(), "manufacturer":
        token.manufacturer.encode(), "serial": token.serial.encode(),
        "model": token.model.encode()}, sec
    assert re.search(rf"^  serial:\s+{re.escape(token.serial)}$", sec, re.M)
    assert re.search(rf"^Slot {token.slot}: ", sec), sec
    flags = re.search(r"^  flags:\s+(.*)$", sec, re.M).group(1)
    assert "login required" in flags and "token initialized" in flags
    assert "locked" not in flags and "final try" not in flags
    # The URI the tool prints finds the token through the provider.
    pub = tmp_path / "p256.der"
    token.ossl("pkey", "-pubin", "-in", f"{uri};object=p256;type=public",
               "-pubout", "-outform", "DER", "-out", pub)
    assert pub.read_bytes() == token.keys["p256"].spki
    # Public information only: no session, no login, no PIN.
    log = u.read_log(env)
    assert u.cryptoki_calls(log, "C_GetMechanismInfo"), "not logged at level 2"
    for fn in ("C_OpenSession", "C_Login", "C_FindObjectsInit"):
        assert not u.cryptoki_calls(log, fn), f"the tool called {fn}"


def test_info_lists_ecdsa_with_the_token_key_sizes(token, info_tool,
                                                   tmp_path):
    p = info(info_tool, token.fresh_env(tmp_path), "--module", token.module)
    sec = token_section(p.stdout, token.label)
    m = re.search(r"^    CKM_ECDSA\s+key size (\d+)-(\d+)\s+(.*)$", sec, re.M)
    assert m, sec
    # pkcs11-tool reads the same C_GetMechanismInfo on its own.
    listing = token.tool("-M", login=False).stdout
    ref = re.search(r"^\s*ECDSA, keySize=\{(\d+),(\d+)\}", listing, re.M)
    assert ref, listing
    assert (m.group(1), m.group(2)) == ref.groups()
    assert "SIGN" in m.group(3).split() and "VERIFY" in m.group(3).split()
    assert verdict(sec, "ECDSA sign") == "native (CKM_ECDSA; over our digest)"


def sign_mechanism(token, env, tmp_path, label, ok=True):
    """openssl dgst -sha256 -sign through the provider: (process, the
    mechanisms of the debug log's C_SignInit lines)."""
    msg = tmp_path / "msg.bin"
    msg.write_bytes(os.urandom(1000))
    sig = tmp_path / "sig.bin"
    p = token.ossl("dgst", "-sha256", "-sign",
                   token.uri(label, "private"), "-out", sig, msg, env=env,
                   ok=ok)
    return p, [m for m, rv in u.sign_inits(u.read_log(env)) if rv == "CKR_OK"]


# (hidden mechanisms, key, operation, the tool's verdict, the mechanism
# openssl dgst -sha256 -sign gets through the provider, None: refused)
CASES = [
    ([], "p256", "ECDSA sign", "native (CKM_ECDSA; over our digest)",
     "CKM_ECDSA"),
    (NO_ECDSA, "p256", "ECDSA sign", "unavailable", None),
    ([], "rsa2048", "RSA PKCS#1 v1.5 sign",
     "native (CKM_RSA_PKCS; with our DigestInfo)", "CKM_RSA_PKCS"),
    (RAW_RSA_ONLY, "rsa2048", "RSA PKCS#1 v1.5 sign",
     "fallback (CKM_RSA_X_509; raw RSA with our PKCS#1 padding)",
     "CKM_RSA_X_509"),
    (COMBINED_ONLY, "rsa2048", "RSA PKCS#1 v1.5 sign",
     "fallback (CKM_SHA1_RSA_PKCS, CKM_SHA224_RSA_PKCS, CKM_SHA256_RSA_PKCS, "
     "CKM_SHA384_RSA_PKCS, CKM_SHA512_RSA_PKCS over the message; a "
     "precomputed digest cannot be signed)", "CKM_SHA256_RSA_PKCS"),
    (COMBINED_ONLY + ["CKM_SHA256_RSA_PKCS"], "rsa2048",
     "RSA PKCS#1 v1.5 sign",
     "fallback (CKM_SHA1_RSA_PKCS, CKM_SHA224_RSA_PKCS, CKM_SHA384_RSA_PKCS, "
     "CKM_SHA512_RSA_PKCS over the message; a precomputed digest cannot be "
     "signed)", None),
]


@pytest.mark.parametrize(
    "hide, label, operation, expected, used", CASES,
    ids=[f"{label}-{'+'.join(h) or 'all'}" for h, label, *_ in CASES])
def test_info_verdict_is_what_the_provider_does(token, info_tool, fault_env,
                                                faultmod_lib, tmp_path, hide,
                                                label, operation, expected,
                                                used):
    env = fault_env(hide)
    # No --module: PKCS11_PROVIDER_MODULE, as the provider reads it.
    tool_env = dict(env)
    tool_env["PKCS11_PROVIDER_MODULE"] = faultmod_lib
    p = info(info_tool, tool_env)
    assert p.stdout.startswith(f"Module: {faultmod_lib}\n"), p.stdout
    sec = token_section(p.stdout, token.label)
    assert verdict(sec, operation) == expected
    for mech in hide:
        assert not re.search(rf"^    {mech}\s", sec, re.M), \
            f"{mech} is hidden but listed"

    log_env = u.with_log(env, tmp_path / "sign.log", 2)
    p, inits = sign_mechanism(token, log_env, tmp_path, label,
                              ok=used is not None)
    if used is None:
        assert p.returncode == 1, u.describe(p)
        reasons = [e["reason"] for e in u.provider_errors(p.stderr)]
        assert MECH_UNSUPPORTED in reasons, u.describe(p)
        assert inits == []
    else:
        assert inits == [used], u.read_log(log_env)
        assert used in expected


def test_info_json_matches_the_text(token, info_tool, fault_env,
                                    faultmod_lib):
    env = fault_env(NO_ECDSA)
    args = ["--module", faultmod_lib]
    text = token_section(info(info_tool, env, *args).stdout, token.label)
    doc = json.loads(info(info_tool, env, *args, "--json").stdout)
    tok = next(t for t in doc["tokens"] if t["label"] == token.label)
    assert tok["serial"] == token.serial
    assert re.search(rf"^  URI:\s+{re.escape(tok['uri'])}$", text, re.M)
    names = [m["name"] for m in tok["mechanisms"]]
    assert "CKM_ECDSA" not in names and "CKM_ECDH1_DERIVE" in names
    for op in tok["operations"]:
        line = verdict(text, op["operation"])
        assert line.startswith(op["verdict"])
        assert op["how"] in line


def test_info_names_a_module_it_cannot_load(info_tool, tmp_path):
    missing = tmp_path / "no-such-module.so"
    p = info(info_tool, u.base_env(), "--module", missing, ok=False)
    assert p.returncode == 1
    assert p.stdout == ""
    assert f"cannot load the PKCS#11 module {missing}" in p.stderr
    assert "No such file" in p.stderr
