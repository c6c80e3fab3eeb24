"""A real SMTP server for the tests (aiosmtpd, in its own thread) and the mailbox it fills.

Every app of the `app` fixture sends to it; a test asks `mailbox` for what arrived.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from markupsafe import escape
from quart import Quart

from tests.servers import free_port

LINK_RE = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Received:
    """One message as the server got it: the parsed mail and its envelope."""

    message: EmailMessage
    sender: str
    recipients: list[str]
    login: tuple[str, str] | None = None  # user and password, when the client signed in


class CollectingHandler:
    """aiosmtpd's handler: keeps every message (it runs on the server's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = cast(EmailMessage, email.message_from_bytes(content, policy=email.policy.default))
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = (session.auth_data.login.decode(), session.auth_data.password.decode())
        received = Received(message, envelope.mail_from or "", list(envelope.rcpt_tos), login)
        with self._lock:
            self._received.append(received)
        return "250 OK"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def clear(self) -> None:
        with self._lock:
            self._received.clear()


def accept_any_login(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Any user and password will do; the handler records which were sent."""
    return AuthResult(success=True, auth_data=auth_data)


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    handler: CollectingHandler = field(repr=False)

    @property
    def url(self) -> str:
        return f"smtp+plain://{self.hostname}:{self.port}"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1: no TLS (so no STARTTLS either); AUTH offered, never required."""
    handler = CollectingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=accept_any_login,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


class Mailbox:
    """What the SMTP server received during this test."""

    def __init__(self, handler: CollectingHandler) -> None:
        self._handler = handler

    @property
    def received(self) -> list[Received]:
        return self._handler.received()

    def clear(self) -> None:
        """Forget what arrived so far (a test about the mail a later step sends)."""
        self._handler.clear()

    @property
    def messages(self) -> list[EmailMessage]:
        return [received.message for received in self.received]

    def _to(self, address: str | None) -> list[EmailMessage]:
        return [
            received.message
            for received in self.received
            if address is None
            or address.casefold() in (recipient.casefold() for recipient in received.recipients)
        ]

    async def wait_for(
        self,
        count: int = 1,
        to: str | None = None,
        timeout: float = 10,  # noqa: ASYNC109 (it ends a poll, then says what did arrive)
    ) -> list[EmailMessage]:
        """The messages (to `to`, if given) once at least `count` have arrived."""
        deadline = time.monotonic() + timeout
        while len(found := self._to(to)) < count:
            if time.monotonic() > deadline:
                arrived = [
                    (received.recipients, str(received.message["Subject"]))
                    for received in self.received
                ]
                raise AssertionError(
                    f"expected {count} message(s) to {to or 'anyone'} within {timeout}s; "
                    f"arrived: {arrived}"
                )
            await asyncio.sleep(0.02)
        return found

    async def settle(self, quiet: float = 0.3) -> None:
        """Wait until nothing new has arrived for `quiet` seconds, so a test can say that a
        request sent no mail (the app delivers in background tasks, after the response)."""
        count = len(self.received)
        calm_since = time.monotonic()
        while time.monotonic() - calm_since < quiet:
            await asyncio.sleep(0.02)
            if len(self.received) != count:
                count = len(self.received)
                calm_since = time.monotonic()

    def link(self, message: EmailMessage, path_prefix: str) -> str:
        """The one link in the text part whose path starts with `path_prefix`; the HTML part
        must carry the same link."""
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        assert isinstance(text, EmailMessage), "the message has no text part"
        assert isinstance(html, EmailMessage), "the message has no HTML part"
        links = {
            link
            for link in LINK_RE.findall(text.get_content())
            if urlsplit(link).path.startswith(path_prefix)
        }
        assert len(links) == 1, f"expected one link under {path_prefix}, found {sorted(links)}"
        (link,) = links
        assert str(escape(link)) in html.get_content(), "the HTML part lacks the text's link"
        return link


async def drain(app: Quart) -> None:
    """Wait for the work the app does after answering (mail, forgotten-password lookups)."""
    while app.background_tasks:
        await asyncio.gather(*list(app.background_tasks))


@pytest.fixture
def mailbox(smtp_server: SmtpServer) -> Mailbox:
    """The SMTP server's mailbox, emptied for this test."""
    smtp_server.handler.clear()
    return Mailbox(smtp_server.handler)
