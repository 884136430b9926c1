"""What a user sees when a module has no token or cannot read it (#13).

- A p11-kit server exporting no token: the client module lists 0 slots and
  answers CKR_BUFFER_TOO_SMALL to a C_GetSlotList with a buffer; the user
  must read "no token in module ...", not a module-initialisation error.
- C_GetTokenInfo failing (SoftHSM says CKR_GENERAL_ERROR when it cannot
  read its token files, or while another process rewrites them): the error
  names the slot, the CK_RV and a hint; a transient failure is read again.
"""

import p11b_util as u
import tokens
from p11b_tokens import write_openssl_cnf


def test_module_without_token_says_no_token(tmp_path, provider_path):
    rig = tokens.Rig("empty", "p11-kit server exporting nothing", tmp_path,
                     tokens.P11KIT_CLIENT, "none", tokens.PIN, u.base_env())
    server_env = tokens._softhsm_token(tmp_path, "exported-not")
    sock = tmp_path / "p11kit.sock"
    try:
        # a token URI no token matches: the server exports 0 slots
        tokens._p11kit_server(rig, sock, tokens.SOFTHSM,
                              "pkcs11:token=no-such-token", server_env)
        conf = tmp_path / "openssl.cnf"
        write_openssl_cnf(conf, {"module": provider_path,
                                 "pkcs11-module-path": tokens.P11KIT_CLIENT,
                                 "activate": "1"})
        env = u.base_env()
        env.update(u.sanitizer_env())
        env.update(OPENSSL_CONF=str(conf),
                   P11_KIT_SERVER_ADDRESS=f"unix:path={sock}")
        p = u.openssl(env, "pkey", "-in", "pkcs11:token=x;object=y",
                      "-noout", ok=False)
    finally:
        rig.close()
    assert p.returncode != 0
    assert "CKR_BUFFER_TOO_SMALL" not in p.stderr, p.stderr
    assert f"no token in module {tokens.P11KIT_CLIENT}" in p.stderr, p.stderr


def test_unreadable_token_info_is_named(token, fault_rig):
    rig = fault_rig(token, "fail C_GetTokenInfo CKR_GENERAL_ERROR\n")
    p = rig.ossl("pkey", "-in", token.uri("p256", "private"), "-noout",
                 ok=False)
    err = p.stderr
    assert f"C_GetTokenInfo(slot {token.slot}) returned CKR_GENERAL_ERROR" \
        in err, err
    assert "can this user read the token" in err, err


def test_transient_token_info_failure_is_read_again(token, fault_rig,
                                                    tmp_path):
    # four failures in a row: the first read and three of its retries
    # (20, 40, 80 ms); the fourth retry, 160 ms later, reads the token. One
    # retry was not enough for forked server workers starting together.
    rig = fault_rig(token, "fail C_GetTokenInfo CKR_GENERAL_ERROR 4\n")
    msg = tmp_path / "msg"
    msg.write_bytes(b"x" * 32)
    rig.ossl("pkeyutl", "-sign", "-inkey", token.uri("p256", "private"),
             "-in", msg, "-out", tmp_path / "sig")
