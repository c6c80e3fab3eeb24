"""The browser pages: login, register and logout forms with CSRF, and the protected pages."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, fetch_val

HTML = {"Accept": "text/html"}
MakeUser = Callable[..., Awaitable[User]]


async def csrf_from(client: Client, path: str = "/auth/login") -> str:
    page = await client.get(path, headers=HTML)
    match = re.search(r'name="csrf_token" value="([^"]+)"', await page.get_data(as_text=True))
    assert match is not None
    return match[1]


async def form_login(client: Client, token: str, **fields: str) -> object:
    form = {"email": "alice@example.com", "password": PASSWORD, "csrf_token": token, **fields}
    return await client.post("/auth/login", form=form, headers=HTML)


async def test_login_page_renders_a_labelled_form(client: Client) -> None:
    response = await client.get("/auth/login", headers=HTML)
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    assert '<label for="email">' in html
    assert '<label for="password">' in html
    assert 'name="remember"' in html
    assert response.headers["Cache-Control"] == "no-store"
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_form_login_signs_in_and_follows_next(client: Client, make_user: MakeUser) -> None:
    await make_user()
    token = await csrf_from(client, "/auth/login?next=/protected")
    response = await form_login(client, token, next="/protected")
    assert response.status_code == 302  # type: ignore[attr-defined]
    assert response.headers["Location"] == "/protected"  # type: ignore[attr-defined]
    page = await client.get("/protected", headers=HTML)
    assert page.status_code == 200
    assert "Logged in as: alice@example.com" in await page.get_data(as_text=True)


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
     "%2F%2Fevil.example", "/%5Cevil.example", "/ok\r\nSet-Cookie: x=y"],
)  # fmt: skip
async def test_form_login_never_redirects_off_site(
    client: Client, make_user: MakeUser, target: str
) -> None:
    await make_user()
    response = await form_login(client, await csrf_from(client), next=target)
    assert response.headers["Location"] == "/"  # type: ignore[attr-defined]


async def test_wrong_password_shows_one_generic_error_and_keeps_the_email(
    client: Client, make_user: MakeUser
) -> None:
    await make_user()
    response = await form_login(client, await csrf_from(client), password="wrong password!")
    assert response.status_code == 401  # type: ignore[attr-defined]
    html = await response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "Email or password is wrong." in html
    assert 'value="alice@example.com"' in html
    assert "wrong password!" not in html


@pytest.mark.parametrize("case", ["no token", "wrong token", "another visitor's token"])
async def test_forms_refuse_a_bad_csrf_token(
    client: Client, app: Quart, make_user: MakeUser, case: str
) -> None:
    await make_user()
    await csrf_from(client)  # this visitor has a token of their own
    token = {
        "no token": "",
        "wrong token": "x" * 43,
        "another visitor's token": await csrf_from(app.test_client()),
    }[case]
    response = await form_login(client, token)
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "This form has expired" in await response.get_data(as_text=True)  # type: ignore[attr-defined]
    assert await fetch_val(app, "SELECT count(*) FROM sessions") == 0


async def test_a_csrf_token_dies_with_logout(
    client: Client, app: Quart, make_user: MakeUser
) -> None:
    await make_user()
    await form_login(client, await csrf_from(client))
    token = await csrf_from(client, "/")
    response = await client.post("/auth/logout", form={"csrf_token": token}, headers=HTML)
    assert response.status_code == 302
    assert await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL") == 0
    replay = await form_login(client, token)
    assert replay.status_code == 400  # type: ignore[attr-defined]


async def test_register_form_creates_the_account_and_signs_in(client: Client) -> None:
    token = await csrf_from(client, "/auth/register")
    response = await client.post(
        "/auth/register",
        form={"email": "new@example.com", "display_name": "Newt", "password": PASSWORD,
              "password_confirm": PASSWORD, "csrf_token": token},
        headers=HTML,
    )  # fmt: skip
    assert response.status_code == 302
    dashboard = await client.get("/", headers=HTML)
    html = await dashboard.get_data(as_text=True)
    assert "Welcome, Newt" in html
    assert "Your account is ready" in html


@pytest.mark.parametrize(
    ("fields", "status", "field", "message"),
    [
        ({"email": "nope"}, 400, "email", "must have an @-sign"),
        ({"password": "short", "password_confirm": "short"}, 400, "password", "at least 12"),
        ({"password_confirm": "something else entirely"}, 400, "password_confirm", "do not match"),
        ({"email": "taken@example.com"}, 409, "email", "already exists"),
    ],
)
async def test_register_form_shows_errors_by_field(
    client: Client,
    make_user: MakeUser,
    fields: dict[str, str],
    status: int,
    field: str,
    message: str,
) -> None:
    await make_user("taken@example.com")
    form = {"email": "new@example.com", "display_name": "Newt", "password": PASSWORD,
            "password_confirm": PASSWORD, "csrf_token": await csrf_from(client, "/auth/register"),
            **fields}  # fmt: skip
    response = await client.post("/auth/register", form=form, headers=HTML)
    assert response.status_code == status
    html = await response.get_data(as_text=True)
    error = re.search(rf'<small id="{field}-error" class="field-error">([^<]*)</small>', html)
    assert error is not None
    assert message in error[1]
    assert re.search(rf'aria-describedby="[^"]*\b{field}-error"', html)
    assert 'aria-invalid="true"' in html
    assert PASSWORD not in html


async def test_signed_in_users_skip_the_login_page(client: Client, make_user: MakeUser) -> None:
    await make_user()
    await form_login(client, await csrf_from(client))
    response = await client.get("/auth/login", headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("path", ["/", "/protected", "/protected?tab=1"])
async def test_protected_pages_send_browsers_to_login(client: Client, path: str) -> None:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?" + (
        "next=/protected%3Ftab%3D1" if "?" in path else f"next={path}"
    )


async def test_protected_pages_give_api_clients_a_401(client: Client) -> None:
    response = await client.get("/protected", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "UNAUTHENTICATED"
