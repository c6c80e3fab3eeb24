"""The API tokens page: create a token (shown once), list, use and revoke them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import Clock, execute, fetch_val
from tests.forms import HTML, field_error, flashes, page_text, post_form, sign_in_from

MakeUser = Callable[..., Awaitable[User]]
PAGE = "/account/tokens"
NEW_TOKEN = re.compile(r'<input id="new-token" type="text" class="secret" value="([^"]+)" readonly')


@pytest.fixture
async def signed_in(app: Quart, make_user: MakeUser) -> Client:
    await make_user()
    return await sign_in_from(app)


async def create(client: Client, **fields: Any) -> Any:
    form = {"name": "backup script", "scopes": ["profile:read"], "expires_in_days": "30", **fields}
    return await post_form(client, PAGE, form)


async def created_token(client: Client, **fields: Any) -> str:
    response = await create(client, **fields)
    assert response.status_code == 200
    match = NEW_TOKEN.search(await page_text(response))
    assert match is not None
    return match[1]


async def me_with(client: Client, token: str) -> Any:
    return await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


async def token_id(app: Quart, name: str = "backup script") -> Any:
    return await fetch_val(app, "SELECT id FROM api_tokens WHERE name = :name", {"name": name})


async def test_the_account_page_leads_to_the_tokens_page(signed_in: Client) -> None:
    account = await page_text(await signed_in.get("/account", headers=HTML))
    assert '<a href="/account/tokens">Manage your API tokens</a>' in account
    response = await signed_in.get(PAGE, headers=HTML)
    assert response.status_code == 200
    html = await page_text(response)
    assert "<h1>API tokens</h1>" in html
    assert "You have no API tokens." in html
    assert '<option value="30" selected>30 days</option>' in html
    for scope in ("profile:read", "profile:write", "sessions:read", "sessions:write"):
        assert f'name="scopes" type="checkbox" value="{scope}">' in html


async def test_a_new_token_is_shown_once_and_never_kept_in_a_cookie(
    signed_in: Client, app: Quart
) -> None:
    response = await create(signed_in, scopes=["profile:read", "sessions:read"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = await page_text(response)
    match = NEW_TOKEN.search(html)
    assert match is not None
    token = match[1]
    assert token.startswith("authapp_pat_")
    assert "it will not be shown again" in html
    assert flashes(html) == []
    assert html.count(token) == 1
    assert not any(token in header for header in response.headers.getlist("Set-Cookie"))
    assert 'id="name" name="name" type="text" value=""' in html  # the form starts over
    # The list shows it (never the token), and a reload no longer shows the token.
    reload = await page_text(await signed_in.get(PAGE, headers=HTML))
    assert token not in reload
    assert NEW_TOKEN.search(reload) is None
    assert "<strong" in reload
    assert ">backup script</strong>" in reload
    assert "Scopes: <code>profile:read</code>, <code>sessions:read</code>." in reload
    assert "Last used never." in reload
    assert flashes(reload) == []
    assert token not in await page_text(await signed_in.get("/account", headers=HTML))
    stored = await fetch_val(app, "SELECT token_hash FROM api_tokens")
    assert token.encode() not in bytes(stored)


async def test_a_token_reads_the_profile_only_with_that_scope(
    signed_in: Client, app: Quart
) -> None:
    reader = await created_token(signed_in)
    other = await created_token(signed_in, name="sessions only", scopes=["sessions:read"])
    api = app.test_client()  # a program with no cookie
    response = await me_with(api, reader)
    assert response.status_code == 200
    assert (await response.get_json())["email"] == "alice@example.com"
    refused = await me_with(api, other)
    assert refused.status_code == 403
    assert (await refused.get_json())["code"] == "INSUFFICIENT_SCOPE"
    html = await page_text(await signed_in.get(PAGE, headers=HTML))
    (reader_item,) = [item for item in html.split("<li>") if ">backup script</strong>" in item]
    assert re.search(r"Last used <time datetime=\"[^\"]+\">[^<]+ UTC</time>\.", reader_item)


async def test_revoking_a_token_stops_it_at_once(signed_in: Client, app: Quart) -> None:
    token = await created_token(signed_in)
    api = app.test_client()
    assert (await me_with(api, token)).status_code == 200
    response = await post_form(signed_in, f"{PAGE}/{await token_id(app)}/revoke", {}, PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == PAGE
    html = await page_text(await signed_in.get(PAGE, headers=HTML))
    assert flashes(html) == ["The token is revoked: it no longer works."]
    assert "You have no API tokens." in html
    assert (await me_with(api, token)).status_code == 401


async def test_revoking_a_token_that_is_not_there_says_so(signed_in: Client) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    response = await post_form(signed_in, f"{PAGE}/{unknown}/revoke", {}, PAGE)
    assert response.status_code == 302
    assert response.headers["Location"] == PAGE
    html = await page_text(await signed_in.get(PAGE, headers=HTML))
    assert flashes(html) == ["That token had already been revoked or had expired."]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"scopes": []}, "scopes", "Choose at least one scope."),
        ({"scopes": ["admin"]}, "scopes", "Input should be"),
        ({"name": ""}, "name", "This field is required."),
        ({"name": "   "}, "name", "This field is required."),
        ({"name": "x" * 101}, "name", "at most 100"),
        ({"name": "a\x01b"}, "name", "control characters"),
        ({"expires_in_days": "1000"}, "expires_in_days", "between 1 and 365 days"),
        ({"expires_in_days": "soon"}, "expires_in_days", "valid integer"),
    ],
)  # fmt: skip
async def test_a_refused_token_says_why_at_the_field(
    signed_in: Client, app: Quart, fields: dict[str, Any], field: str, message: str
) -> None:
    response = await create(signed_in, **fields)
    assert response.status_code == 400
    html = await page_text(response)
    error = field_error(html, field)
    assert error is not None
    assert message in error
    assert NEW_TOKEN.search(html) is None
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 0


async def test_the_form_keeps_its_choices_after_an_error(signed_in: Client) -> None:
    response = await create(signed_in, name="", scopes=["sessions:write"], expires_in_days="90")
    html = await page_text(response)
    assert 'type="checkbox" value="sessions:write" checked>' in html
    assert 'type="checkbox" value="profile:read">' in html
    assert '<option value="90" selected>90 days</option>' in html


async def test_a_taken_name_is_shown_at_the_field(signed_in: Client, app: Quart) -> None:
    await created_token(signed_in)
    response = await create(signed_in)
    assert response.status_code == 409
    html = await page_text(response)
    assert field_error(html, "name") == "You already have a token with this name."
    assert 'id="name" name="name" type="text" value="backup script"' in html
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 1


async def test_too_many_tokens_are_refused_with_a_message(signed_in: Client, app: Quart) -> None:
    user_id = await fetch_val(app, "SELECT id FROM users")
    await execute(
        app,
        """INSERT INTO api_tokens (token_hash, user_id, name, scopes, created_at, expires_at)
           SELECT sha256(n::text::bytea), :user_id, 'token ' || n, :scopes, now(),
                  now() + interval '1 day'
             FROM generate_series(1, 50) AS n""",
        {"user_id": user_id, "scopes": ["profile:read"]},
    )
    response = await create(signed_in)
    assert response.status_code == 409
    html = await page_text(response)
    assert '<p class="flash flash-error" role="alert">You have 50 tokens;' in html
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 50


async def test_a_stale_session_sees_the_list_but_confirms_before_creating(
    signed_in: Client, app: Quart, clock: Clock
) -> None:
    await created_token(signed_in)
    clock.advance(minutes=16)
    html = await page_text(await signed_in.get(PAGE, headers=HTML))
    assert ">backup script</strong>" in html
    assert f'action="{PAGE}/{await token_id(app)}/revoke"' in html  # revoking needs no password
    assert f'action="{PAGE}" novalidate' not in html
    assert '<a class="button" href="/auth/reauth?next=/account/tokens">' in html
    response = await post_form(signed_in, f"{PAGE}/{await token_id(app)}/revoke", {}, PAGE)
    assert response.headers["Location"] == PAGE
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 0
