"""ECDH key exchange with token keys (openssl pkeyutl -derive).

The peer is a software key made by python3-cryptography; the secret must
equal cryptography's own ECDH of the peer's private key with the token's
public key (as the provider exports it). The derived secret is a session
object on the token, read once and destroyed: the level-2 debug log shows
both calls.

The peer-point form fallback uses tests/faultmod (P11BRIDGE_FAULTMOD) with
FAULTMOD_ECDH_DER_POINT=1, which accepts the peer point only DER-wrapped
and answers CKR_ARGUMENTS_BAD to a raw one. Its count file records what
the module returned to the provider, independently of our debug log.
"""

import json
import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import p11b_util as u
from test_provider import assert_misconfigured

CURVES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1,
          "nopub-ec": ec.SECP256R1}
PLAIN_OK = [("CKM_ECDH1_DERIVE", "CKR_OK")]
DESTROYED = "CKR_OK"  # the result of C_DestroyObject(slot N, derived secret)
CKR_OK, CKR_ARGUMENTS_BAD = 0x0, 0x7


# ---- helpers ---------------------------------------------------------------

def derive_calls(log, slot=None):
    """[(mechanism, rv)] of every C_DeriveKey in a debug log."""
    out = []
    rx = re.compile(r"C_DeriveKey\(slot (\d+), (\w+)\) -> (\w+)")
    for line in u.cryptoki_calls(log, "C_DeriveKey"):
        m = rx.search(line)
        assert m, f"C_DeriveKey log line not understood: {line}"
        if slot is not None:
            assert int(m.group(1)) == slot, line
        out.append((m.group(2), m.group(3)))
    return out


def destroy_lines(log):
    """The result of every C_DestroyObject of a derived secret."""
    rx = re.compile(r"C_DestroyObject\(slot \d+, derived secret\) -> (\w+)")
    out = []
    for line in u.cryptoki_calls(log, "C_DestroyObject"):
        m = rx.search(line)
        assert m, f"C_DestroyObject log line not understood: {line}"
        out.append(m.group(1))
    return out


def check_log(log, slot, calls, secret):
    """The C_DeriveKey calls are `calls`; each successful one's object is
    destroyed; the secret is nowhere in the log."""
    assert derive_calls(log, slot) == calls, log
    n_ok = sum(1 for _, rv in calls if rv == "CKR_OK")
    assert destroy_lines(log) == [DESTROYED] * n_ok, \
        "the derived secret object was not destroyed (exactly once)"
    if secret:
        assert secret.hex() not in log.lower(), "the secret is in the log"


def module_returns(count_file, name):
    """The values faultmod returned for `name`, in call order."""
    assert count_file.exists(), f"faultmod wrote no count file {count_file}"
    out = []
    for line in count_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            out.append(int(parts[2], 16))
    return out


@pytest.fixture(scope="module")
def token_public(token):
    """token_public(label): the EC public key the provider exports."""
    cache = {}

    def get(label):
        if label not in cache:
            p = token.ossl("pkey", "-in", token.uri(label, "private"),
                           "-pubout")
            spki = u.spki_der_from_pem(p.stdout)
            assert spki == token.keys[label].spki, \
                f"{label}: exported public key differs from " \
                f"{token.keys[label].spki_source}'s"
            cache[label] = serialization.load_der_public_key(spki)
        return cache[label]
    return get


@pytest.fixture(scope="module")
def token_mechanisms(token):
    """Mechanism names the token lists (pkcs11-tool -M), e.g. ECDH1-DERIVE."""
    out = token.tool("-M", login=False).stdout
    return {m.group(1) for m in re.finditer(r"^\s+([A-Z0-9-]+)", out, re.M)}


def make_peer(tmp_path, curve, name="peer"):
    key = ec.generate_private_key(CURVES[curve]())
    pem = tmp_path / f"{name}.pub.pem"
    pem.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pem


def derive(token, env, label, peer_pem, tmp_path, *opts, ok=True):
    out = tmp_path / "secret.bin"
    p = token.ossl("pkeyutl", "-derive", "-inkey",
                   token.uri(label, "private"), "-peerkey", peer_pem,
                   "-out", out, *opts, env=env, ok=ok)
    return p, (out.read_bytes() if out.exists() else b"")


def field_bytes(label):
    return (CURVES[label]().key_size + 7) // 8


