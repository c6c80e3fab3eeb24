"""Logs: a request id on every line of a request (and answered in X-Request-ID), one line
format (text or JSON), and no token, password, cookie or bearer credential in any line."""

from __future__ import annotations

import atexit
import io
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import AccessLogAtoms
from quart import Quart
from quart.typing import TestClientProtocol as Client

import authapp.infra.log_writer
from authapp import create_app
from authapp.config import ConfigError, load_settings
from authapp.infra.log_writer import write_off_the_loop
from authapp.infra.logs import (
    AccessAtoms,
    AccessLogger,
    AuthappLogHandler,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    configure_logging,
    log_for_dev_console,
    printed_elsewhere,
    redact,
)
from tests.conftest import ENCRYPTION_KEY, PASSWORD, execute, settings_for
from tests.mailbox import Mailbox, SmtpServer, drain
from tests.servers import hypercorn

NEW_PASSWORD = "a brand new passphrase 2026"
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What a handler like authapp's prints in JSON while the test runs (pytest keeps its own
    handlers on the root logger, so configure_logging leaves the root alone in tests)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# --- the request id ------------------------------------------------------------------------


async def test_each_answer_carries_a_new_request_id(client: Client) -> None:
    first = (await client.get("/api/me")).headers["X-Request-ID"]
    second = (await client.get("/auth/login")).headers["X-Request-ID"]
    assert HEX_ID.match(first)
    assert HEX_ID.match(second)
    assert first != second


async def test_a_well_formed_incoming_request_id_is_kept(client: Client) -> None:
    given = "edge-7f3a.2:b_1"
    response = await client.get("/api/me", headers={"X-Request-ID": given})
    assert response.headers["X-Request-ID"] == given
    assert response.headers.getlist("X-Request-ID") == [given]


@pytest.mark.parametrize(
    "given", ["", "x" * 129, "two words", "semi;colon", 'quote"d', "{json}", "caf\u00e9"]
)
async def test_a_malformed_incoming_request_id_is_replaced(client: Client, given: str) -> None:
    response = await client.get("/api/me", headers={"X-Request-ID": given})
    assert HEX_ID.match(response.headers["X-Request-ID"])


async def test_every_line_of_a_request_carries_its_id_even_from_its_background_mail(
    database_url: str, tmp_path: Path, captured: io.StringIO
) -> None:
    """The verification mail of a registration fails three times, after the answer, in a
    background task: its warnings carry the id of the request that started it."""
    app = create_app(
        settings_for(database_url, tmp_path, SMTP_URL="smtp+plain://127.0.0.1:9",
                     MAIL_RETRY_DELAY=0)
    )  # fmt: skip
    async with app.test_app():
        client = app.test_client()
        response = await client.post(
            "/api/auth/register", json={"email": "id@example.com", "password": PASSWORD},
            headers={"X-Request-ID": "register-1"},
        )  # fmt: skip
        assert response.status_code == 201
        await drain(app)
        other = await client.get("/api/me")
        await execute(app, "DELETE FROM users WHERE email = 'id@example.com'")
    ours = [line for line in lines_of(captured) if line["logger"].startswith("authapp")]
    messages = {line["message"]: line["request_id"] for line in ours}
    registered = [message for message in messages if message.startswith("registered user")]
    assert [messages[message] for message in registered] == ["register-1"]
    failures = [line for line in ours if "attempt" in line["message"]]
    assert len(failures) == 3  # the mail's three tries
    assert {line["request_id"] for line in failures} == {"register-1"}
    assert other.headers["X-Request-ID"] != "register-1"


# --- the line formats ----------------------------------------------------------------------


def make_record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("authapp.test", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_have_the_fields_extras_and_exceptions() -> None:
    record = make_record("user %s did\nsomething", "u1", request_id="r-1", user="u1")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "authapp.test"
    assert entry["message"] == "user u1 did\nsomething"
    assert entry["request_id"] == "r-1"
    assert entry["user"] == "u1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", entry["time"])
    try:
        raise ValueError("boom at /auth/reset-password/" + "t" * 43)
    except ValueError:
        failing = make_record("it failed")
        failing.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(failing))
    assert entry["request_id"] is None
    assert "ValueError: boom at /auth/reset-password/[redacted]" in entry["exception"]


