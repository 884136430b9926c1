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


_OPENSSL_VERSION = None


def openssl_version():
    """The (major, minor, patch) of the openssl program the tests run, e.g.
    (3, 0, 17) on Debian 12, (3, 5, 9) on 13, (3, 6, 5) on unstable. Tests
    branch on it where that version's programs really print or do something
    else."""
    global _OPENSSL_VERSION
    if _OPENSSL_VERSION is None:
        out = subprocess.run([OPENSSL, "version"], capture_output=True,
                             text=True, check=True).stdout
        m = re.match(r"OpenSSL (\d+)\.(\d+)\.(\d+)", out)
        assert m, f"unexpected `openssl version` output: {out!r}"
        _OPENSSL_VERSION = tuple(int(x) for x in m.groups())
    return _OPENSSL_VERSION


def dn_pattern(text):
    """A regex for one RDN as `openssl` prints it in s_server's depth lines
    and s_client's chain: OpenSSL 3.0 prints "CN = x", 3.5 and 3.6 print
    "CN=x" (the versions between are not tested). `text` is "CN=x"."""
    key, _, value = text.partition("=")
    sep = "=" if openssl_version() >= (3, 5, 0) else " = "
    return re.escape(key) + re.escape(sep) + re.escape(value)


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


# ---- faultmod's control and count files, PIN hunting, a pty ----------------
# (appended for test_pins, test_recovery, test_threads, test_key_secrecy and
# test_valgrind)

import json as _json  # noqa: E402  (appended section)
import pty as _pty  # noqa: E402
import select as _select  # noqa: E402
import termios as _termios  # noqa: E402
import sys as _sys  # noqa: E402

# The CK_RV values the tests name (PKCS#11 2.40).
CKR = {
    "CKR_OK": 0x00, "CKR_FUNCTION_FAILED": 0x06, "CKR_DEVICE_ERROR": 0x30,
    "CKR_DEVICE_REMOVED": 0x32, "CKR_KEY_HANDLE_INVALID": 0x60,
    "CKR_OBJECT_HANDLE_INVALID": 0x82, "CKR_PIN_INCORRECT": 0xA0,
    "CKR_PIN_LOCKED": 0xA4, "CKR_SESSION_CLOSED": 0xB0,
    "CKR_SESSION_COUNT": 0xB1, "CKR_SESSION_HANDLE_INVALID": 0xB3,
    "CKR_TOKEN_NOT_PRESENT": 0xE0, "CKR_USER_ALREADY_LOGGED_IN": 0x100,
    "CKR_USER_NOT_LOGGED_IN": 0x101,
}

_control_ns = [0]


def write_control(path, text):
    """Replace faultmod's control file so a running process sees it.

    A new file is renamed over the old one (a reader never sees half a
    file) and given an mtime of its own that only ever grows, so two
    rewrites within the file system's timestamp granularity still differ
    (tests/faultmod/README.md, "The control file").
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    ns = max(time.time_ns(), _control_ns[0] + 1_000_000)
    _control_ns[0] = ns
    os.utime(tmp, ns=(ns, ns))
    os.replace(tmp, path)


def count_file_calls(path):
    """faultmod's count file as [(pid, function, rv)], in call order."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            pid, name, rv = line.split()
            out.append((int(pid), name, int(rv, 16)))
    return out


def rvs_of(calls, name, pid=None):
    """The return values of every call of `name` (of one pid if given)."""
    return [rv for p, n, rv in calls if n == name and (pid is None or p == pid)]


def open_session_peaks(calls, resets=()):
    """{pid: the most sessions that process had open at any one time}.

    Walks the count file in order: a successful C_OpenSession opens one, a
    successful C_CloseSession closes one, C_CloseAllSessions closes all.
    resets: indices into calls where every session so far stopped counting
    (faultmod forgets sessions from before a removal at re-insertion).
    """
    now, peak = {}, {}
    resets = set(resets)
    for i, (pid, name, rv) in enumerate(calls):
        if i in resets:
            now = {}
        if name == "C_OpenSession" and rv == 0:
            now[pid] = now.get(pid, 0) + 1
        elif name == "C_CloseSession" and rv == 0:
            now[pid] = now.get(pid, 0) - 1
        elif name == "C_CloseAllSessions" and rv == 0:
            now[pid] = 0
        peak[pid] = max(peak.get(pid, 0), now.get(pid, 0))
    return peak


