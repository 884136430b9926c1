"""tests/faultmod: our PKCS#11 module that wraps SoftHSM and misbehaves.

P11BRIDGE_FAULTMOD names the built faultmod.so (`make check` exports it).
SoftHSM reads SOFTHSM2_CONF once per process, and PyKCS11 loads modules
into its own process. So each scenario runs in a child process: this file,
run as a script (`python3 test_faultmod.py SCENARIO`), prints what it saw as
one JSON object, and the tests assert on that. A scenario may rewrite the
control file between two calls, just as a test would under a running
server. The control file always changes by rename, with a strictly newer
mtime, so the module notices every change without any sleep.

The token (one RSA and two EC key pairs) is built once for this file,
straight on SoftHSM. Nothing here changes it except
test_passthrough_keygen_and_sign, which has a token of its own.
"""

import ctypes
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

import p11b_util as u
from p11b_secrets import PIN, SO_PIN, WRONG_PIN

DEFAULT_SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
LABEL = "faultmod"
KEYS = (("rsa", "01", "rsa:2048"), ("p256", "02", "EC:prime256v1"),
        ("p521", "03", "EC:secp521r1"))
COUNT_LINE = re.compile(r"^(\d+) (C_[A-Za-z]+) 0x([0-9a-f]{8})$")


# ---- the parent side: token, environment, running scenarios ---------------

@dataclass
class FmToken:
    root: Path
    softhsm: str         # the real module
    faultmod: str        # faultmod.so
    softhsm_conf: Path

    def tool_env(self):
        env = u.base_env()
        env["SOFTHSM2_CONF"] = str(self.softhsm_conf)
        return env

    def fm_env(self, directory, **faultmod_vars):
        """Env for a process that loads faultmod; FAULTMOD_X=None drops X."""
        env = self.tool_env()
        env.update(u.sanitizer_env())
        if "LD_PRELOAD" in env:
            # With libasan preloaded, PyKCS11's C++ exceptions need
            # libstdc++ loaded before the extension module is.
            env["LD_PRELOAD"] += " libstdc++.so.6"
        env.update(FM_LIB=self.faultmod, FM_LABEL=LABEL, P11B_PIN=PIN,
                   P11B_WRONG_PIN=WRONG_PIN,
                   FAULTMOD_MODULE=self.softhsm,
                   FAULTMOD_CONTROL=str(Path(directory) / "control"),
                   FAULTMOD_COUNT_FILE=str(Path(directory) / "calls"))
        for name, value in faultmod_vars.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return env


def _required_faultmod():
    path = os.environ.get("P11BRIDGE_FAULTMOD")
    if not path:
        pytest.fail("P11BRIDGE_FAULTMOD is not set: it must name the built "
                    "faultmod.so (tests/faultmod/.libs/faultmod.so in the "
                    "build directory). Run the suite with `make check`, or "
                    "export it yourself.", pytrace=False)
    if not os.path.exists(path):
        pytest.fail(f"P11BRIDGE_FAULTMOD={path} does not exist",
                    pytrace=False)
    return path


def make_fm_token(root, faultmod, keys=KEYS):
    root = Path(root)
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    tok = FmToken(root, os.environ.get("SOFTHSM_LIB") or DEFAULT_SOFTHSM,
                  faultmod, conf)
    u.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL,
           "--pin", PIN, "--so-pin", SO_PIN], tok.tool_env())
    for label, kid, kind in keys:
        u.run(["pkcs11-tool", "--module", tok.softhsm, "--token-label", LABEL,
               "--login", "--pin", PIN, "--keypairgen", "--key-type", kind,
               "--label", label, "--id", kid], tok.tool_env())
    return tok


@pytest.fixture(scope="module")
def fm_token(tmp_path_factory):
    faultmod = _required_faultmod()
    return make_fm_token(tmp_path_factory.mktemp("faultmod-token"), faultmod)


def write_control(path, lines):
    """Replace the control file by rename, with a strictly newer mtime."""
    path = Path(path)
    stamp = time.time_ns()
    if path.exists():
        stamp = max(stamp, path.stat().st_mtime_ns + 1_000_000)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.utime(tmp, ns=(stamp, stamp))
    os.replace(tmp, path)


def scenario(tok, name, directory, control=(), **faultmod_vars):
    """Run scenario `name` in a child; (its JSON result, the process)."""
    env = tok.fm_env(directory, **faultmod_vars)
    if "FAULTMOD_CONTROL" in env:
        write_control(env["FAULTMOD_CONTROL"], control)
    p = u.run([sys.executable, __file__, name], env, ok=False)
    assert p.returncode == 0, u.describe(p)
    lines = p.stdout.strip().splitlines()
    assert lines, u.describe(p)
    return json.loads(lines[-1]), p


def count_lines(path):
    """[(pid, function, rv)] from a count file; every line well-formed."""
    data = Path(path).read_bytes()
    for secret in u.SECRETS:
        assert secret.encode() not in data, f"a PIN appears in {path}"
    out = []
    for line in data.decode().splitlines():
        m = COUNT_LINE.match(line)
        assert m, f"malformed count-file line {line!r}"
        out.append((int(m.group(1)), m.group(2), int(m.group(3), 16)))
    return out


