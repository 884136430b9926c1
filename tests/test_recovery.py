"""Recovery: the token pulled and put back, sessions and logins lost under us.

The provider reaches the shared token through tests/faultmod, whose control
file a test rewrites while a process runs (tests/faultmod/README.md):
`removed` pulls the token, taking the line away re-inserts it (old
sessions are then invalid and the token is logged out), `fail FUNCTION RV
[COUNT]` makes calls fail, `max-sessions N` caps this process's sessions.
Nothing of this touches the token's files: every fault lives in the memory
of the one process under test.

A long-running `openssl s_server -www` serves TLS handshakes with a token
key; the client is Python's ssl module, which verifies the chain (a CA and
a leaf made in this module with the token's keys through the provider).
Every handshake runs with a socket timeout and is timed: a failure must
come fast, never as a hang.

What the promises look like in the evidence:
  - faultmod's count file: one line per call with its CK_RV, per pid;
  - the provider's debug log (level 3): 'C_Sign(...) -> CKR_...',
    'C_Login(slot N, CKU_USER) -> CKR_...' lines in call order;
  - s_server's stderr: the provider's error lines for failed handshakes.
"""

import os
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u
from p11b_faultmod import CKR
from p11b_secrets import PIN, WRONG_PIN

FAST = 5.0          # seconds: the most one failed handshake may take
CA_KEY = "rsa3072"  # the CA's key, on the token too
LEAVES = ["p256", "rsa2048"]
TOKEN_GONE = "token removed or not present"


# ---- certificates -----------------------------------------------------------

@pytest.fixture(scope="module")
def tls(token, tmp_path_factory):
    """{"ca": ca.pem, "p256": leaf.pem, "rsa2048": leaf.pem}: a CA whose key
    is the token's rsa3072, and a localhost leaf for each token key in
    LEAVES, all made by openssl through the provider."""
    d = tmp_path_factory.mktemp("tls")
    ca = d / "ca.pem"
    token.ossl("req", "-new", "-x509", "-key", token.uri(CA_KEY, "private"),
               "-days", "2", "-subj", "/O=p11bridge tests/CN=recovery CA",
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign,cRLSign",
               "-out", ca)
    ext = d / "leaf.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\n"
                   "subjectAltName=DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\n")
    out = {"ca": ca}
    for serial, label in enumerate(LEAVES, start=2):
        csr, leaf = d / f"{label}.csr", d / f"{label}.pem"
        token.ossl("req", "-new", "-key", token.uri(label, "private"),
                   "-subj", "/O=p11bridge tests/CN=localhost", "-out", csr)
        token.ossl("x509", "-req", "-in", csr, "-CA", ca,
                   "-CAkey", token.uri(CA_KEY, "private"),
                   "-set_serial", str(serial), "-days", "2",
                   "-extfile", ext, "-out", leaf)
        cert = x509.load_pem_x509_certificate(leaf.read_bytes())
        assert cert.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo) == \
            token.keys[label].spki
        out[label] = leaf
    return out


# ---- s_server (p11b_util.SServer) ---------------------------------------------

@pytest.fixture
def server(tls, tmp_path):
    """server(rig, label, key_uri=None) -> a running SServer (stopped at
    the end of the test)."""
    started = []

    def start(rig, label, key_uri=None):
        uri = key_uri or rig.token.uri(label, "private")
        s = u.SServer(rig.env, tls[label], uri, tmp_path, tls["ca"])
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


def all_ok(results, what, srv=None):
    bad = [r for r in results if not r[0]]
    tail = ""
    if bad and srv is not None:
        tail = "\ns_server's last errors:\n" + "\n".join(
            srv.stderr().splitlines()[-6:])
    assert not bad, f"{what}: failed handshakes {bad}{tail}"


def all_fail_fast(results, what):
    assert all(not ok for ok, _, _ in results), \
        f"{what}: a handshake succeeded: {results}"
    slow = [r for r in results if r[2] > FAST]
    assert not slow, f"{what}: failing handshakes took too long: {slow}"