def test_text_lines_end_with_the_request_id() -> None:
    line = TextFormatter().format(make_record("hello %s", "there", request_id="r-2"))
    assert re.match(r"^\[.+\] \[\d+\] \[WARNING\] authapp\.test: hello there \[r-2\]$", line)
    assert not TextFormatter().format(make_record("no request")).endswith("]")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /auth/verify-email/" + "A" * 43 + " HTTP/1.1",
         "GET /auth/verify-email/[redacted] HTTP/1.1"),
        ("POST /auth/reset-password/abc-_9?next=/x",
         "POST /auth/reset-password/[redacted]?next=/x"),
        ("/auth/confirm-email/tok", "/auth/confirm-email/[redacted]"),
        ("GET /auth/verify-email/resend HTTP/1.1", "GET /auth/verify-email/resend HTTP/1.1"),
        ("POST /api/auth/verify-email/resend", "POST /api/auth/verify-email/resend"),
        ("POST /api/auth/reset-password", "POST /api/auth/reset-password"),
        ("token authapp_pat_" + "b" * 43 + "0a1b2c3d", "token authapp_pat_[redacted]"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer [redacted]"),
        ("user 5 signed in", "user 5 signed in"),
    ],
)  # fmt: skip
def test_redaction(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_access_log_is_redacted_before_its_line_is_made() -> None:
    """Whatever prints Hypercorn's access log (its own handler, without hypercorn.toml)."""
    scope = {
        "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/auth/reset-password/" + "s" * 43, "query_string": b"", "client": ("10.0.0.1", 5),
        "headers": [(b"referer", b"http://x/auth/confirm-email/" + b"c" * 43),
                    (b"cookie", b"authapp_session=secret"),
                    (b"authorization", b"Bearer authapp_pat_secret")],
    }  # fmt: skip
    response = {"status": 200, "headers": [(b"x-request-id", b"req-9"), (b"set-cookie", b"s=1")]}
    atoms = AccessLogAtoms(scope, response, 0.25)  # type: ignore[arg-type]
    stream = io.StringIO()
    plain = logging.StreamHandler(stream)  # not ours: the redaction is the logger's own filter
    logger = logging.getLogger("hypercorn.access")
    configure_logging(load_settings({"ENV": "testing"}))
    logger.addHandler(plain)
    logger.setLevel(logging.INFO)  # as Hypercorn sets it
    try:
        fmt = '%(h)s "%(r)s" %(s)s "%(f)s" %({cookie}i)s %({authorization}i)s %({set-cookie}o)s'
        logger.info(fmt, atoms)
    finally:
        logger.removeHandler(plain)
        logger.setLevel(logging.NOTSET)
    assert stream.getvalue() == (
        '10.0.0.1:5 "GET /auth/reset-password/[redacted] 1.1" 200 '
        '"http://x/auth/confirm-email/[redacted]" [redacted] [redacted] [redacted]\n'
    )


# Every atom of Hypercorn's (its docs' table), some headers in any case, and one that is absent.
EVERY_ATOM = " ".join(
    f"%({atom})s"
    for atom in ["h", "l", "t", "r", "R", "s", "st", "S", "m", "U", "Uq", "q", "H", "b", "B",
                 "f", "a", "T", "D", "L", "p", "{user-agent}i", "{X-Trace}i", "{x-request-id}o",
                 "{content-type}o", "{absent}i", "{absent}o"]
)  # fmt: skip
SCOPE = {
    "type": "http", "http_version": "1.1", "method": "POST", "scheme": "https",
    "path": "/api/me", "query_string": b"a=1&b=%C3%A9", "client": ("10.0.0.1", 5),
    "headers": [(b"referer", b"http://x/y"), (b"user-agent", b"curl/8"), (b"X-Trace", b"1"),
                (b"x-trace", b"2")],
}  # fmt: skip
RESPONSE = {"status": 418, "headers": [(b"content-length", b"12"), (b"x-request-id", b"r-1"),
                                        (b"content-type", b"application/json")]}  # fmt: skip


@pytest.mark.parametrize("response", [RESPONSE, {**RESPONSE, "status": 599}, None])
def test_our_access_atoms_are_hypercorns_made_only_when_asked(response: Any) -> None:
    """AccessAtoms stands in for Hypercorn's AccessLogAtoms under `authapp serve`: the same
    value for every atom (this pins them to Hypercorn's, should a new version change them),
    but never the environment's."""
    theirs = AccessLogAtoms(SCOPE, response, 1.25)  # type: ignore[arg-type]
    ours = AccessAtoms(SCOPE, response, 1.25)  # type: ignore[arg-type]
    assert EVERY_ATOM % ours == EVERY_ATOM % theirs
    assert theirs["{path}e"] != "-"
    assert ours["{path}e"] == "-"


async def test_the_access_logger_of_authapp_serve_logs_through_the_redaction() -> None:
    stream = io.StringIO()
    plain = logging.StreamHandler(stream)
    logger = logging.getLogger("hypercorn.access")
    configure_logging(load_settings({"ENV": "testing"}))
    config = HypercornConfig()
    config.accesslog = logger  # as hypercorn.toml's `accesslog = "-"`, without its handler
    config.access_log_format = '"%(R)s" %(s)s %({authorization}i)s %({Cookie}i)s %({home}e)s'
    logger.addHandler(plain)
    logger.setLevel(logging.INFO)
    try:
        scope = {**SCOPE, "path": "/auth/verify-email/" + "s" * 43, "query_string": b"",
                 "headers": [(b"authorization", b"Bearer x"), (b"cookie", b"s=1")]}  # fmt: skip
        await AccessLogger(config).access(scope, RESPONSE, 0.5)  # type: ignore[arg-type]
        logger.setLevel(logging.WARNING)  # a line not printed is not made
        await AccessLogger(config).access(scope, RESPONSE, 0.5)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(plain)
        logger.setLevel(logging.NOTSET)
    assert (
        stream.getvalue()
        == '"POST /auth/verify-email/[redacted] 1.1" 418 [redacted] [redacted] -\n'
    )


@pytest.mark.parametrize(
    "text",
    ["GET /api/me 1.1", "x" * 200, "/auth/sign-in", "authapp_pat", "bear", "Bearer", "€ bearer€"],
)
def test_redaction_leaves_what_holds_no_secret_as_it_was(text: str) -> None:
    assert redact(text) == text


class Stalled(io.StringIO):
    """A standard error that takes each line only once let (a full pipe, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.let = threading.Event()

    def write(self, text: str) -> int:
        self.let.wait(timeout=10)
        return super().write(text)


def test_a_serving_process_writes_its_lines_off_the_loop_and_all_of_them() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    stream = Stalled()
    try:
        root.handlers = []
        configure_logging(load_settings({"ENV": "testing", "LOG_FORMAT": "json"}))
        (handler,) = root.handlers
        assert isinstance(handler, AuthappLogHandler)
        handler.setStream(stream)
        stop = write_off_the_loop()
        atexit.unregister(stop)  # called here instead
        (queued,) = root.handlers
        logger = logging.getLogger("authapp.test")
        for number in range(3):
            logger.warning("line %d of %s", number, "three")  # returns while stderr is stalled
        assert stream.getvalue() == ""
        configure_logging(load_settings({"ENV": "testing"}))  # a later app: text, still queued
        assert root.handlers == [queued]
        stream.let.set()
        stop()  # as the process exits: what waits is written
    finally:
        root.handlers = saved
        logging.captureWarnings(False)
    lines = stream.getvalue().splitlines()
    assert [line.split("authapp.test: ")[-1] for line in lines] == [
        "line 0 of three", "line 1 of three", "line 2 of three"
    ]  # fmt: skip


def test_configure_logging_installs_one_handler_unless_the_host_has_its_own() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        root.handlers = []
        configure_logging(load_settings({"ENV": "testing", "LOG_FORMAT": "json"}))
        configure_logging(load_settings({"ENV": "testing"}))  # a second app: text now
        (handler,) = root.handlers
        assert isinstance(handler, AuthappLogHandler)
        assert isinstance(handler.formatter, TextFormatter)
        root.handlers = [logging.NullHandler()]
        configure_logging(load_settings({"ENV": "testing"}))
        assert len(root.handlers) == 1
        assert not isinstance(root.handlers[0], AuthappLogHandler)
    finally:
        root.handlers = saved
        logging.captureWarnings(False)


PRODUCTION = {"SECRET_KEY": "k" * 32, "DATABASE_URL": "postgresql://x", "SMTP_URL": "smtp://h",
              "BASE_URL": "https://auth.example.com",
              "ENCRYPTION_KEYS": ENCRYPTION_KEY}  # fmt: skip


class Records(logging.Handler):
    """A host program's handler that keeps the records themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(
    ("settings", "whole"),
    [
        ({"ENV": "development"}, True),
        ({"ENV": "development", "LOG_FORMAT": "json"}, False),
        ({"ENV": "testing"}, False),
        (PRODUCTION, False),
        ({**PRODUCTION, "LOG_FORMAT": "text"}, False),
    ],
)
def test_a_line_for_the_dev_console_is_whole_only_on_developments_text_console(
    settings: dict[str, str], whole: bool
) -> None:
    """The outbox's link line (tests/test_dev_outbox.py sends real mail through it): authapp's
    console prints it whole in development's text lines only; every other format, and every
    other handler, gets it redacted, and no part of the record holds the token."""
    token = "T0ken_" + "x" * 37
    text = f"outbox: a.eml to ada@example.com: http://127.0.0.1:8000/auth/verify-email/{token}"
    root = logging.getLogger()
    saved = root.handlers[:]
    console, hosts, kept = io.StringIO(), io.StringIO(), Records()
    try:
        root.handlers = []
        configure_logging(load_settings(settings, environ={}))
        (handler,) = root.handlers
        assert isinstance(handler, AuthappLogHandler)
        handler.setStream(console)
        host = logging.StreamHandler(hosts)
        host.setFormatter(logging.Formatter("%(message)s %(args)s"))
        root.handlers += [host, kept]
        log_for_dev_console(logging.getLogger("authapp.mail"), logging.INFO, text)
    finally:
        root.handlers = saved
        logging.captureWarnings(False)
    printed = console.getvalue()
    if whole:
        assert printed.endswith(f"authapp.mail: {text}\n")
    else:
        assert token not in printed
        assert "/auth/verify-email/[redacted]" in printed
    assert hosts.getvalue() == f"{redact(text)} ()\n"
    (record,) = kept.records
    assert token not in repr(vars(record))
    assert record.pathname == __file__  # the caller's place, as log.info would give


