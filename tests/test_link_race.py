"""Mailed links issued at the same instant: only the newest link of a purpose works.

Found by CI: two forgotten-password requests for one account, run after answering, read the
clock in one order and committed in the other; the older spend then hit the newer token
(tests/test_late_clocks.py has that half).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from quart import Quart

from authapp.accounts import lifecycle
from authapp.errors import APIError
from tests.conftest import PASSWORD, app_state, fetch_val
from tests.forms import api_client
from tests.mailbox import Mailbox, drain
from tests.test_lifecycle import mailed_token
from tests.test_registration_race import until_waiting

EMAIL = "alice@example.com"
NEW = "the owner's brand new passphrase"
LIVE = """SELECT count(*) FROM email_tokens
           WHERE purpose = 'reset_password' AND used_at IS NULL"""


async def test_two_reset_requests_at_once_leave_one_live_link(
    app: Quart, database_url: str, mailbox: Mailbox, make_user: Any
) -> None:
    """Both issuers are held where they write (an outside transaction locks the table against
    writes) and let go together, so the race is real at the database."""
    await make_user(EMAIL)
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE email_tokens IN SHARE MODE")
            for _ in range(2):
                asked = await app.test_client().post(
                    "/api/auth/forgot-password", json={"email": EMAIL}
                )
                assert asked.status_code == 202
            await until_waiting(admin, 2)
        await drain(app)
    finally:
        await admin.close()

    messages = await mailbox.wait_for(2, to=EMAIL)
    tokens = [mailbox.link(message, "/auth/reset-password/").rsplit("/", 1)[1]
              for message in messages]  # fmt: skip
    assert await fetch_val(app, LIVE) == 1
    codes = [await check(app, token) for token in tokens]
    assert sorted(codes) == ["OPENS", "TOKEN_INVALID"]


async def check(app: Quart, token: str) -> str:
    try:
        await lifecycle.check_reset_token(app_state(app).db, token)
    except APIError as error:
        return error.code
    return "OPENS"


async def test_a_reset_and_a_move_of_the_address_used_at_once_end_in_one_or_the_other(
    app: Quart, database_url: str, mailbox: Mailbox, make_user: Any
) -> None:
    """Each takes its link's row and the user's: taken in opposite orders they would deadlock,
    and PostgreSQL would end one of them with a 500. Both are held at the user's row (an
    outside transaction holds it) and let go together: one wins, the other's link is dead."""
    await make_user(EMAIL)
    owner = await api_client(app)
    body = {"new_email": "new@example.com", "password": PASSWORD}
    assert (await owner.post("/api/me/email", json=body)).status_code == 202
    move = await mailed_token(mailbox, "new@example.com", "/auth/confirm-email/")
    asked = await owner.post("/api/auth/forgot-password", json={"email": EMAIL})
    assert asked.status_code == 202
    reset = await mailed_token(mailbox, EMAIL, "/auth/reset-password/")
    user_id = await fetch_val(app, "SELECT id FROM users")
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            await admin.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
            resetting = asyncio.ensure_future(
                owner.post("/api/auth/reset-password", json={"token": reset, "password": NEW})
            )
            await until_waiting(admin, 1)
            moving = asyncio.ensure_future(
                owner.post("/api/auth/confirm-email", json={"token": move})
            )
            await until_waiting(admin, 2)
        reset_done, moved = await asyncio.gather(resetting, moving)
    finally:
        await admin.close()

    # Either may be first in line (the reset checks its link once before its transaction,
    # and waits there too); the other's link is dead by then, and nothing is a 500.
    statuses = sorted([reset_done.status_code, moved.status_code])
    assert statuses == [204, 400]
    loser = moved if reset_done.status_code == 204 else reset_done
    assert (await loser.get_json())["code"] == "TOKEN_INVALID"
    email = "new@example.com" if moved.status_code == 204 else EMAIL
    assert await fetch_val(app, "SELECT email FROM users") == email
