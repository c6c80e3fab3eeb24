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
from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.conftest import PASSWORD, Clock, fetch_val
from tests.forms import api_client
from tests.mailbox import Mailbox
from tests.test_credentials import NEW_PASSWORD, reset_link
from tests.test_lifecycle import EMAIL
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
