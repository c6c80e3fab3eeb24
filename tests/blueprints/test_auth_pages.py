"""The auth blueprint's pages: login, register and logout forms, their errors and redirects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, fetch_val
from tests.forms import (
    HTML,
    csrf_from,
    field_error,
    flashes,
    form_login,
    page_text,
    post_form,
    without_tokens,
)

MakeUser = Callable[..., Awaitable[User]]
REGISTRATION = {"email": "new@example.com", "display_name": "Newt", "password": PASSWORD,
                "password_confirm": PASSWORD}  # fmt: skip


async def test_login_page_renders_a_labelled_form(client: Client) -> None:
    response = await client.get("/auth/login", headers=HTML)
    assert response.status_code == 200
    html = await page_text(response)
    for field in ("email", "password", "remember"):
        assert f'<label for="{field}">' in html
        assert f'id="{field}" name="{field}"' in html
    assert 'autocomplete="current-password"' in html


async def test_form_login_signs_in_and_follows_next(client: Client, make_user: MakeUser) -> None:
    await make_user()
    token = await csrf_from(client, "/auth/login?next=/protected")
    response = await form_login(client, token, next="/protected")
    assert response.status_code == 302
    assert response.headers["Location"] == "/protected"
    page = await client.get("/protected", headers=HTML)
    assert page.status_code == 200
    assert "Logged in as: alice@example.com" in await page_text(page)


async def test_the_next_target_rides_along_in_the_form(client: Client) -> None:
    html = await page_text(await client.get("/auth/login?next=/account", headers=HTML))
    assert '<input type="hidden" name="next" value="/account">' in html


@pytest.mark.parametrize(
    ("remember", "persistent"), [({"remember": "on"}, True), ({}, False)]
)  # fmt: skip
async def test_remember_me_decides_whether_the_cookie_outlives_the_browser(
    client: Client, make_user: MakeUser, remember: dict[str, str], persistent: bool
) -> None:
    await make_user()
    response = await form_login(client, await csrf_from(client), **remember)
    cookie = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith("__Host-authapp_session=")
    )
    assert ("Expires=" in cookie) is persistent


async def test_wrong_password_shows_one_generic_error_and_keeps_the_email(
    client: Client, make_user: MakeUser
) -> None:
    await make_user()
    response = await form_login(client, await csrf_from(client), password="wrong password!")
    assert response.status_code == 401
    html = await page_text(response)
    assert '<p class="flash flash-error" role="alert">Email or password is wrong.</p>' in html
    assert 'value="alice@example.com"' in html
    assert "wrong password!" not in html


async def test_unknown_email_gets_the_very_same_page_as_a_wrong_password(
    client: Client, make_user: MakeUser
) -> None:
    await make_user()
    wrong = await form_login(client, await csrf_from(client), password="wrong password!")
    unknown = await form_login(client, await csrf_from(client), email="bob@example.com")
    assert unknown.status_code == wrong.status_code == 401
    assert without_tokens((await page_text(wrong)).replace("alice@example.com", "EMAIL")) == (
        without_tokens((await page_text(unknown)).replace("bob@example.com", "EMAIL"))
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"email": ""}, "email", "This field is required."),
        ({"password": ""}, "password", "This field is required."),
        ({"password": "x" * 1025}, "password", "at most 1024"),
    ],
)
async def test_login_form_names_the_field_in_error(
    client: Client, fields: dict[str, str], field: str, message: str
) -> None:
    response = await form_login(client, await csrf_from(client), **fields)
    assert response.status_code == 400
    error = field_error(await page_text(response), field)
    assert error is not None
    assert message in error


async def test_register_form_creates_the_account_and_signs_in(client: Client) -> None:
    response = await post_form(client, "/auth/register", REGISTRATION)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    dashboard = await page_text(await client.get("/", headers=HTML))
    assert "Welcome, Newt" in dashboard
    assert flashes(dashboard) == [
        "Your account is ready. We sent a link to new@example.com to verify it."
    ]
    again = await page_text(await client.get("/", headers=HTML))
    assert flashes(again) == []  # shown once


async def test_register_page_shows_the_password_rule_next_to_the_field(client: Client) -> None:
    html = await page_text(await client.get("/auth/register", headers=HTML))
    assert '<small id="password-hint" class="hint">At least 12 characters.' in html
    assert 'aria-describedby="password-hint' in html


@pytest.mark.parametrize(
    ("fields", "status", "field", "message"),
    [
        ({"email": "nope"}, 400, "email", "must have an @-sign"),
        ({"email": ""}, 400, "email", "at least 3 characters"),
        ({"display_name": "x" * 101}, 400, "display_name", "at most 100"),
        ({"display_name": "bad\u202ename"}, 400, "display_name", "control characters"),
        ({"password": "short", "password_confirm": "short"}, 400, "password", "at least 12"),
        ({"password": "new@example.com", "password_confirm": "new@example.com"}, 400, "password",
         "email"),
        ({"password_confirm": "something else entirely"}, 400, "password_confirm", "do not match"),
        ({"email": "Taken@Example.com"}, 409, "email", "already exists"),
    ],
)  # fmt: skip
async def test_register_form_shows_errors_by_field(
    client: Client,
    app: Quart,
    make_user: MakeUser,
    fields: dict[str, str],
    status: int,
    field: str,
    message: str,
) -> None:
    await make_user("taken@example.com")
    response = await post_form(client, "/auth/register", {**REGISTRATION, **fields})
    assert response.status_code == status
    html = await page_text(response)
    error = field_error(html, field)
    assert error is not None
    assert message in error
    assert 'aria-invalid="true"' in html
    assert PASSWORD not in html  # passwords are never filled back in
    assert await fetch_val(app, "SELECT count(*) FROM users") == 1


async def test_register_keeps_what_was_typed_after_an_error(client: Client) -> None:
    form = {**REGISTRATION, "password_confirm": "different password"}
    html = await page_text(await post_form(client, "/auth/register", form))
    assert 'id="email" name="email" type="email" value="new@example.com"' in html
    assert 'id="display_name" name="display_name" type="text" value="Newt"' in html


@pytest.mark.parametrize("path", ["/auth/login", "/auth/register"])
async def test_signed_in_users_are_sent_to_the_dashboard(
    client: Client, make_user: MakeUser, path: str
) -> None:
    await make_user()
    await form_login(client, await csrf_from(client))
    response = await client.get(path, headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


async def test_logout_signs_out_and_says_so(
    client: Client, app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    await form_login(client, await csrf_from(client))
    response = await post_form(client, "/auth/logout", {}, page="/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL") == 0
    login_page = await page_text(await client.get("/auth/login", headers=HTML))
    assert flashes(login_page) == ["You have been signed out."]
    assert (await client.get("/", headers=HTML)).status_code == 302


async def test_logout_only_takes_a_post(client: Client) -> None:
    response = await client.get("/auth/logout", headers=HTML)
    assert response.status_code == 405
    assert "Not allowed here" in await page_text(response)


@pytest.mark.settings(LOGIN_RATE_LIMIT_ACCOUNT="2/15 minutes")
async def test_a_throttled_form_login_says_how_long_to_wait(
    client: Client, make_user: MakeUser
) -> None:
    await make_user()
    for _ in range(2):
        await form_login(client, await csrf_from(client), password="wrong password!")
    response = await form_login(client, await csrf_from(client))
    assert response.status_code == 429
    wait = int(response.headers["Retry-After"])
    assert 60 < wait <= 900
    html = await page_text(response)
    assert "<h1>Slow down</h1>" in html
    assert f"Too many attempts. Try again in {-(-wait // 60)} minutes." in html
    assert '<a href="/auth/login">Back to the form</a>' in html
    assert '<header class="bar">' in html  # the site's own layout


OFF_SITE = ["//evil.example", "https://evil.example/", "/\\evil.example", "\\\\evil.example",
            "javascript:alert(1)", "%2F%2Fevil.example", "/%2F/evil.example", "/%5Cevil.example",
            "/%09/evil.example", "https:evil.example", "/ok\r\nSet-Cookie: x=y",
            "/ok%0d%0aLocation:%20https://evil.example"]  # fmt: skip


@pytest.mark.parametrize("target", OFF_SITE)
@pytest.mark.parametrize("way", ["login form", "register form", "login page when signed in"])
async def test_next_never_leads_off_site(
    client: Client, make_user: MakeUser, way: str, target: str
) -> None:
    await make_user()
    if way == "login form":
        response = await form_login(client, await csrf_from(client), next=target)
    elif way == "register form":
        response = await post_form(client, "/auth/register", {**REGISTRATION, "next": target})
    else:
        await form_login(client, await csrf_from(client))
        response = await client.get("/auth/login", query_string={"next": target}, headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/account", "/protected?tab=1"])
async def test_next_keeps_same_site_paths(client: Client, make_user: MakeUser, target: str) -> None:
    await make_user()
    response = await form_login(client, await csrf_from(client), next=target)
    assert response.headers["Location"] == target
