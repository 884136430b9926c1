"""RSA asym-cipher: decryption on the token, encryption in software.

Every result is checked by independent code (python3-cryptography, or plain
modular arithmetic for raw RSA): ciphertexts for token decryption are made
in software from the public key the provider exports, and ciphertexts the
provider makes are decrypted in software.

SoftHSM 2.6.1 has CKM_RSA_PKCS_OAEP with SHA-1 only (other digests give
CKR_ARGUMENTS_BAD at C_DecryptInit): the provider then decrypts raw
(CKM_RSA_X_509) and removes the padding in software. The level-2 debug log
says which mechanism was used.
"""

import os
import re
from dataclasses import dataclass
from typing import Optional

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

import p11b_util as u

RSA_KEYS = ["rsa2048", "rsa3072", "rsa4096"]
OPERATION_FAILED = "token operation failed"

HASHES = {"sha1": hashes.SHA1, "sha224": hashes.SHA224,
          "sha256": hashes.SHA256, "sha384": hashes.SHA384,
          "sha512": hashes.SHA512}

OAEP_ON_TOKEN = [("CKM_RSA_PKCS_OAEP", "CKR_OK")]
OAEP_VIA_RAW = [("CKM_RSA_PKCS_OAEP", "CKR_ARGUMENTS_BAD"),
                ("CKM_RSA_X_509", "CKR_OK")]


@dataclass
class Mode:
    """An RSA padding mode: the pkeyutl options and cryptography's padding."""
    name: str
    pad: str                     # "pkcs1", "oaep" or "none"
    md: Optional[str] = None     # OAEP digest
    mgf1: Optional[str] = None   # MGF1 digest (None: same as md)
    label: Optional[bytes] = None

    def pkeyopts(self, label=None):
        label = self.label if label is None else label
        if self.pad == "pkcs1":
            return []  # the default
        opts = ["-pkeyopt", f"rsa_padding_mode:{self.pad}"]
        if self.pad == "oaep":
            opts += ["-pkeyopt", f"rsa_oaep_md:{self.md}"]
            if self.mgf1 is not None:
                opts += ["-pkeyopt", f"rsa_mgf1_md:{self.mgf1}"]
            if label:
                opts += ["-pkeyopt", f"rsa_oaep_label:{label.hex()}"]
        return opts

    def padding(self, label=None):
        label = self.label if label is None else label
        if self.pad == "pkcs1":
            return padding.PKCS1v15()
        assert self.pad == "oaep", self.pad
        return padding.OAEP(
            mgf=padding.MGF1(HASHES[self.mgf1 or self.md]()),
            algorithm=HASHES[self.md](), label=label or None)

    def token_calls(self):
        """The C_DecryptInit calls expected with SoftHSM, None: either way."""
        if self.pad == "pkcs1":
            return [("CKM_RSA_PKCS", "CKR_OK")]
        if self.pad == "none":
            return [("CKM_RSA_X_509", "CKR_OK")]
        if self.label:
            # SoftHSM ignores OAEP labels: whether the token is asked first
            # or the raw path is taken at once is the provider's choice.
            return None
        if (self.md, self.mgf1 or self.md) == ("sha1", "sha1"):
            return OAEP_ON_TOKEN
        return OAEP_VIA_RAW


LABEL = bytes.fromhex("0001a5ff7e")  # a zero byte inside, on purpose

PADDED_MODES = [
    Mode("pkcs1", "pkcs1"),
    Mode("oaep-sha1", "oaep", "sha1"),
    Mode("oaep-sha224", "oaep", "sha224"),
    Mode("oaep-sha256", "oaep", "sha256"),
    Mode("oaep-sha384", "oaep", "sha384"),
    Mode("oaep-sha512", "oaep", "sha512"),
    Mode("oaep-sha256-mgf1-sha1", "oaep", "sha256", "sha1"),
    Mode("oaep-sha1-mgf1-sha256", "oaep", "sha1", "sha256"),
    Mode("oaep-sha512-mgf1-sha384", "oaep", "sha512", "sha384"),
    Mode("oaep-sha1-label", "oaep", "sha1", label=LABEL),
    Mode("oaep-sha256-label", "oaep", "sha256", label=LABEL),
    Mode("oaep-sha384-mgf1-sha1-label", "oaep", "sha384", "sha1",
         label=LABEL),
]
MODES = {m.name: m for m in PADDED_MODES}
RAW = Mode("raw", "none")

