"""The simulator's VCF Operations fleet management (VCF9-FLEET.md sections 2-3): both surfaces
from the installer spec's appliances, the version told by 404, tokens, paging, the password
update workflow, and its controls."""

from __future__ import annotations

import base64
import time

import pytest
import requests

from portal.simulator import Simulator

QUERY = "/suite-api/api/fleet-management/password-management/accounts/query"


@pytest.fixture(scope="module", params=["9.0", "9.1"])
def sim(request):
    with Simulator(
        credentials=30, seed=2, installer_version=request.param, control=True, task_delay=0.05
    ) as simulator:
        yield simulator


def _session(sim, tmp_path) -> requests.Session:
    ca = tmp_path / "ca.pem"
    ca.write_text(sim.ca_pem)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca)
    return session


@pytest.fixture
def http(sim, tmp_path):
    return _session(sim, tmp_path)


def _basic(sim, password=None) -> dict:
    pair = f"{sim.installer_username}:{password or sim.installer_password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def _fleet_token(sim, http) -> str:
    acquired = http.post(
        sim.url + "/suite-api/api/auth/token/acquire",
        json={
            "username": sim.installer_username,
            "password": sim.installer_password,
            "authSource": "localItem",
        },
    )
    assert acquired.status_code == 200, acquired.text
    ops = acquired.json()["token"]
    assert acquired.json()["validity"] > time.time() * 1000
    exchanged = http.post(
        sim.url + "/suite-api/api/auth/token/exchange",
        json={"serviceKeys": ["fleet-lcm"]},
        headers={"Authorization": f"OpsToken {ops}"},
    )
    assert exchanged.status_code == 200
    # the OpsToken alone is refused on the fleet paths
    refused = http.post(sim.url + QUERY, json={}, headers={"Authorization": f"OpsToken {ops}"})
    assert refused.status_code == 401 and refused.json()["message"]
    return exchanged.json()["token"]


def test_the_spec_s_management_appliances_with_the_spec_s_values(sim):
    spec = sim.installer_spec()
    accounts = {(a.fqdn, a.username): a for a in sim.fleet_accounts()}
    ops = spec["vcfOperationsSpec"]
    assert accounts[(ops["loadBalancerFqdn"], "admin")].password == ops["adminUserPassword"]
    for node in ops["nodes"]:
        assert accounts[(node["hostname"], "root")].password == node["rootUserPassword"]
    automation = spec["vcfAutomationSpec"]
    assert accounts[(automation["hostname"], "admin")].password == automation["adminUserPassword"]
    collector = spec["vcfOperationsCollectorSpec"]
    assert accounts[(collector["hostname"], "root")].appliance == "CLOUD_PROXY"
    if sim.fleet_version == "9.0":
        fleet = spec["vcfOperationsFleetManagementSpec"]
        assert accounts[(fleet["hostname"], "root")].password == fleet["rootUserPassword"]
        assert sim.fleet_root_password == fleet["rootUserPassword"]
    else:
        vsp = spec["vspClusterSpec"]
        runtime = accounts[(vsp["platformFqdn"], "vmware-system-user")]
        assert runtime.appliance == "VCF_SERVICES_RUNTIME"


def test_the_locker_lists_masked_values_and_decrypts_one(sim, http):
    assert http.get(sim.url + "/lcm/locker/api/passwords").status_code == 401
    wrong = http.get(sim.url + "/lcm/locker/api/passwords", headers=_basic(sim, "nope"))
    assert wrong.status_code == 401
    page = http.get(
        sim.url + "/lcm/locker/api/passwords", params={"from": 1, "size": 2}, headers=_basic(sim)
    ).json()
    accounts = sim.fleet_accounts()
    assert page["total"] == len(accounts) and len(page["passwords"]) == 2
    entry = page["passwords"][0]
    assert entry["vmid"] == accounts[1].vmid and entry["password"] == "PASSWORD****"
    assert entry["alias"] == f"{accounts[1].fqdn} {accounts[1].username}"
    path = f"{sim.url}/lcm/locker/api/v2/passwords/{entry['vmid']}/decrypted"
    refused = http.post(path, json={"rootPassword": "wrong"}, headers=_basic(sim))
    assert refused.status_code == 400 and "not valid" in refused.json()["message"]
    shown = http.post(path, json={"rootPassword": sim.fleet_root_password}, headers=_basic(sim))
    assert shown.json()["password"] == accounts[1].password
    unknown = http.post(
        f"{sim.url}/lcm/locker/api/v2/passwords/nope/decrypted",
        json={"rootPassword": sim.fleet_root_password},
        headers=_basic(sim),
    )
    assert unknown.status_code == 404
    bad = http.get(sim.url + "/lcm/locker/api/passwords", params={"size": 0}, headers=_basic(sim))
    assert bad.status_code == 400


