"""SQL for the email_tokens table: single-use tokens mailed to users, kept only as SHA-256."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from quart_db import Connection

Purpose = Literal["verify_email", "reset_password", "change_email"]

# The first key of the transaction locks that issue a user's links ("link" in ASCII): a space
# of its own, apart from quart-db's migration lock (which takes the one-bigint form).
LINK_LOCK_SPACE = 0x6C696E6B


@dataclass(frozen=True)
class EmailToken:
    user_id: UUID
    purpose: str
    email: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    # Issued under the user's security stamp as it is now (accounts/links.py: which purposes
    # a change of credentials ends).
    under_current_stamp: bool


async def insert_email_token(
    db: Connection,
    *,
    token_id: bytes,
    user_id: UUID,
    purpose: Purpose,
    email: str,
    security_stamp: UUID,
    now: datetime,
    expires_at: datetime,
) -> None:
    await db.execute(
        """INSERT INTO email_tokens (id, user_id, purpose, email, security_stamp, created_at,
                                     expires_at)
                VALUES (:id, :user_id, :purpose, :email, :stamp, :now, :expires_at)""",
        {"id": token_id, "user_id": user_id, "purpose": purpose, "email": email,
         "stamp": security_stamp, "now": now, "expires_at": expires_at},
    )  # fmt: skip


async def lock_email_tokens_of_user(db: Connection, user_id: UUID) -> None:
    """Wait for, then hold until this transaction ends, the right to issue this user's links.

    Two issuers at once would each spend the live tokens they see (none of the other's, not
    yet committed) and both insert: two live links where only the newest may work. A lock on
    the user's row would do, but a reset being spent holds its token's row and then writes
    the user's: taking them in the other order could deadlock. Nothing else takes this lock,
    and a transaction-level one is gone at commit (no state stays on a pooled connection)."""
    key = int.from_bytes(user_id.bytes[:4], "big", signed=True)  # users sharing one just queue
    await db.execute(
        "SELECT pg_advisory_xact_lock(:space, :key)", {"space": LINK_LOCK_SPACE, "key": key}
    )


async def lock_user_of_email_token(db: Connection, token_id: bytes) -> None:
    """Hold the row of the token's user (if any) for the rest of the transaction: taken before
    the token's row (accounts/links.py's check_link says why)."""
    await db.execute(
        """SELECT FROM users u JOIN email_tokens t ON t.user_id = u.id
            WHERE t.id = :id FOR NO KEY UPDATE OF u""",
        {"id": token_id},
    )


async def select_email_token(
    db: Connection, token_id: bytes, purpose: Purpose, *, lock: bool
) -> EmailToken | None:
    """The token of this purpose (another purpose's token is no token here); with `lock`,
    locked for the rest of the transaction so two uses of one token cannot both pass."""
    row = await db.fetch_first(
        f"""SELECT t.user_id, t.purpose, t.email, t.created_at, t.expires_at, t.used_at,
                   t.security_stamp = u.security_stamp AS under_current_stamp
              FROM email_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.id = :id AND t.purpose = :purpose
             {"FOR UPDATE OF t" if lock else ""}""",  # noqa: S608 (one of two fixed texts)
        {"id": token_id, "purpose": purpose},
    )
    return None if row is None else EmailToken(**row)


async def update_email_tokens_used(
    db: Connection, user_id: UUID, purposes: tuple[Purpose, ...], now: datetime
) -> None:
    """Spend every outstanding token of these purposes of a user.

    `now` was read before the rows were: a token committed since by another transaction (or
    another worker, whose clock may run a little behind) can be newer than it, so a spend is
    never dated before the token's creation (the table refuses that, and a 500 would follow)."""
    await db.execute(
        """UPDATE email_tokens SET used_at = GREATEST(:now, created_at)
            WHERE user_id = :user_id AND purpose = ANY(:purposes) AND used_at IS NULL""",
        {"user_id": user_id, "purposes": list(purposes), "now": now},
    )
