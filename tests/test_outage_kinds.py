"""Every way the database can be unavailable, made for real on PostgreSQL: each is a 503
SERVICE_UNAVAILABLE with Retry-After (JSON for programs, the page for browsers), /readyz names
its kind, the log says so in one line per kind per interval, never a traceback per request,
and the app serves again by itself when it is mended. A genuine bug is still a 500.

On the test server: a database refusing connections (55000), one set read-only (25006), a
role that may not log in (28000), a dropped database (3D000), a role out of connections
(53300), a table locked past lock_timeout (55P03). On an embedded PostgreSQL of the test's
own, under a real Hypercorn: a rotated password (28P01), a failover to a standby that
accepts no connections (57P03), then to a read-only hot standby (25006), then its promotion.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from tests.conftest import PASSWORD, app_state, settings_for
from tests.mailbox import SmtpServer
from tests.servers import hypercorn
from tests.test_outage import (
    HTML,
    ThrowawayPostgres,
    assert_unavailable_json,
    sign_in,
    wait_for,
)

LOGIN = {"email": "alice@example.com", "password": PASSWORD}


def url_as(server_url: str, user: str, database: str, password: str | None = None) -> str:
    """The server's URL for another user and database (TCP or a socket in `?host=`)."""
    parts = urlsplit(server_url)
    where = parts.netloc.rpartition("@")[2]
    login = quote(user) if password is None else f"{quote(user)}:{quote(password)}"
    return urlunsplit(parts._replace(netloc=f"{login}@{where}", path=f"/{database}"))


