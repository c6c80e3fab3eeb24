"""Passkeys on the pages without a browser: the security page's list, renaming and removing by
plain forms (CSRF, fresh session), the login page's and the second step's passkey controls (hidden
until static/passkeys.js shows them), and their markup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.authenticators import SoftAuthenticator
from tests.conftest import PASSWORD, Clock, fetch_val
from tests.forms import HTML, csrf_from, flashes, page_text, post_form
from tests.test_mfa import enrol, mid_step
from tests.test_mfa_pages import signed_in_page
from tests.test_page_markup import check_markup
from tests.test_passkeys import add

MakeUser = Callable[..., Awaitable[User]]
SECURITY = "/account/security"
EMAIL = "alice@example.com"


@pytest.fixture
async def page_client(client: Client, make_user: MakeUser) -> Client:
    await make_user(display_name="Alice")
    return await signed_in_page(client)


async def passkey_id(app: Quart, name: str) -> str:
    return str(
        await fetch_val(app, "SELECT id FROM webauthn_credentials WHERE name = :n", {"n": name})
    )


async def security_page(client: Client) -> str:
    response = await client.get(SECURITY, headers=HTML)
    assert response.status_code == 200
    html = await page_text(response)
    check_markup(html)
    return html


async def test_the_security_page_lists_renames_and_removes_passkeys(
    app: Quart, page_client: Client
) -> None:
    html = await security_page(page_client)
    assert '<p id="passkeys-none">You have no passkey yet.</p>' in html
    assert "<form data-passkey-add hidden novalidate>" in html
    assert 'src="/static/passkeys.js"' in html
    assert (await add(page_client, SoftAuthenticator(), name="Laptop")).status_code == 201
    assert (await add(page_client, SoftAuthenticator(), name="Phone")).status_code == 201
    html = await security_page(page_client)
    assert "<strong>Laptop</strong>" in html
    assert "not used yet" in html
    laptop = await passkey_id(app, "Laptop")
    assert f'action="/account/security/passkeys/{laptop}/remove"' in html

    taken = await post_form(page_client, f"{SECURITY}/passkeys/{laptop}/rename", {"name": "Phone"})
    assert taken.status_code == 302
    assert flashes(await security_page(page_client)) == ["You have a passkey of this name."]
    empty = await post_form(page_client, f"{SECURITY}/passkeys/{laptop}/rename", {"name": "  "})
    assert empty.status_code == 302
    assert flashes(await security_page(page_client)) == ["Give the passkey a name."]
    renamed = await post_form(page_client, f"{SECURITY}/passkeys/{laptop}/rename", {"name": "Desk"})
    assert renamed.headers["Location"] == SECURITY
    assert flashes(await security_page(page_client)) == ["The passkey is now called Desk."]

    removed = await post_form(page_client, f"{SECURITY}/passkeys/{laptop}/remove", {})
    assert removed.status_code == 302
    (message,) = flashes(await security_page(page_client))
    assert "last second factor" not in message
    phone = await passkey_id(app, "Phone")
    await post_form(page_client, f"{SECURITY}/passkeys/{phone}/remove", {})
    (message,) = flashes(await security_page(page_client))
    assert "It was your last second factor" in message
    gone = await post_form(page_client, f"{SECURITY}/passkeys/{phone}/remove", {}, SECURITY)
    assert gone.status_code == 302
    assert flashes(await security_page(page_client)) == ["You have no passkey with this id."]


async def test_a_stale_session_changes_no_passkey_by_form(
    app: Quart, page_client: Client, clock: Clock
) -> None:
    assert (await add(page_client, SoftAuthenticator(), name="Laptop")).status_code == 201
    laptop = await passkey_id(app, "Laptop")
    token = await csrf_from(page_client, SECURITY)
    clock.advance(minutes=16)
    html = await security_page(page_client)
    assert "data-passkey-add" not in html
    assert f"/passkeys/{laptop}/remove" not in html
    response = await page_client.post(
        f"{SECURITY}/passkeys/{laptop}/remove", form={"csrf_token": token}, headers=HTML
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/reauth")
    assert await fetch_val(app, "SELECT count(*) FROM webauthn_credentials") == 1


async def test_the_login_page_offers_a_passkey_once_the_script_runs(client: Client) -> None:
    html = await page_text(await client.get("/auth/login", headers=HTML))
    check_markup(html)
    assert 'autocomplete="username webauthn"' in html
    assert 'data-passkey-sign-in data-endpoint="/api/auth/passkey"' in html
    assert "data-autofill hidden>" in html
    assert 'src="/static/passkeys.js"' in html
    script = await client.get("/static/passkeys.js")
    assert script.status_code == 200
    assert "navigator.credentials.create" in await page_text(script)


async def test_the_second_step_offers_the_accounts_passkey(
    app: Quart, page_client: Client, clock: Clock
) -> None:
    assert (await add(page_client, SoftAuthenticator())).status_code == 201
    client = app.test_client()
    token = await csrf_from(client)
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    assert (await client.post("/auth/login", form=form, headers=HTML)).status_code == 302
    html = await page_text(await client.get("/auth/mfa", headers=HTML))
    check_markup(html)
    assert 'data-endpoint="/api/auth/mfa"' in html
    assert "Use a passkey of your account to finish signing in." in html
    assert 'name="code"' not in html  # a passkey is its only second factor

    # With an authenticator app too, both.
    mid_step(clock)
    await page_client.post("/api/auth/reauth", json={"password": PASSWORD})
    await enrol(page_client, clock)
    client = app.test_client()
    token = await csrf_from(client)
    form = {"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    await client.post("/auth/login", form=form, headers=HTML)
    html = await page_text(await client.get("/auth/mfa", headers=HTML))
    assert 'name="code"' in html
    assert 'data-endpoint="/api/auth/mfa"' in html