def assert_secret_free(rig, *outputs):
    u.assert_no_secret(("the level-3 debug log", u.log_path(rig.env)),
                       ("faultmod's count file", rig.count), *outputs)


# ---- the token pulled and put back under a running server --------------------

@pytest.mark.parametrize("label", LEAVES)
def test_token_pulled_and_reinserted_under_s_server(token, fault_rig, server,
                                                    label):
    rig = fault_rig(token)
    srv = server(rig, label)
    all_ok(srv.handshakes(3), "before the removal", srv)
    logins_before = u.rvs_of(rig.calls(), "C_Login")
    assert logins_before == [0], logins_before

    rig.set("removed\n")
    all_fail_fast(srv.handshakes(3), "token removed")
    assert srv.alive(), "s_server died with the token"
    assert TOKEN_GONE in srv.stderr(), srv.stderr()

    rig.set("# re-inserted\n")
    all_ok(srv.handshakes(3), "after re-insertion", srv)
    assert srv.alive()
    # one new login for the re-inserted token (the configured PIN), not
    # one per handshake, and none while it was gone
    assert u.rvs_of(rig.calls(), "C_Login") == [0, 0]
    assert u.log_logins(rig.log()) == ["CKR_OK", "CKR_OK"]
    # the key was found again on the re-inserted token
    assert u.found_counts(rig.log())[-1] >= 1
    assert_secret_free(rig, ("s_server's stderr",
                             u._hide_args(srv.stop(), srv.argv)))


def test_token_pulled_again_and_again(token, fault_rig, server):
    """Three pull/re-insert cycles under a session cap: each time the
    server comes back, and this process never holds more sessions than the
    token allows."""
    rig = fault_rig(token, control="max-sessions 4\n")
    srv = server(rig, "p256")
    all_ok(srv.handshakes(2), "at start", srv)
    reinserted = []  # where in the count file the old sessions died
    for cycle in range(3):
        rig.set(f"max-sessions 4\nremoved\n# cycle {cycle}\n")
        all_fail_fast(srv.handshakes(2), f"cycle {cycle}: removed")
        reinserted.append(len(rig.calls()))  # the server is idle now
        rig.set(f"max-sessions 4\n# cycle {cycle}: back\n")
        all_ok(srv.handshakes(2), f"cycle {cycle}: re-inserted", srv)
    calls = rig.calls()
    assert CKR["CKR_SESSION_COUNT"] not in u.rvs_of(calls, "C_OpenSession")
    assert max(u.open_session_peaks(calls, reinserted).values()) <= 4
    assert u.rvs_of(calls, "C_Login") == [0] * 4


@pytest.mark.parametrize("cache, comes_back", [("cache", True),
                                               ("none", False)])
def test_reinserted_token_and_a_uri_pin(token, fault_rig, server, cache,
                                        comes_back):
    """The key's PIN came in the URI only. With pkcs11-module-cache-pins =
    cache the server logs in again by itself after re-insertion; without
    it, handshakes fail fast with "no PIN available for login"."""
    rig = fault_rig(token, pkcs11_module_token_pin=None,
                    pkcs11_module_cache_pins=cache)
    srv = server(rig, "p256", token.uri("p256", "private", pin_value=PIN))
    all_ok(srv.handshakes(2), "at start", srv)
    rig.set("removed\n")
    all_fail_fast(srv.handshakes(1), "removed")
    rig.set("# back\n")
    results = srv.handshakes(3)
    if comes_back:
        all_ok(results, "re-inserted, PIN cached", srv)
        assert u.rvs_of(rig.calls(), "C_Login") == [0, 0]
    else:
        all_fail_fast(results, "re-inserted, PIN not kept")
        assert "no PIN available for login" in srv.stderr()
        assert u.rvs_of(rig.calls(), "C_Login") == [0]
    assert_secret_free(rig, ("s_server's stderr",
                             u._hide_args(srv.stop(), srv.argv)))


