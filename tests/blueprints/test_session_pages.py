"""The pages of fresh sign-in and sessions: confirming the password, the forms that need a
fresh session, and "Where you're signed in" on the account page."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, Clock, fetch_val
from tests.forms import (
    FIREFOX,
    HTML,
    api_client,
    csrf_from,
    field_error,
    flashes,
    forget_device,
    page_text,
    post_form,
    sign_in_from,
    snapshot,
)

MakeUser = Callable[..., Awaitable[User]]
NEW_PASSWORD = "a brand new passphrase 2026"
STALE = {"minutes": 16}  # past AUTHAPP_FRESHNESS (15 minutes), within the idle timeout (1 hour)


@pytest.fixture
async def signed_in(app: Quart, make_user: MakeUser) -> Client:
    await make_user(display_name="Alice")
    return await sign_in_from(app)


async def me_status(client: Client) -> int:
    return int((await client.get("/api/me")).status_code)


async def authenticated_at(app: Quart) -> object:
    return await fetch_val(app, "SELECT max(authenticated_at) FROM sessions")


# --- the re-auth page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "login"),
    [("/auth/reauth", "/auth/login?next=/account"),
     ("/auth/reauth?next=/account/tokens", "/auth/login?next=/account/tokens"),
     ("/auth/reauth?next=//evil.example/", "/auth/login?next=/account")],
)  # fmt: skip
async def test_a_visitor_signs_in_instead_and_keeps_where_they_were_going(
    client: Client, path: str, login: str
) -> None:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == login


async def test_the_reauth_page_says_who_is_signed_in(signed_in: Client) -> None:
    response = await signed_in.get("/auth/reauth?next=/account/tokens", headers=HTML)
    assert response.status_code == 200
    html = await page_text(response)
    assert "<h1>Confirm it's you</h1>" in html
    assert "You are signed in as <strong>alice@example.com</strong>." in html
    assert '<input type="hidden" name="next" value="/account/tokens">' in html
    assert '<label for="password">Password</label>' in html


async def test_a_wrong_password_is_shown_at_the_field_and_changes_nothing(
    signed_in: Client, app: Quart, clock: Clock
) -> None:
    clock.advance(**STALE)
    before = await authenticated_at(app)
    form = {"password": "not my password", "next": "/account"}
    response = await post_form(signed_in, "/auth/reauth", form)
    assert response.status_code == 400
    html = await page_text(response)
    assert field_error(html, "password") == "This is not your current password."
    assert "not my password" not in html
    assert await authenticated_at(app) == before
    assert "Confirm your password" in await page_text(await signed_in.get("/account", headers=HTML))


async def test_an_empty_password_is_refused_by_field(signed_in: Client) -> None:
    response = await post_form(signed_in, "/auth/reauth", {"password": ""})
    assert response.status_code == 400
    assert field_error(await page_text(response), "password") == "This field is required."


async def test_the_right_password_makes_the_session_fresh_and_goes_on(
    signed_in: Client, app: Quart, clock: Clock
) -> None:
    clock.advance(**STALE)
    form = {"password": PASSWORD, "next": "/account/tokens"}
    response = await post_form(signed_in, "/auth/reauth", form)
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/tokens"
    assert await authenticated_at(app) == clock.now
    html = await page_text(await signed_in.get("/account/tokens", headers=HTML))
    assert flashes(html) == ["Thank you. For 15 minutes you can change what needs your password."]
    assert 'action="/account/tokens" novalidate' in html  # the form is back
    account = await page_text(await signed_in.get("/account", headers=HTML))
    assert 'action="/account/password"' in account


@pytest.mark.parametrize(
    "next_url", ["", "//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
async def test_an_unsafe_next_leads_to_the_account_page(signed_in: Client, next_url: str) -> None:
    response = await post_form(signed_in, "/auth/reauth", {"password": PASSWORD, "next": next_url})
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"


@pytest.mark.settings(LOGIN_RATE_LIMIT_ACCOUNT="3/15 minutes")
async def test_guessing_at_the_reauth_page_spends_the_accounts_login_budget(
    app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    browser = forget_device(await sign_in_from(app))  # a right sign-in spends nothing
    form = {"password": "guess"}
    statuses = [(await post_form(browser, "/auth/reauth", form)).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]


# --- forms that need a fresh session -------------------------------------------------------

# form: (where it posts, its fields, the page it is on)
SENSITIVE = {
    "password": ("/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                       "new_password_confirm": NEW_PASSWORD}, "/account"),
    "change of address": ("/account/email",
                          {"new_email": "new@example.com", "email_password": PASSWORD}, "/account"),
    "deletion": ("/account/delete", {"delete_password": PASSWORD}, "/account"),
    "sign out everywhere else": ("/account/sessions/revoke-others", {}, "/account"),
    "create a token": ("/account/tokens", {"name": "ci", "scopes": "profile:read"},
                       "/account/tokens"),
}  # fmt: skip


@pytest.mark.parametrize("form", SENSITIVE)
async def test_a_sensitive_form_on_a_stale_session_asks_for_the_password_first(
    signed_in: Client, app: Quart, clock: Clock, form: str
) -> None:
    other = await api_client(app)
    action, fields, page = SENSITIVE[form]
    token = await csrf_from(signed_in, page)  # the page as it was while the session was fresh
    clock.advance(**STALE)
    before = await snapshot(app)
    response = await signed_in.post(action, form={"csrf_token": token, **fields}, headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/auth/reauth?next={page}"
    assert await snapshot(app) == before
    assert await me_status(other) == 200
    html = await page_text(await signed_in.get(response.headers["Location"], headers=HTML))
    assert flashes(html) == ["Confirm your password to continue."]
    assert f'name="next" value="{page}"' in html


async def test_a_program_posting_a_form_on_a_stale_session_gets_json(
    signed_in: Client, clock: Clock
) -> None:
    clock.advance(**STALE)
    form = {"csrf_token": await csrf_from(signed_in, "/"), "delete_password": PASSWORD}
    response = await signed_in.post(
        "/account/delete", form=form, headers={"Accept": "application/json"}
    )
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "REAUTH_REQUIRED"


SENSITIVE_ACTIONS = ["/account/email", "/account/password", "/account/delete",
                     "/account/sessions/revoke-others"]  # fmt: skip


async def test_the_account_page_offers_the_sensitive_forms_only_on_a_fresh_session(
    signed_in: Client, app: Quart, clock: Clock
) -> None:
    await api_client(app)  # so there is somewhere else to sign out
    fresh = await page_text(await signed_in.get("/account", headers=HTML))
    for action in SENSITIVE_ACTIONS:
        assert f'action="{action}"' in fresh
    assert "Confirm your password" not in fresh

    clock.advance(**STALE)
    stale = await page_text(await signed_in.get("/account", headers=HTML))
    for action in SENSITIVE_ACTIONS:
        assert f'action="{action}"' not in stale
    links = re.findall(r'<a class="button" href="([^"]+)">Confirm your password</a>', stale)
    assert links == ["/auth/reauth?next=/account"] * 4
    assert "To change your password, confirm your password first" in stale
    # What needs no password stays: the profile, the list of sessions and its revoke buttons.
    for action in ("/account/profile", "/revoke"):
        assert action in stale


# --- where you're signed in ----------------------------------------------------------------


MOMENT = r'<time datetime="[^"]+">\d{1,2} \w{3} \d{4}, \d\d:\d\d UTC</time>'


def session_items(html: str) -> list[str]:
    listing = html.split('<ul class="items" id="sessions">')[1].split("</ul>")[0]
    return listing.split("<li>")[1:]


async def test_the_account_page_lists_where_you_are_signed_in(
    signed_in: Client, app: Quart
) -> None:
    await api_client(app)
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert '<h2 id="sessions-heading">Where you\'re signed in</h2>' in html
    items = session_items(html)
    assert len(items) == 2
    (current,) = [item for item in items if "This device" in item]
    (other,) = [item for item in items if "This device" not in item]
    assert "Revoke" not in current
    assert "from 192.0.2.10." in current
    assert ">Firefox on Linux</strong>" in other
    assert re.search(f"Last active {MOMENT}", other)
    assert re.search(f"Signed in {MOMENT}", other)
    revoke = re.search(r'action="/account/sessions/([0-9a-f-]{36})/revoke"', other)
    assert revoke is not None
    assert str(await fetch_val(app, "SELECT public_id FROM sessions WHERE user_agent = :ua",
                               {"ua": FIREFOX})) == revoke[1]  # fmt: skip
    assert 'action="/account/sessions/revoke-others"' in html


async def test_alone_there_is_nothing_else_to_sign_out(signed_in: Client) -> None:
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert len(session_items(html)) == 1
    assert "Sign out everywhere else" not in html


async def test_revoking_a_session_signs_that_device_out(signed_in: Client, app: Quart) -> None:
    other = await api_client(app)
    assert await me_status(other) == 200
    public_id = await fetch_val(app, "SELECT public_id FROM sessions WHERE user_agent = :ua",
                                {"ua": FIREFOX})  # fmt: skip
    response = await post_form(signed_in, f"/account/sessions/{public_id}/revoke", {}, "/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(html) == ["That session is signed out."]
    assert len(session_items(html)) == 1
    assert await me_status(other) == 401
    assert await me_status(signed_in) == 200


@pytest.mark.parametrize("which", ["revoked already", "unknown", "another user's"])
async def test_revoking_a_session_that_is_not_there_says_so(
    signed_in: Client, app: Quart, make_user: MakeUser, which: str
) -> None:
    if which == "another user's":
        await make_user("bob@example.com")
        await api_client(app, "bob@example.com")
        query = "SELECT public_id FROM sessions ORDER BY created_at DESC LIMIT 1"
        public_id = await fetch_val(app, query)
    elif which == "revoked already":
        await api_client(app)
        query = "UPDATE sessions SET revoked_at = now() WHERE user_agent = :ua RETURNING public_id"
        public_id = await fetch_val(app, query, {"ua": FIREFOX})
    else:
        public_id = "00000000-0000-4000-8000-000000000000"
    before = await snapshot(app)
    response = await post_form(signed_in, f"/account/sessions/{public_id}/revoke", {}, "/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(html) == ["That session had already ended."]
    assert 'class="flash flash-error" role="alert"' in html
    assert await snapshot(app) == before


async def test_signing_out_everywhere_else(signed_in: Client, app: Quart) -> None:
    others = [await api_client(app), await api_client(app, user_agent="curl/8.5.0")]
    response = await post_form(signed_in, "/account/sessions/revoke-others", {}, "/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(html) == ["2 other sessions were signed out."]
    assert len(session_items(html)) == 1
    assert [await me_status(other) for other in others] == [401, 401]
    assert await me_status(signed_in) == 200