def faultmod_env(make_config, token, tmp_path, **config):
    """Env running the provider on faultmod (DER-only ECDH points) over
    SoftHSM, with a count file under tmp_path; config: make_config keys."""
    path = os.environ.get("P11BRIDGE_FAULTMOD")
    if not path:
        pytest.fail("P11BRIDGE_FAULTMOD is not set: it must name the built "
                    "tests/faultmod/.libs/faultmod.so (make check sets it)",
                    pytrace=False)
    if not os.path.exists(path):
        pytest.fail(f"P11BRIDGE_FAULTMOD={path} does not exist: build "
                    "tests/faultmod first", pytrace=False)
    env = make_config(token, log_level=2, pkcs11_module_path=path, **config)
    env["FAULTMOD_MODULE"] = token.module
    env["FAULTMOD_ECDH_DER_POINT"] = "1"
    env["FAULTMOD_COUNT_FILE"] = str(tmp_path / "faultmod.calls")
    for var in ("FAULTMOD_HIDE_MECHS", "FAULTMOD_ONLY_MECHS",
                "FAULTMOD_CONTROL"):
        env.pop(var, None)
    return env


# ---- derivation -------------------------------------------------------------

@pytest.mark.parametrize("label", ["p256", "p384", "p521"])
def test_ecdh_secret_matches_software(token, token_public, tmp_path, label):
    peer, pem = make_peer(tmp_path, label)
    env = token.fresh_env(tmp_path, level=3)
    _, secret = derive(token, env, label, pem, tmp_path)
    assert len(secret) == field_bytes(label)
    assert secret == peer.exchange(ec.ECDH(), token_public(label)), \
        f"{label}: the token's ECDH secret differs from cryptography's"
    check_log(u.read_log(env), token.slot, PLAIN_OK, secret)


@pytest.mark.parametrize("label", ["p256", "p521"])
def test_ecdh_cofactor_mode_gives_the_same_secret(token, token_public,
                                                  token_mechanisms, tmp_path,
                                                  label):
    """Prime curves have cofactor 1: cofactor ECDH gives the plain secret.
    The provider uses CKM_ECDH1_COFACTOR_DERIVE where the token has it;
    SoftHSM 2.6.1 lists only ECDH1-DERIVE, which gives the same result on
    these curves."""
    peer, pem = make_peer(tmp_path, label)
    env = token.fresh_env(tmp_path, level=2)
    _, secret = derive(token, env, label, pem, tmp_path,
                       "-pkeyopt", "ecdh_cofactor_mode:1")
    assert secret == peer.exchange(ec.ECDH(), token_public(label))
    mech = ("CKM_ECDH1_COFACTOR_DERIVE"
            if "ECDH1-COFACTOR-DERIVE" in token_mechanisms
            else "CKM_ECDH1_DERIVE")
    check_log(u.read_log(env), token.slot, [(mech, "CKR_OK")], secret)


def test_ecdh_with_a_key_not_for_derive_is_a_clear_error(token, tmp_path):
    """nopub-ec was imported by pkcs11-tool, which leaves CKA_DERIVE false
    (checked here): the token refuses, and the error says so."""
    listing = token.tool("-O", "--type", "privkey").stdout
    blocks = [b for b in listing.split("Private Key Object")
              if re.search(r"label:\s+nopub-ec\s*$", b, re.M)]
    assert len(blocks) == 1, listing
    usage = re.search(r"Usage:\s+(.*)", blocks[0])
    assert usage and "derive" not in usage.group(1), \
        f"nopub-ec is expected to lack derive usage:\n{listing}"
    _, pem = make_peer(tmp_path, "nopub-ec")
    env = token.fresh_env(tmp_path, level=2)
    p, secret = derive(token, env, "nopub-ec", pem, tmp_path, ok=False)
    assert p.returncode == 1, u.describe(p)
    assert secret == b""
    assert "key usage not permitted" in p.stderr, p.stderr
    assert "CKR_KEY_FUNCTION_NOT_PERMITTED" in p.stderr, p.stderr
    assert not destroy_lines(u.read_log(env))


# (token key, peer curve)
OTHER_CURVE = [("p256", "p384"), ("p384", "p521"), ("p521", "p256")]


@pytest.mark.parametrize("label, peer_curve", OTHER_CURVE,
                         ids=[f"{a}-with-{b}-peer" for a, b in OTHER_CURVE])
def test_ecdh_peer_on_another_curve_fails_cleanly(token, tmp_path, label,
                                                  peer_curve):
    _, pem = make_peer(tmp_path, peer_curve)
    env = token.fresh_env(tmp_path, level=2)
    p, secret = derive(token, env, label, pem, tmp_path, ok=False)
    assert p.returncode == 1, u.describe(p)
    assert secret == b"", "a failed derivation wrote output"
    assert ":pkcs11:" in p.stderr or "different parameters" in p.stderr, \
        p.stderr
    assert re.search(r"(?i)curve|parameters|token operation failed",
                     p.stderr), p.stderr
    log = u.read_log(env)
    assert all(rv != "CKR_OK" for _, rv in derive_calls(log)), log
    assert not destroy_lines(log), log


