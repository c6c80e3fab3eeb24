"""Device cookies: strangers cannot lock the owner out, and a stolen cookie buys nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp.accounts.emails import email_key_digest
from authapp.models.users import User
from authapp.web import devices
from tests.conftest import PASSWORD, Clock, fetch_val
from tests.forms import DEVICE_COOKIE, api_client, device_cookie, forget_device, post_form
from tests.mailbox import Mailbox, drain

MakeUser = Callable[..., Awaitable[User]]
WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase"


def at(address: str) -> dict[str, Any]:
    return {"scope_base": {"client": (address, 40000)}}


async def sign_in(client: Client, password: str = PASSWORD, **kwargs: Any) -> Any:
    body = {"email": "alice@example.com", "password": password}
    return await client.post("/api/auth/login", json=body, **kwargs)


async def wrong_passwords(app: Quart, count: int) -> None:
    for number in range(count):
        await sign_in(app.test_client(), WRONG, **at(f"203.0.113.{number}"))


async def flood(app: Quart, clock: Clock) -> None:
    """A stranger's wrong passwords from many addresses for 35 minutes: the account's budget
    (5 per 15 minutes) is spent, and its lockout (10 in a row) is on."""
    for round_ in range(3):
        if round_:
            clock.advance(minutes=16)
        await wrong_passwords(app, 8)
    assert (
        await fetch_val(app, "SELECT failed_logins FROM users WHERE email = 'alice@example.com'")
        >= 10
    )


def copy_device(source: Client, target: Client) -> None:
    value = device_cookie(source)
    assert value is not None
    target.set_cookie("localhost", DEVICE_COOKIE, value)


async def test_a_sign_in_sets_a_strict_device_cookie(app: Quart, make_user: MakeUser) -> None:
    await make_user()
    response = await sign_in(app.test_client())
    (header,) = [value for value in response.headers.getlist("Set-Cookie")
                 if value.startswith(f"{DEVICE_COOKIE}=")]  # fmt: skip
    assert "HttpOnly" in header
    assert "Secure" in header
    assert "SameSite=Strict" in header
    assert "Path=/" in header
    assert "Max-Age=15552000" in header  # 180 days
    assert "alice" not in header  # it names the account by a digest only


async def test_a_shared_computer_keeps_its_newest_accounts_within_the_cookie_limit(
    app: Quart, make_user: MakeUser
) -> None:
    """A cookie holds MAX_ACCOUNTS entries, each with two UUIDs, signed uncompressed; at its
    longest it must stay under MAX_COOKIE_BYTES, or the device would read back as none."""
    emails = [f"user{number}@example.com" for number in range(devices.MAX_ACCOUNTS + 1)]
    for email in emails:
        await make_user(email)
    client = app.test_client()
    for email in emails:
        body = {"email": email, "password": PASSWORD}
        assert (await client.post("/api/auth/login", json=body)).status_code == 200
        value = device_cookie(client)
        assert value is not None
        assert len(value) <= devices.MAX_COOKIE_BYTES
    assert not value.startswith(".")  # not compressed
    async with app.test_request_context("/", headers={"Cookie": f"{DEVICE_COOKIE}={value}"}):
        presented = {device.account for device in devices.presented()}
    kept = {email_key_digest(email) for email in emails[1:]}  # the oldest made room
    assert presented == kept


async def test_the_owner_signs_in_through_a_strangers_flood(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    await make_user()
    owner = app.test_client()
    assert (await sign_in(owner, **at("192.0.2.1"))).status_code == 200
    await flood(app, clock)
    # Untrusted clients are refused, even with the right password.
    refused = await sign_in(app.test_client(), **at("198.51.100.7"))
    assert refused.status_code == 429
    assert await fetch_val(app, "SELECT locked_until FROM users") > clock.now
    # The owner's device signs in at the first try.
    response = await sign_in(owner, **at("192.0.2.1"))
    assert response.status_code == 200
    # ...and its success forgave nobody: the account stays locked for strangers.
    assert await fetch_val(app, "SELECT failed_logins FROM users") >= 10
    assert (await sign_in(app.test_client(), **at("198.51.100.8"))).status_code == 429


async def test_the_owner_can_change_the_password_of_a_locked_account(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    await make_user()
    owner = await api_client(app, address="192.0.2.1")
    await flood(app, clock)
    stranger = await app.test_client().post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert stranger.status_code == 401
    # Half an hour on, the owner confirms the password through the lock, then changes it.
    reauth = await owner.post("/api/auth/reauth", json={"password": PASSWORD}, **at("192.0.2.1"))
    assert reauth.status_code == 204, await reauth.get_data(as_text=True)
    changed = await owner.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        **at("192.0.2.1"),
    )  # fmt: skip
    assert changed.status_code == 204, await changed.get_data(as_text=True)
    # The change ended every device's trust but this one's, which got a new cookie.
    assert (await sign_in(owner, NEW_PASSWORD, **at("192.0.2.1"))).status_code == 200


async def test_a_stolen_device_cookie_buys_nothing(app: Quart, make_user: MakeUser) -> None:
    await make_user()
    await make_user(email="bob@example.com")
    owner = app.test_client()
    assert (await sign_in(owner, **at("192.0.2.1"))).status_code == 200
    thief = app.test_client()
    copy_device(owner, thief)
    # No session without the password, and no session cookie either.
    for number in range(5):
        wrong = await sign_in(thief, WRONG, **at(f"203.0.113.{number}"))
        assert wrong.status_code == 401
        assert not [v for v in wrong.headers.getlist("Set-Cookie") if "authapp_session=" in v]
    # The device's own budget (5 failures per 15 minutes) is spent: the cookie is refused.
    assert (await sign_in(thief, WRONG, **at("203.0.113.50"))).status_code == 429
    assert (await sign_in(thief, PASSWORD, **at("203.0.113.51"))).status_code == 429
    # Its failures were no untrusted client's: strangers elsewhere keep their own budget.
    assert (await sign_in(app.test_client(), **at("198.51.100.1"))).status_code == 200
    # It names Alice only: for Bob it is an untrusted client, on Bob's budget and lockout.
    for number in range(5):
        await thief.post(
            "/api/auth/login", json={"email": "bob@example.com", "password": WRONG},
            **at(f"203.0.113.{100 + number}"),
        )  # fmt: skip
    bob = await thief.post(
        "/api/auth/login", json={"email": "bob@example.com", "password": PASSWORD},
        **at("203.0.113.200"),
    )  # fmt: skip
    assert bob.status_code == 429


async def test_a_tampered_or_foreign_cookie_is_an_untrusted_client(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    await make_user()
    owner = app.test_client()
    await sign_in(owner)
    value = device_cookie(owner)
    assert value is not None
    tampered = app.test_client()
    # One character of the signed payload changed (the last of a signature may be padding).
    forged = ("B" if value[0] == "A" else "A") + value[1:]
    tampered.set_cookie("localhost", DEVICE_COOKIE, forged)
    await flood(app, clock)
    assert (await sign_in(tampered, **at("198.51.100.9"))).status_code == 429
    assert (await sign_in(owner, **at("198.51.100.9"))).status_code == 200


async def test_a_password_change_ends_the_trust_of_other_devices(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    """An intruder who once signed in with the password keeps no trusted device after the
    owner changes it: their cookie names the old security stamp."""
    await make_user()
    intruder = await api_client(app, address="203.0.113.1")
    owner = await api_client(app, address="192.0.2.1")
    changed = await owner.post(
        "/api/me/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert changed.status_code == 204
    await flood(app, clock)  # the lockout holds the untrusted
    # Its cookie still names Alice, so it draws on its own budget, but the lockout refuses it.
    assert (await sign_in(intruder, NEW_PASSWORD, **at("203.0.113.1"))).status_code == 401
    assert (await sign_in(owner, NEW_PASSWORD, **at("192.0.2.1"))).status_code == 200


@pytest.mark.settings(RATE_LIMIT_ENABLED=False)
async def test_a_trusted_device_is_past_the_lockout_not_the_password(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    """With the limits off, only the lockout stands: the owner's device passes it, a wrong
    password from that device is still wrong, and counts on no untrusted client's lock."""
    await make_user()
    owner = app.test_client()
    await sign_in(owner)
    await wrong_passwords(app, 10)
    assert (await sign_in(app.test_client())).status_code == 401  # locked: refused unchecked
    assert (await sign_in(owner, WRONG)).status_code == 401
    failures = await fetch_val(app, "SELECT failed_logins FROM users")
    assert (await sign_in(owner)).status_code == 200
    assert await fetch_val(app, "SELECT failed_logins FROM users") == failures
    clock.advance(days=181)  # the cookie's lifetime passed: an untrusted client again
    await wrong_passwords(app, 1)  # (the old lock is long over: this one locks anew)
    assert (await sign_in(owner)).status_code == 401


