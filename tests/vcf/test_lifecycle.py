"""The SDDC Manager client's credential lifecycle against the HTTPS simulator."""

from __future__ import annotations

import json
import logging
import time

import pytest
from support import sim_settings as settings_for

from portal.simulator import Simulator
from portal.vcf import ExpirationCheck, SddcManagerClient, VcfError

SECRET = "Upd4ted-Secret-Pw!"  # noqa: S105 - a test value that must never leak


@pytest.fixture
def sim(caplog):
    """A small simulator per test: tasks hold resources, so tests must not share one."""
    caplog.set_level(logging.DEBUG, logger="portal.vcf")
    with Simulator(credentials=120, seed=31, task_delay=0.05) as simulator:
        yield simulator


@pytest.fixture
def client(sim):
    with SddcManagerClient(settings_for(sim)) as manager:
        yield manager


def hosts(sim: Simulator, n: int, username: str = "root") -> list[dict]:
    """``n`` ESXi credentials of ``username``, each on another host."""
    found = [
        e
        for e in sim.credentials_snapshot()
        if e["resource"]["resourceType"] == "ESXI" and e["username"] == username
    ]
    assert len(found) >= n
    return found[:n]


def elements_for(credentials: list[dict], password: str | None = None) -> list[dict]:
    """ResourceCredentials for ``credentials``."""
    out = []
    for element in credentials:
        credential = {"credentialType": element["credentialType"], "username": element["username"]}
        if password is not None:
            credential["password"] = password
        out.append(
            {
                "resourceName": element["resource"]["resourceName"],
                "resourceType": element["resource"]["resourceType"],
                "credentials": [credential],
            }
        )
    return out


