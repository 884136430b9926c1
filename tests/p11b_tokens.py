"""The SoftHSM tokens the fixtures build, and what a test knows about them.

Token is one token's directory, environment and contents (KeyInfo,
CertInfo); make_token() builds the shared token's contents (KEYS,
NOPUB_KEYS, certificates from a CA of its own) or a scratch token's
(SCRATCH_KEYS); make_config() writes a variant of a token's openssl.cnf.
The fixtures that use these are in conftest.py.
"""

import datetime
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from p11b_certs import x509_name
from p11b_crypto import normalize_spki
from p11b_run import base_env, openssl, provider_env, run, with_log
from p11b_secrets import PIN, SO_PIN
from p11b_uri import make_uri

HERE = Path(__file__).resolve().parent


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

# The shared token's nopub-* keys are imported and their software private
# halves are thrown away (import_private), so nothing outside the token can
# sign for them. soft_key_token imports keys the same way (a private key
# object only; the EC key's public half is in a certificate with its id)
# and keeps the software keys, so a test can sign in software and verify
# through the provider.
SOFT_KEY_SPECS = [
    KeySpec("nopub-rsa", "07", "RSA", 2048),
    KeySpec("nopub-ec", "08", "EC", 256),
]
_SOFT_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}


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
        return make_uri(token=self.label, object=label, type=type, **extra)

    # -- running things
    def tool_env(self):
        """Environment for pkcs11-tool/p11tool/softhsm2-util (no provider)."""
        env = base_env()
        env["SOFTHSM2_CONF"] = str(self.softhsm_conf)
        return env

    def run(self, argv, env=None, **kw):
        """Run a program that loads the provider with this token's env."""
        return run(argv, self.env if env is None else env, **kw)

    def ossl(self, *args, env=None, **kw):
        return openssl(self.env if env is None else env, *args, **kw)

    def tool(self, *args, login=True, ok=True):
        argv = ["pkcs11-tool", "--module", self.module,
                "--token-label", self.label]
        if login:
            argv += ["--login", "--pin", PIN]
        return run(argv + list(args), self.tool_env(), ok=ok)

    def fresh_env(self, directory, level=3):
        """This token's env logging to a new file under directory."""
        return with_log(self.env, Path(directory) / "p11bridge.log", level)

    def read_log(self):
        return self.log.read_text(errors="backslashreplace") \
            if self.log.exists() else ""

    def public_keys(self):
        return [k for k in self.keys.values() if k.has_public]


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
    env = with_log(token.env, directory / "p11bridge.log", log_level)
    env["OPENSSL_CONF"] = str(conf)
    return env


def init_token(root, label, lib, provider):
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
    env = provider_env(conf, softhsm_conf, log, level=3)
    tok = Token(label=label, root=root, env=env, module=lib,
                provider=provider, conf=conf, softhsm_conf=softhsm_conf,
                pin_file=pin_file, log=log, pkcs11_keys=pkcs11_keys)
    run(["softhsm2-util", "--init-token", "--free", "--label", label,
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
    return json.loads(run(argv, env).stdout)


def export_pubkey(tok, spec):
    """SPKI DER of a token public key: pkcs11-tool, else p11tool.

    pkcs11-tool 0.23 cannot export EC P-384 keys ("cannot create
    EVP_PKEY"); gnutls' p11tool can.
    """
    out = tok.root / f"{spec.label}.pub.der"
    p = tok.tool("--read-object", "--type", "pubkey", "--id", spec.id,
                 "-o", out, login=False, ok=False)
    if p.returncode == 0 and out.exists() and out.stat().st_size:
        return normalize_spki(out.read_bytes()), "pkcs11-tool"
    env = tok.tool_env()
    env["GNUTLS_PIN"] = PIN  # p11tool insists on logging in for export
    url = make_uri(token=tok.label, id=spec.id, type="public")
    p = run(["p11tool", "--provider", tok.module, "--login",
               "--export-pubkey", url], env)
    return normalize_spki(p.stdout.encode()), "p11tool"


def keygen(tok, spec):
    tok.tool("--keypairgen", "--key-type", spec.keygen,
             "--label", spec.label, "--id", spec.id)
    spki, source = export_pubkey(tok, spec)
    return remember_key(tok, spec, spki, source, has_public=True)


def remember_key(tok, spec, spki, source, has_public):
    pem = tok.root / f"{spec.label}.pub.pem"
    key = serialization.load_der_public_key(spki)
    pem.write_bytes(key.public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    info = KeyInfo(spec.label, spec.id, spec.kind, spec.bits, has_public,
                   spki, source, pem)
    tok.keys[spec.label] = info
    return info


def import_private(tok, spec):
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
    remember_key(tok, spec, spki, "software", has_public=False)
    return key.public_key()


def import_private_kept(tok, spec):
    """Like import_private, but returns the software private key."""
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
    remember_key(tok, spec, spki, "software", has_public=False)
    return key


def write_cert(tok, label, kid, cert, subject, issuer):
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


def make_certs(tok, nopub_ec_public):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    (tok.root / "ca-key.pem").write_bytes(ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder()
          .subject_name(x509_name(CA_SUBJECT))
          .issuer_name(x509_name(CA_SUBJECT))
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
    write_cert(tok, CA_LABEL, CA_ID, ca, CA_SUBJECT, CA_SUBJECT)

    for label in LEAF_CERTS:
        info = tok.keys[label]
        if label == "nopub-ec":
            public = nopub_ec_public
        else:
            public = serialization.load_der_public_key(info.spki)
        subject = f"/O=p11bridge tests/CN=p11b-{label}"
        serial = 0x1000 + int(info.id, 16)
        cert = (x509.CertificateBuilder()
                .subject_name(x509_name(subject)).issuer_name(ca.subject)
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
        write_cert(tok, label, info.id, cert, subject, CA_SUBJECT)


def fill_token_info(tok):
    info = token_info(tok)
    tok.manufacturer = info["manufacturer"]
    tok.model = info["model"]
    tok.serial = info["serial"]
    tok.slot = info["slot"]


def make_token(root, label, lib, provider, full=True):
    """A fresh token. full: the shared token's contents; else SCRATCH_KEYS."""
    t0 = time.monotonic()
    tok = init_token(root, label, lib, provider)
    for spec in (KEYS if full else SCRATCH_KEYS):
        keygen(tok, spec)
    if full:
        publics = [import_private(tok, spec) for spec in NOPUB_KEYS]
        make_certs(tok, nopub_ec_public=publics[1])
    fill_token_info(tok)
    tok.build_seconds = time.monotonic() - t0
    return tok