@pytest.mark.settings(MAIL_RATE_LIMIT_IP="100/hour")
async def test_strangers_cannot_spend_the_owners_reset_mails(
    app: Quart, make_user: MakeUser, mailbox: Mailbox
) -> None:
    await make_user()
    owner = app.test_client()
    await sign_in(owner, **at("192.0.2.1"))
    body = {"email": "alice@example.com"}
    # One stranger's address gets 3 an hour for this account...
    stranger = app.test_client()
    statuses = [
        (
            await stranger.post("/api/auth/forgot-password", json=body, **at("203.0.113.1"))
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    # ...and strangers everywhere 10 an hour together.
    for number in range(2, 12):
        await app.test_client().post("/api/auth/forgot-password", json=body,
                                     **at(f"203.0.113.{number}"))  # fmt: skip
    refused = await app.test_client().post(
        "/api/auth/forgot-password", json=body, **at("198.51.100.1")
    )
    assert refused.status_code == 429
    # The owner's own device still gets its link.
    asked = await owner.post("/api/auth/forgot-password", json=body, **at("192.0.2.1"))
    assert asked.status_code == 202
    await drain(app)
    resets = [m for m in await mailbox.wait_for(11) if m["Subject"] == "Reset your password"]
    assert len(resets) == 11  # 10 from strangers, then the owner's


async def test_the_sign_in_form_trusts_the_device_too(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    await make_user()
    browser = app.test_client()
    signed_in = await post_form(
        browser, "/auth/login", {"email": "alice@example.com", "password": PASSWORD}
    )
    assert signed_in.status_code == 302
    await post_form(browser, "/auth/logout", {}, page="/")
    await flood(app, clock)
    again = await post_form(
        browser, "/auth/login", {"email": "alice@example.com", "password": PASSWORD}
    )
    assert again.status_code == 302
    forget_device(browser)
    await post_form(browser, "/auth/logout", {}, page="/")
    refused = await post_form(
        browser, "/auth/login", {"email": "alice@example.com", "password": PASSWORD}
    )
    assert refused.status_code == 429
