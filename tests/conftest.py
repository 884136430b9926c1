"""Fixtures for the p11bridge pytest suite.

`make check` exports P11BRIDGE_PROVIDER (the built pkcs11.so), SOFTHSM_LIB,
P11BRIDGE_TOOLS and P11BRIDGE_SANITIZERS. Nothing else is assumed: every
token, config file and log lives under pytest's tmp_path_factory.

Fixtures:
  token          session: the shared SoftHSM token "p11b-test" (never changed
                 by a test; see KEYS, NOPUB_KEYS and the certificates below)
  scratch_token  function: a small token of its own, for tests that change
                 token state or need a config that may go wrong
  big_token      session: 10,000 CKO_DATA objects plus the key pair "needle"
  ossl           session: run /usr/bin/openssl with the shared token's env
  make_config    the function make_config(token, **keys) -> env
"""

import datetime
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import p11b_util as u
from p11b_util import PIN, SO_PIN

HERE = Path(__file__).resolve().parent
# Printed in the terminal summary (pytest_terminal_summary, at the end).
TIMINGS = {}       # fixture and load times: name -> seconds
HANDSHAKE_MS = {}  # TLS handshake times: name -> milliseconds


# ---- what the shared token holds -------------------------------------------

@dataclass
class KeySpec:
    label: str
    id: str        # hex CKA_ID
    kind: str      # "RSA" or "EC"
    bits: int
    keygen: Optional[str] = None  # pkcs11-tool --key-type; None: imported


KEYS = [
    KeySpec("rsa2048", "01", "RSA", 2048, "rsa:2048"),
    KeySpec("rsa3072", "02", "RSA", 3072, "rsa:3072"),
    KeySpec("rsa4096", "03", "RSA", 4096, "rsa:4096"),
    KeySpec("p256", "04", "EC", 256, "EC:prime256v1"),
    KeySpec("p384", "05", "EC", 384, "EC:secp384r1"),
    KeySpec("p521", "06", "EC", 521, "EC:secp521r1"),
]
# Private key objects with no public key object next to them, made in
# software and imported: the provider must find their public halves
# elsewhere (RSA: the private object's modulus; EC: the certificate).
NOPUB_KEYS = [
    KeySpec("nopub-rsa", "07", "RSA", 2048),
    KeySpec("nopub-ec", "08", "EC", 256),
]
LEAF_CERTS = ("rsa2048", "p256", "nopub-ec")  # certificate label = key label
CA_LABEL, CA_ID = "ca-cert", "20"
CA_SUBJECT = "/O=p11bridge tests/CN=p11b test CA"
CA_SERIAL = 0x2000

SCRATCH_KEYS = [KEYS[0], KEYS[3]]  # rsa2048 and p256


@dataclass
class KeyInfo:
    label: str
    id: str
    kind: str
    bits: int
    has_public: bool     # a CKO_PUBLIC_KEY object is on the token
    spki: bytes          # the expected SubjectPublicKeyInfo, DER
    spki_source: str     # who produced spki: pkcs11-tool, p11tool, software
    pub_pem: Path        # spki as a PEM file in the token root


@dataclass
class CertInfo:
    label: str
    id: str
    der: bytes
    pem_path: Path
    der_path: Path
    subject: str         # openssl's "/O=.../CN=..." form, for -subject
    issuer: str
    serial: int
    sha1: str            # hex SHA-1 of the DER, for -fingerprint


@dataclass
class Token:
    label: str
    root: Path
    env: dict            # for processes that load the provider
    module: str          # the SoftHSM module
    provider: str        # the p11bridge provider module
    conf: Path           # openssl.cnf
    softhsm_conf: Path
    pin_file: Path
    log: Path
    pkcs11_keys: dict    # the [pkcs11_sect] entries of conf
    keys: dict = field(default_factory=dict)    # label -> KeyInfo
    certs: dict = field(default_factory=dict)   # label -> CertInfo
    manufacturer: str = ""
    model: str = ""
    serial: str = ""
    slot: int = -1       # SoftHSM's slot id for the token
    build_seconds: float = 0.0

    # -- URIs
    def uri(self, label=None, type=None, **extra):
        """pkcs11:token=<this token>[;object=label][;...][;type=type]."""
        return u.make_uri(token=self.label, object=label, type=type, **extra)

    # -- running things
    def tool_env(self):
        """Environment for pkcs11-tool/p11tool/softhsm2-util (no provider)."""
        env = u.base_env()
        env["SOFTHSM2_CONF"] = str(self.softhsm_conf)
        return env

    def run(self, argv, env=None, **kw):
        """Run a program that loads the provider with this token's env."""
        return u.run(argv, self.env if env is None else env, **kw)

    def ossl(self, *args, env=None, **kw):
        return u.openssl(self.env if env is None else env, *args, **kw)

    def tool(self, *args, login=True, ok=True):
        argv = ["pkcs11-tool", "--module", self.module,
                "--token-label", self.label]
        if login:
            argv += ["--login", "--pin", PIN]
        return u.run(argv + list(args), self.tool_env(), ok=ok)

    def fresh_env(self, directory, level=3):
        """This token's env logging to a new file under directory."""
        return u.with_log(self.env, Path(directory) / "p11bridge.log", level)

    def read_log(self):
        return self.log.read_text(errors="backslashreplace") \
            if self.log.exists() else ""

    def public_keys(self):
        return [k for k in self.keys.values() if k.has_public]


