"""The simulator keeps the contract of CONTRACT.md section 6 and its controls work."""

from __future__ import annotations

import base64
import json
import os
import re
import string
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from portal.simulator import Simulator
from portal.simulator.inventory import HOSTILE_STRINGS
from portal.vcf import fetch_certificate_sha256, normalize_fingerprint
from portal.vcf.tls import EndpointTlsAdapter

REPO = Path(__file__).resolve().parents[2]
UNAUTHORIZED = {
    "errorCode": "Unauthorized",
    "message": "Authorization Header is missing or not in correct format",
}


def _session(sim: Simulator, tmp_path: Path) -> requests.Session:
    ca = tmp_path / "sim-ca.pem"
    ca.write_text(sim.ca_pem, encoding="ascii")
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify
    session.verify = str(ca)
    return session


@pytest.fixture(scope="module")
def sim():
    """A read-mostly simulator; tests that change data use their own."""
    with Simulator(credentials=2000, seed=5, control=True) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def http(sim, tmp_path_factory):
    """A session that trusts the module simulator's CA."""
    session = _session(sim, tmp_path_factory.mktemp("ca"))
    yield session
    session.close()


@pytest.fixture(autouse=True)
def _clean(request):
    """No failure or quirk leaks from one test into the next."""
    if "sim" in request.fixturenames:
        simulator = request.getfixturevalue("sim")
        simulator.clear_failures()
        simulator.set_quirks()
        simulator.reset_hits()


def login(sim, http, username=None, password=None) -> requests.Response:
    """POST /v1/tokens."""
    return http.post(
        f"{sim.url}/v1/tokens",
        json={
            "username": username or sim.admin_username,
            "password": password or sim.admin_password,
        },
    )


def bearer(token: str) -> dict[str, str]:
    """Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def admin(sim, http):
    """Authorization header of an admin session."""
    return bearer(login(sim, http).json()["accessToken"])


def claims(token: str) -> dict:
    """Decode a JWT payload without verifying it."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- tokens ------------------------------------------------------------------------------


def test_token_pair_is_a_decodable_jwt(sim, http):
    response = login(sim, http)
    assert response.status_code == 200
    pair = response.json()
    uuid.UUID(pair["refreshToken"]["id"])
    header = json.loads(base64.urlsafe_b64decode(pair["accessToken"].split(".")[0] + "=="))
    assert header["alg"] == "HS256"
    body = claims(pair["accessToken"])
    assert body["exp"] - body["iat"] == 3600
    assert body["sub"] == sim.admin_username and body["iss"] == "vcf-auth"
    assert "CREDENTIAL_READ" in body["scope"]


def test_token_status_201_and_lifetime_options(tmp_path):
    with Simulator(credentials=1, token_status=201, token_lifetime=90) as other:
        response = login(other, _session(other, tmp_path))
    assert response.status_code == 201
    body = claims(response.json()["accessToken"])
    assert body["exp"] - body["iat"] == 90


def test_login_failures(sim, http):
    response = login(sim, http, password="wrong")
    assert response.status_code == 401
    assert response.json()["errorCode"] and "wrong" not in response.text
    assert login(sim, http, username="nobody@vsphere.local").status_code == 401
    for body in (b"{not json", b'"just a string"', b'{"username": "x"}'):
        response = http.post(f"{sim.url}/v1/tokens", data=body)
        assert response.status_code == 400 and response.json()["message"]


