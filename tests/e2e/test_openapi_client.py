"""A client generated from the portal's OpenAPI description (openapi-python-client) works
against the running portal: list, search, reveal, and both exports, the Excel file byte for
byte (a description that called it text would make the client corrupt it)."""

from __future__ import annotations

import importlib
import io
import json
import shutil
import ssl
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from openpyxl import load_workbook

pytestmark = pytest.mark.e2e
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
CONFIG = Path(__file__).resolve().parents[2] / "docs" / "clients" / "openapi-python-client.yaml"


@pytest.fixture(scope="module")
def client_package(lab, tmp_path_factory):
    """The generated package, importable, and a token of scope reveal for it."""
    folder = tmp_path_factory.mktemp("generated")
    description = lab.session.get(lab.url + "/api/v1/openapi.json", timeout=30).json()
    (folder / "portal-api.json").write_text(json.dumps(description))
    made = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            "portal-api.json",
            "--config",
            str(CONFIG),
            "--meta",
            "none",
            "--output-path",
            "portal_client",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "WARNING" not in made.stdout + made.stderr, made.stdout + made.stderr
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("portal_client")
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n.startswith("portal_client")]:
            del sys.modules[name]
        shutil.rmtree(folder, ignore_errors=True)


def _token(lab) -> str:
    made = lab.session.post(
        lab.url + "/api/v1/me/tokens",
        json={"name": "generated client", "scope": "reveal", "expires_in_days": 1},
        headers={"X-CSRFToken": lab.token},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return made.json()["token"]


def _call(package, module: str, function: str, **arguments):
    operation = importlib.import_module(f"portal_client.api.{module}.{function}")
    response = operation.sync_detailed(**arguments)
    assert response.status_code == 200, (function, response.status_code, response.content[:300])
    return response


def _client(lab, package):
    return package.AuthenticatedClient(
        base_url=lab.url,
        token=_token(lab),
        verify_ssl=ssl.create_default_context(cafile=lab.server.cert),
    )


def test_a_generated_client_lists_searches_reveals_and_exports(lab, client_package):
    with _client(lab, client_package) as client:
        _use(lab, client_package, client)


def _use(lab, client_package, client) -> None:
    listed = _call(client_package, "environments", "list_environments", client=client).parsed
    assert lab.env_id in [item.id for item in listed.items]
    found = _call(client_package, "credentials", "search_credentials", client=client, q="esx")
    credential = found.parsed.items[0]
    assert credential.hostname and found.parsed.total >= 1
    revealed = _call(
        client_package, "credentials", "reveal_password", client=client, cred_id=credential.id
    )
    assert revealed.parsed.password

    models = importlib.import_module("portal_client.models")
    as_csv = _call(
        client_package,
        "environments",
        "export_environment",
        client=client,
        env_id=lab.env_id,
        body=models.CredentialExportRequest(format_=models.CredentialExportRequestFormat("csv")),
    )
    assert as_csv.content.decode("utf-8-sig").splitlines()[0].startswith("Environment,Host,User")
    as_xlsx = _call(
        client_package,
        "environments",
        "export_environment",
        client=client,
        env_id=lab.env_id,
        body=models.CredentialExportRequest(format_=models.CredentialExportRequestFormat("xlsx")),
    )
    parsed = as_xlsx.parsed
    # What the generated client hands over: a binary File, the bytes as sent (described as
    # text, it was a str decoded from them, and the workbook was lost).
    assert isinstance(parsed, client_package.types.File), type(parsed)
    data = parsed.payload.read()
    assert data == as_xlsx.content
    assert zipfile.is_zipfile(io.BytesIO(data))
    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    assert sheet.max_row > 1
    everywhere = _call(
        client_package,
        "credentials",
        "export_credentials",
        client=client,
        body=models.CredentialExportRequest(
            format_=models.CredentialExportRequestFormat("csv"), q="esx"
        ),
    )
    assert len(everywhere.content.decode().splitlines()) > 1
