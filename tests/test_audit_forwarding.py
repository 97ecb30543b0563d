"""Forwarding the audit records off the VM: to a real rsyslogd over RFC 5425 (TLS, its own
CA) and plain TCP, and to an HTTPS receiver as JSON lines and Splunk HEC events; a receiver
killed midway loses nothing; destinations through the API; no secret in any record."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta

import pytest
from receivers import certificates, rsyslog_receiver, webhook_receiver
from sqlalchemy import func, select
from support import make_app

from portal import audit
from portal.audit import chain, checkpoints, forwarding
from portal.models import AuditDestination, AuditEvent, NotificationOutbox
from portal.ops import audit_integrity
from portal.platform import clock
from portal.platform.extensions import db

HEC_TOKEN = "hec-token-0f3c9a7e-5d1b-4c2a-9e8f-canary"  # noqa: S105 - test fixture
BEARER = "bearer-token-for-the-json-receiver-canary"  # noqa: S105 - test fixture
SYSLOG_LINE = re.compile(
    r"^<(?P<pri>\d+)>1 (?P<at>\S+) (?P<host>\S+) vcf-portal - (?P<msgid>\S+) "
    r"\[vcfportal@32473 (?P<sd>(?:[^\]\\]|\\.)*)\] (?P<json>\{.*\})$"
)


def _write(app, count: int, action: str = "test.forwarded") -> None:
    with app.app_context():
        for n in range(count):
            audit.record(action, target=f"esx-{n}", details={"n": n})
        db.session.commit()


def _add(admin, **body) -> int:
    answer = admin.api("POST", "/api/v1/settings/audit-forwarding/destinations", json=body)
    assert answer.status_code == 201, answer.json
    return answer.json["id"]


def _sealed_ids(app) -> list[int]:
    with app.app_context():
        chain.seal()
        return list(
            db.session.scalars(
                select(AuditEvent.id).where(AuditEvent.seq.is_not(None)).order_by(AuditEvent.seq)
            )
        )


def _forward(app) -> None:
    audit_integrity.seal_pass(app)
    audit_integrity.forward_pass(app)


def _received_ids(lines: list[str]) -> list[int]:
    ids = []
    for line in lines:
        match = SYSLOG_LINE.match(line)
        assert match is not None, line
        doc = json.loads(match["json"])
        if doc["type"] == "audit":
            ids.append(doc["id"])
    return ids


@pytest.mark.slow  # starts rsyslogd
def test_syslog_over_tls_to_rsyslog_in_order_then_the_checkpoint(app, admin, tmp_path):
    with rsyslog_receiver(tmp_path) as receiver:
        destination = _add(
            admin, kind="syslog-tls", address=receiver.address, ca_pem=certificates().ca_pem
        )
        _write(app, 40)
        with app.app_context():
            audit.record("test.forwarded", target="vcenter.zürich.example", actor="josé")
            db.session.add(AuditEvent(actor="x", action="x", target="x", outcome="success"))
            db.session.commit()  # a forged record: never sealed, never forwarded
        _forward(app)
        with app.app_context():
            checkpoints.make()
        _forward(app)
        expected = _sealed_ids(app)
        deadline = time.monotonic() + 10
        while len(receiver.lines()) < len(expected) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = receiver.lines()
    assert _received_ids(lines) == expected
    first = SYSLOG_LINE.match(lines[0])
    assert first is not None and int(first["pri"]) in (13 * 8 + 4, 13 * 8 + 5)
    forwarded = [json.loads(SYSLOG_LINE.match(line)["json"]) for line in lines]  # type: ignore[index]
    record = next(doc for doc in forwarded if doc.get("action") == "test.forwarded")
    assert set(record) == {
        "type", "portal", "id", "seq", "at", "actor", "ip", "action", "target", "outcome",
        "details", "mac", "chain",
    }  # fmt: skip
    assert f'target="{record["target"]}"' in next(
        line for line in lines if f'id="{record["id"]}"' in line
    )
    assert forwarded[-1]["type"] == "checkpoint" and forwarded[-1]["signature"]
    assert any(doc.get("actor") == "josé" for doc in forwarded)  # UTF-8 (RFC 5424)
    listed = admin.api("GET", "/api/v1/settings/audit-forwarding/destinations").json["items"]
    assert [(d["id"], d["backlog"], d["last_error"]) for d in listed] == [(destination, 0, None)]


@pytest.mark.slow  # starts rsyslogd, kills it and starts it again
def test_a_receiver_killed_midway_loses_nothing(app, admin, tmp_path, monkeypatch):
    monkeypatch.setattr(forwarding, "BATCH", 400)
    with rsyslog_receiver(tmp_path, tls=False) as receiver:
        app.config["PORTAL_SETTINGS"] = _with_plaintext(app)
        _add(admin, kind="syslog-tcp", address=receiver.address)
        _write(app, 3000)
        expected = _sealed_ids(app)
        worker = threading.Thread(target=_forward, args=(app,))
        worker.start()
        deadline = time.monotonic() + 20
        while len(receiver.lines()) < 500 and time.monotonic() < deadline:
            time.sleep(0.005)
        receiver.kill()  # in the middle of the stream
        worker.join()
        with app.app_context():
            stopped = db.session.scalar(select(AuditDestination))
            assert stopped is not None and stopped.last_error is not None
            assert 0 < stopped.sent_seq < len(expected)
        _forward(app)  # the receiver is down: nothing moves, nothing is lost
        receiver.start()
        _forward(app)
        deadline = time.monotonic() + 10
        while set(_received_ids(receiver.lines())) != set(expected):
            assert time.monotonic() < deadline, "records were lost"
            time.sleep(0.05)
        received = _received_ids(receiver.lines())
    # Every record arrived; a batch cut off midway came again whole (at least once), and the
    # first arrival of each record is in chain order.
    first_seen = list(dict.fromkeys(received))
    assert first_seen == expected
    assert len(received) - len(expected) <= 2 * forwarding.BATCH


def _with_plaintext(app):
    from dataclasses import replace

    return replace(app.config["PORTAL_SETTINGS"], audit_forward_plaintext=True)


def test_json_lines_and_splunk_hec_over_https_catch_up_after_failures(app, admin, tmp_path):
    with webhook_receiver(tmp_path, secret=None) as receiver:
        ca = certificates().ca_pem
        json_id = _add(
            admin, kind="https-json", address=f"{receiver.url}/json", ca_pem=ca, token=BEARER
        )
        hec_id = _add(
            admin,
            kind="splunk-hec",
            address=f"https://127.0.0.1:{receiver.port}/services/collector/event",
            ca_pem=ca,
            token=HEC_TOKEN,
        )
        _write(app, 25)
        receiver.fail_next = 2  # both destinations fail once
        _forward(app)
        listed = {
            d["id"]: d
            for d in admin.api("GET", "/api/v1/settings/audit-forwarding/destinations").json[
                "items"
            ]
        }
        assert listed[json_id]["last_error"].endswith("answered HTTP 500")
        assert listed[json_id]["backlog"] > 0 and listed[hec_id]["backlog"] > 0
        assert HEC_TOKEN not in json.dumps(listed) and BEARER not in json.dumps(listed)
        _forward(app)
        expected = _sealed_ids(app)
        by_path: dict[str, list[dict]] = {}
        for request in receiver.requests:
            by_path.setdefault(request["path"], []).append(request)
    json_requests = [r for path, rs in by_path.items() if path.endswith("/json") for r in rs]
    assert all(r["headers"]["Authorization"] == f"Bearer {BEARER}" for r in json_requests)
    lines = [json.loads(line) for r in json_requests for line in r["body"].splitlines()]
    assert [doc["id"] for doc in lines if doc["type"] == "audit"] == expected
    hec = by_path["/services/collector/event"]
    assert all(r["headers"]["Authorization"] == f"Splunk {HEC_TOKEN}" for r in hec)
    events = [json.loads(line) for r in hec for line in r["body"].splitlines()]
    assert [e["event"]["id"] for e in events] == expected
    assert all(e["sourcetype"] == "vcf:portal:audit" and e["time"] > 0 for e in events)


def test_destinations_through_the_api_are_checked_audited_and_removed(app, admin, readonly):
    url = "/api/v1/settings/audit-forwarding/destinations"
    refused = {
        "bad address": {"kind": "syslog-tls", "address": "syslog.example.net"},
        "bad port": {"kind": "syslog-tls", "address": "syslog.example.net:70000"},
        "not https": {"kind": "https-json", "address": "http://siem.example.net/in"},
        "no token": {"kind": "splunk-hec", "address": "https://splunk.example.net:8088/e"},
        "token on syslog": {"kind": "syslog-tls", "address": "a.example:6514", "token": "t"},
        "bad CA": {"kind": "syslog-tls", "address": "a.example:6514", "ca_pem": "nope"},
        "plaintext off": {"kind": "syslog-udp", "address": "a.example:514"},
        "unknown kind": {"kind": "ftp", "address": "a.example:21"},
    }
    for why, body in refused.items():
        answer = admin.api("POST", url, json=body)
        assert answer.status_code == 422, (why, answer.json)
    assert "PORTAL_AUDIT_FORWARD_PLAINTEXT" in str(
        admin.api("POST", url, json=refused["plaintext off"]).json
    )
    assert readonly.api("POST", url, json={"kind": "syslog-tls"}).status_code == 403
    made = _add(admin, kind="splunk-hec", address="https://[::1]:8088/e", token=HEC_TOKEN)
    assert admin.api("GET", url).json["items"][0]["has_token"] is True
    assert admin.api("DELETE", f"{url}/{made}").status_code == 204
    assert admin.api("DELETE", f"{url}/{made}").status_code == 404
    with app.app_context():
        changes = db.session.scalars(
            select(AuditEvent.details).where(AuditEvent.action == "settings.audit_forwarding")
        ).all()
        assert len(changes) == 2 and all(HEC_TOKEN not in (c or "") for c in changes)


def test_a_destination_behind_for_long_is_alerted_once(app, admin):
    _add(admin, kind="https-json", address="https://127.0.0.1:9/nothing-listens")
    _write(app, 3)
    _forward(app)
    clock.offset = timedelta(minutes=16)
    _forward(app)
    _forward(app)
    with app.app_context():
        kinds = db.session.scalars(
            select(NotificationOutbox.kind).where(
                NotificationOutbox.kind == audit_integrity.BEHIND_KIND
            )
        ).all()
        assert len(kinds) == 1
        destination = db.session.scalar(select(AuditDestination))
        assert destination is not None and "cannot connect" in (destination.last_error or "")


def test_forwarded_records_hold_no_secret(app, admin, synced, anon, tmp_path):
    """The canary: after sign-ins, a sync, reveals, copies, an export, a token and failures,
    no stored password, no typed password and no token appears in anything forwarded."""
    _, env = synced
    credential = admin.api("GET", f"/api/v1/credentials?environment_id={env['id']}").json["items"][
        0
    ]
    for purpose in ("reveal", "copy"):
        admin.api(
            "POST", f"/api/v1/credentials/{credential['id']}/password", json={"purpose": purpose}
        )
    admin.client.get("/export?format=csv&include_passwords=1")
    typed = "Typed-Wrong-Password-canary-9"
    anon.login("alice", typed)
    token = admin.api("POST", "/api/v1/me/tokens", json={"name": "ci", "scope": "read"}).json
    with webhook_receiver(tmp_path, secret=None) as receiver:
        address = f"https://127.0.0.1:{receiver.port}/audit"
        _add(admin, kind="https-json", address=address, ca_pem=certificates().ca_pem)
        _forward(app)
        bodies = b"".join(r["body"] for r in receiver.requests).decode()
    with app.app_context():
        from test_notifications import _every_secret

        secrets = [*_every_secret(app), typed, token.get("token", "vcfp_none")]
        actions = set(db.session.scalars(select(AuditEvent.action)))
        count = db.session.scalar(select(func.count()).select_from(AuditEvent))
    assert len(actions) >= 6 and bodies.count('"type":"audit"') == count
    assert [secret for secret in secrets if secret in bodies] == []


def test_a_new_destination_starts_after_what_was_archived(tmp_path):
    app = make_app(tmp_path)
    with app.app_context():
        from portal.models import PortalMeta

        db.session.add(PortalMeta(key=chain.ANCHOR_META, value="7:abc"))
        db.session.commit()
        made = forwarding.add(
            forwarding.DestinationIn(kind="https-json", address="https://127.0.0.1:9/x"), "t"
        )
        assert made.sent_seq == 7


def test_the_settings_page_adds_shows_and_removes_destinations(app, admin):
    page = admin.client.get("/settings/audit-forwarding")
    assert page.status_code == 200 and "No destination yet" in page.get_data(as_text=True)
    refused = admin.post(
        "/settings/audit-forwarding", {"kind": "syslog-tls", "address": "no-port.example"}
    )
    text = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "address: Enter host:port" in text
    assert 'value="no-port.example"' in text  # what was typed stays
    added = admin.post(
        "/settings/audit-forwarding",
        {"kind": "splunk-hec", "address": "https://splunk.example.net:8088/e", "token": HEC_TOKEN},
    )
    assert added.status_code == 302
    listing = admin.client.get("/settings/audit-forwarding").get_data(as_text=True)
    assert "https://splunk.example.net:8088/e" in listing and HEC_TOKEN not in listing
    with app.app_context():
        made = db.session.scalar(select(AuditDestination))
        assert made is not None and made.token_enc is not None
        assert HEC_TOKEN.encode() not in made.token_enc
        made_id = made.id
    removed = admin.post(f"/settings/audit-forwarding/{made_id}/delete")
    assert removed.status_code == 302
    assert admin.post(f"/settings/audit-forwarding/{made_id}/delete").status_code == 404
