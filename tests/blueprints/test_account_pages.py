"""The protected blueprint's pages: the dashboard, the account page and its two forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, execute, fetch_val, session_cookie
from tests.forms import (
    HTML,
    csrf_from,
    field_error,
    flashes,
    forget_device,
    form_login,
    page_text,
    post_form,
    sign_in_from,
)

MakeUser = Callable[..., Awaitable[User]]
NEW_PASSWORD = "a brand new passphrase 2026"


@pytest.fixture
async def signed_in(client: Client, make_user: MakeUser) -> Client:
    await make_user(display_name="Alice")
    response = await form_login(client, await csrf_from(client))
    assert response.status_code == 302
    return client


async def password_hash(app: Quart) -> Any:
    return await fetch_val(app, "SELECT password_hash FROM users")


@pytest.mark.parametrize("path", ["/", "/account", "/protected", "/protected?tab=1"])
async def test_every_page_sends_visitors_to_sign_in_and_back(client: Client, path: str) -> None:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?" + (
        "next=/protected%3Ftab%3D1" if "?" in path else f"next={path}"
    )


async def test_api_clients_get_a_401_instead(client: Client) -> None:
    response = await client.get("/account", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "UNAUTHENTICATED"


async def test_the_dashboard_welcomes_by_name_on_a_first_sign_in(signed_in: Client) -> None:
    html = await page_text(await signed_in.get("/", headers=HTML))
    assert "<h1>Welcome, Alice</h1>" in html
    assert "You are signed in as <strong>alice@example.com</strong>." in html
    assert '<p id="previous-sign-in">This is your first sign-in.</p>' in html


async def test_the_dashboard_tells_when_and_where_the_sign_in_before_was(
    app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    await sign_in_from(app, "203.0.113.7")
    before = await fetch_val(app, "SELECT last_login_at FROM users")
    browser = await sign_in_from(app, "2001:db8::5")
    html = await page_text(await browser.get("/", headers=HTML))
    assert f'<time datetime="{before.isoformat()}">' in html
    assert before.strftime("%H:%M UTC") in html
    assert "from 203.0.113.7" in html
    assert "2001:db8::5" not in html  # that is this sign-in, not the one before


async def test_the_account_page_shows_both_forms(signed_in: Client) -> None:
    response = await signed_in.get("/account", headers=HTML)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = await page_text(response)
    assert 'id="display_name" name="display_name" type="text" value="Alice"' in html
    for field in ("current_password", "new_password", "new_password_confirm"):
        assert f'<label for="{field}">' in html
    assert '<a href="/account" aria-current="page">Account</a>' in html


async def test_changing_the_display_name(signed_in: Client, app: Quart) -> None:
    form = {"display_name": "  Ada  "}
    response = await post_form(signed_in, "/account/profile", form, "/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(html) == ["Your display name is saved."]
    assert 'name="display_name" type="text" value="Ada"' in html
    assert await fetch_val(app, "SELECT display_name FROM users") == "Ada"
    assert "<h1>Welcome, Ada</h1>" in await page_text(await signed_in.get("/", headers=HTML))


@pytest.mark.parametrize(
    ("display_name", "message"),
    [("", "required"), ("   ", "required"), ("x" * 101, "at most 100"),
     ("a\x01b", "control characters"), ("\u202eevil", "control characters")],
)  # fmt: skip
async def test_a_bad_display_name_is_refused_by_field(
    signed_in: Client, app: Quart, display_name: str, message: str
) -> None:
    form = {"display_name": display_name}
    response = await post_form(signed_in, "/account/profile", form, "/account")
    assert response.status_code == 400
    error = field_error(await page_text(response), "display_name")
    assert error is not None
    assert message in error.lower()
    assert await fetch_val(app, "SELECT display_name FROM users") == "Alice"


async def test_changing_the_password_signs_out_every_other_device(
    signed_in: Client, app: Quart
) -> None:
    other = await sign_in_from(app, "198.51.100.2")
    assert (await other.get("/", headers=HTML)).status_code == 200
    form = {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD}  # fmt: skip
    response = await post_form(signed_in, "/account/password", form, "/account")
    assert response.status_code == 302
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(html) == ["Your password is changed. 1 other session was signed out."]
    assert (await other.get("/", headers=HTML)).status_code == 302  # that device is out
    # The new password works and the old one does not.
    fresh = app.test_client()
    assert (await form_login(fresh, await csrf_from(fresh))).status_code == 401
    fresh = app.test_client()
    response = await form_login(fresh, await csrf_from(fresh), password=NEW_PASSWORD)
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"current_password": "not my password"}, "current_password", "not your current"),
        ({"current_password": ""}, "current_password", "required"),
        ({"new_password": "short", "new_password_confirm": "short"}, "new_password", "at least 12"),
        ({"new_password": "alice@example.com", "new_password_confirm": "alice@example.com"},
         "new_password", "email"),
        ({"new_password_confirm": "a different one entirely"}, "new_password_confirm",
         "do not match"),
    ],
)  # fmt: skip
async def test_a_refused_password_change_says_why_and_changes_nothing(
    signed_in: Client, app: Quart, fields: dict[str, str], field: str, message: str
) -> None:
    before = await password_hash(app)
    form = {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD, **fields}  # fmt: skip
    response = await post_form(signed_in, "/account/password", form, "/account")
    assert response.status_code == 400
    html = await page_text(response)
    error = field_error(html, field)
    assert error is not None
    assert message in error
    assert NEW_PASSWORD not in html
    assert PASSWORD not in html
    assert await password_hash(app) == before


@pytest.mark.settings(LOGIN_RATE_LIMIT_ACCOUNT="3/15 minutes")
async def test_guessing_the_current_password_spends_the_accounts_login_budget(
    app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    # A right sign-in spends nothing; without its device cookie the browser is untrusted.
    browser = forget_device(await sign_in_from(app, "192.0.2.1"))
    form = {"current_password": "guess", "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD}  # fmt: skip
    statuses = [
        (await post_form(browser, "/account/password", form, "/account")).status_code
        for _ in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    # The same budget guards the login form, from any address.
    stranger = app.test_client()
    response = await form_login(stranger, await csrf_from(stranger))
    assert response.status_code == 429


async def test_a_dead_session_is_told_so_and_its_cookie_cleared(
    signed_in: Client, app: Quart
) -> None:
    await execute(app, "UPDATE sessions SET revoked_at = now()")
    response = await signed_in.get("/account", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/account"
    cleared = session_cookie(response)
    assert "Max-Age=0" in cleared or "Expires=Thu, 01 Jan 1970" in cleared
    login_page = await page_text(await signed_in.get("/auth/login", headers=HTML))
    assert flashes(login_page) == ["Your session has ended. Please sign in again."]
    assert 'class="flash flash-error" role="alert"' in login_page


@pytest.mark.parametrize(
    ("path", "expected"), [("/account", ["Please sign in to see that page."]), ("/", [])]
)  # fmt: skip
async def test_a_visitor_sent_to_sign_in_from_a_deep_link_is_told_why(
    client: Client, path: str, expected: list[str]
) -> None:
    await client.get(path, headers=HTML)
    assert flashes(await page_text(await client.get("/auth/login", headers=HTML))) == expected
