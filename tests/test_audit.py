"""The audit trail of key use (issue 16): pkcs11-audit-log = file:PATH or
syslog. Every test reads the trail a real run wrote: one JSON line per
login, failed login and key operation, with time, pid, uid, program,
event, the key's canonical URI, the mechanism and the result; never a PIN.
"""

import json
import os
import re
import socket
import subprocess
import time
from datetime import datetime, timezone

import pytest

import p11b_util as u
from p11b_secrets import WRONG_PIN, assert_no_secret
from p11b_tokens import make_config

FIELDS = ["time", "pid", "uid", "prog", "event", "uri", "mech", "result"]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WRITE_FAILED = "audit trail: a line could not be written"
NOT_WRITING = "audit trail: not writing to"


def audit_env(tok, trail, **keys):
    return make_config(tok, pkcs11_audit_log=f"file:{trail}", **keys)


def read_trail(path):
    """The trail's lines as dicts; every line is whole JSON, in the field
    order of the format, and carries no PIN."""
    data = path.read_bytes()
    assert_no_secret((f"audit trail {path}", data))
    assert data.endswith(b"\n"), f"last line cut: {data[-200:]!r}"
    lines = []
    for raw in data.decode("ascii").splitlines():
        rec = json.loads(raw)
        keys = [k for k in FIELDS if k in rec]
        assert list(rec) == keys, raw
        assert TIME.match(rec["time"]), raw
        lines.append(rec)
    return lines


def events(lines, name):
    return [r for r in lines if r["event"] == name]


def spawn(argv, env, **kw):
    """(CompletedProcess-like, pid): the pid is what the trail must say."""
    p = subprocess.Popen([str(a) for a in argv], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         **kw)
    out, err = p.communicate(timeout=120)
    assert p.returncode >= 0, f"died of signal {-p.returncode}: {err}"
    return subprocess.CompletedProcess(argv, p.returncode, out, err), p.pid


def test_req_x509_writes_one_sign_line(token, tmp_path):
    trail = tmp_path / "audit.log"
    env = audit_env(token, trail)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    p, pid = spawn(["openssl", "req", "-x509", "-new", "-key",
                    token.uri("p256", "private"), "-subj", "/CN=audit",
                    "-days", "1", "-out", tmp_path / "cert.pem"], env)
    assert p.returncode == 0, p.stderr.decode()
    after = datetime.now(timezone.utc)
    assert oct(trail.stat().st_mode & 0o777) == "0o600"
    lines = read_trail(trail)
    signs = events(lines, "sign")
    assert len(signs) == 1, lines
    s = signs[0]
    assert s["pid"] == pid and s["uid"] == os.getuid(), s
    assert s["prog"] == "openssl", s
    assert s["mech"] == "CKM_ECDSA" and s["result"] == "ok", s
    when = datetime.fromisoformat(s["time"][:-1]).replace(tzinfo=timezone.utc)
    assert before <= when <= after, (before, s["time"], after)
    # the canonical object URI: the token, the object; no PIN, no query
    kid = "".join(f"%{token.keys['p256'].id[i:i + 2]}"
                  for i in range(0, len(token.keys["p256"].id), 2))
    assert s["uri"] == (
        f"pkcs11:token={token.label};manufacturer="
        f"{token.manufacturer.replace(' ', '%20')};serial={token.serial};"
        f"model={token.model.replace(' ', '%20')};object=p256;id={kid};"
        "type=private"), s
    uri = s["uri"]
    assert "pin" not in uri, uri
    # the login this run made is there too, before the signature
    logins = events(lines, "login")
    assert [r["result"] for r in logins] == ["ok"] * len(logins), lines
    assert lines.index(s) > 0 and lines[0]["event"] == "login", lines
    assert "mech" not in logins[0], logins[0]


def test_wrong_pin_is_a_login_failed_line_without_the_pin(scratch_token,
                                                           tmp_path):
    tok = scratch_token
    trail = tmp_path / "audit.log"
    pin = tmp_path / "wrong.pin"
    pin.write_text(WRONG_PIN + "\n")
    env = audit_env(tok, trail, pkcs11_module_token_pin=f"file:{pin}")
    p = tok.ossl("pkeyutl", "-sign", "-inkey", tok.uri("p256", "private"),
                 "-in", "/dev/null", env=env, ok=False)
    assert p.returncode != 0
    lines = read_trail(trail)
    failed = events(lines, "login-failed")
    assert len(failed) == 1, lines
    assert failed[0]["result"] == "CKR_PIN_INCORRECT", failed
    assert failed[0]["uri"].startswith(f"pkcs11:"), failed
    assert f"token={tok.label}" in failed[0]["uri"], failed
    assert not events(lines, "sign") and not events(lines, "login"), lines
    assert WRONG_PIN.encode() not in trail.read_bytes()


