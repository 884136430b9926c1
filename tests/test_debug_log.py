"""The debug log file (PKCS11_PROVIDER_DEBUG=file:PATH) is the user's own.

A log path in a shared directory must not be a way to make a process
append to someone else's file: a symbolic link is not followed, a file of
another user is refused, and a new file is created 0600. A refused file
gets one line on stderr and the provider goes on working.
"""

import os
import pwd

import pytest

import p11b_util as u

REFUSAL = "not writing to the PKCS11_PROVIDER_DEBUG file"


def use_key(tok, env):
    """One command that loads the provider, logs, and must succeed."""
    return tok.ossl("pkey", "-pubin", "-pubout", "-in",
                    tok.uri("p256", "public"), env=env)


def test_i11_14_debug_log_no_symlink(scratch_token, tmp_path):
    tok = scratch_token
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "p11bridge.log"
    link.symlink_to(victim)
    env = u.with_log(tok.env, link, 3)
    p = use_key(tok, env)
    assert "BEGIN PUBLIC KEY" in p.stdout
    assert victim.read_text() == "precious\n", "the log followed a symlink"
    assert p.stderr.count(REFUSAL) == 1, p.stderr
    assert "symbolic link" in p.stderr, p.stderr
    assert link.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="needs root to give a file to another user")
def test_i11_14_debug_log_other_owner_refused(scratch_token, tmp_path):
    tok = scratch_token
    nobody = pwd.getpwnam("nobody")
    log = tmp_path / "p11bridge.log"
    log.write_text("")
    os.chown(log, nobody.pw_uid, nobody.pw_gid)
    log.chmod(0o666)
    env = u.with_log(tok.env, log, 3)
    p = use_key(tok, env)
    assert "BEGIN PUBLIC KEY" in p.stdout
    assert log.read_text() == "", "wrote to another user's file"
    assert p.stderr.count(REFUSAL) == 1, p.stderr
    assert "another user" in p.stderr, p.stderr


def test_i11_14_debug_log_created_0600(scratch_token, tmp_path):
    tok = scratch_token
    log = tmp_path / "new.log"
    env = u.with_log(tok.env, log, 3)
    # umask 0: the mode comes from the provider alone.
    p = u.run(["sh", "-c", 'umask 000; exec openssl "$@"', "sh", "pkey",
               "-pubin", "-pubout", "-in", tok.uri("p256", "public")], env)
    assert "BEGIN PUBLIC KEY" in p.stdout
    assert log.exists() and log.stat().st_size > 0
    assert oct(log.stat().st_mode & 0o777) == oct(0o600)
    assert REFUSAL not in p.stderr
    # An existing file of our own is appended to, as before.
    size = log.stat().st_size
    use_key(tok, env)
    assert log.stat().st_size > size
