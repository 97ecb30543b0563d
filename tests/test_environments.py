"""An endpoint's settings as its source's form reads them (each field's rule and message, the
merge with the stored endpoint, the password rules); per-source credential counts kept on the
endpoints: every writer keeps them current, the dashboard reads them without counting the
credentials table, and the migration fills them."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic import command
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event, select, text
from support import fetched, make_app

from portal import sync
from portal.api.schemas import EndpointIn
from portal.environments.endpoints import (
    ENDPOINT_FORMS,
    MAX_HOST,
    MAX_PASSWORD,
    MAX_USERNAME,
    EndpointForm,
    parse_endpoint,
)
from portal.environments.service import save_environment
from portal.models import SOURCES, Credential, Endpoint
from portal.ops.bootstrap import alembic_config
from portal.platform.extensions import db

FINGERPRINT = "ab" * 32


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "Test CA")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


CA_PEM = _ca_pem()
BROKEN_PEM = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
NEW = {"host": "sddc.example.net", "username": "svc", "password": "x"}


def _stored(**values) -> Endpoint:
    """An endpoint as saved (not in a session): the merge reads only its fields."""
    fields = {
        "source": "manager",
        "host": "sddc.example.net",
        "port": 443,
        "username": "svc",
        "verify_tls": True,
        "ca_pem": None,
        "pinned_sha256": None,
        "sync_enabled": True,
        "sync_interval_minutes": 60,
        **values,
    }
    return Endpoint(**fields)


def _parse(data, source="manager", existing=None, password_required=True):
    errors: dict[str, str] = {}
    values = parse_endpoint(data, source, source, existing, errors, password_required)
    return values, errors


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("host", "bad host/x", "Enter a host name or IP address."),
        ("host", "", "Enter a host name or IP address."),
        ("host", None, "Enter a host name or IP address."),
        ("host", "h" * (MAX_HOST + 1), "Enter a host name or IP address."),
        ("host", "::::", "Enter a host name or IP address."),
        ("host", "fe80::1%eth0", "Enter a host name or IP address."),  # no zone in a URL
        ("host", 443, "Enter a host name or IP address."),
        ("port", 0, "Must be between 1 and 65535."),
        ("port", 65536, "Must be between 1 and 65535."),
        ("port", "https", "Expected a whole number."),
        ("port", 443.5, "Expected a whole number."),
        ("port", float("inf"), "Expected a whole number."),  # JSON's 1e999
        ("port", [443], "Expected a whole number."),
        ("username", "  ", f"Enter the service account (at most {MAX_USERNAME} characters)."),
        ("username", "u" * (MAX_USERNAME + 1), f"at most {MAX_USERNAME} characters"),
        ("password", "p" * (MAX_PASSWORD + 1), f"At most {MAX_PASSWORD} characters."),
        ("password", 1234, "Expected text."),
        ("verify_tls", "yes", "Expected true or false."),
        ("verify_tls", 1, "Expected true or false."),
        ("ca_pem", "not a pem", "Not a PEM certificate bundle."),
        ("ca_pem", BROKEN_PEM, "Not a PEM certificate bundle."),
        ("pinned_sha256", "zz", "Expected a SHA-256 fingerprint (64 hex digits)."),
        ("pinned_sha256", "ab" * 31, "Expected a SHA-256 fingerprint (64 hex digits)."),
        ("sync_enabled", "sometimes", "Expected true or false."),
        ("sync_interval_minutes", 4, "Must be between 5 and 1440."),
        ("sync_interval_minutes", 1441, "Must be between 5 and 1440."),
    ],
)
def test_each_endpoint_field_is_refused_with_its_message(field, value, message):
    for source in ENDPOINT_FORMS:
        _, errors = _parse({**NEW, field: value}, source)
        assert message in errors[f"{source}.{field}"], errors
        assert set(errors) == {f"{source}.{field}"}, errors  # the other fields are fine


def test_endpoint_values_are_read_as_json_and_forms_send_them():
    values, errors = _parse(
        {
            "host": " 2001:db8::10 ",
            "port": " 8443 ",
            "username": " svc ",
            "password": "x",
            "verify_tls": "off",
            "ca_pem": "\n" + CA_PEM + "\n\n",
            "pinned_sha256": "SHA256:" + ":".join(["AB"] * 32),
            "sync_enabled": "1",
            "sync_interval_minutes": 30.0,
            "anything": "else",  # not an endpoint field: left out
        }
    )
    assert not errors
    assert values == {
        "host": "2001:db8::10",
        "port": 8443,
        "username": "svc",
        "verify_tls": False,
        "ca_pem": CA_PEM.strip() + "\n",
        "pinned_sha256": FINGERPRINT,
        "sync_enabled": True,
        "sync_interval_minutes": 30,
        "password": "x",
    }
    for host in ("::1", "10.0.0.1", "vcf-installer.corp.example.", "sddc_01"):
        assert _parse({**NEW, "host": host})[0]["host"] == host


def test_a_new_endpoint_takes_its_sources_defaults():
    manager, errors = _parse(NEW, "manager")
    assert not errors
    installer, errors = _parse({**NEW, "port": "", "verify_tls": None}, "installer")
    assert not errors
    for values in (manager, installer):
        assert values["port"] == 443 and values["verify_tls"] is True
        assert values["sync_interval_minutes"] == 60
        assert values["ca_pem"] is None and values["pinned_sha256"] is None
    assert manager["sync_enabled"] is True and installer["sync_enabled"] is False


def test_a_missing_field_keeps_the_stored_value():
    stored = _stored(port=8443, sync_enabled=False, sync_interval_minutes=30, ca_pem=CA_PEM)
    values, errors = _parse({"sync_interval_minutes": 45, "port": None}, existing=stored)
    assert not errors and "password" not in values  # none typed: the stored one stays
    assert values["port"] == 8443 and values["sync_enabled"] is False
    assert values["sync_interval_minutes"] == 45 and values["ca_pem"] == CA_PEM
    # Null on a field without a default is its value: no CA; no host is refused.
    values, errors = _parse({"ca_pem": None, "password": "x"}, existing=stored)
    assert not errors and values["ca_pem"] is None
    _, errors = _parse({"host": None}, existing=stored)
    assert errors["manager.host"] == "Enter a host name or IP address."


def test_the_password_rules():
    required = "Enter the service account's password."
    again = "Enter the password again: the host, port, account or TLS settings changed."
    assert _parse({**NEW, "password": ""})[1] == {"manager.password": required}
    assert _parse({**NEW, "password": None})[1] == {"manager.password": required}
    # An imported definition or a connection test may come without one.
    values, errors = _parse({**NEW, "password": ""}, password_required=False)
    assert not errors and "password" not in values
    stored = _stored()
    # The stored password stays with the destination it was saved for.
    assert _parse({"password": "", "sync_enabled": False}, existing=stored)[1] == {}
    for change in (
        {"host": "elsewhere.example.net"},
        {"port": 8443},
        {"username": "someone-else"},
        {"verify_tls": False},
        {"ca_pem": CA_PEM},
        {"pinned_sha256": FINGERPRINT},
    ):
        assert _parse(change, existing=stored)[1] == {"manager.password": again}, change
        values, errors = _parse({**change, "password": "typed"}, existing=stored)
        assert not errors and values["password"] == "typed"
    # A refused destination counts as changed; a refused password keeps its own message.
    _, errors = _parse({"host": "bad host/x"}, existing=stored)
    assert errors == {"manager.host": "Enter a host name or IP address.", "manager.password": again}
    _, errors = _parse({"host": "elsewhere.example.net", "password": 5}, existing=stored)
    assert errors == {"manager.password": "Expected text."}


def test_an_endpoint_is_an_object():
    assert _parse(["host"]) == (None, {"manager": "Expected an object."})


def test_the_api_describes_the_endpoint_form():
    assert issubclass(EndpointIn, EndpointForm)
    assert set(EndpointIn.model_fields) == set(EndpointForm.model_fields)
    assert set(ENDPOINT_FORMS) == set(SOURCES)  # a source added needs its form
    assert all(issubclass(form, EndpointForm) for form in ENDPOINT_FORMS.values())


@pytest.fixture
def env_id(app):
    with app.app_context():
        env, _ = save_environment(
            {
                "name": "sfo",
                "manager": {"host": "sddc.example.net", "username": "svc", "password": "x"},
            }
        )
        db.session.commit()
        return env.id


def apply(app, env_id, items) -> tuple[int, int]:
    """Store a fetch as a sync does, then read the endpoint's counts."""
    with app.app_context():
        sync.apply_fetch(env_id, "manager", items)
        db.session.commit()
    return stored_counts(app, env_id)


