"""The simulator's credential lifecycle: password tasks, retry and cancel, expiry checks."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import requests
from support import update_spec as spec_for

from portal.simulator import Simulator
from portal.simulator.lifecycle import LIMIT_MESSAGE, MAX_CONCURRENT


@pytest.fixture
def sim():
    """A small simulator per test: tasks hold resources, so tests must not share one."""
    with Simulator(credentials=80, seed=21, control=True, task_delay=0.05) as simulator:
        yield simulator


@pytest.fixture
def http(sim, tmp_path: Path):
    """A session that trusts the simulator's CA and sends an admin token."""
    ca = tmp_path / "ca.pem"
    ca.write_text(sim.ca_pem, encoding="ascii")
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca)
    token = session.post(
        f"{sim.url}/v1/tokens",
        json={"username": sim.admin_username, "password": sim.admin_password},
    ).json()["accessToken"]
    session.headers["Authorization"] = f"Bearer {token}"
    yield session
    session.close()


def pick(sim: Simulator, rtype: str = "ESXI", n: int = 1, username: str = "root") -> list[dict]:
    """``n`` credentials of one type and user, each on another resource."""
    found, names = [], set()
    for element in sim.credentials_snapshot():
        name = element["resource"]["resourceName"]
        if (
            element["resource"]["resourceType"] == rtype
            and element["username"] == username
            and name not in names
        ):
            found.append(element)
            names.add(name)
    assert len(found) >= n
    return found[:n]


def wait_task(sim, http, task_id: str, timeout: float = 5.0) -> dict:
    """Poll GET /v1/credentials/tasks/{id} until the task leaves IN_PROGRESS."""
    deadline = time.monotonic() + timeout
    while True:
        task = http.get(f"{sim.url}/v1/credentials/tasks/{task_id}").json()
        if task["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return task
        time.sleep(0.02)


def wait_expiration(sim, http, check_id: str, timeout: float = 5.0) -> dict:
    """Poll GET /v1/credentials/expirations/{id} until it leaves IN_PROGRESS."""
    deadline = time.monotonic() + timeout
    while True:
        check = http.get(f"{sim.url}/v1/credentials/expirations/{check_id}").json()
        if check["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return check
        time.sleep(0.02)


def current(sim, http, element: dict) -> dict:
    """The credential as GET /v1/credentials (filtered) answers it now."""
    page = http.get(
        f"{sim.url}/v1/credentials",
        params={"resourceName": element["resource"]["resourceName"]},
    ).json()
    return next(e for e in page["elements"] if e["id"] == element["id"])


# -- tasks -------------------------------------------------------------------------------


def test_rotate_progresses_and_changes_the_password(sim, http):
    sim.task_delay = 0.3
    (element,) = pick(sim)
    response = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [element]))
    assert response.status_code == 202
    task = response.json()
    assert task["status"] == "IN_PROGRESS" and task["type"] == "CREDENTIALS_ROTATE"
    assert "oldPassword" not in response.text and element["password"] not in response.text
    running = http.get(f"{sim.url}/v1/credentials/tasks/{task['id']}").json()
    assert running["status"] == "IN_PROGRESS" and running["type"] == "ROTATE"
    assert current(sim, http, element)["password"] == element["password"]
    done = wait_task(sim, http, task["id"])
    assert done["status"] == "SUCCESSFUL" and done["completionTimestamp"]
    (sub,) = done["subTasks"]
    assert sub["status"] == "SUCCESSFUL" and sub["username"] == "root"
    assert sub["resourceName"] == element["resource"]["resourceName"]
    after = current(sim, http, element)
    assert after["password"] != element["password"]
    assert sub["oldPassword"] == element["password"] and sub["newPassword"] == after["password"]
    assert after["modificationTimestamp"] > element["modificationTimestamp"]
    generic = http.get(f"{sim.url}/v1/tasks/{task['id']}").json()
    assert generic["status"] == "SUCCESSFUL" and not generic["isRetryable"]
    assert after["password"] not in str(generic)


def test_the_inventory_changes_without_anybody_polling(sim, http):
    elements = pick(sim, n=3)
    task = http.patch(
        f"{sim.url}/v1/credentials", json=spec_for("UPDATE", elements, "N3w-Passw0rd!x")
    ).json()
    time.sleep(0.1)
    page = http.get(f"{sim.url}/v1/credentials").json()["elements"]
    changed = {e["id"]: e["password"] for e in page if e["id"] in {x["id"] for x in elements}}
    assert set(changed.values()) == {"N3w-Passw0rd!x"}
    assert wait_task(sim, http, task["id"])["status"] == "SUCCESSFUL"


