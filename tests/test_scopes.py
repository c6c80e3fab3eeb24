"""Scopes a product registers on its app: tokens may get them, forms and docs offer them, and an
app will not serve a route that names a scope it does not have."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from quart import Blueprint, Quart
from quart.testing.app import LifespanError

from authapp import auth_required, create_app, register_scope
from tests.conftest import execute, settings_for
from tests.forms import api_client


def with_reports(app: Quart, scope: str = "reports:read") -> Quart:
    """A product's blueprint whose route a token with `scope` may call."""
    reports = Blueprint(f"reports_{scope.replace(':', '_')}", __name__)

    @reports.get("/api/reports")
    @auth_required(scope)
    async def list_reports() -> dict[str, Any]:
        """List the reports."""
        return {"reports": []}

    app.register_blueprint(reports)
    return app


async def test_a_registered_scope_opens_the_products_route(app: Quart, make_user: Any) -> None:
    register_scope(app, "reports:read", "Read the reports.")
    with_reports(app)
    await make_user()
    client = await api_client(app)
    made = await client.post("/api/tokens", json={"name": "r", "scopes": ["reports:read"]})
    assert made.status_code == 201, await made.get_data(as_text=True)
    bearer = {"Authorization": f"Bearer {(await made.get_json())['token']}"}
    assert (await app.test_client().get("/api/reports", headers=bearer)).status_code == 200
    assert (await app.test_client().get("/api/me", headers=bearer)).status_code == 403
    spec = await (await client.get("/openapi.json")).get_json()
    assert "reports:read" in spec["info"]["description"]
    page = await client.get("/account/tokens", headers={"Accept": "text/html"})
    assert "Read the reports." in await page.get_data(as_text=True)


async def test_another_app_does_not_have_it(
    app: Quart, make_user: Any, database_url: str, tmp_path: Path
) -> None:
    other = create_app(settings_for(database_url, tmp_path / "other"))
    register_scope(other, "reports:read", "Read the reports.")
    await make_user()
    client = await api_client(app)
    refused = await client.post("/api/tokens", json={"name": "r", "scopes": ["reports:read"]})
    assert refused.status_code == 400
    detail = (await refused.get_json())["details"][0]
    assert detail["field"] == "scopes.0"
    assert detail["message"] == (
        "Input should be 'profile:read', 'profile:write', 'sessions:read', 'sessions:write', "
        "'users:read', 'users:write', 'roles:write' or 'audit:read'"
    )


async def test_an_app_will_not_serve_a_route_whose_scope_it_lacks(
    database_url: str, tmp_path: Path
) -> None:
    app = with_reports(create_app(settings_for(database_url, tmp_path)), "reprots:read")
    with pytest.raises(LifespanError, match=r"reprots_read\.list_reports needs 'reprots:read'"):
        async with app.test_app():
            pass


@pytest.mark.parametrize("name", ["Reports:Read", "reports", "reports:", ":read", "a:b:c", "é:x"])
def test_a_scope_has_a_shape(app: Quart, name: str) -> None:
    with pytest.raises(ValueError, match="looks like"):
        register_scope(app, name, "x")


def test_a_scope_keeps_its_first_meaning(app: Quart) -> None:
    register_scope(app, "reports:read", "Read the reports.")
    assert register_scope(app, "reports:read", "Read the reports.") == "reports:read"
    with pytest.raises(ValueError, match="registered already"):
        register_scope(app, "reports:read", "Delete the reports.")


async def test_the_database_takes_any_scope_of_the_shape(app: Quart, make_user: Any) -> None:
    user = await make_user()
    row = {"user_id": user.id, "now": datetime.now(UTC),
           "expires_at": datetime.now(UTC) + timedelta(days=1)}  # fmt: skip
    insert = """INSERT INTO api_tokens (token_hash, user_id, name, scopes, created_at, expires_at)
                VALUES (:hash, :user_id, :name, CAST(:scopes AS text[]), :now, :expires_at)"""
    await execute(app, insert, {**row, "hash": hashlib.sha256(b"1").digest(), "name": "a",
                                "scopes": ["reports:read", "profile:read"]})  # fmt: skip
    for bad in (["Reports:read"], ["reports"], [], ["x:y z:w"]):
        with pytest.raises(asyncpg.CheckViolationError):
            await execute(app, insert, {**row, "hash": hashlib.sha256(str(bad).encode()).digest(),
                                        "name": str(bad), "scopes": bad})  # fmt: skip