def test_the_format_defaults_by_environment() -> None:
    assert load_settings({"ENV": "development"}).log_style == "text"
    assert load_settings({"ENV": "testing"}).log_style == "text"
    assert load_settings(PRODUCTION).log_style == "json"
    assert load_settings({**PRODUCTION, "LOG_FORMAT": "text"}).log_style == "text"


def test_hypercorn_lines_printed_by_hypercorn_are_not_printed_twice() -> None:
    error_log = logging.getLogger("hypercorn.error")
    record = logging.LogRecord("hypercorn.error", logging.INFO, __file__, 1, "Running", None, None)
    saved = error_log.handlers[:]
    try:
        error_log.handlers = [logging.NullHandler()]
        assert printed_elsewhere(record)
        error_log.handlers = []
        assert not printed_elsewhere(record)
    finally:
        error_log.handlers = saved


# --- a real server: every line JSON, with request ids, and no secrets ----------------------


async def test_a_whole_account_flow_on_hypercorn_logs_json_lines_without_secrets(
    app: Quart, database_url: str, tmp_path: Path, smtp_server: SmtpServer, mailbox: Mailbox
) -> None:
    secrets: list[str] = [PASSWORD, NEW_PASSWORD]
    answered_ids: list[str] = []
    written: list[str] = []

    def token_in(message: Any, path: str) -> str:
        token = urlsplit(mailbox.link(message, path)).path.rsplit("/", 1)[1]
        secrets.append(token)
        return token

    with hypercorn(database_url, tmp_path / "instance", smtp_server.url, output=written) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:

            async def call(method: str, path: str, **options: Any) -> httpx.Response:
                response = await http.request(method, path, **options)
                answered_ids.append(response.headers["x-request-id"])
                return response

            email = "logs@example.com"
            registered = await call(
                "POST", "/api/auth/register", json={"email": email, "password": PASSWORD}
            )
            assert registered.status_code == 201
            verify = token_in((await mailbox.wait_for(to=email))[0], "/auth/verify-email/")
            assert (await call("GET", f"/auth/verify-email/{verify}")).status_code == 200

            await call("POST", "/api/auth/login", json={"email": email, "password": "wrong one!"})
            login = await call("POST", "/api/auth/login", json={"email": email,
                                                                "password": PASSWORD})  # fmt: skip
            cookies = dict(value.split(";")[0].split("=", 1)
                           for value in login.headers.get_list("set-cookie"))  # fmt: skip
            secrets.extend([cookies["__Host-authapp_session"], cookies["__Host-authapp_device"]])
            cookie = f"__Host-authapp_session={cookies['__Host-authapp_session']}"
            session = {"Cookie": cookie}
            created = await call("POST", "/api/tokens", headers=session,
                                 json={"name": "logs", "scopes": ["profile:read"]})  # fmt: skip
            bearer = created.json()["token"]
            secrets.append(bearer)
            me = await call("GET", "/api/me", headers={"Authorization": f"Bearer {bearer}"})
            assert me.status_code == 200

            change = {"new_email": "new@example.com", "password": PASSWORD}
            changed = await call("POST", "/api/me/email", headers=session, json=change)
            assert changed.status_code == 202
            confirm = token_in((await mailbox.wait_for(to="new@example.com"))[0],
                               "/auth/confirm-email/")  # fmt: skip
            assert (await call("GET", f"/auth/confirm-email/{confirm}")).status_code == 200
            confirmed = await call("POST", "/api/auth/confirm-email", json={"token": confirm})
            assert confirmed.status_code == 204

            await call("POST", "/api/auth/forgot-password", json={"email": "new@example.com"})
            reset = token_in((await mailbox.wait_for(2, to="new@example.com"))[1],
                             "/auth/reset-password/")  # fmt: skip
            assert (await call("GET", f"/auth/reset-password/{reset}")).status_code == 200
            done = await call("POST", "/api/auth/reset-password",
                              json={"token": reset, "password": NEW_PASSWORD})  # fmt: skip
            assert done.status_code == 204
            traced = await call("GET", "/api/me", headers={"X-Request-ID": "trace-42"})
            assert traced.headers["x-request-id"] == "trace-42"
            events = await call("GET", "/api/me/events", headers=session)
            assert events.status_code == 401  # the reset ended every session
    (output,) = written

    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines, "the server wrote nothing"
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line), line
    access = [line for line in lines if line["logger"] == "hypercorn.access"]
    assert all(line["request_id"] for line in access)  # the readiness polls' lines too
    assert set(answered_ids) <= {line["request_id"] for line in access}
    assert "trace-42" in answered_ids
    assert any(line["message"].count("/auth/verify-email/[redacted]") for line in access)
    assert any(line["logger"].startswith("authapp") and line["request_id"] for line in lines)
    assert any(line["logger"] == "hypercorn.error" for line in lines)  # "Running on ..."
    for secret in secrets:
        assert secret not in output, secret[:6]


