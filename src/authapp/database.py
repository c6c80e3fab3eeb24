"""The database: pool connections per unit of work, migrations, and where migrations live."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import asyncpg
from quart_db import Connection, QuartDB

from .errors import APIError

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

# Errors that mean "the database cannot be reached", as opposed to a wrong query.
_UNAVAILABLE = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
)


def unavailable() -> APIError:
    return APIError(
        503,
        "SERVICE_UNAVAILABLE",
        "The database is unavailable. Try again shortly.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def migrations_path() -> Path:
    """The migrations folder: inside the installed package (wheel), else the repository's top."""
    packaged = Path(__file__).resolve().parent / "migrations"
    if (packaged / "0.py").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "0.py").is_file():
        return checkout
    raise RuntimeError(f"authapp's migrations are missing (looked in {packaged} and {checkout})")


class Database:
    """Hands out pool connections for short units of work, with a bounded wait.

    Requests take a connection only while they run SQL (never while hashing a password), so
    a request that needs no database (docs, 429s) never waits on the pool.
    """

    def __init__(self, quart_db: QuartDB, acquire_timeout: float) -> None:
        self.quart_db = quart_db
        self.acquire_timeout = acquire_timeout
        self.acquisitions = 0  # how many connections were handed out; for tests and metrics

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        try:
            async with asyncio.timeout(self.acquire_timeout):
                connection = await self.quart_db.acquire()
        except TimeoutError:
            log.warning("no database connection free within %.1fs", self.acquire_timeout)
            raise unavailable() from None
        except _UNAVAILABLE as error:
            log.warning("database unreachable: %s", error)
            raise unavailable() from None
        self.acquisitions += 1
        try:
            yield connection
        except _UNAVAILABLE as error:
            log.warning("database connection lost: %s", error)
            raise unavailable() from None
        finally:
            await self.quart_db.release(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as connection, connection.transaction():
            yield connection

    async def migrate_now(self) -> int:
        """Apply pending migrations outside serving and return the schema version.

        Startup migrates by itself (quart-db, under its lock); this is `authapp db migrate`.
        """
        self.quart_db._backend = backend = self.quart_db._create_backend()
        await self.quart_db.migrate()
        connection = await backend._acquire_migration_connection()
        try:
            version = await connection.fetch_val("SELECT version FROM schema_migration")
            return int(cast(int, version))
        finally:
            await backend._release_migration_connection(connection)
