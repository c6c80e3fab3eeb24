"""When credentials or the address change, what the old ones granted ends: mailed links bound
to the address they went to, and an intruder evicted completely by a reset or a change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.models.users import User
from tests.conftest import PASSWORD, Clock, fetch_val
from tests.forms import api_client, post_form
from tests.mailbox import Mailbox, drain
from tests.test_lifecycle import EMAIL, mailed_token

MakeUser = Callable[..., Awaitable[User]]
NEW_PASSWORD = "the owner's brand new passphrase"
INTRUDER = "mallory@evil.example"


async def reset_link(client: Client, mailbox: Mailbox, to: str, count: int) -> str:
    asked = await client.post("/api/auth/forgot-password", json={"email": to})
    assert asked.status_code == 202
    return await mailed_token(mailbox, to, "/auth/reset-password/", count=count)


async def move_address(client: Client, mailbox: Mailbox, new: str) -> None:
    body = {"new_email": new, "password": PASSWORD}
    assert (await client.post("/api/me/email", json=body)).status_code == 202
    token = await mailed_token(mailbox, new, "/auth/confirm-email/")
    assert (await client.post("/api/auth/confirm-email", json={"token": token})).status_code == 204


# --- mailed links are bound to the address they were sent to -----------------------------


async def test_a_reset_link_to_the_old_address_dies_with_the_move(
    app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    owner = await api_client(app)
    token = await reset_link(owner, mailbox, EMAIL, count=1)
    await move_address(owner, mailbox, "alice@new.example")
    used = await owner.post(
        "/api/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert used.status_code == 400
    assert (await used.get_json())["code"] == "TOKEN_INVALID"
    page = await owner.get(f"/auth/reset-password/{token}", headers={"Accept": "text/html"})
    assert page.status_code == 400


async def test_a_reset_link_for_an_address_the_account_left_is_refused_even_if_unspent(
    app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    """Should a link escape the sweep of a move (a row written by an older release), its
    address no longer being the account's still refuses it."""
    await make_user()
    owner = await api_client(app)
    token = await reset_link(owner, mailbox, EMAIL, count=1)
    await move_address(owner, mailbox, "alice@new.example")
    await fetch_val(app, "UPDATE email_tokens SET used_at = NULL RETURNING 1")
    used = await owner.post(
        "/api/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert (await used.get_json())["code"] == "TOKEN_INVALID"


async def test_a_confirmed_move_kills_every_outstanding_link(
    app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    owner = await api_client(app)
    resend = await owner.post("/api/auth/verify-email/resend", json={"email": EMAIL})
    assert resend.status_code == 202
    verify = await mailed_token(mailbox, EMAIL, "/auth/verify-email/")
    reset = await reset_link(owner, mailbox, EMAIL, count=2)
    await move_address(owner, mailbox, "alice@new.example")
    for path, body in (
        ("/api/auth/verify-email", {"token": verify}),
        ("/api/auth/reset-password", {"token": reset, "password": NEW_PASSWORD}),
    ):
        response = await owner.post(path, json=body)
        assert (await response.get_json())["code"] == "TOKEN_INVALID", path
    live = await fetch_val(app, "SELECT count(*) FROM email_tokens WHERE used_at IS NULL")
    assert live == 0


# --- recovery evicts an intruder completely -----------------------------------------------


async def intruder_moves_in(app: Quart, mailbox: Mailbox) -> tuple[Client, str, str]:
    """An intruder who knows the password signs in, makes an API token and asks to move the
    account to their address; the confirmation link waits in their inbox."""
    intruder = await api_client(app, address="203.0.113.66")
    created = await intruder.post(
        "/api/tokens", json={"name": "backdoor", "scopes": ["profile:read"]}
    )
    assert created.status_code == 201
    token = (await created.get_json())["token"]
    body = {"new_email": INTRUDER, "password": PASSWORD}
    assert (await intruder.post("/api/me/email", json=body)).status_code == 202
    link = await mailed_token(mailbox, INTRUDER, "/auth/confirm-email/")
    return intruder, token, link


async def assert_evicted(app: Quart, intruder: Client, api_token: str, link: str) -> None:
    assert (await intruder.get("/api/me")).status_code == 401
    bearer = {"Authorization": f"Bearer {api_token}"}
    assert (await app.test_client().get("/api/me", headers=bearer)).status_code == 401
    confirmed = await intruder.post("/api/auth/confirm-email", json={"token": link})
    assert confirmed.status_code == 400
    assert (await confirmed.get_json())["code"] == "TOKEN_INVALID"
    assert await fetch_val(app, "SELECT email FROM users") == EMAIL
    stale = await fetch_val(app, "SELECT count(*) FROM email_tokens WHERE used_at IS NULL")
    assert stale == 0


async def reset_by_api(app: Quart, mailbox: Mailbox) -> Client:
    owner = app.test_client()
    token = await reset_link(owner, mailbox, EMAIL, count=1)
    body = {"token": token, "password": NEW_PASSWORD}
    assert (await owner.post("/api/auth/reset-password", json=body)).status_code == 204
    return owner


async def reset_by_page(app: Quart, mailbox: Mailbox) -> Client:
    owner = app.test_client()
    token = await reset_link(owner, mailbox, EMAIL, count=1)
    form = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    assert (await post_form(owner, f"/auth/reset-password/{token}", form)).status_code == 302
    return owner


async def change_by_api(app: Quart, mailbox: Mailbox) -> Client:
    owner = await api_client(app, address="192.0.2.1")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert (await owner.post("/api/me/password", json=body)).status_code == 204
    assert (await owner.get("/api/me")).status_code == 200  # the owner's session stays
    return owner


@pytest.mark.parametrize("recover", [reset_by_api, reset_by_page, change_by_api])
async def test_recovery_evicts_the_intruder(
    app: Quart,
    make_user: MakeUser,
    mailbox: Mailbox,
    recover: Callable[[Quart, Mailbox], Awaitable[Client]],
) -> None:
    await make_user()
    intruder, api_token, link = await intruder_moves_in(app, mailbox)
    await recover(app, mailbox)
    await assert_evicted(app, intruder, api_token, link)


@pytest.mark.settings(REVOKE_TOKENS_ON_PASSWORD_CHANGE=False)
async def test_tokens_may_outlive_a_change_but_nothing_else_does(
    app: Quart, make_user: MakeUser, mailbox: Mailbox, clock: Clock
) -> None:
    """With AUTHAPP_REVOKE_TOKENS_ON_PASSWORD_CHANGE off (scripts hold tokens), the token
    stays; the sessions, the pending move and the reset links still end."""
    await make_user()
    intruder, api_token, link = await intruder_moves_in(app, mailbox)
    owner = await api_client(app, address="192.0.2.1")
    changed = await owner.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 204
    bearer = {"Authorization": f"Bearer {api_token}"}
    assert (await app.test_client().get("/api/me", headers=bearer)).status_code == 200
    assert (await intruder.get("/api/me")).status_code == 401
    confirmed = await intruder.post("/api/auth/confirm-email", json={"token": link})
    assert (await confirmed.get_json())["code"] == "TOKEN_INVALID"
    await drain(app)