def test_decrypt_derive_and_keygen_lines(token, scratch_token, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    trail = tmp_path / "audit.log"
    env = audit_env(token, trail)
    pub = serialization.load_pem_public_key(token.ossl(
        "pkey", "-pubin", "-pubout", "-in", token.uri("rsa2048", "public"),
        env=env).stdout.encode())
    ct = tmp_path / "ct"
    ct.write_bytes(pub.encrypt(b"secret bytes", padding.PKCS1v15()))
    p = token.run(["openssl", "pkeyutl", "-decrypt", "-inkey",
                   token.uri("rsa2048", "private"), "-in", str(ct),
                   "-out", str(tmp_path / "pt")], env=env)
    assert (tmp_path / "pt").read_bytes() == b"secret bytes", u.describe(p)
    peer = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "peer.pem").write_bytes(peer.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo))
    token.run(["openssl", "pkeyutl", "-derive", "-inkey",
               token.uri("p256", "private"), "-peerkey",
               str(tmp_path / "peer.pem"), "-out", str(tmp_path / "z")],
              env=env)
    lines = read_trail(trail)
    dec = events(lines, "decrypt")
    assert [(r["mech"], r["result"]) for r in dec] == \
        [("CKM_RSA_PKCS", "ok")], lines
    assert "object=rsa2048" in dec[0]["uri"], dec
    der = events(lines, "derive")
    assert [(r["mech"], r["result"]) for r in der] == \
        [("CKM_ECDH1_DERIVE", "ok")], lines
    assert b"secret bytes" not in trail.read_bytes()
    assert (tmp_path / "z").read_bytes().hex().encode() not in \
        trail.read_bytes()

    tok = scratch_token
    trail2 = tmp_path / "audit-keygen.log"
    env2 = audit_env(tok, trail2)
    uri = u.make_uri(token=tok.label, object="audit-made", id="4b01")
    tok.ossl("genpkey", "-propquery", "provider=pkcs11", "-algorithm", "EC",
             "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt",
             f"pkcs11_uri:{uri}", "-out", tmp_path / "made.pem", env=env2)
    gen = events(read_trail(trail2), "keygen")
    assert len(gen) == 1, read_trail(trail2)
    assert gen[0]["mech"] == "CKM_EC_KEY_PAIR_GEN", gen
    assert gen[0]["result"] == "ok", gen
    assert "object=audit-made" in gen[0]["uri"], gen
    assert "id=%4b%01" in gen[0]["uri"].lower(), gen
    assert "type=private" in gen[0]["uri"], gen


def test_threads_and_forks_write_whole_lines(token, tools_dir, tmp_path):
    """16 threads in each of three processes (p11b-stress with two forked
    children) sign at once: every line is whole JSON, each process's
    signatures are all there."""
    tool = tools_dir / "p11b-stress"
    assert tool.exists(), f"{tool} is missing: build it with `make check`"
    trail = tmp_path / "audit.log"
    env = audit_env(token, trail, pkcs11_module_cache_sessions="4")
    argv = [tool, "--threads", "16", "--iterations", "20", "--sign",
            "--forks", "2", "--fork-after-load",
            "--uri", token.uri("p256", "private"),
            "--uri", token.uri("rsa2048", "private")]
    p = token.run(argv, env=env, timeout=300, ok=False)
    assert p.returncode == 0 and "stress ok:" in p.stdout, u.describe(p)
    lines = read_trail(trail)  # json.loads of every line: none interleaved
    signs = events(lines, "sign")
    assert all(r["result"] == "ok" for r in signs), \
        [r for r in signs if r["result"] != "ok"][:5]
    pids = {r["pid"] for r in signs}
    assert len(pids) == 3, pids
    assert {r["mech"] for r in signs} <= {"CKM_ECDSA", "CKM_RSA_PKCS",
                                          "CKM_SHA256_RSA_PKCS",
                                          "CKM_RSA_PKCS_PSS"}, signs[:3]


@pytest.mark.parametrize("where", ["missing-directory", "read-only"])
def test_unwritable_trail_never_fails_an_operation(token, tmp_path, where):
    """A trail that cannot be opened (its directory is missing, or we may
    not write to it): the key operation works, and the debug log says
    once why there is no trail."""
    d = tmp_path / "d"
    if where == "read-only":
        d.mkdir()
        d.chmod(0o500)
        if os.access(d, os.W_OK):
            pytest.skip("running with CAP_DAC_OVERRIDE: a read-only "
                        "directory is writable (the missing-directory "
                        "case covers this)")
    env = audit_env(token, d / "audit.log", log_level=1)
    token.ossl("pkeyutl", "-sign", "-inkey", token.uri("p256", "private"),
               "-in", "/dev/null", "-rawin", "-digest", "sha256",
               "-out", tmp_path / "sig", env=env)
    assert (tmp_path / "sig").stat().st_size > 0
    log = u.read_log(env)
    assert log.count(NOT_WRITING) == 1, log
    assert not (d / "audit.log").exists()