# ---- the peer point's form (faultmod) ---------------------------------------

@pytest.mark.parametrize("label", ["p256", "p521"])  # p521: a long-form length
def test_ecdh_retries_with_a_der_point(token, token_public, make_config,
                                       tmp_path, label):
    """A module that wants the peer point DER-wrapped: the raw try gets
    CKR_ARGUMENTS_BAD, the DER retry succeeds."""
    env = faultmod_env(make_config, token, tmp_path)
    peer, pem = make_peer(tmp_path, label)
    _, secret = derive(token, env, label, pem, tmp_path)
    assert secret == peer.exchange(ec.ECDH(), token_public(label))
    check_log(u.read_log(env), token.slot,
              [("CKM_ECDH1_DERIVE", "CKR_ARGUMENTS_BAD")] + PLAIN_OK, secret)
    count_file = tmp_path / "faultmod.calls"
    assert module_returns(count_file, "C_DeriveKey") == \
        [CKR_ARGUMENTS_BAD, CKR_OK]
    assert module_returns(count_file, "C_DestroyObject") == [CKR_OK]


def test_ecdh_der_point_quirk_goes_der_first(token, token_public, make_config,
                                             tmp_path):
    env = faultmod_env(make_config, token, tmp_path,
                       pkcs11_module_quirks="ecdh-der-point")
    peer, pem = make_peer(tmp_path, "p384")
    _, secret = derive(token, env, "p384", pem, tmp_path)
    assert secret == peer.exchange(ec.ECDH(), token_public("p384"))
    check_log(u.read_log(env), token.slot, PLAIN_OK, secret)
    assert module_returns(tmp_path / "faultmod.calls", "C_DeriveKey") == \
        [CKR_OK]


def test_ecdh_raw_point_quirk_does_not_switch_form(token, make_config,
                                                   tmp_path):
    """pkcs11-module-quirks = ecdh-raw-point forces the raw form: against a
    DER-only module that is one refused C_DeriveKey and a clear error."""
    env = faultmod_env(make_config, token, tmp_path,
                       pkcs11_module_quirks="ecdh-raw-point")
    _, pem = make_peer(tmp_path, "p256")
    p, secret = derive(token, env, "p256", pem, tmp_path, ok=False)
    assert p.returncode == 1, u.describe(p)
    assert secret == b""
    assert "C_DeriveKey (ECDH)" in p.stderr, p.stderr
    assert "CKR_ARGUMENTS_BAD" in p.stderr, p.stderr
    check_log(u.read_log(env), token.slot,
              [("CKM_ECDH1_DERIVE", "CKR_ARGUMENTS_BAD")], None)
    assert module_returns(tmp_path / "faultmod.calls", "C_DeriveKey") == \
        [CKR_ARGUMENTS_BAD]


def test_ecdh_both_point_quirks_in_one_config_are_a_config_error(
        ossl, token, make_config):
    """ecdh-der-point and ecdh-raw-point force opposite forms: naming both
    is a configuration problem, not a silent pick of one."""
    env = make_config(token,
                      pkcs11_module_quirks="ecdh-der-point ecdh-raw-point")
    assert_misconfigured(ossl, token, env, "pkcs11-module-quirks")


def two_instances(env, quirks_a, quirks_b):
    """The config of env with a second instance of our provider (same
    module path and init args, so one module in the process): the first
    with quirks_a, the second, "pkcs11b", with quirks_b."""
    conf = Path(env["OPENSSL_CONF"])
    lines = conf.read_text().splitlines()
    start = lines.index("[pkcs11_sect]")
    sect = [line for line in lines[start + 1:]
            if line and not line.startswith("pkcs11-module-quirks")]
    out = [line for line in lines[:start + 1]]
    out[out.index("pkcs11 = pkcs11_sect")] += "\npkcs11b = pkcs11b_sect"
    out += [f"pkcs11-module-quirks = {quirks_a}"] + sect
    out += ["", "[pkcs11b_sect]", f"pkcs11-module-quirks = {quirks_b}"] + sect
    conf.write_text("\n".join(out) + "\n")
    return env


def test_ecdh_shared_module_with_both_point_quirks_probes(
        ossl, token, token_public, make_config, tmp_path):
    """Two provider instances share one module (the registry keys it by
    path and init args) and its quirks add up. When one asks for
    ecdh-der-point and the other for ecdh-raw-point, neither form is
    forced: whichever instance OpenSSL picks probes raw, then DER, on this
    DER-only module, and derives."""
    env = two_instances(faultmod_env(make_config, token, tmp_path),
                        "ecdh-raw-point", "ecdh-der-point")
    listing = ossl("list", "-providers", env=env).stdout
    assert "pkcs11b" in listing and listing.count("status: active") == 3, \
        listing
    peer, pem = make_peer(tmp_path, "p256")
    _, secret = derive(token, env, "p256", pem, tmp_path)
    assert secret == peer.exchange(ec.ECDH(), token_public("p256"))
    assert module_returns(tmp_path / "faultmod.calls", "C_DeriveKey") == \
        [CKR_ARGUMENTS_BAD, CKR_OK]
    log = u.read_log(env)
    assert derive_calls(log, token.slot) == \
        [("CKM_ECDH1_DERIVE", "CKR_ARGUMENTS_BAD")] + PLAIN_OK, log