def stored_counts(app, env_id, source="manager") -> tuple[int, int]:
    with app.app_context():
        endpoint = db.session.scalar(
            select(Endpoint).where(Endpoint.environment_id == env_id, Endpoint.source == source)
        )
        return endpoint.credential_count, endpoint.absent_count


def test_counts_follow_syncs_absences_returns_and_purges(app, admin, env_id):
    assert stored_counts(app, env_id) == (0, 0)
    assert apply(app, env_id, fetched(30)) == (30, 0)
    assert apply(app, env_id, fetched(30, rotated=5)) == (30, 0)
    assert apply(app, env_id, fetched(22)) == (22, 8)  # 8 gone upstream
    assert apply(app, env_id, fetched(25)) == (25, 5)  # 3 of them back
    with app.app_context():
        absent = db.session.scalars(
            select(Credential.id).where(Credential.present.is_(False)).order_by(Credential.id)
        ).all()
    for cred_id in absent[:2]:
        assert admin.api("DELETE", f"/api/v1/credentials/{cred_id}").status_code == 204
    assert stored_counts(app, env_id) == (25, 3)
    status = admin.client.get(f"/api/v1/environments/{env_id}").json["status"]["manager"]
    assert (status["credential_count"], status["absent_count"]) == (25, 3)


def test_a_source_added_again_counts_the_credentials_it_kept(app, admin, env_id):
    apply(app, env_id, fetched(12))
    endpoint = {"host": "sddc.example.net", "username": "svc", "password": "x"}
    url = f"/api/v1/environments/{env_id}"
    removed = admin.api("PATCH", url, json={"manager": None, "installer": endpoint})
    assert removed.status_code == 200, removed.json
    assert admin.api("PATCH", url, json={"manager": endpoint}).status_code == 200
    assert stored_counts(app, env_id) == (12, 0)


