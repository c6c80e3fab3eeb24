"""Personal API tokens: created once, kept as a hash, limited to their scopes, and dead on
revoke, expiry, password change and account deletion."""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.accounts.tokens import BUILTIN_SCOPES
from authapp.models.users import User
from tests.conftest import PASSWORD, Clock, execute, fetch_val
from tests.forms import api_client
from tests.mailbox import Mailbox

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Any]]
TOKEN_RE = re.compile(r"^authapp_pat_[A-Za-z0-9_-]{43}[0-9a-f]{8}$")
NEW_PASSWORD = "a brand new passphrase 2026"

SCOPES = list(BUILTIN_SCOPES)  # authapp's own: this app registers no others


async def create(client: Client, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "deploy script")
    body.setdefault("scopes", list(SCOPES))
    response = await client.post("/api/tokens", json=body)
    assert response.status_code == 201, await response.get_data(as_text=True)
    created: dict[str, Any] = await response.get_json()
    return created


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def as_token(app: Quart, token: str, method: str, path: str, body: Any = None) -> Any:
    """A request from a program with no cookies at all."""
    return await app.test_client().open(path, method=method, json=body, headers=bearer(token))


async def test_a_token_is_shown_once_and_kept_as_a_hash(
    signed_in: Client, app: Quart, clock: Clock
) -> None:
    created = await create(signed_in, name="deploy script", scopes=["profile:read"])
    token = created.pop("token")
    assert TOKEN_RE.match(token)
    assert set(created) == {"id", "name", "scopes", "created_at", "last_used_at", "expires_at"}
    assert (created["name"], created["scopes"], created["last_used_at"]) == (
        "deploy script", ["profile:read"], None,
    )  # fmt: skip
    stored = await fetch_val(app, "SELECT token_hash FROM api_tokens")
    assert stored == hashlib.sha256(token.encode()).digest()
    dump = await fetch_val(app, "SELECT row(t.*)::text FROM api_tokens t")
    assert token[12:] not in dump
    listed = await signed_in.get("/api/tokens")
    assert (await listed.get_json())["tokens"] == [created]
    assert token not in await listed.get_data(as_text=True)


async def test_a_token_signs_a_program_in_as_its_user(signed_in: Client, app: Quart) -> None:
    token = (await create(signed_in))["token"]
    response = await as_token(app, token, "GET", "/api/me")
    assert response.status_code == 200
    assert (await response.get_json())["email"] == "alice@example.com"
    assert "Set-Cookie" not in response.headers
    # No CSRF token and no cookie: a bearer request is not a browser's.
    patched = await as_token(app, token, "PATCH", "/api/me", {"display_name": "Ada"})
    assert patched.status_code == 200
    assert await fetch_val(app, "SELECT display_name FROM users") == "Ada"


