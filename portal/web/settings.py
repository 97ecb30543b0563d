"""Administration (admin only): security policy, TLS certificate, graceful restart, logs, about."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
from collections import deque
from pathlib import Path

from cryptography import x509
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url
from werkzeug.wrappers import Response as BaseResponse

from .. import audit
from ..access.guards import admin_required, recent_sign_in
from ..identity import second_factor
from ..identity.users import actor
from ..platform import certs, clock, locks
from ..platform.extensions import db
from ..platform.http import parse_query
from ..version import STARTED_AT, __version__

bp = Blueprint("settings", __name__, url_prefix="/settings")

MAX_UPLOAD = 256 * 1024
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", text)


def _settings():
    return current_app.config["PORTAL_SETTINGS"]


def served_certificate() -> dict | None:
    """Description of ssl/cert.pem, or None when it cannot be read."""
    try:
        cert = x509.load_pem_x509_certificate((_settings().ssl_dir / "cert.pem").read_bytes())
    except (OSError, ValueError):
        return None
    return certs.describe(cert)


def graceful_reload() -> str:
    """SIGHUP the Gunicorn master: new workers load the new files; sessions and the scheduler
    (in the master) carry on. Returns what happened, for the operator."""
    pid_file = _settings().data_dir / "gunicorn.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return "Not running under Gunicorn here: restart the portal to apply."
    return "The portal is reloading its workers; the page may take a moment."


def _file(name: str) -> bytes:
    upload = request.files.get(name)
    if upload is None or not upload.filename:
        return b""
    data = upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        abort(413, description=f"{name} is larger than {MAX_UPLOAD // 1024} KiB")
    return data


def _certificate_refused():
    flash("Confirm your password for this change.", "error")
    return redirect(url_for("settings.certificate"))


def _security_refused():
    flash("Confirm your password for this change.", "error")
    return render_template("settings_security.html", policy=second_factor.policy()), 403


@bp.get("/certificate")
@admin_required
def certificate():
    """Show the served certificate and the ways to replace it."""
    pending = (_settings().ssl_dir / "pending-key.pem").exists()
    return render_template(
        "settings_certificate.html",
        cert=served_certificate(),
        pending=pending,
        hostname=socket.getfqdn(),
    )


def _apply(cert_pem: bytes, key_pem: bytes, action: str, detail: str):
    backup = certs.install_pair(_settings().ssl_dir, cert_pem, key_pem)
    described = served_certificate() or {}
    audit.record(
        action,
        "certificate",
        details={
            "sha256": described.get("sha256", ""),
            "subject": described.get("subject", ""),
            "backup": backup.name if backup else "",
            "how": detail,
        },
    )
    flash(f"Certificate installed. {graceful_reload()}", "info")
    return redirect(url_for("settings.certificate"))


def _install_checked(
    cert_pem: bytes, key_pem: bytes, chain_pem: bytes, action: str, how: str
) -> tuple[BaseResponse, bool]:
    """Validate certificate, key and chain, then install them; a refusal is audited and
    shown. Returns the response and whether the pair was installed."""
    try:
        chain = certs.validate_pair(cert_pem, key_pem, chain_pem)
    except certs.CertificateError as exc:
        audit.record(action, "certificate", outcome="failure", details={"reason": str(exc)})
        flash(f"Not installed: {exc}.", "error")
        return redirect(url_for("settings.certificate")), False
    full = b"".join(c.public_bytes(certs.serialization.Encoding.PEM) for c in chain)
    return _apply(full, key_pem, action, how), True


@bp.post("/certificate/upload")
@admin_required
@recent_sign_in("settings.certificate_upload", refuse=_certificate_refused)
def upload_certificate():
    """Install an uploaded certificate, key and optional chain after validating them."""
    cert_pem, key_pem, chain_pem = _file("certificate"), _file("key"), _file("chain")
    if not cert_pem or not key_pem:
        flash("Choose a certificate file and its key.", "error")
        return redirect(url_for("settings.certificate"))
    response, _ = _install_checked(
        cert_pem, key_pem, chain_pem, "settings.certificate_upload", "uploaded"
    )
    return response


@bp.post("/certificate/self-signed")
@admin_required
@recent_sign_in("settings.certificate_generate", refuse=_certificate_refused)
def generate_certificate():
    """Replace the certificate with a new self-signed one."""
    tmp = _settings().ssl_dir / ".generate"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700, parents=True)
    try:
        certs.generate_self_signed(tmp / "cert.pem", tmp / "key.pem")
        cert_pem, key_pem = (tmp / "cert.pem").read_bytes(), (tmp / "key.pem").read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _apply(cert_pem, key_pem, "settings.certificate_generate", "self-signed")


@bp.post("/certificate/csr")
@admin_required
@recent_sign_in("settings.certificate_csr", refuse=_certificate_refused)
def certificate_request():
    """Create a key and a certificate signing request for the operator's CA."""
    common_name = (request.form.get("common_name") or "").strip()
    names = [n.strip() for n in re.split(r"[,\s]+", request.form.get("names") or "") if n.strip()]
    if (
        not common_name
        or len(common_name) > 64
        or not all(re.match(r"^[A-Za-z0-9.*:-]{1,253}$", n) for n in names + [common_name])
    ):
        flash("Enter a common name and host names or addresses separated by commas.", "error")
        return redirect(url_for("settings.certificate"))
    csr = certs.make_csr(_settings().ssl_dir, common_name, names or [common_name])
    audit.record("settings.certificate_csr", common_name)
    return Response(
        csr,
        mimetype="application/pkcs10",
        headers={"Content-Disposition": f'attachment; filename="{_safe_name(common_name)}.csr"'},
    )


