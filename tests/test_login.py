"""Login: which token a PIN goes to, tokens with one session, and what
reaches the error queue when a login fails (issue #11, items 2, 11, 13).

Two tokens in one SoftHSM configuration: the scratch token (PIN) and a
second token, "p11b-other", whose user PIN is WRONG_PIN, so the scratch
token's PIN is wrong for it. The provider reaches both through
tests/faultmod; the debug log's level-2 lines 'C_Login(slot N, CKU_USER)'
count the logins per slot, and the slot of each token comes from PyKCS11.
"""

import dataclasses
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u
from conftest import token_info
from p11b_util import CKR, PIN, SO_PIN, WRONG_PIN

OTHER = "p11b-other"
OTHER_PIN = WRONG_PIN  # distinctive, and wrong for the scratch token


def add_other_token(tok):
    """A second token beside tok, in tok's SoftHSM config, holding one P-256
    key pair ("other-key"); returns {label: slot id} of both tokens."""
    u.run(["softhsm2-util", "--init-token", "--free", "--label", OTHER,
           "--pin", OTHER_PIN, "--so-pin", SO_PIN], tok.tool_env())
    u.run(["pkcs11-tool", "--module", tok.module, "--token-label", OTHER,
           "--login", "--pin", OTHER_PIN, "--keypairgen", "--key-type",
           "EC:prime256v1", "--label", "other-key", "--id", "09"],
          tok.tool_env())
    other = dataclasses.replace(tok, label=OTHER)
    return {tok.label: token_info(tok)["slot"],
            OTHER: token_info(other)["slot"]}


def logins_per_slot(log):
    """{slot id: number of C_Login(CKU_USER) calls} from a debug log."""
    counts = {}
    for line in u.cryptoki_calls(log, "C_Login"):
        if "CKU_USER" in line:
            slot = int(line.split("C_Login(slot ")[1].split(",")[0])
            counts[slot] = counts.get(slot, 0) + 1
    return counts


# ---- item 13: the token's own libcrypto noise stays off the error queue -----

def test_i11_13_token_noise_not_in_error_queue(scratch_token, fault_rig):
    tok = scratch_token
    rig = fault_rig(tok, log_level=2, pkcs11_module_token_pin=WRONG_PIN)
    p = rig.ossl("pkey", "-in", tok.uri("p256", "private"), "-pubout",
                 ok=False)
    assert p.returncode != 0
    errors = u.openssl_errors(p.stderr)
    assert errors, u.describe(p)
    ours = [e for e in errors if e["lib"] == "pkcs11"]
    assert ours and "CKR_PIN_INCORRECT" in ours[0]["data"], u.describe(p)
    assert ours[0]["reason"] in ("PIN incorrect", "login failed"), \
        u.describe(p)
    # every error line before ours, and every other one, is not the token's
    noise = [e for e in errors if e["lib"] != "pkcs11" and
             e["lib"] not in ("STORE routines", "OSSL_STORE routines",
                              "DECODER routines", "OSSL_DECODER routines")]
    assert not noise, "token-side errors on the queue:\n" + p.stderr
    assert "bad decrypt" not in p.stderr and "engine" not in p.stderr.lower()
    assert errors[0]["lib"] == "pkcs11", u.describe(p)