class Sandbox:
    """A role (no superuser) and a database it owns, of this test's own, and an admin's hands
    on them: what an operator, a failover or a maintenance window does to the app's database."""

    def __init__(self, server_url: str) -> None:
        self.name = f"authapp_outage_{secrets.token_hex(4)}"
        self.server_url = server_url
        self.url = url_as(server_url, self.name, self.name)
        self.held: list[asyncpg.Connection] = []  # admin connections kept open by a condition

    async def sql(self, *statements: str, as_app: bool = False) -> None:
        """Run statements as the admin on the server's own database, or as the app's role on
        the app's (as a migration would)."""
        connection = await asyncpg.connect(self.url if as_app else self.server_url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def hold(self, user: str = "postgres") -> asyncpg.Connection:
        """An admin's connection to the app's database, kept until mended."""
        connection = await asyncpg.connect(url_as(self.server_url, user, self.name))
        self.held.append(connection)
        return connection

    async def release(self) -> None:
        while self.held:
            await self.held.pop().close()

    async def terminate(self) -> None:
        """End every backend of the app's database but the held ones (pg_terminate_backend:
        57P01 to each), and wait until they are gone (the pool may open new ones meanwhile)."""
        keep = [connection.get_server_pid() for connection in self.held]
        admin = await asyncpg.connect(self.server_url)
        try:
            pids = await admin.fetchval(
                """SELECT array_agg(pid) FROM pg_stat_activity
                    WHERE datname = $1 AND pid <> ALL($2::int[])""",
                self.name, keep,
            )  # fmt: skip
            for pid in pids or []:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            for _ in range(100):
                await admin.execute("SELECT pg_stat_clear_snapshot()")
                query = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
                if not await admin.fetchval(query, pids or []):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the backends did not end")
        finally:
            await admin.close()


@pytest.fixture
async def sandbox(server_url: str) -> AsyncIterator[Sandbox]:
    box = Sandbox(server_url)
    await box.sql(
        f'CREATE ROLE "{box.name}" LOGIN', f'CREATE DATABASE "{box.name}" OWNER "{box.name}"'
    )
    try:
        yield box
    finally:
        await box.release()
        await box.sql(
            f'DROP DATABASE IF EXISTS "{box.name}" WITH (FORCE)',
            f'DROP DATABASE IF EXISTS "{box.name}_backup" WITH (FORCE)',
            f'DROP ROLE "{box.name}"',
        )


@pytest.fixture
async def app(sandbox: Sandbox, tmp_path: Path, smtp_server: SmtpServer) -> AsyncIterator[Quart]:
    """An app on the sandbox's database, as its role (pool of at least one connection, as
    production's)."""
    settings = settings_for(sandbox.url, tmp_path, SMTP_URL=smtp_server.url, MAIL_RETRY_DELAY=0,
                            RATE_LIMIT_ENABLED="false")  # fmt: skip
    app = create_app(settings)
    async with app.test_app():
        yield app


async def signed_in_client(app: Quart) -> Client:
    client = app.test_client()
    assert (await client.post("/api/auth/register", json=LOGIN)).status_code == 201
    assert (await client.post("/api/auth/login", json=LOGIN)).status_code == 200
    return client


# --- the conditions: how each is brought about, and mended ----------------------------------


@dataclass(frozen=True)
class Condition:
    kind: str  # details[0].type of /readyz, and named in the log line
    sqlstate: str  # what PostgreSQL answers, named in the log line too
    cause: Callable[[Sandbox], Awaitable[None]]
    mend: Callable[[Sandbox], Awaitable[None]]
    readyz: bool = True  # whether /readyz sees it (a locked table does not stop its probe)


async def refuse_connections(box: Sandbox) -> None:
    await box.sql(f'ALTER DATABASE "{box.name}" ALLOW_CONNECTIONS false')
    await box.terminate()


async def allow_connections(box: Sandbox) -> None:
    await box.sql(f'ALTER DATABASE "{box.name}" ALLOW_CONNECTIONS true')


async def make_read_only(box: Sandbox) -> None:
    await box.sql(f'ALTER DATABASE "{box.name}" SET default_transaction_read_only = on')
    await box.terminate()


async def make_writable(box: Sandbox) -> None:
    await box.sql(f'ALTER DATABASE "{box.name}" RESET default_transaction_read_only')
    await box.terminate()  # the pool's read-only connections go; new ones are writable


async def forbid_login(box: Sandbox) -> None:
    await box.sql(f'ALTER ROLE "{box.name}" NOLOGIN')
    await box.terminate()


async def allow_login(box: Sandbox) -> None:
    await box.sql(f'ALTER ROLE "{box.name}" LOGIN')


async def drop_database(box: Sandbox) -> None:
    """A backup first (a copy needs its source idle), then DROP DATABASE."""
    await refuse_connections(box)
    await box.sql(
        f'CREATE DATABASE "{box.name}_backup" TEMPLATE "{box.name}"',
        f'DROP DATABASE "{box.name}" WITH (FORCE)',
    )


async def restore_database(box: Sandbox) -> None:
    await box.sql(f'CREATE DATABASE "{box.name}" TEMPLATE "{box.name}_backup" OWNER "{box.name}"')


async def use_up_connections(box: Sandbox) -> None:
    """The role may have one connection, and another client of the same role holds it."""
    await box.hold(user=box.name)
    await box.sql(f'ALTER ROLE "{box.name}" CONNECTION LIMIT 1')
    await box.terminate()


async def free_connections(box: Sandbox) -> None:
    await box.release()
    await box.sql(f'ALTER ROLE "{box.name}" CONNECTION LIMIT -1')


async def lock_tables(box: Sandbox) -> None:
    """A migration holding its tables longer than the role's lock_timeout lets anyone wait."""
    await box.sql(f"ALTER ROLE \"{box.name}\" SET lock_timeout = '100ms'")
    await box.terminate()  # new connections take the role's setting
    migration = await box.hold()
    await migration.execute("BEGIN; LOCK TABLE users, sessions IN ACCESS EXCLUSIVE MODE")


async def unlock_tables(box: Sandbox) -> None:
    await box.release()  # ends the transaction, and its locks
    await box.sql(f'ALTER ROLE "{box.name}" RESET lock_timeout')


CONDITIONS = {
    "refusing connections": Condition(
        "database_refusing_connections", "55000", refuse_connections, allow_connections
    ),
    "read-only": Condition("database_read_only", "25006", make_read_only, make_writable),
    "login refused": Condition("database_auth_failed", "28000", forbid_login, allow_login),
    "dropped": Condition("database_missing", "3D000", drop_database, restore_database),
    "too many connections": Condition(
        "database_out_of_resources", "53300", use_up_connections, free_connections
    ),
    "lock not granted": Condition(
        "database_timeout", "55P03", lock_tables, unlock_tables, readyz=False
    ),
}


def outage_lines(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """What was logged at warning or above, but the access log."""
    return [r for r in records if r.levelno >= logging.WARNING and r.name != "hypercorn.access"]


@pytest.mark.parametrize("condition", CONDITIONS.values(), ids=CONDITIONS.keys())
async def test_each_kind_of_outage_is_a_503_named_by_readyz_in_one_log_line(
    app: Quart, sandbox: Sandbox, condition: Condition, caplog: pytest.LogCaptureFixture
) -> None:
    client = await signed_in_client(app)
    assert (await client.get("/readyz")).status_code == 200
    await condition.cause(sandbox)
    caplog.clear()

    for _ in range(20):
        response = await client.get("/api/me")
        assert response.status_code == 503, await response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "5"
        assert (await response.get_json())["code"] == "SERVICE_UNAVAILABLE"
    login = await app.test_client().post("/api/auth/login", json=LOGIN)
    assert login.status_code == 503
    assert login.headers["Retry-After"] == "5"
    # Its lookup runs after the answer, in the background: a 202 as ever, and one line.
    forgot = await app.test_client().post(
        "/api/auth/forgot-password", json={"email": LOGIN["email"]}
    )
    assert forgot.status_code == 202
    page = await client.get("/account", headers=HTML)
    assert page.status_code == 503
    assert page.headers["Retry-After"] == "5"
    text = await page.get_data(as_text=True)
    assert "Back in a moment" in text
    assert "SERVICE_UNAVAILABLE" in text
    if condition.readyz:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.headers["Retry-After"] == "5"
        details = (await ready.get_json())["details"]
        assert [detail["type"] for detail in details] == [condition.kind]

    await asyncio.sleep(0.1)  # the background lookup has met the outage too
    lines = outage_lines(caplog.records)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    # 24 refusals: one line for the kind, and at most one for the pooled connection found
    # cut (database_unavailable) and one of asyncpg's pool failing to reconnect.
    said = [r.getMessage() for r in lines]
    ours = [r.getMessage() for r in lines if r.name.startswith("authapp")]
    (line,) = [text for text in ours if condition.kind in text]
    assert condition.sqlstate in line
    assert all("database_unavailable" in text for text in ours if text != line), said
    assert len(ours) <= 2, said
    assert len(lines) <= 3, said

    await condition.mend(sandbox)
    await wait_until_ok(client, "/api/me")
    assert (await client.get("/readyz")).status_code == 200


STARTING = {name: c for name, c in CONDITIONS.items() if c.readyz}


@pytest.mark.parametrize("condition", STARTING.values(), ids=STARTING.keys())
async def test_an_app_started_during_each_kind_of_outage_serves_503s_then_starts(
    sandbox: Sandbox, tmp_path: Path, smtp_server: SmtpServer, condition: Condition,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A server started in a maintenance window, or with a password already rotated: it
    serves, says why it is not ready, and migrates and opens its pool once mended."""
    await condition.cause(sandbox)
    settings = settings_for(sandbox.url, tmp_path, SMTP_URL=smtp_server.url)
    app = create_app(settings)
    async with app.test_app():
        client = app.test_client()
        await assert_unavailable(await client.get("/readyz"), condition.kind)
        await assert_unavailable(await client.post("/api/auth/login", json=LOGIN))
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        (line,) = [r.getMessage() for r in caplog.records if "at start-up" in r.getMessage()]
        assert condition.kind in line
        await condition.mend(sandbox)
        await wait_until_ok(client, "/readyz")
        assert (await client.post("/api/auth/register", json=LOGIN)).status_code == 201


async def assert_unavailable(response: Any, kind: str | None = None) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = await response.get_json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    if kind is not None:
        assert [detail["type"] for detail in body["details"]] == [kind]


async def wait_until_ok(client: Client, path: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while (response := await client.get(path)).status_code != 200:
        assert time.monotonic() < deadline, (response.status_code, await response.get_json())
        await asyncio.sleep(0.1)


async def test_the_log_says_once_an_interval_how_many_were_refused_and_when_it_is_over(
    app: Quart, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """One line when the outage starts, one an interval while it lasts with the count of
    refusals since the last, and one when it is over with the total."""
    client = await signed_in_client(app)
    app_state(app).db.outages.interval = 0.5
    await refuse_connections(sandbox)
    caplog.clear()
    refused = 0
    started = time.monotonic()
    while time.monotonic() - started < 1.7:
        assert (await client.get("/api/me")).status_code == 503
        refused += 1
        await asyncio.sleep(0.02)
    await allow_connections(sandbox)
    await asyncio.sleep(0.6)  # an interval without a refusal
    assert (await client.get("/api/me")).status_code == 200

    lines = [r.getMessage() for r in caplog.records if r.name == "authapp.database"]
    first, *going_on, last = lines
    assert "database_refusing_connections" in first, lines
    assert "55000" in first, lines
    assert 2 <= len(going_on) <= 3, lines
    counts = [int(line.split(" refused")[0].rsplit(" ", 1)[1]) for line in going_on]
    assert all(count >= 5 for count in counts), lines
    assert sum(counts) < refused
    assert "is over" in last, lines
    assert f"{refused} refused" in last, (lines, refused)


TRIGGER = "CREATE TRIGGER bug BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION bug()"
BUGS = {
    # 55000 in the middle of a query is no refused connection: currval before nextval.
    "55000 currval": [
        "CREATE SEQUENCE bug_seq",
        "CREATE FUNCTION bug() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN PERFORM currval('bug_seq'); RETURN NEW; END $$",
        TRIGGER,
    ],
    "42601 syntax error": [
        "CREATE FUNCTION bug() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN EXECUTE 'SELEC 1'; RETURN NEW; END $$",
        TRIGGER,
    ],
    # A unique index the code does not expect: a second session of the same user.
    "23505 unique violation": ["CREATE UNIQUE INDEX bug ON sessions (user_id)"],
}


@pytest.mark.parametrize(("name", "bug"), BUGS.items(), ids=BUGS.keys())
async def test_a_genuine_bug_is_still_a_500_with_its_traceback(
    app: Quart, sandbox: Sandbox, name: str, bug: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    sqlstate = name.split()[0]
    client = await signed_in_client(app)
    await sandbox.sql(*bug, as_app=True)
    caplog.clear()
    response = await client.post("/api/auth/login", json=LOGIN)
    assert response.status_code == 500
    assert (await response.get_json())["code"] == "INTERNAL_ERROR"
    assert "Retry-After" not in response.headers
    (logged,) = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert getattr(logged, "sqlstate", None) == sqlstate, logged  # the bug, and its traceback
    assert (await client.get("/readyz")).status_code == 200


# --- a rotated password and a failover, under a real server ---------------------------------


def records_of(log: Path, since: int = 0) -> list[dict[str, Any]]:
    """The server's JSON log lines from byte `since`."""
    with log.open("rb") as file:
        file.seek(since)
        return [json.loads(line) for line in file.read().splitlines() if line.startswith(b"{")]


def burst(http: httpx.Client, cookie: str, count: int) -> None:
    """`count` signed-in requests, each refused with a 503 and Retry-After."""
    for _ in range(count):
        assert_unavailable_json(http.get("/api/me", headers={"Cookie": cookie}))
    assert_unavailable_json(http.post("/api/auth/login", json=LOGIN))


def standby(postgres: ThrowawayPostgres, hot: bool) -> None:
    """Restart the server as a standby with nothing to follow: with hot_standby off it accepts
    no connection (57P03), on it is read-only (25006)."""
    postgres.stop()
    pgdata = Path(postgres.server.pgdata)
    (pgdata / "standby.signal").touch()
    auto = pgdata / "postgresql.auto.conf"
    kept = [line for line in auto.read_text().splitlines() if not line.startswith("hot_standby")]
    auto.write_text("\n".join([*kept, f"hot_standby = {'on' if hot else 'off'}", ""]))
    postgres.start()


def admin(postgres: ThrowawayPostgres, *statements: str) -> None:
    async def run() -> None:
        connection = await asyncpg.connect(postgres.url)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def test_a_rotated_password_and_a_failover_under_a_running_server(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    with tempfile.TemporaryDirectory(prefix="authapp-outage-pg-") as folder:
        postgres = ThrowawayPostgres(Path(folder))
        try:
            _rotate_and_fail_over(postgres, tmp_path, smtp_server)
        finally:
            postgres.remove()


def _rotate_and_fail_over(
    postgres: ThrowawayPostgres, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    admin(
        postgres, "CREATE ROLE app LOGIN PASSWORD 'first secret'", "CREATE DATABASE app OWNER app"
    )
    # The app's role proves its password (scram), ahead of the embedded server's trust for all.
    hba = Path(postgres.server.pgdata) / "pg_hba.conf"
    hba.write_text("local all app scram-sha-256\n" + hba.read_text())
    postgres._pg_ctl("reload")
    host = urlsplit(postgres.url).query  # host=<socket folder>
    url = f"postgresql://app:{quote('first secret')}@/app?{host}"
    terminate_app = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'"
    log = tmp_path / "server.log"
    with (
        hypercorn(
            url, tmp_path / "instance", smtp_server.url, log_path=log, AUTHAPP_LOG_FORMAT="json"
        ) as running,  # fmt: skip
        httpx.Client(base_url=running, timeout=30) as http,
    ):
        cookie = sign_in(http)
        assert http.get("/readyz").json() == {"status": "ready"}
        start = log.stat().st_size

        # A secrets manager rotates the password; the server still has the old one.
        admin(postgres, "ALTER ROLE app PASSWORD 'second secret'", terminate_app)
        burst(http, cookie, 50)
        assert_unavailable_json(http.get("/readyz"), "database_auth_failed")
        admin(postgres, "ALTER ROLE app PASSWORD 'first secret'")
        wait_for(lambda: http.get("/api/me", headers={"Cookie": cookie}).status_code == 200)

        # Failover: the database comes back as a standby not yet open to connections...
        standby(postgres, hot=False)
        burst(http, cookie, 50)
        assert_unavailable_json(http.get("/readyz"), "database_refusing_connections")
        # ... then as a hot standby: reads work, every write is refused (25006).
        standby(postgres, hot=True)
        burst(http, cookie, 50)
        assert_unavailable_json(http.get("/readyz"), "database_read_only")
        # ... then it is promoted, and the same server serves again, not restarted.
        postgres._pg_ctl("-w", "promote")
        wait_for(lambda: http.get("/api/me", headers={"Cookie": cookie}).status_code == 200)
        assert http.get("/readyz").json() == {"status": "ready"}
        login = {"email": "outage@example.com", "password": PASSWORD}
        assert http.post("/api/auth/login", json=login).status_code == 200

    records = [r for r in records_of(log, start) if r["logger"] != "hypercorn.access"]
    printed = "\n".join(f"{r['logger']}: {r['message']}" for r in records)
    assert not [r for r in records if "exception" in r], printed
    assert not [r for r in records if r["level"] == "ERROR"], printed
    # 153 refusals in each of three conditions (and the restarts' lost connections): a line or
    # two per kind, asyncpg's pool included, not one per request.
    kinds = ["database_auth_failed", "database_refusing_connections", "database_read_only"]
    for kind in kinds:
        assert 1 <= sum(kind in r["message"] for r in records) <= 3, (kind, printed)
    assert len(records) <= 15, printed
    # For log collectors, the kind in a field of its own.
    assert {r["database_outage"] for r in records if "database_outage" in r} >= set(kinds)
