"""A sign-in racing a recovery: the intruder's password was proved against the old hash, and
the owner's reset or change commits before the intruder's session is written. The session
must not be written (it would outlive the recovery that was meant to evict them).

The race is made real at the database: an outside transaction holds the user's row, the
owner's change queues on it first and the intruder's sign-in (its password already proved)
second; then both are let go, in that order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from argon2 import PasswordHasher
from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.conftest import PASSWORD, Clock, execute, fetch_val
from tests.forms import DEVICE_COOKIE, api_client
from tests.mailbox import Mailbox, drain
from tests.test_credentials import INTRUDER, NEW_PASSWORD, reset_link
from tests.test_lifecycle import EMAIL, mailed_token
from tests.test_mfa import code_at, mid_step
from tests.test_registration_race import until_waiting

Recovery = Callable[[Quart, Mailbox], Awaitable[Callable[[], Awaitable[Any]]]]


async def by_reset(app: Quart, mailbox: Mailbox) -> Callable[[], Awaitable[Any]]:
    owner = app.test_client()
    token = await reset_link(owner, mailbox, EMAIL, count=1)
    body = {"token": token, "password": NEW_PASSWORD}
    return lambda: owner.post("/api/auth/reset-password", json=body)


async def by_change(app: Quart, mailbox: Mailbox) -> Callable[[], Awaitable[Any]]:
    owner = await api_client(app, address="192.0.2.1")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    return lambda: owner.post("/api/me/password", json=body)


def sign_in(intruder: Client) -> Awaitable[Any]:
    body = {"email": EMAIL, "password": PASSWORD}
    return intruder.post("/api/auth/login", json=body, scope_base={"client": ("203.0.113.66", 1)})


@pytest.mark.parametrize("recovery", [by_reset, by_change], ids=["reset", "change"])
async def test_a_sign_in_proved_before_a_recovery_gets_no_session_after_it(
    app: Quart, database_url: str, make_user: Any, mailbox: Mailbox, recovery: Recovery
) -> None:
    user = await make_user(EMAIL)
    recover = await recovery(app, mailbox)
    intruder = app.test_client()
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            await admin.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user.id)
            recovering = asyncio.ensure_future(recover())
            await until_waiting(admin, 1)
            signing_in = asyncio.ensure_future(sign_in(intruder))
            await until_waiting(admin, 2)
        recovered, signed_in = await asyncio.gather(recovering, signing_in)
    finally:
        await admin.close()

    assert recovered.status_code == 204
    assert signed_in.status_code == 401
    assert (await signed_in.get_json())["code"] == "INVALID_CREDENTIALS"
    assert (await intruder.get("/api/me")).status_code == 401
    # Only the owner's session, if the change was made from one, is left.
    live = await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL")
    assert live == (1 if recovery is by_change else 0)
    events = "SELECT count(*) FROM security_events WHERE kind = 'login_succeeded'"
    assert await fetch_val(app, events) == (1 if recovery is by_change else 0)


async def test_a_password_sign_in_racing_the_second_factor_switched_on_gets_no_session(
    app: Quart, database_url: str, signed_in: Client, clock: Clock
) -> None:
    """Turning a second factor on writes the user's row only in the one step (credentials.py),
    so that step must take the row before it revokes: otherwise a sign-in by the password
    alone, run between the revocation and the new stamp, would keep a session without the
    factor. The step is held (an outside lock on the API tokens it deletes) after it began."""
    mid_step(clock)
    started = await signed_in.post("/api/me/mfa/totp")
    secret = (await started.get_json())["secret"]
    code = {"code": code_at(secret, clock.now)}
    intruder = app.test_client()
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE api_tokens IN SHARE MODE")
            enrolling = asyncio.ensure_future(signed_in.post("/api/me/mfa/totp/confirm", json=code))
            await until_waiting(admin, 1)
            signing_in = asyncio.ensure_future(sign_in(intruder))
            await until_waiting(admin, 2, unless=signing_in)
        enrolled, signed = await asyncio.gather(enrolling, signing_in)
    finally:
        await admin.close()

    assert enrolled.status_code == 200
    assert signed.status_code == 401
    assert (await intruder.get("/api/me")).status_code == 401
    assert await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL") == 1


# --- what an intruder's session asks for while the owner recovers ---------------------------


async def slow_to_verify(app: Quart, password: str = PASSWORD) -> None:
    """Store the password under argon2 parameters that take most of a second to verify: the
    window in which an intruder's request has proved the old password and not yet written."""
    slow = PasswordHasher(time_cost=60, memory_cost=19456, parallelism=1).hash(password)
    await execute(app, "UPDATE users SET password_hash = :hash", {"hash": slow})