# (scopes of the token, method, path, body, expected status)
SCOPE_TABLE: list[tuple[list[str], str, str, Any, int]] = [
    (["profile:read"], "GET", "/api/me", None, 200),
    (["profile:write"], "GET", "/api/me", None, 403),
    (["profile:write"], "PATCH", "/api/me", {"display_name": "Ada"}, 200),
    (["profile:read"], "PATCH", "/api/me", {"display_name": "Ada"}, 403),
    (["sessions:read"], "GET", "/api/sessions", None, 200),
    (["profile:read", "profile:write"], "GET", "/api/sessions", None, 403),
    (["sessions:write"], "DELETE", "/api/sessions/{session}", None, 204),
    (["sessions:read"], "DELETE", "/api/sessions/{session}", None, 403),
    # The session's alone, whatever the scopes: tokens cannot make tokens or take over.
    (list(SCOPES), "GET", "/api/tokens", None, 403),
    (list(SCOPES), "POST", "/api/tokens", {"name": "more", "scopes": ["profile:read"]}, 403),
    (list(SCOPES), "DELETE", "/api/tokens/{token}", None, 403),
    (list(SCOPES), "POST", "/api/me/password",
     {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, 403),
    (list(SCOPES), "POST", "/api/me/email", {"new_email": "x@example.com", "password": PASSWORD},
     403),
    (list(SCOPES), "DELETE", "/api/me", {"password": PASSWORD}, 403),
    (list(SCOPES), "POST", "/api/auth/reauth", {"password": PASSWORD}, 403),
    (list(SCOPES), "POST", "/api/sessions/revoke-others", None, 403),
    (list(SCOPES), "POST", "/api/sessions/revoke-all", None, 403),
]  # fmt: skip


@pytest.mark.parametrize(("scopes", "method", "path", "body", "status"), SCOPE_TABLE)
async def test_a_token_may_do_what_its_scopes_allow(
    signed_in: Client,
    app: Quart,
    scopes: list[str],
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    created = await create(signed_in, scopes=scopes)
    sessions = await (await signed_in.get("/api/sessions")).get_json()
    path = path.format(session=sessions["sessions"][0]["id"], token=created["id"])
    before = await fetch_val(app, "SELECT row(u.*)::text FROM users u")
    response = await as_token(app, created["token"], method, path, body)
    assert response.status_code == status, await response.get_data(as_text=True)
    if status == 403:
        assert (await response.get_json())["code"] == "INSUFFICIENT_SCOPE"
        assert await fetch_val(app, "SELECT row(u.*)::text FROM users u") == before
        assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 1
        assert (await signed_in.get("/api/me")).status_code == 200


async def test_a_session_listing_by_token_has_no_current_session(
    signed_in: Client, app: Quart
) -> None:
    token = (await create(signed_in, scopes=["sessions:read"]))["token"]
    listed = await (await as_token(app, token, "GET", "/api/sessions")).get_json()
    assert [item["current"] for item in listed["sessions"]] == [False]


def _forge(token: str) -> str:
    """Another body with a correct checksum: well formed, but no such token."""
    body = token[12:55][::-1]
    return f"authapp_pat_{body}{zlib.crc32(body.encode()):08x}"


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda token: "ghp_" + token[12:], id="wrong prefix"),
        pytest.param(lambda token: token[:-1] + ("0" if token[-1] != "0" else "1"), id="checksum"),
        pytest.param(
            lambda token: token[:20] + ("A" if token[20] != "A" else "B") + token[21:],
            id="tampered body",
        ),
        pytest.param(_forge, id="forged with a checksum"),
        pytest.param(lambda token: token[:-2], id="truncated"),
        pytest.param(lambda token: token + "0", id="extended"),
        pytest.param(lambda token: "", id="empty"),
        pytest.param(lambda token: token.upper(), id="upper case"),
    ],
)
async def test_a_spoiled_token_is_refused(
    signed_in: Client, app: Quart, spoil: Callable[[str], str]
) -> None:
    token = (await create(signed_in))["token"]
    response = await as_token(app, spoil(token), "GET", "/api/me")
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "UNAUTHENTICATED"
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert (await as_token(app, token, "GET", "/api/me")).status_code == 200


async def test_a_bad_token_is_refused_even_beside_a_good_cookie(
    signed_in: Client, app: Quart
) -> None:
    response = await signed_in.get("/api/me", headers=bearer("authapp_pat_nonsense"))
    assert response.status_code == 401


async def test_a_revoked_token_dies_at_once(signed_in: Client, app: Quart) -> None:
    created = await create(signed_in)
    assert (await signed_in.delete(f"/api/tokens/{created['id']}")).status_code == 204
    assert (await as_token(app, created["token"], "GET", "/api/me")).status_code == 401
    again = await signed_in.delete(f"/api/tokens/{created['id']}")
    assert again.status_code == 404
    assert (await again.get_json())["code"] == "TOKEN_NOT_FOUND"
    assert (await (await signed_in.get("/api/tokens")).get_json())["tokens"] == []


async def test_nobody_revokes_another_users_token(
    signed_in: Client, app: Quart, make_user: MakeUser
) -> None:
    created = await create(signed_in)
    await make_user(email="bob@example.com")
    bob = await api_client(app, "bob@example.com")
    response = await bob.delete(f"/api/tokens/{created['id']}")
    assert response.status_code == 404
    assert (await as_token(app, created["token"], "GET", "/api/me")).status_code == 200


async def test_a_token_expires(signed_in: Client, app: Quart, clock: Clock) -> None:
    created = await create(signed_in, expires_in_days=7)
    clock.advance(days=7, seconds=-1)
    assert (await as_token(app, created["token"], "GET", "/api/me")).status_code == 200
    clock.advance(seconds=2)
    assert (await as_token(app, created["token"], "GET", "/api/me")).status_code == 401