def calls(lines, function, pid=None, rv=None):
    return sum(1 for p, f, r in lines if f == function and
               (pid is None or p == pid) and (rv is None or r == rv))


# ---- the tests -------------------------------------------------------------

def test_passthrough_keygen_and_sign(tmp_path):
    """pkcs11-tool makes a key and signs through faultmod; verified."""
    tok = make_fm_token(tmp_path / "token", _required_faultmod(), keys=())
    env = tok.fm_env(tmp_path)
    base = ["pkcs11-tool", "--module", tok.faultmod, "--token-label", LABEL]
    login = ["--login", "--pin", PIN]
    u.run(base + login + ["--keypairgen", "--key-type", "rsa:2048",
                          "--label", "made", "--id", "11"], env)
    msg, sig, pub = tmp_path / "msg", tmp_path / "sig", tmp_path / "pub.der"
    msg.write_bytes(os.urandom(1000))
    u.run(base + login + ["--sign", "-m", "SHA256-RSA-PKCS", "--id", "11",
                          "-i", msg, "-o", sig], env)
    u.run(base + ["--read-object", "--type", "pubkey", "--id", "11",
                  "-o", pub], env)
    key = serialization.load_der_public_key(u.normalize_spki(pub.read_bytes()))
    key.verify(sig.read_bytes(), msg.read_bytes(), padding.PKCS1v15(),
               hashes.SHA256())
    lines = count_lines(tmp_path / "calls")
    assert calls(lines, "C_GenerateKeyPair", rv=0) == 1
    assert calls(lines, "C_Sign", rv=0) >= 1
    assert all(rv == 0 for _, f, rv in lines if f == "C_Login")


# The mechanisms the "mechs" scenario tries, by value (PyKCS11 has two
# names for 0x1040).
PROBES = {"CKM_RSA_PKCS": 0x1, "CKM_RSA_PKCS_PSS": 0xD,
          "CKM_SHA256_RSA_PKCS": 0x40, "CKM_SHA384_RSA_PKCS": 0x41,
          "CKM_SHA256": 0x250, "CKM_EC_KEY_PAIR_GEN": 0x1040,
          "CKM_ECDSA": 0x1041}
# (variables, hidden values, kept values or None for "all the others")
MECH_CASES = [
    pytest.param({"FAULTMOD_HIDE_MECHS":
                  "CKM_SHA256_RSA_PKCS,CKM_RSA_PKCS_PSS,0x1041"},
                 {0x40, 0xD, 0x1041}, None, id="hide"),
    pytest.param({"FAULTMOD_HIDE_MECHS": " EC_KEY_PAIR_GEN , CKM_SHA256"},
                 {0x1040, 0x250}, None, id="hide-short-names"),
    pytest.param({"FAULTMOD_ONLY_MECHS": "CKM_RSA_PKCS,CKM_SHA256_RSA_PKCS,"
                  "CKM_SHA384_RSA_PKCS,0x250",
                  "FAULTMOD_HIDE_MECHS": "CKM_SHA384_RSA_PKCS"},
                 {0x41}, {0x1, 0x40, 0x41, 0x250}, id="only-and-hide"),
    pytest.param({}, set(), None, id="none"),
]


@pytest.fixture(scope="module")
def softhsm_mechs(fm_token, tmp_path_factory):
    """SoftHSM's own mechanism list, in its order (the child loads it)."""
    res, _ = scenario(fm_token, "mechs", tmp_path_factory.mktemp("real"),
                      FM_LIB=fm_token.softhsm)
    return res["list"]


@pytest.mark.parametrize("variables, hide, only", MECH_CASES)
def test_hidden_mechanisms(fm_token, softhsm_mechs, tmp_path, variables,
                           hide, only):
    def hidden(m):
        return m in hide or (only is not None and m not in only)

    res, _ = scenario(fm_token, "mechs", tmp_path, **variables)
    assert res["list"] == [m for m in softhsm_mechs if not hidden(m)]
    for name, value in PROBES.items():
        want = "CKR_MECHANISM_INVALID" if hidden(value) else "CKR_OK"
        assert res["info"][name] == want, name
        if name in res["use"]:  # its *Init (PSS needs parameters: skipped)
            assert res["use"][name] == want, name


def test_unknown_mechanism_name_is_reported(fm_token, tmp_path):
    res, p = scenario(fm_token, "mechs", tmp_path,
                      FAULTMOD_HIDE_MECHS="CKM_NO_SUCH_THING,CKM_ECDSA")
    assert "unknown mechanism 'CKM_NO_SUCH_THING' ignored" in p.stderr
    assert PROBES["CKM_ECDSA"] not in res["list"]
    assert res["use"]["CKM_ECDSA"] == "CKR_MECHANISM_INVALID"