async def untrusted_intruder(app: Quart) -> Client:
    """An intruder signed in elsewhere who carries the session cookie alone (no device cookie,
    so their password checks count on the account: the test watches that count)."""
    intruder = await api_client(app, address="203.0.113.66")
    assert intruder.cookie_jar is not None
    for cookie in list(intruder.cookie_jar):
        if cookie.name == DEVICE_COOKIE:
            intruder.cookie_jar.clear(cookie.domain, cookie.path, cookie.name)
    return intruder


async def racing_a_reset(
    app: Quart, make_user: Any, mailbox: Mailbox
) -> tuple[Client, Callable[[], Awaitable[Any]]]:
    """The account, its password slow to verify; an intruder's session; the owner's reset."""
    await make_user(EMAIL)
    intruder = await untrusted_intruder(app)
    reset = await by_reset(app, mailbox)
    await slow_to_verify(app)
    return intruder, reset


async def while_verifying(app: Quart, asking: Awaitable[Any], owner: Awaitable[Any]) -> Any:
    """Start the intruder's request; once its password is being verified (it counted its
    attempt first), run the owner's recovery to the end; then let the intruder finish."""
    intruder = asyncio.ensure_future(asking)
    for _ in range(500):
        if await fetch_val(app, "SELECT failed_logins FROM users") == 1:
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("the intruder's attempt was never counted")
    assert (await owner).status_code == 204
    assert not intruder.done(), "the intruder's password was verified before the recovery"
    return await intruder


async def test_an_intruders_password_change_loses_to_the_reset_it_raced(
    app: Quart, make_user: Any, mailbox: Mailbox
) -> None:
    intruder, reset = await racing_a_reset(app, make_user, mailbox)
    theirs = "the intruder's own passphrase"
    body = {"current_password": PASSWORD, "new_password": theirs}
    changed = await while_verifying(app, intruder.post("/api/me/password", json=body), reset())

    assert changed.status_code == 409
    assert (await changed.get_json())["code"] == "CREDENTIALS_CHANGED"
    for password, status in ((theirs, 401), (NEW_PASSWORD, 200)):
        body = {"email": EMAIL, "password": password}
        signed_in = await app.test_client().post("/api/auth/login", json=body)
        assert signed_in.status_code == status, password


async def test_an_intruders_move_of_the_address_dies_with_the_reset_it_raced(
    app: Quart, make_user: Any, mailbox: Mailbox
) -> None:
    intruder, reset = await racing_a_reset(app, make_user, mailbox)
    body = {"new_email": INTRUDER, "password": PASSWORD}
    asked = await while_verifying(app, intruder.post("/api/me/email", json=body), reset())
    assert asked.status_code == 202  # it cannot tell: the link goes out, and opens nothing

    await drain(app)
    link = await mailed_token(mailbox, INTRUDER, "/auth/confirm-email/")
    confirmed = await intruder.post("/api/auth/confirm-email", json={"token": link})
    assert confirmed.status_code == 400
    assert (await confirmed.get_json())["code"] == "TOKEN_INVALID"
    assert await fetch_val(app, "SELECT email FROM users") == EMAIL


async def test_an_intruders_api_token_does_not_outlive_the_reset_it_raced(
    app: Quart, database_url: str, make_user: Any, mailbox: Mailbox
) -> None:
    """Held where each writes the API tokens: the reset deletes them, the intruder's session
    (resolved before the reset) adds one. Let go together, the addition must not survive."""
    await make_user(EMAIL)
    intruder = await api_client(app, address="203.0.113.66")
    reset = await by_reset(app, mailbox)
    body = {"name": "backdoor", "scopes": ["profile:read"]}
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE api_tokens IN SHARE MODE")
            recovering = asyncio.ensure_future(reset())
            await until_waiting(admin, 1)
            creating = asyncio.ensure_future(intruder.post("/api/tokens", json=body))
            await until_waiting(admin, 2, unless=creating)
        recovered, created = await asyncio.gather(recovering, creating)
    finally:
        await admin.close()

    assert recovered.status_code == 204
    if created.status_code == 201:
        bearer = {"Authorization": f"Bearer {(await created.get_json())['token']}"}
        assert (await app.test_client().get("/api/me", headers=bearer)).status_code == 401
    else:
        assert created.status_code == 409
        assert (await created.get_json())["code"] == "CREDENTIALS_CHANGED"
    assert await fetch_val(app, "SELECT count(*) FROM api_tokens") == 0
