"""SQL for the users table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
from quart_db import Connection

from .mfa import HAS_SECOND_FACTOR
from .roles import PERMISSIONS

# A CTE that turns off waiting for the disk at this statement's commit, for writes that a
# crash may lose (counts, "last seen" marks) on paths whose speed matters. It only takes
# effect where a FROM names it: PostgreSQL runs an unreferenced SELECT in WITH not at all.
QUICK_COMMIT = "quick_commit AS (SELECT set_config('synchronous_commit', 'off', true))"

_COLUMNS = """id, email, email_key, password_hash, display_name, is_active, email_verified_at,
              created_at, updated_at, last_login_at, failed_logins, locked_until, security_stamp"""


@dataclass(frozen=True)
class User:
    id: UUID
    email: str
    email_key: str  # authapp.emails.email_key(email): what lookups and the unique index compare
    password_hash: str
    display_name: str
    is_active: bool
    email_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    failed_logins: int
    locked_until: datetime | None
    # Replaced whenever the credentials change: what was granted under the old ones (device
    # cookies) names the old stamp and is worth nothing after.
    security_stamp: UUID


@dataclass(frozen=True)
class Account:
    """The user as an authenticated request sees them (by a session or an API token)."""

    user_id: UUID
    email: str
    email_key: str
    display_name: str
    email_verified_at: datetime | None
    # As the credential was resolved: what this request does on behalf of those credentials
    # stands only while they are the account's (accounts/credentials.py).
    security_stamp: UUID
    created_at: datetime
    last_login_at: datetime | None
    previous_login_at: datetime | None
    previous_login_ip: str | None
    has_second_factor: bool  # now, not when the credential was granted (MFA_REQUIRED asks)
    permissions: list[str]  # through the user's roles, now (auth_required(permission=...) asks)


# The columns of Account, for queries that join users as `u` to the credential they resolve.
ACCOUNT_COLUMNS = f"""u.id AS user_id, u.email, u.email_key, u.display_name, u.email_verified_at,
                      u.security_stamp,
                      u.created_at, u.last_login_at, u.previous_login_at,
                      host(u.previous_login_ip) AS previous_login_ip,
                      {HAS_SECOND_FACTOR} AS has_second_factor,
                      {PERMISSIONS} AS permissions"""


async def select_user_by_email_key(db: Connection, email_key: str) -> User | None:
    row = await db.fetch_first(
        f"SELECT {_COLUMNS} FROM users WHERE email_key = :email_key",  # noqa: S608
        {"email_key": email_key},
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


@dataclass(frozen=True)
class ListedUser(User):
    """A user as the administrators' table shows them."""

    roles: list[str]


@dataclass(frozen=True)
class UserFilter:
    """What the administrators' table asks for: `key_pattern` and `name_pattern` are LIKE
    patterns (escaped by the caller) on the address key and the display name; `after` is the
    (created_at, id) of the last user of the page before."""

    key_pattern: str | None = None
    name_pattern: str | None = None
    active: bool | None = None
    role: str | None = None
    after: tuple[datetime, UUID] | None = None


async def select_users_page(db: Connection, where: UserFilter, limit: int) -> list[ListedUser]:
    """Users matching `where`, the newest first, (created_at, id) breaking ties: a stable
    order, so a page ends where the next begins whatever is added meanwhile."""
    after_at, after_id = where.after or (None, None)
    rows = await db.fetch_all(
        f"""SELECT {_COLUMNS},
                   ARRAY(SELECT ur.role FROM user_roles ur WHERE ur.user_id = u.id
                          ORDER BY ur.role) AS roles
              FROM users u
             WHERE (CAST(:key_pattern AS text) IS NULL
                    OR u.email_key LIKE :key_pattern ESCAPE '\\'
                    OR u.display_name ILIKE :name_pattern ESCAPE '\\')
               AND (CAST(:active AS boolean) IS NULL OR u.is_active = :active)
               AND (CAST(:role AS text) IS NULL OR EXISTS (
                        SELECT 1 FROM user_roles ur WHERE ur.user_id = u.id AND ur.role = :role))
               AND (CAST(:after_at AS timestamptz) IS NULL
                    OR (u.created_at, u.id) < (CAST(:after_at AS timestamptz),
                                               CAST(:after_id AS uuid)))
          ORDER BY u.created_at DESC, u.id DESC
             LIMIT :limit""",  # noqa: S608 (a fixed fragment, values are bound)
        {"key_pattern": where.key_pattern, "name_pattern": where.name_pattern,
         "active": where.active, "role": where.role, "after_at": after_at,
         "after_id": after_id, "limit": limit},
    )  # fmt: skip
    return [ListedUser(**row) for row in rows]


