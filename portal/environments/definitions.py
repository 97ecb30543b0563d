"""Environment definitions as a JSON document, to move setups between portals."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from ..models import SOURCES, Environment
from ..platform import clock
from ..platform.crypto import ENDPOINT_PASSWORD, cipher
from ..platform.extensions import db
from .endpoints import ENDPOINT_FIELDS
from .service import ValidationError, save_environment

FORMAT = "vcf-credential-portal/environments"
VERSION = 1


def export_document(include_passwords: bool) -> dict:
    """Every environment's settings; service-account passwords only when asked, the fleet
    locker decryption password never."""
    items = []
    for env in db.session.scalars(select(Environment).order_by(Environment.name)):
        item = {
            "name": env.name,
            "description": env.description,
            "manager": None,
            "installer": None,
            "fleet": None,
        }
        for endpoint in env.endpoints:
            block = {field: getattr(endpoint, field) for field in ENDPOINT_FIELDS}
            if include_passwords:
                block["password"] = cipher().decrypt(endpoint.password_enc, ENDPOINT_PASSWORD)
            item[endpoint.source] = block
        items.append(item)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": clock.iso(clock.now()),
        "includes_passwords": include_passwords,
        "environments": items,
    }


class NotADefinitionsDocument(ValueError):
    """The document did not come from an export of this portal."""


@dataclass
class ImportOutcome:
    """What an import did: counts, errors per environment, endpoints left without password."""

    created: int = 0
    updated: int = 0
    errors: dict[str, dict] = field(default_factory=dict)
    without_password: list[str] = field(default_factory=list)


def import_document(document: dict) -> ImportOutcome:
    """Create or update environments (matched by name); one that is not valid is skipped."""
    if document.get("format") != FORMAT or not isinstance(document.get("environments"), list):
        raise NotADefinitionsDocument("Not an environment definitions document from this portal.")
    if document.get("version") != VERSION:
        raise NotADefinitionsDocument(
            f"Definitions document version {document.get('version')!r} is not supported "
            f"(this portal reads version {VERSION})."
        )
    outcome = ImportOutcome()
    for index, item in enumerate(document["environments"]):
        name = item.get("name") if isinstance(item, dict) else None
        label = name if isinstance(name, str) and name else f"#{index + 1}"
        existing = (
            db.session.scalar(select(Environment).where(Environment.name == name))
            if isinstance(name, str)
            else None
        )
        try:
            with db.session.begin_nested():
                save_environment(item, existing, password_required=False)
                db.session.flush()
        except ValidationError as exc:
            outcome.errors[label] = exc.errors
            continue
        if existing is None:
            outcome.created += 1
        else:
            outcome.updated += 1
        for source in SOURCES:
            block = item.get(source)
            if isinstance(block, dict) and not block.get("password") and existing is None:
                outcome.without_password.append(f"{label} / {source}")
    return outcome