@pytest.mark.parametrize("quoted", [True, False])
def test_refresh_accepts_raw_and_quoted_ids(sim, http, quoted):
    refresh_id = login(sim, http).json()["refreshToken"]["id"]
    data = json.dumps(refresh_id) if quoted else refresh_id
    response = http.patch(
        f"{sim.url}/v1/tokens/access-token/refresh",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    token = response.json()
    assert isinstance(token, str) and response.text.startswith('"')
    check = http.get(
        f"{sim.url}/v1/credentials/{sim.credentials_snapshot()[0]['id']}", headers=bearer(token)
    )
    assert check.status_code == 200


def test_refresh_unknown_and_revoked(sim, http):
    url = f"{sim.url}/v1/tokens/access-token/refresh"
    assert http.patch(url, data=json.dumps(str(uuid.uuid4()))).status_code == 404
    refresh_id = login(sim, http).json()["refreshToken"]["id"]
    response = http.delete(f"{sim.url}/v1/tokens/refresh-token", data=json.dumps(refresh_id))
    assert response.status_code == 204 and response.content == b""
    assert http.patch(url, data=refresh_id).status_code == 404


def test_refresh_ids_expire(tmp_path):
    with Simulator(credentials=1, refresh_lifetime=0.1) as other:
        http = _session(other, tmp_path)
        refresh_id = login(other, http).json()["refreshToken"]["id"]
        time.sleep(0.2)
        response = http.patch(f"{other.url}/v1/tokens/access-token/refresh", data=refresh_id)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer not-a-jwt", "Bearer a.b.c", "Basic YWRtaW46YWRtaW4="],
)
def test_bearer_required(sim, http, header):
    headers = {"Authorization": header} if header else {}
    for path in ("/v1/credentials", "/v1/sddcs", "/v1/sddcs/latest"):
        response = http.get(f"{sim.url}{path}", headers=headers)
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED


def test_expired_token_is_rejected(tmp_path):
    with Simulator(credentials=1, token_lifetime=3) as other:
        http = _session(other, tmp_path)
        token = login(other, http).json()["accessToken"]
        # exp is in whole seconds: the token is good for at least 2 s, a margin for a busy
        # machine; then wait until just past the expiry it states.
        assert http.get(f"{other.url}/v1/credentials", headers=bearer(token)).status_code == 200
        payload = token.split(".")[1]
        expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        time.sleep(max(0.0, expires - time.time()) + 0.1)
        response = http.get(f"{other.url}/v1/credentials", headers=bearer(token))
    assert response.status_code == 401 and response.json() == UNAUTHORIZED


def test_operator_gets_403(sim, http):
    token = login(sim, http, sim.operator_username, sim.operator_password).json()["accessToken"]
    for path in ("/v1/credentials", f"/v1/credentials/{uuid.uuid4()}", "/v1/sddcs"):
        response = http.get(f"{sim.url}{path}", headers=bearer(token))
        assert response.status_code == 403
        assert response.json()["errorCode"] and response.json()["message"]


def test_installer_account_logs_in(sim, http):
    response = login(sim, http, sim.installer_username, sim.installer_password)
    assert response.status_code == 200
    assert sim.installer_username == "admin@local"


# -- credentials -------------------------------------------------------------------------


def test_page_size_zero_returns_everything(sim, http, admin):
    body = http.get(f"{sim.url}/v1/credentials", headers=admin).json()
    assert len(body["elements"]) == 2000
    assert body["pageMetadata"] == {
        "pageNumber": 0,
        "pageSize": 2000,
        "totalElements": 2000,
        "totalPages": 1,
    }


def test_paging(sim, http, admin):
    seen = []
    for number in range(4):
        response = http.get(
            f"{sim.url}/v1/credentials",
            params={"pageSize": "600", "pageNumber": str(number)},
            headers=admin,
        )
        body = response.json()
        assert body["pageMetadata"]["totalPages"] == 4
        assert body["pageMetadata"]["totalElements"] == 2000
        assert body["pageMetadata"]["pageNumber"] == number
        seen += [e["id"] for e in body["elements"]]
    assert len(seen) == len(set(seen)) == 2000
    past = http.get(
        f"{sim.url}/v1/credentials", params={"pageSize": "600", "pageNumber": "9"}, headers=admin
    ).json()
    assert past["elements"] == []
    for bad in ({"pageSize": "x"}, {"pageNumber": "-1"}, {"pageSize": "1.5"}):
        response = http.get(f"{sim.url}/v1/credentials", params=bad, headers=admin)
        assert response.status_code == 400


