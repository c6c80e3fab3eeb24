"""SQL for the sessions table; a session is found by the SHA-256 of its token, never the token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from quart_db import Connection

from .users import ACCOUNT_COLUMNS, FORGIVES, QUICK_COMMIT, Account


@dataclass(frozen=True)
class Liveness:
    """What makes a session live at `now`: unrevoked, unexpired, and seen since its idle cutoff
    (browser sessions and remembered ones idle out at different times)."""

    now: datetime
    session_seen_after: datetime
    remember_seen_after: datetime

    def values(self, **more: Any) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, a measurable share of every signed-in request.
        return {
            "now": self.now,
            "session_seen_after": self.session_seen_after,
            "remember_seen_after": self.remember_seen_after,
            **more,
        }


_LIVE = """s.revoked_at IS NULL AND s.expires_at > :now
           AND s.last_seen_at > CASE WHEN s.remember
                                     THEN CAST(:remember_seen_after AS timestamptz)
                                     ELSE CAST(:session_seen_after AS timestamptz) END"""


# Revoking all of a user's sessions at `now`, read before the rows were: a sign-in committed
# since (another worker, whose clock may run a little behind) can be newer, and the table
# refuses a revocation dated before the session (a 500 for the one revoking).
_REVOKED_NOW = "revoked_at = GREATEST(:now, created_at)"


@dataclass(frozen=True)
class SessionAccount(Account):
    """A live session and its active user: what one request signed in by cookie needs."""

    session_id: bytes
    session_public_id: UUID
    session_created_at: datetime
    expires_at: datetime
    remember: bool
    authenticated_at: datetime
    amr: list[str]  # how it was signed in (RFC 8176): "pwd", then "otp" or "recovery"


@dataclass(frozen=True)
class SessionRow:
    """A live session as its owner sees it in the list (never its token or its hash)."""

    public_id: UUID
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    last_seen_ip: str | None
    user_agent: str | None
    remember: bool
    expires_at: datetime
    amr: list[str]


async def select_live_session_accounts(
    db: Connection, asked: dict[bytes, str | None], live: Liveness, *, touch_before: datetime
) -> dict[bytes, SessionAccount]:
    """One statement for the signed-in requests of a turn (see BatchLoader): each asked
    session that is live, with its user, and, for those last marked seen before
    `touch_before`, a new mark from the address that asked (so at most one write a minute,
    not one a request, and its commit does not wait for the disk). The addresses go as
    text: asyncpg would parse each into an ipaddress object for a write once a minute."""
    rows = await db.fetch_all(
        f"""WITH {QUICK_COMMIT}, asked AS (
                SELECT id, ip
                  FROM unnest(CAST(:ids AS bytea[]), CAST(:ips AS text[])) AS asked(id, ip),
                       quick_commit
            ), live AS (
                SELECT s.id AS session_id, s.public_id AS session_public_id,
                       s.created_at AS session_created_at, s.expires_at, s.remember,
                       s.authenticated_at, s.amr, s.last_seen_at, asked.ip AS asked_ip,
                       {ACCOUNT_COLUMNS}
                  FROM asked
                  JOIN sessions s ON s.id = asked.id
                  JOIN users u ON u.id = s.user_id
                 WHERE u.is_active AND {_LIVE}
            ), touched AS (
                UPDATE sessions s
                   SET last_seen_at = :now, last_seen_ip = CAST(live.asked_ip AS inet)
                  FROM live
                 WHERE s.id = live.session_id AND s.last_seen_at < :touch_before
            )
            SELECT * FROM live""",  # noqa: S608 (fixed fragments, values are bound)
        live.values(ids=list(asked), ips=list(asked.values()), touch_before=touch_before),
    )
    accounts = {}
    for row in rows:
        values = dict(row)
        del values["last_seen_at"], values["asked_ip"]  # only for the liveness test and mark
        accounts[values["session_id"]] = SessionAccount(**values)
    return accounts


async def select_live_sessions_of_user(
    db: Connection, user_id: UUID, live: Liveness
) -> list[SessionRow]:
    rows = await db.fetch_all(
        f"""SELECT s.public_id, s.created_at, s.last_seen_at, host(s.ip) AS ip,
                   host(coalesce(s.last_seen_ip, s.ip)) AS last_seen_ip, s.user_agent,
                   s.remember, s.expires_at, s.amr
              FROM sessions s
             WHERE s.user_id = :user_id AND {_LIVE}
          ORDER BY s.last_seen_at DESC, s.created_at DESC""",  # noqa: S608
        live.values(user_id=user_id),
    )
    return [SessionRow(**row) for row in rows]


async def insert_session_signed_in(
    db: Connection,
    *,
    session_id: bytes,
    user_id: UUID,
    security_stamp: UUID,
    live: Liveness,
    expires_at: datetime,
    remember: bool,
    ip: str | None,
    user_agent: str | None,
    replaces: bytes | None,
    amr: list[str],
    forgive: bool = False,
    unless_locked_at: datetime | None = None,
) -> bool:
    """A sign-in, in one statement (so atomic, and one round trip): the new session; the
    session it replaces revoked and the user's dead ones dropped (they serve nobody, and the
    user's rows stay few); the sign-in before this one kept as the previous; with `forgive`,
    the failed passwords before it forgiven (by the rule of users.FORGIVES, with
    `unless_locked_at`); a login_succeeded event.

    All of it only while the user is active under `security_stamp`, the one read with the
    credentials just proved; False (and nothing written) otherwise. A reset that commits
    while the old password is being verified has rotated it, so the intruder it evicts gets
    no session after it: credentials.py rotates the stamp first, holding the user's row, so
    this statement either waits and finds the new stamp, or committed before the revocation
    that follows and is revoked by it."""
    written = await db.fetch_val(
        f"""WITH signed_in AS (
                -- SET reads the row as it was: the previous values move over, then are replaced.
                UPDATE users
                   SET previous_login_at = last_login_at, previous_login_ip = last_login_ip,
                       last_login_at = :now, last_login_ip = CAST(:ip AS inet),
                       failed_logins = CASE WHEN :forgive AND {FORGIVES} THEN 0
                                            ELSE failed_logins END,
                       locked_until = CASE WHEN :forgive AND {FORGIVES} THEN NULL
                                           ELSE locked_until END
                 WHERE id = :user_id AND security_stamp = :stamp AND is_active
             RETURNING id
            ), replaced AS (
                UPDATE sessions SET revoked_at = :now
                 WHERE id = :replaces AND revoked_at IS NULL AND EXISTS (SELECT FROM signed_in)
            ), dead AS (
                DELETE FROM sessions s  -- not the replaced one: one change a row a statement
                 WHERE s.user_id = :user_id AND NOT ({_LIVE}) AND s.id IS DISTINCT FROM :replaces
                   AND EXISTS (SELECT FROM signed_in)
            ), event AS (
                INSERT INTO security_events (user_id, kind, created_at, ip, user_agent, details)
                     SELECT id, 'login_succeeded', :now, CAST(:ip AS inet), :user_agent,
                            jsonb_build_object('amr', CAST(:amr AS text[]))
                       FROM signed_in
            )
            INSERT INTO sessions (id, user_id, created_at, last_seen_at, authenticated_at,
                                  expires_at, remember, ip, last_seen_ip, user_agent, amr)
                 SELECT :id, id, :now, :now, :now, :expires_at, :remember,
                        CAST(:ip AS inet), CAST(:ip AS inet), :user_agent, CAST(:amr AS text[])
                   FROM signed_in
              RETURNING true""",  # noqa: S608
        live.values(
            id=session_id,
            user_id=user_id,
            stamp=security_stamp,
            expires_at=expires_at,
            remember=remember,
            ip=ip,
            user_agent=user_agent,
            replaces=replaces,
            amr=amr,
            forgive=forgive,
            unless_locked_at=unless_locked_at,
        ),
    )
    return bool(written)


async def update_session_authenticated(db: Connection, session_id: bytes, now: datetime) -> None:
    await db.execute(
        "UPDATE sessions SET authenticated_at = :now WHERE id = :id AND revoked_at IS NULL",
        {"id": session_id, "now": now},
    )


async def update_session_revoked(db: Connection, session_id: bytes, now: datetime) -> UUID | None:
    """Revoke a session; return its user, or None when there was no unrevoked session."""
    user_id = await db.fetch_val(
        """UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL
        RETURNING user_id""",
        {"id": session_id, "now": now},
    )
    return user_id if isinstance(user_id, UUID) else None


async def update_session_revoked_by_public_id(
    db: Connection, user_id: UUID, public_id: UUID, live: Liveness
) -> bool:
    """Revoke one live session of the user; False when they have no such session."""
    revoked = await db.fetch_val(
        f"""UPDATE sessions s SET revoked_at = :now
             WHERE s.public_id = :public_id AND s.user_id = :user_id AND {_LIVE}
         RETURNING true""",  # noqa: S608
        live.values(user_id=user_id, public_id=public_id),
    )
    return bool(revoked)


async def delete_dead_sessions_of_user(db: Connection, user_id: UUID, live: Liveness) -> None:
    """Expired, idle and revoked sessions serve nobody; dropping them keeps each user's rows few."""
    await db.execute(
        f"DELETE FROM sessions s WHERE s.user_id = :user_id AND NOT ({_LIVE})",  # noqa: S608
        live.values(user_id=user_id),
    )


async def update_other_sessions_revoked(
    db: Connection, user_id: UUID, keep_id: bytes, live: Liveness
) -> int:
    """Revoke every live session of a user but one; return how many there were."""
    revoked = await db.fetch_val(
        f"""WITH revoked AS (
               UPDATE sessions s SET {_REVOKED_NOW}
                WHERE s.user_id = :user_id AND s.id <> :keep_id AND {_LIVE}
            RETURNING 1)
           SELECT count(*) FROM revoked""",  # noqa: S608
        live.values(user_id=user_id, keep_id=keep_id),
    )
    return int(revoked or 0)


async def update_sessions_revoked_of_user(db: Connection, user_id: UUID, now: datetime) -> int:
    """Revoke every session of a user; return how many were not revoked before."""
    revoked = await db.fetch_val(
        f"""WITH revoked AS (
               UPDATE sessions SET {_REVOKED_NOW}
                WHERE user_id = :user_id AND revoked_at IS NULL
            RETURNING 1)
           SELECT count(*) FROM revoked""",  # noqa: S608 (a fixed fragment)
        {"user_id": user_id, "now": now},
    )
    return int(revoked or 0)