# Text that would say which padding check failed (OpenSSL's RSA reasons for
# the individual checks): a padding oracle in the error output.
WHICH_CHECK = ["decoding error", "block type", "null before block",
               "bad pad byte count", "first octet invalid",
               "last octet invalid", "bad fixed header",
               "data too small", "pkcs decoding"]


# ---- helpers ---------------------------------------------------------------

def decrypt_inits(log, slot=None):
    """[(mechanism, rv)] of every C_DecryptInit in a debug log."""
    out = []
    rx = re.compile(r"C_DecryptInit\(slot (\d+), (\w+)\) -> (\w+)")
    for line in u.cryptoki_calls(log, "C_DecryptInit"):
        m = rx.search(line)
        assert m, f"C_DecryptInit log line not understood: {line}"
        if slot is not None:
            assert int(m.group(1)) == slot, line
        out.append((m.group(2), m.group(3)))
    return out


def check_no_data_in_log(log, *secrets):
    low = log.lower()
    for s in secrets:
        assert s.hex() not in low, "decrypted data appears in the debug log"


@pytest.fixture(scope="module")
def public_key(token):
    """public_key(label): the RSA public key the provider exports."""
    cache = {}

    def get(label):
        if label not in cache:
            p = token.ossl("pkey", "-in", token.uri(label, "private"),
                           "-pubout")
            spki = u.spki_der_from_pem(p.stdout)
            assert spki == token.keys[label].spki, \
                f"{label}: exported public key differs from " \
                f"{token.keys[label].spki_source}'s"
            cache[label] = serialization.load_der_public_key(spki)
        return cache[label]
    return get


def modlen(pub):
    return (pub.key_size + 7) // 8


def raw_encrypt(pub, block):
    nums = pub.public_numbers()
    m = int.from_bytes(block, "big")
    assert m < nums.n
    return pow(m, nums.e, nums.n).to_bytes(modlen(pub), "big")


def decrypt(token, env, uri, ct, tmp_path, opts, ok=True, name="ct"):
    ct_path, out = tmp_path / f"{name}.bin", tmp_path / f"{name}.out"
    ct_path.write_bytes(ct)
    p = token.ossl("pkeyutl", "-decrypt", "-inkey", uri, "-in", ct_path,
                   "-out", out, *opts, env=env, ok=ok)
    return p, (out.read_bytes() if out.exists() else b"")