def test_fail_directive_with_and_without_count(fm_token, tmp_path):
    res, p = scenario(fm_token, "fail", tmp_path, control=[
        "# the first two logins are refused, every random call fails",
        "fail C_Login CKR_PIN_INCORRECT 2",
        "fail C_Sign DEVICE_REMOVED 1   # only the next one",
        "fail C_GenerateRandom 0x30",
        "frobnicate C_Sign",
        "fail C_Sign CKR_NO_SUCH_VALUE",
    ])
    assert res["logins"] == ["CKR_PIN_INCORRECT", "CKR_PIN_INCORRECT",
                             "CKR_OK"]
    # the injected failure ended the operation: the next SignInit works
    assert res["signs"] == ["CKR_DEVICE_REMOVED", "CKR_OK", "CKR_OK"]
    assert res["random"] == ["CKR_DEVICE_ERROR", "CKR_DEVICE_ERROR"]
    assert res["random_after_change"] == "CKR_OK"
    assert res["update"] == ["CKR_DEVICE_ERROR", "CKR_OK", "CKR_OK",
                             "CKR_OK"]
    assert res["any"] == ["CKR_GENERAL_ERROR", "CKR_OK"]
    assert p.stderr.count("unknown directive 'frobnicate' ignored") == 1
    assert p.stderr.count("bad 'fail' line ignored") == 1
    lines = count_lines(tmp_path / "calls")
    assert calls(lines, "C_Login", rv=0xA0) == 2
    assert calls(lines, "C_Sign", rv=0x32) == 1


def test_fail_active_leaves_the_operation_active(fm_token, tmp_path):
    """`fail-active` is a real token's CKR_BUFFER_TOO_SMALL (or a quirky
    token's error): the call fails and the operation stays active, so the
    session's next *Init gets CKR_OPERATION_ACTIVE from SoftHSM itself."""
    res, _ = scenario(fm_token, "fail_active", tmp_path, control=[
        "fail-active C_Sign CKR_BUFFER_TOO_SMALL 1",
        "fail-active C_Decrypt CKR_FUNCTION_FAILED 1",
    ])
    assert res["sign"] == ["CKR_BUFFER_TOO_SMALL", "CKR_OPERATION_ACTIVE"]
    # the operation left active can still be finished, as after a real
    # CKR_BUFFER_TOO_SMALL
    assert res["sign_finish"] == "CKR_OK"
    assert res["sign_after"] == "CKR_OK"
    assert res["decrypt"] == ["CKR_FUNCTION_FAILED", "CKR_OPERATION_ACTIVE"]
    assert res["decrypt_finish"] == "CKR_OK"
    lines = count_lines(tmp_path / "calls")
    assert calls(lines, "C_Sign", rv=0x150) == 1
    assert calls(lines, "C_SignInit", rv=0x90) == 1


def test_removed_and_reinserted(fm_token, tmp_path):
    res, _ = scenario(fm_token, "removal", tmp_path)
    assert res["before"] == "CKR_OK"
    gone = res["removed"]
    assert gone["present_slots"] == []
    assert gone["slot_listed"] is True
    assert gone["token_present_flag"] is False
    assert gone["token_info"] == "CKR_TOKEN_NOT_PRESENT"
    assert gone["mechanisms"] == "CKR_TOKEN_NOT_PRESENT"
    assert gone["open"] == "CKR_TOKEN_NOT_PRESENT"
    assert gone["sign"] == "CKR_DEVICE_REMOVED"
    assert gone["find"] == "CKR_DEVICE_REMOVED"
    back = res["reinserted"]
    assert back["slot_present"] is True
    assert back["old_sign"] == "CKR_SESSION_HANDLE_INVALID"
    assert back["old_info"] == "CKR_SESSION_HANDLE_INVALID"
    assert back["new_state"] == "CKS_RW_PUBLIC_SESSION"  # logged out
    assert back["new_login"] == "CKR_OK"
    assert back["new_sign"] == "CKR_OK"
    assert back["old_close"] == "CKR_SESSION_HANDLE_INVALID"
    # a second pull and re-insertion invalidates the second session too
    assert res["second"] == {"old": "CKR_SESSION_HANDLE_INVALID",
                             "new": "CKR_OK"}


def test_delay_still_works(fm_token, tmp_path):
    res, _ = scenario(fm_token, "delay", tmp_path, control=[
        "delay C_GenerateRandom 20000", "delay * 100"])
    assert res == {"random": "CKR_OK", "sign": "CKR_OK"}


def test_max_sessions(fm_token, tmp_path):
    res, _ = scenario(fm_token, "max_sessions", tmp_path,
                      control=["max-sessions 2"])
    assert res["max_session_count"] == 2
    assert res["opens"] == ["CKR_OK", "CKR_OK", "CKR_SESSION_COUNT"]
    assert res["after_close"] == ["CKR_OK", "CKR_SESSION_COUNT"]
    assert res["after_close_all"] == ["CKR_OK", "CKR_OK",
                                      "CKR_SESSION_COUNT"]
    assert res["unlimited"] == ["CKR_OK"] * 4
    assert res["max_session_count_after"] != 2


def test_final_try_and_locked_flags(fm_token, tmp_path):
    res, _ = scenario(fm_token, "pin_flags", tmp_path,
                      control=["final-try"])
    assert res["final_try"] == {"final_try": True, "locked": False,
                                "login": "CKR_OK"}
    assert res["locked"] == {"final_try": False, "locked": True,
                             "login": "CKR_PIN_LOCKED"}
    assert res["cleared"] == {"final_try": False, "locked": False,
                              "login": "CKR_OK"}


