"""Common passwords and passwords like the email or the name are refused wherever a password
is set (registration, change, reset: JSON and pages), each under its field; never at sign-in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.infra import clock
from authapp.models.users import User, insert_user
from tests.conftest import PASSWORD, app_state, fetch_val
from tests.forms import HTML, csrf_from, field_error, form_login, page_text, post_form
from tests.mailbox import Mailbox

MakeUser = Callable[..., Awaitable[User]]
EMAIL = "ghopper@example.com"
NAME = "Grace Hopper"

# (kind, password, code, the field error's words)
REFUSED = [
    ("common", "Password1234", "PASSWORD_TOO_COMMON", "list of common passwords"),
    ("like the email", "GHopper-2024", "PASSWORD_TOO_SIMILAR", "like your email address"),
    ("like the name", "grace hopper 1906", "PASSWORD_TOO_SIMILAR", "like your name"),
]


async def _json_register(client: Client, app: Quart, mailbox: Mailbox, password: str) -> Any:
    body = {"email": EMAIL, "display_name": NAME, "password": password}
    return await client.post("/api/auth/register", json=body)


async def _page_register(client: Client, app: Quart, mailbox: Mailbox, password: str) -> Any:
    form = {"email": EMAIL, "display_name": NAME, "password": password,
            "password_confirm": password}  # fmt: skip
    return await post_form(client, "/auth/register", form)


async def _json_change(client: Client, app: Quart, mailbox: Mailbox, password: str) -> Any:
    signed_in = await client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert signed_in.status_code == 200
    body = {"current_password": PASSWORD, "new_password": password}
    return await client.post("/api/me/password", json=body)


async def _page_change(client: Client, app: Quart, mailbox: Mailbox, password: str) -> Any:
    assert (await form_login(client, await csrf_from(client), email=EMAIL)).status_code == 302
    form = {"current_password": PASSWORD, "new_password": password,
            "new_password_confirm": password}  # fmt: skip
    return await post_form(client, "/account/password", form, "/account")


async def _reset_link(client: Client, mailbox: Mailbox) -> str:
    await client.post("/api/auth/forgot-password", json={"email": EMAIL})
    (message,) = await mailbox.wait_for(1, to=EMAIL)
    return urlsplit(mailbox.link(message, "/auth/reset-password/")).path


async def _json_reset(client: Client, app: Quart, mailbox: Mailbox, password: str) -> Any:
    token = (await _reset_link(client, mailbox)).rsplit("/", 1)[1]
    return await client.post(
        "/api/auth/reset-password", json={"token": token, "password": password}
    )


async def _page_reset(client: Client, app: Quart, mailbox: Mailbox, password: str) -> Any:
    path = await _reset_link(client, mailbox)
    return await post_form(client, path, {"password": password, "password_confirm": password})


# (where, how, the field named, whether the user exists first)
SETTERS = [
    ("POST /api/auth/register", _json_register, "password", False),
    ("POST /auth/register", _page_register, "password", False),
    ("POST /api/me/password", _json_change, "new_password", True),
    ("POST /account/password", _page_change, "new_password", True),
    ("POST /api/auth/reset-password", _json_reset, "password", True),
    ("POST /auth/reset-password/<token>", _page_reset, "password", True),
]


@pytest.mark.parametrize(
    ("kind", "password", "code", "words"), REFUSED, ids=[r[0] for r in REFUSED]
)
@pytest.mark.parametrize(
    ("where", "set_password", "field", "existing"), SETTERS, ids=[row[0] for row in SETTERS]
)
async def test_every_way_of_setting_a_password_refuses_it_by_field(
    client: Client,
    app: Quart,
    mailbox: Mailbox,
    make_user: MakeUser,
    kind: str,
    password: str,
    code: str,
    words: str,
    where: str,
    set_password: Callable[..., Awaitable[Any]],
    field: str,
    existing: bool,
) -> None:
    if existing:
        await make_user(EMAIL, display_name=NAME)
    before = await fetch_val(app, "SELECT string_agg(password_hash, ',') FROM users")

    response = await set_password(client, app, mailbox, password)

    assert response.status_code == 400
    if where.startswith("POST /api/"):
        body = await response.get_json()
        assert body["code"] == code
        assert [(d["field"], d["type"]) for d in body["details"]] == [
            (field, code.lower()),
        ]
        assert words in body["details"][0]["message"]
    else:
        html = await page_text(response)
        assert words in (field_error(html, field) or ""), html
        assert password not in html  # never filled back in
    assert await fetch_val(app, "SELECT string_agg(password_hash, ',') FROM users") == before


async def test_a_refused_reset_keeps_the_link_for_a_better_password(
    client: Client, mailbox: Mailbox, make_user: MakeUser
) -> None:
    await make_user(EMAIL, display_name=NAME)
    token = (await _reset_link(client, mailbox)).rsplit("/", 1)[1]
    common = await client.post(
        "/api/auth/reset-password", json={"token": token, "password": "iloveyou2010"}
    )
    assert (await common.get_json())["code"] == "PASSWORD_TOO_COMMON"
    body = {"token": token, "password": "a brand new passphrase 2026"}
    assert (await client.post("/api/auth/reset-password", json=body)).status_code == 204


async def test_the_default_display_name_counts_too(client: Client) -> None:
    """Without a display name the local part is the name: still refused, as the email."""
    body = {"email": "margaret.hamilton@example.com", "password": "Hamilton.Margaret!"}
    response = await client.post("/api/auth/register", json=body)
    assert (await response.get_json())["code"] == "PASSWORD_TOO_SIMILAR"


@pytest.fixture
async def old_common_password(app: Quart) -> str:
    """A user whose password was accepted before it was screened (a common one today)."""
    password = "qwertyuiop123"
    state = app_state(app)
    async with state.db.connection() as connection:
        await insert_user(
            connection, email=EMAIL, email_key=EMAIL.lower(),
            password_hash=await state.hashing.hash(password),
            display_name="ghopper", now=clock.utcnow(),
        )  # fmt: skip
    return password


async def test_signing_in_never_screens_the_password(
    client: Client, app: Quart, old_common_password: str
) -> None:
    login = {"email": EMAIL, "password": old_common_password}
    assert (await client.post("/api/auth/login", json=login)).status_code == 200
    reauth = await client.post("/api/auth/reauth", json={"password": old_common_password})
    assert reauth.status_code == 204
    page = app.test_client()
    token = await csrf_from(page)
    signed_in = await form_login(page, token, email=EMAIL, password=old_common_password)
    assert signed_in.status_code == 302
    assert (await page.get("/account", headers=HTML)).status_code == 200
