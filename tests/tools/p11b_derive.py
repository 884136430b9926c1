#!/usr/bin/python3
"""p11b_derive: EVP_PKEY_derive into a buffer of a chosen size.

`openssl pkeyutl -derive` always asks for the secret's size first and
hands over a buffer that big; callers doing X9.63-style truncation pass a
shorter one. This drives libcrypto with ctypes (through p11b_ops) to do so:

  p11b_derive.py --key KEY --peer PEER --outlen N
  p11b_derive.py --key KEY --peer PEER --peer PEER2 --outlen N --reuse

KEY is anything OSSL_STORE opens (a pkcs11: URI, a PEM file), PEER a
public key file or URI. Loads the provider from OPENSSL_CONF like openssl.
JSON on stdout: {"ok": bool, "secret": HEX, "errors": [...]}; exit 0 when
the derivation succeeded, 1 otherwise.

With --reuse, one context is used again and duplicated, the way a
provider's per-peer state can go wrong: it derives with PEER twice, a
duplicate of it (EVP_PKEY_CTX_dup) derives, then the first context is
given PEER2 and derives, and the duplicate derives once more.
"secrets" lists the five results in that order (HEX, or null).
"""

import argparse
import ctypes
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import p11b_ops as ops  # noqa: E402

C = ops.C
c_void_p, c_int, c_size_t = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
for name, restype, argtypes in (
        ("EVP_PKEY_CTX_new_from_pkey", c_void_p, [c_void_p, c_void_p,
                                                  ctypes.c_char_p]),
        ("EVP_PKEY_CTX_free", None, [c_void_p]),
        ("EVP_PKEY_derive_init", c_int, [c_void_p]),
        ("EVP_PKEY_derive_set_peer", c_int, [c_void_p, c_void_p]),
        ("EVP_PKEY_derive", c_int, [c_void_p, c_void_p,
                                    ctypes.POINTER(c_size_t)])):
    fn = getattr(C, name)
    fn.restype = restype
    fn.argtypes = argtypes


def derive(key, peer, outlen):
    ctx = C.EVP_PKEY_CTX_new_from_pkey(None, key, None)
    if not ctx:
        return None, ops.drain_errors() or ["EVP_PKEY_CTX_new_from_pkey"]
    try:
        if C.EVP_PKEY_derive_init(ctx) != 1:
            return None, ops.drain_errors() or ["EVP_PKEY_derive_init"]
        if C.EVP_PKEY_derive_set_peer(ctx, peer) != 1:
            return None, ops.drain_errors() or ["EVP_PKEY_derive_set_peer"]
        buf = ctypes.create_string_buffer(max(outlen, 1))
        n = c_size_t(outlen)
        if C.EVP_PKEY_derive(ctx, buf, ctypes.byref(n)) != 1:
            return None, ops.drain_errors() or ["EVP_PKEY_derive failed"]
        return buf.raw[:n.value], []
    finally:
        C.EVP_PKEY_CTX_free(ctx)


for name, restype, argtypes in (
        ("EVP_PKEY_CTX_dup", c_void_p, [c_void_p]),):
    fn = getattr(C, name)
    fn.restype = restype
    fn.argtypes = argtypes


def derive_once(ctx, outlen):
    buf = ctypes.create_string_buffer(max(outlen, 1))
    n = c_size_t(outlen)
    if C.EVP_PKEY_derive(ctx, buf, ctypes.byref(n)) != 1:
        return None
    return buf.raw[:n.value]


def derive_reuse(key, peer, peer2, outlen):
    """The --reuse sequence: ([bytes or None] * 5, errors)."""
    ctx = C.EVP_PKEY_CTX_new_from_pkey(None, key, None)
    dup = None
    out = []
    try:
        if not ctx or C.EVP_PKEY_derive_init(ctx) != 1 or \
                C.EVP_PKEY_derive_set_peer(ctx, peer) != 1:
            return [None] * 5, ops.drain_errors() or ["derive setup failed"]
        out.append(derive_once(ctx, outlen))
        out.append(derive_once(ctx, outlen))
        dup = C.EVP_PKEY_CTX_dup(ctx)
        out.append(derive_once(dup, outlen) if dup else None)
        if C.EVP_PKEY_derive_set_peer(ctx, peer2) == 1:
            out.append(derive_once(ctx, outlen))
        else:
            out.append(None)
        out.append(derive_once(dup, outlen) if dup else None)
        return out, ops.drain_errors()
    finally:
        C.EVP_PKEY_CTX_free(dup)
        C.EVP_PKEY_CTX_free(ctx)


def main(argv):
    ap = argparse.ArgumentParser(prog="p11b_derive.py")
    ap.add_argument("--key", required=True)
    ap.add_argument("--peer", required=True, action="append")
    ap.add_argument("--outlen", type=int, required=True)
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args(argv)
    if len(args.peer) != (2 if args.reuse else 1):
        print("p11b_derive: --reuse takes two --peer, else one",
              file=sys.stderr)
        return 2
    if C.OPENSSL_init_crypto(ops.OPENSSL_INIT_LOAD_CONFIG, None) != 1:
        print("p11b_derive: cannot load the OpenSSL config", file=sys.stderr)
        return 1
    ops.drain_errors()
    out = {"ok": False, "secret": None, "errors": []}
    key, _, errors = ops.load_key(args.key)
    peer, _, perrors = ops.load_key(args.peer[0]) if key else (None, 0, [])
    peer2 = None
    if args.reuse and peer:
        peer2, _, more = ops.load_key(args.peer[1])
        perrors += more
    if key and peer and not args.reuse:
        secret, errors = derive(key, peer, args.outlen)
        out["ok"] = secret is not None
        out["secret"] = secret.hex() if secret is not None else None
    elif key and peer and peer2:
        secrets, errors = derive_reuse(key, peer, peer2, args.outlen)
        out["ok"] = all(x is not None for x in secrets)
        out["secrets"] = [x.hex() if x is not None else None
                          for x in secrets]
        out["secret"] = out["secrets"][0]
    out["errors"] = errors + perrors
    for k in (key, peer, peer2):
        if k:
            C.EVP_PKEY_free(k)
    for line in out["errors"]:
        print(line, file=sys.stderr)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