def test_always_authenticate(fm_token, tmp_path):
    res, _ = scenario(fm_token, "always_auth", tmp_path,
                      control=["always-authenticate"])
    assert res["attribute"] is True
    assert res["no_context_login"] == "CKR_USER_NOT_LOGGED_IN"
    assert res["context_login"] == "CKR_OK"
    assert res["sign_after_login"] == "CKR_OK"
    assert res["next_use_needs_pin_again"] == "CKR_USER_NOT_LOGGED_IN"
    assert res["wrong_pin"] == "CKR_PIN_INCORRECT"
    assert res["after_wrong_pin"] == "CKR_USER_NOT_LOGGED_IN"
    assert res["right_pin"] == "CKR_OK"
    assert res["multipart"] == ["CKR_USER_NOT_LOGGED_IN", "CKR_OK",
                                "CKR_OK", "CKR_OK"]
    assert res["decrypt"] == ["CKR_USER_NOT_LOGGED_IN", "CKR_OK", "CKR_OK"]
    assert res["verify_needs_nothing"] is True
    assert res["switched_off"] == {"attribute": False, "sign": "CKR_OK"}
    pub = rsa.RSAPublicNumbers(int(res["e"], 16),
                               int(res["n"], 16)).public_key()
    for sig in res["signatures"]:
        pub.verify(bytes.fromhex(sig), res["message"].encode(),
                   padding.PKCS1v15(), hashes.SHA256())
    assert res["plaintext_ok"] is True


@pytest.mark.parametrize("curve", ["p256", "p521"])
@pytest.mark.parametrize("der_mode", [False, True], ids=["any", "der-only"])
def test_ecdh_der_point(fm_token, tmp_path, curve, der_mode):
    variables = {"FM_CURVE": curve}
    if der_mode:
        variables["FAULTMOD_ECDH_DER_POINT"] = "1"
    res, _ = scenario(fm_token, "ecdh", tmp_path, **variables)
    if der_mode:
        assert res["raw"]["rv"] == "CKR_ARGUMENTS_BAD"
    else:
        assert res["raw"]["rv"] == "CKR_OK"
    assert res["der"]["rv"] == "CKR_OK"
    peer = serialization.load_der_private_key(bytes.fromhex(res["peer"]),
                                              None)
    curve_obj = ec.SECP256R1() if curve == "p256" else ec.SECP521R1()
    token_pub = ec.EllipticCurvePublicKey.from_encoded_point(
        curve_obj, bytes.fromhex(res["token_point"]))
    expected = peer.exchange(ec.ECDH(), token_pub).hex()
    for form in ("raw", "der"):
        if res[form]["rv"] == "CKR_OK":
            assert res[form]["secret"] == expected, form


def test_count_file_lines_and_fork(fm_token, tmp_path):
    res, _ = scenario(fm_token, "count", tmp_path)
    lines = count_lines(tmp_path / "calls")
    me, child = res["pid"], res["child_pid"]
    assert {pid for pid, _, _ in lines} == {me, child}
    assert calls(lines, "C_Initialize", me, 0) == 1
    assert calls(lines, "C_OpenSession", me, 0) == 1
    assert calls(lines, "C_Login", me) == 1
    assert calls(lines, "C_FindObjectsInit", me, 0) == 1  # Child.key
    assert calls(lines, "C_Sign", me, 0) == 2  # size query, then signature
    # The child runs with no FAULTMOD_* variable at all: it keeps the
    # parent's configuration. SoftHSM does not notice the fork.
    assert calls(lines, "C_Initialize", child, 0x191) == 1
    assert calls(lines, "C_GetSlotList", child, 0) >= 1
    assert res["child_status"] == 0


@pytest.mark.parametrize("module, message", [
    pytest.param(None, "FAULTMOD_MODULE is not set", id="unset"),
    pytest.param("/nonexistent/libnothing.so",
                 "cannot load /nonexistent/libnothing.so: ", id="bad-path"),
])
def test_module_load_errors(fm_token, tmp_path, module, message):
    res, p = scenario(fm_token, "load", tmp_path, FAULTMOD_MODULE=module)
    assert res["rv"] == "CKR_GENERAL_ERROR"
    assert message in p.stderr
    assert p.stderr.count("faultmod:") == 1


def test_threads_share_counts_and_session_limit(fm_token, tmp_path):
    """8 threads at once (ctypes drops the GIL): exact totals."""
    res, _ = scenario(fm_token, "threads", tmp_path, control=[
        "max-sessions 6", "fail C_GenerateRandom CKR_DEVICE_ERROR 100"])
    assert sorted(res["opens"]) == ["CKR_OK"] * 6 + ["CKR_SESSION_COUNT"] * 2
    assert res["random_ok"] == 6 * THREAD_CALLS - 100
    assert res["random_failed"] == 100
    lines = count_lines(tmp_path / "calls")
    assert calls(lines, "C_GenerateRandom", rv=0x30) == 100
    assert calls(lines, "C_GenerateRandom", rv=0) == 6 * THREAD_CALLS - 100


# ---- the child side: scenarios, run as `python3 test_faultmod.py NAME` -----

THREAD_CALLS = 50
SCENARIOS = {}


def child_scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