@bp.post("/certificate/accept")
@admin_required
@recent_sign_in("settings.certificate_accept", refuse=_certificate_refused)
def accept_certificate():
    """Install the certificate the CA signed for the pending key (with its chain)."""
    pending = _settings().ssl_dir / "pending-key.pem"
    if not pending.exists():
        flash("There is no pending certificate request.", "error")
        return redirect(url_for("settings.certificate"))
    cert_pem, chain_pem = _file("certificate"), _file("chain")
    key_pem = pending.read_bytes()
    response, installed = _install_checked(
        cert_pem, key_pem, chain_pem, "settings.certificate_accept", "signed by the CA"
    )
    if installed:
        pending.unlink()
    return response


@bp.post("/restart")
@admin_required
def restart():
    """Gracefully reload the web workers (confirmed in the form)."""
    if request.form.get("confirm") != "yes":
        flash("Tick the box to confirm the restart.", "error")
        return redirect(url_for("settings.about"))
    message = graceful_reload()
    audit.record("settings.restart", "web workers")
    flash(message, "info")
    return redirect(url_for("settings.about"))


class LogQuery(BaseModel):
    """How many of the last lines the log viewer shows."""

    lines: int = Field(200, ge=10, le=5000)


def log_files() -> list[Path]:
    """The regular files in the log directory (the only files the log view can show)."""
    directory = _settings().log_dir
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and _LOG_NAME.match(p.name))


def _named_log(name: str | None) -> Path:
    for path in log_files():
        if path.name == name:
            return path
    abort(404, description="No such log file.")


@bp.get("/logs")
@admin_required
def logs():
    """The last lines of one log file, filtered by level and text."""
    files = log_files()
    name = request.args.get("file") or (files[0].name if files else None)
    count = parse_query(LogQuery).lines
    level = (request.args.get("level") or "").upper()
    text = request.args.get("q") or ""
    lines: list[str] = []
    if name:
        path = _named_log(name)
        wanted = LEVELS[LEVELS.index(level) :] if level in LEVELS else None
        with path.open(encoding="utf-8", errors="replace") as handle:
            tail: deque[str] = deque(maxlen=count)
            for line in handle:
                if wanted and not any(f" {lv} " in line or f"[{lv}]" in line for lv in wanted):
                    continue
                if text and text.lower() not in line.lower():
                    continue
                tail.append(line.rstrip("\n"))
        lines = list(tail)
    return render_template(
        "settings_logs.html",
        files=[p.name for p in files],
        current=name,
        lines=lines,
        count=count,
        level=level,
        q=text,
        levels=LEVELS,
    )


@bp.get("/logs/download")
@admin_required
def download_log():
    """Download one whole log file."""
    path = _named_log(request.args.get("file"))
    audit.record("settings.log_download", path.name)
    return send_file(path, mimetype="text/plain", as_attachment=True, download_name=path.name)


def _size(path: Path | None) -> int:
    if path is None:
        return 0
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


@bp.get("/about")
@admin_required
def about():
    """Version, database size, free space, scheduler state, uptime."""
    settings = _settings()
    usage = shutil.disk_usage(settings.data_dir)
    role, leader = locks.scheduler_role(db.session, settings)
    uptime = clock.now() - STARTED_AT
    facts = {
        "version": __version__,
        "database": make_url(settings.database_url).render_as_string(hide_password=True)
        if settings.sqlite_path is None
        else str(settings.sqlite_path),
        "database_size": _size(settings.sqlite_path),
        "data_dir": str(settings.data_dir),
        "free_space": usage.free,
        "scheduler": {
            "leader": f"runs on this node ({leader})",
            "standby": f"this node stands by; it runs on {leader}",
            "none": "not running",
        }[role],
        "uptime": str(uptime).split(".")[0],
        "started_at": clock.iso(STARTED_AT),
    }
    return render_template("settings_about.html", facts=facts)


@bp.route("/security", methods=["GET", "POST"])
@admin_required
@recent_sign_in("settings.security", refuse=_security_refused)
def security():
    """Who must have a second factor: nobody, admins, or everyone."""
    if request.method == "POST":
        value = request.form.get("require_second_factor") or ""
        if value not in second_factor.POLICIES:
            flash("Choose one of the listed policies.", "error")
            return render_template("settings_security.html", policy=second_factor.policy()), 400
        try:
            second_factor.set_policy(value, actor())
        except second_factor.FactorError as exc:
            db.session.rollback()
            flash(str(exc), "error")
            return render_template("settings_security.html", policy=second_factor.policy()), 409
        flash("The second-factor policy is saved.", "info")
        return redirect(url_for("settings.security"))
    return render_template("settings_security.html", policy=second_factor.policy())


_expiry_cache: dict = {}


def certificate_warning() -> dict | None:
    """For the admin banner: the served certificate when it expires within 30 days."""
    path = _settings().ssl_dir / "cert.pem"
    try:
        stamp = (str(path), path.stat().st_mtime_ns, clock.now().date())
    except OSError:
        return None
    if _expiry_cache.get("stamp") != stamp:  # parse once per file change and day
        cert = served_certificate()
        _expiry_cache.update(stamp=stamp, cert=cert)
    cert = _expiry_cache["cert"]
    return cert if cert is not None and cert["days_left"] <= 30 else None


@bp.app_context_processor
def _admin_banner() -> dict:
    if current_user.is_authenticated and current_user.is_admin:
        return {"certificate_warning": certificate_warning()}
    return {"certificate_warning": None}
