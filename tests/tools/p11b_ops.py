#!/usr/bin/python3
"""p11b_ops: drive libcrypto (and through it the provider) from one process.

The `openssl` commands load a key, use it once and exit. Some promises need
more than that from ONE provider instance: two loads in a row after a
failed login, several signatures with one loaded key, 16 threads signing at
once. This helper does those through libcrypto's public API (OSSL_STORE,
EVP_DigestSign) with ctypes, so it needs no C compiler and links against
the very libcrypto.so.3 that /usr/bin/openssl uses.

It loads the provider the way openssl does: OPENSSL_init_crypto with
OPENSSL_INIT_LOAD_CONFIG reads OPENSSL_CONF. It imports nothing that loads
OpenSSL by itself (no ssl, no hashlib, no cryptography).

  p11b_ops.py load URI [URI ...]
      Load every URI in turn with OSSL_STORE and go on after a failure.
      JSON: {"loads": [{"index": i, "ok": bool, "keys": n, "spki": HEX,
                        "errors": [...]}]}   (spki: the first key's DER)
  p11b_ops.py sign --uri URI --count N --out DIR [--digest NAME]
      Load the key once, sign N random messages with EVP_DigestSign and
      write DIR/msg-<i>.bin and DIR/sig-<i>.bin.
      JSON: {"signed": n, "errors": [...]}
  p11b_ops.py threads --uri URI [--uri URI ...] --threads T --seconds S
                      --out DIR [--digest NAME]
      Load every key once in the main thread, then T threads sign random
      messages until S seconds have passed; thread t uses key t % (number
      of URIs). Each thread writes its last message and signature to
      DIR/t<t>.msg and DIR/t<t>.sig.
      JSON: {"threads": [{"key": k, "ops": n, "errors": [...]}], ...}

  p11b_ops.py steps --uri URI [--uri URI ...] STEP [STEP ...]
      Load every key once, then run the steps in order on one provider
      instance. A step is OP[:OUTSIZE][@KEY]: OP is `sign` (EVP_PKEY_sign
      of a random SHA-256 digest) or `decrypt` (EVP_PKEY_decrypt, PKCS#1
      v1.5, of a ciphertext made in-process from 32 random bytes with the
      key's public half); OUTSIZE is the output buffer given to OpenSSL
      (default: the size OpenSSL asks for); KEY the index of the --uri
      (default 0). A step ending in `+stale` runs with an old, unrelated
      error of the application left on the queue (a failed EVP_MD_fetch),
      as some applications leave one. Every step runs, whatever the
      earlier ones did.
      JSON: {"steps": [{"step": STEP, "ok": bool, "in": HEX, "out": HEX,
                        "errors": [...]}]}   (decrypt: "in" is the
      plaintext that was encrypted, "out" what came back)

With --after-load-control TEXT, `sign` and `threads` write TEXT to the
faultmod control file named by $FAULTMOD_CONTROL once the keys are loaded
(a new file renamed over the old one), so a fault can hit the operations
and not the loading.

With --pin-callback-env VAR, loads get an application passphrase callback
(a UI_METHOD wrapping a PEM password callback) that answers with the value
of the environment variable VAR and counts how often it was asked; the count
is in the JSON as "callback_calls". The PIN itself is never printed.

Error queue lines are given in openssl's format ("0:error:CODE:lib:func:
reason:file:line:data") in the JSON and on stderr. Exit 0 when everything
asked for succeeded, 1 otherwise, 2 on bad usage.
"""

import argparse
import ctypes
import json
import os
import sys
import threading
import time
from pathlib import Path

OPENSSL_INIT_LOAD_CONFIG = 0x00000040
OSSL_STORE_INFO_PUBKEY = 3
OSSL_STORE_INFO_PKEY = 4
ERR_TXT_STRING = 0x02

c_void_p, c_char_p, c_int, c_size_t = (ctypes.c_void_p, ctypes.c_char_p,
                                       ctypes.c_int, ctypes.c_size_t)
PEM_CB = ctypes.CFUNCTYPE(c_int, c_void_p, c_int, c_int, c_void_p)


