"""The "needs attention" list against the simulator over HTTPS: SDDC Manager's connectivity
errors (9.1 connectivityErrorDetails) stored by the expiry check, expired and unknown expiry,
the installer's stale copy; each finding announced once; scoped to the caller's environments;
the page, the dashboard link and the metric."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select
from support import PASSWORD, create_env, run_sync

from portal.alerts import attention
from portal.alerts.metrics import exposition
from portal.lifecycle import expiry_checks
from portal.models import (
    AttentionFinding,
    Credential,
    Endpoint,
    EnvironmentGrant,
    NotificationOutbox,
    User,
)
from portal.platform.extensions import db
from portal.platform.security import hash_password
from portal.simulator import Simulator
from portal.simulator.lifecycle import REMEDIATION_MESSAGE
from portal.sync.store import apply_fetch
from portal.vcf import FetchedCredential

KIND = "credential.needs_attention"


@pytest.fixture
def lab(app, admin):
    with Simulator(credentials=60, seed=21, task_delay=0.05) as sim:
        env = create_env(admin, sim)
        run_sync(app, admin, env["id"])
        yield sim, env


def _check(app, env_id: int) -> None:
    with app.app_context():
        endpoint = db.session.scalar(
            select(Endpoint).where(Endpoint.environment_id == env_id, Endpoint.source == "manager")
        )
        expiry_checks.check(endpoint, sleep=lambda _: time.sleep(0.05))
        db.session.remove()


def _announced(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(
            select(NotificationOutbox)
            .where(NotificationOutbox.kind == KIND)
            .order_by(NotificationOutbox.id)
        ).all()
        return [{"subject": r.subject, "body": r.body, **json.loads(r.details)} for r in rows]


def _clear_outbox(app) -> None:
    with app.app_context():
        db.session.execute(NotificationOutbox.__table__.delete())
        db.session.commit()


def _list(portal, **query) -> dict:
    answer = portal.api("GET", "/api/v1/attention", query_string={"per_page": 500, **query})
    assert answer.status_code == 200, answer.json
    return answer.json


def test_an_account_sddc_manager_cannot_reach_is_listed_with_its_remedy_and_announced_once(
    app, admin, lab
):
    sim, env = lab
    host = "sfo-m01-hcx01.sfo.rainpole.io"  # SDDC Manager 9.1's HCX_MANAGER
    sim.inject_credential_fault(host, "fail", "EXPIRATION", message="Unable to connect to HCX")
    _clear_outbox(app)
    _check(app, env["id"])
    with app.app_context():
        stored = db.session.scalars(select(Credential).where(Credential.hostname == host)).all()
        assert {c.resource_type for c in stored} == {"HCX_MANAGER"} and len(stored) == 2
        assert all(c.connectivity_status == "ERROR" for c in stored)
        assert all(c.connectivity_error == "Unable to connect to HCX" for c in stored)
        assert all(c.connectivity_remediation == REMEDIATION_MESSAGE for c in stored)
        others = db.session.scalars(select(Credential).where(Credential.hostname != host)).all()
        assert {c.connectivity_status for c in others} == {"ACTIVE"}

    listed = _list(admin, kind="connectivity")
    assert sorted(i["username"] for i in listed["items"]) == ["admin", "root"]
    item = listed["items"][0]
    assert item["hostname"] == host and item["source"] == "manager"
    assert item["message"] == "Unable to connect to HCX"
    assert item["remediation_message"] == REMEDIATION_MESSAGE
    assert item["actions"] == ["remediate", "rotate"]
    assert "Remediate" in item["what_to_do"] and item["announced_at"]

    [alert] = _announced(app)
    assert alert["environment"] == "sfo" and alert["kinds"]["connectivity"] == 2
    connectivity = [f for f in alert["findings"] if f["kind"] == "connectivity"]
    assert sorted(f["username"] for f in connectivity) == ["admin", "root"]
    assert "Unable to connect to HCX" in alert["body"] and REMEDIATION_MESSAGE in alert["body"]

    # The same findings again: not announced twice.
    sim.inject_credential_fault(host, "fail", "EXPIRATION", message="Unable to connect to HCX")
    _check(app, env["id"])
    run_sync(app, admin, env["id"])
    assert len(_announced(app)) == 1

    # Fixed: gone from the list and forgotten; broken again: announced again.
    sim.clear_failures()
    _check(app, env["id"])
    assert _list(admin, kind="connectivity")["total"] == 0
    with app.app_context():
        assert not db.session.scalars(
            select(AttentionFinding).where(AttentionFinding.kind == "connectivity")
        ).all()
    sim.inject_credential_fault(host, "fail", "EXPIRATION", message="Unable to connect to HCX")
    _check(app, env["id"])
    # (Reachable again, it showed an expired password of its own: announced as such.)
    again = [a["kinds"] for a in _announced(app) if "connectivity" in a["kinds"]]
    assert len(again) == 2 and again[1] == {"connectivity": 2}


def test_expired_and_unknown_passwords_are_listed_and_announced(app, admin, lab):
    sim, env = lab
    _clear_outbox(app)  # the sync announced what it read; the check changes it
    _check(app, env["id"])
    with app.app_context():
        expired = set(
            db.session.scalars(select(Credential.id).where(Credential.expiry_status == "EXPIRED"))
        )
        some = db.session.scalars(
            select(Credential).where(Credential.expiry_status == "ACTIVE").order_by(Credential.id)
        ).first()
        some.expiry_status = "UNKNOWN"
        unknown_id = some.id
        attention.review(env["id"])
        db.session.commit()
    assert expired, "the simulator reports some passwords expired"
    listed = _list(admin)
    by_kind: dict[str, set[int]] = {}
    for item in listed["items"]:
        by_kind.setdefault(item["kind"], set()).add(item["credential_id"])
    assert by_kind["expired"] == expired
    assert by_kind["expiry_unknown"] == {unknown_id}
    assert listed["by_kind"]["expired"] == len(expired)
    item = next(i for i in listed["items"] if i["kind"] == "expired")
    assert item["actions"] == ["rotate", "update"] and "Rotate" in item["what_to_do"]
    item = next(i for i in listed["items"] if i["kind"] == "expiry_unknown")
    assert item["actions"] == ["expiry_check"]
    announced: dict[str, set[str]] = {}
    for alert in _announced(app):
        for finding in alert["findings"]:
            announced.setdefault(finding["kind"], set()).add(
                f"{finding['hostname']}/{finding['username']}"
            )
    with app.app_context():
        names = {
            f"{c.hostname}/{c.username}"
            for c in db.session.scalars(select(Credential).where(Credential.id.in_(expired)))
        }
    assert names <= announced["expired"]
    assert len(announced["expiry_unknown"]) == 1


def test_the_list_is_scoped_to_the_callers_environments(app, admin, lab):
    sim, env = lab
    with Simulator(credentials=30, seed=4) as other_sim:
        other = create_env(admin, other_sim, name="lon")
        run_sync(app, admin, other["id"])
    with app.app_context():
        db.session.execute(
            Credential.__table__.update().values(expiry_status="EXPIRED", expiry_date=None)
        )
        dave = User(username="dave", role="member", password_hash=hash_password(PASSWORD))
        db.session.add(dave)
        db.session.flush()
        db.session.add(EnvironmentGrant(user_id=dave.id, environment_id=env["id"], level="view"))
        db.session.commit()
    from support import Portal, client_for

    member = Portal(client_for(app))
    assert member.login("dave").status_code == 302
    seen = _list(member)
    assert seen["total"] == 60 and {i["environment"] for i in seen["items"]} == {"sfo"}
    assert all(i["actions"] == [] for i in seen["items"])  # view only: nothing to start
    assert member.api("GET", f"/api/v1/attention?environment_id={other['id']}").status_code == 404
    everything = _list(admin)
    assert everything["total"] == 90
    assert {i["environment"] for i in everything["items"]} == {"sfo", "lon"}
    page = member.client.get("/attention")
    assert page.status_code == 200 and b"lon" not in page.data
    assert member.client.get(f"/attention?environment_id={other['id']}").status_code == 404
    assert member.client.get("/attention?kind=nonsense").status_code == 400


def _fetched(source: str, host: str, username: str, password: str) -> FetchedCredential:
    return FetchedCredential(
        source=source,
        hostname=host,
        username=username,
        password=password,
        credential_type="SSH",
        account_type="USER",
        resource_type="VCF_OPERATIONS",
    )


def test_the_installer_copy_that_fleet_management_holds_with_another_password_is_stale(app, admin):
    with Simulator(credentials=10, seed=3) as sim:
        env = create_env(admin, sim)
    host = "sfo-vcfops01a.sfo.rainpole.io"
    with app.app_context():
        apply_fetch(
            env["id"],
            "installer",
            [
                _fetched("installer", host, "root", "Bring-up-Value-1!"),
                _fetched("installer", "sfo-opsc01.sfo.rainpole.io", "root", "Same-Value-22!"),
            ],
        )
        apply_fetch(
            env["id"],
            "fleet",
            [
                _fetched("fleet", host.upper(), "root", "Rotated-Value-3!"),
                _fetched("fleet", "sfo-opsc01.sfo.rainpole.io", "root", "Same-Value-22!"),
            ],
        )
        db.session.commit()
        assert attention.review(env["id"]) == 1
        db.session.commit()
    [item] = _list(admin)["items"]
    assert (item["kind"], item["source"], item["hostname"]) == ("stale_spec", "installer", host)
    assert item["current_source"] == "fleet" and "fleet management" in item["what_to_do"]
    [alert] = _announced(app)
    assert alert["kinds"] == {"stale_spec": 1}
    for text in ("Bring-up-Value-1!", "Rotated-Value-3!", "Same-Value-22!"):
        assert text not in json.dumps(alert) and text not in json.dumps(item)


def test_the_page_the_dashboard_link_and_the_metric(app, admin, lab):
    sim, env = lab
    host = "sfo-vsp01.sfo.rainpole.io"  # SDDC Manager 9.1's VSP
    sim.inject_credential_fault(host, "fail", "EXPIRATION", message="<b>VSP down</b>")
    _check(app, env["id"])
    total = _list(admin)["total"]
    dashboard = admin.client.get("/").get_data(as_text=True)
    assert f"Needs attention ({total})" in dashboard and 'href="/attention"' in dashboard
    page = admin.client.get("/attention?kind=connectivity").get_data(as_text=True)
    assert "&lt;b&gt;VSP down&lt;/b&gt;" in page and "<b>VSP down" not in page
    assert REMEDIATION_MESSAGE.replace("'", "&#39;") in page
    assert "VCF services platform cluster (VSP)" in page
    assert "act=remediate" in page and f"/environments/{env['id']}?" in page
    with app.app_context():
        metrics = exposition().decode()
    assert (
        'vcf_portal_accounts_needing_attention{environment="sfo",reason="connectivity"} 2.0'
        in metrics
    )


def test_the_simulator_serves_the_91_types_and_their_expiry(app, admin, lab):
    sim, env = lab
    _check(app, env["id"])
    with app.app_context():
        rows = db.session.execute(
            select(Credential.resource_type, Credential.username, Credential.expiry_date).where(
                Credential.resource_type.in_(("HCX_MANAGER", "VSP"))
            )
        ).all()
    assert sorted((r[0], r[1]) for r in rows) == [
        ("HCX_MANAGER", "admin"),
        ("HCX_MANAGER", "root"),
        ("VSP", "admin@vsp.local"),
        ("VSP", "vmware-system-user"),
    ]
    assert all(r[2] for r in rows)  # the expiry check takes both types
    listed = admin.api(
        "GET", f"/api/v1/environments/{env['id']}/credentials?resource_type=VSP"
    ).json
    assert listed["total"] == 2


def test_the_counts_match_the_list(app, admin, lab):
    sim, env = lab
    sim.inject_credential_fault(
        "sfo-m01-hcx01.sfo.rainpole.io", "fail", "EXPIRATION", message="down"
    )
    _check(app, env["id"])
    with app.app_context():
        some = db.session.scalars(
            select(Credential).where(Credential.expiry_status == "ACTIVE").order_by(Credential.id)
        ).first()
        some.expiry_status = "unknown"  # any case, as a source may write it
        db.session.commit()
        counted = attention.counts()
        listed: dict[str, int] = dict.fromkeys(attention.KINDS, 0)
        for finding in attention.findings():
            listed[finding.kind] += 1
    assert counted == {env["id"]: listed}
    assert listed["connectivity"] == 2 and listed["expiry_unknown"] >= 1 and listed["expired"]
