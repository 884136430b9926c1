"""PyKCS11 jobs the fixtures run in a child process.

A child process, because SoftHSM reads SOFTHSM2_CONF once per process and
the session has several token directories. Usage:

  python3 p11b_pykcs11.py MODULE LABEL info [objects]
      token info as JSON on stdout; with "objects", also every object's
      class/label/id and a few attributes (public objects only, unless
      P11B_PIN is set in the environment)
  python3 p11b_pykcs11.py MODULE LABEL fill COUNT BATCH
      log in with the PIN from P11B_PIN and create COUNT public CKO_DATA
      token objects in one session; prints JSON with per-batch timings

The PIN comes through the environment so it never shows up in a process
listing or in pytest's output.
"""

import json
import os
import sys
import time

import PyKCS11
from PyKCS11.LowLevel import (CKA_APPLICATION, CKA_CLASS, CKA_EC_PARAMS,
                              CKA_ID, CKA_ISSUER, CKA_LABEL, CKA_MODULUS,
                              CKA_PRIVATE, CKA_PUBLIC_EXPONENT,
                              CKA_SERIAL_NUMBER, CKA_SUBJECT, CKA_TOKEN,
                              CKA_VALUE, CKO_CERTIFICATE, CKO_DATA,
                              CKO_PRIVATE_KEY, CKO_PUBLIC_KEY)

CLASS_NAMES = {CKO_DATA: "data", CKO_CERTIFICATE: "cert",
               CKO_PUBLIC_KEY: "public", CKO_PRIVATE_KEY: "private"}


def open_token(module, label, rw=False):
    lib = PyKCS11.PyKCS11Lib()
    lib.load(module)
    for slot in lib.getSlotList(tokenPresent=True):
        info = lib.getTokenInfo(slot)
        if info.label.strip() == label:
            flags = PyKCS11.CKF_SERIAL_SESSION
            if rw:
                flags |= PyKCS11.CKF_RW_SESSION
            return lib, slot, info, lib.openSession(slot, flags)
    raise SystemExit(f"no token labelled {label!r}")


def attr(session, obj, kind):
    try:
        value = session.getAttributeValue(obj, [kind], allAsBinary=True)[0]
    except PyKCS11.PyKCS11Error:
        return None
    if value is None:
        return None
    return bytes(value).hex()


def info(module, label, with_objects):
    lib, slot, ti, session = open_token(module, label)
    pin = os.environ.get("P11B_PIN") if with_objects else None
    if pin:
        session.login(pin)
    objects = []
    for obj in session.findObjects([]) if with_objects else []:
        cls = session.getAttributeValue(obj, [CKA_CLASS])[0]
        if cls == CKO_DATA:
            objects.append({"class": "data"})  # only counted
            continue
        entry = {"class": CLASS_NAMES.get(cls, str(cls)),
                 "label": bytes(session.getAttributeValue(
                     obj, [CKA_LABEL], allAsBinary=True)[0]).decode(),
                 "id": attr(session, obj, CKA_ID)}
        if cls == CKO_CERTIFICATE:
            wanted = (("subject", CKA_SUBJECT), ("issuer", CKA_ISSUER),
                      ("serial", CKA_SERIAL_NUMBER))
        else:
            wanted = (("modulus", CKA_MODULUS),
                      ("public_exponent", CKA_PUBLIC_EXPONENT),
                      ("ec_params", CKA_EC_PARAMS))
        for name, kind in wanted:
            value = attr(session, obj, kind)
            if value:
                entry[name] = value
        if "modulus" in entry:
            entry["modulus_bits"] = len(entry.pop("modulus")) * 4
        objects.append(entry)
    if pin:
        session.logout()
    session.closeSession()
    out = {"slot": slot, "label": ti.label.strip(),
           "manufacturer": ti.manufacturerID.strip(),
           "model": ti.model.strip(), "serial": ti.serialNumber.strip(),
           "objects": objects}
    json.dump(out, sys.stdout)


def fill(module, label, count, batch):
    lib, slot, ti, session = open_token(module, label, rw=True)
    session.login(os.environ["P11B_PIN"])
    batches = []
    start = time.monotonic()
    for first in range(0, count, batch):
        t = time.monotonic()
        for i in range(first, min(first + batch, count)):
            session.createObject([
                (CKA_CLASS, CKO_DATA), (CKA_TOKEN, True),
                (CKA_PRIVATE, False), (CKA_LABEL, f"filler-{i:05d}"),
                (CKA_APPLICATION, "p11b-filler"),
                (CKA_VALUE, i.to_bytes(4, "big"))])
        batches.append(round(time.monotonic() - t, 3))
    total = time.monotonic() - start
    session.logout()
    session.closeSession()
    json.dump({"count": count, "seconds": round(total, 3),
               "batch_seconds": batches}, sys.stdout)


def main(argv):
    module, label, job = argv[1:4]
    if job == "info":
        info(module, label, argv[4:] == ["objects"])
    elif job == "fill":
        fill(module, label, int(argv[4]), int(argv[5]))
    else:
        raise SystemExit(f"unknown job {job!r}")


if __name__ == "__main__":
    main(sys.argv)