def test_remediate_takes_one_account_and_the_given_password(sim, http):
    first, second = pick(sim, n=2)
    refused = http.patch(
        f"{sim.url}/v1/credentials", json=spec_for("REMEDIATE", [first, second], "Rem3diated!pw")
    )
    assert refused.status_code == 400 and "one account" in refused.json()["message"]
    no_password = http.patch(f"{sim.url}/v1/credentials", json=spec_for("REMEDIATE", [first]))
    assert no_password.status_code == 400
    task = http.patch(
        f"{sim.url}/v1/credentials", json=spec_for("REMEDIATE", [first], "Rem3diated!pw")
    ).json()
    assert wait_task(sim, http, task["id"])["status"] == "SUCCESSFUL"
    assert current(sim, http, first)["password"] == "Rem3diated!pw"


def test_auto_rotate_policy_is_set_and_removed(sim, http):
    (element,) = pick(sim, "VCENTER")
    on = {"enableAutoRotatePolicy": True, "frequencyInDays": 30}
    task = http.patch(
        f"{sim.url}/v1/credentials",
        json=spec_for("UPDATE_AUTO_ROTATE_POLICY", [element], autoRotatePolicy=on),
    ).json()
    done = wait_task(sim, http, task["id"])
    assert done["status"] == "SUCCESSFUL" and "newPassword" not in str(done)
    policy = current(sim, http, element)["autoRotatePolicy"]
    assert policy["frequencyInDays"] == 30
    next_run = dt.datetime.fromisoformat(policy["nextSchedule"].replace("Z", "+00:00"))
    assert dt.timedelta(days=29) < next_run - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(30)
    assert current(sim, http, element)["password"] == element["password"]
    off = {"enableAutoRotatePolicy": False}
    task = http.patch(
        f"{sim.url}/v1/credentials",
        json=spec_for("UPDATE_AUTO_ROTATE_POLICY", [element], autoRotatePolicy=off),
    ).json()
    assert wait_task(sim, http, task["id"])["status"] == "SUCCESSFUL"
    assert "autoRotatePolicy" not in current(sim, http, element)
    for bad in ({"enableAutoRotatePolicy": True, "frequencyInDays": 0}, {}, None):
        body = spec_for("UPDATE_AUTO_ROTATE_POLICY", [element], autoRotatePolicy=bad)
        assert http.patch(f"{sim.url}/v1/credentials", json=body).status_code == 400


def test_one_resource_fails_the_others_change(sim, http):
    elements = pick(sim, n=3)
    bad = elements[1]["resource"]["resourceName"]
    sim.inject_credential_fault(bad, "fail", "ROTATE", "Unable to connect to host: timed out", 1)
    task = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", elements)).json()
    done = wait_task(sim, http, task["id"])
    assert done["status"] == "FAILED"
    states = {s["resourceName"]: s["status"] for s in done["subTasks"]}
    assert states[bad] == "FAILED" and list(states.values()).count("SUCCESSFUL") == 2
    failed = next(s for s in done["subTasks"] if s["status"] == "FAILED")
    assert failed["errors"][0]["message"] == "Unable to connect to host: timed out"
    assert "newPassword" not in failed
    assert done["errors"][0]["message"] == "Unable to connect to host: timed out"
    assert current(sim, http, elements[1])["password"] == elements[1]["password"]
    assert current(sim, http, elements[0])["password"] != elements[0]["password"]
    generic = http.get(f"{sim.url}/v1/tasks/{task['id']}").json()
    assert generic["isRetryable"] and generic["isCancellable"]

    # A FAILED task keeps its resources until it is retried or cancelled.
    again = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [elements[1]]))
    assert again.status_code == 400
    assert "already in progress" in again.json()["message"]

    retried = http.patch(
        f"{sim.url}/v1/credentials/tasks/{task['id']}", json=spec_for("ROTATE", [elements[1]])
    )
    assert retried.status_code == 202 and retried.json()["status"] == "IN_PROGRESS"
    done = wait_task(sim, http, task["id"])
    assert done["status"] == "SUCCESSFUL"
    assert current(sim, http, elements[1])["password"] != elements[1]["password"]
    refused = http.patch(
        f"{sim.url}/v1/credentials/tasks/{task['id']}", json=spec_for("ROTATE", elements)
    )
    assert refused.status_code == 400