def test_filters(sim, http, admin):
    snapshot = sim.credentials_snapshot()
    esx = snapshot[20]["resource"]

    def query(**params):
        response = http.get(f"{sim.url}/v1/credentials", params=params, headers=admin)
        return response.json()["elements"]

    assert all(e["resource"]["resourceType"] == "ESXI" for e in query(resourceType="ESXI"))
    assert len(query(resourceType="ESXI")) == sum(
        e["resource"]["resourceType"] == "ESXI" for e in snapshot
    )
    assert {e["resource"]["resourceName"] for e in query(resourceName=esx["resourceName"])} == {
        esx["resourceName"]
    }
    assert query(resourceIp=esx["resourceIp"])
    domain = query(domainName="sfo-w01")
    assert domain and all(e["resource"]["domainNames"] == ["sfo-w01"] for e in domain)
    service = query(accountType="SERVICE", resourceType="ESXI")
    assert service and all(e["username"].startswith("svc-vcf-") for e in service)
    assert query(resourceType="NO_SUCH_TYPE") == []


def test_elements_are_complete_and_realistic(sim):
    snapshot = sim.credentials_snapshot()
    required = {
        "id",
        "credentialType",
        "accountType",
        "username",
        "password",
        "creationTimestamp",
        "modificationTimestamp",
        "resource",
    }
    resource_keys = {
        "resourceId",
        "resourceName",
        "resourceIp",
        "resourceType",
        "domainNames",
        "domainName",
    }
    for element in snapshot:
        assert required <= element.keys()
        assert resource_keys <= element["resource"].keys()
        assert isinstance(element["resource"]["domainName"], str)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", element["creationTimestamp"])
    passwords = [e["password"] for e in snapshot]
    assert len(set(passwords)) == len(passwords)
    for password in passwords:
        assert 16 <= len(password) <= 20
        assert any(c in string.ascii_uppercase for c in password)
        assert any(c in string.ascii_lowercase for c in password)
        assert any(c in string.digits for c in password)
        assert any(not c.isalnum() for c in password)
    assert any("expiry" in e for e in snapshot) and any("autoRotatePolicy" in e for e in snapshot)
    types = {e["resource"]["resourceType"] for e in snapshot}
    # 9.1 (the default) adds HCX_MANAGER and VSP in the management domain.
    assert types == {
        "BACKUP",
        "VCENTER",
        "PSC",
        "NSXT_MANAGER",
        "NSXT_EDGE",
        "ESXI",
        "HCX_MANAGER",
        "VSP",
    }
    names = {e["resource"]["resourceName"] for e in snapshot}
    assert "sfo01-m01-esx01.sfo.rainpole.io" in names
    assert "sfo-m01-vc01.sfo.rainpole.io" in names
    psc = [e for e in snapshot if e["resource"]["resourceType"] == "PSC"]
    assert psc[0]["username"] == "administrator@vsphere.local"
    assert (psc[0]["credentialType"], psc[0]["accountType"]) == ("SSO", "SYSTEM")


def test_exact_count_and_determinism():
    for count in (0, 1, 7, 333):
        with Simulator(credentials=count, seed=2) as first:
            assert len(first.credentials_snapshot()) == count
    one = Simulator(credentials=150, seed=9)._inventory.credentials
    two = Simulator(credentials=150, seed=9)._inventory.credentials
    other = Simulator(credentials=150, seed=10)._inventory.credentials
    assert one == two
    assert [e["password"] for e in one] != [e["password"] for e in other]


def test_single_credential(sim, http, admin):
    element = sim.credentials_snapshot()[42]
    response = http.get(f"{sim.url}/v1/credentials/{element['id']}", headers=admin)
    assert response.status_code == 200 and response.json() == element
    missing = http.get(f"{sim.url}/v1/credentials/{uuid.uuid4()}", headers=admin)
    assert missing.status_code == 404 and missing.json()["errorCode"]


