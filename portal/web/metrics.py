"""Prometheus metrics (`/metrics`): an API token of any scope, or an allowed address."""

from __future__ import annotations

import ipaddress

from flask import Blueprint, Response, current_app, request

from ..access import grants
from ..alerts import metrics
from ..identity import tokens
from ..platform.security import client_ip

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _allowed_address(address: str) -> bool:
    networks = current_app.config["PORTAL_SETTINGS"].metrics_allow
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _refusal(status: int, text: str) -> Response:
    response = Response(text + "\n", status=status, mimetype="text/plain")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@bp.get("/metrics")
def scrape():
    """The metrics, read from the database now; never cached, no session."""
    address = client_ip()
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        token = tokens.authenticate(header[7:].strip(), address)
        if token is None or not tokens.allows(token.scope, "read"):
            return _refusal(401, tokens.REFUSED)
        if grants.visible_environment_ids(token.user) is not None:
            # The figures name every environment: for owners who may see them all.
            return _refusal(403, "The token's owner may not see every environment.")
    elif not _allowed_address(address):
        if current_app.config["PORTAL_SETTINGS"].metrics_allow:
            return _refusal(403, "This address may not read the metrics.")
        return _refusal(401, "An API token (Authorization: Bearer) is needed.")
    return Response(metrics.exposition(), content_type=CONTENT_TYPE)
