"""Memory: a representative subset under valgrind's memcheck.

The real /usr/bin/openssl (and tests/tools/p11b-stress, and a long-running
s_server) load the provider and use token keys under

    valgrind --error-exitcode=99 --leak-check=full
             --errors-for-leak-kinds=definite
             --suppressions=tests/valgrind.supp

Each run must end with its own exit code (never 99), and every valgrind log
(one per process: forked children get theirs) must show no error at all -
no invalid read or write, no use of uninitialised memory - and no leak
record, definitely or possibly lost, with a frame in pkcs11.so (the
provider) or faultmod.so. tests/valgrind.supp says which library leaks may
be suppressed (none is, today).

The runs cover: the public half from a URI, an RSA signature, a signature
through a lost session (faultmod: slot invalidation, re-finding the key,
retry), an RSA decryption, an ECDH derivation, storeutl -text of the whole
token, a URI that matches nothing, a refused PIN, 4 threads and 2 forked
children loading and signing, and s_server serving handshakes while the
token is pulled and put back. About 30 s on two cores.

valgrind cannot run a provider built with ASan (P11BRIDGE_SANITIZERS=yes):
those runs are the sanitizers' job, and this module does not run there.
"""

import os
import re
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

import p11b_util as u

HERE = Path(__file__).resolve().parent
SUPP = HERE / "valgrind.supp"
OURS = ("pkcs11.so", "faultmod.so")

# valgrind cannot run an ASan-built provider: scripts/test.sh leaves this
# file out of the ASan stage (--ignore), where ASan checks memory instead.
# Asked to run there anyway, it fails rather than skip.
if u.sanitizers_enabled():
    raise RuntimeError("test_valgrind.py needs the plain build: valgrind "
                       "cannot run the ASan-built provider")


@pytest.fixture(scope="session")
def valgrind():
    path = shutil.which("valgrind")
    if path is None:
        pytest.fail("valgrind is not installed (apt-get install valgrind)",
                    pytrace=False)
    assert SUPP.exists(), f"{SUPP} is missing"
    return path


def vg_prefix(valgrind, logdir):
    logdir.mkdir(exist_ok=True)
    return [valgrind, "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--show-leak-kinds=definite,possible", "--num-callers=40",
            f"--suppressions={SUPP}", "--gen-suppressions=all",
            "--child-silent-after-fork=no",
            f"--log-file={logdir}/vg.%p.log"]


_RECORD = re.compile(r"^==\d+== .* (definitely|possibly) lost in loss "
                     r"record .*$", re.M)


def our_leaks(text):
    """Leak records (definitely or possibly lost) with a frame of ours."""
    out = []
    for m in _RECORD.finditer(text):
        frames = []
        for line in text[m.end():].splitlines()[1:]:
            if not re.match(r"^==\d+==\s+(at|by) ", line):
                break
            frames.append(line)
        if any(o in f for f in frames for o in OURS):
            out.append("\n".join([m.group(0)] + frames))
    return out


def check_logs(logdir, processes=1):
    logs = sorted(logdir.glob("vg.*.log"))
    assert len(logs) == processes, \
        f"expected {processes} valgrind logs, got {[p.name for p in logs]}"
    summary = []
    for log in logs:
        text = log.read_text(errors="backslashreplace")
        m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        assert m, f"{log.name}: no ERROR SUMMARY (the process did not " \
                  f"finish under valgrind):\n{text[-3000:]}"
        assert m.group(1) == "0", f"{log.name}: valgrind errors:\n{text}"
        for bad in ("Invalid read", "Invalid write", "uninitialised",
                    "Invalid free"):
            assert bad not in text, f"{log.name}: {bad}:\n{text}"
        definite = re.search(r"definitely lost: ([\d,]+) bytes", text)
        assert definite is None or definite.group(1) == "0", \
            f"{log.name}: memory definitely lost:\n{text}"
        leaks = our_leaks(text)
        assert not leaks, f"{log.name}: leaks with a frame of ours:\n" + \
            "\n\n".join(leaks)
        summary.append(m.group(0))
    return summary


