"""The fleet management client against the simulator over real HTTPS: the version detected,
every management appliance account with its value, paging, and the failures (401, 5xx, slow
pages, a wrong locker decryption password) in the operator's words."""

from __future__ import annotations

import time

import pytest
from support import sim_settings

from portal.simulator import Simulator
from portal.vcf import API_90, API_91, FleetClient, VcfError, appliance_label
from portal.vcf import fleet as fleet_module
from portal.vcf.fleet_accounts import (
    appliance_from_text,
    credential_type,
    expiry_iso,
    fqdn_from_text,
)


@pytest.fixture(scope="module", params=["9.0", "9.1"])
def estate(request):
    with Simulator(credentials=40, seed=3, installer_version=request.param) as sim:
        yield sim


def _settings(sim, **overrides):
    values = {"username": sim.installer_username, "password": sim.installer_password}
    return sim_settings(sim, **{**values, **overrides})


def _truth(sim) -> dict:
    return {(a.fqdn, a.username): a for a in sim.fleet_accounts()}


def test_every_management_appliance_account_with_its_current_value(estate):
    truth = _truth(estate)
    with FleetClient(_settings(estate), estate.fleet_root_password) as client:
        fetched = client.fetch_credentials()
        assert client.api_detected == (API_91 if estate.fleet_version == "9.1" else API_90)
        assert client.decryptions == len(truth)
    assert len(fetched) == len(truth) >= 7
    for item in fetched:
        account = truth[(item.hostname, item.username)]
        assert item.source == "fleet"
        assert item.password == account.password
        assert item.resource_type == account.appliance
        assert item.remote_id == (account.key if estate.fleet_version == "9.1" else account.vmid)
    types = {item.resource_type for item in fetched}
    assert {"VCF_OPERATIONS", "CLOUD_PROXY", "VCF_AUTOMATION"} <= types
    spec = estate.installer_spec()
    assert {i.hostname for i in fetched} >= {
        spec["vcfOperationsSpec"]["loadBalancerFqdn"],
        spec["vcfAutomationSpec"]["hostname"],
        spec["vcfOperationsCollectorSpec"]["hostname"],
    }


def test_9_1_accounts_carry_status_and_expiry(estate):
    with FleetClient(_settings(estate), estate.fleet_root_password) as client:
        fetched = client.fetch_credentials()
    if estate.fleet_version == "9.0":  # the locker knows no status or expiry
        assert all(i.expiry_status is None and i.expiry_date is None for i in fetched)
        return
    statuses = {item.expiry_status for item in fetched}
    assert {"ACTIVE", "EXPIRING", "EXPIRED", "UNKNOWN"} <= statuses
    truth = _truth(estate)
    for item in fetched:
        expected = truth[(item.hostname, item.username)].expiry_ms
        assert item.expiry_date == expiry_iso(expected)
        assert item.expiry_date.endswith("Z")


def test_the_version_is_detected_by_the_first_login(estate):
    estate.reset_hits()
    with FleetClient(_settings(estate), estate.fleet_root_password) as client:
        detected = client.detect()
        assert client.probe() == len(estate.fleet_accounts())
    assert detected == (API_90 if estate.fleet_version == "9.0" else API_91)
    hits = estate.hits
    assert hits["POST /suite-api/api/auth/token/acquire"] == 1
    # 9.0 is read from the locker alone; 9.1's list comes from password management
    listed = hits["POST /suite-api/api/fleet-management/password-management/accounts/query"]
    assert (listed, hits["GET /lcm/locker/api/passwords"]) == (
        (0, 2) if detected == API_90 else (1, 0)  # 9.0: the locker answered the detection too
    )


def test_a_wrong_decryption_password_says_so_and_never_shows_it(estate):
    with FleetClient(_settings(estate), "Not-the-root-password-1!") as client:
        with pytest.raises(VcfError) as caught:
            client.fetch_credentials()
    assert caught.value.kind == "auth"
    assert "refused the locker decryption password" in str(caught.value)
    assert "Not-the-root-password-1!" not in str(caught.value)