def test_retry_of_an_update_takes_a_new_password(sim, http):
    (element,) = pick(sim, "NSXT_MANAGER", username="admin")
    name = element["resource"]["resourceName"]
    sim.inject_credential_fault(name, "fail", "UPDATE", "Password does not meet the rules", 1)
    spec = spec_for("UPDATE", [element], "weak")
    task = http.patch(f"{sim.url}/v1/credentials", json=spec).json()
    assert wait_task(sim, http, task["id"])["status"] == "FAILED"
    assert current(sim, http, element)["password"] == element["password"]
    wrong_type = http.patch(
        f"{sim.url}/v1/credentials/tasks/{task['id']}", json=spec_for("ROTATE", [element])
    )
    assert wrong_type.status_code == 400
    http.patch(
        f"{sim.url}/v1/credentials/tasks/{task['id']}",
        json=spec_for("UPDATE", [element], "Str0nger-Passw0rd!"),
    )
    assert wait_task(sim, http, task["id"])["status"] == "SUCCESSFUL"
    assert current(sim, http, element)["password"] == "Str0nger-Passw0rd!"


def test_cancel_frees_the_resource(sim, http):
    (element,) = pick(sim)
    name = element["resource"]["resourceName"]
    sim.inject_credential_fault(name, "fail", None, "boom")
    task = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [element])).json()
    assert wait_task(sim, http, task["id"])["status"] == "FAILED"
    cancelled = http.delete(f"{sim.url}/v1/credentials/tasks/{task['id']}")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"
    view = http.get(f"{sim.url}/v1/credentials/tasks/{task['id']}").json()
    assert view["status"] == "USER_CANCELLED"
    assert {s["status"] for s in view["subTasks"]} == {"USER_CANCELLED"}
    assert http.delete(f"{sim.url}/v1/credentials/tasks/{task['id']}").status_code == 400
    sim.clear_failures()
    task = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [element])).json()
    assert wait_task(sim, http, task["id"])["status"] == "SUCCESSFUL"


def test_only_failed_tasks_are_retried_or_cancelled(sim, http):
    sim.task_delay = 30
    (element,) = pick(sim)
    task = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [element])).json()
    url = f"{sim.url}/v1/credentials/tasks/{task['id']}"
    assert http.delete(url).status_code == 400
    assert http.patch(url, json=spec_for("ROTATE", [element])).status_code == 400
    assert http.get(f"{sim.url}/v1/tasks/{task['id']}").json()["isCancellable"] is False
    sim.settle_tasks()
    assert http.get(url).json()["status"] == "SUCCESSFUL"
    for missing in (
        http.get(f"{sim.url}/v1/credentials/tasks/nope"),
        http.delete(f"{sim.url}/v1/credentials/tasks/nope"),
        http.patch(f"{sim.url}/v1/credentials/tasks/nope", json=spec_for("ROTATE", [element])),
        http.get(f"{sim.url}/v1/tasks/nope"),
    ):
        assert missing.status_code == 404 and missing.json()["message"]


def test_inactive_and_busy_resources_are_refused(sim, http):
    first, second = pick(sim, n=2)
    sim.inject_credential_fault(first["resource"]["resourceName"], "inactive")
    refused = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [first, second]))
    assert refused.status_code == 400
    assert refused.json()["errorCode"] == "RESOURCE_IS_NOT_IN_ACTIVE_STATE"
    sim.clear_failures()
    sim.inject_credential_fault(second["resource"]["resourceName"], "busy", count=1)
    busy = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [second]))
    assert busy.status_code == 400 and "already in progress" in busy.json()["message"]
    assert http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [second])).ok
    assert http.get(f"{sim.url}/v1/credentials/tasks").json()["pageMetadata"]["totalElements"] == 1