def log_logins(text, user="CKU_USER"):
    """The CK_RV names of every 'C_Login(slot N, <user>) -> CKR_...' line."""
    rx = re.compile(r"C_Login\(slot \d+, " + re.escape(user) +
                    r"\) -> (CKR_[A-Z0-9_]+)")
    return rx.findall(text)


def assert_no_secret(*items):
    """No PIN (SECRETS) in any of items: (what, str | bytes | Path).

    A Path that does not exist is skipped; everything else is searched as
    bytes, so a PIN in any encoding-agnostic form is found.
    """
    for what, data in items:
        if isinstance(data, Path):
            if not data.exists():
                continue
            data = data.read_bytes()
        if isinstance(data, str):
            data = data.encode(errors="surrogateescape")
        for secret in SECRETS:
            assert secret.encode() not in data, \
                f"a PIN ({secret!r}) appears in {what}"


def ops_tool():
    """tests/tools/p11b_ops.py (drives libcrypto with ctypes)."""
    path = Path(__file__).resolve().parent / "tools" / "p11b_ops.py"
    assert path.exists(), f"{path} is missing"
    return path


def run_ops(env, *args, ok=True, timeout=TIMEOUT):
    """Run p11b_ops.py; (CompletedProcess, its JSON output or None)."""
    p = run([_sys.executable, ops_tool(), *args], env, ok=ok,
            timeout=timeout)
    try:
        doc = _json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        doc = None
    if ok:
        assert doc is not None, f"p11b_ops printed no JSON\n{describe(p)}"
    return p, doc


def _wait_for_noecho(fd, deadline, argv):
    """Wait until the program has turned the terminal's echo off (as a
    password prompt does right after printing the prompt), reading what it
    writes meanwhile; typing earlier would be echoed. On Linux the master
    side of a pty reports the terminal's (the slave's) settings. This
    waits on a condition with a deadline, checking it whenever output
    arrives and at least every 10 ms."""
    got = b""
    while _termios.tcgetattr(fd)[3] & _termios.ECHO:
        if time.monotonic() > deadline:
            raise CommandFailed(f"{' '.join(argv)}: the prompt never turned "
                                f"the terminal's echo off")
        r, _, _ = _select.select([fd], [], [], 0.01)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the program closed the terminal
                chunk = b""
            if not chunk:
                break
            got += chunk
    return got


class PtyResult:
    def __init__(self, argv, returncode, output, prompt):
        self.args = argv
        self.returncode = returncode
        self.output = output      # everything the terminal showed
        self.prompt = prompt      # the output up to the answer


def run_with_pty(argv, env, answer, prompt, timeout=60):
    """Run argv on a new pseudo-terminal (its controlling tty), wait for
    the regex `prompt` in what it writes, type answer + newline, read to
    EOF. No sleeps: select() with a deadline. Output is text with '\\r\\n'
    turned into '\\n'. A process that never prompts or never ends fails
    the test (and is killed)."""
    argv = [str(a) for a in argv]
    if "PKCS11_PROVIDER_DEBUG" in env:
        USED_LOGS.add(log_path(env))
    pid, fd = _pty.fork()
    if pid == 0:  # the child: on the pty already
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    buf, shown, answered = b"", None, False
    rx = re.compile(prompt.encode())
    deadline = time.monotonic() + timeout
    status = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandFailed(
                    f"{' '.join(argv)}: no {'EOF' if answered else 'prompt'}"
                    f" within {timeout} s; the terminal showed:\n"
                    f"{buf.decode(errors='backslashreplace')}")
            r, _, _ = _select.select([fd], [], [], left)
            if not r:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                break
            buf += chunk
            if not answered and rx.search(buf):
                shown = buf
                buf += _wait_for_noecho(fd, deadline, argv)
                os.write(fd, answer.encode() + b"\n")
                answered = True
        _, status = os.waitpid(pid, 0)
    finally:
        if status is None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(fd)
    if not answered:
        raise CommandFailed(f"{' '.join(argv)} ended without a prompt "
                            f"matching {prompt!r}:\n"
                            f"{buf.decode(errors='backslashreplace')}")
    assert not os.WIFSIGNALED(status), \
        f"{argv[0]} killed by signal {os.WTERMSIG(status)}"
    text = buf.decode(errors="backslashreplace").replace("\r\n", "\n")
    return PtyResult(argv, os.WEXITSTATUS(status), text,
                     shown.decode(errors="backslashreplace"))