def test_unknown_paths_and_methods(sim, http, admin):
    response = http.get(f"{sim.url}/v2/whatever", headers=admin)
    assert response.status_code == 404 and response.json()["message"]
    response = http.delete(f"{sim.url}/v1/credentials", headers=admin)
    assert response.status_code == 405 and response.json()["errorCode"]
    assert http.get(f"{sim.url}/v1/tokens").status_code == 405


def test_server_header_has_no_python_version(sim, http):
    response = http.get(f"{sim.url}/v1/credentials")
    assert "Python" not in response.headers.get("Server", "")


# -- installer ---------------------------------------------------------------------------


def test_installer_endpoints(sim, http, admin):
    page = http.get(f"{sim.url}/v1/sddcs", headers=admin).json()
    assert [t["id"] for t in page["elements"]] == [sim.sddc_id]
    assert page["elements"][0]["status"] == "COMPLETED_WITH_SUCCESS"
    latest = http.get(f"{sim.url}/v1/sddcs/latest", headers=admin).json()
    assert latest["id"] == sim.sddc_id
    spec = http.get(f"{sim.url}/v1/sddcs/{sim.sddc_id}/spec", headers=admin).json()
    assert spec == sim.installer_spec()
    for key in ("sddcId", "vcenterSpec", "networkSpecs", "dnsSpec", "vspClusterSpec"):
        assert key in spec
    assert spec["hostSpecs"][0]["hostname"] == "sfo01-m01-esx01"
    for path in (f"/v1/sddcs/{uuid.uuid4()}", f"/v1/sddcs/{uuid.uuid4()}/spec"):
        assert http.get(f"{sim.url}{path}", headers=admin).status_code == 404


def test_installer_spec_uses_initial_passwords(sim):
    spec = sim.installer_spec()
    manager = {
        (e["resource"]["resourceName"], e["username"]): e["password"]
        for e in sim.credentials_snapshot()
    }
    host = spec["hostSpecs"][0]
    assert (
        host["credentials"]["password"] == manager[(f"{host['hostname']}.sfo.rainpole.io", "root")]
    )
    vc = spec["vcenterSpec"]
    assert vc["rootVcenterPassword"] == manager[(vc["vcenterHostname"], "root")]


def test_installer_task_without_spec(tmp_path):
    with Simulator(credentials=1) as other:
        extra = other.add_installer_task(with_spec=False)
        http = _session(other, tmp_path)
        headers = bearer(login(other, http).json()["accessToken"])
        assert http.get(f"{other.url}/v1/sddcs/{extra}", headers=headers).status_code == 200
        assert http.get(f"{other.url}/v1/sddcs/{extra}/spec", headers=headers).status_code == 404
        assert http.get(f"{other.url}/v1/sddcs/latest", headers=headers).json()["id"] == extra


# -- controls ----------------------------------------------------------------------------


def test_rotate_remove_add_hostile():
    with Simulator(credentials=500, seed=4) as other:
        before = {e["id"]: e for e in other.credentials_snapshot()}
        assert other.rotate(0.2) == 100
        after = {e["id"]: e for e in other.credentials_snapshot()}
        changed = [i for i in before if before[i]["password"] != after[i]["password"]]
        assert len(changed) == 100
        assert all(
            after[i]["modificationTimestamp"] > before[i]["modificationTimestamp"] for i in changed
        )
        removed = other.remove(3)
        assert len({e["resource"]["resourceId"] for e in removed}) == 3
        assert len(other.credentials_snapshot()) == 500 - len(removed)
        added = other.add(2)
        assert len(added) == 4 and {e["resource"]["resourceType"] for e in added} == {"ESXI"}
        assert len(other.credentials_snapshot()) == 500 - len(removed) + 4
        other.set_hostile(True)
        hostile = other.credentials_snapshot()
        values = {e["resource"]["resourceName"] for e in hostile} | {e["username"] for e in hostile}
        assert set(HOSTILE_STRINGS) <= values
        other.set_hostile(False)
        clean = other.credentials_snapshot()
        assert not set(HOSTILE_STRINGS) & {e["username"] for e in clean}