def test_without_a_decryption_password(estate):
    with FleetClient(_settings(estate), None) as client:
        if estate.fleet_version == "9.0":
            with pytest.raises(VcfError, match="needs the fleet appliance's root password"):
                client.fetch_credentials()
            return
        fetched = client.fetch_credentials()
        assert fetched and all(item.password is None for item in fetched)
        assert any("locker decryption password" in note for note in client.notes)
        assert client.decryptions == 0


def test_bad_credentials(estate):
    with FleetClient(_settings(estate, password="wrong-password"), "x") as client:
        with pytest.raises(VcfError) as caught:
            client.fetch_credentials()
    assert caught.value.kind == "auth"
    assert "bad credentials for user admin@local" in str(caught.value)


def test_rotation_changes_the_value_read():
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        settings = _settings(sim)
        with FleetClient(settings, sim.fleet_root_password) as client:
            before = {(i.hostname, i.username): i.password for i in client.fetch_credentials()}
        rotated = sim.fleet_rotate(2)
        with FleetClient(settings, sim.fleet_root_password) as client:
            after = {(i.hostname, i.username): i.password for i in client.fetch_credentials()}
    changed = [key for key in before if before[key] != after[key]]
    assert len(changed) == 2 == len(rotated)
    assert {f"{host} {user}" for host, user in changed} == set(rotated)


@pytest.mark.parametrize("prefix", ["/suite-api/api/fleet-management/", "/lcm/locker/api/"])
def test_a_401_mid_sync_logs_in_again(prefix):
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        sim.inject_failure("401", count=1, path_prefix=prefix)
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            assert len(client.fetch_credentials()) == len(sim.fleet_accounts())


def test_server_errors_are_retried_on_reads_then_reported():
    with Simulator(credentials=20, seed=4, installer_version="9.0") as sim:
        sim.inject_failure("500", count=1, path_prefix="/lcm/locker/api/passwords$")
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            assert len(client.fetch_credentials()) == len(sim.fleet_accounts())
        sim.inject_failure("500", count=10, path_prefix="/lcm/locker/api/passwords$")
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            with pytest.raises(VcfError) as caught:
                client.fetch_credentials()
        assert caught.value.kind == "server"
        assert "HTTP 500" in str(caught.value)


def test_slow_pages_still_complete_and_a_timeout_is_named():
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        sim.inject_failure("slow", count=3, path_prefix="/suite-api/", delay=0.3)
        started = time.monotonic()
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            assert len(client.fetch_credentials()) == len(sim.fleet_accounts())
        assert time.monotonic() - started >= 0.9
        sim.inject_failure("timeout", count=5, path_prefix="/suite-api/", delay=2.0)
        with FleetClient(_settings(sim, read_timeout=0.5, retries=0), "x") as client:
            with pytest.raises(VcfError) as caught:
                client.fetch_credentials()
        assert caught.value.kind == "timeout"