# ---- a long-running `openssl s_server -www` and a TLS client -----------------
# (appended for test_recovery and test_valgrind)

import ssl as _ssl  # noqa: E402
import socket as _socket  # noqa: E402


class SServer:
    """`openssl s_server -www` on 127.0.0.1:<a free port> with a token key.

    Started with env (it loads the provider), waits for the ACCEPT line
    (no sleeps), and serves until stop() (or -naccept in extra). prefix
    goes before the openssl binary (valgrind, say). handshake() is a TLS
    handshake plus a GET, verified against ca, with a socket timeout.
    """

    def __init__(self, env, cert, key_uri, directory, ca, prefix=(),
                 extra=(), start_timeout=60):
        self.err_path = Path(directory) / "s_server.err"
        self.argv = [str(a) for a in prefix] + [
            OPENSSL, "s_server", "-accept", "127.0.0.1:0", "-www",
            "-cert", str(cert), "-key", key_uri] + [str(a) for a in extra]
        if "PKCS11_PROVIDER_DEBUG" in env:
            USED_LOGS.add(log_path(env))
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                self.argv, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        self.reader = LineReader(self.proc.stdout)
        line = self.reader.wait_for(r"^ACCEPT", start_timeout)
        if line is None:
            self.stop()
            raise CommandFailed(f"s_server did not start:\n{self.stderr()}")
        self.port = int(line.rsplit(":", 1)[1])
        self.ctx = _ssl.create_default_context(cafile=str(ca))

    def handshake(self, timeout=30):
        """(ok, what happened, seconds) of one handshake and GET /."""
        t0 = time.monotonic()
        try:
            with _socket.create_connection(("127.0.0.1", self.port),
                                           timeout=timeout) as sock:
                with self.ctx.wrap_socket(sock,
                                          server_hostname="localhost") as t:
                    t.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    reply = t.recv(64)
            ok = reply.startswith(b"HTTP/1.0 200")
            what = reply[:40].decode(errors="replace")
        except (OSError, _ssl.SSLError) as e:
            ok, what = False, f"{type(e).__name__}: {e}"
        self.drain()
        return ok, what, time.monotonic() - t0

    def handshakes(self, n, timeout=30):
        return [self.handshake(timeout) for _ in range(n)]

    def drain(self):
        """Read what s_server wrote so far: its pipe must never fill."""
        fd = self.proc.stdout.fileno()
        while True:
            try:
                if not os.read(fd, 65536):
                    return
            except BlockingIOError:
                return

    def alive(self):
        return self.proc.poll() is None

    def stderr(self):
        return self.err_path.read_text(errors="backslashreplace")

    def wait(self, timeout):
        """Wait for s_server to end by itself (-naccept); its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            self.proc.wait()
            raise CommandFailed(f"s_server did not end within {timeout} s")
        self.drain()
        return rc

    def stop(self):
        """Terminate (if still running); its stderr, checked for PINs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_group(self.proc)
                self.proc.wait()
        if not self.proc.stdout.closed:
            self.reader.close()
            self.proc.stdout.close()
        err = self.stderr()
        check_no_secret(err, "s_server's stderr", self.argv)
        return err


# ---- application tests: docs/HOWTO.md recipes, servers, TLS clients --------
# (appended for test_tls, test_servers and test_python_apps)

import shlex as _shlex  # noqa: E402
import shutil as _shutil  # noqa: E402
# _socket: imported above

HOWTO = Path(__file__).resolve().parent.parent / "docs" / "HOWTO.md"
RECIPE_DIR = "/srv/p11bridge"  # the recipes' one directory
RECIPE_TOKEN = "pkcs11:token=my-token"
_RECIPE_RX = re.compile(r"^<!-- recipe: (\S+) -->[ \t]*\n```[^\n]*\n(.*?)^```",
                        re.S | re.M)


