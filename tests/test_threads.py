"""Threads: 16 threads signing at once through one provider instance.

tests/tools/p11b_ops.py `threads` loads the keys once (OSSL_STORE) and
then runs T Python threads that call EVP_DigestSign through ctypes for a
fixed time; ctypes lets go of the GIL during each call, so the provider
really is entered from 16 threads at once, as in a threaded TLS server
sharing one SSL_CTX key. Thread t signs with key t % (number of URIs).
Each thread's last message and signature are checked here with
python3-cryptography.

The token is reached through tests/faultmod with `max-sessions N`: faultmod
then reports ulMaxSessionCount = N and refuses a session past N. Its count
file (one line per call, in order, with the pid) shows how many sessions
the process held at any time, and that every signature was exactly one
successful C_Sign (no hidden failure and retry). tests/tools/p11b-stress
covers loading from threads and forked children under the same cap.

Every run has a time limit (a subprocess timeout) well above its expected
duration: a deadlock fails the test instead of hanging it.
"""

import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u
from p11b_faultmod import CKR

THREADS = 16
SECONDS = 2.0
LIMIT = 120  # seconds: anything near this is a deadlock


def verify(token, label, msg, sig):
    pub = serialization.load_der_public_key(token.keys[label].spki)
    if token.keys[label].kind == "EC":
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    else:
        pub.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())


def run_threads(rig, labels, tmp_path, record_time, name, extra=(),
                threads=THREADS, seconds=SECONDS, ok=True):
    args = list(extra) + ["threads", "--threads", str(threads),
                          "--seconds", str(seconds), "--out", tmp_path]
    for label in labels:
        args += ["--uri", rig.token.uri(label, "private")]
    t0 = time.monotonic()
    p, doc = u.run_ops(rig.env, *args, ok=False, timeout=LIMIT)
    elapsed = time.monotonic() - t0
    assert doc is not None, u.describe(p)
    record_time(f"{name}: {doc.get('total_ops', 0)} signatures in", elapsed)
    if ok:
        assert p.returncode == 0 and not doc["errors"], \
            "errors from the threads:\n" + "\n".join(doc["errors"])
    return p, doc


def check_threads(rig, labels, doc, tmp_path, cap):
    results = doc["threads"]
    assert len(results) == THREADS
    idle = [i for i, r in enumerate(results) if r["ops"] == 0]
    assert not idle, f"threads that never signed: {idle}"
    for i, r in enumerate(results):
        label = labels[r["key"]]
        verify(rig.token, label, (tmp_path / f"t{i}.msg").read_bytes(),
               (tmp_path / f"t{i}.sig").read_bytes())
    calls = rig.calls()
    signs = u.rvs_of(calls, "C_Sign")
    assert signs == [0] * doc["total_ops"], \
        f"{doc['total_ops']} signatures but C_Sign results " \
        f"{sorted(set(signs))} x {len(signs)}"
    assert CKR["CKR_SESSION_COUNT"] not in u.rvs_of(calls, "C_OpenSession")
    peaks = u.open_session_peaks(calls)
    assert peaks and max(peaks.values()) <= cap, \
        f"sessions open at once, per pid: {peaks} (cap {cap})"
    assert u.rvs_of(calls, "C_Login") == [0], "one login serves all threads"
    log = rig.log()
    assert "no session free" not in log
    return peaks


@pytest.mark.parametrize("label", ["p256", "rsa2048"])
def test_sixteen_threads_sign_with_one_key(token, fault_rig, tmp_path,
                                           record_time, label):
    rig = fault_rig(token, control="max-sessions 4\n", log_level=2)
    _, doc = run_threads(rig, [label], tmp_path, record_time,
                         f"16 threads x {SECONDS:.0f} s, {label}")
    check_threads(rig, [label], doc, tmp_path, cap=4)


def test_sixteen_threads_sign_with_different_keys(token, fault_rig, tmp_path,
                                                  record_time):
    labels = ["p256", "rsa2048", "p384", "rsa3072"]
    rig = fault_rig(token, control="max-sessions 4\n", log_level=2)
    _, doc = run_threads(rig, labels, tmp_path, record_time,
                         f"16 threads x {SECONDS:.0f} s, 4 keys")
    check_threads(rig, labels, doc, tmp_path, cap=4)
    per_key = {}
    for r in doc["threads"]:
        per_key[labels[r["key"]]] = per_key.get(labels[r["key"]], 0) + r["ops"]
    assert all(per_key.get(k, 0) > 0 for k in labels), per_key


