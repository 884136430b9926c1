"""Fixtures for the p11bridge pytest suite.

`make check` exports P11BRIDGE_PROVIDER (the built pkcs11.so), SOFTHSM_LIB,
P11BRIDGE_TOOLS, P11BRIDGE_INFO (p11bridge-info) and P11BRIDGE_SANITIZERS.
Nothing else is assumed: every token, config file and log lives under
pytest's tmp_path_factory.

Fixtures:
  token          session: the shared SoftHSM token "p11b-test" (never changed
                 by a test; see KEYS, NOPUB_KEYS and the certificates in
                 p11b_tokens.py)
  scratch_token  function: a small token of its own, for tests that change
                 token state or need a config that may go wrong
  big_token      session: 10,000 CKO_DATA objects plus the key pair "needle"
  ossl           session: run /usr/bin/openssl with the shared token's env
  make_config    the function make_config(token, **keys) -> env

What they build is in the helper modules: p11b_tokens.py (tokens and their
configs), p11b_certs.py (software certificates), p11b_faultmod.py (FaultRig);
p11b_util.py names every helper the tests use.
"""

import json
import os
import pwd
import stat
import sys
import time
from pathlib import Path

import pytest

import p11b_util as u
from p11b_certs import TlsCa, self_signed
from p11b_faultmod import make_fault_rig
from p11b_tokens import (HERE, SOFT_KEY_SPECS, KeySpec, fill_token_info,
                         import_private_kept, init_token, keygen, make_config,
                         make_token, remember_key, write_cert)
from p11b_util import PIN

# Printed in the terminal summary (pytest_terminal_summary, at the end).
TIMINGS = {}       # fixture and load times: name -> seconds
HANDSHAKE_MS = {}  # TLS handshake times: name -> milliseconds


# ---- environment from `make check` ---------------------------------------

def _required_path(var, what):
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: it must name {what}. Run the suite "
                    f"with `make check`, or export {var} yourself.",
                    pytrace=False)
    if not os.path.exists(value):
        pytest.fail(f"{var}={value} does not exist ({what})", pytrace=False)
    return value


@pytest.fixture(scope="session")
def provider_path():
    return _required_path("P11BRIDGE_PROVIDER",
                          "the built provider module (.libs/pkcs11.so)")


@pytest.fixture(scope="session")
def softhsm_lib():
    return _required_path("SOFTHSM_LIB", "SoftHSMv2's PKCS#11 module")


@pytest.fixture(scope="session")
def tools_dir():
    return Path(_required_path("P11BRIDGE_TOOLS",
                               "the directory holding p11b-stress"))


@pytest.fixture(scope="session")
def info_tool():
    return _required_path("P11BRIDGE_INFO",
                          "the built p11bridge-info (src/tools/p11bridge-info)")


# ---- fixtures -------------------------------------------------------------

@pytest.fixture(scope="session")
def token(tmp_path_factory, provider_path, softhsm_lib):
    tok = make_token(tmp_path_factory.mktemp("token"), "p11b-test",
                     softhsm_lib, provider_path)
    TIMINGS["token fixture"] = tok.build_seconds
    return tok


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_logs(request):
    """At the end: the shared debug log exists, and no log holds a PIN."""
    yield
    tok = getattr(request.session, "_p11b_token", None)
    if tok is not None and tok.log in u.USED_LOGS:
        written = tok.log.exists()
        assert written, f"debug log {tok.log} was never written"
    for log in sorted(u.LOGS):
        if log.exists():
            data = log.read_bytes()
            for secret in u.SECRETS:
                assert secret.encode() not in data, \
                    f"a PIN appears in the debug log {log}"


@pytest.fixture(autouse=True)
def _note_token(request):
    # no_secret_in_logs must not build the shared token by itself (a run of
    # only big-token tests should not pay for it): tests that use `token`
    # register it for the end-of-session check here.
    if "token" in request.fixturenames:
        request.session._p11b_token = request.getfixturevalue("token")
    yield