def run_vg(valgrind, tmp_path, env, argv, rc=0, processes=1):
    logdir = tmp_path / "valgrind"
    p = u.run(vg_prefix(valgrind, logdir) + [str(a) for a in argv], env,
              ok=False, timeout=240)
    assert p.returncode != 99, "valgrind found errors:\n" + "\n".join(
        f.read_text(errors="backslashreplace")[-4000:]
        for f in logdir.glob("vg.*.log"))
    assert p.returncode == rc, u.describe(p)
    check_logs(logdir, processes)
    assert u.cryptoki_calls(u.read_log(env), "C_Initialize"), \
        "the provider never reached the token in this run"
    return p


def pub(token, label):
    return serialization.load_der_public_key(token.keys[label].spki)


# ---- the runs ---------------------------------------------------------------

def test_public_key_from_a_uri(token, valgrind, tmp_path):
    p = run_vg(valgrind, tmp_path, token.fresh_env(tmp_path),
               [u.OPENSSL, "pkey", "-in", token.uri("p256", "private"),
                "-pubout"])
    assert u.spki_der_from_pem(p.stdout) == token.keys["p256"].spki


def test_rsa_signature(token, valgrind, tmp_path):
    msg, sig = tmp_path / "msg.bin", tmp_path / "sig.bin"
    msg.write_bytes(os.urandom(4000))
    run_vg(valgrind, tmp_path, token.fresh_env(tmp_path),
           [u.OPENSSL, "dgst", "-sha256", "-sign",
            token.uri("rsa2048", "private"), "-out", sig, msg])
    pub(token, "rsa2048").verify(sig.read_bytes(), msg.read_bytes(),
                                 padding.PKCS1v15(), hashes.SHA256())


def test_signature_through_a_lost_session(token, fault_rig, valgrind,
                                          tmp_path):
    rig = fault_rig(token, control="fail C_Sign CKR_SESSION_HANDLE_INVALID 1\n")
    msg, sig = tmp_path / "msg.bin", tmp_path / "sig.bin"
    msg.write_bytes(os.urandom(4000))
    run_vg(valgrind, tmp_path, rig.env,
           [u.OPENSSL, "dgst", "-sha256", "-sign",
            token.uri("p256", "private"), "-out", sig, msg])
    pub(token, "p256").verify(sig.read_bytes(), msg.read_bytes(),
                              ec.ECDSA(hashes.SHA256()))
    assert u.rvs_of(rig.calls(), "C_Sign") == [0xB3, 0]


def test_rsa_decryption(token, valgrind, tmp_path):
    secret = os.urandom(48)
    (tmp_path / "ct.bin").write_bytes(
        pub(token, "rsa2048").encrypt(secret, padding.PKCS1v15()))
    run_vg(valgrind, tmp_path, token.fresh_env(tmp_path),
           [u.OPENSSL, "pkeyutl", "-decrypt", "-inkey",
            token.uri("rsa2048", "private"), "-in", tmp_path / "ct.bin",
            "-out", tmp_path / "pt.bin"])
    assert (tmp_path / "pt.bin").read_bytes() == secret


