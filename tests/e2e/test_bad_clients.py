"""The real Gunicorn over HTTPS against clients that misbehave at the TLS layer: closed in
the middle of a handshake, silent after connecting, or stalled after the first bytes of a
ClientHello. No worker dies, and a normal request is not held up by them."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time

import pytest
import requests
from support import running_portal, tls_client_hello

pytestmark = pytest.mark.e2e

# How long the silent and stalled clients hold their connections: longer than the portal's
# handshake deadline, so they are dropped by it while normal requests go on.
HOLD_SECONDS = 30
CLOSED_MID_HANDSHAKE = 50
SILENT = 10
STALLED = 10


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _workers(master: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def _timed_get(server) -> float:
    started = time.monotonic()
    answer = requests.get(server.url + "/healthz", verify=server.cert, timeout=10)
    assert answer.status_code == 200
    return time.monotonic() - started


def test_bad_tls_clients_kill_no_worker_and_delay_no_request(tmp_path):
    hello = tls_client_hello()
    assert hello[0] == 0x16 and len(hello) > 100  # a TLS handshake record
    with running_portal(tmp_path, workers=2) as server:
        master = server.proc.pid
        deadline = time.monotonic() + 30  # /healthz answers as soon as one worker serves
        while len(workers := _workers(master)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) == 2
        baseline = min(_timed_get(server) for _ in range(5))

        # Closed mid-handshake: half a ClientHello, then a reset (SO_LINGER 0), or the whole
        # ClientHello and a close before reading the server's answer.
        for n in range(CLOSED_MID_HANDSHAKE):
            sock = _connect(server.port)
            sock.sendall(hello if n % 2 else hello[: len(hello) // 2])
            if n % 2 == 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

        held = [_connect(server.port) for _ in range(SILENT)]  # connect, then nothing
        for _ in range(STALLED):
            sock = _connect(server.port)
            sock.sendall(hello[:60])  # the start of a ClientHello, then a stall
            held.append(sock)
        try:
            delays = []
            deadline = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < deadline:
                delays.append(_timed_get(server) - baseline)
                time.sleep(0.5)
        finally:
            for sock in held:
                sock.close()

        assert max(delays) < 1.0, f"a normal request waited {max(delays):.2f} s longer"
        assert _workers(master) == workers, "a worker died or was replaced"
        assert _timed_get(server) < baseline + 1.0
        log = (tmp_path / "logs" / "error.log").read_text()  # before the stop's own lines
    for sign in ("WORKER TIMEOUT", "was sent SIGKILL", "Worker exiting", "Traceback"):
        assert sign not in log, sign


def _raw(server, request: bytes) -> tuple[int, dict, bytes]:
    """Send `request` as it is over TLS; the status, headers and body of the answer."""
    import ssl

    context = ssl.create_default_context(cafile=str(server.cert))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as plain,
        context.wrap_socket(plain, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def test_requests_the_server_cannot_read_get_the_portals_answers(tmp_path):
    """Gunicorn refuses malformed requests before the application sees them: the answer is
    still the portal's, JSON under /api/ and a page with a language and landmarks elsewhere,
    and it never echoes what was sent."""
    with running_portal(tmp_path, workers=1) as server:
        bad_header = b"Content-Length: <script>qT</script>\r\n"
        code, headers, body = _raw(
            server,
            b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n" + bad_header + b"\r\n",
        )
        assert code == 400 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": "The request could not be read.", "details": {}}

        code, headers, body = _raw(
            server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + bad_header + b"\r\n"
        )
        page = body.decode()
        assert code == 400 and headers["content-type"].startswith("text/html")
        assert '<html lang="en">' in page and '<main id="main">' in page and "<h1>" in page
        assert "script" not in page and "qT" not in page

        # An address too long for the server (a huge search from the browser's address bar).
        code, headers, body = _raw(
            server, b"GET /?q=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        page = body.decode()
        assert code == 414 and '<html lang="en">' in page and "too long" in page
        assert "xxxxxxxx" not in page
        assert int(headers["content-length"]) == len(body)