async def insert_user(
    db: Connection,
    *,
    email: str,
    email_key: str,
    password_hash: str,
    display_name: str,
    now: datetime,
) -> User | None:
    """Insert a user, or return None when another account has the address's key."""
    row = await db.fetch_first(
        f"""INSERT INTO users (email, email_key, password_hash, display_name, created_at,
                               updated_at)
                 VALUES (:email, :email_key, :password_hash, :display_name, :now, :now)
            ON CONFLICT (email_key) DO NOTHING
              RETURNING {_COLUMNS}""",  # noqa: S608
        {"email": email, "email_key": email_key, "password_hash": password_hash,
         "display_name": display_name, "now": now},
    )  # fmt: skip
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
class TrustedDevice:
    """What a device cookie claims: the user it signed in, under which security stamp."""

    user_id: UUID
    security_stamp: UUID


@dataclass(frozen=True)
class CountedAttempt:
    user: User  # as it was before this attempt
    # None: nothing was counted, because the account is locked or the device is trusted.
    attempt: Attempt | None
    trusted: bool  # the device cookie names this user and their current security stamp
    # A right password alone does not sign them in (read in the same statement, so a wrong
    # password costs the same whether or not the account has one).
    has_second_factor: bool


async def update_user_attempt_counted_by_email_key(
    db: Connection,
    email_key: str,
    *,
    now: datetime,
    lockout: Lockout,
    device: TrustedDevice | None = None,
) -> CountedAttempt | None:
    """The user with this address key, with one more failed password counted unless `device`
    is theirs; None for no user."""
    return await _count_attempt(db, "email_key = :key", email_key, now, lockout, device)


async def update_user_attempt_counted_by_id(
    db: Connection,
    user_id: UUID,
    *,
    now: datetime,
    lockout: Lockout,
    device: TrustedDevice | None = None,
) -> CountedAttempt | None:
    """The user with this id, with one more failed password counted unless `device` is
    theirs; None for no user."""
    return await _count_attempt(db, "id = :key", user_id, now, lockout, device)


async def _count_attempt(
    db: Connection,
    where: str,
    key: object,
    now: datetime,
    lockout: Lockout,
    device: TrustedDevice | None,
) -> CountedAttempt | None:
    """Find the user and count an attempt, before its hash is checked, in one statement, so
    concurrent attempts each count and none slips past a lock; unless already locked, lock
    from the threshold on. An attempt from the user's trusted device (its cookie names them
    and their current stamp) is not counted here: the lockout is for untrusted clients, and a
    trusted device has a budget of its own (the rate limits).

    Its commit does not wait for the disk (synchronous_commit is off for this statement's own
    transaction; a crash may forget a few counts), so a known email answers as fast as an
    unknown one, which only reads. One round trip, no BEGIN, SET or COMMIT of its own.
    """
    row = await db.fetch_first(
        f"""WITH {QUICK_COMMIT}, target AS (
                SELECT {_COLUMNS},
                       (id = CAST(:device_user AS uuid)
                        AND security_stamp = CAST(:device_stamp AS uuid)) IS TRUE AS trusted,
                       {HAS_SECOND_FACTOR} AS has_second_factor
                  FROM users u, quick_commit WHERE {where}
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
                 WHERE u.id = target.id AND NOT target.trusted
                   AND (u.locked_until IS NULL OR u.locked_until <= :now)
             RETURNING u.failed_logins AS attempt_failed_logins,
                       u.locked_until AS attempt_locked_until
            )
            SELECT * FROM target LEFT JOIN counted ON true""",  # noqa: S608 (fixed fragments)
        {"key": key, "now": now, "threshold": lockout.threshold, "delay": lockout.delay,
         "max_delay": lockout.max_delay,
         "device_user": device.user_id if device else None,
         "device_stamp": device.security_stamp if device else None},
    )  # fmt: skip
    if row is None:
        return None
    values = dict(row)
    failed_logins = values.pop("attempt_failed_logins")
    locked_until = values.pop("attempt_locked_until")
    trusted = values.pop("trusted")
    has_second_factor = values.pop("has_second_factor")
    attempt = None if failed_logins is None else Attempt(failed_logins, locked_until)
    return CountedAttempt(User(**values), attempt, trusted, has_second_factor)


