"""CSRF on every form: a table of bad tokens, each refused with nothing changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, SECRET_KEY, fetch_val
from tests.forms import HTML, api_client, csrf_from, form_login, page_text, snapshot

MakeUser = Callable[..., Awaitable[User]]
NEW_PASSWORD = "another long passphrase"

# form: (page that shows it, where it posts, its fields, needs a signed-in visitor);
# {session} and {token} in an address are another live session and a token of the user.
FORMS: dict[str, tuple[str, str, dict[str, str], bool]] = {
    "login": ("/auth/login", "/auth/login",
              {"email": "alice@example.com", "password": PASSWORD}, False),
    "register": ("/auth/register", "/auth/register",
                 {"email": "new@example.com", "password": PASSWORD, "password_confirm": PASSWORD},
                 False),
    "logout": ("/", "/auth/logout", {}, True),
    "profile": ("/account", "/account/profile", {"display_name": "Mallory"}, True),
    "password": ("/account", "/account/password",
                 {"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                  "new_password_confirm": NEW_PASSWORD}, True),
    "forgot password": ("/auth/forgot-password", "/auth/forgot-password",
                        {"email": "alice@example.com"}, False),
    "new verification link": ("/account", "/account/verify-email", {}, True),
    "change of address": ("/account", "/account/email",
                          {"new_email": "new@example.com", "email_password": PASSWORD}, True),
    "deletion": ("/account", "/account/delete", {"delete_password": PASSWORD}, True),
    "confirm password": ("/auth/reauth", "/auth/reauth", {"password": PASSWORD}, True),
    "revoke a session": ("/account", "/account/sessions/{session}/revoke", {}, True),
    "sign out everywhere else": ("/account", "/account/sessions/revoke-others", {}, True),
    "create a token": ("/account/tokens", "/account/tokens",
                       {"name": "backup", "scopes": "profile:read", "expires_in_days": "30"}, True),
    "revoke a token": ("/account/tokens", "/account/tokens/{token}/revoke", {}, True),
    "set up two-factor sign-in": ("/account/security", "/account/security/setup", {}, True),
}  # fmt: skip


async def address(app: Quart, action: str, signed_in: bool) -> str:
    """Where the form posts, with something of the user's to act on: another device signed
    in through the API, with a token it made."""
    if not signed_in:
        return action
    other = await api_client(app)
    made = await other.post("/api/tokens", json={"name": "other", "scopes": ["profile:read"]})
    query = "SELECT public_id FROM sessions ORDER BY created_at DESC LIMIT 1"
    session = await fetch_val(app, query)
    return action.format(session=session, token=(await made.get_json())["id"])


async def visitor(app: Quart, signed_in: bool) -> Client:
    client = app.test_client()
    if signed_in:
        response = await form_login(client, await csrf_from(client))
        assert response.status_code == 302
    return client


async def sign_out(client: Client) -> None:
    token = await csrf_from(client, "/")
    response = await client.post("/auth/logout", form={"csrf_token": token}, headers=HTML)
    assert response.status_code == 302


async def bad_token(case: str, app: Quart, client: Client, page: str, signed_in: bool) -> str:
    """A token of the kind `case` names, for `client` about to post the form on `page`."""
    good = await csrf_from(client, page)
    if case == "no token":
        return ""
    if case == "garbage":
        return "x" * 43
    if case == "another visitor's token":
        return await csrf_from(await visitor(app, signed_in), page)
    if case == "tampered signature":
        return good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    if case == "signed with another key":
        _, secret = URLSafeTimedSerializer("any").loads_unsafe(good)
        return str(URLSafeTimedSerializer("k" * 48, salt="authapp.csrf").dumps(secret))
    if case == "reused after logout":
        if not signed_in:  # a token from while signed in, used on the sign-in forms after
            assert (await form_login(client, good)).status_code == 302
            good = await csrf_from(client, "/")
        await sign_out(client)
        if signed_in:  # ... or on the same forms, after signing in again
            assert (await form_login(client, await csrf_from(client))).status_code == 302
        return good
    raise AssertionError(case)


CASES = ["no token", "garbage", "another visitor's token", "tampered signature",
         "signed with another key", "reused after logout"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("form", FORMS)
async def test_a_bad_token_is_refused_and_nothing_changes(
    app: Quart, make_user: MakeUser, form: str, case: str
) -> None:
    await make_user()
    page, action, fields, signed_in = FORMS[form]
    client = await visitor(app, signed_in)
    token = await bad_token(case, app, client, page, signed_in)
    action = await address(app, action, signed_in)
    before = await snapshot(app)
    response = await client.post(action, form={**fields, "csrf_token": token}, headers=HTML)
    assert response.status_code == 400
    html = await page_text(response)
    assert "<code>CSRF_FAILED</code>" in html
    assert "Reload the page and try again." in html
    assert await snapshot(app) == before


@pytest.mark.parametrize("form", FORMS)
async def test_the_right_token_lets_each_form_through(
    app: Quart, make_user: MakeUser, form: str
) -> None:
    """The control for the table above: the same posts with a good token change something."""
    await make_user()
    page, action, fields, signed_in = FORMS[form]
    client = await visitor(app, signed_in)
    action = await address(app, action, signed_in)
    before = await snapshot(app)
    token = await csrf_from(client, page)
    response = await client.post(action, form={**fields, "csrf_token": token}, headers=HTML)
    assert response.status_code in {200, 302}  # a redirect, or a page that says what comes next
    assert await snapshot(app) != before


async def token_shown_ago(client: Client, seconds: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """A form token as if the page had been rendered `seconds` ago (a controlled clock)."""
    now = TimestampSigner.get_timestamp(TimestampSigner("x"))
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: now - seconds)
        return await csrf_from(client)


async def test_a_token_expires_after_the_time_limit(
    app: Quart, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_user()
    client = app.test_client()
    old = await token_shown_ago(client, 3601, monkeypatch)  # the default limit is an hour
    recent = await token_shown_ago(client, 3599, monkeypatch)
    expired = await form_login(client, old)
    assert expired.status_code == 400
    assert "This form has expired." in await page_text(expired)
    assert await fetch_val(app, "SELECT count(*) FROM sessions") == 0
    assert (await form_login(client, recent)).status_code == 302


@pytest.mark.settings(CSRF_TIME_LIMIT="60")
async def test_the_time_limit_is_a_setting(
    app: Quart, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_user()
    client = app.test_client()
    token = await token_shown_ago(client, 61, monkeypatch)
    assert (await form_login(client, token)).status_code == 400


async def test_tokens_survive_a_secret_key_rotation(
    database_url: str, tmp_path: Any, make_user: MakeUser
) -> None:
    from authapp import create_app
    from tests.conftest import settings_for

    await make_user()
    old_app = create_app(settings_for(database_url, tmp_path))
    client = old_app.test_client()
    async with old_app.test_app():
        token = await csrf_from(client)
    rotated = create_app(
        settings_for(database_url, tmp_path, SECRET_KEY="n" * 48, SECRET_KEY_FALLBACKS=SECRET_KEY)
    )
    async with rotated.test_app():
        new_client = rotated.test_client()
        new_client.cookie_jar = client.cookie_jar  # the same browser
        assert (await form_login(new_client, token)).status_code == 302