def test_at_most_ten_operations_at_once(sim, http):
    sim.task_delay = 30
    elements = pick(sim, n=MAX_CONCURRENT + 1)
    for element in elements[:MAX_CONCURRENT]:
        response = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [element]))
        assert response.status_code == 202
    refused = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", elements[-1:]))
    assert refused.status_code == 403 and refused.json()["message"] == LIMIT_MESSAGE
    page = http.get(f"{sim.url}/v1/credentials/tasks", params={"limit": "3"}).json()
    assert len(page["elements"]) == 3
    assert {t["status"] for t in page["elements"]} == {"IN_PROGRESS"}
    sim.settle_tasks()
    assert http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", elements[-1:])).ok


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"operationType": "DELETE", "elements": []},
        {"operationType": "ROTATE", "elements": []},
        {"operationType": "ROTATE", "elements": [{"resourceType": "ESXI"}]},
        {
            "operationType": "ROTATE",
            "elements": [
                {
                    "resourceName": "nope.rainpole.io",
                    "resourceType": "ESXI",
                    "credentials": [{"username": "root"}],
                }
            ],
        },
    ],
)
def test_bad_update_specs_get_400(sim, http, body):
    response = http.patch(f"{sim.url}/v1/credentials", json=body)
    assert response.status_code == 400 and response.json()["message"]


def test_update_needs_a_password_and_each_credential_once(sim, http):
    (element,) = pick(sim)
    twice = spec_for("ROTATE", [element, element])
    assert http.patch(f"{sim.url}/v1/credentials", json=twice).status_code == 400
    missing = http.patch(f"{sim.url}/v1/credentials", json=spec_for("UPDATE", [element]))
    assert missing.status_code == 400


def test_lifecycle_needs_an_admin_token(sim, http):
    (element,) = pick(sim)
    anonymous = requests.patch(
        f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [element]), verify=http.verify
    )
    assert anonymous.status_code == 401
    token = http.post(
        f"{sim.url}/v1/tokens",
        json={"username": sim.operator_username, "password": sim.operator_password},
    ).json()["accessToken"]
    operator = {"Authorization": f"Bearer {token}"}
    for method, path in (
        ("PATCH", "/v1/credentials"),
        ("GET", "/v1/credentials/tasks"),
        ("POST", "/v1/credentials/expirations"),
    ):
        response = http.request(
            method, f"{sim.url}{path}", json=spec_for("ROTATE", [element]), headers=operator
        )
        assert response.status_code == 403, path
    assert http.put(f"{sim.url}/v1/credentials/tasks").status_code == 405


# -- expirations -------------------------------------------------------------------------


def test_expirations_are_deterministic_and_spread(sim, http, tmp_path):
    response = http.post(f"{sim.url}/v1/credentials/expirations", json={"resourceType": "ESXI"})
    assert response.status_code == 202
    started = response.json()
    assert started["status"] == "IN_PROGRESS" and started["elements"] == []
    done = wait_expiration(sim, http, started["id"])
    assert done["status"] == "COMPLETED"
    esxi = [e for e in sim.credentials_snapshot() if e["resource"]["resourceType"] == "ESXI"]
    assert {e["id"] for e in done["elements"]} == {e["id"] for e in esxi}
    now = dt.datetime.now(dt.timezone.utc)
    left = {}
    for element in done["elements"]:
        expiry = element["expiry"]
        date = dt.datetime.fromisoformat(expiry["expiryDate"].replace("Z", "+00:00"))
        left[element["id"]] = (date - now).days
        expected = "EXPIRED" if date < now else "EXPIRING" if date - now <= dt.timedelta(14) else ""
        assert expiry["status"] == (expected or "ACTIVE")
    statuses = {e["expiry"]["status"] for e in done["elements"]}
    assert statuses == {"EXPIRED", "EXPIRING", "ACTIVE"}
    assert any(days > 30 for days in left.values())
    # GET /v1/credentials reports what the check found.
    first = done["elements"][0]
    assert current(sim, http, first)["expiry"] == first["expiry"]

    with Simulator(credentials=80, seed=21) as twin:
        twin.task_delay = 0
        ca = tmp_path / "twin.pem"
        ca.write_text(twin.ca_pem, encoding="ascii")
        other = requests.Session()
        other.trust_env = False
        other.verify = str(ca)
        token = other.post(
            f"{twin.url}/v1/tokens",
            json={"username": twin.admin_username, "password": twin.admin_password},
        ).json()["accessToken"]
        other.headers["Authorization"] = f"Bearer {token}"
        check = other.post(
            f"{twin.url}/v1/credentials/expirations", json={"resourceType": "ESXI"}
        ).json()
        again = wait_expiration(twin, other, check["id"])
        other.close()
    assert {e["id"]: e["expiry"]["expiryDate"][:10] for e in again["elements"]} == {
        e["id"]: e["expiry"]["expiryDate"][:10] for e in done["elements"]
    }


