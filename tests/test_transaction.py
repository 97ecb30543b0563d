"""A transaction per request (portal/platform/transaction.py): a success commits once after
the handler, an error answer rolls back unless the handler kept its records, and work that
must follow the commit runs only after one. No page or API handler commits on its own."""

from __future__ import annotations

import ast
from pathlib import Path

from flask import abort
from sqlalchemy import select
from support import client_for

from portal.models import PortalMeta
from portal.platform import transaction
from portal.platform.extensions import db

PORTAL = Path(__file__).resolve().parent.parent / "portal"


def _routes(app, calls: list[str]):
    def write(key: str) -> None:
        db.session.add(PortalMeta(key=key, value="1"))

    def ok():
        write("ok")
        transaction.after_commit(lambda: calls.append("after ok"))
        return "", 204

    def refused():
        write("refused")
        transaction.after_commit(lambda: calls.append("after refused"))
        abort(409)

    def kept():
        write("kept")
        transaction.keep()
        return "", 403

    def crashed():
        write("crashed")
        raise RuntimeError("boom")

    for name, view in (("ok", ok), ("refused", refused), ("kept", kept), ("crashed", crashed)):
        app.add_url_rule(f"/api/v1/test-transaction/{name}", name, view, methods=["POST"])


def _stored(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(PortalMeta.key)))


def test_success_commits_errors_roll_back_unless_kept(app):
    calls: list[str] = []
    _routes(app, calls)
    client = client_for(app)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    answer = client.post("/api/v1/test-transaction/ok")
    assert answer.status_code == 204, answer.get_data(as_text=True)[-300:]
    assert client.post("/api/v1/test-transaction/refused").status_code == 409
    assert client.post("/api/v1/test-transaction/kept").status_code == 403
    assert client.post("/api/v1/test-transaction/crashed").status_code == 500
    stored = _stored(app)
    assert {"ok", "kept"} <= stored
    assert not {"refused", "crashed"} & stored
    assert calls == ["after ok"]


def test_no_page_or_api_handler_commits():
    """Commits belong to the request transaction, background jobs and security counters."""
    found = []
    for folder in ("web", "api"):
        for path in sorted((PORTAL / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "commit"
                ):
                    found.append(f"{path.relative_to(PORTAL)}:{node.lineno}")
    assert found == []
