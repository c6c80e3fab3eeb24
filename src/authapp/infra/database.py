"""The database: pool connections per unit of work (an outage is a 503: see outages.py), queries
compiled once per text, a start-up that outlives an outage, readiness, and where migrations
live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import asyncpg
from buildpg import BuildError, render
from quart_db import Connection, QuartDB, UndefinedParameterError
from quart_db._migration import ensure_state_table, execute_migrations
from quart_db.backends import asyncpg as asyncpg_backend
from quart_db.interfaces import BackendABC, ValueType

from ..errors import APIError
from .outages import (
    MIGRATIONS_FAILED,
    READ_ONLY,
    TIMEOUT,
    UNREACHABLE,
    DatabaseUnavailable,
    OutageKind,
    OutageLog,
    describe,
    not_ready,
    outage_of,
    quiet_outage_logs,
)

log = logging.getLogger("authapp.database")  # see authapp.infra.logs

# The work waiting for the unit of work in progress to commit (see after_commit).
_waiting: ContextVar[list[Callable[[], Coroutine[Any, Any, None]]] | None] = ContextVar(
    "authapp_after_commit", default=None
)
_detached: set[asyncio.Task[None]] = set()


def after_commit(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `work` once the unit of work in progress (`Database.connection()` or
    `.transaction()`, the innermost) has committed and given back its connection; never if it
    fails. Outside a unit of work it runs soon, on its own."""
    waiting = _waiting.get()
    if waiting is not None:
        waiting.append(work)
        return
    task = asyncio.get_running_loop().create_task(work())
    _detached.add(task)  # held until done: the loop keeps only weak references
    task.add_done_callback(_detached.discard)


# While the database is down, start-up is tried again after 0.5 s, doubling up to this.
START_RETRY_MAX_DELAY = 5.0


# --- what an outage is ---------------------------------------------------------------------


def migrations_path() -> Path:
    """The migrations folder: inside the installed package (wheel), else the repository's top."""
    package = Path(__file__).resolve().parents[1]  # src/authapp (here: src/authapp/infra)
    packaged = package / "migrations"
    if (packaged / "0.py").is_file():
        return packaged
    checkout = package.parents[1] / "migrations"
    if (checkout / "0.py").is_file():
        return checkout
    raise RuntimeError(f"authapp's migrations are missing (looked in {packaged} and {checkout})")


def latest_migration(folder: Path | None = None) -> int:
    """The number of the newest migration this release ships (or `folder` holds)."""
    folder = folder or migrations_path()
    return max(int(path.stem) for path in folder.glob("*.py") if path.stem.isdigit())


# The migrations of the product built on authapp (AUTHAPP_EXTRA_MIGRATIONS) count in a table of
# their own, so each sequence is numbered 0, 1, 2... and neither ever renumbers the other's.
EXTRA_STATE_TABLE = "app_schema_migration"


