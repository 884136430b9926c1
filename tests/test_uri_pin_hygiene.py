"""A URI we refuse never has its PIN printed by anyone's error.

OSSL_STORE_open_ex offers the string to OpenSSL's file: loader before
ours, which queues "calling stat(<the whole string>)": with a pin-value
in the URI, the PIN reached the error queue and every program that
prints it (issue #11 item 12: 13 of 19 malformed URIs). Each URI below
carries a distinctive PIN and is refused, as malformed or (the last one)
as naming another module; the PIN must appear in no error line.

Through libcrypto (tests/tools/p11b_ops.py prints the queue), nothing at
all may carry the PIN. The openssl commands also print their own
argument ("Could not open file or uri for loading ... from <URI>"):
that line is the command's, written from its argv and not from the error
queue, and beyond a provider's reach; every error line must be clean.
"""

import re

import pytest

import p11b_util as u

LEAK = "Zq7-LeakCanary-31"  # distinctive, and not one of the test PINs

MALFORMED = [
    "pkcs11:object=a%zz?pin-value={}",
    "pkcs11:object=a%4?pin-value={}",
    "pkcs11:object=a;object=b?pin-value={}",
    "pkcs11:object=a?pin-value={}&pin-value={}",
    "pkcs11:object=a?pin-value={}&pin-source=file:/nonexistent",
    "pkcs11:type=bogus?pin-value={}",
    "pkcs11:id=%G1?pin-value={}",
    "pkcs11:object=a?pin-value={}%zz",
    "pkcs11:object=a?pin-value={}%",
    "pkcs11:object=a;=b?pin-value={}",
    "pkcs11:object?pin-value={}",
    "pkcs11:object=a?pin-value={}&module-path=%zz",
    "pkcs11:slot-id=abc?pin-value={}",
    "pkcs11:object=a?module-path=/a&module-path=/b&pin-value={}",
    "pkcs11:token=a;token=b?pin-value={}",
    "pkcs11:object=a;pin-value={}",
    "pkcs11:object=a;id=%?pin-value={}",
    "pkcs11:object=a?pin-value={}&module-name=%",
    "pkcs11:object=p256?pin-value={}&module-path=/nonexistent/module.so",
]
URIS = [t.format(LEAK, LEAK) for t in MALFORMED]
ERROR_LINE = re.compile(r"^[0-9A-F]+:error:", re.M)


def test_i11_12_malformed_uri_pin_never_printed(scratch_token, tmp_path):
    tok = scratch_token
    env = tok.fresh_env(tmp_path)
    p, doc = u.run_ops(env, "load", *URIS, ok=False)
    assert doc is not None, u.describe(p)
    loads = doc["loads"]
    assert len(loads) == len(URIS)
    leaked = [URIS[r["index"]] for r in loads
              if any(LEAK in line for line in r["errors"])]
    assert leaked == [], f"{len(leaked)} of {len(URIS)} leak: {leaked}"
    for r in loads:
        assert not r["ok"], URIS[r["index"]]
        # Our own error is there, and says what is wrong.
        assert any(":pkcs11:" in line for line in r["errors"]), r
    assert LEAK not in p.stdout and LEAK not in p.stderr
    assert LEAK not in u.read_log(env)


@pytest.mark.parametrize("command", [["pkey", "-noout", "-in"],
                                     ["storeutl", "-noout"]],
                         ids=["pkey", "storeutl"])
def test_i11_12_malformed_uri_pin_not_in_openssl_errors(scratch_token,
                                                        tmp_path, command):
    tok = scratch_token
    env = tok.fresh_env(tmp_path)
    leaked = []
    for uri in URIS:
        p = tok.ossl(*command, uri, env=env, ok=False)
        assert p.returncode != 0, uri
        errors = [line for line in p.stderr.splitlines()
                  if ERROR_LINE.match(line)]
        assert any(":pkcs11:" in line for line in errors), p.stderr
        if any(LEAK in line for line in errors):
            leaked.append(uri)
        assert LEAK not in p.stdout
    assert leaked == [], f"{len(leaked)} of {len(URIS)} leak: {leaked}"
    assert LEAK not in u.read_log(env)
