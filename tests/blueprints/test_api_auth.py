"""The JSON auth API: register, login, logout and /api/me, each success and failure."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, execute, fetch_val, session_cookie

USER_KEYS = {"id", "email", "display_name", "email_verified", "created_at"}
MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Any]]


async def test_register_creates_the_user(client: Client, app: Quart) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "  Bob@EXAMPLE.com ", "password": PASSWORD, "display_name": " Bob "},
    )
    assert response.status_code == 201
    body = await response.get_json()
    assert set(body) == USER_KEYS
    # Trimmed, domain lower-cased by email-validator, local part kept as typed.
    assert body["email"] == "Bob@example.com"
    assert body["display_name"] == "Bob"
    assert body["email_verified"] is False
    stored = await fetch_val(
        app, "SELECT password_hash FROM users WHERE id = :id", {"id": body["id"]}
    )
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


async def test_register_defaults_the_display_name(client: Client) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": "carol@example.com", "password": PASSWORD}
    )
    assert (await response.get_json())["display_name"] == "carol"


async def test_register_taken_email_any_case_is_409(client: Client, make_user: MakeUser) -> None:
    await make_user("dave@example.com")
    response = await client.post(
        "/api/auth/register", json={"email": "DAVE@Example.COM", "password": PASSWORD}
    )
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "EMAIL_TAKEN"


@pytest.mark.parametrize(
    ("password", "type_"),
    [
        ("short pass", "string_too_short"),  # 10 < 12
        ("x" * 1025, "string_too_long"),
        ("a\u0301" * 6, "password_too_short"),  # 12 code points, NFKC composes them to 6
        ("             ", "password_blank"),
    ],
)
async def test_register_password_policy(client: Client, password: str, type_: str) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": "eve@example.com", "password": password}
    )
    assert response.status_code == 400
    body = await response.get_json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"][0]["field"] == "password"
    if type_ != "string_too_short":
        assert body["details"][0]["type"] == type_


async def test_password_equal_to_email_is_refused(client: Client) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "frank.long.name@example.com", "password": "Frank.Long.Name@example.com"},
    )
    body = await response.get_json()
    assert response.status_code == 400
    assert body["code"] == "PASSWORD_TOO_SIMILAR"
    assert body["details"] == [
        {
            "field": "password",
            "message": "The password is too much like your email address.",
            "type": "password_too_similar",
        }
    ]


@pytest.mark.settings(PASSWORD_MIN_LENGTH=15)
async def test_password_min_length_is_a_setting(client: Client) -> None:
    fourteen = "a" * 14
    response = await client.post(
        "/api/auth/register", json={"email": "gina@example.com", "password": fourteen}
    )
    assert response.status_code == 400
    response = await client.post(
        "/api/auth/register", json={"email": "gina@example.com", "password": fourteen + "b"}
    )
    assert response.status_code == 201


async def test_password_is_nfkc_normalised(client: Client, make_user: MakeUser) -> None:
    # The ligature "ﬁ" and the letters "fi" are one password after NFKC.
    await make_user("hal@example.com", password="\ufb01ne passphrase here")
    response = await client.post(
        "/api/auth/login", json={"email": "hal@example.com", "password": "fine passphrase here"}
    )
    assert response.status_code == 200


async def test_login_sets_a_session_cookie(client: Client, make_user: MakeUser, app: Quart) -> None:
    user = await make_user()
    response = await client.post(
        "/api/auth/login", json={"email": "ALICE@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert (await response.get_json())["id"] == str(user.id)
    assert response.headers["Cache-Control"] == "no-store"
    cookie = session_cookie(response)
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/" in cookie
    assert "Max-Age" not in cookie  # a browser-session cookie without remember
    last_login = await fetch_val(
        app, "SELECT last_login_at FROM users WHERE id = :id", {"id": user.id}
    )
    assert last_login is not None


async def test_remember_gives_a_persistent_cookie(
    client: Client, make_user: MakeUser, app: Quart
) -> None:
    await make_user()
    response = await client.post(
        "/api/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD, "remember": True},
    )
    assert f"Max-Age={30 * 86400}" in session_cookie(response)
    lifetime = await fetch_val(
        app, "SELECT extract(epoch FROM expires_at - created_at) FROM sessions WHERE remember"
    )
    assert int(lifetime) == 30 * 86400


async def test_database_keeps_only_the_token_hash(
    client: Client, make_user: MakeUser, login: Login, app: Quart
) -> None:
    await make_user()
    await login()
    assert client.cookie_jar is not None
    cookie = next(each for each in client.cookie_jar if each.name == "__Host-authapp_session")
    auth_id = app.extensions["QUART_AUTH"][0].load_token(cookie.value, app=app)
    assert len(auth_id) == 43  # 256 random bits, base64url
    stored = await fetch_val(app, "SELECT id FROM sessions")
    assert stored == hashlib.sha256(auth_id.encode()).digest()


@pytest.mark.parametrize("case", ["unknown email", "wrong password", "inactive account"])
async def test_login_failures_look_the_same(
    client: Client, make_user: MakeUser, app: Quart, case: str
) -> None:
    user = await make_user()
    email, password = "alice@example.com", PASSWORD
    if case == "unknown email":
        email = "nobody@example.com"
    elif case == "wrong password":
        password = "not the right password"
    else:
        await execute(app, "UPDATE users SET is_active = false WHERE id = :id", {"id": user.id})
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 401
    assert await response.get_json() == {
        "code": "INVALID_CREDENTIALS",
        "message": "Email or password is wrong.",
    }
    assert "Set-Cookie" not in response.headers
    assert await fetch_val(app, "SELECT count(*) FROM sessions") == 0


async def test_me_needs_a_session(client: Client) -> None:
    response = await client.get("/api/me")
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "UNAUTHENTICATED"


async def test_me_returns_the_user(client: Client, make_user: MakeUser, login: Login) -> None:
    user = await make_user(display_name="Alice A.")
    await login()
    response = await client.get("/api/me")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.get_json()
    assert body["id"] == str(user.id)
    assert body["display_name"] == "Alice A."
    assert set(body) == USER_KEYS


async def test_logout_revokes_the_session_and_clears_the_cookie(
    client: Client, make_user: MakeUser, login: Login, app: Quart
) -> None:
    await make_user()
    login_response = await login()
    copied = session_cookie(login_response).split(";")[0]  # what a thief would keep
    response = await client.post("/api/auth/logout")
    assert response.status_code == 204
    assert response.headers["Cache-Control"] == "no-store"
    assert "Max-Age=0" in session_cookie(response)
    assert await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL") == 1
    thief = app.test_client()
    replay = await thief.get("/api/me", headers={"Cookie": copied})
    assert replay.status_code == 401


async def test_logout_without_a_session_is_204(client: Client) -> None:
    response = await client.post("/api/auth/logout")
    assert response.status_code == 204


async def test_every_login_issues_a_new_token_and_retires_the_old(
    client: Client, make_user: MakeUser, login: Login, app: Quart
) -> None:
    await make_user()
    first = session_cookie(await login()).split(";")[0]
    second = session_cookie(await login()).split(";")[0]
    assert first != second
    other = app.test_client()
    assert (await other.get("/api/me", headers={"Cookie": first})).status_code == 401
    assert (await other.get("/api/me", headers={"Cookie": second})).status_code == 200


async def test_expired_session_is_refused(
    client: Client, make_user: MakeUser, login: Login, app: Quart
) -> None:
    await make_user()
    await login()
    await execute(
        app,
        "UPDATE sessions SET created_at = now() - interval '2 days', "
        "last_seen_at = now() - interval '2 days', expires_at = now() - interval '1 second'",
    )
    assert (await client.get("/api/me")).status_code == 401


async def test_deactivation_takes_effect_on_the_next_request(
    client: Client, make_user: MakeUser, login: Login, app: Quart
) -> None:
    user = await make_user()
    await login()
    assert (await client.get("/api/me")).status_code == 200
    await execute(app, "UPDATE users SET is_active = false WHERE id = :id", {"id": user.id})
    assert (await client.get("/api/me")).status_code == 401


async def test_login_upgrades_an_outdated_hash(
    client: Client, make_user: MakeUser, app: Quart
) -> None:
    from argon2 import PasswordHasher

    user = await make_user()
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    await execute(
        app, "UPDATE users SET password_hash = :h WHERE id = :id", {"h": weak, "id": user.id}
    )
    response = await client.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    upgraded = await fetch_val(
        app, "SELECT password_hash FROM users WHERE id = :id", {"id": user.id}
    )
    assert upgraded != weak
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # And the new hash still verifies.
    other = app.test_client()
    again = await other.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert again.status_code == 200


async def test_old_cookies_survive_a_key_rotation(
    make_user: MakeUser, login: Login, app: Quart, database_url: str, tmp_path: Path
) -> None:
    from authapp import create_app
    from tests.conftest import SECRET_KEY, settings_for

    await make_user()
    cookie = session_cookie(await login()).split(";")[0]
    new_key = "a-brand-new-secret-key-that-is-long-enough-42"
    rotated = create_app(
        settings_for(database_url, tmp_path, SECRET_KEY=new_key, SECRET_KEY_FALLBACKS=SECRET_KEY)
    )
    forgotten = create_app(settings_for(database_url, tmp_path, SECRET_KEY=new_key))
    async with rotated.test_app(), forgotten.test_app():
        still = await rotated.test_client().get("/api/me", headers={"Cookie": cookie})
        assert still.status_code == 200
        gone = await forgotten.test_client().get("/api/me", headers={"Cookie": cookie})
        assert gone.status_code == 401
        # What the rotated app signs now, it signs with the new key alone.
        fresh = session_cookie(
            await rotated.test_client().post(
                "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
            )
        ).split(";")[0]
        assert (
            await forgotten.test_client().get("/api/me", headers={"Cookie": fresh})
        ).status_code == 200
    assert (await app.test_client().get("/api/me", headers={"Cookie": fresh})).status_code == 401