def test_expirations_filter_by_domain_and_ids(sim, http):
    esxi = [e for e in sim.credentials_snapshot() if e["resource"]["resourceType"] == "ESXI"]
    wanted = [esxi[0]["id"], esxi[-1]["id"]]
    check = http.post(
        f"{sim.url}/v1/credentials/expirations",
        json={"resourceType": "ESXI", "credentialIds": wanted},
    ).json()
    assert sorted(e["id"] for e in wait_expiration(sim, http, check["id"])["elements"]) == sorted(
        wanted
    )
    check = http.post(
        f"{sim.url}/v1/credentials/expirations",
        json={"resourceType": "ESXI", "domainName": "sfo-m01"},
    ).json()
    elements = wait_expiration(sim, http, check["id"])["elements"]
    assert elements and {e["resource"]["domainNames"][0] for e in elements} == {"sfo-m01"}
    for bad in ({}, {"resourceType": "TOASTER"}, {"resourceType": "ESXI", "credentialIds": "x"}):
        response = http.post(f"{sim.url}/v1/credentials/expirations", json=bad)
        assert response.status_code == 400
    assert http.get(f"{sim.url}/v1/credentials/expirations/nope").status_code == 404


def test_expirations_partial_and_total_failure(sim, http):
    host = pick(sim)[0]["resource"]["resourceName"]
    sim.inject_credential_fault(host, "fail", "EXPIRATION", "Unable to connect to host")
    check = http.post(f"{sim.url}/v1/credentials/expirations", json={"resourceType": "ESXI"}).json()
    done = wait_expiration(sim, http, check["id"])
    assert done["status"] == "COMPLETED"
    failed = [e for e in done["elements"] if e.get("errors")]
    assert {e["resource"]["resourceName"] for e in failed} == {host}
    assert failed[0]["expiry"]["connectivityStatus"] == "ERROR"
    assert failed[0]["errors"][0]["message"] == "Unable to connect to host"
    sim.inject_credential_fault("*", "fail", "EXPIRATION")
    check = http.post(
        f"{sim.url}/v1/credentials/expirations", json={"resourceType": "VCENTER"}
    ).json()
    assert wait_expiration(sim, http, check["id"])["status"] == "FAILED"


def test_expirations_answer_429_with_retry_after(sim, http):
    sim.inject_failure("429", count=2, path_prefix="/v1/credentials/expirations", delay=3)
    url = f"{sim.url}/v1/credentials/expirations"
    for _ in range(2):
        response = http.post(url, json={"resourceType": "ESXI"})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3" and response.json()["message"]
    assert http.post(url, json={"resourceType": "ESXI"}).status_code == 202


def test_control_api_drives_the_lifecycle(sim, http):
    control = f"{sim.url}/_sim/control"
    (element,) = pick(sim)
    name = element["resource"]["resourceName"]
    assert http.post(control, json={"action": "task_delay", "seconds": 30}).ok
    assert (
        http.post(
            control,
            json={
                "action": "credential_fault",
                "resource": name,
                "kind": "fail",
                "operation": "ROTATE",
                "message": "simulated",
                "count": 1,
            },
        ).status_code
        == 200
    )
    task = http.patch(f"{sim.url}/v1/credentials", json=spec_for("ROTATE", [element])).json()
    stats = http.get(f"{sim.url}/_sim/stats").json()
    assert stats["credential_tasks"]["IN_PROGRESS"] == 1 and stats["task_delay"] == 30
    assert http.post(control, json={"action": "settle_tasks"}).ok
    done = http.get(f"{sim.url}/v1/credentials/tasks/{task['id']}").json()
    assert done["status"] == "FAILED" and done["errors"][0]["message"] == "simulated"
    for bad in (
        {"action": "credential_fault", "resource": name, "kind": "melt"},
        {"action": "credential_fault", "resource": name, "operation": "DELETE"},
        {"action": "credential_fault"},
        {"action": "task_delay", "seconds": -1},
        {"action": "fail", "mode": "429", "count": 0},
    ):
        assert http.post(control, json=bad).status_code == 400, bad