def wait(client: SddcManagerClient, task_id: str, timeout: float = 5.0) -> dict:
    """Poll credentials_task until the task leaves IN_PROGRESS."""
    deadline = time.monotonic() + timeout
    while True:
        task = client.credentials_task(task_id)
        if task["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return task
        time.sleep(0.02)


def passwords_now(sim: Simulator) -> dict[str, str]:
    """Credential id to current password."""
    return {e["id"]: e["password"] for e in sim.credentials_snapshot()}


def assert_nothing_leaks(text: str, *secrets: str) -> None:
    """None of ``secrets`` (nor any task password field) appears in ``text``."""
    for secret in secrets:
        assert secret not in text
    assert "oldPassword" not in text and "newPassword" not in text


# -- operations ---------------------------------------------------------------------------


def test_rotate_one_and_five(sim, client, caplog):
    before = passwords_now(sim)
    one, *five = hosts(sim, 6)
    first = client.update_credentials("ROTATE", elements_for([one]))
    batch = client.update_credentials("ROTATE", elements_for(five))
    assert first["status"] == "IN_PROGRESS" and isinstance(first["id"], str)
    for task in (first, batch):
        done = wait(client, task["id"])
        assert done["status"] == "SUCCESSFUL"
        assert {s["status"] for s in done["subTasks"]} == {"SUCCESSFUL"}
        assert_nothing_leaks(json.dumps(done))
    assert len(wait(client, batch["id"])["subTasks"]) == 5
    fetched = {c.remote_id: c.password for c in client.fetch_credentials()}
    for element in [one, *five]:
        assert fetched[element["id"]] != before[element["id"]]
        assert fetched[element["id"]] == passwords_now(sim)[element["id"]]
    changed = {cid for cid, pw in fetched.items() if pw != before[cid]}
    assert changed == {e["id"] for e in [one, *five]}
    assert "PATCH /v1/credentials -> 202" in caplog.text
    for element in [one, *five]:
        assert_nothing_leaks(caplog.text, before[element["id"]], fetched[element["id"]])


def test_update_remediate_and_auto_rotate(sim, client, caplog):
    updated, remediated, policy = hosts(sim, 3)
    task = client.update_credentials("UPDATE", elements_for([updated], SECRET))
    assert wait(client, task["id"])["status"] == "SUCCESSFUL"
    task = client.update_credentials("REMEDIATE", elements_for([remediated], SECRET + "2"))
    assert wait(client, task["id"])["status"] == "SUCCESSFUL"
    task = client.update_credentials(
        "UPDATE_AUTO_ROTATE_POLICY",
        elements_for([policy]),
        {"enableAutoRotatePolicy": True, "frequencyInDays": 45},
    )
    assert wait(client, task["id"])["status"] == "SUCCESSFUL"
    now = passwords_now(sim)
    assert now[updated["id"]] == SECRET and now[remediated["id"]] == SECRET + "2"
    fetched = {c.remote_id: c for c in client.fetch_credentials()}
    assert fetched[policy["id"]].auto_rotate_days == 45
    assert fetched[policy["id"]].password == policy["password"]
    assert_nothing_leaks(caplog.text, SECRET)


def test_a_failed_resource_is_reported_retried_and_cancelled(sim, client, caplog):
    good, bad, other = hosts(sim, 3)
    name = bad["resource"]["resourceName"]
    # The server echoes the password it was sent: the client must not pass it on.
    sim.inject_credential_fault(name, "fail", "UPDATE", f"rejected password {SECRET}", count=1)
    task = client.update_credentials("UPDATE", elements_for([good, bad], SECRET))
    done = wait(client, task["id"])
    assert done["status"] == "FAILED"
    failed = [s for s in done["subTasks"] if s["status"] == "FAILED"]
    assert [s["resourceName"] for s in failed] == [name]
    assert failed[0]["errors"][0]["message"] == "rejected password ***"
    assert_nothing_leaks(json.dumps(done), SECRET)
    assert passwords_now(sim)[bad["id"]] == bad["password"]

    # The failed task holds its resource: a new operation on it is refused.
    with pytest.raises(VcfError) as info:
        client.update_credentials("ROTATE", elements_for([bad]))
    assert info.value.kind == "rejected" and info.value.status == 400
    assert "already in progress" in str(info.value)

    retried = client.retry_credentials_task(task["id"], "UPDATE", elements_for([bad], SECRET))
    assert retried["status"] == "IN_PROGRESS" and retried["id"] == task["id"]
    assert wait(client, task["id"])["status"] == "SUCCESSFUL"
    assert passwords_now(sim)[bad["id"]] == SECRET

    sim.inject_credential_fault(other["resource"]["resourceName"], "fail", "ROTATE", "down", 2)
    task = client.update_credentials("ROTATE", elements_for([other]))
    assert wait(client, task["id"])["status"] == "FAILED"
    client.retry_credentials_task(task["id"])  # rebuilt from the failed sub-tasks
    assert wait(client, task["id"])["status"] == "FAILED"
    cancelled = client.cancel_credentials_task(task["id"])
    assert cancelled["status"] == "CANCELLED" and not cancelled["isRetryable"]
    assert client.credentials_task(task["id"])["status"] == "USER_CANCELLED"
    with pytest.raises(VcfError) as info:
        client.cancel_credentials_task(task["id"])
    assert info.value.kind == "rejected"
    recent = client.credentials_tasks(limit=2)
    assert [t["id"] for t in recent][0] == task["id"] and len(recent) == 2
    assert_nothing_leaks(caplog.text, SECRET)


def test_refusals_carry_the_error_code_and_never_the_password(sim, client, caplog):
    (element,) = hosts(sim, 1)
    name = element["resource"]["resourceName"]
    sim.inject_credential_fault(name, "inactive", message=f"{name} is down; tried {SECRET}")
    with pytest.raises(VcfError) as info:
        client.update_credentials("UPDATE", elements_for([element], SECRET))
    error = info.value
    assert error.kind == "rejected" and error.error_code == "RESOURCE_IS_NOT_IN_ACTIVE_STATE"
    assert "***" in str(error) and SECRET not in str(error)
    assert SECRET not in repr(error.args) and SECRET not in caplog.text


def test_ten_operations_at_once_then_rate_limited(sim, client):
    sim.task_delay = 30
    elements = hosts(sim, 11)
    for element in elements[:10]:
        client.update_credentials("ROTATE", elements_for([element]))
    with pytest.raises(VcfError) as info:
        client.update_credentials("ROTATE", elements_for(elements[-1:]))
    assert info.value.kind == "rate_limited" and info.value.status == 403
    assert "10 concurrent" in str(info.value)
    sim.settle_tasks()
    assert client.update_credentials("ROTATE", elements_for(elements[-1:]))["id"]


def test_changes_are_never_sent_twice(sim, client):
    (element,) = hosts(sim, 1)
    client.credentials_tasks()  # logged in
    sim.inject_failure("500", path_prefix="/v1/credentials")
    with pytest.raises(VcfError) as info:
        client.update_credentials("ROTATE", elements_for([element]))
    assert info.value.kind == "server"
    assert sim.hits["PATCH /v1/credentials"] == 1
    sim.revoke_tokens()  # a 401 is safe to answer with a fresh login and one more try
    assert client.update_credentials("ROTATE", elements_for([element]))["id"]
    assert sim.hits["PATCH /v1/credentials"] == 3


def test_operator_and_bad_arguments(sim, client):
    (element,) = hosts(sim, 1)
    operator = settings_for(sim, username=sim.operator_username, password=sim.operator_password)
    with SddcManagerClient(operator) as other, pytest.raises(VcfError) as info:
        other.update_credentials("ROTATE", elements_for([element]))
    assert info.value.kind == "forbidden"
    with pytest.raises(ValueError):
        client.update_credentials("DELETE", elements_for([element]))
    with pytest.raises(ValueError):
        client.update_credentials("UPDATE_AUTO_ROTATE_POLICY", elements_for([element]))
    with pytest.raises(ValueError):
        client.update_credentials("ROTATE", [])
    with pytest.raises(ValueError):
        client.credentials_task("")
    with pytest.raises(VcfError) as info:
        client.credentials_task("../../v1/credentials")
    assert info.value.kind == "not_found"
    assert sim.hits["PATCH /v1/credentials"] == 1


# -- expirations --------------------------------------------------------------------------


def poll_expirations(client, check_id: str, timeout: float = 5.0) -> ExpirationCheck:
    """Poll expirations() until the check is done."""
    deadline = time.monotonic() + timeout
    while True:
        check = client.expirations(check_id)
        if check.done or time.monotonic() > deadline:
            return check
        time.sleep(0.02)


def test_expirations(sim, client):
    sim.task_delay = 600  # it stays IN_PROGRESS until settled, however slow this machine is
    check_id = client.start_expirations("ESXI")
    first = client.expirations(check_id)
    assert first.status == "IN_PROGRESS" and first.elements == ()
    sim.task_delay = 0.05
    sim.settle_tasks()
    check = poll_expirations(client, check_id)
    assert check.status == "COMPLETED" and check.id == check_id
    esxi = {e["id"] for e in sim.credentials_snapshot() if e["resource"]["resourceType"] == "ESXI"}
    assert {e.credential_id for e in check.elements} == esxi
    assert {e.status for e in check.elements} == {"ACTIVE", "EXPIRING", "EXPIRED"}
    assert all(e.expiry_date and e.resource_type == "ESXI" for e in check.elements)
    fetched = {c.remote_id: c for c in client.fetch_credentials()}
    sample = check.elements[0]
    assert fetched[sample.credential_id].expiry_date == sample.expiry_date

    wanted = sorted(esxi)[:2]
    check = poll_expirations(client, client.start_expirations("ESXI", credential_ids=wanted))
    assert sorted(e.credential_id for e in check.elements) == wanted


def test_expirations_partial_failure_and_429(sim, client):
    (element,) = hosts(sim, 1)
    name = element["resource"]["resourceName"]
    sim.inject_credential_fault(name, "fail", "EXPIRATION", "Unable to connect\nto host")
    check = poll_expirations(client, client.start_expirations("ESXI"))
    assert check.status == "COMPLETED"
    failed = [e for e in check.elements if e.error]
    assert {e.resource_name for e in failed} == {name}
    assert failed[0].error == "Unable to connect to host"  # control characters cleaned
    assert failed[0].connectivity_status == "ERROR"

    sim.inject_failure("429", path_prefix="/v1/credentials/expirations", delay=2)
    with pytest.raises(VcfError) as info:
        client.start_expirations("VCENTER")
    assert info.value.kind == "rate_limited" and info.value.retry_after == 2
    assert info.value.status == 429
    assert sim.hits["POST /v1/credentials/expirations"] == 2  # not retried by the client
    assert client.start_expirations("VCENTER")
    with pytest.raises(ValueError):
        client.start_expirations("")
    with pytest.raises(VcfError) as info:
        client.expirations("no-such-check")
    assert info.value.kind == "not_found"
