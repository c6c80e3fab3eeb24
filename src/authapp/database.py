"""The database: pool connections per unit of work, a start-up that outlives an outage,
readiness, and where migrations live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import asyncpg
from buildpg import BuildError, render
from quart_db import Connection, QuartDB, UndefinedParameterError
from quart_db.backends import asyncpg as asyncpg_backend
from quart_db.interfaces import BackendABC, ValueType

from .errors import APIError, ErrorDetail

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# While the database is down, start-up is tried again after 0.5 s, doubling up to this.
START_RETRY_MAX_DELAY = 5.0

# Errors that mean "the database cannot be reached, or cannot serve now", not a wrong query.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable, unknown host
    TimeoutError,  # a connect or a statement past AUTHAPP_DB_COMMAND_TIMEOUT
    asyncpg.exceptions.PostgresConnectionError,  # 08xxx: the connection failed or is gone
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutting down, starting, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
)


class _OneLineOutageWarnings(logging.Filter):
    """asyncpg's pool logs a whole traceback each time it fails to reconnect during an outage
    (every few seconds, for as long as it lasts); the error in one line says as much."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, _UNAVAILABLE):
            record.msg = f"{record.getMessage()}: {error!r}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


def _quiet_asyncpg_outage_warnings() -> None:
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(each, _OneLineOutageWarnings) for each in pool_log.filters):
        pool_log.addFilter(_OneLineOutageWarnings())