class Child:
    """faultmod loaded through PyKCS11, our token's slot, small helpers."""

    def __init__(self):
        import PyKCS11
        self.pk = PyKCS11
        self.lib = PyKCS11.PyKCS11Lib()
        self.lib.load(os.environ["FM_LIB"])
        self.ll = self.lib.lib
        self.slot = self.find_slot()

    def find_slot(self):
        for slot in self.lib.getSlotList(tokenPresent=True):
            if self.lib.getTokenInfo(slot).label.strip() == LABEL:
                return slot
        raise SystemExit(f"no token labelled {LABEL}")

    def rv(self, fn, *args):
        """The CKR name that fn(*args) ended with."""
        try:
            fn(*args)
        except self.pk.PyKCS11Error as e:
            return self.pk.CKR.get(e.value, hex(e.value))
        return "CKR_OK"

    def name(self, value):
        return self.pk.CKR.get(value, hex(value))

    def control(self, *lines):
        write_control(os.environ["FAULTMOD_CONTROL"], lines)

    def open(self, login=False):
        pk = self.pk
        s = self.lib.openSession(self.slot, pk.CKF_SERIAL_SESSION |
                                 pk.CKF_RW_SESSION)
        if login:
            s.login(os.environ["P11B_PIN"])
        return s

    def key(self, session, label, cls=None):
        pk = self.pk
        cls = pk.CKO_PRIVATE_KEY if cls is None else cls
        found = session.findObjects([(pk.CKA_CLASS, cls),
                                     (pk.CKA_LABEL, label)])
        assert len(found) == 1, f"{label}: {len(found)} objects"
        return found[0]

    def mech(self, name):
        return self.pk.Mechanism(self.pk.CKM[name])

    def sign(self, session, key, data=b"faultmod", mech="CKM_SHA256_RSA_PKCS"):
        return self.rv(session.sign, key, data, self.mech(mech))

    def step(self, fn, session, *args):
        """A two-call C_Sign/C_Decrypt/...: size query, then the data."""
        out = self.pk.ckbytelist()
        rv = fn(session.session, *args, out)
        if rv == self.pk.CKR_OK:
            rv = fn(session.session, *args, out)
        return self.name(rv), bytes(out)

    def pin_flags(self):
        flags = self.lib.getTokenInfo(self.slot).flags
        return {"final_try": bool(flags & self.pk.CKF_USER_PIN_FINAL_TRY),
                "locked": bool(flags & self.pk.CKF_USER_PIN_LOCKED)}


@child_scenario
def load():
    import PyKCS11
    try:
        PyKCS11.PyKCS11Lib().load(os.environ["FM_LIB"])
    except PyKCS11.PyKCS11Error as e:
        return {"rv": PyKCS11.CKR.get(e.value, hex(e.value))}
    return {"rv": "CKR_OK"}


@child_scenario
def mechs():
    c = Child()
    pk = c.pk
    # PyKCS11 1.5.20 (Debian unstable) renamed ckintlist to ckulonglist.
    listed = getattr(pk.LowLevel, "ckulonglist", None)
    listed = listed() if listed else pk.LowLevel.ckintlist()
    assert c.ll.C_GetMechanismList(c.slot, listed) == pk.CKR_OK
    s = c.open(login=True)
    rsa_key, ec_key = c.key(s, "rsa"), c.key(s, "p256")
    use = {
        "CKM_SHA256_RSA_PKCS": c.sign(s, rsa_key),
        "CKM_SHA384_RSA_PKCS": c.sign(s, rsa_key, mech="CKM_SHA384_RSA_PKCS"),
        "CKM_RSA_PKCS": c.sign(s, rsa_key, mech="CKM_RSA_PKCS"),
        "CKM_ECDSA": c.sign(s, ec_key, bytes(32), "CKM_ECDSA"),
        "CKM_SHA256": c.rv(s.digest, b"faultmod", c.mech("CKM_SHA256")),
        "CKM_EC_KEY_PAIR_GEN": c.rv(s.generateKeyPair, [
            (pk.CKA_TOKEN, False),
            (pk.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))],
            [(pk.CKA_TOKEN, False), (pk.CKA_SIGN, True)],
            c.mech("CKM_EC_KEY_PAIR_GEN")),
    }
    info = {name: c.rv(c.lib.getMechanismInfo, c.slot, name)
            for name in PROBES}
    return {"list": list(listed), "info": info, "use": use}


@child_scenario
def fail():
    c = Child()
    s = c.open()
    pin = os.environ["P11B_PIN"]
    logins = [c.rv(s.login, pin) for _ in range(3)]
    key = c.key(s, "rsa")
    signs = [c.sign(s, key) for _ in range(3)]
    random = [c.rv(s.generateRandom, 8) for _ in range(2)]
    c.control("fail C_SignUpdate CKR_DEVICE_ERROR 1")
    random_after = c.rv(s.generateRandom, 8)
    m = c.mech("CKM_SHA256_RSA_PKCS").to_native()
    data = c.pk.ckbytelist(b"part")
    assert c.ll.C_SignInit(s.session, m, key) == c.pk.CKR_OK
    update = [c.name(c.ll.C_SignUpdate(s.session, data))]
    update.append(c.name(c.ll.C_SignInit(s.session, m, key)))
    update.append(c.name(c.ll.C_SignUpdate(s.session, data)))
    update.append(c.step(c.ll.C_SignFinal, s)[0])
    c.control("fail * CKR_GENERAL_ERROR 1")
    any_fn = [c.rv(s.generateRandom, 8), c.rv(s.generateRandom, 8)]
    return {"logins": logins, "signs": signs, "random": random,
            "random_after_change": random_after, "update": update,
            "any": any_fn}


