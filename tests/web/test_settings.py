"""Settings pages: certificate management, restart, logs, about."""

from __future__ import annotations

import datetime as dt
import io
import os
import signal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from portal.models import AuditEvent
from portal.platform import certs
from portal.platform.extensions import db


def _pem_pair(key=None, days=30, issuer_key=None, issuer_name=None, name="portal.example"):
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(
            issuer_key or key,
            None if isinstance(issuer_key or key, Ed25519PrivateKey) else hashes.SHA256(),
        )
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def ssl_app(app, tmp_path):
    ssl_dir = tmp_path / "ssl"
    certs.generate_self_signed(ssl_dir / "cert.pem", ssl_dir / "key.pem")
    settings = app.config["PORTAL_SETTINGS"]
    app.config["PORTAL_SETTINGS"] = settings.__class__(**{**settings.__dict__, "ssl_dir": ssl_dir})
    return app


def test_certificate_page_shows_the_served_certificate(ssl_app, admin):
    html = admin.client.get("/settings/certificate").get_data(as_text=True)
    assert "SHA-256 fingerprint" in html and "ECDSA secp256r1" in html and "days left" in html


def test_upload_validates_and_installs(ssl_app, admin, tmp_path):
    old = (tmp_path / "ssl" / "cert.pem").read_bytes()
    cert_pem, key_pem = _pem_pair()
    other_cert, _ = _pem_pair()

    def upload(cert, key, chain=b""):
        data = {"certificate": (io.BytesIO(cert), "c.pem"), "key": (io.BytesIO(key), "k.pem")}
        if chain:
            data["chain"] = (io.BytesIO(chain), "chain.pem")
        return admin.post(
            "/settings/certificate/upload",
            data,
            content_type="multipart/form-data",
            follow_redirects=True,
        )

    mismatch = upload(other_cert, key_pem)
    assert "does not match" in mismatch.get_data(as_text=True)
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_cert, weak_key_pem = _pem_pair(key=weak_key)
    assert "at least 2048" in upload(weak_cert, weak_key_pem).get_data(as_text=True)
    expired_cert, expired_key = _pem_pair(days=-1)
    assert "expired" in upload(expired_cert, expired_key).get_data(as_text=True)
    assert "not PEM" in upload(b"garbage", key_pem).get_data(as_text=True)
    assert (tmp_path / "ssl" / "cert.pem").read_bytes() == old
    ok = upload(cert_pem, key_pem)
    assert "Certificate installed" in ok.get_data(as_text=True)
    assert (tmp_path / "ssl" / "cert.pem").read_bytes() == cert_pem
    assert (tmp_path / "ssl" / "key.pem").stat().st_mode & 0o777 == 0o600
    backups = list((tmp_path / "ssl").glob("backup-*"))
    assert backups and (backups[0] / "cert.pem").read_bytes() == old
    with ssl_app.app_context():
        event = db.session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "settings.certificate_upload", AuditEvent.outcome == "success"
            )
        )
        assert "BEGIN" not in (event.details or "")


def test_chain_order_is_checked():
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root")])
    ca_pem, _ = _pem_pair(key=ca_key, name="Root")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_pem, leaf_key_pem = _pem_pair(key=leaf_key, issuer_key=ca_key, issuer_name=ca_name)
    assert len(certs.validate_pair(leaf_pem, leaf_key_pem, ca_pem)) == 2
    stranger, _ = _pem_pair(name="Other")
    with pytest.raises(certs.CertificateError, match="not in order"):
        certs.validate_pair(leaf_pem, leaf_key_pem, stranger)


def test_csr_then_accept_signed(ssl_app, admin, tmp_path):
    response = admin.post(
        "/settings/certificate/csr",
        {"common_name": "portal.example", "names": "portal.example, 10.0.0.5"},
    )
    csr = x509.load_pem_x509_csr(response.data)
    assert csr.is_signature_valid
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Corp CA")])
    signed = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_name)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .sign(ca_key, hashes.SHA256())
    ).public_bytes(serialization.Encoding.PEM)
    ok = admin.post(
        "/settings/certificate/accept",
        {"certificate": (io.BytesIO(signed), "signed.pem")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "Certificate installed" in ok.get_data(as_text=True)
    assert (tmp_path / "ssl" / "cert.pem").read_bytes().startswith(signed)
    assert not (tmp_path / "ssl" / "pending-key.pem").exists()


@pytest.mark.own_database  # files of its own data directory
def test_generate_self_signed_and_reload_signal(ssl_app, admin, tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    (tmp_path / "data" / "gunicorn.pid").write_text("4242\n")
    before = (tmp_path / "ssl" / "cert.pem").read_bytes()
    admin.post("/settings/certificate/self-signed")
    assert (tmp_path / "ssl" / "cert.pem").read_bytes() != before
    assert sent == [(4242, signal.SIGHUP)]
    refused = admin.post("/settings/restart", {})
    assert refused.status_code == 302 and len(sent) == 1
    admin.post("/settings/restart", {"confirm": "yes"})
    assert sent[-1] == (4242, signal.SIGHUP)


@pytest.mark.own_database  # files of its own data directory
def test_logs_only_from_the_log_directory(app, admin, tmp_path):
    (tmp_path / "logs").mkdir(exist_ok=True)
    log = tmp_path / "logs" / "portal.log"
    log.write_text("2026 INFO [1] portal: hello\n2026 ERROR [1] portal: broken thing\n")
    page = admin.client.get("/settings/logs?file=portal.log&level=ERROR").get_data(as_text=True)
    assert "broken thing" in page and "hello" not in page
    assert admin.client.get("/settings/logs?file=../data/data.key").status_code == 404
    assert admin.client.get("/settings/logs/download?file=/etc/passwd").status_code == 404
    download = admin.client.get("/settings/logs/download?file=portal.log")
    assert download.status_code == 200 and b"broken thing" in download.data
    download.close()


def test_about(app, admin):
    html = admin.client.get("/settings/about").get_data(as_text=True)
    assert "Version" in html and "free" in html and "Scheduler" in html


def test_expiring_certificate_banner_for_admins_only(ssl_app, admin, readonly, tmp_path):
    cert_pem, key_pem = _pem_pair(days=10)
    certs.install_pair(tmp_path / "ssl", cert_pem, key_pem)
    assert "TLS certificate expires in" in admin.client.get("/").get_data(as_text=True)
    assert "TLS certificate expires in" not in readonly.client.get("/").get_data(as_text=True)


def test_unsupported_key_type_is_refused_cleanly():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    cert_pem, key_pem = _pem_pair(key=ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(certs.CertificateError, match="only RSA"):
        certs.validate_pair(cert_pem, key_pem)


@pytest.mark.parametrize("lines", ["abc", "5", "99999999999999999999999"])
def test_log_viewer_refuses_a_bad_line_count(admin, lines):
    response = admin.client.get(f"/settings/logs?lines={lines}")
    assert response.status_code == 400
    assert "lines" in response.get_data(as_text=True)


def test_log_viewer_takes_a_line_count(admin):
    page = admin.client.get("/settings/logs?lines=25").get_data(as_text=True)
    assert 'value="25"' in page