# ---- a buffer shorter than the secret (issue 11, item 5) ---------------------

def run_derive(env, key, peer, outlen, ok=True):
    """tests/tools/p11b_derive.py: EVP_PKEY_derive into outlen bytes."""
    tool = os.path.join(os.path.dirname(u.ops_tool()), "p11b_derive.py")
    p = u.run(["/usr/bin/python3", tool, "--key", str(key), "--peer",
               str(peer), "--outlen", str(outlen)], env, ok=ok)
    return p, json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("label, outlen", [("p256", 16), ("p256", 31),
                                           ("p384", 20), ("p521", 1)])
def test_i11_05_ecdh_short_buffer_truncates(token, token_public, tmp_path,
                                            label, outlen):
    """A buffer shorter than the secret gets its leading bytes, as the
    default provider gives them (ECDH_compute_key): checked against the
    default provider deriving with the peer's private key and the token's
    public key, and against cryptography's full secret."""
    peer, peer_pub = make_peer(tmp_path, label)
    peer_priv = tmp_path / "peer.key.pem"
    peer_priv.write_bytes(peer.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    token_pub = tmp_path / "token.pub.pem"
    token_pub.write_bytes(token_public(label).public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    env = token.fresh_env(tmp_path, level=3)

    p, ours = run_derive(env, token.uri(label, "private"), peer_pub, outlen,
                         ok=False)
    assert p.returncode == 0 and ours["ok"], u.describe(p)
    _, theirs = run_derive(u.default_only_env(tmp_path),
                           peer_priv, token_pub, outlen)
    full = peer.exchange(ec.ECDH(), token_public(label))
    assert bytes.fromhex(theirs["secret"]) == full[:outlen]
    assert bytes.fromhex(ours["secret"]) == full[:outlen], \
        "the token's truncated secret differs from the default provider's"
    check_log(u.read_log(env), token.slot, PLAIN_OK, full)

    # The full size still gives the whole secret.
    _, whole = run_derive(env, token.uri(label, "private"), peer_pub,
                          len(full) + 8)
    assert bytes.fromhex(whole["secret"]) == full


# ---- one context used again and duplicated (issue 14, item 7) ----------------

@pytest.mark.parametrize("form", ["raw", "der-only"])
def test_ecdh_peer_point_follows_reuse_dup_and_new_peer(
        token, token_public, make_config, tmp_path, form):
    """The peer's point is encoded once per peer and kept in the context
    (in both forms). One context derives twice with peer 1, a duplicate of
    it derives, the first is given peer 2 and derives, and the duplicate
    derives once more: peer 1, 1, 1, 2, 1 - each checked against
    cryptography. Every derivation still reaches the token; on a DER-only
    module the DER form, probed once, serves the rest."""
    peer1, pem1 = make_peer(tmp_path, "p256", "peer1")
    peer2, pem2 = make_peer(tmp_path, "p256", "peer2")
    if form == "raw":
        env = token.fresh_env(tmp_path, level=2)
        calls = PLAIN_OK * 5
    else:
        env = faultmod_env(make_config, token, tmp_path)
        calls = [("CKM_ECDH1_DERIVE", "CKR_ARGUMENTS_BAD")] + PLAIN_OK * 5
    tool = os.path.join(os.path.dirname(u.ops_tool()), "p11b_derive.py")
    p = u.run(["/usr/bin/python3", tool, "--key", token.uri("p256", "private"),
               "--peer", str(pem1), "--peer", str(pem2), "--outlen", "32",
               "--reuse"], env, ok=False)
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and doc["ok"], u.describe(p)
    pub = token_public("p256")
    s1 = peer1.exchange(ec.ECDH(), pub).hex()
    s2 = peer2.exchange(ec.ECDH(), pub).hex()
    assert doc["secrets"] == [s1, s1, s1, s2, s1], (
        "secrets by step (peer 1, 1, dup 1, peer 2, dup 1):\n"
        + "\n".join(("peer1 " if x == s1 else "peer2 " if x == s2 else
                     "WRONG ") + str(x) for x in doc["secrets"]))
    check_log(u.read_log(env), token.slot, calls, None)