# ---- a failed login is never retried -------------------------------------------

def test_failed_relogin_after_reinsertion_is_not_retried(token, fault_rig,
                                                         server):
    """The server started with the URI's (right) PIN; the configured PIN is
    wrong. After re-insertion the token really is logged out, the
    configured PIN is refused once, and never presented again."""
    rig = fault_rig(token, pkcs11_module_token_pin=WRONG_PIN)
    srv = server(rig, "p256", token.uri("p256", "private", pin_value=PIN))
    all_ok(srv.handshakes(2), "at start", srv)
    assert u.rvs_of(rig.calls(), "C_Login") == [0]
    rig.set("removed\n")
    srv.handshakes(1)
    rig.set("# back\n")
    all_fail_fast(srv.handshakes(4), "re-inserted, wrong configured PIN")
    assert u.rvs_of(rig.calls(), "C_Login") == [0, CKR["CKR_PIN_INCORRECT"]]
    assert u.log_logins(rig.log()) == ["CKR_OK", "CKR_PIN_INCORRECT"]
    err = srv.stop()
    reasons = [e["reason"] for e in u.provider_errors(err)]
    assert reasons.count("PIN incorrect") == 1, err
    assert "PIN already rejected, not retried" in reasons, err
    assert_secret_free(rig, ("s_server's stderr",
                             u._hide_args(err, srv.argv)))


def test_lost_login_with_a_refused_pin_costs_one_login(token, fault_rig,
                                                       server):
    """C_Sign says CKR_USER_NOT_LOGGED_IN, and the token refuses the PIN
    when the provider logs in again: exactly one C_Login for that, however
    many handshakes follow."""
    rig = fault_rig(token)
    srv = server(rig, "p256")
    all_ok(srv.handshakes(2), "at start", srv)
    rig.set("fail C_Sign CKR_USER_NOT_LOGGED_IN 1\n"
            "fail C_Login CKR_PIN_INCORRECT\n")
    all_fail_fast(srv.handshakes(4), "login lost, PIN refused")
    assert u.rvs_of(rig.calls(), "C_Login") == [0, CKR["CKR_PIN_INCORRECT"]]
    err = srv.stop()
    reasons = [e["reason"] for e in u.provider_errors(err)]
    assert reasons.count("PIN incorrect") == 1, err
    assert "PIN already rejected, not retried" in reasons, err


# ---- sessions and handles lost under a long-running server -----------------------

RECOVERABLE = ["CKR_USER_NOT_LOGGED_IN", "CKR_SESSION_HANDLE_INVALID",
               "CKR_OBJECT_HANDLE_INVALID"]


@pytest.mark.parametrize("rv", RECOVERABLE)
def test_repeated_recoveries_keep_sessions_bounded(token, fault_rig, server,
                                                   rv):
    """Five times in a row one C_Sign fails with `rv` (retried afresh by the
    provider). A token that caps sessions at 4 must keep serving: sessions
    the provider stops using must be closed, not forgotten."""
    rig = fault_rig(token, control="max-sessions 4\n")
    srv = server(rig, "p256")
    all_ok(srv.handshakes(2), "at start", srv)
    for i in range(5):
        rig.set(f"max-sessions 4\nfail C_Sign {rv} 1\n# round {i}\n")
        all_ok(srv.handshakes(2), f"round {i} after {rv}", srv)
    calls = rig.calls()
    assert u.rvs_of(calls, "C_Sign").count(CKR[rv]) == 5
    assert CKR["CKR_SESSION_COUNT"] not in u.rvs_of(calls, "C_OpenSession")
    assert max(u.open_session_peaks(calls).values()) <= 4


# ---- single operations: one transparent retry, clear errors -----------------------

