"""SQL for the api_tokens table: personal access tokens, found by the SHA-256 of the token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from quart_db import Connection

from .users import ACCOUNT_COLUMNS, QUICK_COMMIT, Account

_COLUMNS = "id, name, scopes, created_at, last_used_at, expires_at"


@dataclass(frozen=True)
class ApiToken:
    """A token as its owner sees it in the list (never the token or its hash)."""

    id: UUID
    name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime


@dataclass(frozen=True)
class TokenAccount(Account):
    """A live token and its active user: what one request signed in by a bearer token needs."""

    token_id: UUID
    scopes: list[str]


async def select_live_token_accounts(
    db: Connection, token_hashes: list[bytes], now: datetime, *, touch_before: datetime
) -> dict[bytes, TokenAccount]:
    """One statement for the bearer requests of a turn (see BatchLoader): each live token
    with its user, marking it used at most once per throttle period (a commit that does not
    wait for the disk)."""
    rows = await db.fetch_all(
        f"""WITH {QUICK_COMMIT}, live AS (
                SELECT t.token_hash, t.id AS token_id, t.scopes, {ACCOUNT_COLUMNS}
                  FROM quick_commit, api_tokens t
                  JOIN users u ON u.id = t.user_id
                 WHERE t.token_hash = ANY(CAST(:token_hashes AS bytea[]))
                   AND t.expires_at > :now AND u.is_active
            ), touched AS (
                UPDATE api_tokens t SET last_used_at = :now
                  FROM live
                 WHERE t.id = live.token_id
                   AND (t.last_used_at IS NULL OR t.last_used_at < :touch_before)
            )
            SELECT * FROM live""",  # noqa: S608 (a fixed fragment, values are bound)
        {"token_hashes": token_hashes, "now": now, "touch_before": touch_before},
    )
    accounts = {}
    for row in rows:
        values = dict(row)
        token_hash = values.pop("token_hash")
        accounts[token_hash] = TokenAccount(**values)
    return accounts


async def select_live_tokens_of_user(
    db: Connection, user_id: UUID, now: datetime
) -> list[ApiToken]:
    rows = await db.fetch_all(
        f"""SELECT {_COLUMNS} FROM api_tokens
             WHERE user_id = :user_id AND expires_at > :now
          ORDER BY created_at DESC""",  # noqa: S608
        {"user_id": user_id, "now": now},
    )
    return [ApiToken(**row) for row in rows]


async def count_live_tokens_of_user(db: Connection, user_id: UUID, now: datetime) -> int:
    count = await db.fetch_val(
        "SELECT count(*) FROM api_tokens WHERE user_id = :user_id AND expires_at > :now",
        {"user_id": user_id, "now": now},
    )
    return int(count or 0)


async def insert_api_token(
    db: Connection,
    *,
    token_hash: bytes,
    user_id: UUID,
    name: str,
    scopes: list[str],
    now: datetime,
    expires_at: datetime,
) -> ApiToken | None:
    """Insert a token, or return None when the user has a token of that name (whatever its case)."""
    row = await db.fetch_first(
        f"""INSERT INTO api_tokens (token_hash, user_id, name, scopes, created_at, expires_at)
                 VALUES (:token_hash, :user_id, :name, :scopes, :now, :expires_at)
            ON CONFLICT (user_id, lower(name)) DO NOTHING
              RETURNING {_COLUMNS}""",  # noqa: S608
        {
            "token_hash": token_hash,
            "user_id": user_id,
            "name": name,
            "scopes": scopes,
            "now": now,
            "expires_at": expires_at,
        },
    )
    return None if row is None else ApiToken(**row)


async def delete_api_token(db: Connection, user_id: UUID, token_id: UUID) -> str | None:
    """Delete one token of the user; return its name, or None when they have no such token."""
    name = await db.fetch_val(
        "DELETE FROM api_tokens WHERE id = :id AND user_id = :user_id RETURNING name",
        {"id": token_id, "user_id": user_id},
    )
    return name if isinstance(name, str) else None


async def delete_expired_tokens_of_user(db: Connection, user_id: UUID, now: datetime) -> None:
    await db.execute(
        "DELETE FROM api_tokens WHERE user_id = :user_id AND expires_at <= :now",
        {"user_id": user_id, "now": now},
    )


async def delete_api_tokens_of_user(db: Connection, user_id: UUID) -> int:
    deleted = await db.fetch_val(
        """WITH deleted AS (DELETE FROM api_tokens WHERE user_id = :user_id RETURNING 1)
           SELECT count(*) FROM deleted""",
        {"user_id": user_id},
    )
    return int(deleted or 0)