# ---- configuration files ---------------------------------------------------

def write_openssl_cnf(path, pkcs11_keys):
    lines = ["openssl_conf = openssl_init", "",
             "[openssl_init]", "providers = provider_sect", "",
             "[provider_sect]", "default = default_sect",
             "pkcs11 = pkcs11_sect", "",
             "[default_sect]", "activate = 1", "",
             "[pkcs11_sect]"]
    lines += [f"{k} = {v}" for k, v in pkcs11_keys.items()]
    Path(path).write_text("\n".join(lines) + "\n")


def make_config(token, log_level=3, **keys):
    """Write an openssl.cnf like token's with [pkcs11_sect] entries changed.

    Keyword names map to config keys with '_' -> '-'
    (pkcs11_module_login_behavior="never"); a value of None removes the
    key. The config gets its own directory and debug log under token.root.
    Returns the environment to run openssl with.
    """
    entries = dict(token.pkcs11_keys)
    for name, value in keys.items():
        name = name.replace("_", "-")
        if value is None:
            entries.pop(name, None)
        else:
            entries[name] = value
    # "activate" last, as a human would write it
    if "activate" in entries:
        entries["activate"] = entries.pop("activate")
    cfg_root = token.root / "configs"
    cfg_root.mkdir(exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="cnf-", dir=cfg_root))
    conf = directory / "openssl.cnf"
    write_openssl_cnf(conf, entries)
    env = u.with_log(token.env, directory / "p11bridge.log", log_level)
    env["OPENSSL_CONF"] = str(conf)
    return env


# ---- environment from `make check` -----------------------------------------

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


# ---- building tokens -------------------------------------------------------

def _init_token(root, label, lib, provider):
    """An empty SoftHSM token with its own conf, pin file and openssl.cnf."""
    root = Path(root)
    (root / "tokens").mkdir()
    softhsm_conf = root / "softhsm2.conf"
    softhsm_conf.write_text(f"directories.tokendir = {root / 'tokens'}\n"
                            "objectstore.backend = file\n"
                            "log.level = ERROR\n")
    pin_file = root / "pin.txt"
    pin_file.write_text(PIN)
    pin_file.chmod(0o600)
    pkcs11_keys = {"module": provider,
                   "pkcs11-module-path": lib,
                   "pkcs11-module-token-pin": f"file:{pin_file}",
                   "activate": "1"}
    conf = root / "openssl.cnf"
    write_openssl_cnf(conf, pkcs11_keys)
    log = root / "p11bridge.log"
    env = u.provider_env(conf, softhsm_conf, log, level=3)
    tok = Token(label=label, root=root, env=env, module=lib,
                provider=provider, conf=conf, softhsm_conf=softhsm_conf,
                pin_file=pin_file, log=log, pkcs11_keys=pkcs11_keys)
    u.run(["softhsm2-util", "--init-token", "--free", "--label", label,
           "--pin", PIN, "--so-pin", SO_PIN], tok.tool_env())
    return tok


def token_info(tok, with_objects=False):
    """Token info (and, if asked, a summary of every object) via PyKCS11."""
    env = tok.tool_env()
    argv = [sys.executable, HERE / "p11b_pykcs11.py", tok.module, tok.label,
            "info"]
    if with_objects:
        env["P11B_PIN"] = PIN
        argv.append("objects")
    return json.loads(u.run(argv, env).stdout)


