"""Database outages: which errors mean the database cannot serve now (by SQLSTATE class), the
503 they answer, and a log of one line per kind per interval instead of a traceback per
request."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import asyncpg

from ..errors import APIError, ErrorDetail

log = logging.getLogger("authapp.database")  # see authapp.infra.logs

RETRY_AFTER_SECONDS = 5
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


def quiet_outage_logs(app_logger: logging.Logger) -> None:
    """asyncpg's pool warnings in one line each, and no traceback for an outage from Quart's
    background tasks (the outage log says it)."""
    _install_filter(logging.getLogger("asyncpg.pool"), _OneLineOutageWarnings)
    _install_filter(app_logger, _NoTracebackForOutages)


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