@pytest.fixture
def scratch_token(tmp_path_factory, provider_path, softhsm_lib):
    """A token of the test's own (rsa2048 and p256 key pairs, no certs)."""
    tok = make_token(tmp_path_factory.mktemp("scratch"), "p11b-scratch",
                     softhsm_lib, provider_path, full=False)
    yield tok
    for log in tok.root.rglob("*.log"):
        data = log.read_bytes()
        for secret in u.SECRETS:
            assert secret.encode() not in data, f"a PIN appears in {log}"


BIG_COUNT = 10_000
BIG_BATCH = 1_000


@pytest.fixture(scope="session")
def big_token(tmp_path_factory, provider_path, softhsm_lib):
    """10,000 public CKO_DATA objects, and the RSA pair "needle" (id ab)."""
    t0 = time.monotonic()
    tok = init_token(tmp_path_factory.mktemp("bigtoken"), "p11b-big",
                     softhsm_lib, provider_path)
    env = tok.tool_env()
    env["P11B_PIN"] = PIN
    p = u.run([sys.executable, HERE / "p11b_pykcs11.py", tok.module,
               tok.label, "fill", BIG_COUNT, BIG_BATCH], env, timeout=1800)
    fill = json.loads(p.stdout)
    keygen(tok, KeySpec("needle", "ab", "RSA", 2048, "rsa:2048"))
    fill_token_info(tok)
    tok.build_seconds = time.monotonic() - t0
    tok.fill_seconds = fill["seconds"]
    tok.fill_batches = fill["batch_seconds"]
    TIMINGS["big_token fixture"] = tok.build_seconds
    TIMINGS[f"  of which {BIG_COUNT} C_CreateObject"] = tok.fill_seconds
    return tok


@pytest.fixture(scope="session")
def ossl(token):
    """ossl(*args, env=None, ok=True, input=None) -> CompletedProcess.

    Runs /usr/bin/openssl with the shared token's environment (or env).
    ok=True raises with the full stdout/stderr on a nonzero exit; a death
    by signal fails in every case.
    """
    def call(*args, env=None, **kw):
        return token.ossl(*args, env=env, **kw)
    return call


@pytest.fixture(name="make_config", scope="session")
def make_config_fixture():
    return make_config


@pytest.fixture(scope="session")
def record_time():
    """record_time(name, seconds): shown in the terminal summary."""
    def record(name, seconds):
        TIMINGS[name] = seconds
    return record


@pytest.fixture(scope="session")
def soft_key_token(tmp_path_factory, provider_path, softhsm_lib):
    """Token "p11b-soft": nopub-rsa (id 07) and nopub-ec (id 08) imported
    from software with no public key objects, a self-signed certificate
    for nopub-ec (where the provider finds its public half), and
    tok.private_keys: label -> the cryptography private key."""
    t0 = time.monotonic()
    tok = init_token(tmp_path_factory.mktemp("softkeys"), "p11b-soft",
                     softhsm_lib, provider_path)
    tok.private_keys = {}
    for spec in SOFT_KEY_SPECS:
        tok.private_keys[spec.label] = import_private_kept(tok, spec)
    subject = "/O=p11bridge tests/CN=p11b-soft-nopub-ec"
    write_cert(tok, "nopub-ec", "08",
               self_signed(tok.private_keys["nopub-ec"], subject),
               subject, subject)
    fill_token_info(tok)
    tok.build_seconds = time.monotonic() - t0
    TIMINGS["soft_key_token fixture"] = tok.build_seconds
    return tok


# ---- faultmod rigs: a token reached through tests/faultmod ----------------

@pytest.fixture(scope="session")
def faultmod_lib():
    return _required_path("P11BRIDGE_FAULTMOD",
                          "the fault-injection module tests/faultmod/.libs/"
                          "faultmod.so")


@pytest.fixture
def fault_rig(faultmod_lib):
    """fault_rig(token, control="", log_level=3, **config) -> FaultRig."""
    def make(token, control="", log_level=3, **keys):
        return make_fault_rig(token, faultmod_lib, control, log_level, **keys)
    return make


# ---- application tests: a software CA, an Ed25519 token, a www-data token

