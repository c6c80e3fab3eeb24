"""Development mail a person can click: the whole link on the development console (and only
there), a plain `.txt` beside each `.eml` of the outbox, and the `/dev/outbox` page."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from quart import Quart
from quart_rate_limiter import QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE

from authapp import create_app
from authapp.infra.logs import AuthappLogHandler
from authapp.infra.mail import mailer
from tests.conftest import ENCRYPTION_KEY, PASSWORD, fetch_val, settings_for
from tests.forms import HTML
from tests.mailbox import SmtpServer, drain
from tests.servers import hypercorn

JSON = {"Accept": "application/json"}
VERIFY_LINK = re.compile(r"https?://\S+/auth/verify-email/[A-Za-z0-9_-]{20,}")
OUTBOX_NAME = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}")


@asynccontextmanager
async def dev_app(database_url: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[Quart]:
    """An app as `make run` builds it (development, no SMTP server: mail goes to the outbox),
    on the test database rather than an embedded one."""
    settings = settings_for(database_url, tmp_path, ENV="development", SMTP_URL=None, **overrides)
    app = create_app(settings)
    async with app.test_app():
        yield app


def outbox_of(tmp_path: Path) -> Path:
    return tmp_path / "instance" / "outbox"


async def register(app: Quart, address: str, display_name: str = "Ada") -> None:
    """Register through the API and wait for the verification mail to be written."""
    body = {"email": address, "password": PASSWORD, "display_name": display_name}
    response = await app.test_client().post("/api/auth/register", json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    await drain(app)


async def is_verified(app: Quart, address: str) -> bool:
    query = "SELECT email_verified_at IS NOT NULL FROM users WHERE email = :email"
    return bool(await fetch_val(app, query, {"email": address}))


def plain_text_of(eml: Path) -> str:
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    plain = message.get_body(preferencelist=("plain",))
    assert isinstance(plain, EmailMessage)
    return str(plain.get_content())


async def follow(app: Quart, link: str) -> int:
    """Open a mailed link with the test client (it answers for any host)."""
    parts = urlsplit(link)
    response = await app.test_client().get(parts.path, headers=HTML)
    return response.status_code


# --- the development console ---------------------------------------------------------------


def test_make_run_prints_the_whole_link_once_and_following_it_verifies_the_address(
    database_url: str, tmp_path: Path
) -> None:
    """A real Hypercorn in development (as `make run`): the link is read from what it printed
    while running, and clicking it verifies the address."""
    log_path = tmp_path / "server.log"
    address = "console@example.com"
    with hypercorn(database_url, tmp_path / "instance", "", log_path=log_path,
                   AUTHAPP_ENV="development") as base:  # fmt: skip
        registered = httpx.post(f"{base}/api/auth/register", timeout=30,
                                json={"email": address, "password": PASSWORD})  # fmt: skip
        assert registered.status_code == 201
        line = wait_for_line(log_path, re.compile(rf"outbox: .* to {address}: .*"))
        match = VERIFY_LINK.search(line)
        assert match, f"no whole link in {line!r}"
        link = match[0]
        assert link.startswith(f"{base}/auth/verify-email/")
        assert httpx.get(link, timeout=30).status_code == 200
        signed_in = httpx.post(f"{base}/api/auth/login", timeout=30,
                               json={"email": address, "password": PASSWORD})  # fmt: skip
        assert signed_in.json()["email_verified"] is True
    output = log_path.read_text()
    token = link.rsplit("/", 1)[1]
    assert output.count(token) == 1, "the token was printed more than once"
    assert "GET /auth/verify-email/[redacted]" in output  # the access line of the click


def wait_for_line(path: Path, pattern: re.Pattern[str], seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and (match := pattern.search(path.read_text())):
            return match[0]
        time.sleep(0.05)
    raise AssertionError(f"no line like {pattern.pattern} in:\n{path.read_text()}")


@contextmanager
def authapps_handler_alone() -> Iterator[None]:
    """The root logger without pytest's handlers (it adds them at each phase of a test), so
    create_app installs authapp's own, as in `make run`."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = []
    try:
        yield
    finally:
        root.handlers = saved
        logging.captureWarnings(False)


@pytest.mark.parametrize(
    ("env", "log_format", "whole"),
    [("development", "text", True), ("development", "json", False), ("testing", "text", False)],
)
async def test_only_the_development_console_in_text_prints_the_whole_link(
    database_url: str, tmp_path: Path, env: str, log_format: str, whole: bool
) -> None:
    """The outbox line as the console (authapp's handler on standard error) prints it, and as a
    handler of the host program gets it: that one, and every other format, stays redacted."""
    console = io.StringIO()
    hosts = io.StringIO()
    with authapps_handler_alone():
        app = create_app(settings_for(database_url, tmp_path, ENV=env, SMTP_URL=None,
                                      LOG_FORMAT=log_format))  # fmt: skip
        (console_handler,) = logging.getLogger().handlers
        assert isinstance(console_handler, AuthappLogHandler)
        console_handler.setStream(console)
        # A handler the host program adds, printing what a record carries (its args too).
        host_handler = logging.StreamHandler(hosts)
        host_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(args)s"))
        logging.getLogger().addHandler(host_handler)
        async with app.test_app():
            await register(app, f"{env}-{log_format}@example.com")

    (eml,) = outbox_of(tmp_path).glob("*.eml")
    (link,) = VERIFY_LINK.findall(plain_text_of(eml))
    token = link.rsplit("/", 1)[1]
    redacted = link.replace(token, "[redacted]")
    printed = console.getvalue()
    assert "outbox: " in printed
    if whole:
        assert f" to {env}-{log_format}@example.com: {link} [" in printed  # then the request id
        assert printed.count(token) == 1
    else:
        assert token not in printed
        assert redacted in printed
    assert "outbox: " in hosts.getvalue()
    assert token not in hosts.getvalue()
    assert redacted in hosts.getvalue()