def test_pages_are_followed(monkeypatch):
    monkeypatch.setattr(fleet_module, "PAGE_SIZE", 2)
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            fetched = client.fetch_credentials()
        hits = sim.hits
    accounts = len(sim.fleet_accounts())
    assert len(fetched) == accounts
    pages = -(-accounts // 2)
    assert hits["POST /suite-api/api/fleet-management/password-management/accounts/query"] == pages
    assert hits["GET /lcm/locker/api/passwords"] == pages


def test_update_through_fleet_password_management():
    with Simulator(credentials=20, seed=4, installer_version="9.1", task_delay=0.05) as sim:
        account = sim.fleet_accounts()[0]
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            client.detect()
            with pytest.raises(VcfError) as caught:
                client.update_password(account.key, "not-current", "New-Passw0rd!x", None)
            assert "not-current" not in str(caught.value)
            request_id = client.update_password(
                account.key, account.password, "New-Passw0rd!x", account.username
            )
            deadline = time.monotonic() + 5
            while client.workflow(request_id)["status"] == "IN_PROGRESS":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.workflow(request_id)["status"] == "COMPLETED"
            values = {(i.hostname, i.username): i.password for i in client.fetch_credentials()}
    assert values[(account.fqdn, account.username)] == "New-Passw0rd!x"


def test_the_fleet_token_is_the_exchanged_one():
    """An OpsToken alone is refused on the fleet paths (as one lab saw): the client exchanges."""
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            client.password_accounts()
        assert sim.hits["POST /suite-api/api/auth/token/exchange"] == 1


def test_locker_texts_name_the_appliance():
    assert appliance_from_text("sfo-opsc01.sfo.rainpole.io root", "Cloud Proxy root") == (
        "CLOUD_PROXY"
    )
    assert appliance_from_text("x", "VCF Operations for Logs admin") == "LOG_MANAGEMENT"
    assert appliance_from_text("vidb-admin", None) == "IDENTITY_BROKER"
    assert appliance_from_text("something else", None) == "UNKNOWN"
    assert fqdn_from_text("sfo-auto01.sfo.rainpole.io admin") == "sfo-auto01.sfo.rainpole.io"
    assert fqdn_from_text("10.0.0.1 root", "no name") is None
    assert expiry_iso(0) == "1970-01-01T00:00:00.000Z"
    assert expiry_iso(True) is None and expiry_iso(float("nan")) is None
    assert appliance_label("LOG_MANAGEMENT") == "VCF Operations for Logs"
    assert appliance_label("NEW_THING") == "NEW_THING"


def _altered(sim, name, change):
    """The simulator's fleet surface answering `name` (_query or _locker_page) through
    `change(query, status, body)`: a hostile server over the same HTTPS."""
    surface = sim._fleet
    original = getattr(surface, name)

    def answer(query, *rest):
        status, body = original(query, *rest)
        return status, change(query, body) if status == 200 else body

    setattr(surface, name, answer)


def _first(query, *names):
    return int(next((query[n][0] for n in names if n in query), "0"))


def _duplicate_key(query, body):
    rows = body["vcfPasswordAccounts"]
    if _first(query, "page") == 1 and rows:
        rows[0] = {**rows[0], "passwordAccountKey": "dup-key"}
    if _first(query, "page") == 0 and rows:
        rows[0] = {**rows[0], "passwordAccountKey": "dup-key"}
    return body


def _empty_second_page(query, body):
    if _first(query, "page") == 1:
        body["vcfPasswordAccounts"] = []
    return body


def _total_one_more(query, body):
    body["pageInfo"]["totalCount"] += 1
    return body


def _locker_total_one_less(query, body):
    body["total"] -= 1
    return body


@pytest.mark.parametrize(
    ("version", "surface", "change", "words"),
    [
        ("9.1", "_query", _duplicate_key, "passwordAccountKey dup-key was returned twice"),
        ("9.0", "_locker_page", None, "page 1 of the locker's list repeats the previous page"),
        ("9.1", "_query", _empty_second_page, "page 1 of the password accounts is empty after"),
        ("9.1", "_query", _total_one_more, "is empty after 7 of 8 accounts"),
        ("9.0", "_locker_page", _locker_total_one_less, "locker reported 7 entries but returned 8"),
    ],
)
def test_an_incomplete_or_repeated_listing_is_refused(monkeypatch, version, surface, change, words):
    monkeypatch.setattr(fleet_module, "PAGE_SIZE", 2)
    with Simulator(credentials=20, seed=4, installer_version=version) as sim:
        if change is None:  # a locker that ignores "from": page 0 again and again
            first = sim._fleet._locker_page
            _altered(sim, surface, lambda query, body: first({"from": ["0"], "size": ["2"]})[1])
        else:
            _altered(sim, surface, change)
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            with pytest.raises(VcfError) as caught:
                client.fetch_credentials()
    assert caught.value.kind == "malformed"
    assert words in str(caught.value)


def test_once_9_1_answered_a_404_on_the_token_request_fails_instead_of_switching():
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        sim.inject_failure("404", count=1, path_prefix="/suite-api/api/auth/token/acquire")
        with FleetClient(_settings(sim), sim.fleet_root_password, api_detected=API_91) as client:
            with pytest.raises(VcfError) as caught:
                client.fetch_credentials()
            assert client.api_detected is None
        assert "answered as VCF 9.1 fleet password management before" in str(caught.value)
        assert "edit the endpoint's host or port" in str(caught.value)
        assert sim.hits["GET /lcm/locker/api/passwords"] == 0


def test_9_0_is_chosen_only_when_the_locker_answers_too():
    with Simulator(credentials=20, seed=4, installer_version="9.0") as sim:
        sim.inject_failure("404", count=1, path_prefix="/lcm/locker/api/passwords$")
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            with pytest.raises(VcfError) as caught:
                client.detect()
            assert client.api_detected is None
        assert caught.value.kind == "not_found"
        assert "neither as VCF Operations" in str(caught.value)
        # a 9.0 estate that stays 9.0 is still read when 9.0 was stored
        with FleetClient(_settings(sim), sim.fleet_root_password, api_detected=API_90) as client:
            assert len(client.fetch_credentials()) == len(sim.fleet_accounts())


def test_the_same_account_keeps_its_key_on_9_0_and_9_1():
    """9.0 names no credential type: the one derived from the user is 9.1's, so an estate
    that moves from the locker to password management keeps its rows and history."""
    types = {}
    for version in ("9.0", "9.1"):
        with Simulator(credentials=20, seed=4, installer_version=version) as sim:
            with FleetClient(_settings(sim), sim.fleet_root_password) as client:
                fetched = client.fetch_credentials()
        types[version] = {(i.hostname, i.username): i.credential_type for i in fetched}
        if version == "9.1":
            assert "vmware-system-user" in {i.username for i in fetched}
            for item in fetched:  # what the 9.0 path would make of the same account
                assert credential_type(item.username) == item.credential_type
    common = types["9.0"].keys() & types["9.1"].keys()
    assert len(common) >= 4
    assert {k: types["9.0"][k] for k in common} == {k: types["9.1"][k] for k in common}


def test_an_alias_that_several_locker_entries_share_gets_no_value():
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        accounts = sim.fleet_accounts()
        shared = accounts[0].alias

        def twin(query, body):
            if body["passwords"]:
                first = body["passwords"][0]
                # a second entry with the first account's alias, and one no account names
                body["passwords"].append({**first, "vmid": "twin-vmid", "alias": shared})
                body["passwords"].append({**first, "vmid": "lonely", "alias": "no account"})
                body["total"] += 2
            return body

        _altered(sim, "_locker_page", twin)
        sim.reset_hits()
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            fetched = client.fetch_credentials()
            decryptions = client.decryptions
            notes = client.notes
    by_alias = {(i.hostname, i.username): i.password for i in fetched}
    assert by_alias[(accounts[0].fqdn, accounts[0].username)] is None
    assert any("1 aliases name several locker entries" in n and shared in n for n in notes)
    assert not any("no entry in the locker" in n for n in notes)
    others = [a for a in accounts[1:]]
    assert all(by_alias[(a.fqdn, a.username)] == a.password for a in others)
    assert decryptions == len(others)
    assert sum(n for k, n in sim.hits.items() if k.endswith("/decrypted")) == len(others)


@pytest.mark.parametrize(
    ("alias", "description", "appliance"),
    [
        ("vsphere-admin", "vSphere administrator", "UNKNOWN"),
        ("devops-svc", "DevOps service user", "UNKNOWN"),
        ("autoscale-bot", None, "UNKNOWN"),
        ("sfo-vsp01.sfo.rainpole.io vmware-system-user", None, "VCF_SERVICES_RUNTIME"),
        ("sfo-auto01.sfo.rainpole.io admin", None, "VCF_AUTOMATION"),
        ("sfo-ops01 root", None, "VCF_OPERATIONS"),
        ("x", "Cloud-Proxy root", "CLOUD_PROXY"),
    ],
)
def test_locker_texts_are_read_by_whole_words(alias, description, appliance):
    assert appliance_from_text(alias, description) == appliance


def test_a_domain_after_an_at_sign_is_not_the_host():
    assert fqdn_from_text("administrator@vsphere.local") is None
    assert fqdn_from_text("administrator@vsphere.local on sfo-vc01.sfo.rainpole.io") == (
        "sfo-vc01.sfo.rainpole.io"
    )
    assert fqdn_from_text("svc@rainpole.io", "sfo-ops01.sfo.rainpole.io admin") == (
        "sfo-ops01.sfo.rainpole.io"
    )


@pytest.mark.parametrize(
    ("version", "mode", "path", "words"),
    [
        (
            "9.0",
            "403",
            "/lcm/locker/api/v2/passwords/",
            "by the fleet management locker (HTTP 403)",
        ),
        ("9.0", "403", "/lcm/locker/api/passwords$", "by the fleet management locker (HTTP 403)"),
        ("9.1", "403", "/suite-api/api/fleet-management/", "by VCF Operations (HTTP 403)"),
    ],
)
def test_failures_name_the_surface_and_a_403_is_not_the_decryption_password(
    version, mode, path, words
):
    with Simulator(credentials=20, seed=4, installer_version=version) as sim:
        sim.inject_failure(mode, count=5, path_prefix=path)
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            with pytest.raises(VcfError) as caught:
                client.fetch_credentials()
    message = str(caught.value)
    assert caught.value.kind == "forbidden"
    assert words in message
    assert "SDDC Manager" not in message and "ADMIN role" not in message
    assert "decryption password" not in message


def test_a_refused_update_names_vcf_operations():
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        account = sim.fleet_accounts()[0]
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            with pytest.raises(VcfError) as caught:
                client.update_password(account.key, "not-current", "New-Passw0rd!x", None)
    assert str(caught.value).startswith("VCF Operations refused PUT")


def test_the_ops_token_is_masked_in_a_failed_exchange():
    with Simulator(credentials=20, seed=4, installer_version="9.1") as sim:
        surface = sim._fleet
        original = surface.route
        seen = []

        def echo(method, path, query, body, authorization):
            if path.endswith("/auth/token/exchange"):  # a server that echoes the token
                seen.append(authorization.split(" ", 1)[1])
                return 500, {"message": f"cannot exchange {authorization}"}
            return original(method, path, query, body, authorization)

        surface.route = echo
        with FleetClient(_settings(sim), sim.fleet_root_password) as client:
            with pytest.raises(VcfError) as caught:
                client.detect()
    assert seen and seen[0] not in str(caught.value)
    assert "cannot exchange OpsToken" in str(caught.value)


def test_the_connection_test_reads_one_page_of_one(monkeypatch, estate):
    monkeypatch.setattr(fleet_module, "PAGE_SIZE", 2)
    estate.reset_hits()
    with FleetClient(_settings(estate), estate.fleet_root_password) as client:
        assert client.probe() == len(estate.fleet_accounts())
    hits = estate.hits
    listed = hits["POST /suite-api/api/fleet-management/password-management/accounts/query"]
    locker = hits["GET /lcm/locker/api/passwords"]
    assert (listed, locker) == ((1, 0) if estate.fleet_version == "9.1" else (0, 2))
    assert not any(key.endswith("/decrypted") for key in hits)


def test_a_decryption_never_sent_is_not_counted():
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with Simulator(credentials=20, seed=4, installer_version="9.0") as sim:
        settings = _settings(sim, port=port, retries=0)
    with FleetClient(settings, "Root-Pw-1!") as client:
        with pytest.raises(VcfError) as caught:
            client.decrypt("some-vmid")
        assert caught.value.kind == "refused"
        assert client.decryptions == 0
