"""SQL for the sessions table; a session is found by the SHA-256 of its token, never the token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from quart_db import Connection


@dataclass(frozen=True)
class SessionAccount:
    """A live session joined with its active user: what one authenticated request needs."""

    session_id: bytes
    session_created_at: datetime
    expires_at: datetime
    remember: bool
    user_id: UUID
    email: str
    display_name: str
    email_verified_at: datetime | None
    created_at: datetime
    last_login_at: datetime | None
    previous_login_at: datetime | None
    previous_login_ip: str | None


async def select_live_session_account(
    db: Connection, session_id: bytes, now: datetime
) -> SessionAccount | None:
    """One query per authenticated request: the session, unexpired and unrevoked, and its user."""
    row = await db.fetch_first(
        """SELECT s.id AS session_id, s.created_at AS session_created_at, s.expires_at,
                  s.remember, u.id AS user_id, u.email, u.display_name, u.email_verified_at,
                  u.created_at, u.last_login_at, u.previous_login_at,
                  host(u.previous_login_ip) AS previous_login_ip
             FROM sessions s
             JOIN users u ON u.id = s.user_id
            WHERE s.id = :id AND s.revoked_at IS NULL AND s.expires_at > :now AND u.is_active""",
        {"id": session_id, "now": now},
    )
    return None if row is None else SessionAccount(**row)


async def insert_session(
    db: Connection,
    *,
    session_id: bytes,
    user_id: UUID,
    now: datetime,
    expires_at: datetime,
    remember: bool,
    ip: str | None,
    user_agent: str | None,
) -> None:
    await db.execute(
        """INSERT INTO sessions (id, user_id, created_at, last_seen_at, expires_at, remember,
                                 ip, user_agent)
                VALUES (:id, :user_id, :now, :now, :expires_at, :remember,
                        CAST(:ip AS inet), :user_agent)""",
        {
            "id": session_id,
            "user_id": user_id,
            "now": now,
            "expires_at": expires_at,
            "remember": remember,
            "ip": ip,
            "user_agent": user_agent,
        },
    )


async def update_session_revoked(db: Connection, session_id: bytes, now: datetime) -> None:
    await db.execute(
        "UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL",
        {"id": session_id, "now": now},
    )


async def delete_dead_sessions_of_user(db: Connection, user_id: UUID, now: datetime) -> None:
    """Expired and revoked sessions serve nobody; dropping them keeps each user's rows few."""
    await db.execute(
        """DELETE FROM sessions
            WHERE user_id = :user_id AND (expires_at <= :now OR revoked_at IS NOT NULL)""",
        {"user_id": user_id, "now": now},
    )


async def update_other_sessions_revoked(
    db: Connection, user_id: UUID, keep_id: bytes, now: datetime
) -> int:
    """Revoke every live session of a user but one; return how many there were."""
    revoked = await db.fetch_val(
        """WITH revoked AS (
               UPDATE sessions SET revoked_at = :now
                WHERE user_id = :user_id AND id <> :keep_id
                  AND revoked_at IS NULL AND expires_at > :now
            RETURNING 1)
           SELECT count(*) FROM revoked""",
        {"user_id": user_id, "keep_id": keep_id, "now": now},
    )
    return int(revoked or 0)


async def update_sessions_revoked_of_user(db: Connection, user_id: UUID, now: datetime) -> None:
    await db.execute(
        "UPDATE sessions SET revoked_at = :now WHERE user_id = :user_id AND revoked_at IS NULL",
        {"user_id": user_id, "now": now},
    )
