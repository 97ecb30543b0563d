"""OpenAPI 3.0 description of the portal's JSON API, served at /api/v1/openapi.json."""

from __future__ import annotations


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _enum_body(name: str, values: list[str]) -> dict:
    """A JSON request body with one optional string field taking one of `values`."""
    schema = {"type": "object", "properties": {name: {"type": "string", "enum": values}}}
    return {"content": {"application/json": {"schema": schema}}}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    str(code): _json(_ref("Error"), text)
    for code, text in (
        (400, "Bad request"),
        (401, "Sign-in required"),
        (403, "Not allowed for this role"),
        (404, "Not found"),
        (409, "Conflict"),
        (422, "Invalid fields (details per field)"),
    )
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}

ENDPOINT = {
    "type": "object",
    "properties": {
        "host": {"type": "string"},
        "port": {"type": "integer", "default": 443},
        "username": {"type": "string"},
        "password": {
            "type": "string",
            "writeOnly": True,
            "description": "Write-only; empty or missing keeps the stored one",
        },
        "verify_tls": {"type": "boolean", "default": True},
        "ca_pem": {"type": "string", "nullable": True},
        "pinned_sha256": {
            "type": "string",
            "nullable": True,
            "description": "When set, replaces CA verification",
        },
        "sync_enabled": {"type": "boolean"},
        "sync_interval_minutes": {"type": "integer", "minimum": 5, "maximum": 1440},
    },
}

CREDENTIAL_FILTERS = [
    {"name": name, "in": "query", "schema": {"type": "string"}}
    for name in (
        "q",
        "hostname",
        "username",
        "credential_type",
        "account_type",
        "resource_type",
        "domain",
        "source",
        "status",
        "sort",
    )
] + [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "per_page", "in": "query", "schema": {"type": "integer", "maximum": 500}},
]

