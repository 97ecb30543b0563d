"""The wire of audit forwarding: syslog over TCP (with TLS, RFC 5425) or UDP, and HTTPS POST.

A stream batch counts as taken only when the receiver has read it to its end: after the last
message the portal ends its side (TLS close_notify, then FIN) and waits for the receiver to
close; a receiver that died midway resets the connection instead, and the batch is sent
again. Errors are short texts for the destination's status, never holding a token.
"""

from __future__ import annotations

import socket
import ssl

import requests

from ..vcf.tls import EndpointTlsAdapter, build_ca_context

CONNECT_TIMEOUT = 10.0
SEND_TIMEOUT = 30.0
_UDP_MAX = 8192


class ForwardError(Exception):
    """A batch was not delivered; the message says why, in the operator's words."""


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _context(ca_pem: str | None) -> ssl.SSLContext:
    if ca_pem:
        return build_ca_context(ca_pem)
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def syslog_stream(address: str, messages: list[bytes], tls: bool, ca_pem: str | None) -> None:
    """Send octet-counted messages (RFC 5425 / RFC 6587) on one connection."""
    host, port = split_address(address)
    framed = b"".join(str(len(m)).encode("ascii") + b" " + m for m in messages)
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise ForwardError(f"cannot connect to {address} ({_reason(exc)})") from None
    try:
        sock.settimeout(SEND_TIMEOUT)
        if tls:
            try:
                sock = _context(ca_pem).wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError:
                raise ForwardError(f"TLS with {address} failed: certificate not trusted") from None
            except (ssl.SSLError, OSError) as exc:
                raise ForwardError(f"TLS with {address} failed ({_reason(exc)})") from None
        sock.sendall(framed)
        _wait_for_close(sock)
    except ForwardError:
        raise
    except (OSError, ssl.SSLError) as exc:
        raise ForwardError(f"sending to {address} failed ({_reason(exc)})") from None
    finally:
        sock.close()


def _wait_for_close(sock: socket.socket) -> None:
    """End our side and wait until the receiver closes: it has then read everything."""
    if isinstance(sock, ssl.SSLSocket):
        try:
            plain = sock.unwrap()  # our close_notify; the receiver reads all before it
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return  # the receiver closed once it had read everything
        plain.shutdown(socket.SHUT_WR)
        while plain.recv(4096):
            pass
        plain.close()
        return
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(4096):
        pass  # a syslog receiver sends nothing; wait for its close


def syslog_udp(address: str, messages: list[bytes]) -> None:
    """One datagram per message (RFC 5426): nothing confirms delivery."""
    host, port = split_address(address)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(info[0], socket.SOCK_DGRAM) as sock:
            for message in messages:
                sock.sendto(message[:_UDP_MAX], info[4])
    except OSError as exc:
        raise ForwardError(f"sending to {address} failed ({_reason(exc)})") from None


def https_post(url: str, body: bytes, headers: dict[str, str], ca_pem: str | None) -> None:
    """POST a batch; any 2xx answer takes it."""
    host = url.split("/")[2]
    try:
        with requests.Session() as session:
            if ca_pem:
                session.mount("https://", EndpointTlsAdapter(ssl_context=build_ca_context(ca_pem)))
            answer = session.post(
                url,
                data=body,
                headers={"User-Agent": "vcf-credential-portal", **headers},
                timeout=(CONNECT_TIMEOUT, SEND_TIMEOUT),
                allow_redirects=False,
            )
    except requests.exceptions.SSLError:
        raise ForwardError(f"TLS with {host} failed: certificate not trusted") from None
    except requests.exceptions.Timeout:
        raise ForwardError(f"timed out talking to {host}") from None
    except requests.exceptions.ConnectionError:
        raise ForwardError(f"cannot connect to {host}") from None
    except requests.RequestException as exc:
        raise ForwardError(f"request to {host} failed ({type(exc).__name__})") from None
    if not 200 <= answer.status_code < 300:
        raise ForwardError(f"{host} answered HTTP {answer.status_code}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "the receiver closed the connection"
    return type(exc).__name__
