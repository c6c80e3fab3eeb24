"""Sessions through the JSON API: list and revoke them, idle and absolute expiry, the
throttled last-seen mark, and fresh sign-in on every sensitive route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from authapp.web.guards import GUARD_ATTRIBUTE
from tests.conftest import PASSWORD, Clock, fetch_val
from tests.forms import api_client, forget_device
from tests.test_admin import ADMIN_FRESH_ROUTES
from tests.test_mfa import MFA_FRESH_ROUTES

MakeUser = Callable[..., Awaitable[User]]
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
SIGN_IN_ADDRESS = "203.0.113.7"
SESSION_FIELDS = {
    "id", "created_at", "last_seen_at", "ip", "last_seen_ip", "device", "remember", "amr",
    "expires_at", "current",
}  # fmt: skip


async def status_of_me(client: Client) -> int:
    return (await client.get("/api/me")).status_code


async def sessions_of(client: Client) -> list[dict[str, Any]]:
    response = await client.get("/api/sessions")
    assert response.status_code == 200
    body: list[dict[str, Any]] = (await response.get_json())["sessions"]
    return body


@pytest.fixture
async def alice(make_user: MakeUser) -> User:
    return await make_user(display_name="Alice")


async def test_the_list_shows_each_live_session_and_which_is_current(
    app: Quart, alice: User
) -> None:
    laptop = await api_client(app, address=SIGN_IN_ADDRESS)
    await api_client(app, user_agent=SAFARI, remember=True)
    listed = await sessions_of(laptop)
    assert [set(item) for item in listed] == [SESSION_FIELDS, SESSION_FIELDS]
    by_device = {item["device"]: item for item in listed}
    assert set(by_device) == {"Firefox on Linux", "Mobile Safari on iOS"}
    assert by_device["Firefox on Linux"]["current"] is True
    assert by_device["Mobile Safari on iOS"]["current"] is False
    assert by_device["Mobile Safari on iOS"]["remember"] is True
    assert by_device["Firefox on Linux"]["ip"] == SIGN_IN_ADDRESS
    # The public id is not the token, nor its hash.
    hashes = await fetch_val(app, "SELECT array_agg(encode(id, 'hex')) FROM sessions")
    for item in listed:
        assert item["id"] not in hashes
        assert len(item["id"]) == 36


async def test_the_list_leaves_out_dead_sessions_and_other_users(
    app: Quart, alice: User, make_user: MakeUser
) -> None:
    await make_user(email="bob@example.com")
    laptop = await api_client(app)
    await api_client(app, "bob@example.com")
    signed_out = await api_client(app, user_agent=SAFARI)
    await signed_out.post("/api/auth/logout")
    assert [item["device"] for item in await sessions_of(laptop)] == ["Firefox on Linux"]


async def test_revoking_one_session_ends_only_that_one(app: Quart, alice: User) -> None:
    laptop = await api_client(app)
    phone = await api_client(app, user_agent=SAFARI)
    phone_id = next(item["id"] for item in await sessions_of(laptop) if not item["current"])
    response = await laptop.delete(f"/api/sessions/{phone_id}")
    assert response.status_code == 204
    assert await status_of_me(phone) == 401
    assert await status_of_me(laptop) == 200
    again = await laptop.delete(f"/api/sessions/{phone_id}")
    assert again.status_code == 404
    assert (await again.get_json())["code"] == "SESSION_NOT_FOUND"


async def test_nobody_revokes_another_users_session(
    app: Quart, alice: User, make_user: MakeUser
) -> None:
    await make_user(email="bob@example.com")
    bob = await api_client(app, "bob@example.com")
    bob_id = (await sessions_of(bob))[0]["id"]
    alice_client = await api_client(app)
    response = await alice_client.delete(f"/api/sessions/{bob_id}")
    assert response.status_code == 404
    assert (await response.get_json())["code"] == "SESSION_NOT_FOUND"
    assert await status_of_me(bob) == 200


async def test_revoking_the_current_session_signs_this_client_out(app: Quart, alice: User) -> None:
    laptop = await api_client(app)
    current = (await sessions_of(laptop))[0]["id"]
    response = await laptop.delete(f"/api/sessions/{current}")
    assert response.status_code == 204
    assert any("Max-Age=0" in value or "Expires=Thu, 01 Jan 1970" in value
               for value in response.headers.getlist("Set-Cookie"))  # fmt: skip
    assert await status_of_me(laptop) == 401


async def test_revoke_others_keeps_only_this_session(app: Quart, alice: User) -> None:
    laptop = await api_client(app)
    others = [
        await api_client(app, user_agent=SAFARI),
        await api_client(app, user_agent="curl/8.5.0"),
    ]
    response = await laptop.post("/api/sessions/revoke-others")
    assert response.status_code == 200
    assert await response.get_json() == {"revoked": 2}
    assert [await status_of_me(other) for other in others] == [401, 401]
    assert await status_of_me(laptop) == 200
    assert len(await sessions_of(laptop)) == 1


async def test_revoke_all_ends_every_session_and_clears_the_cookie(app: Quart, alice: User) -> None:
    laptop = await api_client(app)
    others = [
        await api_client(app, user_agent=SAFARI),
        await api_client(app, user_agent="curl/8.5.0"),
    ]
    response = await laptop.post("/api/sessions/revoke-all")
    assert response.status_code == 200
    assert await response.get_json() == {"revoked": 3}
    assert [await status_of_me(client) for client in [laptop, *others]] == [401, 401, 401]
    assert await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL") == 0


@pytest.mark.parametrize("session_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000"])
async def test_an_unknown_session_id_is_404(app: Quart, alice: User, session_id: str) -> None:
    laptop = await api_client(app)
    response = await laptop.delete(f"/api/sessions/{session_id}")
    assert response.status_code == 404
    assert (await response.get_json())["code"] in {"NOT_FOUND", "SESSION_NOT_FOUND"}


# --- idle and absolute expiry (a controlled clock) ----------------------------------------


async def test_a_browser_session_ends_after_an_hour_idle(
    app: Quart, alice: User, clock: Clock
) -> None:
    laptop = await api_client(app)
    for _ in range(3):  # activity keeps it alive well past one idle period
        clock.advance(minutes=50)
        assert await status_of_me(laptop) == 200
    clock.advance(minutes=61)
    assert await status_of_me(laptop) == 401


async def test_a_remembered_session_idles_out_after_fourteen_days(
    app: Quart, alice: User, clock: Clock
) -> None:
    phone = await api_client(app, remember=True)
    clock.advance(days=13)
    assert await status_of_me(phone) == 200
    clock.advance(days=14, minutes=2)
    assert await status_of_me(phone) == 401


@pytest.mark.settings(SESSION_LIFETIME=3600, SESSION_IDLE_TIMEOUT=1800)
async def test_activity_never_outlives_the_absolute_lifetime(
    app: Quart, alice: User, clock: Clock
) -> None:
    laptop = await api_client(app)
    clock.advance(minutes=20)
    assert await status_of_me(laptop) == 200
    clock.advance(minutes=20)
    assert await status_of_me(laptop) == 200
    clock.advance(minutes=21)  # seen 21 minutes ago, but 61 minutes old
    assert await status_of_me(laptop) == 401


async def test_last_seen_is_written_at_most_once_a_minute(
    app: Quart, alice: User, clock: Clock
) -> None:
    laptop = await api_client(app, address=SIGN_IN_ADDRESS)
    signed_in_at = clock.now
    clock.advance(seconds=30)
    for _ in range(5):
        assert await status_of_me(laptop) == 200
    assert await fetch_val(app, "SELECT last_seen_at FROM sessions") == signed_in_at
    clock.advance(seconds=31)
    moved = await laptop.get("/api/me", scope_base={"client": ("198.51.100.9", 40000)})
    assert moved.status_code == 200
    assert await fetch_val(app, "SELECT last_seen_at FROM sessions") == clock.now
    [listed] = await sessions_of(laptop)
    assert (listed["ip"], listed["last_seen_ip"]) == (SIGN_IN_ADDRESS, "198.51.100.9")


# --- fresh sign-in -------------------------------------------------------------------------

# Every route that needs a fresh sign-in, with a body that would otherwise succeed.
FRESH_ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "api.change_password": ("POST", "/api/me/password",
                            {"current_password": PASSWORD, "new_password": "x" * 20}),
    "api.change_email": ("POST", "/api/me/email",
                         {"new_email": "new@example.com", "password": PASSWORD}),
    "api.delete_me": ("DELETE", "/api/me", {"password": PASSWORD}),
    "api.revoke_other_sessions": ("POST", "/api/sessions/revoke-others", None),
    "api.revoke_all_sessions": ("POST", "/api/sessions/revoke-all", None),
    "api.create_token": ("POST", "/api/tokens", {"name": "ci", "scopes": ["profile:read"]}),
}  # fmt: skip


def test_the_table_names_every_fresh_api_route(app: Quart) -> None:
    fresh = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint.startswith("api.") and getattr(view, GUARD_ATTRIBUTE, None)
        and getattr(view, GUARD_ATTRIBUTE).fresh
    }  # fmt: skip
    assert fresh == set(FRESH_ROUTES) | set(MFA_FRESH_ROUTES) | set(ADMIN_FRESH_ROUTES)


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
@pytest.mark.parametrize("endpoint", FRESH_ROUTES)
async def test_a_stale_session_must_confirm_its_password_first(
    app: Quart, alice: User, clock: Clock, endpoint: str
) -> None:
    method, path, body = FRESH_ROUTES[endpoint]
    laptop = await api_client(app)
    other = await api_client(app, user_agent=SAFARI)
    clock.advance(minutes=14)
    await status_of_me(laptop)  # activity keeps a session alive, not fresh
    clock.advance(minutes=2)
    before = await fetch_val(app, "SELECT row(u.*)::text FROM users u")
    response = await laptop.open(path, method=method, json=body)
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "REAUTH_REQUIRED"
    assert await fetch_val(app, "SELECT row(u.*)::text FROM users u") == before
    assert await status_of_me(other) == 200
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 0

    reauth = await laptop.post("/api/auth/reauth", json={"password": PASSWORD})
    assert reauth.status_code == 204
    response = await laptop.open(path, method=method, json=body)
    assert response.status_code < 300, await response.get_data(as_text=True)


async def test_a_session_is_fresh_for_fifteen_minutes_after_sign_in(
    app: Quart, alice: User, clock: Clock
) -> None:
    laptop = await api_client(app)
    clock.advance(minutes=14)
    assert (await laptop.post("/api/sessions/revoke-others")).status_code == 200
    clock.advance(minutes=2)
    assert (await laptop.post("/api/sessions/revoke-others")).status_code == 401


@pytest.mark.settings(FRESHNESS=60)
async def test_freshness_is_a_setting(app: Quart, alice: User, clock: Clock) -> None:
    laptop = await api_client(app)
    clock.advance(seconds=61)
    assert (await laptop.post("/api/sessions/revoke-others")).status_code == 401


async def test_reauth_needs_the_right_password(app: Quart, alice: User, clock: Clock) -> None:
    laptop = await api_client(app)
    clock.advance(minutes=16)
    wrong = await laptop.post("/api/auth/reauth", json={"password": "not the password"})
    assert wrong.status_code == 400
    error = await wrong.get_json()
    assert error["code"] == "WRONG_PASSWORD"
    assert [detail["field"] for detail in error["details"]] == ["password"]
    assert (await laptop.post("/api/sessions/revoke-others")).status_code == 401
    authenticated_at = await fetch_val(app, "SELECT authenticated_at FROM sessions")
    assert authenticated_at < clock.now


async def test_reauth_refreshes_only_this_session(app: Quart, alice: User, clock: Clock) -> None:
    laptop = await api_client(app)
    phone = await api_client(app, user_agent=SAFARI)
    clock.advance(minutes=16)
    assert (await laptop.post("/api/auth/reauth", json={"password": PASSWORD})).status_code == 204
    assert (await phone.post("/api/sessions/revoke-others")).status_code == 401
    assert (await laptop.post("/api/sessions/revoke-others")).status_code == 200


async def test_reauth_needs_a_session(client: Client, alice: User) -> None:
    response = await client.post("/api/auth/reauth", json={"password": PASSWORD})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "UNAUTHENTICATED"


@pytest.mark.settings(LOGIN_RATE_LIMIT_ACCOUNT="3/hour")
async def test_reauth_tries_spend_the_accounts_login_budget(app: Quart, alice: User) -> None:
    laptop = forget_device(await api_client(app))  # a right sign-in spends nothing
    for _ in range(3):
        response = await laptop.post("/api/auth/reauth", json={"password": "wrong password!"})
        assert response.status_code == 400
    response = await laptop.post("/api/auth/reauth", json={"password": PASSWORD})
    assert response.status_code == 429
