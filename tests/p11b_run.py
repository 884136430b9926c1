"""Running programs the way every test wants them run.

The environment of a process that loads the provider (scrubbed of the
developer's settings, sanitizer preloads, a debug log of its own), and
run(): never interactive, never killed by a signal, never a PIN in its
output. Also the openssl binary, its version, and tests/tools/p11b_ops.py.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from p11b_secrets import check_no_secret


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


def require_program(program, package):
    """The full path of program; a clear failure when it is missing."""
    path = shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise CommandFailed(
            f"{program} is not installed: install the Debian package "
            f"{package} (scripts/deps.sh lists it)")
    return path


def ops_tool():
    """tests/tools/p11b_ops.py (drives libcrypto with ctypes)."""
    path = Path(__file__).resolve().parent / "tools" / "p11b_ops.py"
    assert path.exists(), f"{path} is missing"
    return path


def run_ops(env, *args, ok=True, timeout=TIMEOUT):
    """Run p11b_ops.py; (CompletedProcess, its JSON output or None)."""
    p = run([sys.executable, ops_tool(), *args], env, ok=ok,
            timeout=timeout)
    try:
        doc = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        doc = None
    if ok:
        assert doc is not None, f"p11b_ops printed no JSON\n{describe(p)}"
    return p, doc
