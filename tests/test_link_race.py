"""Mailed links issued or spent at the same instant: only the newest link of a purpose works,
and no spend is ever dated before the token it spends (the table refuses that: a 500).

Found by CI: two forgotten-password requests for one account, run after answering, read the
clock in one order and committed in the other; the older spend then hit the newer token.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from quart import Quart

from authapp.accounts import lifecycle
from authapp.accounts.sessions import new_token, token_id
from authapp.errors import APIError
from authapp.infra import clock
from authapp.models.email_tokens import insert_email_token, update_email_tokens_used
from authapp.models.users import User
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


@pytest.mark.parametrize("purposes", [("reset_password",), ("reset_password", "change_email")])
async def test_a_spend_read_before_a_newer_token_is_dated_at_its_creation(
    app: Quart, make_user: Any, purposes: tuple[Any, ...]
) -> None:
    """A spend whose time was read before a token was committed (by another transaction, or a
    worker whose clock runs behind): a password change racing a reset request, say."""
    user: User = await make_user(EMAIL)
    created = clock.utcnow()
    async with app_state(app).db.transaction() as connection:
        hashed = token_id(new_token())
        assert hashed is not None
        await insert_email_token(
            connection, token_id=hashed, user_id=user.id, purpose="reset_password",
            email=EMAIL, now=created, expires_at=created + timedelta(hours=1),
        )  # fmt: skip
    async with app_state(app).db.transaction() as connection:
        await update_email_tokens_used(
            connection, user.id, purposes, created - timedelta(milliseconds=1)
        )
    used = await fetch_val(app, "SELECT used_at FROM email_tokens WHERE id = :id", {"id": hashed})
    assert used == created
