"""Two registrations of one email at the same instant: exactly one account, the other caller
gets the normal answer, never a 500. The database's unique index decides, not a prior SELECT.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from quart import Quart

from authapp.infra import clock
from authapp.models.users import insert_user
from tests.conftest import PASSWORD, app_state, fetch_val
from tests.mailbox import Mailbox, drain

WAITING = """SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'"""


async def until_waiting(
    connection: Any, count: int, unless: asyncio.Future[Any] | None = None
) -> None:
    """Until `count` backends of this database wait on a lock: the racers are both in. Or
    until `unless` is done: a racer that should have waited ran through (the test then sees
    what it did)."""
    for _ in range(200):
        await connection.execute("SELECT pg_stat_clear_snapshot()")  # a new look each time
        if await connection.fetchval(WAITING) >= count or (unless is not None and unless.done()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} backends never waited together")


@pytest.mark.parametrize(
    "verified_mode",
    [
        pytest.param(False, id="201 and 409"),
        pytest.param(
            True, id="202 twice", marks=pytest.mark.settings(REQUIRE_VERIFIED_EMAIL="true")
        ),
    ],
)
async def test_two_clients_register_one_email_at_once(
    app: Quart, database_url: str, mailbox: Mailbox, verified_mode: bool
) -> None:
    """Both requests are held at their INSERT (an outside transaction locks the table against
    writes) and let go together, so the race is real at the database."""
    bodies = [{"email": "race@example.com", "password": PASSWORD},
              {"email": "Race@Example.COM", "password": PASSWORD + " too"}]  # fmt: skip
    admin = await asyncpg.connect(database_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE users IN SHARE MODE")  # reads go on, writes wait
            racing = asyncio.gather(
                *(app.test_client().post("/api/auth/register", json=body) for body in bodies)
            )
            await until_waiting(admin, 2)
        responses = await racing
    finally:
        await admin.close()

    answers = sorted([(response.status_code, await response.get_json()) for response in responses],
                     key=lambda answer: answer[0])  # fmt: skip
    if verified_mode:
        assert [status for status, _ in answers] == [202, 202]
        assert answers[0][1] == answers[1][1]  # nobody learns which one won
    else:
        assert [status for status, _ in answers] == [201, 409]
        assert answers[1][1]["code"] == "EMAIL_TAKEN"
    assert await fetch_val(app, "SELECT count(*) FROM users") == 1
    await drain(app)
    subjects = sorted(
        str(message["Subject"]) for message in await mailbox.wait_for(1 + verified_mode)
    )
    expected = ["Verify your email address"]
    if verified_mode:  # the loser's mail tells the owner someone tried their address
        expected.insert(0, "Someone tried to sign up with your address")
    assert subjects == expected


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
async def test_the_insert_itself_is_race_safe(app: Quart, first_ends: str) -> None:
    """Two connections insert one address (in two spellings): the second waits on the first's
    unique-index entry, then does nothing if it committed, or inserts if it rolled back."""
    db = app_state(app).db
    row = {"password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
           "display_name": "Race", "now": clock.utcnow()}  # fmt: skip
    async with db.connection() as first, db.connection() as second:
        transaction = first.transaction()
        await transaction.start()
        won = await insert_user(
            first, email="race@example.com", email_key="race@example.com", **row
        )
        assert won is not None
        late = asyncio.ensure_future(
            insert_user(second, email="RACE@example.com", email_key="race@example.com", **row)
        )
        async with db.connection() as watcher:
            for _ in range(200):
                if await watcher.fetch_val(WAITING):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the second insert never waited on the first")
        assert not late.done()
        await (transaction.commit() if first_ends == "commit" else transaction.rollback())
        lost = await late
    if first_ends == "commit":
        assert lost is None  # the caller answers 409 EMAIL_TAKEN
    else:
        assert lost is not None
        assert lost.email == "RACE@example.com"
    assert await fetch_val(app, "SELECT count(*) FROM users") == 1
