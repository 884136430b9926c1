"""Helpers shared by conftest.py and the test modules.

Plain functions with no pytest fixtures in them: running programs with the
checks every test wants, building and parsing pkcs11: URIs, reading the
provider's debug log, and the little DER parsing the SPKI tests need.
"""

import base64
import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from cryptography.hazmat.primitives import serialization

PIN = "p11b-Pin-7d3f"  # distinctive, so a leak is findable in any log
SO_PIN = "p11b-So-4c9e"
WRONG_PIN = "p11b-Wrong-0a5b"  # also distinctive: it must not leak either
SECRETS = (PIN, SO_PIN, WRONG_PIN)

OPENSSL = "/usr/bin/openssl"
TIMEOUT = 300  # seconds for one command (ASan builds are slow)

# Variables that would change what the provider or SoftHSM does if the
# developer happens to have them set: the fixtures decide them all.
_SCRUBBED = ("OPENSSL_CONF", "OPENSSL_MODULES", "SOFTHSM2_CONF",
             "PKCS11_PROVIDER_MODULE", "PKCS11_PROVIDER_DEBUG",
             "P11_KIT_SERVER_ADDRESS", "GNUTLS_PIN", "GNUTLS_SO_PIN",
             "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")

# Every debug log file a fixture configured, checked for secrets at the end,
# and those that some provider process was started with.
LOGS = set()
USED_LOGS = set()


class CommandFailed(AssertionError):
    pass


def base_env():
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["LC_ALL"] = "C"
    return env


def sanitizers_enabled():
    return os.environ.get("P11BRIDGE_SANITIZERS", "").lower() in (
        "yes", "1", "true")


_ASAN_LIB = None