# --- the .txt beside the .eml --------------------------------------------------------------


async def test_each_mail_gets_a_txt_with_its_link_on_a_line_of_its_own(
    database_url: str, tmp_path: Path
) -> None:
    """`grep -h http instance/outbox/*.txt` gives the link, whole, and it works; the .eml stays
    as mail carries it (quoted-printable)."""
    address = "zoe@example.com"
    # Links as `make run` mails them: long enough for quoted-printable to fold.
    async with dev_app(database_url, tmp_path, BASE_URL="http://127.0.0.1:8000") as app:
        await register(app, address, display_name="Zoë")
        outbox = outbox_of(tmp_path)
        names = sorted(path.name for path in outbox.iterdir())  # no partial file left behind
        assert len(names) == 2
        eml, txt = (outbox / name for name in names)
        assert eml.suffix == ".eml"
        assert txt.name == eml.stem + ".txt"
        assert OUTBOX_NAME.fullmatch(eml.stem)
        assert stat.S_IMODE(txt.stat().st_mode) == 0o600

        text = txt.read_text(encoding="utf-8")
        header, _, body = text.partition("\n\n")
        lines = header.splitlines()
        assert lines[:2] == [f"To: {address}", "Subject: Verify your email address"]
        assert re.fullmatch(r"Date: \w{3}, \d\d? \w{3} \d{4} \d\d:\d\d:\d\d \+0000", lines[2])
        assert "Hello Zoë," in body  # decoded, not "Zo=C3=AB"
        grepped = [line for line in text.splitlines() if "http" in line]
        assert len(grepped) == 1
        (link,) = grepped
        assert VERIFY_LINK.fullmatch(link)

        saved = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        plain = saved.get_body(preferencelist=("plain",))
        assert isinstance(plain, EmailMessage)
        assert plain["Content-Transfer-Encoding"] == "quoted-printable"
        assert link not in plain.get_payload()  # folded there: why the .txt exists
        assert link in plain_text_of(eml)

        assert not await is_verified(app, address)
        assert await follow(app, link) == 200
        assert await is_verified(app, address)


async def test_a_link_inside_a_sentence_gets_a_line_of_its_own_in_the_txt(
    database_url: str, tmp_path: Path
) -> None:
    """A product's own mail may put links mid-sentence; the .txt still has each alone."""
    message = EmailMessage()
    message["To"] = "ada@example.com"
    message["Subject"] = "Links inline"
    message["Date"] = "Mon, 30 Nov 2026 10:00:00 +0000"
    message.set_content(
        "Open http://localhost:8000/welcome?step=1&x=2 now, or see https://example.com/help.\n"
        "Thanks.\n"
    )
    async with dev_app(database_url, tmp_path) as app, app.app_context():
        assert await mailer().deliver(message) is True
    (txt,) = outbox_of(tmp_path).glob("*.txt")
    assert txt.read_text().splitlines()[4:] == [
        "Open",
        "http://localhost:8000/welcome?step=1&x=2",
        "now, or see",
        "https://example.com/help",
        ".",
        "Thanks.",
    ]


# --- /dev/outbox ---------------------------------------------------------------------------


