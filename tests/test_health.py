"""/healthz and /readyz: what load balancers and orchestrators ask, never limited or cached."""

from __future__ import annotations

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_rate_limiter import QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE

from authapp.infra.database import latest_migration
from tests.conftest import app_state, execute, fetch_val

PROBES = ["/healthz", "/readyz"]


@pytest.mark.parametrize("accept", ["application/json", "text/html", "*/*"])
async def test_healthz_is_alive_without_the_database(
    app: Quart, client: Client, accept: str
) -> None:
    before = app_state(app).db.acquisitions
    response = await client.get("/healthz", headers={"Accept": accept})
    assert response.status_code == 200
    assert await response.get_json() == {"status": "alive"}  # JSON whatever the probe accepts
    assert response.headers["Cache-Control"] == "no-store"
    assert app_state(app).db.acquisitions == before


async def test_readyz_is_ready_on_a_migrated_database(client: Client) -> None:
    response = await client.get("/readyz", headers={"Accept": "*/*"})
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ready"}
    assert response.headers["Cache-Control"] == "no-store"


async def test_readyz_names_pending_migrations(app: Quart, client: Client) -> None:
    """A database behind this release (restored from an old backup, or still migrating)."""
    newest = latest_migration()
    assert await fetch_val(app, "SELECT version FROM schema_migration") == newest
    await execute(app, "UPDATE schema_migration SET version = :v", {"v": newest - 1})
    try:
        response = await client.get("/readyz", headers={"Accept": "text/html"})
    finally:
        await execute(app, "UPDATE schema_migration SET version = :v", {"v": newest})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = await response.get_json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    assert body["details"] == [
        {
            "field": "migrations",
            "message": f"The database is at migration {newest - 1}; this release needs {newest}.",
            "type": "migrations_pending",
        }
    ]
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.settings(DB_POOL_MIN_SIZE=1, DB_POOL_MAX_SIZE=1, DB_POOL_TIMEOUT=0.3)
async def test_readyz_is_not_ready_while_no_connection_frees_up(app: Quart, client: Client) -> None:
    async with app_state(app).db.connection():  # hold the only connection
        response = await client.get("/readyz")
        assert response.status_code == 503
        details = (await response.get_json())["details"]
        assert [detail["type"] for detail in details] == ["database_timeout"]
        assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_probes_are_exempt_from_rate_limits_and_not_in_the_api_docs(
    app: Quart, client: Client
) -> None:
    for path in PROBES:
        endpoint = app.url_map.bind("localhost").match(path)[0]
        assert getattr(app.view_functions[endpoint], QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE)
    spec = await (await client.get("/openapi.json")).get_json()
    assert not set(PROBES) & set(spec["paths"])