def sanitizer_env():
    """What a process that loads an ASan-built provider needs (or {}).

    The one place where LD_PRELOAD and ASAN_OPTIONS are decided: every
    provider environment the fixtures build goes through provider_env().
    """
    global _ASAN_LIB
    if not sanitizers_enabled():
        return {}
    if _ASAN_LIB is None:
        out = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                             capture_output=True, text=True, check=True)
        path = out.stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):
            raise CommandFailed(
                "P11BRIDGE_SANITIZERS=yes but gcc cannot find libasan.so "
                f"(got {path!r})")
        _ASAN_LIB = os.path.realpath(path)
    return {
        "LD_PRELOAD": _ASAN_LIB,
        # /usr/bin/openssl is not built with ASan: its own allocations
        # would all show up as leaks at exit.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }


def provider_env(conf, softhsm_conf, log, level=3):
    """Environment for a process that loads the provider."""
    env = base_env()
    env.update(sanitizer_env())
    env["OPENSSL_CONF"] = str(conf)
    env["SOFTHSM2_CONF"] = str(softhsm_conf)
    env["PKCS11_PROVIDER_DEBUG"] = f"file:{log},level:{level}"
    LOGS.add(Path(log))
    return env


def log_path(env):
    """The debug log file named by env's PKCS11_PROVIDER_DEBUG."""
    m = re.search(r"(?:^|,)file:([^,]+)", env.get("PKCS11_PROVIDER_DEBUG", ""))
    assert m, "env has no PKCS11_PROVIDER_DEBUG file"
    return Path(m.group(1))


def with_log(env, log, level=3):
    """A copy of env that logs to a new file (for counting calls)."""
    env = dict(env)
    env["PKCS11_PROVIDER_DEBUG"] = f"file:{log},level:{level}"
    LOGS.add(Path(log))
    return env


def read_log(env):
    """The debug log's text, '' if the provider never wrote it."""
    path = log_path(env)
    if not path.exists():
        return ""
    return path.read_text(errors="backslashreplace")


def _hide_args(text, argv):
    # openssl echoes a URI it could not load: an argument carrying a PIN may
    # come back verbatim, which is the app's doing, not a leak. Anything
    # else that contains a PIN is.
    for a in argv:
        a = str(a)
        if any(s in a for s in SECRETS):
            text = text.replace(a, "<arg>")
    return text


def check_no_secret(text, what, argv=()):
    text = _hide_args(text, argv)
    for s in SECRETS:
        assert s not in text, f"a PIN ({s!r}) appears in {what}"


def describe(p):
    return (f"command: {' '.join(map(str, p.args))}\n"
            f"exit: {p.returncode}\n"
            f"--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}")


def run(argv, env, ok=True, input=None, timeout=TIMEOUT, cwd=None):
    """Run a program; never interactive; never a signal; never a PIN out.

    start_new_session detaches from the controlling terminal, so a
    passphrase prompt reads the (empty) stdin instead of waiting on a tty;
    it also puts the program and anything it forks in a process group of
    their own, which is what a timeout kills. The CompletedProcess gets the
    child's pid as .pid.
    """
    argv = [str(a) for a in argv]
    if "PKCS11_PROVIDER_DEBUG" in env:
        USED_LOGS.add(log_path(env))
    with subprocess.Popen(
            argv, env=env, cwd=cwd, text=True, errors="backslashreplace",
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, err = proc.communicate()
            raise CommandFailed(
                f"timed out after {timeout} s: {' '.join(argv)}\n"
                f"--- stdout ---\n{out}\n--- stderr ---\n{err}")
    p = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    p.pid = proc.pid
    assert p.returncode >= 0, (
        f"killed by signal {-p.returncode}\n{describe(p)}")
    check_no_secret(p.stdout, "stdout", argv)
    check_no_secret(p.stderr, "stderr", argv)
    if ok and p.returncode != 0:
        raise CommandFailed(describe(p))
    return p


def kill_group(proc):
    """SIGKILL a child started by us with start_new_session, and its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def openssl(env, *args, **kw):
    return run([OPENSSL, *args], env, **kw)


class LineReader:
    """Reads a child's stdout line by line with a deadline (no sleeps)."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.lines = []
        self.sel = selectors.DefaultSelector()
        self.sel.register(stream, selectors.EVENT_READ)
        os.set_blocking(stream.fileno(), False)

    def wait_for(self, pattern, timeout):
        """The first line matching pattern, or None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="backslashreplace")
                self.lines.append(text)
                if rx.search(text):
                    return text
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.sel.select(left):
                return None
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                if self.buf:
                    self.buf += b"\n"
                    continue
                return None
            self.buf += chunk

    def close(self):
        self.sel.close()


# ---- pkcs11: URIs ----------------------------------------------------------

QUERY_ATTRS = ("pin-value", "pin-source", "module-name", "module-path")


def pct_bytes(data):
    return "".join(f"%{b:02X}" for b in data)


def make_uri(token=None, object=None, type=None, id=None, **extra):
    """pkcs11: URI from attributes; underscores in names become dashes.

    id may be bytes or a hex string. Query attributes (pin-value, ...)
    go after '?'.
    """
    path, query = [], []
    if token is not None:
        path.append(("token", token))
    if object is not None:
        path.append(("object", object))
    if id is not None:
        if isinstance(id, str):
            id = bytes.fromhex(id)
        path.append(("id", id))
    for name, value in extra.items():
        name = name.replace("_", "-")
        (query if name in QUERY_ATTRS else path).append((name, value))
    if type is not None:
        path.append(("type", type))

    def enc(value, safe):
        if isinstance(value, bytes):
            return pct_bytes(value)
        return quote(str(value), safe=safe)

    s = "pkcs11:" + ";".join(f"{n}={enc(v, '-._~')}" for n, v in path)
    if query:
        s += "?" + "&".join(f"{n}={enc(v, '/:-._~')}" for n, v in query)
    return s


def parse_uri(uri):
    """Our own small RFC 7512 reader: {name: bytes} for path and query."""
    assert uri.lower().startswith("pkcs11:"), uri
    rest = uri[len("pkcs11:"):]
    path, _, query = rest.partition("?")
    out = {}
    for part in [p for p in path.split(";") if p] + \
            [q for q in query.split("&") if q]:
        name, eq, value = part.partition("=")
        assert eq, f"attribute without '=' in {uri}"
        assert name not in out, f"{name} twice in {uri}"
        out[name] = unquote_to_bytes(value)
    return out


def uris_in(text):
    """Every 'URI: pkcs11:...' line of storeutl/pkey -text output."""
    return re.findall(r"URI:\s*(pkcs11:\S+)", text)


def store_items(stdout):
    """[(index, kind)] from storeutl's 'N: Kind' lines, and the total."""
    items = re.findall(r"^(\d+): (Pkey|Public key|Certificate|Name|CRL|"
                       r"Parameters)\s*$", stdout, re.M)
    m = re.search(r"^Total found: (\d+)", stdout, re.M)
    total = int(m.group(1)) if m else None
    return [(int(i), k) for i, k in items], total


# ---- the debug log ---------------------------------------------------------

_LINE = re.compile(r"^p11bridge\[(\d+)/(\d+)\]")


def cryptoki_calls(text, name):
    """Log lines recording a call to Cryptoki function `name`.

    Matches 'C_Login(slot 0, ...) -> CKR_OK' and 'C_FindObjects -> ...' but
    not C_FindObjectsInit when asked for C_FindObjects.
    """
    rx = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?:\(|\s*->)")
    return [line for line in text.splitlines() if rx.search(line)]


def found_counts(text):
    """The N of every 'C_FindObjects -> CKR_OK, N found' line."""
    return [int(m.group(1)) for line in cryptoki_calls(text, "C_FindObjects")
            for m in [re.search(r",\s*(\d+)\s+found", line)] if m]


def calls_by_pid(text, name):
    """{pid: number of `name` calls logged by that process}."""
    counts = {}
    for line in cryptoki_calls(text, name):
        m = _LINE.match(line)
        assert m, f"log line without the p11bridge[pid/tid] prefix: {line}"
        counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + 1
    return counts


def pids_calling_cryptoki(text):
    pids = set()
    rx = re.compile(r"(?<![A-Za-z0-9_])C_[A-Za-z]+(?:\(|\s*->)")
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and rx.search(line):
            pids.add(int(m.group(1)))
    return pids


# ---- keys and DER ----------------------------------------------------------

def pem_blocks(text, label):
    rx = re.compile(rf"-----BEGIN {label}-----\s*(.*?)-----END {label}-----",
                    re.S)
    return [base64.b64decode("".join(b.split())) for b in rx.findall(text)]


def spki_der_from_pem(text):
    """The raw DER of the one PUBLIC KEY block in text (not re-encoded)."""
    blocks = pem_blocks(text, "PUBLIC KEY")
    assert len(blocks) == 1, f"expected one PUBLIC KEY block in:\n{text}"
    return blocks[0]


def normalize_spki(data):
    """SPKI DER of a public key given as PEM or DER (SPKI or PKCS#1)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
    else:
        key = serialization.load_der_public_key(data)
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def der_read(data, pos=0):
    """(tag, content, next position) of the DER element at pos."""
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    return tag, data[pos:pos + n], pos + n


def der_children(content):
    out, pos = [], 0
    while pos < len(content):
        tag, value, pos = der_read(content, pos)
        out.append((tag, value))
    return out


def oid_to_str(value):
    first = value[0]
    parts = [str(min(first // 40, 2)), str(first - 40 * min(first // 40, 2))]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(str(n))
            n = 0
    return ".".join(parts)


def spki_algorithm(der):
    """(algorithm OID, (tag, value) of its parameters or None)."""
    tag, body, end = der_read(der)
    assert tag == 0x30 and end == len(der), "SPKI is not one SEQUENCE"
    (atag, alg), (btag, _bits) = der_children(body)
    assert atag == 0x30 and btag == 0x03, \
        "SPKI: bad AlgorithmIdentifier or BIT STRING"
    fields = der_children(alg)
    assert fields[0][0] == 0x06
    params = fields[1] if len(fields) > 1 else None
    return oid_to_str(fields[0][1]), params


OID_RSA = "1.2.840.113549.1.1.1"
OID_EC = "1.2.840.10045.2.1"
CURVE_OIDS = {256: "1.2.840.10045.3.1.7", 384: "1.3.132.0.34",
              521: "1.3.132.0.35"}


# ---- signatures: digests, the debug log's C_SignInit lines, error lines ----

import hashlib as _hashlib  # noqa: E402  (appended section)

from cryptography.hazmat.primitives import hashes as _hashes  # noqa: E402

# OpenSSL digest name -> (hashlib name, cryptography hash class)
DIGESTS = {
    "sha1": ("sha1", _hashes.SHA1),
    "sha224": ("sha224", _hashes.SHA224),
    "sha256": ("sha256", _hashes.SHA256),
    "sha384": ("sha384", _hashes.SHA384),
    "sha512": ("sha512", _hashes.SHA512),
    "sha3-256": ("sha3_256", _hashes.SHA3_256),
    "sha3-384": ("sha3_384", _hashes.SHA3_384),
    "sha3-512": ("sha3_512", _hashes.SHA3_512),
}


def digest_of(name, data):
    """The digest of data with OpenSSL's digest `name`, computed in Python."""
    return _hashlib.new(DIGESTS[name][0], data).digest()


def crypto_hash(name):
    """A cryptography hash object for OpenSSL's digest `name`."""
    return DIGESTS[name][1]()


_SIGN_INIT = re.compile(r"C_SignInit\(slot \d+, (CKM_[A-Z0-9_]+)\) -> "
                        r"(CKR_[A-Z0-9_]+)")


def sign_inits(text):
    """[(mechanism, rv)] of every C_SignInit line of a debug log (level 2+).

    The line looks like 'C_SignInit(slot 1, CKM_RSA_X_509) -> CKR_OK'.
    """
    return _SIGN_INIT.findall(text)


_ERR_LINE = re.compile(r"^[0-9A-F]+:error:([0-9A-F]{8}):([^:]*):([^:]*):"
                       r"([^:]*):([^:]*):(\d+):(.*)$", re.M)


def openssl_errors(stderr):
    """OpenSSL's error queue lines as dicts: lib, func, reason, data.

    '80EB..:error:40800014:pkcs11:rsa_sign_digest:token operation failed:
    ../src/provider/signature_rsa.c:367:input of 20 bytes ...'
    """
    return [{"code": m.group(1), "lib": m.group(2), "func": m.group(3),
             "reason": m.group(4), "file": m.group(5), "data": m.group(7)}
            for m in _ERR_LINE.finditer(stderr)]


def provider_errors(stderr):
    """The error lines raised by the provider itself (library 'pkcs11')."""
    return [e for e in openssl_errors(stderr) if e["lib"] == "pkcs11"]


def default_only_env(directory):
    """Environment for openssl with only its built-in default provider.

    OPENSSL_CONF names an empty file under directory, so nothing of ours
    (provider, token, debug log) is loaded: an independent check.
    """
    empty = Path(directory) / "empty-openssl.cnf"
    empty.write_text("")
    env = base_env()
    env["OPENSSL_CONF"] = str(empty)
    return env


def flip_byte(data, index=None):
    """data with one byte changed (the middle one unless index is given)."""
    data = bytearray(data)
    i = len(data) // 2 if index is None else index
    data[i] ^= 0x01
    return bytes(data)