def corrupt(ct):
    """ct with one byte in the middle changed (it must fail either way,
    whether or not the new value is still below the modulus).

    A corrupted PKCS#1 v1.5 ciphertext decrypts to a valid padding with a
    probability of about 1e-5; OAEP's hash check makes that 2^-160 or less.
    """
    b = bytearray(ct)
    b[len(b) // 2] ^= 0x5A
    return bytes(b)


def error_lines(stderr):
    """openssl's error lines without the per-thread hex prefix."""
    return [re.sub(r"^[0-9A-F]+:error:", "error:", line)
            for line in stderr.splitlines() if line.strip()]


def without_mode(lines):
    return [re.sub(r"RSA decryption \([^)]*\)", "RSA decryption (<mode>)", x)
            for x in lines]


def check_failure(p, out):
    assert p.returncode == 1, u.describe(p)
    assert out == b"", "a failed decryption wrote output"
    assert OPERATION_FAILED in p.stderr, p.stderr
    assert "RSA decryption" in p.stderr, p.stderr
    low = p.stderr.lower()
    for text in WHICH_CHECK:
        assert text not in low, \
            f"the error says which padding check failed ({text!r}):\n" \
            f"{p.stderr}"


# ---- decryption on the token -----------------------------------------------

@pytest.mark.parametrize("mode", [m.name for m in PADDED_MODES])
@pytest.mark.parametrize("label", RSA_KEYS)
def test_token_decrypts_what_software_encrypted(token, public_key, tmp_path,
                                                label, mode):
    mode = MODES[mode]
    pub = public_key(label)
    msg = os.urandom(32)
    ct = pub.encrypt(msg, mode.padding())
    env = token.fresh_env(tmp_path, level=2)
    p, out = decrypt(token, env, token.uri(label, "private"), ct, tmp_path,
                     mode.pkeyopts())
    assert out == msg, f"{label} {mode.name}: wrong plaintext"
    log = u.read_log(env)
    calls = decrypt_inits(log, token.slot)
    expected = mode.token_calls()
    if expected is not None:
        assert calls == expected, \
            f"{mode.name}: C_DecryptInit calls {calls}, expected {expected}"
    assert calls and calls[-1][1] == "CKR_OK", calls
    check_no_data_in_log(log, msg)


def test_oaep_sha1_on_token_sha256_via_raw(token, public_key, tmp_path):
    """The same key and message: SHA-1 OAEP is the token's, SHA-256 OAEP is
    a raw decryption with the padding checked in software."""
    pub = public_key("rsa2048")
    msg = os.urandom(48)
    mechs = {}
    for md in ("sha1", "sha256"):
        mode = Mode(f"oaep-{md}", "oaep", md)
        env = token.fresh_env(tmp_path / md, level=2)
        (tmp_path / md).mkdir()
        _, out = decrypt(token, env, token.uri("rsa2048", "private"),
                         pub.encrypt(msg, mode.padding()), tmp_path / md,
                         mode.pkeyopts())
        assert out == msg, md
        mechs[md] = decrypt_inits(u.read_log(env), token.slot)
    assert mechs["sha1"] == OAEP_ON_TOKEN, mechs
    assert mechs["sha256"] == OAEP_VIA_RAW, mechs


@pytest.mark.parametrize("label", RSA_KEYS)
def test_raw_decryption_keeps_leading_zero_bytes(token, public_key, tmp_path,
                                                 label):
    pub = public_key(label)
    n = modlen(pub)
    block = b"\x00\x00\x00" + os.urandom(n - 3)
    env = token.fresh_env(tmp_path, level=2)
    _, out = decrypt(token, env, token.uri(label, "private"),
                     raw_encrypt(pub, block), tmp_path, RAW.pkeyopts())
    assert len(out) == n, f"raw output of {len(out)} bytes, modulus {n}"
    assert out == block
    assert decrypt_inits(u.read_log(env), token.slot) == RAW.token_calls()


# ---- encryption through the provider (software, on the public half) ---------

def test_encryption_through_provider_decrypts_in_software(soft_key_token,
                                                          tmp_path):
    """pkeyutl -encrypt with a token key, decrypted by cryptography with the
    software private key that soft_key_token keeps for its nopub-rsa."""
    tok = soft_key_token
    key = tok.private_keys["nopub-rsa"]
    uri = tok.uri("nopub-rsa", "private")
    env = tok.fresh_env(tmp_path, level=2)
    for name in ("pkcs1", "oaep-sha1", "oaep-sha256-mgf1-sha1",
                 "oaep-sha512", "oaep-sha384-mgf1-sha1-label"):
        mode = MODES[name]
        msg, ct = tmp_path / f"{name}.msg", tmp_path / f"{name}.ct"
        msg.write_bytes(os.urandom(40))
        tok.ossl("pkeyutl", "-encrypt", "-inkey", uri, "-in", msg,
                 "-out", ct, *mode.pkeyopts(), env=env)
        assert len(ct.read_bytes()) == 256, name
        assert key.decrypt(ct.read_bytes(), mode.padding()) == \
            msg.read_bytes(), f"{name}: software decryption differs"
        # and back through the token
        _, out = decrypt(tok, env, uri, ct.read_bytes(), tmp_path,
                         mode.pkeyopts(), name=f"{name}-back")
        assert out == msg.read_bytes(), name
    log = u.read_log(env)
    assert not u.cryptoki_calls(log, "C_EncryptInit"), \
        "encryption went to the token; it should run in software"


@pytest.mark.parametrize("label, type", [("rsa2048", "private"),
                                         ("rsa4096", "public"),
                                         ("nopub-rsa", "private")])
def test_raw_encryption_through_provider_matches_arithmetic(
        token, public_key, tmp_path, label, type):
    """Raw RSA is deterministic: the provider's ciphertext must be m^e mod n
    computed here."""
    pub = public_key(label)
    block = b"\x00" + os.urandom(modlen(pub) - 1)
    msg, ct = tmp_path / "msg", tmp_path / "ct"
    msg.write_bytes(block)
    env = token.fresh_env(tmp_path, level=2)
    pubin = ["-pubin"] if type == "public" else []
    token.ossl("pkeyutl", "-encrypt", *pubin, "-inkey", token.uri(label, type),
               "-in", msg, "-out", ct, *RAW.pkeyopts(), env=env)
    assert ct.read_bytes() == raw_encrypt(pub, block)
    assert not u.cryptoki_calls(u.read_log(env), "C_EncryptInit")


def test_nopub_rsa_round_trip(token, public_key, tmp_path):
    """nopub-rsa (no public key object): encrypt and decrypt through the
    provider, and decrypt what software encrypted."""
    mode = MODES["oaep-sha256-label"]
    uri = token.uri("nopub-rsa", "private")
    msg, ct = tmp_path / "msg", tmp_path / "ct"
    msg.write_bytes(os.urandom(64))
    token.ossl("pkeyutl", "-encrypt", "-inkey", uri, "-in", msg, "-out", ct,
               *mode.pkeyopts())
    env = token.fresh_env(tmp_path, level=2)
    _, out = decrypt(token, env, uri, ct.read_bytes(), tmp_path,
                     mode.pkeyopts(), name="back")
    assert out == msg.read_bytes()
    sw = public_key("nopub-rsa").encrypt(msg.read_bytes(), mode.padding())
    _, out = decrypt(token, env, uri, sw, tmp_path, mode.pkeyopts(),
                     name="sw")
    assert out == msg.read_bytes()


# ---- failures ---------------------------------------------------------------

# (name, mode, how the ciphertext is spoiled, label used to decrypt)
BAD_CIPHERTEXTS = [
    ("pkcs1-corrupted", "pkcs1", "corrupt", None),
    ("oaep-sha1-corrupted", "oaep-sha1", "corrupt", None),
    ("oaep-sha256-corrupted", "oaep-sha256", "corrupt", None),
    ("oaep-sha256-mgf1-sha1-corrupted", "oaep-sha256-mgf1-sha1", "corrupt",
     None),
    ("oaep-sha256-wrong-label", "oaep-sha256-label", None, b"\x00\x01\xa5"),
    ("oaep-sha1-wrong-label", "oaep-sha1-label", None, b"other label"),
    ("oaep-sha256-label-missing", "oaep-sha256-label", None, b""),
    ("oaep-sha256-unexpected-label", "oaep-sha256", None, LABEL),
]


@pytest.mark.parametrize("name, mode, spoil, dec_label", BAD_CIPHERTEXTS,
                         ids=[c[0] for c in BAD_CIPHERTEXTS])
def test_bad_ciphertext_fails_without_saying_why(token, public_key, tmp_path,
                                                 name, mode, spoil, dec_label):
    mode = MODES[mode]
    pub = public_key("rsa2048")
    ct = pub.encrypt(os.urandom(32), mode.padding())
    if spoil == "corrupt":
        ct = corrupt(ct)
    if dec_label == b"":
        opts = Mode("x", mode.pad, mode.md, mode.mgf1).pkeyopts()
    else:
        opts = mode.pkeyopts(label=dec_label)
    uri = token.uri("rsa2048", "private")
    if mode.name == "pkcs1" and implicit_rejection():
        # OpenSSL 3.2+ and SoftHSM linked to it reject a bad PKCS#1 v1.5
        # padding implicitly: a synthetic message, the same one for the
        # same key and ciphertext, and no error at all.
        (tmp_path / "again").mkdir()
        p, out = decrypt(token, token.env, uri, ct, tmp_path, opts)
        p2, out2 = decrypt(token, token.env, uri, ct, tmp_path / "again",
                           opts)
        assert out == out2 and len(out) <= modlen(pub) - 11, (out, out2)
        return
    p, out = decrypt(token, token.env, uri, ct, tmp_path, opts, ok=False)
    check_failure(p, out)


def implicit_rejection():
    """Whether this OpenSSL (and so SoftHSM, which links it) decrypts
    PKCS#1 v1.5 with implicit rejection, as 3.2 and later do."""
    return u.openssl_version() >= (3, 2, 0)


def test_padding_failure_reads_the_same_in_pkcs1_and_oaep_via_raw(
        token, public_key, tmp_path):
    """A padding failure on the token (PKCS#1 v1.5) and one found in
    software after a raw decryption (OAEP with SHA-256) must give the same
    error output, apart from the mode's name: nothing there may tell one
    failed check from another."""
    pub = public_key("rsa2048")
    uri = token.uri("rsa2048", "private")
    outputs, mechs = {}, {}
    # With implicit rejection (3.2+) a bad PKCS#1 v1.5 padding is no
    # failure; OAEP with SHA-1, which SoftHSM does itself, is then the
    # padding failure on the token.
    on_token = "oaep-sha1" if implicit_rejection() else "pkcs1"
    for name in (on_token, "oaep-sha256"):
        mode = MODES[name]
        (tmp_path / name).mkdir()
        env = token.fresh_env(tmp_path / name, level=2)
        ct = corrupt(pub.encrypt(os.urandom(32), mode.padding()))
        p, out = decrypt(token, env, uri, ct, tmp_path / name,
                         mode.pkeyopts(), ok=False)
        check_failure(p, out)
        outputs[name] = p.stderr
        mechs[name] = decrypt_inits(u.read_log(env), token.slot)
    # the two paths really are different ones
    token_mech = "CKM_RSA_PKCS_OAEP" if on_token == "oaep-sha1" else \
        "CKM_RSA_PKCS"
    assert mechs[on_token] == [(token_mech, "CKR_OK")], mechs
    assert mechs["oaep-sha256"] == OAEP_VIA_RAW, mechs
    a = without_mode(error_lines(outputs[on_token]))
    b = without_mode(error_lines(outputs["oaep-sha256"]))
    assert a == b, (
        f"padding failures read differently:\n"
        f"--- {on_token} on the token ---\n"
        + "\n".join(a) + "\n--- OAEP via raw ---\n" + "\n".join(b))


@pytest.mark.parametrize("mode", ["pkcs1", "oaep-sha256", "raw"])
def test_input_longer_than_modulus_is_a_clear_error(token, public_key,
                                                    tmp_path, mode):
    mode = RAW if mode == "raw" else MODES[mode]
    n = modlen(public_key("rsa2048"))
    p, out = decrypt(token, token.env, token.uri("rsa2048", "private"),
                     os.urandom(n + 1), tmp_path, mode.pkeyopts(), ok=False)
    assert p.returncode == 1, u.describe(p)
    assert out == b""
    assert re.search(r"(?i)longer than|too long|too large|greater than mod"
                     r"|exceeds|modulus|LEN_RANGE", p.stderr), (
        f"a {n + 1}-byte input for a {n}-byte modulus gives no clear "
        f"reason:\n{p.stderr}")