@child_scenario
def fail_active():
    c = Child()
    pk = c.pk
    s = c.open(login=True)
    key = c.key(s, "rsa")
    m = c.mech("CKM_SHA256_RSA_PKCS").to_native()
    data = pk.ckbytelist(b"fail-active")
    out = pk.ckbytelist([0] * 512)
    assert c.ll.C_SignInit(s.session, m, key) == pk.CKR_OK
    sign = [c.name(c.ll.C_Sign(s.session, data, out)),
            c.name(c.ll.C_SignInit(s.session, m, key))]
    finish = c.name(c.ll.C_Sign(s.session, data, out))
    after = c.sign(s, key)
    mech = c.mech("CKM_RSA_PKCS")
    pub = c.key(s, "rsa", pk.CKO_PUBLIC_KEY)
    ct = pk.ckbytelist(s.encrypt(pub, b"secret", mech))
    dm = mech.to_native()
    assert c.ll.C_DecryptInit(s.session, dm, key) == pk.CKR_OK
    plain = pk.ckbytelist([0] * 512)
    decrypt = [c.name(c.ll.C_Decrypt(s.session, ct, plain)),
               c.name(c.ll.C_DecryptInit(s.session, dm, key))]
    decrypt_finish = c.name(c.ll.C_Decrypt(s.session, ct, plain))
    return {"sign": sign, "sign_finish": finish, "sign_after": after,
            "decrypt": decrypt, "decrypt_finish": decrypt_finish}


@child_scenario
def removal():
    c = Child()
    pk = c.pk
    s1 = c.open(login=True)
    key = c.key(s1, "rsa")
    out = {"before": c.sign(s1, key)}
    c.control("removed")
    out["removed"] = {
        "present_slots": c.lib.getSlotList(tokenPresent=True),
        "slot_listed": c.slot in c.lib.getSlotList(),
        "token_present_flag": bool(c.lib.getSlotInfo(c.slot).flags &
                                   pk.CKF_TOKEN_PRESENT),
        "token_info": c.rv(c.lib.getTokenInfo, c.slot),
        "mechanisms": c.rv(c.lib.getMechanismList, c.slot),
        "open": c.rv(c.lib.openSession, c.slot),
        "sign": c.sign(s1, key),
        "find": c.rv(s1.findObjects, []),
    }
    c.control()
    back = {"slot_present": c.slot in c.lib.getSlotList(tokenPresent=True),
            "old_sign": c.sign(s1, key),
            "old_info": c.rv(s1.getSessionInfo)}
    s2 = c.open()
    back["new_state"] = pk.CKS[s2.getSessionInfo().state]
    back["new_login"] = c.rv(s2.login, os.environ["P11B_PIN"])
    # SoftHSM renumbers private objects after a logout, as a re-inserted
    # token would: find the key again.
    key = c.key(s2, "rsa")
    back["new_sign"] = c.sign(s2, key)
    back["old_close"] = c.rv(s1.closeSession)
    out["reinserted"] = back
    c.control("removed")
    c.lib.getSlotList(tokenPresent=True)  # changes are seen at a call
    c.control("# back again")
    s3 = c.open(login=True)
    out["second"] = {"old": c.sign(s2, key),
                     "new": c.sign(s3, c.key(s3, "rsa"))}
    return out


@child_scenario
def delay():
    c = Child()
    s = c.open(login=True)
    return {"random": c.rv(s.generateRandom, 8),
            "sign": c.sign(s, c.key(s, "rsa"))}


@child_scenario
def max_sessions():
    c = Child()
    out = {"max_session_count":
           c.lib.getTokenInfo(c.slot).ulMaxSessionCount}
    held = []

    def opens(n):
        result = []
        for _ in range(n):
            try:
                held.append(c.open())
                result.append("CKR_OK")
            except c.pk.PyKCS11Error as e:
                result.append(c.name(e.value))
        return result

    out["opens"] = opens(3)
    held.pop(0).closeSession()
    out["after_close"] = opens(2)
    c.lib.closeAllSessions(c.slot)
    held.clear()
    out["after_close_all"] = opens(3)
    c.control()
    out["unlimited"] = opens(4)
    out["max_session_count_after"] = \
        c.lib.getTokenInfo(c.slot).ulMaxSessionCount
    return out


@child_scenario
def pin_flags():
    c = Child()
    s = c.open()
    out = {}
    for name, lines in (("final_try", ["final-try"]), ("locked", ["locked"]),
                        ("cleared", [])):
        c.control(*lines)
        state = c.pin_flags()
        state["login"] = c.rv(s.login, os.environ["P11B_PIN"])
        if state["login"] == "CKR_OK":
            s.logout()
        out[name] = state
    return out