def _export_pubkey(tok, spec):
    """SPKI DER of a token public key: pkcs11-tool, else p11tool.

    pkcs11-tool 0.23 cannot export EC P-384 keys ("cannot create
    EVP_PKEY"); gnutls' p11tool can.
    """
    out = tok.root / f"{spec.label}.pub.der"
    p = tok.tool("--read-object", "--type", "pubkey", "--id", spec.id,
                 "-o", out, login=False, ok=False)
    if p.returncode == 0 and out.exists() and out.stat().st_size:
        return u.normalize_spki(out.read_bytes()), "pkcs11-tool"
    env = tok.tool_env()
    env["GNUTLS_PIN"] = PIN  # p11tool insists on logging in for export
    url = u.make_uri(token=tok.label, id=spec.id, type="public")
    p = u.run(["p11tool", "--provider", tok.module, "--login",
               "--export-pubkey", url], env)
    return u.normalize_spki(p.stdout.encode()), "p11tool"


def _keygen(tok, spec):
    tok.tool("--keypairgen", "--key-type", spec.keygen,
             "--label", spec.label, "--id", spec.id)
    spki, source = _export_pubkey(tok, spec)
    return _remember_key(tok, spec, spki, source, has_public=True)


def _remember_key(tok, spec, spki, source, has_public):
    pem = tok.root / f"{spec.label}.pub.pem"
    key = serialization.load_der_public_key(spki)
    pem.write_bytes(key.public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    info = KeyInfo(spec.label, spec.id, spec.kind, spec.bits, has_public,
                   spki, source, pem)
    tok.keys[spec.label] = info
    return info


def _import_private(tok, spec):
    """A software key whose private half only goes to the token."""
    if spec.kind == "RSA":
        key = rsa.generate_private_key(public_exponent=65537,
                                       key_size=spec.bits)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER,
                            serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = tok.root / f".{spec.label}.p8"
    tmp.write_bytes(der)
    try:
        tok.tool("--write-object", tmp, "--type", "privkey",
                 "--id", spec.id, "--label", spec.label)
    finally:
        tmp.unlink()  # the software private key is not kept
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    _remember_key(tok, spec, spki, "software", has_public=False)
    return key.public_key()


def _name(oneline):
    attrs = {"O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
    rdns = []
    for part in oneline.strip("/").split("/"):
        k, v = part.split("=", 1)
        rdns.append(x509.NameAttribute(attrs[k], v))
    return x509.Name(rdns)


def _write_cert(tok, label, kid, cert, subject, issuer):
    der = cert.public_bytes(serialization.Encoding.DER)
    der_path = tok.root / f"{label}.crt.der"
    pem_path = tok.root / f"{label}.crt.pem"
    der_path.write_bytes(der)
    pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tok.tool("--write-object", der_path, "--type", "cert",
             "--id", kid, "--label", label)
    tok.certs[label] = CertInfo(
        label, kid, der, pem_path, der_path, subject, issuer,
        cert.serial_number, cert.fingerprint(hashes.SHA1()).hex().upper())


def _make_certs(tok, nopub_ec_public):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    (tok.root / "ca-key.pem").write_bytes(ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(_name(CA_SUBJECT)).issuer_name(_name(CA_SUBJECT))
          .public_key(ca_key.public_key()).serial_number(CA_SERIAL)
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                         critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False,
                                       True, True, False, False),
                         critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    _write_cert(tok, CA_LABEL, CA_ID, ca, CA_SUBJECT, CA_SUBJECT)

    for label in LEAF_CERTS:
        info = tok.keys[label]
        if label == "nopub-ec":
            public = nopub_ec_public
        else:
            public = serialization.load_der_public_key(info.spki)
        subject = f"/O=p11bridge tests/CN=p11b-{label}"
        serial = 0x1000 + int(info.id, 16)
        cert = (x509.CertificateBuilder()
                .subject_name(_name(subject)).issuer_name(ca.subject)
                .public_key(public).serial_number(serial)
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False,
                                                     path_length=None),
                               critical=True)
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH,
                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier
                               .from_issuer_subject_key_identifier(ca_ski),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_cert(tok, label, info.id, cert, subject, CA_SUBJECT)


def _fill_token_info(tok):
    info = token_info(tok)
    tok.manufacturer = info["manufacturer"]
    tok.model = info["model"]
    tok.serial = info["serial"]
    tok.slot = info["slot"]


def make_token(root, label, lib, provider, full=True):
    """A fresh token. full: the shared token's contents; else SCRATCH_KEYS."""
    t0 = time.monotonic()
    tok = _init_token(root, label, lib, provider)
    for spec in (KEYS if full else SCRATCH_KEYS):
        _keygen(tok, spec)
    if full:
        publics = [_import_private(tok, spec) for spec in NOPUB_KEYS]
        _make_certs(tok, nopub_ec_public=publics[1])
    _fill_token_info(tok)
    tok.build_seconds = time.monotonic() - t0
    return tok


# ---- fixtures --------------------------------------------------------------

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
    tok = _init_token(tmp_path_factory.mktemp("bigtoken"), "p11b-big",
                      softhsm_lib, provider_path)
    env = tok.tool_env()
    env["P11B_PIN"] = PIN
    p = u.run([sys.executable, HERE / "p11b_pykcs11.py", tok.module,
               tok.label, "fill", BIG_COUNT, BIG_BATCH], env, timeout=1800)
    fill = json.loads(p.stdout)
    _keygen(tok, KeySpec("needle", "ab", "RSA", 2048, "rsa:2048"))
    _fill_token_info(tok)
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


# ---- a token whose imported keys' software halves are kept -----------------
# The shared token's nopub-* keys are imported and their software private
# halves are thrown away (_import_private), so nothing outside the token can
# sign for them. soft_key_token imports keys the same way (a private key
# object only; the EC key's public half is in a certificate with its id)
# and keeps the software keys, so a test can sign in software and verify
# through the provider.

SOFT_KEY_SPECS = [
    KeySpec("nopub-rsa", "07", "RSA", 2048),
    KeySpec("nopub-ec", "08", "EC", 256),
]
_SOFT_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}