def test_full_disk_never_fails_an_operation(token, tmp_path):
    """The trail on a full file system (a 4 KiB tmpfs filled up, in a
    mount namespace of the test's own): the login and the signature
    succeed, and the debug log says once that lines are lost."""
    unshare = u.require_program("unshare", "util-linux")
    full = tmp_path / "full"
    full.mkdir()
    trail = full / "audit.log"
    env = audit_env(token, trail)
    env["PKCS11_PROVIDER_DEBUG"] = "level:1"  # stderr: not on the full fs
    sig = tmp_path / "sig"
    script = (f'mount -t tmpfs -o size=4k none "{full}" && '
              f': > "{trail}" && chmod 600 "{trail}" && '
              f'(cat /dev/zero > "{full}/filler" 2>/dev/null; true) && '
              'exec "$@"')
    probe = subprocess.run([unshare, "-Urm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no user and mount namespaces here (unshare -Urm): "
                    f"{probe.stderr.decode().strip()}")
    p, _ = spawn([unshare, "-Urm", "sh", "-c", script, "sh", "openssl",
                  "pkeyutl", "-sign", "-inkey", token.uri("p256", "private"),
                  "-in", "/dev/null", "-rawin", "-digest", "sha256",
                  "-out", sig], env)
    err = p.stderr.decode()
    assert p.returncode == 0 and sig.stat().st_size > 0, err
    assert err.count(WRITE_FAILED) == 1, err
    assert "No space left on device" in err, err
    assert not trail.exists(), "the tmpfs was not private to the command"


def test_symlinked_trail_is_refused(token, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "audit.log"
    link.symlink_to(victim)
    env = audit_env(token, link, log_level=1)
    token.ossl("pkey", "-in", token.uri("p256", "private"), "-pubout",
               env=env)
    assert victim.read_text() == "precious\n"
    log = u.read_log(env)
    assert NOT_WRITING in log and "symbolic link" in log, log


@pytest.mark.parametrize("value", ["sysl0g", "file:", "journal", "file"])
def test_bad_audit_value_is_a_config_error(token, tmp_path, value):
    env = make_config(token, pkcs11_audit_log=value)
    p = token.ossl("pkey", "-in", token.uri("p256", "private"), "-pubout",
                   env=env, ok=False)
    assert p.returncode != 0
    assert "pkcs11-audit-log: must be syslog or file:PATH" in p.stderr, \
        p.stderr


def test_nginx_workers_write_their_own_lines(www_token, www_access, tls_ca,
                                             provider_path, tmp_path):
    """nginx (the docs/HOWTO.md recipes, audit-file included) with two
    workers serving handshakes: the master opened the trail as root, each
    worker, running as www-data, writes its own lines with its own pid."""
    from test_servers import make_site, nginx_fetches, start_nginx, \
        worker_pids

    site = make_site(tmp_path, www_token, "p256", tls_ca, provider_path,
                     www=www_access)
    cnf = site.dir / "openssl.cnf"
    head, sep, tail = cnf.read_text().rpartition("activate = 1")
    assert sep, cnf.read_text()
    cnf.write_text(head + u.recipe("audit-file", site.subs).strip() + "\n" +
                   sep + tail)
    trail = site.dir / "audit.log"
    error_log = site.dir / "nginx-error.log"
    with start_nginx(site) as server:
        workers = worker_pids(server, error_log, 2)
        seen = nginx_fetches(site, workers)
        rc = server.stop(site.command("nginx-stop", "nginx", "nginx-light"))
    assert rc == 0, server.output()
    lines = read_trail(trail)
    signs = events(lines, "sign")
    by_pid = {}
    for r in signs:
        assert r["result"] == "ok" and r["prog"] == "nginx", r
        assert "object=p256" in r["uri"], r
        by_pid.setdefault(r["pid"], []).append(r)
    assert set(by_pid) == set(workers), (sorted(by_pid), workers)
    for pid in workers:
        assert len(by_pid[pid]) >= len(seen[pid]), (pid, by_pid[pid])
        assert {r["uid"] for r in by_pid[pid]} == {www_access.uid}, \
            by_pid[pid]
    assert server.pid not in by_pid
