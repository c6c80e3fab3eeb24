"""The pages of the account's life by email: forgotten password, reset, verification,
change of address and deletion, as a browser posts them (CSRF tokens, field errors, flashes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, execute, fetch_val
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
from tests.mailbox import Mailbox, drain

MakeUser = Callable[..., Awaitable[User]]
EMAIL = "alice@example.com"
NEW_PASSWORD = "a brand new passphrase 2026"


@pytest.fixture
async def signed_in(client: Client, make_user: MakeUser) -> Client:
    await make_user(display_name="Alice")
    assert (await form_login(client, await csrf_from(client))).status_code == 302
    return client


async def mailed_path(mailbox: Mailbox, to: str, prefix: str, count: int = 1) -> str:
    message = (await mailbox.wait_for(count, to=to))[count - 1]
    return urlsplit(mailbox.link(message, prefix)).path


async def test_the_login_page_offers_a_way_back_in(client: Client) -> None:
    html = await page_text(await client.get("/auth/login", headers=HTML))
    assert '<a href="/auth/forgot-password">Forgot your password?</a>' in html


async def test_forgot_password_shows_the_same_page_for_any_address(
    client: Client, app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    pages = [
        await post_form(client, "/auth/forgot-password", {"email": email})
        for email in (EMAIL, "nobody@example.com")
    ]
    assert [page.status_code for page in pages] == [200, 200]
    texts = [await page_text(page) for page in pages]
    assert "If an account uses this address, we have sent it a link." in texts[0]
    assert without_tokens(texts[0]) == without_tokens(texts[1])
    await drain(app)
    assert [received.recipients for received in mailbox.received] == [[EMAIL]]


async def test_resetting_from_the_link_signs_every_device_out(
    signed_in: Client, app: Quart, mailbox: Mailbox
) -> None:
    stranger = app.test_client()
    await post_form(stranger, "/auth/forgot-password", {"email": EMAIL})
    path = await mailed_path(mailbox, EMAIL, "/auth/reset-password/")
    form = await stranger.get(path, headers=HTML)
    assert form.status_code == 200
    assert '<label for="password">New password</label>' in await page_text(form)
    mismatch = await post_form(
        stranger, path, {"password": NEW_PASSWORD, "password_confirm": "something else"}
    )
    assert mismatch.status_code == 400
    assert (
        field_error(await page_text(mismatch), "password_confirm") == "The passwords do not match."
    )
    weak = await post_form(stranger, path, {"password": "short", "password_confirm": "short"})
    assert "at least 12" in (field_error(await page_text(weak), "password") or "")
    done = await post_form(
        stranger, path, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    )
    assert done.status_code == 302
    assert done.headers["Location"] == "/auth/login"
    assert (await signed_in.get("/account", headers=HTML)).status_code == 302  # signed out
    login = await page_text(await stranger.get("/auth/login", headers=HTML))
    assert flashes(login) == [
        "Your password is changed and every session signed out. Sign in with it."
    ]
    assert (
        await form_login(stranger, await csrf_from(stranger), password=NEW_PASSWORD)
    ).status_code == 302


@pytest.mark.parametrize(
    ("path", "code"),
    [("/auth/reset-password/" + "x" * 43, "TOKEN_INVALID"),
     ("/auth/reset-password/short", "TOKEN_INVALID"),
     ("/auth/confirm-email/" + "x" * 43, "TOKEN_INVALID"),
     ("/auth/verify-email/" + "x" * 43, "TOKEN_INVALID")],
)  # fmt: skip
async def test_a_dead_link_says_so_on_a_page(client: Client, path: str, code: str) -> None:
    response = await client.get(path, headers=HTML)
    assert response.status_code == 400
    html = await page_text(response)
    assert f"<code>{code}</code>" in html
    assert "This link is not valid." in html


async def test_an_expired_reset_link_says_so(
    client: Client, app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    await post_form(client, "/auth/forgot-password", {"email": EMAIL})
    path = await mailed_path(mailbox, EMAIL, "/auth/reset-password/")
    await execute(
        app,
        "UPDATE email_tokens SET created_at = created_at - interval '2 hours',"
        " expires_at = created_at - interval '1 hour'",
    )
    response = await client.get(path, headers=HTML)
    assert response.status_code == 400
    assert "This link has expired. Ask for a new one." in await page_text(response)


async def test_changing_the_address_from_the_account_page(
    signed_in: Client, app: Quart, mailbox: Mailbox
) -> None:
    form = {"new_email": "new@example.com", "email_password": PASSWORD}
    response = await post_form(signed_in, "/account/email", form, "/account")
    assert response.status_code == 302
    account = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(account) == [
        "We sent a link to new@example.com. Your address changes when you follow it."
    ]
    path = await mailed_path(mailbox, "new@example.com", "/auth/confirm-email/")
    page = await signed_in.get(path, headers=HTML)
    assert '<button type="submit">Use new@example.com</button>' in await page_text(page)
    assert await fetch_val(app, "SELECT email FROM users") == EMAIL  # a GET changes nothing
    confirmed = await post_form(signed_in, path, {})
    assert confirmed.status_code == 302
    assert await fetch_val(app, "SELECT email FROM users") == "new@example.com"
    account = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(account) == ["Your email address is now new@example.com."]
    assert '<span class="badge">verified</span>' in account


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [({"new_email": "new@example.com", "email_password": "wrong one"}, "email_password",
      "not your current password"),
     ({"new_email": "nope", "email_password": PASSWORD}, "new_email", "@-sign"),
     ({"new_email": EMAIL, "email_password": PASSWORD}, "new_email", "already your address")],
)  # fmt: skip
async def test_a_refused_change_of_address_names_the_field(
    signed_in: Client, app: Quart, mailbox: Mailbox, form: dict[str, str], field: str,
    message: str,
) -> None:  # fmt: skip
    response = await post_form(signed_in, "/account/email", form, "/account")
    assert response.status_code == 400
    assert message in (field_error(await page_text(response), field) or "")
    await drain(app)
    assert mailbox.received == []


async def test_a_new_verification_link_from_the_account_page(
    signed_in: Client, mailbox: Mailbox
) -> None:
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert '<span class="badge badge-warn">not verified</span>' in html
    response = await post_form(signed_in, "/account/verify-email", {}, "/account")
    assert response.status_code == 302
    await mailbox.wait_for(to=EMAIL)
    html = await page_text(await signed_in.get("/account", headers=HTML))
    assert flashes(html) == [f"We sent a new link to {EMAIL}."]


async def test_deleting_the_account_from_its_page(signed_in: Client, app: Quart) -> None:
    wrong = await post_form(signed_in, "/account/delete", {"delete_password": "nope"}, "/account")
    assert wrong.status_code == 400
    assert field_error(await page_text(wrong), "delete_password") is not None
    assert await fetch_val(app, "SELECT count(*) FROM users") == 1
    gone = await post_form(signed_in, "/account/delete", {"delete_password": PASSWORD}, "/account")
    assert gone.status_code == 302
    assert gone.headers["Location"] == "/auth/login"
    assert await fetch_val(app, "SELECT count(*) FROM users") == 0
    assert await fetch_val(app, "SELECT count(*) FROM sessions") == 0
    login = await page_text(await signed_in.get("/auth/login", headers=HTML))
    assert flashes(login) == ["Your account and everything of it are deleted. Goodbye!"]


@pytest.mark.settings(REQUIRE_VERIFIED_EMAIL="true")
async def test_with_verification_required_the_register_page_reveals_nothing(
    client: Client, app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    form = {"display_name": "X", "password": PASSWORD, "password_confirm": PASSWORD}
    pages = [
        await post_form(app.test_client(), "/auth/register", {**form, "email": email})
        for email in (EMAIL, "new@example.com")
    ]
    texts = [await page_text(page) for page in pages]
    assert [page.status_code for page in pages] == [200, 200]
    assert "<h1>Check your inbox</h1>" in texts[0]
    assert without_tokens(texts[0]) == without_tokens(texts[1])
    await mailbox.wait_for(2)
    assert sorted(str(m["Subject"]) for m in mailbox.messages) == [
        "Someone tried to sign up with your address",
        "Verify your email address",
    ]


@pytest.mark.settings(REQUIRE_VERIFIED_EMAIL="true")
async def test_an_unverified_login_is_told_how_to_verify(
    client: Client, make_user: MakeUser
) -> None:
    await make_user()
    response = await form_login(client, await csrf_from(client))
    assert response.status_code == 403
    html = await page_text(response)
    assert "Verify your email address first" in html
    assert '<a href="/auth/verify-email/resend">' in html