@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory):
    """A software CA for TLS tests (TlsCa)."""
    return TlsCa(tmp_path_factory.mktemp("tls-ca"))


@pytest.fixture(scope="session")
def ed25519_token(tmp_path_factory, provider_path, softhsm_lib):
    """Token "p11b-ed25519" with one Ed25519 key pair, "ed25519" (id 41),
    made by pkcs11-tool; its public key exported by p11tool (pkcs11-tool
    0.23 writes no usable SPKI for Ed25519)."""
    t0 = time.monotonic()
    tok = init_token(tmp_path_factory.mktemp("ed25519"), "p11b-ed25519",
                     softhsm_lib, provider_path)
    tok.tool("--keypairgen", "--key-type", "EC:edwards25519",
             "--label", "ed25519", "--id", "41")
    env = tok.tool_env()
    env["GNUTLS_PIN"] = PIN
    p = u.run(["p11tool", "--provider", tok.module, "--login",
               "--export-pubkey",
               u.make_uri(token=tok.label, id="41", type="public")], env)
    remember_key(tok, KeySpec("ed25519", "41", "ED25519", 256),
                 u.normalize_spki(p.stdout.encode()), "p11tool",
                 has_public=True)
    fill_token_info(tok)
    tok.build_seconds = time.monotonic() - t0
    TIMINGS["ed25519_token fixture"] = tok.build_seconds
    return tok


WWW_USER = "www-data"  # the worker user of Debian's nginx and Apache


class WwwAccess:
    """Lets the unprivileged worker user (www-data) reach files under
    pytest's private (0700) temporary directories: o+x on directories,
    files handed over with chown. Modes are restored by restore()."""

    def __init__(self):
        if os.geteuid() != 0:
            pytest.fail("the nginx and Apache tests run the servers as root "
                        f"with {WWW_USER} workers: run them as root",
                        pytrace=False)
        try:
            pw = pwd.getpwnam(WWW_USER)
        except KeyError:
            pytest.fail(f"user {WWW_USER} does not exist (Debian's "
                        "base-passwd makes it)", pytrace=False)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.changed = {}

    def traverse(self, path):
        """o+x on path and on each of its ancestors."""
        for p in [Path(path), *Path(path).parents]:
            mode = stat.S_IMODE(p.stat().st_mode)
            if not mode & stat.S_IXOTH:
                self.changed.setdefault(p, mode)
                p.chmod(mode | stat.S_IXOTH)

    def give(self, path):
        """chown -R path to the worker user (root keeps its access)."""
        path = Path(path)
        for p in [path, *path.rglob("*")]:
            os.chown(p, self.uid, self.gid, follow_symlinks=False)

    def restore(self):
        for p, mode in reversed(list(self.changed.items())):
            if p.exists():
                p.chmod(mode)
        self.changed.clear()


@pytest.fixture(scope="session")
def www_access():
    access = WwwAccess()
    yield access
    access.restore()


@pytest.fixture(scope="session")
def www_token(tmp_path_factory, provider_path, softhsm_lib, www_access):
    """Token "p11b-www" (rsa2048 and p256 key pairs) that www-data owns
    and can reach, for servers whose workers drop privileges (nginx,
    Apache). Never changed by a test."""
    tok = make_token(tmp_path_factory.mktemp("wwwtoken"), "p11b-www",
                     softhsm_lib, provider_path, full=False)
    www_access.give(tok.root)
    www_access.traverse(tok.root)
    TIMINGS["www_token fixture"] = tok.build_seconds
    return tok


@pytest.fixture(scope="session")
def record_handshake():
    """record_handshake(name, seconds): a TLS handshake time to report."""
    def record(name, seconds):
        HANDSHAKE_MS[name] = seconds * 1000.0
    return record


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("p11bridge fixture and load times")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.2f} s")
    if HANDSHAKE_MS:
        terminalreporter.section("TLS handshake times (client side)")
        for name, ms in HANDSHAKE_MS.items():
            terminalreporter.write_line(f"{name}: {ms:.1f} ms")
