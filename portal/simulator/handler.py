"""HTTP plumbing of the simulator: TLS per connection, routing and injected failures."""

from __future__ import annotations

import json
import math
import secrets
import socket
import socketserver
import ssl
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from .server import Simulator, _Failure

UNAUTHORIZED_BODY = {
    "errorCode": "Unauthorized",
    "message": "Authorization Header is missing or not in correct format",
}
MAX_BODY = 1024 * 1024


class _Raw(str):
    """A response body that is already JSON text."""


def _error(code: str, message: str, reference: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"errorCode": code, "message": message}
    if reference:
        body["referenceToken"] = secrets.token_hex(3).upper()
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, sim: Simulator, context: ssl.SSLContext) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sim = sim
        self.ssl_context = context
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port  # an address: host is text

    def finish_request(self, request, client_address) -> None:
        # The handshake runs here, in the per-connection thread, so a slow or hostile
        # client cannot stall the accept loop.
        sock = cast(socket.socket, request)  # a TCP server's request is its connection
        sock.settimeout(10)
        try:
            tls = self.ssl_context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            sock.close()
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()

    def handle_error(self, request, client_address) -> None:
        """Stay quiet: clients that vanish mid-request are part of the tests."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without TCP_NODELAY (which appliances' servers
    # set) Nagle's algorithm and the client's delayed ACK hold every small answer ~40 ms.
    disable_nagle_algorithm = True
    server_version = "VCF-Simulator"
    sys_version = ""
    timeout = 30

    @property
    def sim(self) -> Simulator:
        """The simulator of the _Server that made this handler."""
        return cast(_Server, self.server).sim

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Requests are counted in Simulator.hits instead of being logged."""

    def do_GET(self) -> None:
        """Dispatch GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Dispatch POST."""
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        """Dispatch PATCH."""
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        """Dispatch DELETE."""
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        """Dispatch PUT."""
        self._dispatch("PUT")

    # -- plumbing ------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length or not length.isdigit():
            return b""
        size = int(length)
        if size > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(size)

    def _send(
        self,
        status: int,
        body: Any = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if status == 204:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        elif isinstance(body, _Raw):
            payload = str(body).encode("utf-8")
        else:
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout turns close() into a TCP RST.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    # -- routing -------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        sim = self.sim
        parts = urlsplit(self.path)
        path = parts.path
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(413, _error("PAYLOAD_TOO_LARGE", "Request body too large"))
            return
        if path.startswith("/_sim/"):
            self._control(method, path, body)
            return
        sim._count(method, path)
        failure = sim._take_failure(path)
        if failure is not None and self._apply_failure(failure):
            return
        status, response = self._route(method, path, parse_qs(parts.query), body)
        self._send(status, response)

    def _apply_failure(self, failure: _Failure) -> bool:
        sim = self.sim
        mode = failure.mode
        if mode == "500":
            message = failure.message or "Simulated server failure"
            self._send(500, _error("INTERNAL_SERVER_ERROR", message, True))
        elif mode == "401":
            body = dict(UNAUTHORIZED_BODY)
            if failure.message:
                body["message"] = failure.message
            self._send(401, body)
        elif mode == "429":
            # Declared by the spec on POST /v1/credentials/expirations; Retry-After is not
            # in the spec, but what a well-behaved client should honour when present.
            seconds = failure.delay if failure.delay is not None else 1.0
            self._send(
                429,
                _error("TOO_MANY_REQUESTS", failure.message or "Too many requests"),
                headers={"Retry-After": str(max(0, math.ceil(seconds)))},
            )
        elif mode == "404":
            self._send(404, _error("NOT_FOUND", failure.message or "No such API (simulated)"))
        elif mode == "403":
            self._send(403, _error("FORBIDDEN", failure.message or "Access denied (simulated)"))
        elif mode == "malformed":
            self._send(200, b'{"elements": [{"id": "trunc')
        elif mode == "timeout":
            time.sleep(failure.delay if failure.delay is not None else sim.timeout_delay)
            self.close_connection = True
        elif mode == "reset":
            self._reset()
        elif mode == "slow":
            time.sleep(failure.delay if failure.delay is not None else sim.slow_delay)
            return False
        return True

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        sim = self.sim
        if path == "/v1/tokens":
            if method != "POST":
                return _not_allowed()
            return self._create_token(body)
        if path == "/v1/tokens/access-token/refresh":
            if method != "PATCH":
                return _not_allowed()
            token = sim._refresh(_refresh_id(body))
            if token is None:
                return 404, _error("REFRESH_TOKEN_NOT_FOUND", "Refresh token not found or expired")
            return 200, token
        if path == "/v1/tokens/refresh-token":
            if method != "DELETE":
                return _not_allowed()
            sim._invalidate(_refresh_id(body))
            return 204, None
        if path.startswith(("/suite-api/", "/lcm/")):
            return sim._fleet_route(method, path, query, body, self.headers.get("Authorization"))
        is_credentials = path == "/v1/credentials" or path.startswith("/v1/credentials/")
        is_sddcs = path == "/v1/sddcs" or path.startswith("/v1/sddcs/")
        is_task = path.startswith("/v1/tasks/")
        if not (is_credentials or is_sddcs or is_task):
            return 404, _error("NOT_FOUND", "No such API")
        role = sim._bearer_role(self.headers.get("Authorization"))
        if role is None:
            return 401, UNAUTHORIZED_BODY
        lifecycle = (path == "/v1/credentials" and method == "PATCH") or path.startswith(
            ("/v1/credentials/tasks", "/v1/credentials/expirations", "/v1/tasks/")
        )
        if not lifecycle and method != "GET":
            return _not_allowed()
        if role != "ADMIN":
            # Reading and changing credentials both need the ADMIN role (CONTRACT.md 1.5, 2.5).
            return 403, _error("FORBIDDEN", "The user needs the ADMIN role for this operation")
        if lifecycle:
            return sim._credential_operation(method, path, query, body)
        if path == "/v1/credentials":
            return sim._credentials_page(query)
        if is_credentials:
            return sim._credential(unquote(path[len("/v1/credentials/") :]))
        return sim._installer(path)

    def _create_token(self, body: bytes) -> tuple[int, Any]:
        sim = self.sim
        try:
            spec = json.loads(body)
        except (ValueError, UnicodeError):
            return 400, _error("INVALID_INPUT", "Request body is not valid JSON")
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("username"), str)
            or not isinstance(spec.get("password"), str)
        ):
            return 400, _error("INVALID_INPUT", "username and password are required")
        pair = sim._login(spec["username"], spec["password"])
        if pair is None:
            return 401, _error("AUTHENTICATION_FAILED", "Invalid username or password")
        return sim.token_status, pair

    def _control(self, method: str, path: str, body: bytes) -> None:
        sim = self.sim
        if not sim.control:
            self._send(404, _error("NOT_FOUND", "No such API"))
            return
        if path == "/_sim/stats" and method == "GET":
            self._send(200, sim._stats())
        elif path == "/_sim/credentials" and method == "GET":
            self._send(200, sim.credentials_snapshot())
        elif path == "/_sim/control" and method == "POST":
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeError):
                payload = None
            self._send(*sim._control(payload))
        else:
            self._send(404, _error("NOT_FOUND", "No such control API"))


def _not_allowed() -> tuple[int, Any]:
    return 405, _error("METHOD_NOT_ALLOWED", "Method not allowed")


def _refresh_id(body: bytes) -> str:
    # PowerVCF sends the bare uuid, the Go SDK a JSON-quoted one: accept both.
    return body.decode("utf-8", "replace").strip().strip('"').strip()