class Anchors(HTMLParser):
    """The links of a page, and whether it has any inline style or script."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: list[str] = []
        self.inline = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "a" and attributes.get("href"):
            self.hrefs.append(str(attributes["href"]))
        self.inline += "style" in attributes or tag == "style"
        self.inline += tag == "script" and "src" not in attributes


async def test_dev_outbox_lists_the_latest_mail_newest_first_with_working_links(
    database_url: str, tmp_path: Path
) -> None:
    addresses = ["first@example.com", "second@example.com", "third@example.com"]
    async with dev_app(database_url, tmp_path) as app:
        for address in addresses:
            await register(app, address)
            await asyncio.sleep(0.01)  # distinct times
        client = app.test_client()
        response = await client.get("/dev/outbox", headers=JSON)
        assert response.status_code == 200
        listed = (await response.get_json())["messages"]
        assert [message["to"] for message in listed] == addresses[::-1]
        eml_files = {path.name for path in outbox_of(tmp_path).glob("*.eml")}
        for message in listed:
            assert set(message) == {"file", "to", "subject", "date", "links"}
            assert message["file"] in eml_files
            assert message["subject"] == "Verify your email address"
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", message["date"])
            (link,) = message["links"]
            assert VERIFY_LINK.fullmatch(link)

        page = await client.get("/dev/outbox", headers=HTML)
        assert page.status_code == 200
        assert page.mimetype == "text/html"
        assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
        html = Anchors(await page.get_data(as_text=True))
        assert {"header", "main", "h1"} <= set(html.tags)  # the site's layout
        assert html.inline == 0
        page_links = [href for href in html.hrefs if "/auth/verify-email/" in href]
        assert page_links == [message["links"][0] for message in listed]

        second = listed[1]["links"][0]
        assert await follow(app, second) == 200
        assert await is_verified(app, "second@example.com")
        assert not await is_verified(app, "first@example.com")


async def test_dev_outbox_shows_at_most_fifty_and_ignores_junk_and_what_lies_outside(
    database_url: str, tmp_path: Path
) -> None:
    async with dev_app(database_url, tmp_path) as app:
        await register(app, "many@example.com")
        outbox = outbox_of(tmp_path)
        (original,) = outbox.glob("*.eml")
        now = time.time()
        for number in range(60):  # older copies, then the original is the newest
            copy = outbox / f"20250101T0000{number:02d}-{number:06x}.eml"
            shutil.copy(original, copy)
            os.utime(copy, (now - 1000 + number, now - 1000 + number))
        os.utime(original, (now, now))

        outside = tmp_path / "outside.eml"
        outside.write_bytes(original.read_bytes().replace(b"Subject: Verify", b"Subject: Secret"))
        os.utime(outside, (now + 10, now + 10))
        (outbox / "zz-linked.eml").symlink_to(outside)
        (outbox / "zz-folder.eml").mkdir()
        (outbox / "zz-junk.eml").write_bytes(b"\xff\xfe\x00 not a mail at all \x80\n\n\x00")
        (outbox / "zz-notes.md").write_text("kept by a developer")
        (outbox / ".zz-half.eml.partial").write_bytes(original.read_bytes()[:100])
        (outbox / "zz-bad-charset.eml").write_bytes(
            b"To: x@example.com\nSubject: odd\nContent-Type: text/plain; charset=no-such\n\nhi\n"
        )
        for path in outbox.glob("zz-*"):
            if not path.is_symlink():
                os.utime(path, (now + 5, now + 5))

        response = await app.test_client().get("/dev/outbox", headers=JSON)
        assert response.status_code == 200
        listed = (await response.get_json())["messages"]
        assert len(listed) == 50
        files = [message["file"] for message in listed]
        assert "zz-linked.eml" not in files
        assert all(message["subject"] != "Secret" for message in listed)
        assert "zz-folder.eml" not in files
        assert "zz-junk.eml" not in files
        assert files[:2] == ["zz-bad-charset.eml", original.name]  # newest first
        assert files[2:] == [f"20250101T0000{n:02d}-{n:06x}.eml" for n in range(59, 11, -1)]
        assert listed[0]["links"] == []

        page = await app.test_client().get("/dev/outbox", headers=HTML)
        assert page.status_code == 200


async def test_dev_outbox_with_nothing_sent_yet(database_url: str, tmp_path: Path) -> None:
    async with dev_app(database_url, tmp_path) as app:
        client = app.test_client()
        response = await client.get("/dev/outbox", headers=JSON)
        assert response.status_code == 200
        assert await response.get_json() == {"messages": []}
        page = await client.get("/dev/outbox", headers=HTML)
        assert page.status_code == 200
        assert "No mail yet" in await page.get_data(as_text=True)


async def test_dev_outbox_is_hidden_from_the_api_docs_and_never_throttled(
    database_url: str, tmp_path: Path
) -> None:
    async with dev_app(database_url, tmp_path) as app:
        spec = await (await app.test_client().get("/openapi.json")).get_json()
        endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    assert "/dev/outbox" in endpoints
    assert not any(path.startswith("/dev") for path in spec["paths"])
    view = app.view_functions[endpoints["/dev/outbox"]]
    assert getattr(view, QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE, False)


@pytest.mark.parametrize("env", ["testing", "production"])
async def test_dev_outbox_is_not_found_outside_development(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer, env: str
) -> None:
    outbox = outbox_of(tmp_path)
    outbox.mkdir(parents=True)
    (outbox / "20260101T000000-abcdef.eml").write_bytes(
        b"To: ada@example.com\nSubject: s\n\nhttp://localhost/auth/verify-email/" + b"t" * 43
    )
    settings = settings_for(database_url, tmp_path, ENV=env, SMTP_URL=smtp_server.url,
                            BASE_URL="https://auth.example.com",
                            ENCRYPTION_KEYS=ENCRYPTION_KEY)  # fmt: skip
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        response = await client.get("/dev/outbox", headers=JSON)
        assert response.status_code == 404
        assert (await response.get_json())["code"] == "NOT_FOUND"
        page = await client.get("/dev/outbox", headers=HTML)
        assert page.status_code == 404
        assert "verify-email" not in await page.get_data(as_text=True)
    assert not any(rule.rule.startswith("/dev") for rule in app.url_map.iter_rules())