def test_ecdh_derivation(token, valgrind, tmp_path):
    peer = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "peer.pem").write_bytes(peer.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    run_vg(valgrind, tmp_path, token.fresh_env(tmp_path),
           [u.OPENSSL, "pkeyutl", "-derive", "-inkey",
            token.uri("p256", "private"), "-peerkey", tmp_path / "peer.pem",
            "-out", tmp_path / "z.bin"])
    assert (tmp_path / "z.bin").read_bytes() == \
        peer.exchange(ec.ECDH(), pub(token, "p256"))


def test_storeutl_text_of_the_token(token, valgrind, tmp_path):
    p = run_vg(valgrind, tmp_path, token.fresh_env(tmp_path),
               [u.OPENSSL, "storeutl", "-text", token.uri()])
    items, _ = u.store_items(p.stdout)
    assert len(items) >= len(token.keys), p.stdout


def test_uri_that_matches_nothing(token, valgrind, tmp_path):
    p = run_vg(valgrind, tmp_path, token.fresh_env(tmp_path),
               [u.OPENSSL, "pkey", "-in",
                token.uri("no-such-key", "private"), "-pubout"], rc=1)
    assert "no object matches the pkcs11 URI" in p.stderr


def test_refused_pin(token, fault_rig, valgrind, tmp_path):
    rig = fault_rig(token, control="fail C_Login CKR_PIN_INCORRECT\n")
    p = run_vg(valgrind, tmp_path, rig.env,
               [u.OPENSSL, "pkey", "-in", token.uri("p256", "private"),
                "-pubout"], rc=1)
    assert "PIN incorrect" in p.stderr


def test_threads_and_forks_signing(token, tools_dir, valgrind, tmp_path):
    tool = tools_dir / "p11b-stress"
    assert tool.exists(), f"{tool} is missing: build it with `make check`"
    p = run_vg(valgrind, tmp_path, token.fresh_env(tmp_path),
               [tool, "--sign", "--threads", "4", "--iterations", "5",
                "--forks", "2", "--fork-after-load",
                "--uri", token.uri("p256", "private"),
                "--uri", token.uri("rsa2048", "private")],
               processes=3)
    assert "stress ok:" in p.stdout


def test_s_server_while_the_token_is_pulled(token, fault_rig, valgrind,
                                            tmp_path):
    """s_server -naccept 6 ends by itself (so valgrind's leak check runs
    at a normal exit): 2 handshakes, 2 with the token pulled, 2 after it
    is put back."""
    rig = fault_rig(token)
    d = tmp_path / "server"
    d.mkdir()
    cert = token.certs["p256"].pem_path
    ca = token.certs["ca-cert"].pem_path
    logdir = tmp_path / "valgrind"
    srv = u.SServer(rig.env, cert, token.uri("p256", "private"), d, ca,
                    prefix=vg_prefix(valgrind, logdir),
                    extra=["-naccept", "6"], start_timeout=120)
    try:
        first = srv.handshakes(2, timeout=60)
        rig.set("removed\n")
        gone = srv.handshakes(2, timeout=60)
        rig.set("# back\n")
        back = srv.handshakes(2, timeout=60)
        rc = srv.wait(120)
    finally:
        srv.stop()
    assert [ok for ok, _, _ in first + gone + back] == \
        [True, True, False, False, True, True], first + gone + back
    assert rc == 0, f"s_server exit {rc}\n{srv.stderr()}"
    check_logs(logdir)


# ---- the log checker itself ----------------------------------------------------

SYNTHETIC_LOG = """\
==4242== HEAP SUMMARY:
==4242==     in use at exit: 1,024 bytes in 2 blocks
==4242==
==4242== 64 bytes in 1 blocks are possibly lost in loss record 1 of 2
==4242==    at 0x4848899: malloc (vg_replace_malloc.c:381)
==4242==    by 0x4B2E8D1: CRYPTO_zalloc (mem.c:197)
==4242==    by 0x6A1C2F3: p11b_slot_new (slot.c:21)
==4242==    by 0x6A1B001: ??? (in /work/_build/.libs/pkcs11.so)
==4242==
==4242== 960 bytes in 1 blocks are possibly lost in loss record 2 of 2
==4242==    at 0x4848899: malloc (vg_replace_malloc.c:381)
==4242==    by 0x5C0FFEE: ??? (in /usr/lib/softhsm/libsofthsm2.so)
==4242==
==4242== LEAK SUMMARY:
==4242==    definitely lost: 0 bytes in 0 blocks
==4242==      possibly lost: 1,024 bytes in 2 blocks
==4242== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)
"""


def test_the_log_checker_finds_leaks_of_ours(tmp_path):
    """A possibly-lost block allocated through pkcs11.so is ours and fails
    the run; one entirely in libsofthsm2 does not."""
    leaks = our_leaks(SYNTHETIC_LOG)
    assert len(leaks) == 1 and "loss record 1 of 2" in leaks[0], leaks
    (tmp_path / "vg.4242.log").write_text(SYNTHETIC_LOG)
    with pytest.raises(AssertionError, match="leaks with a frame of ours"):
        check_logs(tmp_path)
