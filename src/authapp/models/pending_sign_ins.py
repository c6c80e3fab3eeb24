"""SQL for pending_sign_ins: a password proved right, waiting for the second factor; found by
the SHA-256 of the reference its cookie holds, never the reference."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from quart_db import Connection

# Live: unused, unexpired, and still under the user's security stamp and an active user.
_LIVE = """p.used_at IS NULL AND p.expires_at > :now AND p.security_stamp = u.security_stamp
           AND u.is_active"""


@dataclass(frozen=True)
class PendingSignIn:
    user_id: UUID
    remember: bool
    attempts: int  # this one included


async def insert_pending_sign_in(
    db: Connection,
    *,
    pending_id: bytes,
    user_id: UUID,
    security_stamp: UUID,
    now: datetime,
    expires_at: datetime,
    remember: bool,
    ip: str | None,
) -> None:
    """A new pending sign-in; the user's dead ones are dropped in the same statement (they
    serve nobody, and the rows stay few)."""
    await db.execute(
        """WITH dead AS (
               DELETE FROM pending_sign_ins
                WHERE user_id = :user_id AND (used_at IS NOT NULL OR expires_at <= :now)
           )
           INSERT INTO pending_sign_ins (id, user_id, security_stamp, created_at, expires_at,
                                         remember, ip)
                VALUES (:id, :user_id, :stamp, :now, :expires_at, :remember, CAST(:ip AS inet))""",
        {"id": pending_id, "user_id": user_id, "stamp": security_stamp, "now": now,
         "expires_at": expires_at, "remember": remember, "ip": ip},
    )  # fmt: skip


async def update_pending_attempt_counted(
    db: Connection, pending_id: bytes, now: datetime, max_attempts: int
) -> PendingSignIn | None:
    """Count a try on a live pending sign-in before its code is checked (so parallel guesses
    each count), or None when there is no such live sign-in or its tries are spent."""
    row = await db.fetch_first(
        f"""UPDATE pending_sign_ins p SET attempts = p.attempts + 1
              FROM users u
             WHERE p.id = :id AND u.id = p.user_id AND {_LIVE} AND p.attempts < :max_attempts
         RETURNING p.user_id, p.remember, p.attempts""",  # noqa: S608 (a fixed fragment)
        {"id": pending_id, "now": now, "max_attempts": max_attempts},
    )
    return None if row is None else PendingSignIn(**row)


async def select_live_pending_user(db: Connection, pending_id: bytes, now: datetime) -> UUID | None:
    user_id = await db.fetch_val(
        f"""SELECT p.user_id FROM pending_sign_ins p JOIN users u ON u.id = p.user_id
             WHERE p.id = :id AND {_LIVE}""",  # noqa: S608 (a fixed fragment)
        {"id": pending_id, "now": now},
    )
    return None if user_id is None else UUID(str(user_id))


async def update_pending_used(db: Connection, pending_id: bytes, now: datetime) -> bool:
    """Use a live pending sign-in once; False when it was used, expired or outlived meanwhile."""
    used = await db.fetch_val(
        f"""UPDATE pending_sign_ins p SET used_at = :now
              FROM users u
             WHERE p.id = :id AND u.id = p.user_id AND {_LIVE}
         RETURNING true""",  # noqa: S608 (a fixed fragment)
        {"id": pending_id, "now": now},
    )
    return bool(used)


async def delete_pending_sign_ins_of_user(db: Connection, user_id: UUID) -> int:
    deleted = await db.fetch_val(
        """WITH deleted AS (DELETE FROM pending_sign_ins WHERE user_id = :user_id RETURNING 1)
           SELECT count(*) FROM deleted""",
        {"user_id": user_id},
    )
    return int(deleted or 0)
