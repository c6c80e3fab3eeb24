"""The database: pool connections per unit of work, what counts as an outage (a 503, not a
bug's 500) and how the log says it, a start-up that outlives an outage, readiness, and where
migrations live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
# While an outage lasts, the log says so once per kind of outage in this many seconds.
OUTAGE_LOG_INTERVAL = 10.0


# --- what an outage is ---------------------------------------------------------------------


@dataclass(frozen=True)
class OutageKind:
    """A reason the database cannot serve now: /readyz's `details[0]` while it lasts, and the
    name the log gives it."""

    type: str
    message: str
    field: str = "database"

    def detail(self) -> ErrorDetail:
        return ErrorDetail(field=self.field, message=self.message, type=self.type)


UNREACHABLE = OutageKind("database_unavailable", "The database cannot be reached.")
REFUSING_CONNECTIONS = OutageKind(
    "database_refusing_connections",
    "The database refuses connections for now (maintenance, start-up, shutdown or recovery).",
)
MISSING = OutageKind("database_missing", "The database does not exist on its server.")
AUTH_FAILED = OutageKind("database_auth_failed", "The database refuses authapp's credentials.")
OUT_OF_RESOURCES = OutageKind(
    "database_out_of_resources", "The database is out of connections, memory or disk."
)
READ_ONLY = OutageKind("database_read_only", "The database is read-only (a standby, or set so).")
TIMEOUT = OutageKind(
    "database_timeout", "The database did not answer in time, or no connection came free."
)
MIGRATIONS_FAILED = OutageKind(
    "migrations_failed", "A migration failed: the log says which.", field="migrations"
)

# By SQLSTATE class: whatever the statement, the database cannot serve it now.
_KIND_OF_CLASS = {
    "08": UNREACHABLE,  # connection exception: the connection failed or is gone
    "28": AUTH_FAILED,  # invalid authorization: a rotated password, a role that may not log in
    "53": OUT_OF_RESOURCES,  # insufficient resources: too many connections, disk full, memory
    "57": REFUSING_CONNECTIONS,  # operator intervention: shut down, starting, terminated
}
# Single SQLSTATEs of other classes, and of class 57, that say as much.
_KIND_OF_STATE = {
    "25006": READ_ONLY,  # read_only_sql_transaction: a standby after failover, or set read-only
    "3D000": MISSING,  # invalid_catalog_name: the database named by the URL is not there
    "57P04": MISSING,  # database_dropped, under a connection
    "57014": TIMEOUT,  # query_canceled: statement_timeout, or an operator's pg_cancel_backend
    # lock_not_available: authapp takes no lock NOWAIT and sets no lock_timeout, so this is an
    # operator's lock_timeout meeting a lock held over a maintenance window. The rest of class
    # 55 stays a bug (a 500): object_in_use comes only from DDL, which requests never run;
    # 55P02 and 55P04 are mistakes in a statement; 55000 is one too (currval before nextval)
    # except while connecting, where it is a database closed to connections (ALLOW_CONNECTIONS).
    "55P03": TIMEOUT,
}


def outage_of(error: BaseException, *, connecting: bool = False) -> OutageKind | None:
    """The kind of outage an error means, or None for an error of the statement itself (a bug:
    a 500 with its traceback). `connecting`: it came from opening a connection."""
    if isinstance(error, TimeoutError):  # an OSError too: first
        return TIMEOUT
    if isinstance(error, OSError):  # refused, reset, unreachable, unknown host, no socket
        return UNREACHABLE
    if not isinstance(error, asyncpg.PostgresError):
        return None
    state = str(error.sqlstate or "")
    if connecting and state == "55000":
        return REFUSING_CONNECTIONS
    return _KIND_OF_STATE.get(state) or _KIND_OF_CLASS.get(state[:2])


def describe(error: BaseException | str) -> str:
    """An error in one line: its class, SQLSTATE and message (with PostgreSQL's DETAIL)."""
    if isinstance(error, str):
        return error
    text = " ".join(str(error).split())
    state = getattr(error, "sqlstate", None)
    name = f"{type(error).__name__} {state}" if state else type(error).__name__
    return f"{name}: {text}" if text else name


class OutageLog:
    """What the log says while the database cannot serve: a line when a kind of outage starts,
    then at most one an interval per kind with how many uses were refused since, and a line
    when it is over. Never a traceback, never a line per request: a busy server meets an
    outage thousands of times a second."""

    def __init__(self, interval: float = OUTAGE_LOG_INTERVAL) -> None:
        self.interval = interval
        self._ongoing: dict[OutageKind, _Ongoing] = {}

    def refused(self, kind: OutageKind, error: BaseException | str) -> None:
        now = time.monotonic()
        ongoing = self._ongoing.get(kind)
        if ongoing is None:
            self._ongoing[kind] = _Ongoing(started=now, logged=now, last=now)
            log.warning(
                "database outage %s: %s; answering 503 until it is over",
                kind.type, describe(error), extra={"database_outage": kind.type, "refused": 1},
            )  # fmt: skip
            return
        ongoing.total += 1
        ongoing.since += 1
        ongoing.last = now
        if now - ongoing.logged >= self.interval:
            log.warning(
                "database outage %s goes on: %d refused in the last %.1f s; %s",
                kind.type, ongoing.since, now - ongoing.logged, describe(error),
                extra={"database_outage": kind.type, "refused": ongoing.since},
            )  # fmt: skip
            ongoing.logged, ongoing.since = now, 0

    def served(self) -> None:
        """A use of the database went through: the outages with no refusal for an interval
        are over."""
        if not self._ongoing:  # every unit of work comes here: the usual case costs nothing
            return
        now = time.monotonic()
        if any(now - ongoing.last < self.interval for ongoing in self._ongoing.values()):
            return  # a read-only database serves reads while it refuses writes
        ended = ", ".join(
            f"{kind.type} for {ongoing.last - ongoing.started:.1f} s, {ongoing.total} refused"
            for kind, ongoing in self._ongoing.items()
        )
        log.warning("database outage is over: %s", ended)
        self._ongoing.clear()


@dataclass
class _Ongoing:
    started: float
    logged: float  # when its last line was written
    last: float  # its last refusal
    since: int = 0  # refusals since its last line
    total: int = 1


class _OneLineOutageWarnings(logging.Filter):
    """asyncpg's pool logs a whole traceback each time it fails to restore its connections
    during an outage (with a back-off up to a minute, for as long as it lasts): instead, one
    line per kind of outage an interval, with how many it held back."""

    def __init__(self) -> None:
        super().__init__()
        self._logged: dict[OutageKind, float] = {}
        self._held: dict[OutageKind, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        kind = None if error is None else outage_of(error, connecting=True)
        if error is None or kind is None:
            return True
        now = time.monotonic()
        if now - self._logged.get(kind, -math.inf) < OUTAGE_LOG_INTERVAL:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        record.msg = f"{record.getMessage()}: {kind.type}: {describe(error)}" + (
            f" ({held} more like it since the last line)" if held else ""
        )
        record.args = None
        record.exc_info = record.exc_text = None
        self._logged[kind] = now
        return True


class _NoTracebackForOutages(logging.Filter):
    """Quart logs the traceback of an error that escapes a background task: for a lookup
    after the answer that met an outage, the outage log has said it already, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DatabaseUnavailable))


def _install_filter(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(each, kind) for each in logger.filters):
        logger.addFilter(kind())


class DatabaseUnavailable(APIError):
    """503 SERVICE_UNAVAILABLE with Retry-After: the database cannot serve this now."""

    def __init__(
        self,
        kind: OutageKind,
        message: str = "The database is unavailable. Try again shortly.",
        details: list[ErrorDetail] | None = None,
    ) -> None:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        super().__init__(503, "SERVICE_UNAVAILABLE", message, details, headers)
        self.kind = kind


def not_ready(kind: OutageKind) -> DatabaseUnavailable:
    """/readyz's 503, naming why."""
    return DatabaseUnavailable(kind, "The database is not ready.", [kind.detail()])


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
        _install_filter(logging.getLogger("asyncpg.pool"), _OneLineOutageWarnings)
        _install_filter(app.logger, _NoTracebackForOutages)
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
        try:
            yield connection
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
            await self._release(connection)

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