@child_scenario
def always_auth():
    c = Child()
    pk, ll = c.pk, c.ll
    pin, wrong = os.environ["P11B_PIN"], os.environ["P11B_WRONG_PIN"]
    s = c.open(login=True)
    h = s.session
    key = c.key(s, "rsa")
    pub = c.key(s, "rsa", pk.CKO_PUBLIC_KEY)
    msg = "always authenticate"
    data = pk.ckbytelist(msg.encode())
    m = c.mech("CKM_SHA256_RSA_PKCS").to_native()
    out = {"message": msg, "signatures": []}
    out["attribute"] = s.getAttributeValue(
        key, [pk.CKA_ALWAYS_AUTHENTICATE])[0]

    def context_login(p):
        return c.rv(s.login, p, pk.CKU_CONTEXT_SPECIFIC)

    def sign():
        rv, sig = c.step(ll.C_Sign, s, data)
        if rv == "CKR_OK":
            out["signatures"].append(sig.hex())
        return rv

    assert ll.C_SignInit(h, m, key) == pk.CKR_OK
    out["no_context_login"] = sign()
    out["context_login"] = context_login(pin)
    out["sign_after_login"] = sign()
    assert ll.C_SignInit(h, m, key) == pk.CKR_OK
    out["next_use_needs_pin_again"] = sign()
    out["wrong_pin"] = context_login(wrong)
    out["after_wrong_pin"] = sign()
    out["right_pin"] = context_login(pin)
    sign()
    assert ll.C_SignInit(h, m, key) == pk.CKR_OK
    multipart = [c.name(ll.C_SignUpdate(h, data)), context_login(pin),
                 c.name(ll.C_SignUpdate(h, data))]
    multipart.append(c.step(ll.C_SignFinal, s)[0])
    out["multipart"] = multipart
    secret = b"sixteen byte msg"
    ct = s.encrypt(pub, secret, c.mech("CKM_RSA_PKCS"))
    assert ll.C_DecryptInit(h, c.mech("CKM_RSA_PKCS").to_native(),
                            key) == pk.CKR_OK
    first, _ = c.step(ll.C_Decrypt, s, pk.ckbytelist(ct))
    login = context_login(pin)
    rv, plain = c.step(ll.C_Decrypt, s, pk.ckbytelist(ct))
    out["decrypt"] = [first, login, rv]
    out["plaintext_ok"] = plain == secret
    out["verify_needs_nothing"] = s.verify(
        pub, msg.encode(), bytes.fromhex(out["signatures"][0]),
        c.mech("CKM_SHA256_RSA_PKCS"))
    c.control()
    out["switched_off"] = {
        "attribute": s.getAttributeValue(
            key, [pk.CKA_ALWAYS_AUTHENTICATE])[0],
        "sign": c.sign(s, key)}
    n, e = s.getAttributeValue(pub, [pk.CKA_MODULUS, pk.CKA_PUBLIC_EXPONENT],
                               allAsBinary=True)
    out["n"], out["e"] = bytes(n).hex(), bytes(e).hex()
    return out


@child_scenario
def ecdh():
    c = Child()
    pk = c.pk
    s = c.open(login=True)
    curve = os.environ["FM_CURVE"]
    key = c.key(s, curve)
    pub = c.key(s, curve, pk.CKO_PUBLIC_KEY)
    wrapped = bytes(s.getAttributeValue(pub, [pk.CKA_EC_POINT],
                                        allAsBinary=True)[0])
    _, token_point, _ = u.der_read(wrapped)  # SoftHSM wraps it in DER
    while True:
        peer = ec.generate_private_key(ec.SECP256R1() if curve == "p256"
                                       else ec.SECP521R1())
        raw = peer.public_key().public_bytes(
            serialization.Encoding.X962,
            serialization.PublicFormat.UncompressedPoint)
        # 1 in 65536 P-256 points also parses as a DER-wrapped point
        # (04 3f 04 ...); faultmod would take it for one, so avoid it.
        if not (raw[1] == len(raw) - 2 and raw[2] == 0x04):
            break
    der = bytes([0x04]) + (bytes([len(raw)]) if len(raw) < 0x80
                           else bytes([0x81, len(raw)])) + raw
    out = {"token_point": token_point.hex(), "peer": peer.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).hex()}
    size = (len(raw) - 1) // 2
    template = [(pk.CKA_CLASS, pk.CKO_SECRET_KEY),
                (pk.CKA_KEY_TYPE, pk.CKK_GENERIC_SECRET),
                (pk.CKA_TOKEN, False), (pk.CKA_SENSITIVE, False),
                (pk.CKA_EXTRACTABLE, True), (pk.CKA_VALUE_LEN, size)]
    for form, point in (("raw", raw), ("der", der)):
        try:
            secret = s.deriveKey(key, template,
                                 pk.ECDH1_DERIVE_Mechanism(point))
        except pk.PyKCS11Error as e:
            out[form] = {"rv": c.name(e.value)}
            continue
        value = s.getAttributeValue(secret, [pk.CKA_VALUE],
                                    allAsBinary=True)[0]
        out[form] = {"rv": "CKR_OK", "secret": bytes(value).hex()}
    return out


@child_scenario
def count():
    c = Child()
    s = c.open(login=True)
    key = c.key(s, "rsa")
    assert c.sign(s, key) == "CKR_OK"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for name in [n for n in os.environ if n.startswith("FAULTMOD_")]:
                del os.environ[name]
            c.ll.C_Initialize()
            c.lib.getSlotList()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return {"pid": os.getpid(), "child_pid": pid,
            "child_status": os.waitstatus_to_exitcode(status)}


