"""The pool: requests take a connection only to run SQL, and a busy pool is a 503, not a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_db import UndefinedParameterError

from authapp.accounts import roles
from authapp.errors import APIError
from authapp.infra.database import migrations_path
from tests.conftest import PASSWORD, ROOT, app_state, fetch_val
from tests.forms import api_client


def test_migrations_are_found_in_the_checkout() -> None:
    assert migrations_path() == ROOT / "migrations"


@pytest.mark.settings(DB_POOL_MIN_SIZE=1, DB_POOL_MAX_SIZE=1, DB_POOL_TIMEOUT=0.3)
async def test_an_exhausted_pool_is_a_503_and_spares_requests_without_sql(
    app: Quart, client: Client, make_user: Callable[..., Awaitable[Any]], login: Any
) -> None:
    await make_user()
    await login()
    state = app_state(app)
    async with state.db.connection():  # hold the only connection
        me = await client.get("/api/me")
        assert me.status_code == 503
        assert me.headers["Retry-After"] == "5"
        assert (await me.get_json())["code"] == "SERVICE_UNAVAILABLE"
        # Docs and the spec need no database, so they do not wait on the pool.
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
        # A page that shows the account reports the outage rather than failing twice.
        page = await client.get("/protected", headers={"Accept": "text/html"})
        assert page.status_code == 503
        assert "The database is unavailable" in await page.get_data(as_text=True)
    assert (await client.get("/api/me")).status_code == 200


def round_trips(app: Quart) -> int:
    """Messages the pool's connections have sent PostgreSQL so far: each statement, BEGIN,
    COMMIT and reset (asyncpg's own count, the one behind its max_queries)."""
    pool = app_state(app).db.quart_db._backend._pool  # type: ignore[attr-defined]
    return sum(holder._con._protocol.queries_count for holder in pool._holders if holder._con)


async def test_a_signed_in_request_is_one_round_trip_to_the_database(
    app: Quart, signed_in: Client
) -> None:
    # The session, its user and the once-a-minute "last seen" in one statement, and no
    # reset query when the connection goes back to the pool. (The first use of a statement
    # on a connection also prepares it, and the first "last seen" mark is a write.)
    assert (await signed_in.get("/api/me")).status_code == 200
    before = round_trips(app)
    for _ in range(5):
        assert (await signed_in.get("/api/me")).status_code == 200
    assert round_trips(app) - before == 5

    created = await signed_in.post("/api/tokens", json={"name": "ci", "scopes": ["profile:read"]})
    token = (await created.get_json())["token"]
    await signed_in.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    before = round_trips(app)
    for _ in range(5):
        me = await signed_in.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
    assert round_trips(app) - before == 5


async def test_permissions_come_with_the_session_and_the_token_for_nothing_more(
    app: Quart, signed_in: Client
) -> None:
    # Refused for want of a permission: the one statement that resolved the session decided.
    assert (await signed_in.get("/api/admin/roles")).status_code == 403
    before = round_trips(app)
    assert (await signed_in.get("/api/admin/roles")).status_code == 403
    assert round_trips(app) - before == 1
    await roles.grant_by_email(app_state(app).db, "alice@example.com", "admin")
    # Let in: that statement, and the route's own query (the roles it lists).
    assert (await signed_in.get("/api/admin/roles")).status_code == 200
    before = round_trips(app)
    assert (await signed_in.get("/api/admin/roles")).status_code == 200
    assert round_trips(app) - before == 2
    created = await signed_in.post("/api/tokens", json={"name": "ci", "scopes": ["users:read"]})
    bearer = {"Authorization": f"Bearer {(await created.get_json())['token']}"}
    assert (await signed_in.get("/api/admin/roles", headers=bearer)).status_code == 200
    before = round_trips(app)
    assert (await signed_in.get("/api/admin/roles", headers=bearer)).status_code == 200
    assert round_trips(app) - before == 2


async def test_a_sign_in_is_two_round_trips_besides_the_hash(
    app: Quart, client: Client, make_user: Callable[..., Awaitable[Any]], login: Any
) -> None:
    # Count the attempt before hashing; once the password is right, start the session (with
    # its event, the sign-in kept and the count forgiven) in one statement.
    await make_user()
    before = round_trips(app)
    await login()
    assert round_trips(app) - before == 2


async def test_pooled_connections_keep_no_session_state(
    app: Quart, signed_in: Client, login: Any
) -> None:
    # The pool does not reset connections it takes back (a round trip per unit of work), so no
    # code may leave session state behind. Walk the flows that write, then look at every
    # connection.
    assert (await signed_in.patch("/api/me", json={"display_name": "Al"})).status_code == 200
    created = await signed_in.post("/api/tokens", json={"name": "ci", "scopes": ["profile:read"]})
    assert created.status_code == 201
    changed = await signed_in.post(
        "/api/me/password",
        json={"current_password": PASSWORD, "new_password": "a quite different passphrase 7"},
    )
    assert changed.status_code in {200, 204}, await changed.get_data(as_text=True)
    failed = await signed_in.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": "wrong password 1"}
    )
    assert failed.status_code == 401
    assert (await signed_in.post("/api/auth/logout")).status_code == 204

    pool = app_state(app).db.quart_db._backend._pool  # type: ignore[attr-defined]
    connections = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        for connection in connections:
            assert not connection.is_in_transaction()
            changed_settings = await connection.fetch(
                "SELECT name FROM pg_settings"
                " WHERE source = 'session' AND setting IS DISTINCT FROM reset_val"
            )
            assert changed_settings == []
            assert await connection.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
            advisory = await connection.fetchval(
                "SELECT count(*) FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            )
            assert advisory == 0
            cursors = "SELECT count(*) FROM pg_cursors WHERE name <> ''"  # '': this query's own
            assert await connection.fetchval(cursors) == 0
    finally:
        for connection in connections:
            await pool.release(connection)


async def test_named_parameters_are_compiled_once_and_bound_by_name(app: Quart) -> None:
    query = "SELECT CAST(:b AS text) || CAST(:a AS text) || CAST(:b AS text)"
    assert await fetch_val(app, query, {"a": "1", "b": "2"}) == "212"
    assert await fetch_val(app, query, {"b": "x", "a": "y"}) == "xyx"  # another order
    with pytest.raises(UndefinedParameterError):
        await fetch_val(app, query, {"a": "1"})


async def test_signed_in_requests_that_arrive_together_share_one_statement(
    app: Quart, make_user: Callable[..., Awaitable[Any]]
) -> None:
    await make_user()
    await make_user(email="bob@example.com")
    emails = ["alice@example.com"] * 3 + ["bob@example.com"] * 2
    devices = [await api_client(app, email) for email in emails]
    for device in devices:  # prepared on the connection, and the first "last seen" written
        assert (await device.get("/api/me")).status_code == 200
    before = round_trips(app)
    answers = await asyncio.gather(*(device.get("/api/me") for device in devices))
    assert round_trips(app) - before == 1
    assert [(await answer.get_json())["email"] for answer in answers] == emails


async def test_a_deadlock_ends_one_unit_of_work_with_a_409_to_try_again(
    app: Quart, make_user: Callable[..., Awaitable[Any]]
) -> None:
    """Two units of work lock two users' rows in opposite orders. PostgreSQL ends one of them
    (after its deadlock_timeout); that one is 409 CONCURRENT_CHANGE, never a 500, and the other
    goes on."""
    db = app_state(app).db
    ids = [(await make_user(email)).id for email in ("a@example.com", "b@example.com")]
    holding = [asyncio.Event(), asyncio.Event()]

    async def lock_both(first: int) -> None:
        async with db.transaction() as connection:
            lock = "SELECT 1 FROM users WHERE id = :id FOR UPDATE"
            await connection.execute(lock, {"id": ids[first]})
            holding[first].set()
            await holding[1 - first].wait()
            await connection.execute(lock, {"id": ids[1 - first]})

    ended = await asyncio.gather(lock_both(0), lock_both(1), return_exceptions=True)
    errors = [outcome for outcome in ended if outcome is not None]
    assert len(errors) == 1, ended
    assert isinstance(errors[0], APIError), repr(errors[0])
    assert (errors[0].status, errors[0].code) == (409, "CONCURRENT_CHANGE")
