"""Certificates made in software: X.509 names from openssl's one-line form,
a self-signed certificate, and a CA (TlsCa) that issues leaf certificates
for token keys. Nothing here touches a token.
"""

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def x509_name(oneline):
    attrs = {"O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
    rdns = []
    for part in oneline.strip("/").split("/"):
        k, v = part.split("=", 1)
        rdns.append(x509.NameAttribute(attrs[k], v))
    return x509.Name(rdns)


def self_signed(key, subject):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509_name(subject)).issuer_name(x509_name(subject))
            .public_key(key.public_key()).serial_number(0x3000)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))


class TlsCa:
    """A software CA (EC P-256) that issues certificates for token keys.

    Its certificate is root/ca.crt; issue() writes leaf certificates
    (serverAuth and clientAuth, SAN localhost and 127.0.0.1).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.subject = x509_name("/O=p11bridge tests/CN=p11b TLS test CA")
        # Key identifiers as RFC 5280 asks: Python 3.13+ verifies with
        # VERIFY_X509_STRICT, which refuses a chain without them.
        self.ski = x509.SubjectKeyIdentifier.from_public_key(
            self.key.public_key())
        self.serial = 0x7000
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.subject).issuer_name(self.subject)
            .public_key(self.key.public_key()).serial_number(self.serial)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                           critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False,
                                         True, True, False, False),
                           critical=True)
            .add_extension(self.ski, critical=False)
            .sign(self.key, hashes.SHA256()))
        self.pem = self.root / "ca.crt"
        self.pem.write_bytes(self.cert.public_bytes(
            serialization.Encoding.PEM))

    def issue(self, public, cn, path):
        """A leaf certificate for `public` (a public key, or SPKI DER)."""
        if isinstance(public, bytes):
            public = serialization.load_der_public_key(public)
        self.serial += 1
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509_name(f"/O=p11bridge tests/CN={cn}"))
            .issuer_name(self.subject)
            .public_key(public).serial_number(self.serial)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                           critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH,
                 ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier
                           .from_issuer_subject_key_identifier(self.ski),
                           critical=False)
            .sign(self.key, hashes.SHA256()))
        path = Path(path)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def sign_csr(self, csr_path, path):
        """Issue a leaf for a CSR (its signature is checked first)."""
        csr = x509.load_pem_x509_csr(Path(csr_path).read_bytes())
        assert csr.is_signature_valid, f"bad signature on {csr_path}"
        cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        return self.issue(csr.public_key(), cn, path)

    def software_pair(self, directory, name, cn="localhost"):
        """A software P-256 key and its certificate: (key path, cert path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        key_path = Path(directory) / f"{name}.key"
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return key_path, self.issue(key.public_key(), cn,
                                    Path(directory) / f"{name}.crt")