@pytest.mark.parametrize("mode", ["500", "401", "403", "malformed"])
def test_injected_http_failures(sim, http, admin, mode):
    sim.inject_failure(mode, count=2, path_prefix="/v1/credentials")
    url = f"{sim.url}/v1/credentials"
    first, second, third = (http.get(url, headers=admin) for _ in range(3))
    expected = {"500": 500, "401": 401, "403": 403, "malformed": 200}[mode]
    assert first.status_code == second.status_code == expected
    assert third.status_code == 200 and third.json()["elements"]
    if mode == "malformed":
        with pytest.raises(ValueError):
            first.json()
    else:
        assert first.json()["errorCode"]
    assert sim.hits["GET /v1/credentials"] == 3


def test_injected_failure_respects_path_prefix(sim, http, admin):
    sim.inject_failure("500", path_prefix="/v1/sddcs")
    assert http.get(f"{sim.url}/v1/credentials", headers=admin).status_code == 200
    assert http.get(f"{sim.url}/v1/sddcs", headers=admin).status_code == 500
    sim.inject_failure("500", count=5)
    sim.clear_failures()
    assert http.get(f"{sim.url}/v1/sddcs", headers=admin).status_code == 200


def test_injected_reset_timeout_and_slow(sim, http, admin):
    url = f"{sim.url}/v1/sddcs"
    sim.inject_failure("reset")
    with pytest.raises(requests.ConnectionError):
        http.get(url, headers=admin)
    sim.inject_failure("timeout", delay=1.0)
    with pytest.raises(requests.ReadTimeout):
        http.get(url, headers=admin, timeout=(2, 0.2))
    sim.inject_failure("slow", delay=0.2)
    started = time.monotonic()
    assert http.get(url, headers=admin).status_code == 200
    assert time.monotonic() - started >= 0.2
    with pytest.raises(ValueError):
        sim.inject_failure("explode")


def test_hits_and_reset(sim, http, admin):
    http.get(f"{sim.url}/v1/sddcs", headers=admin)
    http.get(f"{sim.url}/v1/sddcs", headers=admin)
    assert sim.hits["GET /v1/sddcs"] == 2
    sim.reset_hits()
    assert sim.hits["GET /v1/sddcs"] == 0


def test_http_control_api(tmp_path):
    with Simulator(credentials=300, seed=8, control=True) as other:
        http = _session(other, tmp_path)
        control = f"{other.url}/_sim/control"

        def act(**payload):
            response = http.post(control, json=payload)
            assert response.status_code == 200, response.text
            return response.json()

        assert act(action="rotate", fraction=0.1) == {"rotated": 30}
        assert act(action="remove", count=1)["removed"] == 2
        assert act(action="add", count=2) == {"added": 4}
        act(action="hostile", enabled=True)
        act(action="fail", mode="500", count=1, path_prefix="/v1/tokens")
        assert login(other, http).status_code == 500
        assert login(other, http).status_code == 200
        act(action="fail", mode="500", count=5)
        act(action="clear")
        assert login(other, http).status_code == 200
        stats = http.get(f"{other.url}/_sim/stats").json()
        assert stats["credentials"] == 302 and stats["hostile"] is True
        assert stats["hits"]["POST /v1/tokens"] == 3
        assert len(http.get(f"{other.url}/_sim/credentials").json()) == 302
        assert http.post(control, json={"action": "nope"}).status_code == 400
        assert http.post(control, json={"action": "fail", "mode": "x"}).status_code == 400


