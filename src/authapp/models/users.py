"""SQL for the users table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from quart_db import Connection

# A CTE that turns off waiting for the disk at this statement's commit, for writes that a
# crash may lose (counts, "last seen" marks) on paths whose speed matters. It only takes
# effect where a FROM names it: PostgreSQL runs an unreferenced SELECT in WITH not at all.
QUICK_COMMIT = "quick_commit AS (SELECT set_config('synchronous_commit', 'off', true))"

_COLUMNS = """id, email, password_hash, display_name, is_active, email_verified_at,
              created_at, updated_at, last_login_at, failed_logins, locked_until"""


@dataclass(frozen=True)
class User:
    id: UUID
    email: str
    password_hash: str
    display_name: str
    is_active: bool
    email_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    failed_logins: int
    locked_until: datetime | None


@dataclass(frozen=True)
class Account:
    """The user as an authenticated request sees them (by a session or an API token)."""

    user_id: UUID
    email: str
    display_name: str
    email_verified_at: datetime | None
    created_at: datetime
    last_login_at: datetime | None
    previous_login_at: datetime | None
    previous_login_ip: str | None


# The columns of Account, for queries that join users as `u` to the credential they resolve.
ACCOUNT_COLUMNS = """u.id AS user_id, u.email, u.display_name, u.email_verified_at,
                     u.created_at, u.last_login_at, u.previous_login_at,
                     host(u.previous_login_ip) AS previous_login_ip"""


async def select_user_by_email(db: Connection, email: str) -> User | None:
    row = await db.fetch_first(
        f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower(:email)",  # noqa: S608
        {"email": email},
    )
    return None if row is None else User(**row)


async def select_user_by_id(db: Connection, user_id: UUID) -> User | None:
    row = await db.fetch_first(
        f"SELECT {_COLUMNS} FROM users WHERE id = :id",  # noqa: S608
        {"id": user_id},
    )
    return None if row is None else User(**row)


async def select_users(db: Connection) -> list[User]:
    """Every user, the oldest first."""
    rows = await db.fetch_all(
        f"SELECT {_COLUMNS} FROM users ORDER BY created_at, email"  # noqa: S608
    )
    return [User(**row) for row in rows]


async def insert_user(
    db: Connection, *, email: str, password_hash: str, display_name: str, now: datetime
) -> User | None:
    """Insert a user, or return None when the email is taken (whatever its case)."""
    row = await db.fetch_first(
        f"""INSERT INTO users (email, password_hash, display_name, created_at, updated_at)
                 VALUES (:email, :password_hash, :display_name, :now, :now)
            ON CONFLICT (lower(email)) DO NOTHING
              RETURNING {_COLUMNS}""",  # noqa: S608
        {"email": email, "password_hash": password_hash, "display_name": display_name, "now": now},
    )
    return None if row is None else User(**row)


async def update_user_password_hash(
    db: Connection, user_id: UUID, password_hash: str, now: datetime
) -> None:
    await db.execute(
        "UPDATE users SET password_hash = :password_hash, updated_at = :now WHERE id = :id",
        {"id": user_id, "password_hash": password_hash, "now": now},
    )


@dataclass(frozen=True)
class Lockout:
    """After `threshold` failed passwords in a row the account is locked for `delay` seconds,
    doubled per further failure, at most `max_delay`."""

    threshold: int
    delay: int
    max_delay: int


@dataclass(frozen=True)
class Attempt:
    """A password attempt, counted as failed until the password proves right."""

    failed_logins: int
    locked_until: datetime | None


@dataclass(frozen=True)
class CountedAttempt:
    user: User  # as it was before this attempt
    attempt: Attempt | None  # None: the account is locked, and nothing was counted


async def update_user_attempt_counted_by_email(
    db: Connection, email: str, *, now: datetime, lockout: Lockout
) -> CountedAttempt | None:
    """The user with this email, with one more failed password counted; None for no user."""
    return await _count_attempt(db, "lower(email) = lower(:key)", email, now, lockout)


async def update_user_attempt_counted_by_id(
    db: Connection, user_id: UUID, *, now: datetime, lockout: Lockout
) -> CountedAttempt | None:
    """The user with this id, with one more failed password counted; None for no user."""
    return await _count_attempt(db, "id = :key", user_id, now, lockout)


async def _count_attempt(
    db: Connection, where: str, key: object, now: datetime, lockout: Lockout
) -> CountedAttempt | None:
    """Find the user and count an attempt, before its hash is checked, in one statement, so
    concurrent attempts each count and none slips past a lock; unless already locked, lock
    from the threshold on.

    Its commit does not wait for the disk (synchronous_commit is off for this statement's own
    transaction; a crash may forget a few counts), so a known email answers as fast as an
    unknown one, which only reads. One round trip, no BEGIN, SET or COMMIT of its own.
    """
    row = await db.fetch_first(
        f"""WITH {QUICK_COMMIT}, target AS (
                SELECT {_COLUMNS} FROM users, quick_commit WHERE {where}
            ), counted AS (
                UPDATE users u
                   SET failed_logins = u.failed_logins + 1,
                       locked_until = CASE
                           WHEN u.failed_logins + 1 < :threshold THEN NULL
                           ELSE CAST(:now AS timestamptz) + make_interval(secs => least(
                               CAST(:max_delay AS double precision),
                               CAST(:delay AS double precision)
                                   * power(2, least(u.failed_logins + 1 - :threshold, 40))))
                       END
                  FROM target
                 WHERE u.id = target.id AND (u.locked_until IS NULL OR u.locked_until <= :now)
             RETURNING u.failed_logins AS attempt_failed_logins,
                       u.locked_until AS attempt_locked_until
            )
            SELECT * FROM target LEFT JOIN counted ON true""",  # noqa: S608 (fixed fragments)
        {"key": key, "now": now, "threshold": lockout.threshold, "delay": lockout.delay,
         "max_delay": lockout.max_delay},
    )  # fmt: skip
    if row is None:
        return None
    values = dict(row)
    failed_logins = values.pop("attempt_failed_logins")
    locked_until = values.pop("attempt_locked_until")
    attempt = None if failed_logins is None else Attempt(failed_logins, locked_until)
    return CountedAttempt(User(**values), attempt)


async def update_user_attempts_cleared(db: Connection, user_id: UUID) -> None:
    """The password proved right (or was reset): the failures before it are forgiven."""
    await db.execute(
        """UPDATE users SET failed_logins = 0, locked_until = NULL
            WHERE id = :id AND (failed_logins > 0 OR locked_until IS NOT NULL)""",
        {"id": user_id},
    )


async def update_user_display_name(
    db: Connection, user_id: UUID, display_name: str, now: datetime
) -> None:
    await db.execute(
        "UPDATE users SET display_name = :display_name, updated_at = :now WHERE id = :id",
        {"id": user_id, "display_name": display_name, "now": now},
    )


async def update_user_active(db: Connection, user_id: UUID, is_active: bool, now: datetime) -> None:
    await db.execute(
        "UPDATE users SET is_active = :is_active, updated_at = :now WHERE id = :id",
        {"id": user_id, "is_active": is_active, "now": now},
    )


async def update_user_email_verified(
    db: Connection, user_id: UUID, email: str, now: datetime
) -> bool:
    """Mark the address verified, if it is still the user's address; say whether it was."""
    verified = await db.fetch_val(
        """UPDATE users SET email_verified_at = coalesce(email_verified_at, :now)
            WHERE id = :id AND email = :email AND is_active
        RETURNING true""",
        {"id": user_id, "email": email, "now": now},
    )
    return bool(verified)


async def update_user_email(db: Connection, user_id: UUID, email: str, now: datetime) -> bool:
    """Move the user to a new (and so verified) address; False when another account has it."""
    try:
        changed = await db.fetch_val(
            """UPDATE users SET email = :email, email_verified_at = :now, updated_at = :now
                WHERE id = :id AND is_active
            RETURNING true""",
            {"id": user_id, "email": email, "now": now},
        )
    except asyncpg.UniqueViolationError:
        return False
    return bool(changed)


async def delete_user(db: Connection, user_id: UUID) -> bool:
    """Delete the user; sessions and tokens go with it (ON DELETE CASCADE)."""
    deleted = await db.fetch_val("DELETE FROM users WHERE id = :id RETURNING true", {"id": user_id})
    return bool(deleted)