def recipes():
    """{name: text} of every block marked <!-- recipe: name --> in HOWTO."""
    found = {}
    for name, body in _RECIPE_RX.findall(HOWTO.read_text()):
        assert name not in found, f"recipe {name!r} appears twice in {HOWTO}"
        found[name] = body
    return found


def recipe(name, subs=None):
    """The text of a docs/HOWTO.md recipe with its placeholders replaced.

    subs maps placeholder text to its value; the replacement is one pass
    (longest placeholder first), so a value is never replaced again.
    """
    every = recipes()
    assert name in every, \
        f"{HOWTO} has no recipe {name!r}; it has {sorted(every)}"
    text = every[name]
    if subs:
        keys = sorted(subs, key=len, reverse=True)
        rx = re.compile("|".join(re.escape(k) for k in keys))
        text = rx.sub(lambda m: str(subs[m.group(0)]), text)
    return text


def recipe_subs(directory, token=None, keys=None, port=None,
                s_server_port=0, provider=None, module=None):
    """The placeholder values of HOWTO.md for a test.

    keys maps a recipe key name (server-key, client-key, ca-key) to the
    label of the test token's key that plays it.
    """
    subs = {RECIPE_DIR: str(directory), "4433": str(s_server_port)}
    if port is not None:
        subs["8443"] = str(port)
    for role, label in (keys or {}).items():
        subs[f"{RECIPE_TOKEN};object={role}"] = token.uri(label)
    if provider is not None:
        subs["module = pkcs11.so"] = f"module = {provider}"
    if module is not None:
        subs["/usr/lib/softhsm/libsofthsm2.so"] = module
    return subs


def recipe_commands(text):
    """Each command of a shell recipe as an argv list: comment lines are
    dropped and backslash-newline continuations joined."""
    cmds = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            cmds.append(_shlex.split(line, comments=True))
    return cmds


def recipe_command(name, subs, extra=()):
    """The one command of a shell recipe as argv, with extra args added."""
    cmds = recipe_commands(recipe(name, subs))
    assert len(cmds) == 1, f"recipe {name!r} has {len(cmds)} commands"
    return cmds[0] + [str(a) for a in extra]


def run_shell_recipe(name, subs, env, **kw):
    """Run a shell recipe's text with bash -e, as a user would paste it."""
    return run(["/bin/bash", "-e", "-o", "pipefail", "-c",
                recipe(name, subs)], env, **kw)