def test_control_api_is_off_by_default(tmp_path):
    with Simulator(credentials=1) as other:
        http = _session(other, tmp_path)
        assert http.get(f"{other.url}/_sim/stats").status_code == 404
        assert http.post(f"{other.url}/_sim/control", json={"action": "clear"}).status_code == 404


def test_certificate_and_ca(sim, tmp_path):
    assert sim.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", sim.certificate_sha256)
    http = _session(sim, tmp_path)
    assert http.get(f"https://localhost:{sim.port}/v1/sddcs").status_code == 401


def test_cert_dir_is_reused(tmp_path):
    with Simulator(credentials=1, cert_dir=tmp_path) as first:
        fingerprint = first.certificate_sha256
    assert (tmp_path / "sim-server.key").stat().st_mode & 0o777 == 0o600
    with Simulator(credentials=1, cert_dir=tmp_path) as second:
        assert second.certificate_sha256 == fingerprint


@pytest.mark.e2e  # starts the simulator as a process of its own
def test_command_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "portal.simulator", "--port", "0", "--credentials", "25"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(2)]
        url = re.search(r"https://127\.0\.0\.1:(\d+)", lines[0])
        assert url, lines
        printed = re.search(r"certificate SHA-256: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})", lines[1])
        assert printed, lines
        fingerprint = fetch_certificate_sha256("127.0.0.1", int(url.group(1)))
        assert printed.group(1) == fingerprint
        session = requests.Session()
        session.trust_env = False
        session.mount("https://", EndpointTlsAdapter(pin_hex=normalize_fingerprint(fingerprint)))
        stats = session.get(f"{url.group(0)}/_sim/stats", verify=False)
        assert stats.json()["credentials"] == 25
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_a_failure_can_name_one_path_exactly():
    from portal.simulator.server import _matches

    assert _matches("/v1/credentials", "/v1/credentials$")
    assert not _matches("/v1/credentials/expirations", "/v1/credentials$")
    assert _matches("/v1/credentials/expirations", "/v1/credentials")


def test_sddc_manager_91_types_only_in_a_91_estate_with_the_bring_up_values_in_the_spec():
    from portal.simulator.inventory import Inventory

    estate = Inventory(40, seed=2)
    by_name = {
        (e["resource"]["resourceType"], e["username"]): e
        for e in estate.credentials
        if e["resource"]["resourceType"] in ("HCX_MANAGER", "VSP")
    }
    assert sorted(by_name) == [
        ("HCX_MANAGER", "admin"),
        ("HCX_MANAGER", "root"),
        ("VSP", "admin@vsp.local"),
        ("VSP", "vmware-system-user"),
    ]
    vsp = by_name[("VSP", "vmware-system-user")]
    [spec] = estate.specs.values()
    assert vsp["resource"]["resourceName"] == spec["vspClusterSpec"]["platformFqdn"]
    assert vsp["password"] == spec["vspClusterSpec"]["systemUserPassword"]
    older = Inventory(40, seed=2, installer_version="9.0")
    types = {e["resource"]["resourceType"] for e in older.credentials}
    assert not types & {"HCX_MANAGER", "VSP"}


def test_a_large_fleet_for_the_benchmark_is_read_whole_with_its_values():
    from support import sim_settings

    from portal.vcf import FleetClient

    with Simulator(credentials=10, seed=4) as sim:
        assert sim.fleet_scale(50, 200) == 200
        settings = sim_settings(
            sim, username=sim.installer_username, password=sim.installer_password
        )
        with FleetClient(settings, sim.fleet_root_password) as client:
            fetched = client.fetch_credentials()
        truth = {(a.fqdn, a.username): a.password for a in sim.fleet_accounts()}
        assert len(fetched) == 200 and len({f.hostname for f in fetched}) == 50
        assert {(f.hostname, f.username): f.password for f in fetched} == truth
        assert {f.expiry_status for f in fetched} >= {"ACTIVE", "EXPIRED", "EXPIRING"}
