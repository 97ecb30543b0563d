"""Credentials: pages of metadata, password age, reveal, history, purge."""

from __future__ import annotations

from flask import abort, jsonify
from flask_login import login_required

from .. import audit
from ..access import ratelimit
from ..access.guards import (
    credential_for,
    environment_for,
    environment_level,
    recent_sign_in,
    seen_credential,
    visible_ids,
)
from ..audit import seen, sightings
from ..control import checkouts, gate
from ..environments import service
from ..identity.users import actor
from ..models import PasswordHistory
from ..platform.extensions import db
from ..platform.http import json_error
from ..vault import credentials, exports
from ..vault.credentials import CredentialFilters
from . import schemas as s
from .base import bp
from .spec import FILE, api_operation


@bp.get("/environments/<int:env_id>/credentials")
@login_required
@api_operation({200: s.CredentialPage}, query=s.CredentialQuery)
def list_credentials(env_id: int, query: s.CredentialQuery):
    """One page of credential metadata (no passwords), filtered and sorted."""
    environment_for(env_id, "view")
    page = credentials.credentials_page(env_id, query, query.page, query.per_page, user=actor())
    checkouts.annotate(page["items"], actor())
    return jsonify(page)


@bp.get("/credentials")
@login_required
@api_operation({200: s.CredentialPage}, query=s.CredentialQuery)
def search_credentials(query: s.CredentialQuery):
    """Search credentials across every environment; an account that several sources hold
    with the same password is one item naming them all (`sources`)."""
    page = credentials.search_page(query, query.page, query.per_page, visible_ids(), user=actor())
    revealable = visible_ids("reveal")
    for item in page["items"]:
        item["can_reveal"] = revealable is None or item["environment_id"] in revealable
    checkouts.annotate(page["items"], actor())
    return jsonify(page)


@bp.get("/environments/<int:env_id>/password-age")
@login_required
@api_operation({200: s.PasswordAge}, query=s.PasswordAgeQuery)
def password_age(env_id: int, query: s.PasswordAgeQuery):
    """Password age buckets, passwords older than `days` (90), and those expiring."""
    environment_for(env_id, "view")
    return jsonify(credentials.password_age(env_id, query.days))


@bp.post("/credentials/<int:cred_id>/reveal")
@login_required
@api_operation({200: s.Password}, s.RevealRequest, body_required=False, scope="reveal")
def reveal_password(cred_id: int, body: s.RevealRequest):
    """Return one password and audit it (as a reveal, or as a copy). A sensitive credential
    answers 403 with `details.needs` (`approval`, `checkout`) unless what its policy asks is
    met (an open window of the caller's, a check-out they hold)."""
    cred = credential_for(cred_id, "reveal")
    action = "credential.copy" if body.purpose == "copy" else "credential.reveal"
    ratelimit.enforce()  # refusals count too: probing the gate is rate-limited as reveals are
    unmet = gate.needs(actor(), cred)
    if unmet:
        return gate.refuse(action, credentials.audit_target(cred), cred, unmet)
    password = credentials.reveal(cred)
    sightings.password_shown(
        action,
        credentials.audit_target(cred),
        cred.id,
        cred.environment_id,
        outcome="success" if password is not None else "empty",
        details=gate.window_details(actor(), cred),
    )
    return jsonify(password=password)


@bp.get("/credentials/<int:cred_id>/history")
@login_required
@api_operation({200: s.HistoryList})
def password_history(cred_id: int):
    """The password history of a credential, without passwords; with what its policy asks
    (`requires`) and what the caller still needs to reveal a value (`needs`)."""
    cred = credential_for(cred_id, "view")
    items = credentials.history_items(cred)
    checkouts.history_holders(cred.id, items)
    return jsonify(
        items=items,
        requires=list(gate.match(cred).requires),
        needs=gate.needs(actor(), cred),
    )


@bp.get("/credentials/<int:cred_id>/seen-by")
@login_required
@api_operation({200: s.SeenByList})
def seen_by(cred_id: int):
    """Who saw the credential's password since it last changed: reveals, copies and exports,
    one item per person (auditors, admins and the environment's managers)."""
    return jsonify(seen.seen_by(seen_credential(cred_id)))


@bp.post("/credentials/<int:cred_id>/history/<int:entry_id>/reveal")
@login_required
@api_operation({200: s.Password}, scope="reveal")
def reveal_history_password(cred_id: int, entry_id: int):
    """Return one former password and audit it; a sensitive credential's former values need
    what its current one needs (403 with `details.needs`)."""
    cred = credential_for(cred_id, "reveal")
    entry = db.session.get(PasswordHistory, entry_id)
    if entry is None or entry.credential_id != cred.id:
        abort(404, description="No such history entry.")
    ratelimit.enforce()
    unmet = gate.needs(actor(), cred)
    if unmet:
        return gate.refuse("credential.history_reveal", credentials.audit_target(cred), cred, unmet)
    password = credentials.reveal_history(entry)
    sightings.password_shown(
        "credential.history_reveal",
        credentials.audit_target(cred),
        cred.id,
        cred.environment_id,
        details={"entry": entry.id, **gate.window_details(actor(), cred)},
    )
    return jsonify(password=password)


@bp.delete("/credentials/<int:cred_id>")
@login_required
@api_operation({204: None}, errors=(409,))
def purge_credential(cred_id: int):
    """Purge a credential that is absent upstream, with its history (manage level)."""
    cred = credential_for(cred_id, "manage")
    if cred.present:
        return json_error(409, "Only credentials absent upstream can be purged.")
    target = credentials.audit_target(cred)
    db.session.delete(cred)
    db.session.flush()
    service.refresh_counts(cred.environment_id, cred.source)
    audit.record("credential.purge", target)
    return "", 204


def _export(environment, body: s.CredentialExportRequest):
    filters = CredentialFilters.model_validate(body.model_dump(exclude={"format"}))
    return exports.respond(
        environment, body.format, filters, {"format": body.format, "scope": "api"}
    )


@bp.post("/environments/<int:env_id>/export")
@login_required
@environment_level("reveal")
@recent_sign_in("credential.export")
@api_operation({200: FILE}, s.CredentialExportRequest, scope="reveal", errors=(429,))
def export_environment(env_id: int, body: s.CredentialExportRequest):
    """Download an environment's credentials with passwords (`text/csv` or Excel), filtered as
    the credential list; audited like the page's export."""
    return _export(environment_for(env_id, "reveal"), body)


@bp.post("/credentials/export")
@login_required
@recent_sign_in("credential.export")
@api_operation({200: FILE}, s.CredentialExportRequest, scope="reveal", errors=(429,))
def export_credentials(body: s.CredentialExportRequest):
    """Download the credentials of every environment with passwords, filtered; audited."""
    return _export(None, body)
