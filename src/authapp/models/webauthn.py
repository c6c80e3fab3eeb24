"""SQL for the passkey tables: webauthn_user_handles (each user's random handle),
webauthn_credentials (their public keys) and webauthn_challenges (single-use, server-side)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from quart_db import Connection

Purpose = Literal["register", "authenticate"]


@dataclass(frozen=True)
class Passkey:
    id: UUID
    user_id: UUID
    credential_id: bytes
    public_key: bytes
    sign_count: int
    transports: list[str]
    backed_up: bool
    device_type: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


_COLUMNS = """id, user_id, credential_id, public_key, sign_count, transports, backed_up,
              device_type, name, created_at, last_used_at"""


def _passkey(row: Mapping[str, Any]) -> Passkey:
    values = dict(row)
    values["credential_id"] = bytes(values["credential_id"])
    values["public_key"] = bytes(values["public_key"])
    values["transports"] = list(values["transports"])
    return Passkey(**values)


# --- user handles --------------------------------------------------------------------------


async def upsert_user_handle(db: Connection, user_id: UUID, candidate: bytes) -> bytes:
    """The user's handle: the one they have, or `candidate` from now on."""
    handle = await db.fetch_val(
        """WITH added AS (
               INSERT INTO webauthn_user_handles (user_id, user_handle)
                    VALUES (:user_id, :candidate)
               ON CONFLICT (user_id) DO NOTHING
               RETURNING user_handle)
           SELECT user_handle FROM added
            UNION ALL
           SELECT user_handle FROM webauthn_user_handles WHERE user_id = :user_id""",
        {"user_id": user_id, "candidate": candidate},
    )
    if handle is None:  # a parallel request added it after this statement's snapshot
        handle = await select_user_handle(db, user_id)
        assert handle is not None
    return bytes(handle)


async def select_user_handle(db: Connection, user_id: UUID) -> bytes | None:
    handle = await db.fetch_val(
        "SELECT user_handle FROM webauthn_user_handles WHERE user_id = :user_id",
        {"user_id": user_id},
    )
    return None if handle is None else bytes(handle)


# --- credentials ---------------------------------------------------------------------------


async def insert_passkey(
    db: Connection,
    *,
    user_id: UUID,
    credential_id: bytes,
    public_key: bytes,
    sign_count: int,
    transports: list[str],
    backed_up: bool,
    device_type: str,
    name: str,
    now: datetime,
) -> Passkey | Literal["credential_taken", "name_taken"]:
    """Add a credential; or say which unique rule refused it (the credential is someone's
    already, or the user has a passkey of this name)."""
    try:
        async with db.transaction():  # a savepoint: the caller's transaction goes on
            row = await db.fetch_first(
                f"""INSERT INTO webauthn_credentials (user_id, credential_id, public_key,
                                   sign_count, transports, backed_up, device_type, name, created_at)
                         VALUES (:user_id, :credential_id, :public_key, :sign_count, :transports,
                                 :backed_up, :device_type, :name, :now)
                      RETURNING {_COLUMNS}""",  # noqa: S608 (a fixed list of columns)
                {"user_id": user_id, "credential_id": credential_id, "public_key": public_key,
                 "sign_count": sign_count, "transports": transports, "backed_up": backed_up,
                 "device_type": device_type, "name": name, "now": now},
            )  # fmt: skip
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name == "webauthn_credentials_name_unique":
            return "name_taken"
        return "credential_taken"
    assert row is not None
    return _passkey(row)


async def select_passkeys_of_user(db: Connection, user_id: UUID) -> list[Passkey]:
    rows = await db.fetch_all(
        f"""SELECT {_COLUMNS} FROM webauthn_credentials WHERE user_id = :user_id
          ORDER BY created_at, id""",  # noqa: S608
        {"user_id": user_id},
    )
    return [_passkey(row) for row in rows]


async def count_passkeys_of_user(db: Connection, user_id: UUID) -> int:
    count = await db.fetch_val(
        "SELECT count(*) FROM webauthn_credentials WHERE user_id = :user_id",
        {"user_id": user_id},
    )
    return int(count or 0)


