"""SQL for the email_tokens table: single-use tokens mailed to users, kept only as SHA-256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from quart_db import Connection

Purpose = Literal["verify_email", "reset_password", "change_email"]


@dataclass(frozen=True)
class EmailToken:
    user_id: UUID
    purpose: str
    email: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


async def insert_email_token(
    db: Connection,
    *,
    token_id: bytes,
    user_id: UUID,
    purpose: Purpose,
    email: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    await db.execute(
        """INSERT INTO email_tokens (id, user_id, purpose, email, created_at, expires_at)
                VALUES (:id, :user_id, :purpose, :email, :now, :expires_at)""",
        {"id": token_id, "user_id": user_id, "purpose": purpose, "email": email, "now": now,
         "expires_at": expires_at},
    )  # fmt: skip


async def select_email_token(
    db: Connection, token_id: bytes, purpose: Purpose
) -> EmailToken | None:
    """The token of this purpose (another purpose's token is no token here), locked for the
    rest of the transaction so two uses of one token cannot both pass."""
    row = await db.fetch_first(
        """SELECT user_id, purpose, email, created_at, expires_at, used_at
             FROM email_tokens WHERE id = :id AND purpose = :purpose
              FOR UPDATE""",
        {"id": token_id, "purpose": purpose},
    )
    return None if row is None else EmailToken(**row)


async def update_email_tokens_used(
    db: Connection, user_id: UUID, purposes: tuple[Purpose, ...], now: datetime
) -> None:
    """Spend every outstanding token of these purposes of a user."""
    await db.execute(
        """UPDATE email_tokens SET used_at = :now
            WHERE user_id = :user_id AND purpose = ANY(:purposes) AND used_at IS NULL""",
        {"user_id": user_id, "purposes": list(purposes), "now": now},
    )
