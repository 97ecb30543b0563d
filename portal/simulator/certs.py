"""A private CA and a server certificate for the simulator, so CA trust can be tested for real."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "sim-ca.pem"
CERT_FILE = "sim-server.pem"
KEY_FILE = "sim-server.key"


@dataclass(frozen=True)
class CertificateSet:
    """PEM files of the simulator's CA and server certificate."""

    ca_pem: str
    cert_pem: str
    key_pem: str = ""

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write the PEM files (key mode 0600) and return (cert chain path, key path)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CA_FILE).write_text(self.ca_pem, encoding="ascii")
        chain = directory / CERT_FILE
        chain.write_text(self.cert_pem, encoding="ascii")
        key = directory / KEY_FILE
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(self.key_pem)
        return chain, key


def load_certificates(directory: Path) -> CertificateSet | None:
    """Return the certificates saved in ``directory`` earlier, or None if incomplete."""
    paths = [directory / name for name in (CA_FILE, CERT_FILE, KEY_FILE)]
    if not all(p.is_file() for p in paths):
        return None
    ca, cert, key = (p.read_text(encoding="ascii") for p in paths)
    return CertificateSet(ca_pem=ca, cert_pem=cert, key_pem=key)


def generate_certificates(hostnames: list[str]) -> CertificateSet:
    """Create a CA and a server certificate for ``hostnames`` (names or IP addresses)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VCF Simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "VCF Simulator Test CA"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(hostnames):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return CertificateSet(
        ca_pem=ca_cert.public_bytes(pem).decode("ascii"),
        cert_pem=cert.public_bytes(pem).decode("ascii"),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii"),
    )


def leaf_der(cert_pem: str) -> bytes:
    """Return the DER bytes of the first certificate in ``cert_pem``."""
    return x509.load_pem_x509_certificate(cert_pem.encode("ascii")).public_bytes(
        serialization.Encoding.DER
    )
