"""SQL for the second-factor tables: mfa_totp (an authenticator app's encrypted secret per user)
and mfa_recovery_codes (keyed digests of single-use codes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from quart_db import Connection

# Whether the user `u` has a second factor: what the sign-in asks for and
# AUTHAPP_MFA_REQUIRED checks, resolved with the session or token (no extra round trip).
# A passkey is one too (models/webauthn.py).
HAS_SECOND_FACTOR = """(EXISTS (SELECT 1 FROM mfa_totp t
                                WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL)
                        OR EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = u.id))"""


@dataclass(frozen=True)
class Totp:
    user_id: UUID
    secret_encrypted: str
    created_at: datetime
    confirmed_at: datetime | None
    last_used_step: int | None


_TOTP_COLUMNS = "user_id, secret_encrypted, created_at, confirmed_at, last_used_step"


async def select_totp(db: Connection, user_id: UUID) -> Totp | None:
    row = await db.fetch_first(
        f"SELECT {_TOTP_COLUMNS} FROM mfa_totp WHERE user_id = :user_id",  # noqa: S608
        {"user_id": user_id},
    )
    return None if row is None else Totp(**row)


async def upsert_totp_pending(
    db: Connection, user_id: UUID, secret_encrypted: str, now: datetime
) -> bool:
    """Start (or restart) an enrolment; False when the user's authenticator is already on."""
    replaced = await db.fetch_val(
        """INSERT INTO mfa_totp (user_id, secret_encrypted, created_at)
                VALUES (:user_id, :secret, :now)
           ON CONFLICT (user_id) DO UPDATE
                   SET secret_encrypted = EXCLUDED.secret_encrypted,
                       created_at = EXCLUDED.created_at, last_used_step = NULL
                 WHERE mfa_totp.confirmed_at IS NULL
             RETURNING true""",
        {"user_id": user_id, "secret": secret_encrypted, "now": now},
    )
    return bool(replaced)


async def update_totp_step_used(
    db: Connection, user_id: UUID, step: int, *, confirmed: bool
) -> bool:
    """Accept a code of time step `step` once: only if no code of that step or a later one was
    accepted before (a replayed code, or an older one after a newer, is refused). `confirmed`
    says which authenticator: the one that is on, or the enrolment waiting for its first code."""
    accepted = await db.fetch_val(
        """UPDATE mfa_totp SET last_used_step = :step
            WHERE user_id = :user_id
              AND (confirmed_at IS NOT NULL) = :confirmed
              AND (last_used_step IS NULL OR last_used_step < :step)
        RETURNING true""",
        {"user_id": user_id, "step": step, "confirmed": confirmed},
    )
    return bool(accepted)


async def update_totp_confirmed(db: Connection, user_id: UUID, now: datetime) -> bool:
    confirmed = await db.fetch_val(
        """UPDATE mfa_totp SET confirmed_at = :now
            WHERE user_id = :user_id AND confirmed_at IS NULL
        RETURNING true""",
        {"user_id": user_id, "now": now},
    )
    return bool(confirmed)


async def delete_totp(db: Connection, user_id: UUID) -> bool:
    """Switch the authenticator off (and its recovery codes with it); False if it was not on."""
    deleted = await db.fetch_val(
        """WITH codes AS (DELETE FROM mfa_recovery_codes WHERE user_id = :user_id)
           DELETE FROM mfa_totp WHERE user_id = :user_id AND confirmed_at IS NOT NULL
           RETURNING true""",
        {"user_id": user_id},
    )
    return bool(deleted)


async def select_totp_secrets_after(
    db: Connection, after: UUID | None, limit: int
) -> list[tuple[UUID, str]]:
    """A page of every stored secret, in user order, locked for a re-encryption."""
    rows = await db.fetch_all(
        """SELECT user_id, secret_encrypted FROM mfa_totp
            WHERE CAST(:after AS uuid) IS NULL OR user_id > :after
         ORDER BY user_id LIMIT :limit FOR UPDATE""",
        {"after": after, "limit": limit},
    )
    return [(row["user_id"], row["secret_encrypted"]) for row in rows]


async def update_totp_secret(db: Connection, user_id: UUID, secret_encrypted: str) -> None:
    await db.execute(
        "UPDATE mfa_totp SET secret_encrypted = :secret WHERE user_id = :user_id",
        {"user_id": user_id, "secret": secret_encrypted},
    )


# --- recovery codes --------------------------------------------------------------------------


async def replace_recovery_codes(
    db: Connection, user_id: UUID, digests: list[bytes], now: datetime
) -> None:
    """A new set: every code of before dies."""
    await db.execute(
        """WITH old AS (DELETE FROM mfa_recovery_codes WHERE user_id = :user_id)
           INSERT INTO mfa_recovery_codes (user_id, digest, created_at)
                SELECT :user_id, digest, :now FROM unnest(CAST(:digests AS bytea[])) AS digest""",
        {"user_id": user_id, "digests": digests, "now": now},
    )


async def select_unused_recovery_digests(db: Connection, user_id: UUID) -> list[bytes]:
    rows = await db.fetch_all(
        """SELECT digest FROM mfa_recovery_codes
            WHERE user_id = :user_id AND used_at IS NULL""",
        {"user_id": user_id},
    )
    return [bytes(row["digest"]) for row in rows]


async def update_recovery_code_used(
    db: Connection, user_id: UUID, digest: bytes, now: datetime
) -> int | None:
    """Use a code once; return how many unused codes are left, or None if it was used already
    (a parallel request won)."""
    left = await db.fetch_val(
        """WITH used AS (
               UPDATE mfa_recovery_codes SET used_at = :now
                WHERE user_id = :user_id AND digest = :digest AND used_at IS NULL
            RETURNING 1)
           SELECT CASE WHEN EXISTS (SELECT 1 FROM used)
                       THEN (SELECT count(*) - 1 FROM mfa_recovery_codes
                              WHERE user_id = :user_id AND used_at IS NULL) END""",
        {"user_id": user_id, "digest": digest, "now": now},
    )
    return None if left is None else int(left)


async def count_unused_recovery_codes(db: Connection, user_id: UUID) -> int:
    left = await db.fetch_val(
        """SELECT count(*) FROM mfa_recovery_codes
            WHERE user_id = :user_id AND used_at IS NULL""",
        {"user_id": user_id},
    )
    return int(left or 0)