def test_password_management_only_on_9_1(sim, http):
    acquired = http.post(
        sim.url + "/suite-api/api/auth/token/acquire",
        json={"username": sim.installer_username, "password": sim.installer_password},
    )
    if sim.fleet_version == "9.0":
        assert acquired.status_code == 404
        return
    token = _fleet_token(sim, http)
    headers = {"Authorization": f"Bearer {token}"}
    first = http.post(sim.url + QUERY, params={"page": 0, "pageSize": 3}, json={}, headers=headers)
    body = first.json()
    assert body["pageInfo"]["totalCount"] == len(sim.fleet_accounts())
    assert len(body["vcfPasswordAccounts"]) == 3
    account = body["vcfPasswordAccounts"][0]
    for field in (
        "accountType",
        "appliance",
        "applianceFqdn",
        "credentialType",
        "expiryDate",
        "passwordAccountKey",
        "passwordAlias",
        "status",
        "userName",
    ):
        assert field in account
    assert "password" not in account
    only = http.post(sim.url + QUERY, json={"appliance": "VCF_AUTOMATION"}, headers=headers).json()[
        "vcfPasswordAccounts"
    ]
    assert [a["appliance"] for a in only] == ["VCF_AUTOMATION"]


@pytest.fixture
def sim91():
    with Simulator(credentials=30, seed=2, installer_version="9.1", task_delay=5) as simulator:
        yield simulator


def test_an_update_is_a_workflow_that_changes_the_value(sim91, tmp_path):
    sim, http = sim91, _session(sim91, tmp_path)
    headers = {"Authorization": f"Bearer {_fleet_token(sim, http)}"}
    account = sim.fleet_accounts()[2]
    url = f"{sim.url}/suite-api/api/fleet-management/password-management/accounts/{account.key}"
    wrong = http.put(
        url + "/password",
        json={"currentPassword": "x", "newPassword": "Fresh-Pw-123!"},
        headers=headers,
    )
    assert wrong.status_code == 400
    started = http.put(
        url + "/password",
        json={"currentPassword": account.password, "newPassword": "Fresh-Pw-123!"},
        headers=headers,
    )
    assert started.status_code == 202
    request_id = started.json()["requestId"]
    poll = f"{sim.url}/suite-api/api/workflows/requests/{request_id}"
    assert http.get(poll, headers=headers).json()["status"] == "IN_PROGRESS"
    assert {a.key: a.password for a in sim.fleet_accounts()}[account.key] == account.password
    sim.settle_tasks()
    assert http.get(poll, headers=headers).json()["status"] == "COMPLETED"
    assert {a.key: a.password for a in sim.fleet_accounts()}[account.key] == "Fresh-Pw-123!"


def test_the_controls(sim, http):
    before = {a.key: a.password for a in sim.fleet_accounts()}
    rotated = http.post(sim.url + "/_sim/control", json={"action": "fleet_rotate", "count": 2})
    assert rotated.json() == {"rotated": 2}
    after = {a.key: a.password for a in sim.fleet_accounts()}
    assert sum(before[k] != after[k] for k in before) == 2
    old_root = sim.fleet_root_password
    changed = http.post(
        sim.url + "/_sim/control", json={"action": "fleet_root_password", "password": "R00t-new!"}
    )
    assert changed.status_code == 200 and sim.fleet_root_password == "R00t-new!"
    empty = http.post(
        sim.url + "/_sim/control", json={"action": "fleet_root_password", "password": ""}
    )
    assert empty.status_code == 400
    sim.fleet_root_password = old_root
    stats = http.get(sim.url + "/_sim/stats").json()
    assert stats["fleet_version"] == sim.fleet_version
    assert stats["fleet_accounts"] == len(after)


def test_injected_failures_reach_the_fleet_paths(sim, http):
    sim.inject_failure("500", count=1, path_prefix="/lcm/")
    failed = http.get(sim.url + "/lcm/locker/api/passwords", headers=_basic(sim))
    assert failed.status_code == 500 and failed.json()["referenceToken"]
    assert http.get(sim.url + "/lcm/locker/api/passwords", headers=_basic(sim)).ok
