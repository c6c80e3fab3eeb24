"""Mailed links issued at the same instant: only the newest link of a purpose works.

Found by CI: two forgotten-password requests for one account, run after answering, read the
clock in one order and committed in the other; the older spend then hit the newer token
(tests/test_late_clocks.py has that half).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from quart import Quart

from authapp.accounts import lifecycle
from authapp.errors import APIError
from tests.conftest import app_state, fetch_val
from tests.mailbox import Mailbox, drain
from tests.test_registration_race import until_waiting

EMAIL = "alice@example.com"
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