async def update_user_attempt_uncounted(db: Connection, user_id: UUID, lockout: Lockout) -> None:
    """Take back one counted attempt that proved right but forgives nothing: a password of an
    account with a second factor, whose failures only the second factor forgives. Below the
    threshold no lock can stand (only a count at the threshold locks), so it lifts any."""
    await db.execute(
        """UPDATE users
              SET failed_logins = failed_logins - 1,
                  locked_until = CASE WHEN failed_logins - 1 < :threshold THEN NULL
                                      ELSE locked_until END
            WHERE id = :id AND failed_logins > 0""",
        {"id": user_id, "threshold": lockout.threshold},
    )


# When a right password forgives the failures before it: always, or with `unless_locked_at`
# only if the account is not locked then (a trusted device's success must not give a stranger
# who locked the account a fresh run of guesses). The one rule of both statements that
# forgive: this one, and a sign-in's (models/sessions.py, insert_session_signed_in).
FORGIVES = """(CAST(:unless_locked_at AS timestamptz) IS NULL OR locked_until IS NULL
               OR locked_until <= :unless_locked_at)"""


async def update_user_attempts_cleared(
    db: Connection, user_id: UUID, *, unless_locked_at: datetime | None = None
) -> None:
    """The password proved right (or was reset): the failures before it are forgiven (see
    FORGIVES for `unless_locked_at`)."""
    await db.execute(
        f"""UPDATE users SET failed_logins = 0, locked_until = NULL
             WHERE id = :id AND (failed_logins > 0 OR locked_until IS NOT NULL)
               AND {FORGIVES}""",  # noqa: S608 (a fixed fragment)
        {"id": user_id, "unless_locked_at": unless_locked_at},
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


async def update_user_email(
    db: Connection, user_id: UUID, email: str, email_key: str, now: datetime
) -> bool:
    """Move the user to a new (and so verified) address; False when another account has it."""
    try:
        changed = await db.fetch_val(
            """UPDATE users SET email = :email, email_key = :email_key, email_verified_at = :now,
                                updated_at = :now
                WHERE id = :id AND is_active
            RETURNING true""",
            {"id": user_id, "email": email, "email_key": email_key, "now": now},
        )
    except asyncpg.UniqueViolationError:
        return False
    return bool(changed)


async def update_user_security_stamp(
    db: Connection, user_id: UUID, expected: UUID | None
) -> UUID | None:
    """A new stamp, returned: whatever names the old one (device cookies) stops counting. With
    `expected`, only if the stamp is still that one (None, and nothing changed, otherwise)."""
    stamp = await db.fetch_val(
        """UPDATE users SET security_stamp = gen_random_uuid()
            WHERE id = :id AND (CAST(:expected AS uuid) IS NULL OR security_stamp = :expected)
        RETURNING security_stamp""",
        {"id": user_id, "expected": expected},
    )
    return stamp if isinstance(stamp, UUID) else None


async def lock_user_under_stamp(db: Connection, user_id: UUID, stamp: UUID) -> bool:
    """Hold the user's row (shared) for the rest of the transaction, if the user is active
    under `stamp`: a change of credentials (which writes the row first) waits for this one to
    commit, then ends what it granted; or this waits for the change, then finds a new stamp."""
    held = await db.fetch_val(
        """SELECT true FROM users
            WHERE id = :id AND security_stamp = :stamp AND is_active FOR SHARE""",
        {"id": user_id, "stamp": stamp},
    )
    return bool(held)


async def delete_user(db: Connection, user_id: UUID) -> bool:
    """Delete the user; sessions and tokens go with it (ON DELETE CASCADE)."""
    deleted = await db.fetch_val("DELETE FROM users WHERE id = :id RETURNING true", {"id": user_id})
    return bool(deleted)
