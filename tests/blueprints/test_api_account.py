"""The JSON API of the signed-in user: change the display name and the password."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, fetch_val
from tests.forms import forget_device

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Any]]
NEW_PASSWORD = "a brand new passphrase 2026"


async def test_patch_me_changes_the_display_name(signed_in: Client, app: Quart) -> None:
    response = await signed_in.patch("/api/me", json={"display_name": " Ada "})
    assert response.status_code == 200
    assert (await response.get_json())["display_name"] == "Ada"
    assert (await (await signed_in.get("/api/me")).get_json())["display_name"] == "Ada"
    before, after = await fetch_val(app, "SELECT array[created_at, updated_at] FROM users")
    assert after > before


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "display_name"), ({"display_name": ""}, "display_name"),
     ({"display_name": 5}, "display_name"), ({"display_name": "x" * 101}, "display_name"),
     ({"display_name": "a\u202eb"}, "display_name"),
     ({"display_name": "Ada", "email": "x@example.com"}, "email")],
)  # fmt: skip
async def test_patch_me_refuses_bad_bodies_by_field(
    signed_in: Client, app: Quart, body: dict[str, Any], field: str
) -> None:
    response = await signed_in.patch("/api/me", json=body)
    assert response.status_code == 400
    error = await response.get_json()
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]] == [field]
    assert await fetch_val(app, "SELECT display_name FROM users") == "Alice"


async def test_changing_the_password_revokes_every_other_session(
    signed_in: Client, app: Quart, login: Login
) -> None:
    other = app.test_client()
    response = await other.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    response = await signed_in.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert (await other.get("/api/me")).status_code == 401
    assert (await signed_in.get("/api/me")).status_code == 200
    stale = await app.test_client().post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert stale.status_code == 401
    await login(password=NEW_PASSWORD)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"current_password": "wrong guess", "new_password": NEW_PASSWORD}, 400, "WRONG_PASSWORD",
         "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, 400, "VALIDATION_ERROR",
         "new_password"),
        ({"current_password": PASSWORD, "new_password": "Alice@Example.com"}, 400,
         "PASSWORD_TOO_SIMILAR", "new_password"),
        ({"current_password": PASSWORD}, 400, "VALIDATION_ERROR", "new_password"),
        ({"current_password": PASSWORD, "new_password": "x" * 1025}, 400, "VALIDATION_ERROR",
         "new_password"),
    ],
)  # fmt: skip
async def test_a_refused_password_change_changes_nothing(
    signed_in: Client, app: Quart, body: dict[str, str], status: int, code: str, field: str
) -> None:
    before = await fetch_val(app, "SELECT password_hash FROM users")
    response = await signed_in.post("/api/me/password", json=body)
    assert response.status_code == status
    error = await response.get_json()
    assert error["code"] == code
    assert [detail["field"] for detail in error["details"]] == [field]
    assert await fetch_val(app, "SELECT password_hash FROM users") == before


@pytest.mark.settings(LOGIN_RATE_LIMIT_ACCOUNT="2/15 minutes")
async def test_wrong_current_passwords_are_throttled_with_the_logins(signed_in: Client) -> None:
    # The fixture's right sign-in spent nothing; without its device the client is untrusted.
    forget_device(signed_in)
    body = {"current_password": "wrong guess", "new_password": NEW_PASSWORD}
    for _ in range(2):
        assert (await signed_in.post("/api/me/password", json=body)).status_code == 400
    response = await signed_in.post("/api/me/password", json=body)
    assert response.status_code == 429
    assert (await response.get_json())["code"] == "RATE_LIMITED"


@pytest.mark.parametrize(
    ("method", "path"), [("PATCH", "/api/me"), ("POST", "/api/me/password")]
)  # fmt: skip
async def test_both_need_a_session(client: Client, method: str, path: str) -> None:
    response = await client.open(path, method=method, json={"display_name": "x"})
    assert response.status_code == 401


async def test_the_spec_documents_both(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    patch = spec["paths"]["/api/me"]["patch"]
    assert patch["security"] == [{"sessionCookie": []}, {"bearerToken": ["profile:write"]}]
    assert {"200", "400", "401", "429"} <= set(patch["responses"])
    change = spec["paths"]["/api/me/password"]["post"]
    assert {"204", "400", "401", "429"} <= set(change["responses"])
    assert "content" not in change["responses"]["204"]