class AuthappDB(QuartDB):
    """quart-db whose pooled connections turn named parameters into positional ones once per
    query text, not on every call: buildpg parses the whole text each time (24 µs for the
    statement that resolves a session, on every signed-in request). After authapp's own
    migrations it applies the product's, if it has a folder of them (`extra_migrations`)."""

    def __init__(self, *args: Any, extra_migrations: Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.extra_migrations = extra_migrations

    async def migrate(self) -> None:
        await super().migrate()
        if self.extra_migrations is not None:
            # quart-db's own steps (private, pinned by tests/test_extra_migrations.py): the
            # table and its advisory lock, then each migration in a transaction.
            assert self._backend is not None  # created by before_serving or migrate_now
            await ensure_state_table(self._backend, EXTRA_STATE_TABLE)
            await execute_migrations(self._backend, self.extra_migrations, EXTRA_STATE_TABLE)

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


def concurrent_change() -> APIError:
    return APIError(
        409, "CONCURRENT_CHANGE", "Another change was being made at the same moment. Try again."
    )


class Database:
    """Hands out pool connections for short units of work, with a bounded wait.

    Requests take a connection only while they run SQL (never while hashing a password), so
    a request that needs no database (docs, health, 429s) never waits on the pool. Whenever
    the database cannot serve (see `outage_of`), the unit of work is a 503
    SERVICE_UNAVAILABLE, said in the log by `outages`, and the pool reconnects by itself when
    it is back.

    It also takes over quart-db's start-up: quart-db refuses to serve when the database is
    down at start; this serves 503s instead and finishes starting (migrations, then the
    pool) in the background as soon as the database answers.
    """

    def __init__(self, quart_db: QuartDB, acquire_timeout: float) -> None:
        self.quart_db = quart_db
        self.acquire_timeout = acquire_timeout
        self.acquisitions = 0  # how many connections were handed out; for tests and metrics
        self.outages = OutageLog()
        self.started = False
        self._start_problem: OutageKind = UNREACHABLE
        self._start_error: BaseException | str = "not started yet"
        self._starting: asyncio.Task[None] | None = None
        app = quart_db._app
        quiet_outage_logs(app.logger)
        for hooks, theirs, ours in (
            (app.before_serving_funcs, quart_db.before_serving, self.start),
            (app.after_serving_funcs, quart_db.after_serving, self.stop),
        ):
            hooks[hooks.index(theirs)] = ours

    # --- serving ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate and open the pool; if the database cannot serve, keep trying."""
        try:
            await self._start()
        except Exception as error:
            kind = outage_of(error, connecting=True)
            if kind is None:
                raise  # a migration that fails stops a normal start
            self._start_failed(kind, error)
            self._starting = asyncio.create_task(self._keep_starting())

    async def _start(self) -> None:
        await self.quart_db.before_serving()  # a new backend, the migrations, then the pool
        self.started = True

    def _start_failed(self, kind: OutageKind, error: BaseException | str) -> None:
        """Said once, and again only when the reason changes (tried every few seconds)."""
        if kind != self._start_problem or not self._starting:
            log.warning(
                "database unavailable at start-up (%s: %s): answering 503 until it is back",
                kind.type, describe(error),
            )  # fmt: skip
        self._start_problem, self._start_error = kind, error

    async def _keep_starting(self) -> None:
        delay = 0.5
        while not self.started:
            await asyncio.sleep(delay)
            delay = min(delay * 2, START_RETRY_MAX_DELAY)
            try:
                await self._start()
            except Exception as error:
                kind = outage_of(error, connecting=True)
                if kind is not None:
                    self._start_failed(kind, error)
                    continue
                # A migration that fails: not ready, and said loudly (in the log, not to the
                # public /readyz), but still serving 503s.
                log.exception("database start-up failed")
                self._start_problem, self._start_error = MIGRATIONS_FAILED, "a migration failed"
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
            except Exception as error:
                if outage_of(error) is None:
                    raise
                log.warning("closing the database pool failed: %s", describe(error))

    # --- units of work ---------------------------------------------------------------------

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if not self.started:
            raise self._refuse(self._start_problem, self._start_error)
        try:
            async with asyncio.timeout(self.acquire_timeout):
                connection = await self.quart_db.acquire()
        except TimeoutError:
            waited = f"no connection within {self.acquire_timeout:g} s"
            raise self._refuse(TIMEOUT, waited) from None
        except Exception as error:
            kind = outage_of(error, connecting=True)
            if kind is None:
                raise
            raise self._refuse(kind, error) from None
        self.acquisitions += 1
        waiting: list[Callable[[], Coroutine[Any, Any, None]]] = []
        unit = _waiting.set(waiting)
        try:
            yield connection
        except asyncpg.exceptions.TransactionRollbackError as error:
            # A deadlock or a serialization failure: PostgreSQL ended this unit of work so that
            # another could go on, and nothing of it was written. Lock orders are meant to rule
            # deadlocks out (a user's row before their other rows), so say so loudly; the
            # client is told to try again, never given a 500.
            log.warning("the database rolled back a unit of work: %s", describe(error))
            raise concurrent_change() from None
        except Exception as error:
            kind = outage_of(error)
            if kind is not None:
                raise self._refuse(kind, error) from None
            # A closed connection fails with whatever it was doing (asyncpg's InterfaceError
            # among them): an outage, not a bug, whatever the exception's type.
            if _connection_lost(connection):
                lost = f"the connection was cut ({describe(error)})"
                raise self._refuse(UNREACHABLE, lost) from None
            raise
        else:
            self.outages.served()
        finally:
            _waiting.reset(unit)
            await self._release(connection)
        # Committed (a transaction commits before its connection's unit ends) and released.
        for work in waiting:
            await work()

    def _refuse(self, kind: OutageKind, error: BaseException | str) -> DatabaseUnavailable:
        self.outages.refused(kind, error)
        return DatabaseUnavailable(kind)

    async def _release(self, connection: Connection) -> None:
        try:
            async with asyncio.timeout(self.acquire_timeout):
                await self.quart_db.release(connection)
        except (OSError, asyncpg.PostgresError, asyncpg.exceptions.InterfaceError) as error:
            # asyncpg has terminated the connection; the pool opens a new one when needed.
            # The unit of work that met the outage has said so (once an interval): no more.
            log.debug("releasing a database connection failed: %s", describe(error))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as connection, connection.transaction():
            yield connection

    # --- health ----------------------------------------------------------------------------

    async def check_ready(self) -> None:
        """Raise a 503 naming the reason unless the database answers, takes writes and is
        fully migrated."""
        if not self.started:
            raise not_ready(self._start_problem)
        try:
            async with self.connection() as connection:
                row = await connection.fetch_first(
                    """SELECT version, current_setting('transaction_read_only') = 'on' AS read_only
                         FROM schema_migration"""
                )
        except DatabaseUnavailable as error:
            raise not_ready(error.kind) from None
        # A read-only database answers this, and every write after it with 25006.
        if row is not None and row["read_only"]:
            self.outages.refused(READ_ONLY, "transaction_read_only is on")
            raise not_ready(READ_ONLY)
        version, wanted = (None if row is None else row["version"]), latest_migration()
        if version is None or version < wanted:
            message = f"The database is at migration {version}; this release needs {wanted}."
            pending = OutageKind("migrations_pending", message, field="migrations")
            raise not_ready(pending)
        extra = self.quart_db.extra_migrations if isinstance(self.quart_db, AuthappDB) else None
        if extra is not None:
            async with self.connection() as connection:
                version = await connection.fetch_val(
                    f"SELECT version FROM {EXTRA_STATE_TABLE}"  # noqa: S608 (a constant)
                )
            wanted = latest_migration(extra)
            if version is None or version < wanted:
                message = f"The app's migrations are at {version}; this release needs {wanted}."
                pending = OutageKind("migrations_pending", message, field="migrations")
                raise not_ready(pending)

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
