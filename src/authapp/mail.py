"""Mail: account emails rendered from templates/mail/ and delivered after the response.

AUTHAPP_SMTP_URL says where mail goes:

    smtp://user:password@host:587       STARTTLS, required: a server that does not offer it
                                        gets no mail (default port 587)
    smtps://user:password@host:465      TLS from the first byte, "implicit TLS" (default port 465)
    smtp+plain://host:25                no TLS at all: only for a relay on the same host, or tests
                                        (default port 25)

The user and password are optional (give both or neither) and percent-encoded where they hold
`@ : / ? #` or `%` (`p%40ss` for `p@ss`). Nothing may follow the port: no path, query or fragment.

Without AUTHAPP_SMTP_URL (development and testing only) mail goes to the development outbox: one
`.eml` file per message in <instance>/outbox/, and one log line per link in it, so a developer
can click through. That is the only place a link ever reaches the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

import aiosmtplib
from quart import Quart, current_app, render_template

from .config import ConfigError, Settings

log = logging.getLogger(__name__)

TlsMode = Literal["starttls", "tls", "none"]

SMTP_SCHEMES: dict[str, tuple[TlsMode, int]] = {
    "smtp": ("starttls", 587),
    "smtps": ("tls", 465),
    "smtp+plain": ("none", 25),
}
ATTEMPTS = 3
SMTP_TIMEOUT = 10
OUTBOX_FOLDER = "outbox"
_LINK_RE = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class SmtpTarget:
    """Where AUTHAPP_SMTP_URL points; its repr leaves the password out."""

    hostname: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: TlsMode = "starttls"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Read an SMTP URL (forms in the module's docstring); ValueError for anything else.

    No message quotes the URL: it may hold a password.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in SMTP_SCHEMES:
        raise ValueError(
            f"the scheme must be smtp://, smtps:// or smtp+plain:// (got {parts.scheme!r})"
        )
    tls, default_port = SMTP_SCHEMES[parts.scheme]
    if not parts.hostname:
        raise ValueError("the URL names no host, like smtp://user:password@mail.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            "nothing may follow the host and port (percent-encode @:/?#% in a password)"
        )
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if (username is None) != (password is None):
        raise ValueError("give both a user and a password, or neither")
    return SmtpTarget(parts.hostname, port, username, password, tls)


@dataclass(frozen=True)
class Mail:
    """One email to send: `template` names templates/<template>.txt and .html."""

    to: str
    subject: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)


class Mailer:
    """Renders account emails and delivers them, by SMTP or into the development outbox."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.target: SmtpTarget | None = None
        if settings.smtp_url:
            try:
                self.target = parse_smtp_url(settings.smtp_url)
            except ValueError as error:
                raise ConfigError(f"AUTHAPP_SMTP_URL: {error}") from None
        elif settings.env == "production":
            raise ConfigError("AUTHAPP_SMTP_URL is required in production")
        self.outbox = Path(settings.instance_path) / OUTBOX_FOLDER
        sender_domain = parseaddr(settings.mail_from)[1].rpartition("@")[2]
        self.sender_domain = sender_domain or "localhost"

    async def render(self, mail: Mail) -> EmailMessage:
        """The message with a text and an HTML part; needs an app context."""
        context = {**mail.context, "subject": mail.subject}
        text = await render_template(f"{mail.template}.txt", **context)
        html = await render_template(f"{mail.template}.html", **context)
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=self.sender_domain)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    async def send_later(self, mail: Mail) -> None:
        """Render now, deliver after the response: a slow or failing server never delays or
        undoes the change that sent the mail."""
        message = await self.render(mail)
        current_app.add_background_task(self.deliver, message)

    async def deliver(self, message: EmailMessage) -> bool:
        """Send with retries; failures are logged (never the body or a link), never raised."""
        transport: Callable[[EmailMessage], Awaitable[None]] = (
            self._send_smtp if self.target is not None else self._write_outbox
        )
        recipient = str(message["To"])
        masked = _masked(recipient)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await transport(message)
            except Exception as error:
                level = logging.ERROR if attempt == ATTEMPTS else logging.WARNING
                log.log(
                    level,
                    "mail to=%s subject=%r: attempt %d of %d failed: %s: %s%s",
                    masked,
                    str(message["Subject"]),
                    attempt,
                    ATTEMPTS,
                    type(error).__name__,
                    self._redacted(str(error), recipient, masked),
                    " (giving up)" if attempt == ATTEMPTS else "",
                )
                if attempt < ATTEMPTS:
                    await asyncio.sleep(self.settings.mail_retry_delay * 2 ** (attempt - 1))
            else:
                return True
        return False

    async def _send_smtp(self, message: EmailMessage) -> None:
        target = cast(SmtpTarget, self.target)
        await aiosmtplib.send(
            message,
            hostname=target.hostname,
            port=target.port,
            username=target.username,
            password=target.password,
            # False, not None: None would mean "STARTTLS if offered" for smtp+plain too.
            start_tls=target.tls == "starttls",
            use_tls=target.tls == "tls",
            timeout=SMTP_TIMEOUT,
        )

    async def _write_outbox(self, message: EmailMessage) -> None:
        name = await asyncio.to_thread(self._write_outbox_file, message)
        text = message.get_body(preferencelist=("plain",))
        body = text.get_content() if isinstance(text, EmailMessage) else ""
        for link in _LINK_RE.findall(body):
            log.info("outbox: %s to %s: %s", name, message["To"], link)

    def _write_outbox_file(self, message: EmailMessage) -> str:
        self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}.eml"
        # Written under a hidden name and renamed, so a reader never sees half a message.
        partial = self.outbox / f".{name}.partial"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(message.as_bytes())
        partial.rename(self.outbox / name)
        return name

    def _redacted(self, text: str, recipient: str, masked: str) -> str:
        # A server's refusal may quote the address; nothing should ever quote the password.
        password = self.target.password if self.target else None
        if password:
            text = text.replace(password, "***")
        for address in {recipient, parseaddr(recipient)[1]} - {""}:
            text = text.replace(address, masked)
        return text


def _masked(recipient: str) -> str:
    """An address as logs may show it: `*@example.com`."""
    domain = parseaddr(recipient)[1].rpartition("@")[2]
    return f"*@{domain or '?'}"


def init_mail(app: Quart, settings: Settings) -> Mailer:
    app.extensions["authapp_mail"] = app_mailer = Mailer(settings)
    return app_mailer


def mailer() -> Mailer:
    return cast(Mailer, current_app.extensions["authapp_mail"])