async def select_passkey_by_credential_id(db: Connection, credential_id: bytes) -> Passkey | None:
    row = await db.fetch_first(
        f"SELECT {_COLUMNS} FROM webauthn_credentials WHERE credential_id = :credential_id",  # noqa: S608
        {"credential_id": credential_id},
    )
    return None if row is None else _passkey(row)


async def update_passkey_name(
    db: Connection, user_id: UUID, passkey_id: UUID, name: str
) -> Passkey | Literal["not_found", "name_taken"]:
    try:
        async with db.transaction():
            row = await db.fetch_first(
                f"""UPDATE webauthn_credentials SET name = :name
                     WHERE id = :id AND user_id = :user_id
                 RETURNING {_COLUMNS}""",  # noqa: S608
                {"id": passkey_id, "user_id": user_id, "name": name},
            )
    except asyncpg.UniqueViolationError:
        return "name_taken"
    return "not_found" if row is None else _passkey(row)


async def update_passkey_used(
    db: Connection, passkey_id: UUID, *, sign_count: int, backed_up: bool, now: datetime
) -> bool:
    """Take the counter the authenticator reported; False when a parallel use of the same key
    took a counter as high first (only one of two equal assertions may win)."""
    updated = await db.fetch_val(
        """UPDATE webauthn_credentials
              SET sign_count = :sign_count, backed_up = :backed_up, last_used_at = :now
            WHERE id = :id AND (sign_count < :sign_count OR (sign_count = 0 AND :sign_count = 0))
        RETURNING true""",
        {"id": passkey_id, "sign_count": sign_count, "backed_up": backed_up, "now": now},
    )
    return bool(updated)


async def delete_passkey(db: Connection, user_id: UUID, passkey_id: UUID) -> Passkey | None:
    row = await db.fetch_first(
        f"""DELETE FROM webauthn_credentials WHERE id = :id AND user_id = :user_id
        RETURNING {_COLUMNS}""",  # noqa: S608
        {"id": passkey_id, "user_id": user_id},
    )
    return None if row is None else _passkey(row)


async def delete_passkeys_of_user(db: Connection, user_id: UUID) -> int:
    """Every passkey of the user (an operator's or administrator's reset of their access)."""
    deleted = await db.fetch_val(
        """WITH deleted AS (DELETE FROM webauthn_credentials WHERE user_id = :user_id
                             RETURNING 1)
           SELECT count(*) FROM deleted""",
        {"user_id": user_id},
    )
    return int(deleted or 0)


# --- challenges ----------------------------------------------------------------------------


async def insert_challenge(
    db: Connection,
    *,
    challenge_id: bytes,
    challenge: bytes,
    purpose: Purpose,
    user_id: UUID | None,
    now: datetime,
    expires_at: datetime,
) -> None:
    """A new challenge; the dead ones (used or expired, anyone's) go in the same statement."""
    await db.execute(
        """WITH dead AS (
               DELETE FROM webauthn_challenges
                WHERE id IN (SELECT id FROM webauthn_challenges
                              WHERE used_at IS NOT NULL OR expires_at <= :now LIMIT 100)
           )
           INSERT INTO webauthn_challenges (id, challenge, purpose, user_id, created_at,
                                            expires_at)
                VALUES (:id, :challenge, :purpose, :user_id, :now, :expires_at)""",
        {"id": challenge_id, "challenge": challenge, "purpose": purpose, "user_id": user_id,
         "now": now, "expires_at": expires_at},
    )  # fmt: skip


async def update_challenge_used(
    db: Connection, challenge_id: bytes, purpose: Purpose, user_id: UUID | None, now: datetime
) -> bytes | None:
    """Use a live challenge once, whatever the answer to it proves: its bytes, or None when it
    is unknown, expired, used, of another purpose or (adding a passkey) of another user."""
    challenge = await db.fetch_val(
        """UPDATE webauthn_challenges SET used_at = :now
            WHERE id = :id AND purpose = :purpose AND used_at IS NULL AND expires_at > :now
              AND user_id IS NOT DISTINCT FROM CAST(:user_id AS uuid)
        RETURNING challenge""",
        {"id": challenge_id, "purpose": purpose, "user_id": user_id, "now": now},
    )
    return None if challenge is None else bytes(challenge)