def _import_private_kept(tok, spec):
    """Like _import_private, but returns the software private key."""
    if spec.kind == "RSA":
        key = rsa.generate_private_key(public_exponent=65537,
                                       key_size=spec.bits)
    else:
        key = ec.generate_private_key(_SOFT_CURVES[spec.bits]())
    tmp = tok.root / f".{spec.label}.p8"
    tmp.write_bytes(key.private_bytes(serialization.Encoding.DER,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    tmp.chmod(0o600)
    try:
        tok.tool("--write-object", tmp, "--type", "privkey",
                 "--id", spec.id, "--label", spec.label)
    finally:
        tmp.unlink()
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    _remember_key(tok, spec, spki, "software", has_public=False)
    return key


def _self_signed(key, subject):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(_name(subject)).issuer_name(_name(subject))
            .public_key(key.public_key()).serial_number(0x3000)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))


@pytest.fixture(scope="session")
def soft_key_token(tmp_path_factory, provider_path, softhsm_lib):
    """Token "p11b-soft": nopub-rsa (id 07) and nopub-ec (id 08) imported
    from software with no public key objects, a self-signed certificate
    for nopub-ec (where the provider finds its public half), and
    tok.private_keys: label -> the cryptography private key."""
    t0 = time.monotonic()
    tok = _init_token(tmp_path_factory.mktemp("softkeys"), "p11b-soft",
                      softhsm_lib, provider_path)
    tok.private_keys = {}
    for spec in SOFT_KEY_SPECS:
        tok.private_keys[spec.label] = _import_private_kept(tok, spec)
    subject = "/O=p11bridge tests/CN=p11b-soft-nopub-ec"
    _write_cert(tok, "nopub-ec", "08",
                _self_signed(tok.private_keys["nopub-ec"], subject),
                subject, subject)
    _fill_token_info(tok)
    tok.build_seconds = time.monotonic() - t0
    TIMINGS["soft_key_token fixture"] = tok.build_seconds
    return tok



# ---- faultmod rigs: a token reached through tests/faultmod -----------------
# (appended for test_pins, test_recovery, test_threads and test_valgrind)

@pytest.fixture(scope="session")
def faultmod_lib():
    return _required_path("P11BRIDGE_FAULTMOD",
                          "the fault-injection module tests/faultmod/.libs/"
                          "faultmod.so")


@dataclass
class FaultRig:
    """An openssl environment whose provider reaches `token` through
    faultmod, with its own config, debug log, control and count files."""
    token: Token
    env: dict
    directory: Path
    control: Path
    count: Path

    def set(self, text=""):
        """Replace the control file (seen by running processes too)."""
        u.write_control(self.control, text)

    def calls(self):
        return u.count_file_calls(self.count)

    def log(self):
        return u.read_log(self.env)

    def ossl(self, *args, **kw):
        return self.token.ossl(*args, env=self.env, **kw)