def sign_op(rig, tmp_path, label):
    msg = tmp_path / "msg.bin"
    msg.write_bytes(os.urandom(3000))
    sig = tmp_path / "sig.bin"
    p = rig.ossl("dgst", "-sha256", "-sign", rig.token.uri(label, "private"),
                 "-out", sig, msg, ok=False)

    def check():
        pub = serialization.load_der_public_key(rig.token.keys[label].spki)
        if rig.token.keys[label].kind == "EC":
            pub.verify(sig.read_bytes(), msg.read_bytes(),
                       ec.ECDSA(hashes.SHA256()))
        else:
            pub.verify(sig.read_bytes(), msg.read_bytes(), padding.PKCS1v15(),
                       hashes.SHA256())
    return p, check


def decrypt_op(rig, tmp_path, label="rsa2048"):
    secret = os.urandom(32)
    pub = serialization.load_der_public_key(rig.token.keys[label].spki)
    (tmp_path / "ct.bin").write_bytes(pub.encrypt(secret, padding.PKCS1v15()))
    out = tmp_path / "pt.bin"
    p = rig.ossl("pkeyutl", "-decrypt", "-inkey",
                 rig.token.uri(label, "private"), "-in", tmp_path / "ct.bin",
                 "-out", out, ok=False)

    def check():
        assert out.read_bytes() == secret
    return p, check


