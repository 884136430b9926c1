#!/usr/bin/python3
"""p11b_keyattrs: the protection attributes of every private and secret key.

  python3 p11b_keyattrs.py MODULE TOKEN-LABEL

Logs in with the PIN from the environment variable P11B_PIN (so it never
shows in a process listing), finds every CKO_PRIVATE_KEY and CKO_SECRET_KEY
object with PyKCS11 and prints a JSON list on stdout, one entry per key:

  {"class": "private", "label": "p256", "id": "04", "key_type": 3,
   "sensitive": true, "extractable": false, "always_sensitive": true,
   "never_extractable": true, "private": true}

An attribute the token does not give is null. Runs in a process of its own
because SoftHSM reads SOFTHSM2_CONF once per process.
"""

import json
import os
import sys

import PyKCS11
from PyKCS11.LowLevel import (CKA_ALWAYS_SENSITIVE, CKA_CLASS, CKA_EXTRACTABLE,
                              CKA_ID, CKA_KEY_TYPE, CKA_LABEL,
                              CKA_NEVER_EXTRACTABLE, CKA_PRIVATE,
                              CKA_SENSITIVE, CKO_PRIVATE_KEY, CKO_SECRET_KEY)

FLAGS = (("sensitive", CKA_SENSITIVE), ("extractable", CKA_EXTRACTABLE),
         ("always_sensitive", CKA_ALWAYS_SENSITIVE),
         ("never_extractable", CKA_NEVER_EXTRACTABLE),
         ("private", CKA_PRIVATE))


def one(session, obj, attr):
    try:
        value = session.getAttributeValue(obj, [attr], allAsBinary=True)[0]
    except PyKCS11.PyKCS11Error:
        return None
    return None if value is None else bytes(value)


def main(module, label):
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    for slot in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(slot).label.strip() == label:
            break
    else:
        raise SystemExit(f"p11b_keyattrs: no token labelled {label!r}")
    session = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION)
    session.login(os.environ["P11B_PIN"])
    out = []
    for cls, name in ((CKO_PRIVATE_KEY, "private"), (CKO_SECRET_KEY, "secret")):
        for obj in session.findObjects([(CKA_CLASS, cls)]):
            entry = {"class": name}
            raw = one(session, obj, CKA_LABEL)
            entry["label"] = raw.decode(errors="replace") if raw else ""
            raw = one(session, obj, CKA_ID)
            entry["id"] = raw.hex() if raw is not None else None
            raw = one(session, obj, CKA_KEY_TYPE)
            entry["key_type"] = (int.from_bytes(raw, sys.byteorder)
                                 if raw else None)
            for key, attr in FLAGS:
                raw = one(session, obj, attr)
                entry[key] = None if not raw else raw[0] != 0
            out.append(entry)
    session.logout()
    session.closeSession()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
