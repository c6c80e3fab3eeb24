"""The notes example, built on authapp as a library: its resource, scopes, migrations, signal
receiver and page, beside authapp's own routes."""

from __future__ import annotations

from typing import Any

from conftest import PASSWORD, Register
from notes_app.receivers import WELCOME
from quart import Quart
from quart.typing import TestClientProtocol as Client

HTML = {"Accept": "text/html"}


async def token_with(client: Client, *scopes: str) -> dict[str, str]:
    created = await client.post("/api/tokens", json={"name": "-".join(scopes), "scopes": scopes})
    assert created.status_code == 201, await created.get_data(as_text=True)
    return {"Authorization": f"Bearer {(await created.get_json())['token']}"}


async def test_a_new_account_starts_with_a_welcome_note(register: Register) -> None:
    """The receiver of `registered` ran after the user was committed (its note refers to it)."""
    ada = await register()
    notes = (await (await ada.get("/api/notes")).get_json())["notes"]
    assert [note["title"] for note in notes] == [WELCOME]


async def test_notes_belong_to_their_writer(register: Register) -> None:
    ada, bob = await register(), await register("bob@example.com")
    created = await ada.post("/api/notes", json={"title": "Shopping", "body": "Milk"})
    assert created.status_code == 201
    note = await created.get_json()
    assert (await ada.get(f"/api/notes/{note['id']}")).status_code == 200
    changed = await ada.patch(f"/api/notes/{note['id']}", json={"body": "Milk, eggs"})
    assert (await changed.get_json())["body"] == "Milk, eggs"
    for method in ("GET", "PATCH", "DELETE"):
        theirs = await bob.open(f"/api/notes/{note['id']}", method=method, json={"body": "x"})
        assert theirs.status_code == 404, method
        assert (await theirs.get_json())["code"] == "NOTE_NOT_FOUND"
    assert (await ada.delete(f"/api/notes/{note['id']}")).status_code == 204
    assert (await ada.delete(f"/api/notes/{note['id']}")).status_code == 404


async def test_bad_input_is_a_clear_400(register: Register) -> None:
    ada = await register()
    for body in ({}, {"title": ""}, {"title": "x" * 201}, {"title": 7}, {"title": "a", "x": 1}):
        response = await ada.post("/api/notes", json=body)
        assert response.status_code == 400, body
        assert (await response.get_json())["code"] == "VALIDATION_ERROR"


async def test_tokens_take_the_products_own_scopes(app: Quart, register: Register) -> None:
    ada = await register()
    reader = await token_with(ada, "notes:read")
    writer = await token_with(ada, "notes:write")
    profile = await token_with(ada, "profile:read")
    robot = app.test_client()
    assert (await robot.get("/api/notes", headers=reader)).status_code == 200
    refused = await robot.post("/api/notes", headers=reader, json={"title": "no"})
    assert refused.status_code == 403
    assert (await refused.get_json())["code"] == "INSUFFICIENT_SCOPE"
    assert (
        await robot.post("/api/notes", headers=writer, json={"title": "yes"})
    ).status_code == 201
    assert (await robot.get("/api/notes", headers=profile)).status_code == 403
    assert (await robot.get("/api/me", headers=reader)).status_code == 403  # authapp's own
    unknown = await ada.post("/api/tokens", json={"name": "x", "scopes": ["notes:admin"]})
    assert unknown.status_code == 400
    page = await ada.get("/account/tokens", headers=HTML)  # the token form offers them
    assert "notes:write" in await page.get_data(as_text=True)


async def test_the_spec_documents_the_notes_beside_authapps_routes(client: Client) -> None:
    spec: dict[str, Any] = await (await client.get("/openapi.json")).get_json()
    assert "/api/me" in spec["paths"]
    notes = spec["paths"]["/api/notes"]
    assert notes["get"]["security"] == [{"sessionCookie": []}, {"bearerToken": ["notes:read"]}]
    assert notes["post"]["security"] == [{"sessionCookie": []}, {"bearerToken": ["notes:write"]}]
    assert notes["get"]["summary"] == "List your notes, the newest first."
    assert "notes:write" in spec["info"]["description"]


async def test_its_migrations_run_after_authapps_in_their_own_sequence(app: Quart) -> None:
    async with app.extensions["authapp"].db.connection() as connection:
        assert await connection.fetch_val("SELECT version FROM app_schema_migration") == 0
        assert await connection.fetch_val("SELECT version FROM schema_migration") >= 6
        assert await connection.fetch_val("SELECT to_regclass('notes') IS NOT NULL")
    ready = await app.test_client().get("/readyz")
    assert ready.status_code == 200


async def test_the_page_lives_in_authapps_layout(app: Quart, register: Register) -> None:
    visitor = app.test_client()
    away = await visitor.get("/notes", headers=HTML)
    assert away.status_code == 302
    assert away.headers["Location"] == "/auth/login?next=/notes"
    ada = await register()
    page = await ada.get("/notes", headers=HTML)
    html = await page.get_data(as_text=True)
    assert page.status_code == 200
    assert WELCOME in html
    assert 'href="/account"' in html  # authapp's header
    token = html.split('name="csrf_token" value="')[1].split('"')[0]
    added = await ada.post(
        "/notes", form={"csrf_token": token, "title": "From the page"}, headers=HTML
    )
    assert added.status_code == 302
    forged = await ada.post("/notes", form={"csrf_token": "nope", "title": "x"}, headers=HTML)
    assert forged.status_code == 400
    titles = [n["title"] for n in (await (await ada.get("/api/notes")).get_json())["notes"]]
    assert titles == ["From the page", WELCOME]


async def test_a_deleted_account_takes_its_notes(app: Quart, register: Register) -> None:
    ada = await register()
    await ada.post("/api/notes", json={"title": "Mine"})
    deleted = await ada.delete("/api/me", json={"password": PASSWORD})
    assert deleted.status_code == 204
    async with app.extensions["authapp"].db.connection() as connection:
        assert await connection.fetch_val("SELECT count(*) FROM notes") == 0