def _lib():
    lib = ctypes.CDLL("libcrypto.so.3")
    protos = {
        "OPENSSL_init_crypto": (c_int, [ctypes.c_uint64, c_void_p]),
        "OSSL_STORE_open_ex": (c_void_p, [c_char_p, c_void_p, c_char_p,
                                          c_void_p, c_void_p, c_void_p,
                                          c_void_p, c_void_p]),
        "OSSL_STORE_load": (c_void_p, [c_void_p]),
        "OSSL_STORE_eof": (c_int, [c_void_p]),
        "OSSL_STORE_error": (c_int, [c_void_p]),
        "OSSL_STORE_close": (c_int, [c_void_p]),
        "OSSL_STORE_INFO_get_type": (c_int, [c_void_p]),
        "OSSL_STORE_INFO_get1_PKEY": (c_void_p, [c_void_p]),
        "OSSL_STORE_INFO_get1_PUBKEY": (c_void_p, [c_void_p]),
        "OSSL_STORE_INFO_free": (None, [c_void_p]),
        "EVP_PKEY_free": (None, [c_void_p]),
        "i2d_PUBKEY": (c_int, [c_void_p, c_void_p]),
        "EVP_MD_CTX_new": (c_void_p, []),
        "EVP_MD_CTX_free": (None, [c_void_p]),
        "EVP_DigestSignInit_ex": (c_int, [c_void_p, c_void_p, c_char_p,
                                          c_void_p, c_char_p, c_void_p,
                                          c_void_p]),
        "EVP_DigestSign": (c_int, [c_void_p, c_void_p,
                                   ctypes.POINTER(c_size_t), c_char_p,
                                   c_size_t]),
        "ERR_get_error_all": (ctypes.c_ulong,
                              [ctypes.POINTER(c_char_p),
                               ctypes.POINTER(c_int),
                               ctypes.POINTER(c_char_p),
                               ctypes.POINTER(c_char_p),
                               ctypes.POINTER(c_int)]),
        "ERR_lib_error_string": (c_char_p, [ctypes.c_ulong]),
        "ERR_reason_error_string": (c_char_p, [ctypes.c_ulong]),
        "ERR_clear_error": (None, []),
        "EVP_MD_fetch": (c_void_p, [c_void_p, c_char_p, c_char_p]),
        "OPENSSL_thread_stop": (None, []),
        "EVP_PKEY_CTX_new_from_pkey": (c_void_p, [c_void_p, c_void_p,
                                                  c_char_p]),
        "EVP_PKEY_CTX_free": (None, [c_void_p]),
        "EVP_PKEY_sign_init": (c_int, [c_void_p]),
        "EVP_PKEY_sign": (c_int, [c_void_p, c_void_p,
                                  ctypes.POINTER(c_size_t), c_char_p,
                                  c_size_t]),
        "EVP_PKEY_encrypt_init": (c_int, [c_void_p]),
        "EVP_PKEY_encrypt": (c_int, [c_void_p, c_void_p,
                                     ctypes.POINTER(c_size_t), c_char_p,
                                     c_size_t]),
        "EVP_PKEY_decrypt_init": (c_int, [c_void_p]),
        "EVP_PKEY_decrypt": (c_int, [c_void_p, c_void_p,
                                     ctypes.POINTER(c_size_t), c_char_p,
                                     c_size_t]),
        "EVP_PKEY_CTX_set_signature_md": (c_int, [c_void_p, c_void_p]),
        "EVP_sha256": (c_void_p, []),
        "UI_UTIL_wrap_read_pem_callback": (c_void_p, [PEM_CB, c_int]),
        "UI_destroy_method": (None, [c_void_p]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


C = _lib()


def _text(b):
    return b.decode(errors="backslashreplace") if b else ""


def drain_errors():
    """This thread's error queue as openssl-style lines (and cleared)."""
    lines = []
    while True:
        file_, line, func, data, flags = (c_char_p(), c_int(), c_char_p(),
                                          c_char_p(), c_int())
        code = C.ERR_get_error_all(ctypes.byref(file_), ctypes.byref(line),
                                   ctypes.byref(func), ctypes.byref(data),
                                   ctypes.byref(flags))
        if code == 0:
            return lines
        text = _text(data.value) if flags.value & ERR_TXT_STRING else ""
        lines.append(f"0:error:{code & 0xFFFFFFFF:08X}:"
                     f"{_text(C.ERR_lib_error_string(code))}:"
                     f"{_text(func.value)}:"
                     f"{_text(C.ERR_reason_error_string(code))}:"
                     f"{_text(file_.value)}:{line.value}:{text}")


class PinCallback:
    """An application passphrase callback answering from an env variable."""

    def __init__(self, var):
        self.pin = os.environ.get(var, "").encode()
        self.calls = 0
        self.lock = threading.Lock()
        self.cfunc = PEM_CB(self._answer)  # kept alive with the object
        self.method = C.UI_UTIL_wrap_read_pem_callback(self.cfunc, 0)
        if not self.method:
            raise SystemExit("p11b_ops: UI_UTIL_wrap_read_pem_callback failed")

    def _answer(self, buf, size, rwflag, userdata):
        with self.lock:
            self.calls += 1
        n = min(len(self.pin), size)
        ctypes.memmove(buf, self.pin, n)
        return n


def load_key(uri, ui=None):
    """(EVP_PKEY pointer or None, number of keys, error lines)."""
    C.ERR_clear_error()
    method = ui.method if ui is not None else None
    store = C.OSSL_STORE_open_ex(uri.encode(), None, None, method, None,
                                 None, None, None)
    if not store:
        return None, 0, drain_errors() or ["OSSL_STORE_open_ex failed"]
    pkey, nkeys, failed = None, 0, False
    for _ in range(1000):
        if C.OSSL_STORE_eof(store):
            break
        info = C.OSSL_STORE_load(store)
        if not info:
            if C.OSSL_STORE_eof(store):
                break
            if C.OSSL_STORE_error(store):
                failed = True
                break
            continue
        kind = C.OSSL_STORE_INFO_get_type(info)
        key = None
        if kind == OSSL_STORE_INFO_PKEY:
            key = C.OSSL_STORE_INFO_get1_PKEY(info)
        elif kind == OSSL_STORE_INFO_PUBKEY:
            key = C.OSSL_STORE_INFO_get1_PUBKEY(info)
        if key:
            nkeys += 1
            if pkey is None:
                pkey = key
            else:
                C.EVP_PKEY_free(key)
        C.OSSL_STORE_INFO_free(info)
    C.OSSL_STORE_close(store)
    errors = drain_errors()
    if failed or pkey is None:
        if pkey is not None:
            C.EVP_PKEY_free(pkey)
        return None, nkeys, errors or ["no key loaded"]
    return pkey, nkeys, []


def spki_hex(pkey):
    """The key's SubjectPublicKeyInfo (DER) in hex, or None."""
    n = C.i2d_PUBKEY(pkey, None)
    if n <= 0:
        return None
    buf = ctypes.create_string_buffer(n)
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    if C.i2d_PUBKEY(pkey, ctypes.byref(ptr)) != n:
        return None
    return buf.raw[:n].hex()


def sign(pkey, digest, msg):
    """(signature bytes or None, error lines)."""
    ctx = C.EVP_MD_CTX_new()
    try:
        if C.EVP_DigestSignInit_ex(ctx, None, digest.encode(), None, None,
                                   pkey, None) != 1:
            return None, drain_errors() or ["EVP_DigestSignInit_ex failed"]
        n = c_size_t(0)
        if C.EVP_DigestSign(ctx, None, ctypes.byref(n), msg, len(msg)) != 1:
            return None, drain_errors() or ["EVP_DigestSign (size) failed"]
        buf = ctypes.create_string_buffer(n.value)
        if C.EVP_DigestSign(ctx, buf, ctypes.byref(n), msg, len(msg)) != 1:
            return None, drain_errors() or ["EVP_DigestSign failed"]
        return buf.raw[:n.value], []
    finally:
        C.EVP_MD_CTX_free(ctx)


STALE_DIGEST = b"p11b-ops-stale-error"


def leave_stale_error():
    """Put an application's old error on this thread's queue and leave it
    there (an EVP_MD_fetch of a digest nobody has)."""
    assert not C.EVP_MD_fetch(None, STALE_DIGEST, None)


def pkey_op(pkey, op, data, outsize=None, stale=False):
    """EVP_PKEY_sign/encrypt/decrypt of data with an output buffer of
    outsize bytes (None: the size OpenSSL asks for), on a clean error
    queue or (stale) with an old error on it.
    (output bytes or None, error lines)."""
    init, call = {"sign": (C.EVP_PKEY_sign_init, C.EVP_PKEY_sign),
                  "encrypt": (C.EVP_PKEY_encrypt_init, C.EVP_PKEY_encrypt),
                  "decrypt": (C.EVP_PKEY_decrypt_init,
                              C.EVP_PKEY_decrypt)}[op]
    C.ERR_clear_error()
    if stale:
        leave_stale_error()
    ctx = C.EVP_PKEY_CTX_new_from_pkey(None, pkey, None)
    try:
        if not ctx or init(ctx) != 1:
            return None, drain_errors() or [f"EVP_PKEY_{op}_init failed"]
        if op == "sign" and C.EVP_PKEY_CTX_set_signature_md(
                ctx, C.EVP_sha256()) != 1:
            return None, drain_errors() or ["set_signature_md failed"]
        n = c_size_t(0)
        if call(ctx, None, ctypes.byref(n), data, len(data)) != 1:
            return None, drain_errors() or [f"EVP_PKEY_{op} (size) failed"]
        if outsize is not None:
            n = c_size_t(outsize)
        buf = ctypes.create_string_buffer(max(n.value, 1))
        if call(ctx, buf, ctypes.byref(n), data, len(data)) != 1:
            return None, drain_errors() or [f"EVP_PKEY_{op} failed"]
        return buf.raw[:n.value], []
    finally:
        C.EVP_PKEY_CTX_free(ctx)


def run_step(keys, step):
    """One step of `steps` (see the module doc) as a JSON-able dict."""
    spec, _, flag = step.partition("+")
    if flag not in ("", "stale"):
        print(f"p11b_ops: unknown step flag +{flag}", file=sys.stderr)
        raise SystemExit(2)
    spec, _, key = spec.partition("@")
    op, _, size = spec.partition(":")
    pkey = keys[int(key or 0)]
    outsize = int(size) if size else None
    res = {"step": step, "ok": False, "in": "", "out": "", "errors": []}
    data = os.urandom(32)
    res["in"] = data.hex()
    if op == "decrypt":
        ct, errors = pkey_op(pkey, "encrypt", data)
        if ct is None:
            res["errors"] = errors
            return res
        data = ct
    out, errors = pkey_op(pkey, op, data, outsize, stale=flag == "stale")
    res["errors"] = errors
    if out is not None:
        res["ok"], res["out"] = True, out.hex()
    return res


def set_control(text):
    """Replace faultmod's control file (tests/faultmod/README.md)."""
    path = Path(os.environ["FAULTMOD_CONTROL"])
    tmp = path.with_name(path.name + ".p11b_ops")
    tmp.write_text(text)
    os.replace(tmp, path)


def report(out, ok):
    for line in out.get("errors", []):
        print(line, file=sys.stderr)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if ok else 1


def cmd_load(args, ui):
    loads, ok = [], True
    for i, uri in enumerate(args.uris):
        pkey, nkeys, errors = load_key(uri, ui)
        spki = None
        if pkey is not None:
            spki = spki_hex(pkey)
            C.EVP_PKEY_free(pkey)
        ok = ok and pkey is not None
        loads.append({"index": i, "ok": pkey is not None, "keys": nkeys,
                      "spki": spki, "errors": errors})
        for line in errors:
            print(line, file=sys.stderr)
    out = {"loads": loads}
    if ui is not None:
        out["callback_calls"] = ui.calls
    return report(out, ok)


def cmd_sign(args, ui):
    pkey, _, errors = load_key(args.uri, ui)
    out = {"signed": 0, "errors": errors}
    if ui is not None:
        out["callback_calls"] = ui.calls
    if pkey is None:
        return report(out, False)
    if args.after_load_control is not None:
        set_control(args.after_load_control)
    for i in range(args.count):
        msg = os.urandom(1000 + i)
        sig, errors = sign(pkey, args.digest, msg)
        if sig is None:
            out["errors"] += errors
            break
        (args.out / f"msg-{i}.bin").write_bytes(msg)
        (args.out / f"sig-{i}.bin").write_bytes(sig)
        out["signed"] += 1
    C.EVP_PKEY_free(pkey)
    if ui is not None:
        out["callback_calls"] = ui.calls
    return report(out, out["signed"] == args.count)


def load_keys(args, ui):
    """Every --uri key, then the --after-load-control switch:
    (keys, None), or (None, error lines) with nothing left loaded."""
    keys = []
    for uri in args.uri:
        pkey, _, errors = load_key(uri, ui)
        if pkey is None:
            for k in keys:
                C.EVP_PKEY_free(k)
            return None, errors
        keys.append(pkey)
    if args.after_load_control is not None:
        set_control(args.after_load_control)
    return keys, None


def cmd_threads(args, ui):
    keys, errors = load_keys(args, ui)
    if keys is None:
        return report({"errors": errors, "threads": []}, False)
    results = [{"key": t % len(keys), "ops": 0, "errors": []}
               for t in range(args.threads)]
    start = threading.Barrier(args.threads + 1)
    stop = threading.Event()

    def work(t):
        res = results[t]
        pkey = keys[res["key"]]
        start.wait()
        last = None
        while not stop.is_set():
            msg = os.urandom(64)
            sig, errors = sign(pkey, args.digest, msg)
            if sig is None:
                res["errors"] = errors
                stop.set()  # one failure ends the run for everyone
                break
            res["ops"] += 1
            last = (msg, sig)
        if last is not None:
            (args.out / f"t{t}.msg").write_bytes(last[0])
            (args.out / f"t{t}.sig").write_bytes(last[1])
        C.OPENSSL_thread_stop()

    threads = [threading.Thread(target=work, args=(t,))
               for t in range(args.threads)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.monotonic()
    stop.wait(args.seconds)
    stop.set()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - t0
    for k in keys:
        C.EVP_PKEY_free(k)
    errors = [line for r in results for line in r["errors"]]
    out = {"threads": results, "seconds": round(elapsed, 3),
           "total_ops": sum(r["ops"] for r in results), "errors": errors}
    return report(out, not errors and all(r["ops"] > 0 for r in results))


def cmd_steps(args, ui):
    keys, errors = load_keys(args, ui)
    if keys is None:
        return report({"errors": errors, "steps": []}, False)
    steps = [run_step(keys, step) for step in args.steps]
    for k in keys:
        C.EVP_PKEY_free(k)
    for res in steps:
        for line in res["errors"]:
            print(f"{res['step']}: {line}", file=sys.stderr)
    return report({"steps": steps}, all(r["ok"] for r in steps))


def main(argv):
    ap = argparse.ArgumentParser(prog="p11b_ops.py")
    ap.add_argument("--pin-callback-env", metavar="VAR")
    ap.add_argument("--after-load-control", metavar="TEXT")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("uris", nargs="+")
    p = sub.add_parser("sign")
    p.add_argument("--uri", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--digest", default="SHA256")
    p.add_argument("--out", type=Path,
                   required=True)
    p = sub.add_parser("threads")
    p.add_argument("--uri", action="append", required=True)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--digest", default="SHA256")
    p.add_argument("--out", type=Path,
                   required=True)
    p = sub.add_parser("steps")
    p.add_argument("--uri", action="append", required=True)
    p.add_argument("steps", nargs="+")
    args = ap.parse_args(argv)

    if C.OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, None) != 1:
        print("p11b_ops: cannot load the OpenSSL config", file=sys.stderr)
        for line in drain_errors():
            print(line, file=sys.stderr)
        return 1
    # 3.0 goes on after most config errors: show them, or later errors
    # make no sense.
    for line in drain_errors():
        print(f"p11b_ops: config: {line}", file=sys.stderr)
    ui = PinCallback(args.pin_callback_env) if args.pin_callback_env else None
    handler = {"load": cmd_load, "sign": cmd_sign,
               "threads": cmd_threads, "steps": cmd_steps}[args.cmd]
    return handler(args, ui)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
