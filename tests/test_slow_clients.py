"""Slow clients on real Hypercorn: a body or headers sent a byte at a time are cut in bounded time.

A byte every fraction of a second never trips a timeout per read (Hypercorn's read_timeout), so
each test trickles that fast and expects the whole to be cut: a body at AUTHAPP_BODY_TIMEOUT
(small here, so the tests are quick), headers at hypercorn.toml's keep_alive_timeout. Meanwhile
another connection is served as usual.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypercorn.config import Config as HypercornConfig

from tests.conftest import ROOT
from tests.mailbox import SmtpServer
from tests.servers import Answer, hypercorn, read_answer

BODY_TIMEOUT = 2.0  # the server's AUTHAPP_BODY_TIMEOUT, in seconds
KEEP_ALIVE_TIMEOUT = HypercornConfig.from_toml(ROOT / "hypercorn.toml").keep_alive_timeout
GAP = 0.2  # seconds between the pieces a slow client sends: far below any timeout per read
SLACK = 1.5  # seconds a loaded machine may add to a bound
JSON_BODY = b'{"email": "someone@example.com", "password": "correct horse battery staple"}'
FORM_BODY = b"email=someone%40example.com&password=correct+horse+battery+staple&csrf_token=x"


@dataclass(frozen=True)
class SlowRequest:
    """A request whose body comes a byte every GAP, and the answer it must get in time."""

    method: str
    path: str
    status: int
    code: str
    body: bytes = JSON_BODY
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    @property
    def chunked(self) -> bool:
        return self.headers.get("Transfer-Encoding") == "chunked"

    def head(self) -> bytes:
        headers = {"Host": "127.0.0.1", **self.headers}
        if not self.chunked:
            headers["Content-Length"] = str(len(self.body))
        lines = [f"{self.method} {self.path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def pieces(self) -> list[bytes]:
        """The body a byte at a time; chunked, each byte is a chunk of its own."""
        if self.chunked:
            return [b"1\r\n%c\r\n" % byte for byte in self.body] + [b"0\r\n\r\n"]
        return [bytes([byte]) for byte in self.body]


SLOW_BODIES = {
    "JSON with a Content-Length": SlowRequest("POST", "/api/auth/login", 408, "REQUEST_TIMEOUT"),
    "chunked JSON": SlowRequest(
        "POST", "/api/auth/login", 408, "REQUEST_TIMEOUT",
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    ),
    "a form with a Content-Length": SlowRequest(
        "POST", "/auth/login", 408, "REQUEST_TIMEOUT", body=FORM_BODY,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"},
    ),
    # The app answers before the body; the wait for the body's end stops at the same bound.
    "an early answer that waits for the body": SlowRequest(
        "PUT", "/api/auth/login", 405, "METHOD_NOT_ALLOWED"
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer
) -> Iterator[tuple[str, Path]]:
    """One server for the module, with a short body bound; yields its URL and its log file."""
    folder = tmp_path_factory.mktemp("slow-clients")
    log_path = folder / "server.log"
    with hypercorn(
        database_url, folder / "instance", smtp_server.url, log_path=log_path,
        AUTHAPP_BODY_TIMEOUT=str(BODY_TIMEOUT), AUTHAPP_LOGIN_RATE_LIMIT_IP="1000/minute",
        AUTHAPP_LOGIN_RATE_LIMIT_ACCOUNT="1000/minute", AUTHAPP_HASH_RATE_LIMIT_IP="1000/minute",
    ) as base:  # fmt: skip
        yield base, log_path


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=KEEP_ALIVE_TIMEOUT + 10)


@contextlib.contextmanager
def trickling(sock: socket.socket, pieces: Sequence[bytes]) -> Iterator[None]:
    """Send `pieces` on `sock` one every GAP in a thread, until they run out, the server stops
    taking them, or the block ends."""
    done = threading.Event()

    def trickle() -> None:
        for piece in pieces:
            if done.wait(GAP):
                return
            try:
                sock.sendall(piece)
            except OSError:  # the server closed the connection
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def assert_others_are_served(base: str) -> None:
    """A second client gets its answers, a body included, while the slow one trickles on."""
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "alive"}
        headers = {"Content-Type": "application/json"}
        login = http.post("/api/auth/login", content=JSON_BODY, headers=headers)
        assert (login.status_code, login.json()["code"]) == (401, "INVALID_CREDENTIALS")


def assert_closed(sock: socket.socket) -> None:
    """The server ended the connection (a reset, when it left bytes unread, is an end too)."""
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(65536) == b""


def access_log_status(log_path: Path, request_id: str) -> int:
    """The status of the request with that id in the access log, once it is written."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("logger") == "hypercorn.access" and (
                    record.get("request_id") == request_id
                ):
                    return int(record["http"]["status"])
        time.sleep(0.1)
    pytest.fail(f"no access log line for request {request_id}")


