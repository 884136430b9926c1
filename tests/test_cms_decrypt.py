"""CMS decryption with the recipient's key on the token.

The message is encrypted in software (OpenSSL's default provider alone,
from the recipient certificate) and decrypted by `openssl cms -decrypt
-inkey 'pkcs11:...'`: RSA key transport with PKCS#1 v1.5 and with OAEP.
"""

import os

import pytest

import p11b_util as u


@pytest.mark.parametrize("keyopts", [
    [], ["-keyopt", "rsa_padding_mode:oaep"],
    ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"],
], ids=["pkcs1", "oaep-sha1", "oaep-sha256"])
def test_cms_decrypt_with_token_key(token, tmp_path, keyopts):
    cert = token.certs["rsa2048"].pem_path
    plain = tmp_path / "plain.txt"
    plain.write_bytes(os.urandom(3000))
    enc, out = tmp_path / "msg.cms", tmp_path / "out.bin"
    soft = u.default_only_env(tmp_path)
    u.openssl(soft, "cms", "-encrypt", "-binary", "-aes256", "-in", plain,
              "-out", enc, "-outform", "PEM", "-recip", cert, *keyopts)
    env = token.fresh_env(tmp_path, level=2)
    token.ossl("cms", "-decrypt", "-binary", "-in", enc, "-inform", "PEM",
               "-recip", cert, "-inkey", token.uri("rsa2048", "private"),
               "-out", out, env=env)
    assert out.read_bytes() == plain.read_bytes()
    log = u.read_log(env)
    assert "C_Decrypt(" in log, "the token did not decrypt"


def test_cms_decrypt_for_another_recipient_fails_cleanly(token, tmp_path):
    enc = tmp_path / "msg.cms"
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"not for you")
    u.openssl(u.default_only_env(tmp_path), "cms", "-encrypt", "-in", plain,
              "-out", enc, "-outform", "PEM",
              "-recip", token.certs["p256"].pem_path)
    p = token.ossl("cms", "-decrypt", "-in", enc, "-inform", "PEM",
                   "-recip", token.certs["rsa2048"].pem_path,
                   "-inkey", token.uri("rsa2048", "private"), ok=False)
    assert p.returncode != 0 and p.returncode < 128, u.describe(p)