@pytest.mark.parametrize("value", ["xml", "JSON ", "yes"])
def test_a_log_format_other_than_text_or_json_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="AUTHAPP_LOG_FORMAT must be text or json"):
        load_settings(environ={"AUTHAPP_ENV": "testing", "AUTHAPP_LOG_FORMAT": value})


def test_the_writer_takes_the_lines_in_batches_not_one_wake_up_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each line woke logging's QueueListener, which then waited for the GIL: five context
    switches per request served. The writer wakes on its own clock and takes what waits."""
    monkeypatch.setattr(authapp.infra.log_writer, "WRITE_INTERVAL", 0.2)
    root = logging.getLogger()
    saved = root.handlers[:]
    stream = io.StringIO()
    batches: list[int] = []
    write_waiting = authapp.infra.log_writer._Writer.write_waiting

    def counted(self: authapp.infra.log_writer._Writer) -> None:
        batches.append(self.queue.qsize())
        write_waiting(self)

    monkeypatch.setattr(authapp.infra.log_writer._Writer, "write_waiting", counted)
    try:
        root.handlers = []
        configure_logging(load_settings({"ENV": "testing", "LOG_FORMAT": "json"}))
        (handler,) = root.handlers
        handler.setStream(stream)  # type: ignore[attr-defined]
        stop = write_off_the_loop()
        atexit.unregister(stop)
        logger = logging.getLogger("authapp.test")
        for number in range(50):
            logger.warning("line %d", number)
        time.sleep(0.5)
        stop()
    finally:
        root.handlers = saved
        logging.captureWarnings(False)
    assert len(stream.getvalue().splitlines()) == 50
    assert [size for size in batches if size] == [50]
