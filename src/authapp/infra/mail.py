"""Mail: account emails rendered from templates/mail/ and delivered after the response.

AUTHAPP_SMTP_URL says where mail goes:

    smtp://user:password@host:587       STARTTLS, required: a server that does not offer it
                                        gets no mail (default port 587)
    smtps://user:password@host:465      TLS from the first byte, "implicit TLS" (default port 465)
    smtp+plain://host:25                no TLS at all: only for a relay on the same host, or tests
                                        (default port 25)

The user and password are optional (give both or neither) and percent-encoded where they hold
`@ : / ? #` or `%` (`p%40ss` for `p@ss`). Nothing may follow the port: no path, query or fragment.

Without AUTHAPP_SMTP_URL (development and testing only) mail goes to the development outbox,
<instance>/outbox/, so a developer can click through: per message an `.eml` file (as mail
carries it, quoted-printable) and a `.txt` beside it (its text part decoded, under To, Subject
and Date, with each link on a line of its own), and one log line per link. That line is the
only one ever to carry a link: redacted for every handler, whole only on development's
console (see logs.log_for_dev_console). In development, GET /dev/outbox lists the latest.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
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

from ..config import ConfigError, Settings
from .logs import log_for_dev_console

log = logging.getLogger("authapp.mail")  # see authapp.infra.logs

TlsMode = Literal["starttls", "tls", "none"]

SMTP_SCHEMES: dict[str, tuple[TlsMode, int]] = {
    "smtp": ("starttls", 587),
    "smtps": ("tls", 465),
    "smtp+plain": ("none", 25),
}
ATTEMPTS = 3
SMTP_TIMEOUT = 10
OUTBOX_FOLDER = "outbox"
# Bigger files in the outbox are not its messages (ours are a few KiB): /dev/outbox skips them.
MAX_OUTBOX_FILE = 1024 * 1024
# A link ends before the punctuation of the sentence around it.
_LINK_RE = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]")


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


@dataclass(frozen=True)
class OutboxMessage:
    """One message of the development outbox, as /dev/outbox lists it."""

    file: str
    to: str
    subject: str
    date: datetime | None
    links: tuple[str, ...]


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
        name = await asyncio.to_thread(self._write_outbox_files, message)
        for link in _LINK_RE.findall(plain_text(message)):
            log_for_dev_console(log, logging.INFO, f"outbox: {name} to {message['To']}: {link}")

    def _write_outbox_files(self, message: EmailMessage) -> str:
        """The .txt, then the .eml (so a listed .eml has its .txt); the .eml's name."""
        self.outbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        stem = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self._write_new(f"{stem}.txt", outbox_text(message).encode())
        self._write_new(f"{stem}.eml", message.as_bytes())
        return f"{stem}.eml"

    def _write_new(self, name: str, data: bytes) -> None:
        # Written under a hidden name and renamed, so a reader never sees half a file.
        partial = self.outbox / f".{name}.partial"
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        partial.rename(self.outbox / name)

    def read_outbox(self, limit: int) -> list[OutboxMessage]:
        """The outbox's newest `limit` messages, newest first. Only the folder's own `.eml`
        files count (no symlink leads out of it); a file that is not a mail is skipped."""
        found: list[tuple[int, str]] = []
        try:
            with os.scandir(self.outbox) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.name.endswith(".eml"):
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False):
                            found.append(
                                (entry.stat(follow_symlinks=False).st_mtime_ns, entry.name)
                            )
                    except OSError:  # removed since the folder was read
                        continue
        except FileNotFoundError:  # nothing sent yet
            return []
        messages: list[OutboxMessage] = []
        for _, name in sorted(found, reverse=True):
            message = self._read_outbox_file(name)
            if message is not None:
                messages.append(message)
                if len(messages) == limit:
                    break
        return messages

    def _read_outbox_file(self, name: str) -> OutboxMessage | None:
        try:
            # O_NOFOLLOW: a file swapped for a symlink since the listing is not read either.
            descriptor = os.open(self.outbox / name, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(descriptor, "rb") as file:
                data = file.read(MAX_OUTBOX_FILE + 1)
        except OSError:
            return None
        if len(data) > MAX_OUTBOX_FILE:
            return None
        try:
            message = email.message_from_bytes(data, policy=email.policy.default)
            if not isinstance(message, EmailMessage) or message["To"] is None:
                return None
            to, subject = str(message["To"]), str(message["Subject"] or "")
            date = getattr(message["Date"], "datetime", None)
            links = tuple(_LINK_RE.findall(plain_text(message)))
        except Exception:  # the email package can raise almost anything on junk: skip it
            return None
        if isinstance(date, datetime):
            date = date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC)
        return OutboxMessage(file=name, to=to, subject=subject, date=date, links=links)

    def _redacted(self, text: str, recipient: str, masked: str) -> str:
        # A server's refusal may quote the address; nothing should ever quote the password.
        password = self.target.password if self.target else None
        if password:
            text = text.replace(password, "***")
        for address in {recipient, parseaddr(recipient)[1]} - {""}:
            text = text.replace(address, masked)
        return text


def plain_text(message: EmailMessage) -> str:
    """The text part, decoded ("" without one); an unknown charset reads as UTF-8."""
    part = message.get_body(preferencelist=("plain",))
    if not isinstance(part, EmailMessage):
        return ""
    try:
        return str(part.get_content())
    except LookupError:
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def outbox_text(message: EmailMessage) -> str:
    """The outbox's .txt of a message: To, Subject and Date, then its text part with each link
    on a line of its own (so `grep http` gives whole links)."""
    lines = [
        f"To: {message['To']}",
        f"Subject: {message['Subject']}",
        f"Date: {message['Date']}",
        "",
    ]
    for line in plain_text(message).splitlines():
        if _LINK_RE.search(line):
            pieces = _LINK_RE.sub(lambda link: f"\n{link[0]}\n", line).splitlines()
            lines.extend(piece.strip() for piece in pieces if piece.strip())
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _masked(recipient: str) -> str:
    """An address as logs may show it: `*@example.com`."""
    domain = parseaddr(recipient)[1].rpartition("@")[2]
    return f"*@{domain or '?'}"


def init_mail(app: Quart, settings: Settings) -> Mailer:
    app.extensions["authapp_mail"] = app_mailer = Mailer(settings)
    return app_mailer


def mailer() -> Mailer:
    return cast(Mailer, current_app.extensions["authapp_mail"])
