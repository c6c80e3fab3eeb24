"""Mail: SMTP URLs, rendering, delivery after the response, retries, the development outbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import socket
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from authapp import ConfigError, create_app
from authapp.infra.mail import Mail, SmtpTarget, mailer, parse_smtp_url
from tests.conftest import settings_for
from tests.mailbox import Mailbox, SmtpServer
from tests.servers import free_port

LINK = "https://auth.example.com/verify-email?token=s3cret-token-value"
PASSWORD = "p@ss:w/rd secret"  # percent-encoded below
ENCODED_PASSWORD = "p%40ss%3Aw%2Frd%20secret"


def example_mail(to: str = "ada@example.com", name: str = "Ada") -> Mail:
    return Mail(
        to=to,
        subject="Your test message",
        template="mail/test_message",
        context={"name": name, "link": LINK},
    )


@asynccontextmanager
async def mail_app(database_url: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[Quart]:
    """A fresh app (retrying at once, unless told) with a page that sends the example mail."""
    app = create_app(settings_for(database_url, tmp_path, **{"MAIL_RETRY_DELAY": 0, **overrides}))

    @app.get("/send")
    async def send() -> str:
        await mailer().send_later(example_mail())
        return "sent"

    async with app.test_app():
        yield app


def mail_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "authapp.mail"]


# --- SMTP URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "smtp://mailer:secret@mail.example.com",
            SmtpTarget("mail.example.com", 587, "mailer", "secret", "starttls"),
        ),
        (
            "smtps://mailer:secret@mail.example.com",
            SmtpTarget("mail.example.com", 465, "mailer", "secret", "tls"),
        ),
        ("smtp+plain://localhost", SmtpTarget("localhost", 25, None, None, "none")),
        ("smtp+plain://127.0.0.1:2525/", SmtpTarget("127.0.0.1", 2525, None, None, "none")),
        (
            f"smtp://mailer%40example.com:{ENCODED_PASSWORD}@Mail.Example.com:2587",
            SmtpTarget("mail.example.com", 2587, "mailer@example.com", PASSWORD, "starttls"),
        ),
        ("smtps://[::1]:4650", SmtpTarget("::1", 4650, None, None, "tls")),
    ],
)
def test_smtp_urls(url: str, target: SmtpTarget) -> None:
    assert parse_smtp_url(url) == target


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.com", "the scheme must be"),
        ("mail.example.com:25", "the scheme must be"),
        ("smtp+tls://mail.example.com", "the scheme must be"),
        ("", "the scheme must be"),
        ("smtp://", "names no host"),
        ("smtp://user:hunter2secret@", "names no host"),
        ("smtp://mail.example.com:99999", "the port must be"),
        ("smtp://user:hunter2secret@mail.example.com:port", "the port must be"),
        ("smtp://mail.example.com/path", "nothing may follow"),
        ("smtp://mail.example.com?tls=no", "nothing may follow"),
        ("smtp://user:hunter2#secret@mail.example.com", "nothing may follow"),
        ("smtp://user@mail.example.com", "both a user and a password"),
        ("smtp://:hunter2secret@mail.example.com", "both a user and a password"),
    ],
)
def test_bad_smtp_urls_are_refused_in_one_line(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_smtp_url(url)
    assert "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_bad_smtp_url_stops_the_app_with_a_config_error(
    database_url: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"^AUTHAPP_SMTP_URL: the scheme must be") as caught:
        create_app(settings_for(database_url, tmp_path, SMTP_URL="smtpx://u:hunter2@host"))
    assert "hunter2" not in str(caught.value)


def test_the_password_stays_out_of_the_repr() -> None:
    target = parse_smtp_url(f"smtps://mailer:{ENCODED_PASSWORD}@mail.example.com")
    assert target.password == PASSWORD
    for text in (repr(target), str(target)):
        assert "mailer" in text
        assert "secret" not in text
        assert "p%40ss" not in text


# --- rendering -----------------------------------------------------------------------------


async def test_a_rendered_message_has_text_and_html_and_headers(app: Quart) -> None:
    async with app.app_context():
        message = await mailer().render(example_mail(name="<Ada & Bob>"))

    assert message["From"] == "authapp <no-reply@localhost>"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Your test message"
    assert re.fullmatch(r"<[^@<>]+@localhost>", str(message["Message-ID"]))
    assert abs(time.time() - parsedate_to_datetime(str(message["Date"])).timestamp()) < 60

    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()  # type: ignore[misc]
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert text.get_content_type() == "text/plain"  # the text first: clients prefer the last
    assert html.get_content_type() == "text/html"
    footer = "You get this mail because of an account at authapp."
    assert "Hello <Ada & Bob>," in text.get_content()
    assert LINK in text.get_content()
    assert footer in text.get_content()
    assert "Hello &lt;Ada &amp; Bob&gt;," in html.get_content()
    assert f'href="{LINK}"' in html.get_content()
    assert footer in html.get_content()
    assert "<title>Your test message</title>" in html.get_content()


@pytest.mark.parametrize(
    "to",
    ["ada@example.com\r\nBcc: eve@example.com", "ada@example.com\nBcc: eve@example.com"],
)
async def test_no_header_injection_through_the_address(app: Quart, to: str) -> None:
    async with app.app_context():
        with pytest.raises(ValueError, match="linefeed or carriage return"):
            await mailer().render(example_mail(to=to))


# --- delivery ------------------------------------------------------------------------------


async def test_send_later_delivers_after_the_response(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    async with mail_app(database_url, tmp_path, SMTP_URL=smtp_server.url) as app:
        response = await app.test_client().get("/send")
        assert response.status_code == 200

        (message,) = await mailbox.wait_for(1, to="ada@example.com")
    assert message["Subject"] == "Your test message"
    assert mailbox.link(message, "/verify-email") == LINK
    (received,) = mailbox.received
    assert received.sender == "no-reply@localhost"
    assert received.recipients == ["ada@example.com"]
    assert received.login is None


async def test_send_later_in_a_request_context(app: Quart, mailbox: Mailbox) -> None:
    async with app.test_request_context("/"):
        await mailer().send_later(example_mail(to="bob@example.com"))
    (message,) = await mailbox.wait_for(1, to="bob@example.com")
    assert message["To"] == "bob@example.com"


async def test_a_server_that_never_answers_does_not_delay_the_response(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A listening socket that never accepts: the connection opens, the greeting never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with mail_app(database_url, tmp_path, SMTP_URL=f"smtp+plain://127.0.0.1:{port}") as (
            app
        ):
            started = time.monotonic()
            response = await app.test_client().get("/send")
            assert response.status_code == 200
            assert time.monotonic() - started < 2
            await asyncio.sleep(0.2)
            assert app.background_tasks, "the delivery should still be waiting for the server"
            silent.close()  # the waiting connection is reset; the retries find nothing listening
            await asyncio.wait_for(asyncio.gather(*app.background_tasks), timeout=10)
    assert [record.levelname for record in mail_records(caplog)] == [
        "WARNING",
        "WARNING",
        "ERROR",
    ]


async def test_a_server_that_is_down_costs_three_logged_attempts_and_no_secrets(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()
    url = f"smtp+plain://mailer:{ENCODED_PASSWORD}@127.0.0.1:{closed}"
    overrides = {"SMTP_URL": url, "MAIL_RETRY_DELAY": 0.05}
    async with mail_app(database_url, tmp_path, **overrides) as app, app.app_context():
        message = await mailer().render(example_mail())
        started = time.monotonic()
        assert await mailer().deliver(message) is False
        assert time.monotonic() - started >= 0.05 + 0.1  # backed off 0.05 s, then 0.1 s
        assert PASSWORD not in repr(mailer().target)

    records = mail_records(caplog)
    assert [record.levelname for record in records] == ["WARNING", "WARNING", "ERROR"]
    for attempt, record in enumerate(records, start=1):
        line = record.getMessage()
        assert "to=*@example.com" in line
        assert "'Your test message'" in line
        assert f"attempt {attempt} of 3" in line
        assert "SMTPConnectError" in line
    assert "giving up" in records[-1].getMessage()
    for forbidden in ("ada@", "token", "verify-email", "Hello", PASSWORD, ENCODED_PASSWORD):
        assert forbidden not in caplog.text


async def test_starttls_is_required_by_smtp_urls(
    database_url: str,
    tmp_path: Path,
    smtp_server: SmtpServer,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The test server offers no STARTTLS: smtp:// must refuse to send in the clear."""
    url = f"smtp://mailer:{ENCODED_PASSWORD}@127.0.0.1:{smtp_server.port}"
    async with mail_app(database_url, tmp_path, SMTP_URL=url) as app, app.app_context():
        assert await mailer().deliver(await mailer().render(example_mail())) is False
    await mailbox.settle()
    assert mailbox.received == []
    records = mail_records(caplog)
    assert [record.levelname for record in records] == ["WARNING", "WARNING", "ERROR"]
    assert "STARTTLS" in records[-1].getMessage()
    assert PASSWORD not in caplog.text