OPENAPI = {
    "openapi": "3.0.3",
    "info": {
        "title": "VCF Credential Portal API",
        "version": "1",
        "description": "Session cookie authentication; every state-changing request carries "
        "the CSRF token from <meta name=csrf-token> in the X-CSRFToken header.",
    },
    "paths": {
        "/api/v1/environments": {
            "get": {
                "summary": "List environments",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": _ref("Environment")}
                            },
                        }
                    )
                },
            },
            "post": {
                "summary": "Create an environment (admin)",
                "requestBody": {
                    "content": {"application/json": {"schema": _ref("EnvironmentInput")}}
                },
                "responses": {"201": _json(_ref("Environment")), **_ERRORS},
            },
        },
        "/api/v1/environments/{id}": {
            "parameters": [_ID],
            "get": {
                "summary": "One environment",
                "responses": {"200": _json(_ref("Environment")), **_ERRORS},
            },
            "patch": {
                "summary": "Change an environment (admin)",
                "requestBody": {
                    "content": {"application/json": {"schema": _ref("EnvironmentInput")}}
                },
                "responses": {"200": _json(_ref("Environment")), **_ERRORS},
            },
            "delete": {
                "summary": "Delete an environment with its credentials (admin)",
                "responses": {"204": {"description": "Deleted"}, **_ERRORS},
            },
        },
        "/api/v1/environments/test-connection": {
            "post": {
                "summary": "Test unsaved endpoint settings (admin)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    ENDPOINT,
                                    {
                                        "type": "object",
                                        "properties": {
                                            "source": {
                                                "type": "string",
                                                "enum": ["manager", "installer"],
                                            },
                                            "environment_id": {"type": "integer"},
                                        },
                                    },
                                ]
                            }
                        }
                    }
                },
                "responses": {"200": _json(_ref("ConnectionTest")), **_ERRORS},
            },
        },
        "/api/v1/environments/{id}/sync": {
            "parameters": [_ID],
            "post": {
                "summary": "Queue a sync now (admin)",
                "requestBody": _enum_body("source", ["manager", "installer"]),
                "responses": {"202": _json(_ref("SyncRun")), **_ERRORS},
            },
        },
        "/api/v1/environments/{id}/sync-runs": {
            "parameters": [_ID],
            "get": {
                "summary": "Latest sync runs",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": _ref("SyncRun")}},
                        }
                    )
                },
            },
        },
        "/api/v1/sync-runs/{id}": {
            "parameters": [_ID],
            "get": {
                "summary": "Progress and result of a sync run",
                "responses": {"200": _json(_ref("SyncRun")), **_ERRORS},
            },
        },
        "/api/v1/environments/{id}/credentials": {
            "parameters": [_ID, *CREDENTIAL_FILTERS],
            "get": {
                "summary": "A page of credential metadata (no passwords)",
                "responses": {"200": _json(_ref("CredentialPage")), **_ERRORS},
            },
        },
        "/api/v1/credentials": {
            "parameters": CREDENTIAL_FILTERS,
            "get": {
                "summary": "Search credentials across environments",
                "responses": {"200": _json(_ref("CredentialPage")), **_ERRORS},
            },
        },
        "/api/v1/credentials/{id}": {
            "parameters": [_ID],
            "delete": {
                "summary": "Purge a credential absent upstream (admin)",
                "responses": {"204": {"description": "Purged"}, **_ERRORS},
            },
        },
        "/api/v1/credentials/{id}/reveal": {
            "parameters": [_ID],
            "post": {
                "summary": "Reveal a password (audited; purpose=copy audits a copy)",
                "requestBody": _enum_body("purpose", ["reveal", "copy"]),
                "responses": {"200": _json(_ref("Password")), **_ERRORS},
            },
        },
        "/api/v1/credentials/{id}/history": {
            "parameters": [_ID],
            "get": {
                "summary": "Password history without passwords",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": _ref("HistoryEntry")}
                            },
                        }
                    ),
                    **_ERRORS,
                },
            },
        },
        "/api/v1/credentials/{id}/history/{entry_id}/reveal": {
            "parameters": [
                _ID,
                {"name": "entry_id", "in": "path", "required": True, "schema": {"type": "integer"}},
            ],
            "post": {
                "summary": "Reveal a former password (audited)",
                "responses": {"200": _json(_ref("Password")), **_ERRORS},
            },
        },
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "details"],
                "properties": {"error": {"type": "string"}, "details": {"type": "object"}},
            },
            "Endpoint": ENDPOINT,
            "EnvironmentInput": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "manager": {"allOf": [ENDPOINT], "nullable": True},
                    "installer": {"allOf": [ENDPOINT], "nullable": True},
                },
            },
            "Environment": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "manager": {"allOf": [ENDPOINT], "nullable": True},
                    "installer": {"allOf": [ENDPOINT], "nullable": True},
                    "status": {
                        "type": "object",
                        "description": "Per source: state "
                        "(success/partial/failed/never), last_sync_at, last_error, "
                        "next_run_at, credential_count, absent_count, active_run",
                    },
                },
            },
            "ConnectionTest": {
                "type": "object",
                "properties": {
                    "ok": {"type": "boolean"},
                    "message": {"type": "string"},
                    "certificate_sha256": {"type": "string", "nullable": True},
                    "credential_count": {"type": "integer", "nullable": True},
                },
            },
            "SyncRun": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "environment_id": {"type": "integer"},
                    "source": {"type": "string"},
                    "trigger": {"type": "string"},
                    "state": {
                        "type": "string",
                        "enum": ["queued", "running", "success", "partial", "failed"],
                    },
                    "phase": {"type": "string", "nullable": True},
                    "counts": {
                        "type": "object",
                        "properties": {
                            k: {"type": "integer"}
                            for k in ("new", "changed", "unchanged", "absent")
                        },
                    },
                    "error": {"type": "string", "nullable": True},
                    "started_at": {"type": "string", "nullable": True},
                    "finished_at": {"type": "string", "nullable": True},
                },
            },
            "Credential": {
                "type": "object",
                "properties": {
                    **{
                        k: {"type": "string"}
                        for k in (
                            "hostname",
                            "username",
                            "credential_type",
                            "account_type",
                            "resource_type",
                            "domain",
                            "source",
                            "last_changed_at",
                        )
                    },
                    "id": {"type": "integer"},
                    "status": {"type": "string", "enum": ["present", "absent"]},
                },
            },
            "CredentialPage": {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": _ref("Credential")},
                    "total": {"type": "integer"},
                    "page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                },
            },
            "HistoryEntry": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "first_seen_at": {"type": "string"},
                    "changed_at": {"type": "string", "nullable": True},
                    "changed_by": {"type": "string", "enum": ["SYNC", "MANUAL", "SYSTEM"]},
                },
            },
            "Password": {
                "type": "object",
                "properties": {"password": {"type": "string", "nullable": True}},
            },
        }
    },
}
