"""Every /api/v1 operation fuzzed by schemathesis against the running portal (Gunicorn over
HTTPS) with an admin token: no answer is a server error, and every answer matches the
description (status, content type, body schema).

Nothing leaves the machine: a generated host name the portal would accept is replaced by
127.0.0.1 before the request is sent (hosts it refuses are sent as generated, to check that
they are refused), and LDAP server URLs and OIDC issuers point at a closed loopback port, so a
connection test, a directory test or a sync only ever reaches loopback.

Left out: schemathesis's "positive data acceptance" check (the request models describe the
shape of a body; the services own the rules for values, a host name's syntax or a certificate
that parses, and answer 422 with a message per field, as the description documents), and its
"negative data rejection" check: the token is sent by the session, so a request whose
Authorization header the fuzzer spoiled goes out with the right one, and the check would judge
a request that was never sent. Run with that check by hand, it found two real gaps, both
fixed: a definitions document without a version, and loosely typed JSON numbers.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from support import endpoint_body, first_admin, running_portal

from portal.environments.endpoints import is_host
from portal.simulator import Simulator

ADMIN_PASSWORD = "Fuzzing-admin-passphrase-7"  # noqa: S105 - test password
MAX_EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "30"))


class FuzzLab:
    def __init__(self, server, sim):
        self.server = server
        self.session, token = first_admin(server, ADMIN_PASSWORD)
        csrf = {"X-CSRFToken": token}
        created = self.session.post(
            server.url + "/api/v1/environments",
            json={"name": "sfo-m01", "manager": endpoint_body(sim)},
            headers=csrf,
        )
        assert created.status_code == 201, created.text
        minted = self.session.post(
            server.url + "/api/v1/me/tokens",
            json={"name": "fuzzer", "scope": "admin", "expires_in_days": 1},
            headers=csrf,
        )
        assert minted.status_code == 201, minted.text
        self.token_id = minted.json()["id"]
        self.client = requests.Session()
        self.client.trust_env = False
        self.client.verify = server.cert
        self.client.headers["Authorization"] = "Bearer " + minted.json()["token"]


@pytest.fixture(scope="module")
def fuzz_lab(tmp_path_factory):
    with (
        Simulator(credentials=40, seed=9) as sim,
        running_portal(tmp_path_factory.mktemp("fuzz"), workers=2) as server,
    ):
        yield FuzzLab(server, sim)


@pytest.fixture(scope="module")
def api_schema(fuzz_lab):
    document = fuzz_lab.client.get(fuzz_lab.server.url + "/api/v1/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


# Where the sign-in settings name a server: a closed loopback port (refused at once).
CLOSED = "127.0.0.1:1"


def _loopback_url(url: Any) -> Any:
    if not isinstance(url, str) or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    tail = rest.split("/", 1)[1] if "/" in rest else ""
    return f"{scheme}://{CLOSED}" + (f"/{tail}" if tail else "")


def _loopback_hosts(value: Any) -> Any:
    """Every "host" the portal would accept, replaced by 127.0.0.1, and every LDAP server and
    OIDC issuer by a closed loopback port (in place, recursively)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "host" and isinstance(item, str):
                host = item.strip()
                if is_host(host):
                    value[key] = "127.0.0.1"
            elif key == "urls" and isinstance(item, list):
                value[key] = [_loopback_url(url) for url in item]
            elif key == "issuer":
                value[key] = _loopback_url(item)
            else:
                _loopback_hosts(item)
    elif isinstance(value, list):
        for item in value:
            _loopback_hosts(item)
    return value


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_answers_within_its_description(fuzz_lab, case):
    _loopback_hosts(case.body)
    if (case.path_parameters or {}).get("token_id") == fuzz_lab.token_id:
        case.path_parameters["token_id"] = fuzz_lab.token_id + 1  # keep the fuzzer's own token
    case.call_and_validate(
        base_url=fuzz_lab.server.url,
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
        session=fuzz_lab.client,
        verify=fuzz_lab.server.cert,
        timeout=30,
    )
