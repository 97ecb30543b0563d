"""The VCF REST clients against the HTTPS simulator: paging, tokens, TLS and every failure."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from support import sim_settings as settings_for

from portal.simulator import Simulator
from portal.simulator.certs import generate_certificates
from portal.vcf import (
    EndpointSettings,
    FetchedCredential,
    InstallerClient,
    SddcManagerClient,
    VcfError,
    client_for,
    credentials_from_spec,
    fetch_certificate_sha256,
    format_fingerprint,
    normalize_fingerprint,
    parse_credential,
    test_connection,
)
from portal.vcf.failures import clean_text
from portal.vcf.manager import CONCURRENT_PAGES

CREDENTIALS = 1234
REFRESH = "PATCH /v1/tokens/access-token/refresh"


@pytest.fixture(scope="module")
def sim():
    """One simulator for the read-only tests of this module."""
    with Simulator(credentials=CREDENTIALS, seed=7) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh_state(request, caplog):
    """Every test starts with no injected failure, no quirk and zeroed counters."""
    caplog.set_level(logging.DEBUG, logger="portal.vcf")
    if "sim" in request.fixturenames:
        simulator = request.getfixturevalue("sim")
        simulator.clear_failures()
        simulator.set_quirks()
        simulator.set_hostile(False)
        simulator.reset_hits()
    yield


def installer_settings(sim: Simulator, **overrides) -> EndpointSettings:
    """Settings for the installer account."""
    overrides.setdefault("username", sim.installer_username)
    overrides.setdefault("password", sim.installer_password)
    return settings_for(sim, **overrides)


def fetch_error(settings: EndpointSettings, source: str = "manager") -> VcfError:
    """Run a fetch that must fail and return the error."""
    with client_for(source, settings) as client, pytest.raises(VcfError) as info:
        client.fetch_credentials()
    return info.value


def assert_no_secret(sim: Simulator, text: str) -> None:
    """No simulator login password and no credential password appears in ``text``."""
    assert sim.admin_password not in text
    for element in sim.credentials_snapshot():
        password = element.get("password")
        assert not password or password not in text


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- SDDC Manager: paging and data ------------------------------------------------------


def test_fetch_follows_every_page(sim, caplog):
    with SddcManagerClient(settings_for(sim)) as client:
        creds = client.fetch_credentials()
    assert len(creds) == CREDENTIALS
    assert sim.hits["GET /v1/credentials"] == 3  # 500 + 500 + 234
    assert sim.hits["POST /v1/tokens"] == 1
    snapshot = {e["id"]: e for e in sim.credentials_snapshot()}
    assert {c.remote_id for c in creds} == set(snapshot)
    for cred in creds:
        element = snapshot[cred.remote_id]
        assert cred.source == "manager"
        assert cred.hostname == element["resource"]["resourceName"]
        assert cred.username == element["username"]
        assert cred.password == element["password"]
        assert cred.credential_type == element["credentialType"]
        assert cred.account_type == element["accountType"]
        assert cred.resource_type == element["resource"]["resourceType"]
        assert cred.resource_id == element["resource"]["resourceId"]
        assert cred.resource_ip == element["resource"]["resourceIp"]
        assert cred.domain_names == tuple(element["resource"]["domainNames"])
        assert cred.modified_at == element["modificationTimestamp"]
        assert cred.expiry_status == element.get("expiry", {}).get("status")
        assert cred.auto_rotate_days == element.get("autoRotatePolicy", {}).get("frequencyInDays")
    assert any(c.expiry_date for c in creds) and any(c.auto_rotate_next for c in creds)
    assert "GET /v1/credentials -> 200" in caplog.text
    assert_no_secret(sim, caplog.text)


def _count_overlap(monkeypatch) -> dict:
    """Track how many credential pages are being requested at once."""
    import threading

    from portal.vcf._http import ApiTransport

    state = {"now": 0, "most": 0}
    lock = threading.Lock()
    request = ApiTransport._request

    def counted(self, method, url, *args):
        paging = "/v1/credentials" in url
        if paging:
            with lock:
                state["now"] += 1
                state["most"] = max(state["most"], state["now"])
        try:
            if paging:
                time.sleep(0.05)  # long enough for the others to start
            return request(self, method, url, *args)
        finally:
            if paging:
                with lock:
                    state["now"] -= 1

    monkeypatch.setattr(ApiTransport, "_request", counted)
    return state


def test_later_pages_are_read_four_at_a_time_and_kept_in_order(monkeypatch):
    overlap = _count_overlap(monkeypatch)
    with Simulator(credentials=6001, seed=5) as big:  # 13 pages
        with SddcManagerClient(settings_for(big)) as client:
            creds = client.fetch_credentials()
        assert big.hits["GET /v1/credentials"] == 13
        assert [c.remote_id for c in creds] == [e["id"] for e in big.credentials_snapshot()]
    assert overlap["most"] == CONCURRENT_PAGES == 4


def test_pages_one_at_a_time_when_verification_is_off(monkeypatch):
    overlap = _count_overlap(monkeypatch)
    with Simulator(credentials=2600, seed=5) as big:
        with SddcManagerClient(settings_for(big, verify_tls=False, ca_pem=None)) as client:
            assert len(client.fetch_credentials()) == 2600
    assert overlap["most"] == 1


def test_total_changing_while_pages_are_read_is_malformed(monkeypatch):
    with Simulator(credentials=3000, seed=5) as big:
        page = SddcManagerClient._page

        def growing(self, number):
            if number == 3:
                big.add(2)
            return page(self, number)

        monkeypatch.setattr(SddcManagerClient, "_page", growing)
        error = fetch_error(settings_for(big))
    assert error.kind == "malformed" and "changed while it was read" in str(error)


def test_password_is_not_in_repr(sim):
    with SddcManagerClient(settings_for(sim)) as client:
        cred = client.fetch_credentials()[0]
    assert cred.password and cred.password not in repr(cred)
    assert sim.admin_password not in repr(settings_for(sim))


def test_hostile_strings_pass_through_exactly(sim):
    sim.set_hostile(True)
    with SddcManagerClient(settings_for(sim)) as client:
        creds = client.fetch_credentials()
    snapshot = {e["id"]: e for e in sim.credentials_snapshot()}
    fetched = {c.remote_id: (c.hostname, c.username, c.password) for c in creds}
    expected = {
        i: (e["resource"]["resourceName"], e["username"], e["password"])
        for i, e in snapshot.items()
    }
    assert fetched == expected
    names = {c.hostname for c in creds} | {c.username for c in creds}
    assert "<script>alert(1)</script>" in names
    assert "=cmd|' /C calc'!A0" in names
    assert any("\u202e" in n for n in names) and any("\n" in n for n in names)


def test_unknown_enums_missing_password_and_deprecated_fields(sim):
    sim.set_quirks("unknown_enums", "missing_password", "no_deprecated", "extra_fields")
    with SddcManagerClient(settings_for(sim)) as client:
        creds = client.fetch_credentials()
    assert len(creds) == CREDENTIALS
    assert any(c.credential_type == "PASSKEY" and c.account_type == "ROBOT" for c in creds)
    assert any(c.resource_type == "QUANTUM_MANAGER" for c in creds)
    assert any(c.expiry_status == "SNOOZED" for c in creds)
    assert any(c.password is None for c in creds)
    assert all(c.resource_ip is None for c in creds)
    assert all(c.domain_names for c in creds)


def test_missing_page_metadata_stops_at_short_page(sim):
    sim.set_quirks("no_page_metadata")
    with SddcManagerClient(settings_for(sim)) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS
    assert sim.hits["GET /v1/credentials"] == 3


def test_server_ignoring_page_number_is_detected(sim):
    sim.set_quirks("ignore_page_number")
    error = fetch_error(settings_for(sim))
    assert error.kind == "malformed"
    assert "repeats" in str(error)
    assert sim.hits["GET /v1/credentials"] == 2


def test_element_without_identity_is_malformed(sim):
    sim.set_quirks("missing_identity")
    error = fetch_error(settings_for(sim))
    assert error.kind == "malformed"
    assert "resourceName" in str(error)


def test_page_of_the_wrong_shape_is_malformed(sim):
    sim.set_quirks("wrong_shape")
    error = fetch_error(settings_for(sim))
    assert error.kind == "malformed"


def test_a_fetch_keeps_one_copy_of_repeated_names(sim):
    with SddcManagerClient(settings_for(sim)) as client:
        creds = client.fetch_credentials()
    by_host: dict[str, list] = {}
    for cred in creds:
        by_host.setdefault(cred.hostname, []).append(cred)
    first, second = next(group for group in by_host.values() if len(group) > 1)[:2]
    assert first.hostname is second.hostname
    esxi = [c for c in creds if c.resource_type == "ESXI"]
    assert esxi[0].resource_type is esxi[-1].resource_type and len(esxi) > 1
    assert first.password is not second.password


def test_parse_credential_tolerance():
    element = {
        "id": "c1",
        "username": "root",
        "credentialType": "SSH",
        "resource": {"resourceName": "esx01.example", "domainName": "sfo-m01", "new": 1},
        "autoRotatePolicy": {"frequencyInDays": True, "nextSchedule": "soon"},
    }
    cred = parse_credential(element)
    assert cred.password is None and cred.account_type == "" and cred.resource_type == ""
    assert cred.domain_names == ("sfo-m01",)
    assert cred.auto_rotate_days is None and cred.auto_rotate_next == "soon"
    for broken in (
        {**element, "username": ""},
        {**element, "resource": {"resourceType": "ESXI"}},
        {**element, "password": 12345},
        "not an object",
    ):
        with pytest.raises(VcfError) as info:
            parse_credential(broken)
        assert info.value.kind == "malformed"


# -- tokens ------------------------------------------------------------------------------


def test_short_lived_token_is_refreshed():
    with Simulator(credentials=1100, seed=3, token_lifetime=2) as short:
        with SddcManagerClient(settings_for(short)) as client:
            assert len(client.fetch_credentials()) == 1100
        hits = short.hits
    assert hits["POST /v1/tokens"] == 1
    assert hits[REFRESH] == 2  # before pages 2 and 3: less than two minutes were left


def test_expired_refresh_token_leads_to_a_new_login():
    with Simulator(credentials=10, seed=3, token_lifetime=2, refresh_lifetime=0.2) as short:
        with SddcManagerClient(settings_for(short)) as client:
            client.fetch_credentials()
            time.sleep(0.3)
            assert len(client.fetch_credentials()) == 10
        hits = short.hits
    assert hits[REFRESH] == 1
    assert hits["POST /v1/tokens"] == 2


def test_token_201_is_accepted():
    with Simulator(credentials=5, token_status=201) as other:
        with SddcManagerClient(settings_for(other)) as client:
            assert len(client.fetch_credentials()) == 5


def test_401_mid_fetch_logs_in_again_once(sim):
    sim.inject_failure("401", count=1, path_prefix="/v1/credentials")
    with SddcManagerClient(settings_for(sim)) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS
    assert sim.hits["POST /v1/tokens"] == 2


def test_revoked_tokens_are_replaced(sim):
    with SddcManagerClient(settings_for(sim)) as client:
        client.fetch_credentials()
        sim.revoke_tokens()
        assert len(client.fetch_credentials()) == CREDENTIALS
    assert sim.hits["POST /v1/tokens"] == 2


def test_persistent_401_is_an_auth_error(sim, caplog):
    sim.inject_failure("401", count=2, path_prefix="/v1/credentials")
    error = fetch_error(settings_for(sim))
    assert error.kind == "auth" and error.status == 401
    assert_no_secret(sim, str(error) + caplog.text)


# -- HTTP failures -----------------------------------------------------------------------


def test_bad_password(sim, caplog):
    error = fetch_error(settings_for(sim, password="Wrong-Password-123"))
    assert error.kind == "auth"
    assert str(error) == f"bad credentials for user {sim.admin_username}"
    assert "Wrong-Password-123" not in str(error) + caplog.text


def test_operator_is_forbidden(sim, caplog):
    settings = settings_for(sim, username=sim.operator_username, password=sim.operator_password)
    error = fetch_error(settings)
    assert error.kind == "forbidden" and error.status == 403
    assert "ADMIN role" in str(error)
    assert_no_secret(sim, str(error) + caplog.text)


def test_single_500_is_retried(sim):
    sim.inject_failure("500", count=1, path_prefix="/v1/credentials")
    with SddcManagerClient(settings_for(sim)) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS
    assert sim.hits["GET /v1/credentials"] == 4


def test_persistent_500_reports_message_and_reference(sim, caplog):
    sim.inject_failure("500", count=3, path_prefix="/v1/credentials")
    error = fetch_error(settings_for(sim))
    assert error.kind == "server" and error.status == 500
    assert "Simulated server failure" in str(error)
    assert "referenceToken" in str(error)
    assert sim.hits["GET /v1/credentials"] == 3  # one try + settings.retries
    assert_no_secret(sim, str(error) + caplog.text)


def test_no_retry_on_4xx(sim):
    sim.inject_failure("403", count=1, path_prefix="/v1/credentials")
    assert fetch_error(settings_for(sim)).kind == "forbidden"
    assert sim.hits["GET /v1/credentials"] == 1


def test_hostile_server_message_is_cleaned_and_masked(sim, caplog):
    message = "boom " + sim.admin_password + "\r\nforged: line \u202e" + "x" * 1000
    sim.inject_failure("500", count=3, path_prefix="/v1/credentials", message=message)
    error = fetch_error(settings_for(sim))
    text = str(error)
    assert sim.admin_password not in text and "***" in text
    assert "\n" not in text and "\r" not in text and "\u202e" not in text
    assert len(text) < 500
    assert_no_secret(sim, caplog.text)


def test_malformed_json(sim):
    sim.inject_failure("malformed", count=1, path_prefix="/v1/credentials")
    error = fetch_error(settings_for(sim))
    assert error.kind == "malformed" and "invalid JSON" in str(error)


def test_read_timeout(sim):
    sim.inject_failure("timeout", count=1, path_prefix="/v1/credentials", delay=1.5)
    started = time.monotonic()
    error = fetch_error(settings_for(sim, read_timeout=0.3))
    assert error.kind == "timeout"
    assert time.monotonic() - started < 1.4


def test_slow_answer_within_timeout(sim):
    sim.inject_failure("slow", count=1, path_prefix="/v1/credentials", delay=0.2)
    with SddcManagerClient(settings_for(sim, read_timeout=2.0)) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS


def test_connection_reset(sim):
    sim.inject_failure("reset", count=1, path_prefix="/v1/credentials")
    error = fetch_error(settings_for(sim, retries=0))
    assert error.kind == "connection" and "reset" in str(error)


def test_connection_reset_is_retried(sim):
    sim.inject_failure("reset", count=1, path_prefix="/v1/credentials")
    with SddcManagerClient(settings_for(sim)) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS


def test_dns_failure():
    error = fetch_error(EndpointSettings(host="nonexistent.invalid", username="u", password="p"))
    assert error.kind == "dns"
    assert str(error) == "cannot resolve host nonexistent.invalid"


def test_connection_refused():
    port = closed_port()
    settings = EndpointSettings(host="127.0.0.1", port=port, username="u", password="p")
    error = fetch_error(settings)
    assert error.kind == "refused"
    assert str(error) == f"connection refused by 127.0.0.1:{port}"


# -- TLS ---------------------------------------------------------------------------------


def test_default_verification_rejects_private_ca(sim, caplog):
    settings = settings_for(sim, ca_pem=None)
    error = fetch_error(settings)
    assert error.kind == "tls"
    assert error.certificate_sha256 == sim.certificate_sha256
    assert f"certificate SHA-256 fingerprint seen: {sim.certificate_sha256}" in str(error)
    assert_no_secret(sim, caplog.text)


def test_other_ca_is_rejected(sim):
    other = generate_certificates(["localhost"]).ca_pem
    error = fetch_error(settings_for(sim, ca_pem=other))
    assert error.kind == "tls" and error.certificate_sha256 == sim.certificate_sha256


def test_invalid_ca_bundle(sim):
    with pytest.raises(VcfError) as info:
        SddcManagerClient(settings_for(sim, ca_pem="not a certificate"))
    assert info.value.kind == "tls"


@pytest.mark.parametrize("verify_tls", [True, False])
@pytest.mark.parametrize("form", ["colons", "plain"])
def test_pin_accepts_matching_certificate(sim, verify_tls, form):
    pin = sim.certificate_sha256
    if form == "plain":
        pin = normalize_fingerprint(pin)
    # "localhost" plus no CA: only the pin can make this connection succeed.
    settings = settings_for(
        sim, host="localhost", ca_pem=None, verify_tls=verify_tls, pinned_sha256=pin
    )
    with SddcManagerClient(settings) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS


def test_pin_rejects_other_certificate(sim):
    wrong = "AB:" * 31 + "CD"
    error = fetch_error(settings_for(sim, pinned_sha256=wrong))
    assert error.kind == "tls"
    assert "does not match the pinned fingerprint" in str(error)
    assert error.certificate_sha256 == sim.certificate_sha256


def test_invalid_pin_is_refused(sim):
    with pytest.raises(VcfError) as info:
        SddcManagerClient(settings_for(sim, pinned_sha256="abc"))
    assert info.value.kind == "tls"


def test_verification_off_works_without_warnings(sim):
    # filterwarnings=error turns any InsecureRequestWarning into a failure here.
    with SddcManagerClient(settings_for(sim, ca_pem=None, verify_tls=False)) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS


def test_verification_off_ignores_the_ca_bundle(sim):
    other = generate_certificates(["localhost"]).ca_pem
    with SddcManagerClient(settings_for(sim, ca_pem=other, verify_tls=False)) as client:
        assert len(client.fetch_credentials()) == CREDENTIALS


def test_fetch_certificate_sha256(sim):
    assert fetch_certificate_sha256("127.0.0.1", sim.port) == sim.certificate_sha256
    with pytest.raises(VcfError) as info:
        fetch_certificate_sha256("127.0.0.1", closed_port(), timeout=2)
    assert info.value.kind == "refused"


def test_fingerprint_forms():
    hex64 = "ab" * 32
    assert normalize_fingerprint(":".join(["AB"] * 32)) == hex64
    assert normalize_fingerprint(f"SHA256:{hex64.upper()}") == hex64
    assert format_fingerprint(hex64) == ":".join(["AB"] * 32)
    for bad in ("", "ab" * 31, "zz" * 32, "ab" * 33):
        with pytest.raises(ValueError):
            normalize_fingerprint(bad)


# -- test_connection ---------------------------------------------------------------------


def test_connection_test_success(sim):
    result = test_connection("manager", settings_for(sim))
    assert result.ok and result.credential_count == CREDENTIALS
    assert result.certificate_sha256 == sim.certificate_sha256
    assert sim.hits["GET /v1/credentials"] == 1


def test_connection_test_reports_fingerprint_on_failure(sim):
    result = test_connection("manager", settings_for(sim, password="Nope-Nope-Nope-1"))
    assert not result.ok and result.credential_count is None
    assert "bad credentials" in result.message and "Nope-Nope-Nope-1" not in result.message
    assert result.certificate_sha256 == sim.certificate_sha256
    result = test_connection("installer", installer_settings(sim, ca_pem=None))
    assert not result.ok and result.certificate_sha256 == sim.certificate_sha256


def test_connection_test_installer(sim):
    result = test_connection("installer", installer_settings(sim))
    assert result.ok and result.credential_count == 29


def test_connection_test_unreachable():
    result = test_connection(
        "manager",
        EndpointSettings(host="127.0.0.1", port=closed_port(), username="u", password="p"),
    )
    assert not result.ok and result.certificate_sha256 is None
    assert "connection refused" in result.message


def test_settings_validation():
    with pytest.raises(ValueError):
        EndpointSettings(host="evil.example/path", username="u", password="p")
    with pytest.raises(ValueError):
        EndpointSettings(host="a@b", username="u", password="p")
    with pytest.raises(ValueError):
        EndpointSettings(host="h", username="u", password="p", port=0)
    with pytest.raises(ValueError):
        client_for("cloudbuilder", EndpointSettings(host="h", username="u", password="p"))


def test_clean_text():
    assert clean_text("a\r\nb\u202ec\x00d") == "a b c d"
    assert len(clean_text("x" * 1000)) == 300


# -- VCF Installer ------------------------------------------------------------------------


def _installer_expected(spec: dict) -> set[tuple[str, str, str, str, str, str]]:
    """The mapping of CONTRACT.md 4.2, written out field by field."""
    d = "sfo.rainpole.io"
    nsx = spec["nsxtSpec"]
    ops = spec["vcfOperationsSpec"]
    sm = spec["sddcManagerSpec"]
    rows = {
        (f"{h['hostname']}.{d}", "root", "ESXI", "SSH", "USER", h["credentials"]["password"])
        for h in spec["hostSpecs"]
    }
    vc = spec["vcenterSpec"]
    rows |= {
        (vc["vcenterHostname"], "root", "VCENTER", "SSH", "USER", vc["rootVcenterPassword"]),
        (
            vc["vcenterHostname"],
            "administrator@vsphere.local",
            "PSC",
            "SSO",
            "SYSTEM",
            vc["adminUserSsoPassword"],
        ),
    }
    for host in [m["hostname"] for m in nsx["nsxtManagers"]] + [nsx["vipFqdn"]]:
        rows |= {
            (host, "root", "NSXT_MANAGER", "SSH", "USER", nsx["rootNsxtManagerPassword"]),
            (host, "admin", "NSXT_MANAGER", "API", "USER", nsx["nsxtAdminPassword"]),
            (host, "audit", "NSXT_MANAGER", "AUDIT", "USER", nsx["nsxtAuditPassword"]),
        }
    rows |= {
        (sm["hostname"], "root", "SDDC_MANAGER", "SSH", "USER", sm["rootPassword"]),
        (sm["hostname"], "vcf", "SDDC_MANAGER", "SSH", "USER", sm["sshPassword"]),
        (sm["hostname"], "admin@local", "SDDC_MANAGER", "API", "USER", sm["localUserPassword"]),
        (ops["loadBalancerFqdn"], "admin", "VROPS", "API", "USER", ops["adminUserPassword"]),
    }
    rows |= {
        (n["hostname"], "root", "VROPS", "SSH", "USER", n["rootUserPassword"]) for n in ops["nodes"]
    }
    col = spec["vcfOperationsCollectorSpec"]
    auto = spec["vcfAutomationSpec"]
    rows |= {
        (col["hostname"], "root", "VCF_OPS_CLOUD_PROXY", "SSH", "USER", col["rootUserPassword"]),
        (auto["hostname"], "admin", "VRA", "API", "USER", auto["adminUserPassword"]),
    }
    if "vspClusterSpec" in spec:
        vsp = spec["vspClusterSpec"]
        password = vsp["systemUserPassword"]
        rows |= {
            (vsp["platformFqdn"], "vmware-system-user", "VSP", "SSH", "USER", password),
            (vsp["platformFqdn"], "admin@vsp.local", "VSP", "API", "USER", password),
        }
    if "vcfOperationsFleetManagementSpec" in spec:
        fleet = spec["vcfOperationsFleetManagementSpec"]
        rows |= {
            (fleet["hostname"], "root", "VRSLCM", "SSH", "USER", fleet["rootUserPassword"]),
            (fleet["hostname"], "admin", "VRSLCM", "API", "USER", fleet["adminUserPassword"]),
        }
    return rows


def _rows(creds: list[FetchedCredential]) -> set[tuple[str, str, str, str, str, str]]:
    return {
        (
            c.hostname,
            c.username,
            c.resource_type,
            c.credential_type,
            c.account_type,
            c.password or "",
        )
        for c in creds
    }


def test_installer_maps_every_password_field(sim):
    spec = sim.installer_spec()
    with InstallerClient(installer_settings(sim)) as client:
        creds = client.fetch_credentials()
    assert len(creds) == 29 and len(_rows(creds)) == 29
    assert _rows(creds) == _installer_expected(spec)
    hostnames = {c.hostname for c in creds}
    assert "sfo01-m01-esx01.sfo.rainpole.io" in hostnames
    assert {"sfo-vsp01.sfo.rainpole.io", "sfo-vcfops01.sfo.rainpole.io"} <= hostnames
    assert all(c.source == "installer" and c.domain_names == ("sfo-m01",) for c in creds)
    assert sim.hits["GET /v1/sddcs"] == 1
    assert sim.hits[f"GET /v1/sddcs/{sim.sddc_id}/spec"] == 1


def test_installer_esxi_passwords_match_sddc_manager(sim):
    with InstallerClient(installer_settings(sim)) as client:
        installer = {(c.hostname, c.username): c.password for c in client.fetch_credentials()}
    manager = {
        (e["resource"]["resourceName"], e["username"]): e["password"]
        for e in sim.credentials_snapshot()
    }
    assert (
        installer[("sfo01-m01-esx01.sfo.rainpole.io", "root")]
        == manager[("sfo01-m01-esx01.sfo.rainpole.io", "root")]
    )


def test_installer_90_shape_has_fleet_management():
    with Simulator(credentials=20, installer_version="9.0") as old:
        spec = old.installer_spec()
        with InstallerClient(installer_settings(old)) as client:
            creds = client.fetch_credentials()
    assert "vspClusterSpec" not in spec
    assert _rows(creds) == _installer_expected(spec)
    assert {c.resource_type for c in creds} >= {"VRSLCM"}
    assert "VSP" not in {c.resource_type for c in creds}


def test_installer_skips_tasks_without_spec(caplog):
    with Simulator(credentials=5) as other:
        extra = other.add_installer_task(with_spec=False)
        with InstallerClient(installer_settings(other)) as client:
            assert len(client.fetch_credentials()) == 29
            with pytest.raises(VcfError) as info:
                client.fetch_spec(extra)
        assert info.value.kind == "not_found" and info.value.status == 404
        assert other.hits[f"GET /v1/sddcs/{extra}/spec"] == 2
    assert "has no spec; skipped" in caplog.text


def test_installer_operator_and_bad_password(sim):
    error = fetch_error(installer_settings(sim, password="Not-The-One-123"), "installer")
    assert error.kind == "auth" and "Not-The-One-123" not in str(error)
    settings = installer_settings(
        sim, username=sim.operator_username, password=sim.operator_password
    )
    assert fetch_error(settings, "installer").kind == "forbidden"


def test_installer_malformed_spec(sim):
    sim.inject_failure("malformed", count=1, path_prefix="/v1/sddcs/")
    assert fetch_error(installer_settings(sim), "installer").kind == "malformed"


def test_credentials_from_spec_variants():
    spec = {
        "sddcId": "lab-m01",
        "dnsSpec": {"subdomain": "lab.example"},
        "hostSpecs": [
            {
                "hostname": "esx-1",
                "credentials": [
                    {"username": "root", "password": "Esx-Root-Pass-1!"},
                    {"username": "svc", "password": ""},
                ],
            },
            {"hostname": "esx-2.other.example", "credentials": {"password": "Esx-Two-Pass-2!"}},
        ],
        "vcenterSpec": {
            "vcenterHostname": "vc01",
            "rootVcenterPassword": "Vc-Root-Pass-123",
            "ssoDomain": "corp.local",
            "adminUserSsoUsername": "sso-admin@corp.local",
            "adminUserSsoPassword": "Sso-Admin-Pass-1",
        },
        "vcfOperationsSpec": {
            "nodes": [
                {"hostname": "ops-b.lab.example", "type": "replica"},
                {"hostname": "ops-a.lab.example", "type": "master", "rootUserPassword": None},
            ],
            "adminUserPassword": "Ops-Admin-Pass-12",
        },
        "nsxtSpec": {"nsxtManagers": [], "vipFqdn": "nsx.lab.example"},
    }
    rows = {(c.hostname, c.username, c.resource_type) for c in credentials_from_spec(spec)}
    assert rows == {
        ("esx-1.lab.example", "root", "ESXI"),
        ("esx-2.other.example", "root", "ESXI"),
        ("vc01.lab.example", "root", "VCENTER"),
        ("vc01.lab.example", "sso-admin@corp.local", "PSC"),
        ("ops-a.lab.example", "admin", "VROPS"),
    }
    del spec["vcenterSpec"]["adminUserSsoUsername"]
    users = {c.username for c in credentials_from_spec(spec)}
    assert "administrator@corp.local" in users
    spec["vcenterSpec"]["vcenterHostname"] = ""
    with pytest.raises(VcfError) as info:
        credentials_from_spec(spec)
    assert info.value.kind == "malformed" and "Vc-Root-Pass-123" not in str(info.value)
