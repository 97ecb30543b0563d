"""TLS certificate helpers: a self-signed certificate for first start, and inspection."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# Mozilla "intermediate" TLS 1.2 suites (TLS 1.3 suites are fixed by OpenSSL and all allowed).
MOZILLA_INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)


def primary_ip() -> str | None:
    """The address this host uses for outbound traffic (no packet is sent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP only picks a route
        return sock.getsockname()[0]
    except OSError:
        return None
    finally:
        sock.close()


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def generate_self_signed(cert_path: Path, key_path: Path, days: int = 365) -> x509.Certificate:
    """Write a self-signed ECDSA P-256 certificate for this host; the key gets mode 0600."""
    hostname = socket.gethostname()
    fqdn = socket.getfqdn()
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([fqdn, hostname, "localhost"]):
        if name:
            names.append(x509.DNSName(name))
    addresses = ["127.0.0.1"]
    if (ip := primary_ip()) and ip not in addresses:
        addresses.append(ip)
    names.extend(x509.IPAddress(ipaddress.ip_address(a)) for a in addresses)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, (fqdn or hostname or "localhost")[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VCF Credential Portal"),
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as colon-separated uppercase hex."""
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def main(argv: list[str] | None = None) -> int:
    """`ensure CERT KEY`: create a self-signed pair when none exists (the command is
    `python -m portal.ensure_certificate CERT KEY`)."""
    parser = argparse.ArgumentParser(prog="python -m portal.ensure_certificate")
    parser.add_argument("command", choices=["ensure"])
    parser.add_argument("cert", type=Path)
    parser.add_argument("key", type=Path)
    args = parser.parse_args(argv)
    if args.cert.exists() and args.key.exists():
        return 0
    cert = generate_self_signed(args.cert, args.key)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    print(f"Generated a self-signed certificate: {args.cert}")
    print("  names: " + ", ".join(str(n.value) for n in sans))
    print(f"  SHA-256 fingerprint: {fingerprint(cert)}")
    return 0


class CertificateError(ValueError):
    """An uploaded certificate, key or chain that the portal refuses, with the reason."""


def describe(cert: x509.Certificate) -> dict:
    """What an operator needs to see of a certificate."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in sans]
    except x509.ExtensionNotFound:
        names = []
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_type = f"ECDSA {key.curve.name}"
    elif isinstance(key, rsa.RSAPublicKey):
        key_type = f"RSA {key.key_size}"
    else:
        key_type = type(key).__name__
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": names,
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC"),
        "days_left": (cert.not_valid_after_utc - now).days,
        "sha256": fingerprint(cert),
        "key_type": key_type,
        "self_signed": cert.issuer == cert.subject,
    }


def _check_key_strength(key) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The key, when it is a strong enough RSA or ECDSA key; CertificateError otherwise."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CertificateError(
                f"RSA keys must have at least 2048 bits (this one: {key.key_size})"
            )
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise CertificateError(
                f"ECDSA keys must use P-256 or P-384 (this one: {key.curve.name})"
            )
    else:
        raise CertificateError(
            "only RSA (2048 bits or more) and ECDSA P-256/P-384 keys are accepted"
        )
    return key


def validate_pair(
    cert_pem: bytes, key_pem: bytes, chain_pem: bytes = b""
) -> list[x509.Certificate]:
    """Check a certificate, its key and an optional chain; returns [leaf, *chain]."""
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise CertificateError("the certificate is not PEM") from None
    if chain_pem.strip():
        try:
            certs += x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise CertificateError("the chain is not PEM") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise CertificateError("the key is not an unencrypted PEM private key") from None
    leaf = certs[0]
    leaf_key = _check_key_strength(leaf.public_key())
    own_key = _check_key_strength(key.public_key())
    if leaf_key.public_numbers() != own_key.public_numbers():
        raise CertificateError("the key does not match the certificate")
    now = dt.datetime.now(dt.timezone.utc)
    for cert in certs:
        if cert.not_valid_after_utc <= now:
            raise CertificateError(f"{cert.subject.rfc4514_string()} has expired")
        if cert.not_valid_before_utc > now:
            raise CertificateError(f"{cert.subject.rfc4514_string()} is not valid yet")
    for child, parent in zip(certs, certs[1:], strict=False):
        if child.issuer != parent.subject:
            raise CertificateError(
                "the chain is not in order: each certificate must be followed "
                "by the one that issued it"
            )
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise CertificateError(
                f"{child.subject.rfc4514_string()} was not signed by "
                f"{parent.subject.rfc4514_string()}"
            ) from None
    return certs


def install_pair(ssl_dir: Path, cert_pem: bytes, key_pem: bytes) -> Path | None:
    """Write cert.pem and key.pem (0600), keeping the old pair as a timestamped backup."""
    ssl_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = ssl_dir / "cert.pem", ssl_dir / "key.pem"
    backup = None
    if cert_path.exists() and key_path.exists():
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        backup = ssl_dir / f"backup-{stamp}"
        backup.mkdir(mode=0o700)
        (backup / "cert.pem").write_bytes(cert_path.read_bytes())
        _write(backup / "key.pem", key_path.read_bytes(), 0o600)
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    return backup


def make_csr(ssl_dir: Path, common_name: str, names: list[str]) -> bytes:
    """Create a new key (kept as pending-key.pem, 0600) and a CSR for the operator's CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    ssl_dir.mkdir(parents=True, exist_ok=True)
    _write(
        ssl_dir / "pending-key.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    return csr.public_bytes(serialization.Encoding.PEM)
