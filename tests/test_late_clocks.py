"""A row ended at a time read before the row was written: a spend or a revocation whose
`now` was read, then another transaction (another worker, whose clock may run a little behind)
committed a newer token or session, then the UPDATE found it. The tables refuse an end dated
before the start, so each such UPDATE records the later of the two, never a 500.

Found by CI: two forgotten-password requests for one account, run after answering, read the
clock in one order and committed in the other.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from quart import Quart

from authapp.accounts.sessions import liveness, new_token, start_session, token_id
from authapp.infra import clock
from authapp.models.email_tokens import insert_email_token, update_email_tokens_used
from authapp.models.sessions import update_other_sessions_revoked, update_sessions_revoked_of_user
from authapp.models.users import User
from tests.conftest import Clock, app_state, fetch_val

EMAIL = "alice@example.com"
EARLIER = timedelta(milliseconds=1)


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
            email=EMAIL, security_stamp=user.security_stamp, now=created,
            expires_at=created + timedelta(hours=1),
        )  # fmt: skip
    async with app_state(app).db.transaction() as connection:
        await update_email_tokens_used(connection, user.id, purposes, created - EARLIER)
    used = await fetch_val(app, "SELECT used_at FROM email_tokens WHERE id = :id", {"id": hashed})
    assert used == created


@pytest.mark.parametrize("which", ["every session", "every other session"])
async def test_a_revocation_read_before_a_newer_session_is_dated_at_its_creation(
    app: Quart, make_user: Any, clock: Clock, which: str
) -> None:
    """Sign out everywhere (or a change of credentials) racing a sign-in on another worker."""
    user: User = await make_user(EMAIL)
    state = app_state(app)
    created = clock.now
    token = await start_session(
        state.db, state.settings, user.id, security_stamp=user.security_stamp, remember=False,
        ip=None, user_agent=None,
    )  # fmt: skip
    assert token is not None
    clock.set(created - EARLIER)
    async with state.db.transaction() as connection:
        if which == "every session":
            revoked = await update_sessions_revoked_of_user(connection, user.id, clock.now)
        else:
            keep = token_id(new_token())
            assert keep is not None
            live = liveness(state.settings)
            revoked = await update_other_sessions_revoked(connection, user.id, keep, live)
    assert revoked == 1
    assert await fetch_val(app, "SELECT revoked_at FROM sessions") == created