async def test_tokens_live_thirty_days_unless_told(
    signed_in: Client, app: Quart, clock: Clock
) -> None:
    await create(signed_in)
    lifetime = await fetch_val(app, "SELECT expires_at - created_at FROM api_tokens")
    assert lifetime.days == 30


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["admin"]}, "scopes.0"),
        ({"name": "x", "scopes": "profile:read"}, "scopes"),
        ({"name": "", "scopes": ["profile:read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["profile:read"]}, "name"),
        ({"name": "a\u202eb", "scopes": ["profile:read"]}, "name"),
        ({"name": "x", "scopes": ["profile:read"], "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "scopes": ["profile:read"], "expires_in_days": 366}, "expires_in_days"),
        ({"name": "x", "scopes": ["profile:read"], "expires_in_days": "7"}, "expires_in_days"),
        ({"name": "x", "scopes": ["profile:read"], "admin": True}, "admin"),
    ],
)
async def test_bad_token_requests_are_400_by_field(
    signed_in: Client, app: Quart, body: dict[str, Any], field: str
) -> None:
    response = await signed_in.post("/api/tokens", json=body)
    assert response.status_code == 400
    error = await response.get_json()
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]] == [field]
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 0


async def test_token_names_are_unique_per_user_whatever_their_case(signed_in: Client) -> None:
    await create(signed_in, name="Deploy")
    response = await signed_in.post("/api/tokens", json={"name": "deploy", "scopes": SCOPES})
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "TOKEN_NAME_TAKEN"


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
async def test_a_user_has_fifty_tokens_at_most(signed_in: Client, app: Quart) -> None:
    for number in range(50):
        await create(signed_in, name=f"token {number}")
    response = await signed_in.post("/api/tokens", json={"name": "one more", "scopes": SCOPES})
    assert response.status_code == 409
    assert (await response.get_json())["code"] == "TOO_MANY_TOKENS"
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 50


async def test_last_used_is_written_at_most_once_a_minute(
    signed_in: Client, app: Quart, clock: Clock
) -> None:
    token = (await create(signed_in))["token"]
    await as_token(app, token, "GET", "/api/me")
    first_use = clock.now
    clock.advance(seconds=59)
    await as_token(app, token, "GET", "/api/me")
    assert await fetch_val(app, "SELECT last_used_at FROM api_tokens") == first_use
    clock.advance(seconds=2)
    await as_token(app, token, "GET", "/api/me")
    assert await fetch_val(app, "SELECT last_used_at FROM api_tokens") == clock.now


async def test_tokens_die_with_the_user(signed_in: Client, app: Quart) -> None:
    token = (await create(signed_in))["token"]
    response = await signed_in.delete("/api/me", json={"password": PASSWORD})
    assert response.status_code == 204
    assert (await as_token(app, token, "GET", "/api/me")).status_code == 401
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 0


async def test_tokens_die_with_a_deactivated_user(signed_in: Client, app: Quart) -> None:
    token = (await create(signed_in))["token"]
    await execute(app, "UPDATE users SET is_active = false")
    assert (await as_token(app, token, "GET", "/api/me")).status_code == 401


async def test_tokens_die_when_the_password_changes(signed_in: Client, app: Quart) -> None:
    token = (await create(signed_in))["token"]
    response = await signed_in.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert (await as_token(app, token, "GET", "/api/me")).status_code == 401


@pytest.mark.settings(REVOKE_TOKENS_ON_PASSWORD_CHANGE="false")
async def test_tokens_can_outlive_a_password_change(signed_in: Client, app: Quart) -> None:
    token = (await create(signed_in))["token"]
    response = await signed_in.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204
    assert (await as_token(app, token, "GET", "/api/me")).status_code == 200


async def test_tokens_die_when_the_password_is_reset(
    signed_in: Client, app: Quart, mailbox: Mailbox
) -> None:
    token = (await create(signed_in))["token"]
    await signed_in.post("/api/auth/forgot-password", json={"email": "alice@example.com"})
    [message] = await mailbox.wait_for(1, to="alice@example.com")
    link = mailbox.link(message, "/auth/reset-password/")
    reset = await app.test_client().post(
        "/api/auth/reset-password",
        json={"token": link.rsplit("/", 1)[1], "password": NEW_PASSWORD},
    )
    assert reset.status_code == 204
    assert (await as_token(app, token, "GET", "/api/me")).status_code == 401


async def test_bearer_tokens_do_not_open_pages(signed_in: Client, app: Quart) -> None:
    token = (await create(signed_in))["token"]
    response = await app.test_client().get("/account", headers=bearer(token))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


async def test_a_token_never_reaches_logs_or_later_answers(
    signed_in: Client, app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await create(signed_in, scopes=["profile:read", "sessions:read"])
    token = created["token"]
    answers = [
        await as_token(app, token, "GET", "/api/me"),
        await as_token(app, token, "GET", "/api/sessions"),
        await as_token(app, token, "PATCH", "/api/me", {"display_name": "Ada"}),
        await signed_in.get("/api/tokens"),
        await signed_in.delete(f"/api/tokens/{created['id']}"),
        await as_token(app, token, "GET", "/api/me"),
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 403, 200, 204, 401]
    for answer in answers:
        assert token not in await answer.get_data(as_text=True)
        assert token not in str(answer.headers)
    assert "created API token" in caplog.text
    secret = token[12:]
    assert secret[:16] not in caplog.text