def test_environment_list_never_queries_the_credentials_table(app, admin):
    with app.app_context():
        for index in range(5):
            env, _ = save_environment(
                {
                    "name": f"site-{index}",
                    "manager": {"host": "sddc.example.net", "username": "svc", "password": "x"},
                }
            )
            db.session.commit()
            sync.apply_fetch(env.id, "manager", fetched(10 + index))
            db.session.commit()
        engine = db.engine
    statements: list[str] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        response = admin.client.get("/api/v1/environments")
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    assert response.status_code == 200
    counts = [item["status"]["manager"]["credential_count"] for item in response.json["items"]]
    assert counts == [10, 11, 12, 13, 14]
    assert statements and not [s for s in statements if "credentials" in s.lower()]
    # One query for the environments and their endpoints each, not one per environment.
    assert len([s for s in statements if "FROM endpoints" in s]) == 1


def test_migration_fills_the_counts_of_existing_sources(app, env_id):
    apply(app, env_id, fetched(20))
    apply(app, env_id, fetched(14))
    cfg = alembic_config()
    with app.app_context(), db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0002")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
    with app.app_context():
        row = db.session.execute(
            text("SELECT credential_count, absent_count FROM endpoints WHERE environment_id = :id"),
            {"id": env_id},
        ).one()
    assert tuple(row) == (14, 6)


def test_migration_fills_the_counts_on_postgresql(tmp_path, pg_url):
    app = make_app(tmp_path, DATABASE_URL=pg_url)
    try:
        with app.app_context():
            env, _ = save_environment(
                {"name": "sfo", "manager": {"host": "h.example", "username": "u", "password": "x"}}
            )
            db.session.commit()
            env_id = env.id
        apply(app, env_id, fetched(9))
        apply(app, env_id, fetched(7))
        assert stored_counts(app, env_id) == (7, 2)
        cfg = alembic_config()
        with app.app_context(), db.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0002")
            command.upgrade(cfg, "head")
        assert stored_counts(app, env_id) == (7, 2)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
