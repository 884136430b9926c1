"""Independent checks on keys and signatures: PEM and the little DER parsing
the SPKI tests need, digests computed in Python, a flipped byte.
"""

import base64
import hashlib
import re

from cryptography.hazmat.primitives import hashes, serialization


def pem_blocks(text, label):
    rx = re.compile(rf"-----BEGIN {label}-----\s*(.*?)-----END {label}-----",
                    re.S)
    return [base64.b64decode("".join(b.split())) for b in rx.findall(text)]


def spki_der_from_pem(text):
    """The raw DER of the one PUBLIC KEY block in text (not re-encoded)."""
    blocks = pem_blocks(text, "PUBLIC KEY")
    assert len(blocks) == 1, f"expected one PUBLIC KEY block in:\n{text}"
    return blocks[0]


def normalize_spki(data):
    """SPKI DER of a public key given as PEM or DER (SPKI or PKCS#1)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
    else:
        key = serialization.load_der_public_key(data)
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def der_read(data, pos=0):
    """(tag, content, next position) of the DER element at pos."""
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    return tag, data[pos:pos + n], pos + n


def der_children(content):
    out, pos = [], 0
    while pos < len(content):
        tag, value, pos = der_read(content, pos)
        out.append((tag, value))
    return out


def oid_to_str(value):
    first = value[0]
    parts = [str(min(first // 40, 2)), str(first - 40 * min(first // 40, 2))]
    n = 0
    for b in value[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(str(n))
            n = 0
    return ".".join(parts)


def spki_algorithm(der):
    """(algorithm OID, (tag, value) of its parameters or None)."""
    tag, body, end = der_read(der)
    assert tag == 0x30 and end == len(der), "SPKI is not one SEQUENCE"
    (atag, alg), (btag, _bits) = der_children(body)
    assert atag == 0x30 and btag == 0x03, \
        "SPKI: bad AlgorithmIdentifier or BIT STRING"
    fields = der_children(alg)
    assert fields[0][0] == 0x06
    params = fields[1] if len(fields) > 1 else None
    return oid_to_str(fields[0][1]), params


OID_RSA = "1.2.840.113549.1.1.1"
OID_EC = "1.2.840.10045.2.1"
CURVE_OIDS = {256: "1.2.840.10045.3.1.7", 384: "1.3.132.0.34",
              521: "1.3.132.0.35"}

# OpenSSL digest name -> (hashlib name, cryptography hash class)
DIGESTS = {
    "sha1": ("sha1", hashes.SHA1),
    "sha224": ("sha224", hashes.SHA224),
    "sha256": ("sha256", hashes.SHA256),
    "sha384": ("sha384", hashes.SHA384),
    "sha512": ("sha512", hashes.SHA512),
    "sha3-256": ("sha3_256", hashes.SHA3_256),
    "sha3-384": ("sha3_384", hashes.SHA3_384),
    "sha3-512": ("sha3_512", hashes.SHA3_512),
}


def digest_of(name, data):
    """The digest of data with OpenSSL's digest `name`, computed in Python."""
    return hashlib.new(DIGESTS[name][0], data).digest()


def crypto_hash(name):
    """A cryptography hash object for OpenSSL's digest `name`."""
    return DIGESTS[name][1]()


def flip_byte(data, index=None):
    """data with one byte changed (the middle one unless index is given)."""
    data = bytearray(data)
    i = len(data) // 2 if index is None else index
    data[i] ^= 0x01
    return bytes(data)
