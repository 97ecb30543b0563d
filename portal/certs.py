"""TLS certificate helpers: a self-signed certificate for first start, and inspection."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
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
    now = dt.datetime.now(dt.UTC)
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
    """`python -m portal.certs ensure CERT KEY`: create a self-signed pair when none exists."""
    parser = argparse.ArgumentParser(prog="python -m portal.certs")
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


if __name__ == "__main__":
    sys.exit(main())