def require_program(program, package):
    """The full path of program; a clear failure when it is missing."""
    path = _shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise CommandFailed(
            f"{program} is not installed: install the Debian package "
            f"{package} (scripts/deps.sh lists it)")
    return path


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers
    that cannot listen on port 0)."""
    with _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with _socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Server:
    """A server program running in the background for one test.

    stdout and stderr go to files in `directory` (or stdout to a pipe read
    by a LineReader, for servers that print their port; merge_stderr sends
    stderr there too). The program and
    everything it forks form a process group that stop() always ends.
    Waiting never sleeps: it waits on the process itself with a short
    timeout, so a server that dies is noticed at once.
    """

    def __init__(self, argv, env, directory, name, pipe_stdout=False,
                 cwd=None, merge_stderr=False):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = env
        self.out_path = Path(directory) / f"{name}.stdout"
        self.err_path = Path(directory) / f"{name}.stderr"
        if "PKCS11_PROVIDER_DEBUG" in env:
            USED_LOGS.add(log_path(env))
        self._out = None if pipe_stdout else open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            self.argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if pipe_stdout else self._out,
            stderr=subprocess.STDOUT if merge_stderr else self._err,
            start_new_session=True)
        self.pid = self.proc.pid
        self.reader = LineReader(self.proc.stdout) if pipe_stdout else None
        self.stopped = False

    def output(self):
        out = "\n".join(self.reader.lines) if self.reader else \
            self.out_path.read_text(errors="backslashreplace")
        err = self.err_path.read_text(errors="backslashreplace")
        return f"--- {self.name} stdout ---\n{out}\n" \
               f"--- {self.name} stderr ---\n{err}"

    def wait_until(self, predicate, what, timeout=60, step=0.02):
        """predicate()'s first true value; fails if the server exits."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise CommandFailed(
                    f"{self.name} exited with {self.proc.returncode} while "
                    f"waiting for {what}\n{' '.join(self.argv)}\n"
                    f"{self.output()}")
            if time.monotonic() > deadline:
                raise CommandFailed(f"{self.name}: no {what} after {timeout}"
                                    f" s\n{self.output()}")
            try:
                self.proc.wait(timeout=step)
            except subprocess.TimeoutExpired:
                pass

    def wait_port(self, port, timeout=60):
        self.wait_until(lambda: port_open(port), f"listener on port {port}",
                        timeout)

    def wait_line(self, pattern, timeout=60):
        """The first stdout line matching pattern (pipe_stdout servers)."""
        line = self.reader.wait_for(pattern, timeout)
        if line is None:
            state = "exited" if self.proc.poll() is not None else \
                f"still running after {timeout} s"
            raise CommandFailed(f"{self.name}: no line matching {pattern!r}"
                                f" ({state})\n{self.output()}")
        return line

    def wait_file_count(self, path, pattern, count, timeout=60):
        """Wait until `pattern` matches at least `count` lines of a file
        the server writes (its error log); the matches."""
        rx = re.compile(pattern, re.M)

        def matches():
            text = Path(path).read_text(errors="backslashreplace") \
                if Path(path).exists() else ""
            found = rx.findall(text)
            return found if len(found) >= count else None
        return self.wait_until(matches, f"{count}x {pattern!r} in {path}",
                               timeout)

    def wait_exit(self, timeout=60):
        """Wait for the server to exit by itself; its exit code."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"{self.name} still running after {timeout}"
                                f" s\n{self.output()}") from None
        self.stop()
        return rc

    def drain(self):
        """Read what a pipe_stdout server printed so far (keeps the pipe
        from filling up)."""
        if self.reader:
            self.reader.wait_for(r"(?!)", 0.01)

    def stop(self, argv=None, env=None, timeout=60):
        """End the server: argv (its own stop command, run with env or
        the server's) or SIGTERM, then wait; SIGKILL the whole group
        whatever happens. The exit code."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        try:
            if self.proc.poll() is None:
                if argv is not None:
                    run(argv, self.env if env is None else env)
                else:
                    self.proc.terminate()
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            kill_group(self.proc)
            self.proc.wait()
            if self.reader:
                self.drain()
                self.reader.close()
                self.proc.stdout.close()
            self.proc.stdin.close()
            for f in (self._out, self._err):
                if f:
                    f.close()
        text = self.output()
        check_no_secret(text, f"{self.name}'s output")
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(timeout=10)


def curl_fetch(port, cafile, env, *extra, path="/", ok=True):
    """GET https://localhost:port/path with curl; (body, handshake seconds,
    CompletedProcess). The handshake time is curl's time_appconnect minus
    time_connect."""
    curl = require_program("curl", "curl")
    argv = [curl, "--silent", "--show-error", "--max-time", "60",
            "--cacert", cafile,
            "--resolve", f"localhost:{port}:127.0.0.1",
            "--write-out", "\n@@ %{time_connect} %{time_appconnect}\n",
            *extra, f"https://localhost:{port}{path}"]
    p = run(argv, env, ok=ok)
    body, _, stats = p.stdout.rpartition("\n@@ ")
    try:
        connect, appconnect = (float(x) for x in stats.split())
    except ValueError:
        raise CommandFailed(f"curl's --write-out not found\n{describe(p)}")
    return body, appconnect - connect, p


_S_CLIENT_FIELDS = {
    "protocol": r"^New, (TLSv[\d.]+), Cipher is (\S+)",
    "peer_sig_type": r"^Peer signature type: (\S+)",
    "peer_digest": r"^Peer signing digest: (\S+)",
    "verify": r"Verify return code: (\d+)",
}


def s_client_summary(stdout):
    """What `openssl s_client` says about its handshake: protocol, cipher,
    peer_sig_type, peer_digest, verify (None when not printed)."""
    out = {}
    for key, rx in _S_CLIENT_FIELDS.items():
        m = re.search(rx, stdout, re.M)
        if key == "protocol":
            out["protocol"], out["cipher"] = m.groups() if m else (None, None)
        else:
            out[key] = m.group(1) if m else None
    return out


def log_lines_of(text, pid):
    """The debug log lines written by process pid."""
    return [line for line in text.splitlines()
            if (m := _LINE.match(line)) and int(m.group(1)) == pid]