def derive_op(rig, tmp_path, label="p256"):
    peer = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "peer.pem").write_bytes(peer.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    out = tmp_path / "secret.bin"
    p = rig.ossl("pkeyutl", "-derive", "-inkey",
                 rig.token.uri(label, "private"), "-peerkey",
                 tmp_path / "peer.pem", "-out", out, ok=False)

    def check():
        pub = serialization.load_der_public_key(rig.token.keys[label].spki)
        assert out.read_bytes() == peer.exchange(ec.ECDH(), pub)
    return p, check


OPS = {  # name -> (run, the Cryptoki call the fault hits)
    "sign-p256": (lambda r, t: sign_op(r, t, "p256"), "C_Sign"),
    "sign-rsa2048": (lambda r, t: sign_op(r, t, "rsa2048"), "C_Sign"),
    "decrypt-rsa2048": (decrypt_op, "C_Decrypt"),
    "derive-p256": (derive_op, "C_DeriveKey"),
}
RETRIED = ["CKR_SESSION_HANDLE_INVALID", "CKR_SESSION_CLOSED",
           "CKR_USER_NOT_LOGGED_IN"]


@pytest.mark.parametrize("rv", RETRIED)
@pytest.mark.parametrize("op", list(OPS))
def test_lost_session_or_login_is_retried_once(token, fault_rig, tmp_path,
                                               op, rv):
    run, fn = OPS[op]
    rig = fault_rig(token, control=f"fail {fn} {rv} 1\n")
    p, check = run(rig, tmp_path)
    assert p.returncode == 0, u.describe(p)
    check()
    assert u.rvs_of(rig.calls(), fn) == [CKR[rv], 0], \
        f"{fn}: expected the failure, then one success"
    lines = u.cryptoki_calls(rig.log(), fn)
    assert [line.rsplit("-> ", 1)[1].split(",")[0] for line in lines] == \
        [rv, "CKR_OK"], lines
    logins = u.log_logins(rig.log())
    if rv == "CKR_USER_NOT_LOGGED_IN":
        # logged in again with the configured PIN (SoftHSM itself never
        # lost the login, so it may answer "already logged in")
        assert len(logins) == 2 and logins[1] in (
            "CKR_OK", "CKR_USER_ALREADY_LOGGED_IN"), logins
    assert_secret_free(rig, ("stdout", p.stdout), ("stderr", p.stderr))


def test_prompted_pin_serves_the_relogin(token, fault_rig, tmp_path):
    """No PIN configured: the PIN openssl's passphrase callback gave (here
    -passin) is kept, so a lost login is redone without asking again."""
    rig = fault_rig(token, control="fail C_Sign CKR_USER_NOT_LOGGED_IN 1\n",
                    pkcs11_module_token_pin=None)
    msg, sig = tmp_path / "msg.bin", tmp_path / "sig.bin"
    msg.write_bytes(os.urandom(500))
    p = rig.ossl("dgst", "-sha256", "-sign", token.uri("p256", "private"),
                 "-passin", f"pass:{PIN}", "-out", sig, msg)
    pub = serialization.load_der_public_key(token.keys["p256"].spki)
    pub.verify(sig.read_bytes(), msg.read_bytes(), ec.ECDSA(hashes.SHA256()))
    assert u.rvs_of(rig.calls(), "C_Sign") == [CKR["CKR_USER_NOT_LOGGED_IN"], 0]
    assert len(u.rvs_of(rig.calls(), "C_Login")) == 2, "no second login"
    assert_secret_free(rig, ("stdout", p.stdout),
                       ("stderr", u._hide_args(p.stderr, p.args)))


FATAL = [("CKR_DEVICE_ERROR", "token operation failed"),
         ("CKR_FUNCTION_FAILED", "token operation failed"),
         ("CKR_DEVICE_REMOVED", TOKEN_GONE)]


@pytest.mark.parametrize("rv, reason", FATAL, ids=[r for r, _ in FATAL])
@pytest.mark.parametrize("op", list(OPS))
def test_token_failure_is_a_clear_error(token, fault_rig, tmp_path, op, rv,
                                        reason):
    """Every call fails with rv: one attempt, no retry, exit 1 (no crash),
    and an error line with the reason."""
    run, fn = OPS[op]
    rig = fault_rig(token, control=f"fail {fn} {rv}\n")
    p, _ = run(rig, tmp_path)
    assert p.returncode == 1, u.describe(p)
    assert u.rvs_of(rig.calls(), fn) == [CKR[rv]], \
        f"{fn} was tried {len(u.rvs_of(rig.calls(), fn))} times"
    errors = u.provider_errors(p.stderr)
    assert errors, f"no provider error line\n{p.stderr}"
    if op.startswith("decrypt") and reason != TOKEN_GONE:
        # RSA decryption failures all read alike (Bleichenbacher)
        assert errors[-1]["reason"] == "token operation failed"
    else:
        assert errors[-1]["reason"] == reason, p.stderr
        assert rv in errors[-1]["data"], p.stderr
    assert_secret_free(rig, ("stdout", p.stdout), ("stderr", p.stderr))


# The error text carries the Cryptoki function that failed (docs/DESIGN.md,
# "Layers"): an administrator reading "C_Login ... CKR_SESSION_COUNT" looks
# for a PIN problem, not for a session limit.
FAILING_CALLS = [("C_SignInit", "sign-p256"), ("C_Sign", "sign-p256"),
                 ("C_OpenSession", "sign-p256"),
                 ("C_FindObjectsInit", "sign-p256"),
                 ("C_DeriveKey", "derive-p256")]


@pytest.mark.parametrize("fn, op", FAILING_CALLS,
                         ids=[f for f, _ in FAILING_CALLS])
def test_error_names_the_call_that_failed(token, fault_rig, tmp_path, fn,
                                          op):
    rig = fault_rig(token, control=f"fail {fn} CKR_DEVICE_ERROR\n")
    p, _ = OPS[op][0](rig, tmp_path)
    assert p.returncode == 1, u.describe(p)
    assert CKR["CKR_DEVICE_ERROR"] in u.rvs_of(rig.calls(), fn)
    errors = u.provider_errors(p.stderr)
    assert errors, p.stderr
    data = errors[-1]["data"]
    assert re.search(rf"(?<![A-Za-z_]){fn}(?![A-Za-z_])", data), \
        f"the error does not name {fn}: {data}"
    assert "CKR_DEVICE_ERROR" in data, data
