"""tests/faultmod from the test side: the CK_RV values tests name, the
control file (what to break), the count file (what was called), and
FaultRig: an openssl environment whose provider reaches a token through
faultmod.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

from p11b_run import log_path, read_log
from p11b_tokens import Token, make_config


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
        write_control(self.control, text)

    def calls(self):
        return count_file_calls(self.count)

    def log(self):
        return read_log(self.env)

    def ossl(self, *args, **kw):
        return self.token.ossl(*args, env=self.env, **kw)


def make_fault_rig(token, faultmod, control="", log_level=3, **keys):
    """A FaultRig for token; keys change [pkcs11_sect] as in make_config."""
    env = make_config(token, log_level=log_level,
                      pkcs11_module_path=faultmod, **keys)
    directory = log_path(env).parent
    rig = FaultRig(token, env, directory, directory / "faultmod.ctl",
                   directory / "faultmod-calls.txt")
    env["FAULTMOD_MODULE"] = token.module
    env["FAULTMOD_CONTROL"] = str(rig.control)
    env["FAULTMOD_COUNT_FILE"] = str(rig.count)
    rig.set(control)
    return rig
