"""Reading what was written: the provider's debug log (its Cryptoki call
lines, per process) and OpenSSL's error-queue lines on stderr.
"""

import re


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


def log_logins(text, user="CKU_USER"):
    """The CK_RV names of every 'C_Login(slot N, <user>) -> CKR_...' line."""
    rx = re.compile(r"C_Login\(slot \d+, " + re.escape(user) +
                    r"\) -> (CKR_[A-Z0-9_]+)")
    return rx.findall(text)


def log_lines_of(text, pid):
    """The debug log lines written by process pid."""
    return [line for line in text.splitlines()
            if (m := _LINE.match(line)) and int(m.group(1)) == pid]


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
