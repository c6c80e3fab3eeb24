"""Keep-alive after an early error answer, on real Hypercorn: one connection, two requests.

An answer can come before its request's body arrived (a wrong method, a body too large, a
refused origin, a rate limit, ...). Hypercorn then drops the connection, and unless the answer
said `Connection: close` the client's next request on it fails. Each row sends the headers,
gives the server time to answer early, then the body, then a second request. (The CSRF form row
passed before the fix too: the check reads the form first. It stays, so it keeps doing that.)
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from authapp.web.keepalive import DRAIN_SECONDS
from tests.mailbox import SmtpServer
from tests.servers import hypercorn, read_answer

EARLY_ANSWER_WAIT = 0.5  # seconds: ample for a server that answers without the body to answer
JSON_BODY = b'{"email": "someone@example.com", "password": "correct horse battery staple"}'
TOO_LARGE = 100_000  # above AUTHAPP_MAX_BODY_SIZE (64 KiB)


@dataclass(frozen=True)
class EarlyError:
    method: str
    path: str
    status: int
    code: str | None
    body: bytes = JSON_BODY
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    keeps_alive: bool = True  # else the answer says `Connection: close`
    stalls: bool = False  # the client sends its body only once the answer came (DRAIN_SECONDS)

    def head(self) -> bytes:
        headers = {"Host": "127.0.0.1", **self.headers}
        if "Transfer-Encoding" not in headers:
            headers["Content-Length"] = str(len(self.body))
        lines = [f"{self.method} {self.path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


EARLY_ERRORS = {
    "405 wrong method": EarlyError("PUT", "/api/auth/login", 405, "METHOD_NOT_ALLOWED"),
    "405 chunked body": EarlyError(
        "PUT", "/api/auth/login", 405, "METHOD_NOT_ALLOWED", body=chunked(JSON_BODY),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    ),
    "404 no such route": EarlyError("POST", "/api/nowhere", 404, "NOT_FOUND"),
    "400 form without a CSRF token": EarlyError(
        "POST", "/auth/login", 400, None, body=b"email=someone%40example.com&password=secret",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "400 another site's origin": EarlyError(
        "POST", "/api/auth/verify-email", 400, "CSRF_FAILED",
        headers={"Content-Type": "application/json", "Origin": "https://elsewhere.example"},
    ),
    "400 not JSON": EarlyError(
        "POST", "/api/auth/verify-email", 400, "UNSUPPORTED_MEDIA_TYPE", body=b"token=abc",
        headers={"Content-Type": "text/plain"},
    ),
    "401 not signed in": EarlyError("POST", "/api/auth/reauth", 401, "UNAUTHENTICATED"),
    "429 rate limited": EarlyError("PATCH", "/api/me", 429, "RATE_LIMITED"),
    "413 too large": EarlyError(
        "POST", "/api/auth/login", 413, "PAYLOAD_TOO_LARGE", body=b"x" * TOO_LARGE,
        keeps_alive=False,
    ),
    "405 body too slow": EarlyError(
        "PUT", "/api/auth/login", 405, "METHOD_NOT_ALLOWED", keeps_alive=False, stalls=True
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer
) -> Iterator[int]:
    """One server for the table; only the 429 row draws on the write limit."""
    instance = tmp_path_factory.mktemp("keepalive") / "instance"
    with hypercorn(
        database_url, instance, smtp_server.url,
        AUTHAPP_WRITE_RATE_LIMIT="1/hour", AUTHAPP_LOGIN_RATE_LIMIT_IP="1000/minute",
        AUTHAPP_LOGIN_RATE_LIMIT_ACCOUNT="1000/minute",
    ) as base:  # fmt: skip
        yield int(base.rsplit(":", 1)[1])


def send_early(port: int, error: EarlyError) -> socket.socket:
    """The headers; time for the server to answer without the body; then the body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(error.head())
    select.select([sock], [], [], DRAIN_SECONDS + 5 if error.stalls else EARLY_ANSWER_WAIT)
    # A server that stopped reading may reset the connection; reading the answer tells more.
    with contextlib.suppress(OSError):
        sock.sendall(error.body)
    return sock


@pytest.mark.parametrize("name", EARLY_ERRORS)
def test_an_early_error_answer_leaves_the_connection_usable(server: int, name: str) -> None:
    error = EARLY_ERRORS[name]
    if error.status == 429:  # spend the write limit's one request first
        with socket.create_connection(("127.0.0.1", server), timeout=15) as sock:
            sock.sendall(EarlyError("PATCH", "/api/me", 0, None).head() + JSON_BODY)
            assert read_answer(sock).status in {401, 429}

    with send_early(server, error) as sock:
        started = time.monotonic()
        first = read_answer(sock)
        assert (first.status, first.code) == (error.status, error.code), first.body[:200]
        assert first.headers["x-request-id"]
        if not error.keeps_alive:
            assert first.headers.get("connection") == "close"
            # The whole answer came; then the connection ends, as it said (a reset, if the
            # server had body bytes unread, is an end too), and nothing else follows.
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(65536) == b""
            return
        assert "connection" not in first.headers
        assert time.monotonic() - started < DRAIN_SECONDS  # the body was read, not waited out
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        second = read_answer(sock)
        assert (second.status, second.body) == (200, b'{"status":"alive"}\n'), second
        assert second.headers["x-request-id"] != first.headers["x-request-id"]