def test_sixteen_threads_share_one_session(token, fault_rig, tmp_path,
                                           record_time):
    """max-sessions 2: the login keeps one, so every signature goes through
    the one other session; each C_Sign takes 2 ms more, so threads queue for
    it (the pool's wait), and none fails."""
    rig = fault_rig(token, control="max-sessions 2\ndelay C_Sign 2000\n",
                    log_level=2)
    _, doc = run_threads(rig, ["p256"], tmp_path, record_time,
                         "16 threads, one session")
    check_threads(rig, ["p256"], doc, tmp_path, cap=2)


def test_transient_session_count_does_not_fail_an_operation(
        token, fault_rig, tmp_path, record_time):
    """The token reports room for 8 sessions, but once (another application
    took the last one, say) C_OpenSession says CKR_SESSION_COUNT. The pool
    learns the bound (docs/DESIGN.md); the thread that hit it waits for a
    session like the others instead of failing its signature."""
    rig = fault_rig(token, control="max-sessions 8\n", log_level=2)
    p, doc = run_threads(
        rig, ["p256"], tmp_path, record_time, "16 threads, CKR_SESSION_COUNT",
        extra=["--after-load-control",
               "max-sessions 8\nfail C_OpenSession CKR_SESSION_COUNT 1\n"],
        ok=False)
    assert u.rvs_of(rig.calls(), "C_OpenSession").count(
        CKR["CKR_SESSION_COUNT"]) == 1, "the fault did not fire"
    assert not doc["errors"], \
        "a signature failed on CKR_SESSION_COUNT:\n" + "\n".join(doc["errors"])
    assert all(r["ops"] > 0 for r in doc["threads"]), doc["threads"]


STRESS = ["--threads", "16", "--iterations", "50"]
FORKS = ["--forks", "2", "--fork-after-load"]
STRESS_MODES = {"load": [], "load-forks": FORKS, "sign": ["--sign"],
                "sign-forks": ["--sign", *FORKS]}


@pytest.mark.parametrize("mode", list(STRESS_MODES))
def test_stress_under_a_session_cap(token, fault_rig, tools_dir, tmp_path,
                                    record_time, mode):
    """p11b-stress (C threads, no interpreter in between): 16 threads load
    keys through OSSL_STORE and, with --sign, sign with each (checked in
    software by the tool); with --forks, two forked children do the same
    at the same time as the parent. No process ever holds more than the 4
    sessions the token allows, and every C_Sign succeeds."""
    tool = tools_dir / "p11b-stress"
    assert tool.exists(), f"{tool} is missing: build it with `make check`"
    rig = fault_rig(token, control="max-sessions 4\n", log_level=2)
    extra = STRESS_MODES[mode]
    argv = [tool, *STRESS, *extra]
    for label, kind in (("rsa2048", "private"), ("p256", "private"),
                        ("p384", "public")):
        argv += ["--uri", token.uri(label, kind)]
    t0 = time.monotonic()
    p = token.run(argv, env=rig.env, timeout=LIMIT, ok=False)
    record_time(f"p11b-stress {mode}, cap 4", time.monotonic() - t0)
    if p.returncode == 2 and "--sign" in extra:
        pytest.fail(f"{tool} does not know --sign (rebuild it):\n{p.stderr}",
                    pytrace=False)
    assert p.returncode == 0 and "stress ok:" in p.stdout, u.describe(p)
    calls = rig.calls()
    peaks = u.open_session_peaks(calls)
    assert len(peaks) == (3 if "--forks" in extra else 1), peaks
    assert max(peaks.values()) <= 4, peaks
    assert CKR["CKR_SESSION_COUNT"] not in u.rvs_of(calls, "C_OpenSession")
    if "--sign" in extra:
        for pid in peaks:
            signs = u.rvs_of(calls, "C_Sign", pid)
            assert signs and set(signs) == {0}, \
                f"pid {pid}: C_Sign results {sorted(set(signs))}"