def make_fault_rig(token, faultmod, control="", log_level=3, **keys):
    """A FaultRig for token; keys change [pkcs11_sect] as in make_config."""
    env = make_config(token, log_level=log_level,
                      pkcs11_module_path=faultmod, **keys)
    directory = u.log_path(env).parent
    rig = FaultRig(token, env, directory, directory / "faultmod.ctl",
                   directory / "faultmod-calls.txt")
    env["FAULTMOD_MODULE"] = token.module
    env["FAULTMOD_CONTROL"] = str(rig.control)
    env["FAULTMOD_COUNT_FILE"] = str(rig.count)
    rig.set(control)
    return rig


@pytest.fixture
def fault_rig(faultmod_lib):
    """fault_rig(token, control="", log_level=3, **config) -> FaultRig."""
    def make(token, control="", log_level=3, **keys):
        return make_fault_rig(token, faultmod_lib, control, log_level, **keys)
    return make


# ---- application tests: a software CA, an Ed25519 token, a www-data token --
# (appended for test_tls, test_servers and test_python_apps)

import ipaddress as _ipaddress  # noqa: E402
import pwd as _pwd  # noqa: E402
import stat as _stat  # noqa: E402


class TlsCa:
    """A software CA (EC P-256) that issues certificates for token keys.

    Its certificate is root/ca.crt; issue() writes leaf certificates
    (serverAuth and clientAuth, SAN localhost and 127.0.0.1).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.subject = _name("/O=p11bridge tests/CN=p11b TLS test CA")
        # Key identifiers as RFC 5280 asks: Python 3.13+ verifies with
        # VERIFY_X509_STRICT, which refuses a chain without them.
        self.ski = x509.SubjectKeyIdentifier.from_public_key(
            self.key.public_key())
        self.serial = 0x7000
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.subject).issuer_name(self.subject)
            .public_key(self.key.public_key()).serial_number(self.serial)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False,
                                         True, True, False, False),
                           critical=True)
            .add_extension(self.ski, critical=False)
            .sign(self.key, hashes.SHA256()))
        self.pem = self.root / "ca.crt"
        self.pem.write_bytes(self.cert.public_bytes(
            serialization.Encoding.PEM))

    def issue(self, public, cn, path):
        """A leaf certificate for `public` (a public key, or SPKI DER)."""
        if isinstance(public, bytes):
            public = serialization.load_der_public_key(public)
        self.serial += 1
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"/O=p11bridge tests/CN={cn}"))
            .issuer_name(self.subject)
            .public_key(public).serial_number(self.serial)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(_ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH,
                 ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier
                           .from_issuer_subject_key_identifier(self.ski),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        path = Path(path)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def sign_csr(self, csr_path, path):
        """Issue a leaf for a CSR (its signature is checked first)."""
        csr = x509.load_pem_x509_csr(Path(csr_path).read_bytes())
        assert csr.is_signature_valid, f"bad signature on {csr_path}"
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return self.issue(csr.public_key(), cn, path)

    def software_pair(self, directory, name, cn="localhost"):
        """A software P-256 key and its certificate: (key path, cert path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        key_path = Path(directory) / f"{name}.key"
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return key_path, self.issue(key.public_key(), cn,
                                    Path(directory) / f"{name}.crt")


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
    tok = _init_token(tmp_path_factory.mktemp("ed25519"), "p11b-ed25519",
                      softhsm_lib, provider_path)
    tok.tool("--keypairgen", "--key-type", "EC:edwards25519",
             "--label", "ed25519", "--id", "41")
    env = tok.tool_env()
    env["GNUTLS_PIN"] = PIN
    p = u.run(["p11tool", "--provider", tok.module, "--login",
               "--export-pubkey",
               u.make_uri(token=tok.label, id="41", type="public")], env)
    _remember_key(tok, KeySpec("ed25519", "41", "ED25519", 256),
                  u.normalize_spki(p.stdout.encode()), "p11tool",
                  has_public=True)
    _fill_token_info(tok)
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
            pw = _pwd.getpwnam(WWW_USER)
        except KeyError:
            pytest.fail(f"user {WWW_USER} does not exist (Debian's "
                        "base-passwd makes it)", pytrace=False)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.changed = {}

    def traverse(self, path):
        """o+x on path and on each of its ancestors."""
        for p in [Path(path), *Path(path).parents]:
            mode = _stat.S_IMODE(p.stat().st_mode)
            if not mode & _stat.S_IXOTH:
                self.changed.setdefault(p, mode)
                p.chmod(mode | _stat.S_IXOTH)

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
