"""The database itself refuses bad rows: NOT NULL, CHECK, unique and foreign-key constraints."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from quart import Quart

from authapp.accounts.emails import email_key
from authapp.models.users import User
from tests.conftest import ROOT, execute, fetch_val

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
MakeUser = Callable[..., Awaitable[User]]


async def insert_user(app: Quart, **columns: object) -> None:
    row = {"email": "x@example.com", "password_hash": HASH, "display_name": "X", **columns}
    if "email_key" not in row:  # as the app keys it, or the raw text where that is no address
        email = row["email"]
        row["email_key"] = email_key(email) or email if isinstance(email, str) else email
    await execute(
        app,
        "INSERT INTO users (email, email_key, password_hash, display_name) "
        "VALUES (:email, :email_key, :password_hash, :display_name)",
        row,
    )


@pytest.mark.parametrize(
    "columns",
    [
        {"email": None},
        {"email": ""},
        {"email": " x@example.com"},
        {"email": "no-at-sign"},
        {"email": "a" * 250 + "@example.com"},
        {"password_hash": "plaintext"},
        {"password_hash": None},
        {"display_name": ""},
        {"display_name": " padded "},
        {"display_name": "x" * 101},
        {"email_key": None},
        {"email_key": "no-at-sign"},
    ],
)
async def test_users_refuse_bad_rows(app: Quart, columns: dict[str, object]) -> None:
    with pytest.raises((asyncpg.CheckViolationError, asyncpg.NotNullViolationError)):
        await insert_user(app, **columns)


async def test_email_keys_are_unique(app: Quart) -> None:
    await insert_user(app, email="Same@Example.com")
    with pytest.raises(asyncpg.UniqueViolationError):
        await insert_user(app, email="same@example.COM")


async def test_the_database_locale_decides_nothing(app: Quart) -> None:
    """Only the key decides: PostgreSQL's lower() folds `İ` to `i` under a UTF-8 locale, yet
    these are two accounts, and no index on lower(email) is left to say otherwise."""
    await insert_user(app, email="j\u0130m@example.com")
    await insert_user(app, email="jim@example.com")
    assert await fetch_val(app, "SELECT count(*) FROM users") == 2
    indexes = await fetch_val(
        app, "SELECT string_agg(indexdef, ' ') FROM pg_indexes WHERE tablename = 'users'"
    )
    assert "lower(" not in indexes


async def insert_session(app: Quart, user_id: object, **columns: object) -> None:
    row = {
        "id": hashlib.sha256(b"token").digest(),
        "user_id": user_id,
        "expires_at": datetime.now(UTC) + timedelta(days=1),
        "user_agent": None,
        **columns,
    }
    await execute(
        app,
        "INSERT INTO sessions (id, user_id, expires_at, user_agent) "
        "VALUES (:id, :user_id, :expires_at, :user_agent)",
        row,
    )


@pytest.mark.parametrize(
    ("columns", "error"),
    [
        ({"id": b"short"}, asyncpg.CheckViolationError),
        ({"expires_at": datetime.now(UTC) - timedelta(days=1)}, asyncpg.CheckViolationError),
        ({"user_agent": "x" * 513}, asyncpg.CheckViolationError),
        ({"expires_at": None}, asyncpg.NotNullViolationError),
    ],
)
async def test_sessions_refuse_bad_rows(
    app: Quart, make_user: MakeUser, columns: dict[str, object], error: type[Exception]
) -> None:
    user = await make_user()
    with pytest.raises(error):
        await insert_session(app, user.id, **columns)


async def test_sessions_need_a_real_user_and_die_with_it(app: Quart, make_user: MakeUser) -> None:
    import uuid

    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await insert_session(app, uuid.uuid4())
    user = await make_user()
    await insert_session(app, user.id)
    await execute(app, "DELETE FROM users WHERE id = :id", {"id": user.id})
    assert await fetch_val(app, "SELECT count(*) FROM sessions") == 0


async def test_migrations_are_recorded(app: Quart) -> None:
    migrations = len(list((ROOT / "migrations").glob("[0-9]*.py")))
    assert await fetch_val(app, "SELECT version FROM schema_migration") == migrations - 1


@pytest.mark.parametrize(
    ("columns", "error"),
    [
        ({"kind": "Login Succeeded"}, asyncpg.CheckViolationError),
        ({"kind": ""}, asyncpg.CheckViolationError),
        ({"user_agent": "x" * 513}, asyncpg.CheckViolationError),
        ({"details": "[]"}, asyncpg.CheckViolationError),
        ({"created_at": None}, asyncpg.NotNullViolationError),
    ],
)
async def test_security_events_refuse_bad_rows(
    app: Quart, make_user: MakeUser, columns: dict[str, object], error: type[Exception]
) -> None:
    user = await make_user()
    good = {"user_id": user.id, "kind": "logout", "created_at": datetime.now(UTC),
            "user_agent": None, "details": "{}"}  # fmt: skip
    insert = (
        "INSERT INTO security_events (user_id, kind, created_at, user_agent, details) "
        "VALUES (:user_id, :kind, :created_at, :user_agent, CAST(CAST(:details AS text) AS jsonb))"
    )
    await execute(app, insert, good)  # the row as it should be goes in
    with pytest.raises(error):
        await execute(app, insert, {**good, **columns})


async def test_failed_logins_cannot_go_negative(app: Quart, make_user: MakeUser) -> None:
    await make_user()
    with pytest.raises(asyncpg.CheckViolationError):
        await execute(app, "UPDATE users SET failed_logins = -1")