def assert_answer(answer: Answer, slow: SlowRequest) -> None:
    assert answer.status == slow.status, answer.body[:300]
    if answer.headers["content-type"].startswith("text/html"):
        assert b"That took too long" in answer.body
        assert f"<code>{slow.code}</code>".encode() in answer.body
    else:
        assert answer.code == slow.code


@pytest.mark.parametrize("name", SLOW_BODIES)
def test_a_trickled_body_is_cut_at_the_body_timeout(server: tuple[str, Path], name: str) -> None:
    base, log_path = server
    slow = SLOW_BODIES[name]
    with connect(base) as sock:
        # Before the headers go: the server cannot start its clock before they arrive, while a
        # reading taken after sendall may come after the server's (a thread descheduled).
        started = time.monotonic()
        sock.sendall(slow.head())
        with trickling(sock, slow.pieces()):
            assert_others_are_served(base)
            assert time.monotonic() - started < BODY_TIMEOUT, "served others too late to tell"
            sock.settimeout(BODY_TIMEOUT + SLACK)
            try:
                answer = read_answer(sock)
            except TimeoutError:
                pytest.fail(f"no answer within {BODY_TIMEOUT + SLACK} s of the headers")
            waited = time.monotonic() - started
            assert_answer(answer, slow)
            assert BODY_TIMEOUT <= waited < BODY_TIMEOUT + SLACK
            assert answer.headers.get("connection") == "close"
            assert_closed(sock)
    assert access_log_status(log_path, answer.headers["x-request-id"]) == slow.status


def test_a_body_sent_in_pieces_within_the_bound_is_served(server: tuple[str, Path]) -> None:
    """Slow but in time: the usual answer, and the connection stays open for the next request."""
    base, _ = server
    slow = SLOW_BODIES["JSON with a Content-Length"]
    half = len(slow.body) // 2
    with connect(base) as sock:
        sock.sendall(slow.head() + slow.body[:half])
        time.sleep(BODY_TIMEOUT / 2)
        sock.sendall(slow.body[half:])
        first = read_answer(sock)
        assert (first.status, first.code) == (401, "INVALID_CREDENTIALS")
        assert "connection" not in first.headers
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(sock).status == 200


def test_trickled_headers_are_cut_at_the_keep_alive_timeout(server: tuple[str, Path]) -> None:
    """Hypercorn's keep_alive_timeout runs from the connection's start (or the end of its last
    answer) to a whole request line and headers; a header line every GAP does not reset it."""
    base, _ = server
    head = [b"POST /api/auth/login HTTP/1.1\r\n", *[b"X-Slow: a header line\r\n"] * 100]
    with connect(base) as fresh, connect(base) as kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(kept).status == 200
        started = time.monotonic()  # both timers run already: each ends by this + the timeout
        with trickling(fresh, head), trickling(kept, head):
            assert_others_are_served(base)
            for sock in (fresh, kept):
                sock.settimeout(KEEP_ALIVE_TIMEOUT + SLACK)
                try:
                    assert_closed(sock)  # no answer at all: the request never began
                except TimeoutError:
                    pytest.fail(f"still open {KEEP_ALIVE_TIMEOUT + SLACK} s into its headers")
                assert time.monotonic() - started > KEEP_ALIVE_TIMEOUT - 0.5, "cut too early"