async def test_plain_smtp_signs_in_with_the_decoded_password(
    database_url: str,
    tmp_path: Path,
    smtp_server: SmtpServer,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="authapp")
    url = f"smtp+plain://mailer%40example.com:{ENCODED_PASSWORD}@127.0.0.1:{smtp_server.port}"
    async with mail_app(database_url, tmp_path, SMTP_URL=url) as app, app.app_context():
        assert await mailer().deliver(await mailer().render(example_mail())) is True
    (received,) = mailbox.received
    assert received.login == ("mailer@example.com", PASSWORD)
    assert mail_records(caplog) == []
    assert PASSWORD not in caplog.text


# --- the development outbox ----------------------------------------------------------------


async def test_without_an_smtp_url_mail_goes_to_the_outbox(
    database_url: str, tmp_path: Path, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_for(database_url, tmp_path, SMTP_URL=None))
    async with app.app_context():
        assert await mailer().deliver(await mailer().render(example_mail())) is True

    outbox = tmp_path / "instance" / "outbox"
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    path, text = sorted(outbox.iterdir())  # and no partial file left behind
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}\.eml", path.name)
    assert text.name == f"{path.stem}.txt"  # tests/test_dev_outbox.py reads it
    for written in (path, text):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    saved = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert saved["Subject"] == "Your test message"
    assert isinstance(saved, EmailMessage)
    assert mailbox.link(saved, "/verify-email") == LINK

    lines = [record.getMessage() for record in mail_records(caplog)]
    assert lines == [f"outbox: {path.name} to ada@example.com: {LINK}"]
    await mailbox.settle()
    assert mailbox.received == []  # nothing went to an SMTP server
