"""Dual control inside the soak (`bench/soak.py --dual-control`): a global rule makes every
ESXi root need approval and every vCenter root need a check-out, so the portal's 30-second
control job, the rotation queue and the needs-attention review run over the whole estate
while operators sign in, search and reveal. Beside the operators:

- four eyes: one operator asks for an ESXi root, the admin approves, the operator reveals
  it inside the window and ends it, over and over;
- check-out: one operator checks out a vCenter root, reveals it, checks it in, and waits for
  the rotation through SDDC Manager that follows (queued behind the bulk rotations of the
  soak, one action per environment);
- the operators' reveals of sensitive credentials are refused (403), as the rule says.
"""

from __future__ import annotations

import itertools
import threading
import time

import requests

RULES = [
    {"resource_type": "ESXI", "username": "root", "requires": ["approval"]},
    {"resource_type": "VCENTER", "username": "root", "requires": ["checkout"]},
]
ROTATION_WAIT_SECONDS = 600


def set_rules(url: str, admin) -> None:
    """The global rules of the run (the admin signed in a moment ago: a recent sign-in)."""
    answer = admin.put(f"{url}/api/v1/policies", json={"rules": RULES})
    assert answer.status_code == 200, answer.text[:300]


def credentials(url: str, session, env_id: int, query: str) -> list[dict]:
    """Every credential of the environment that `query` finds, page by page."""
    items, page = [], 1
    while True:
        answer = session.get(
            f"{url}/api/v1/environments/{env_id}/credentials",
            params={"per_page": 500, "q": query, "page": page},
        ).json()
        items += answer["items"]
        if len(items) >= answer["total"] or not answer["items"]:
            return items
        page += 1


def _post(figures, operation: str, session, url: str, body: dict, expect=(200,)):
    """One timed POST; its JSON, or None when it failed (counted by the figures)."""
    answer = figures.timed(operation, lambda: session.post(url, json=body), expect=expect)
    if answer is None or answer.status_code not in expect:
        return None
    return answer.json()


def four_eyes(url: str, requester, approver, figures, ids: list[int], stop) -> None:
    """Ask, approve, reveal in the window, end it: each step timed."""
    for cred in itertools.cycle(ids):
        if stop.wait(2):
            return
        ask = {"reason": "soak: four eyes", "minutes": 5}
        credential = f"{url}/api/v1/credentials/{cred}"
        asked = _post(
            figures, "ask access", requester, f"{credential}/access-requests", ask, (201,)
        )
        if asked is None:
            continue
        request = f"{url}/api/v1/access-requests/{asked['id']}"
        if _post(figures, "approve", approver, f"{request}/approve", {}):
            _post(figures, "reveal in window", requester, f"{credential}/reveal", {})
        _post(figures, "end window", requester, f"{request}/revoke", {})


def checkouts(url: str, holder, figures, ids: list[int], stop) -> None:
    """Check out, reveal, check in, then wait for the rotation that follows to succeed."""
    for cred in itertools.cycle(ids):
        if stop.wait(2):
            return
        take = {"minutes": 5, "reason": "soak: runbook"}
        credential = f"{url}/api/v1/credentials/{cred}"
        taken = _post(figures, "check out", holder, f"{credential}/checkout", take, (201,))
        if taken is None:
            continue
        _post(figures, "reveal held", holder, f"{credential}/reveal", {})
        checkin = f"{url}/api/v1/checkouts/{taken['id']}/checkin"
        if _post(figures, "check in", holder, checkin, {}) is not None:
            _wait_for_rotation(url, holder, figures, cred, stop)


def _wait_for_rotation(url: str, session, figures, cred: int, stop) -> None:
    """Time from the check-in to the credential leaving the rotation queue (rotated)."""
    started = time.perf_counter()
    deadline = time.monotonic() + ROTATION_WAIT_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            owed = session.get(f"{url}/api/v1/needs-rotation").json()["items"]
        except (requests.RequestException, ValueError, KeyError):
            owed = None
        if owed is not None and all(item["credential_id"] != cred for item in owed):
            with figures.lock:
                figures.times["rotated after check-in"].append(time.perf_counter() - started)
            return
        time.sleep(1)
    if not stop.is_set():
        with figures.lock:
            figures.errors["check-in rotation: not done in 10 min"] += 1


def refused_reveal(url: str, session, figures, cred: int) -> None:
    """An operator's reveal of a sensitive credential: refused, as the rule says."""
    figures.timed(
        "refused reveal",
        lambda: session.post(f"{url}/api/v1/credentials/{cred}/reveal", json={}),
        expect=(403,),
    )


def start(front, admin, operators, sign_in, figures, env_id: int, stop) -> tuple[list, list]:
    """The rules, the credentials they mark, and the two threads; returns (threads, the
    sensitive ids the operators try now and then)."""
    set_rules(front.url, admin)
    esxi = [
        c["id"]
        for c in credentials(front.url, admin, env_id, "root")
        if c["resource_type"] == "ESXI" and c["username"] == "root"
    ]
    vcenters = [
        c["id"]
        for c in credentials(front.url, admin, env_id, "root")
        if c["resource_type"] == "VCENTER" and c["username"] == "root"
    ]
    (first, first_otp), (second, second_otp) = operators[0], operators[1]
    requester = sign_in(first, first_otp)
    holder = sign_in(second, second_otp)
    print(
        f"dual control: {len(esxi)} ESXi roots need approval, "
        f"{len(vcenters)} vCenter roots a check-out"
    )
    threads = [
        threading.Thread(
            target=four_eyes, args=(front.url, requester, admin, figures, esxi[:50], stop)
        ),
        threading.Thread(target=checkouts, args=(front.url, holder, figures, vcenters, stop)),
    ]
    return threads, esxi