@child_scenario
def threads():
    """ctypes, not PyKCS11: it releases the GIL, so calls really overlap."""
    CK_ULONG = ctypes.c_ulong
    fields = [("version", ctypes.c_ubyte * 2)] + [
        (name, ctypes.c_void_p) for name in FUNCTION_LIST_ORDER]
    FunctionList = type("FunctionList", (ctypes.Structure,),
                        {"_fields_": fields})

    class InitArgs(ctypes.Structure):
        _fields_ = [("create", ctypes.c_void_p), ("destroy", ctypes.c_void_p),
                    ("lock", ctypes.c_void_p), ("unlock", ctypes.c_void_p),
                    ("flags", CK_ULONG), ("reserved", ctypes.c_void_p)]

    def fn(name, *argtypes):
        addr = getattr(fl, name)
        return ctypes.CFUNCTYPE(CK_ULONG, *argtypes)(addr)

    dll = ctypes.CDLL(os.environ["FM_LIB"])
    ptr = ctypes.POINTER(FunctionList)()
    assert dll.C_GetFunctionList(ctypes.byref(ptr)) == 0
    fl = ptr.contents
    P = ctypes.POINTER
    initialize = fn("C_Initialize", ctypes.c_void_p)
    get_slots = fn("C_GetSlotList", ctypes.c_ubyte, P(CK_ULONG), P(CK_ULONG))
    open_session = fn("C_OpenSession", CK_ULONG, CK_ULONG, ctypes.c_void_p,
                      ctypes.c_void_p, P(CK_ULONG))
    close_session = fn("C_CloseSession", CK_ULONG)
    random = fn("C_GenerateRandom", CK_ULONG, ctypes.c_char_p, CK_ULONG)
    token_info = fn("C_GetTokenInfo", CK_ULONG, ctypes.c_char_p)
    finalize = fn("C_Finalize", ctypes.c_void_p)
    args = InitArgs(flags=2)  # CKF_OS_LOCKING_OK
    assert initialize(ctypes.byref(args)) == 0
    n = CK_ULONG(8)
    slots = (CK_ULONG * 8)()
    assert get_slots(1, slots, ctypes.byref(n)) == 0
    info = ctypes.create_string_buffer(1024)  # CK_TOKEN_INFO opens with
    slot = next(slots[i] for i in range(n.value)  # the label, 32 bytes
                if token_info(slots[i], info) == 0 and
                info.raw[:32].decode().strip() == LABEL)

    barrier = threading.Barrier(8)
    lock = threading.Lock()
    out = {"opens": [], "random_ok": 0, "random_failed": 0}

    def worker():
        h = CK_ULONG()
        rv = open_session(slot, 4, None, None, ctypes.byref(h))  # SERIAL
        barrier.wait()  # all opened (or refused) before anyone closes
        ok = failed = 0
        buf = ctypes.create_string_buffer(16)
        for _ in range(THREAD_CALLS if rv == 0 else 0):
            if random(h, buf, 16) == 0:
                ok += 1
            else:
                failed += 1
        barrier.wait()
        if rv == 0:
            close_session(h)
        with lock:
            out["opens"].append("CKR_OK" if rv == 0 else
                                "CKR_SESSION_COUNT" if rv == 0xB1 else hex(rv))
            out["random_ok"] += ok
            out["random_failed"] += failed

    workers = [threading.Thread(target=worker) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    finalize(None)
    return out


FUNCTION_LIST_ORDER = (
    "C_Initialize C_Finalize C_GetInfo C_GetFunctionList C_GetSlotList "
    "C_GetSlotInfo C_GetTokenInfo C_GetMechanismList C_GetMechanismInfo "
    "C_InitToken C_InitPIN C_SetPIN C_OpenSession C_CloseSession "
    "C_CloseAllSessions C_GetSessionInfo C_GetOperationState "
    "C_SetOperationState C_Login C_Logout C_CreateObject C_CopyObject "
    "C_DestroyObject C_GetObjectSize C_GetAttributeValue C_SetAttributeValue "
    "C_FindObjectsInit C_FindObjects C_FindObjectsFinal C_EncryptInit "
    "C_Encrypt C_EncryptUpdate C_EncryptFinal C_DecryptInit C_Decrypt "
    "C_DecryptUpdate C_DecryptFinal C_DigestInit C_Digest C_DigestUpdate "
    "C_DigestKey C_DigestFinal C_SignInit C_Sign C_SignUpdate C_SignFinal "
    "C_SignRecoverInit C_SignRecover C_VerifyInit C_Verify C_VerifyUpdate "
    "C_VerifyFinal C_VerifyRecoverInit C_VerifyRecover C_DigestEncryptUpdate "
    "C_DecryptDigestUpdate C_SignEncryptUpdate C_DecryptVerifyUpdate "
    "C_GenerateKey C_GenerateKeyPair C_WrapKey C_UnwrapKey C_DeriveKey "
    "C_SeedRandom C_GenerateRandom C_GetFunctionStatus C_CancelFunction "
    "C_WaitForSlotEvent").split()


if __name__ == "__main__":
    result = SCENARIOS[sys.argv[1]]()
    print(json.dumps(result), flush=True)
