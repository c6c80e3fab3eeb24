"""The pool: requests take a connection only to run SQL, and a busy pool is a 503, not a hang."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.database import migrations_path
from tests.conftest import ROOT, app_state


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