def unavailable(
    message: str = "The database is unavailable. Try again shortly.",
    reason: ErrorDetail | None = None,
) -> APIError:
    return APIError(
        503,
        "SERVICE_UNAVAILABLE",
        message,
        details=None if reason is None else [reason],
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


def latest_migration() -> int:
    """The number of the newest migration this release ships."""
    return max(int(path.stem) for path in migrations_path().glob("*.py") if path.stem.isdigit())


class AuthappDB(QuartDB):
    """quart-db whose pooled connections turn named parameters into positional ones once per
    query text, not on every call: buildpg parses the whole text each time (24 µs for the
    statement that resolves a session, on every signed-in request)."""

    def _create_backend(self) -> BackendABC:
        backend = super()._create_backend()
        if type(backend) is asyncpg_backend.Backend:
            return _Backend(backend._url, backend._options, backend._type_converters)
        return backend


class _Backend(asyncpg_backend.Backend):
    async def acquire(self) -> asyncpg_backend.Connection:
        assert self._pool is not None  # acquired only while serving
        return _Connection(await self._pool.acquire())


class _Connection(asyncpg_backend.Connection):
    def _compile(self, query: str, values: ValueType | None = None) -> tuple[str, list[Any]]:
        if not isinstance(values, dict):
            return super()._compile(query, values)
        sql, order = _positional(query, tuple(values))
        return sql, [values[name] for name in order]


@lru_cache(maxsize=1024)
def _positional(query: str, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The query with $1, $2… for its :names, and which name each number stands for."""
    try:
        sql, order = render(query, **{name: name for name in names})
    except BuildError as error:
        raise UndefinedParameterError(str(error)) from None
    return sql, tuple(order)


async def skip_reset(connection: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing, beyond asyncpg's own rollback of an
    open transaction. Its default sends `RESET ALL; UNLISTEN *; CLOSE ALL;
    pg_advisory_unlock_all()`, a second round trip for every unit of work, but authapp never
    leaves session state behind: no session-level SET, LISTEN, cursor outside a transaction
    or advisory lock on a pooled connection (tests/test_database.py walks the writing flows,
    then looks at every pooled connection)."""


def _connection_lost(connection: Connection) -> bool:
    raw = getattr(connection, "_connection", None)  # quart-db's wrapper around asyncpg's
    return raw is not None and bool(raw.is_closed())


class Database:
    """Hands out pool connections for short units of work, with a bounded wait.

    Requests take a connection only while they run SQL (never while hashing a password), so
    a request that needs no database (docs, health, 429s) never waits on the pool. While the
    database is unreachable, every unit of work is a 503 SERVICE_UNAVAILABLE, and the pool
    reconnects by itself when it is back.

    It also takes over quart-db's start-up: quart-db refuses to serve when the database is
    down at start; this serves 503s instead and finishes starting (migrations, then the
    pool) in the background as soon as the database answers.
    """

    def __init__(self, quart_db: QuartDB, acquire_timeout: float) -> None:
        self.quart_db = quart_db
        self.acquire_timeout = acquire_timeout
        self.acquisitions = 0  # how many connections were handed out; for tests and metrics
        self.started = False
        self._start_problem: ErrorDetail | None = None
        self._starting: asyncio.Task[None] | None = None
        _quiet_asyncpg_outage_warnings()
        app = quart_db._app
        for hooks, theirs, ours in (
            (app.before_serving_funcs, quart_db.before_serving, self.start),
            (app.after_serving_funcs, quart_db.after_serving, self.stop),
        ):
            hooks[hooks.index(theirs)] = ours

    # --- serving ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate and open the pool; if the database cannot be reached, keep trying."""
        try:
            await self._start()
        except _UNAVAILABLE as error:
            log.warning(
                "database unreachable at start-up (%r): answering 503 until it is back", error
            )
            self._start_problem = _unreachable_reason()
            self._starting = asyncio.create_task(self._keep_starting())

    async def _start(self) -> None:
        await self.quart_db.before_serving()  # a new backend, the migrations, then the pool
        self.started = True
        self._start_problem = None

    async def _keep_starting(self) -> None:
        delay = 0.5
        while not self.started:
            await asyncio.sleep(delay)
            delay = min(delay * 2, START_RETRY_MAX_DELAY)
            try:
                await self._start()
            except _UNAVAILABLE:
                self._start_problem = _unreachable_reason()
            except Exception:
                # A migration that fails: not ready, and said loudly (in the log, not to the
                # public /readyz), but still serving 503s.
                log.exception("database start-up failed")
                self._start_problem = ErrorDetail(
                    field="migrations", message="A migration failed: the log says which.",
                    type="migrations_failed",
                )  # fmt: skip
                delay = START_RETRY_MAX_DELAY
        log.info("database reachable: start-up finished")

    async def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        if self.started:
            try:
                await self.quart_db.after_serving()
            except _UNAVAILABLE as error:
                log.warning("closing the database pool failed: %r", error)

    # --- units of work ---------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if not self.started:
            raise unavailable()
        try:
            async with asyncio.timeout(self.acquire_timeout):
                connection = await self.quart_db.acquire()
        except TimeoutError:
            log.warning("no database connection free within %.1fs", self.acquire_timeout)
            raise unavailable() from None
        except _UNAVAILABLE as error:
            log.warning("database unreachable: %r", error)
            raise unavailable() from None
        self.acquisitions += 1
        try:
            yield connection
        except Exception as error:
            # A closed connection fails with whatever it was doing (asyncpg's InterfaceError
            # among them): an outage, not a bug, whatever the exception's type.
            if not isinstance(error, _UNAVAILABLE) and not _connection_lost(connection):
                raise
            log.warning("database connection lost mid-request: %r", error)
            raise unavailable() from None
        finally:
            await self._release(connection)

    async def _release(self, connection: Connection) -> None:
        try:
            async with asyncio.timeout(self.acquire_timeout):
                await self.quart_db.release(connection)
        except (*_UNAVAILABLE, asyncpg.exceptions.InterfaceError) as error:
            # asyncpg has terminated the connection; the pool opens a new one when needed.
            log.warning("releasing a database connection failed: %r", error)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as connection, connection.transaction():
            yield connection

    # --- health ----------------------------------------------------------------------------

    async def check_ready(self) -> None:
        """Raise a 503 naming the reason unless the database answers and is fully migrated."""
        if not self.started:
            raise unavailable(
                "The database is not ready.", self._start_problem or _unreachable_reason()
            )
        try:
            async with self.connection() as connection:
                version = await connection.fetch_val("SELECT version FROM schema_migration")
        except APIError as error:
            raise unavailable("The database is not ready.", _unreachable_reason()) from error
        wanted = latest_migration()
        if version is None or version < wanted:
            reason = ErrorDetail(
                field="migrations",
                message=f"The database is at migration {version}; this release needs {wanted}.",
                type="migrations_pending",
            )
            raise unavailable("The database is not ready.", reason)

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


def _unreachable_reason() -> ErrorDetail:
    return ErrorDetail(
        field="database", message="The database cannot be reached.", type="database_unavailable"
    )
