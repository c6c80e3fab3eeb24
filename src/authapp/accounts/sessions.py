"""Sessions: random tokens whose SHA-256 is the database key; start, resolve, list, refresh
and revoke them. A session dies at its absolute expiry, after its idle timeout, or when revoked.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from ..config import Settings
from ..errors import APIError
from ..infra import clock
from ..infra.batching import BatchLoader
from ..infra.clients import clean_ip, device_name
from ..infra.database import Database
from ..models.sessions import (
    Liveness,
    SessionAccount,
    insert_session_signed_in,
    select_live_session_accounts,
    select_live_sessions_of_user,
    update_other_sessions_revoked,
    update_session_revoked,
    update_session_revoked_by_public_id,
    update_sessions_revoked_of_user,
)
from . import audit

log = logging.getLogger("authapp.sessions")  # see authapp.infra.logs

TOKEN_BYTES = 32  # 256 bits
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
MAX_USER_AGENT = 512
# last_seen_at (and the idle timeout it feeds) is kept to this resolution: one write a minute.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_id(token: str) -> bytes | None:
    """The database key of a token (its SHA-256), or None for anything that is not a token."""
    if not _TOKEN_RE.match(token):
        return None
    return hashlib.sha256(token.encode("ascii")).digest()


@dataclass(frozen=True)
class Forgives:
    """The sign-in's right password forgives the failed ones before it (see
    signin.authenticate), in the statement that starts the session; from the user's trusted
    device only while the account is not locked."""

    trusted_device: bool


def liveness(settings: Settings) -> Liveness:
    now = clock.utcnow()
    return Liveness(
        now=now,
        session_seen_after=now - timedelta(seconds=settings.session_idle_timeout),
        remember_seen_after=now - timedelta(seconds=settings.remember_idle_timeout),
    )


async def start_session(
    db: Database,
    settings: Settings,
    user_id: UUID,
    *,
    security_stamp: UUID,
    remember: bool,
    ip: str | None,
    user_agent: str | None,
    replaces: str | None = None,
    amr: tuple[str, ...] = ("pwd",),
    forgives: Forgives | None = None,
) -> str | None:
    """Create a session and return its token; the token is shown once and never stored. None
    when the user is no longer active under `security_stamp`, the one read with the credentials
    the caller proved: they changed meanwhile (a reset, say), and what the old ones proved
    grants nothing.

    `replaces` is the token the client signed in with before, if any: it is revoked, so a
    session id planted before sign-in (fixation) is worthless afterwards. `forgives`: the
    same statement forgives the account's failed passwords (one round trip for both).
    """
    token = new_token()
    session_id = token_id(token)
    assert session_id is not None  # new_token() makes tokens of exactly that shape
    live = liveness(settings)
    lifetime = settings.remember_lifetime if remember else settings.session_lifetime
    async with db.connection() as connection:
        written = await insert_session_signed_in(
            connection,
            session_id=session_id,
            user_id=user_id,
            security_stamp=security_stamp,
            live=live,
            expires_at=live.now + timedelta(seconds=lifetime),
            remember=remember,
            ip=clean_ip(ip),
            user_agent=(user_agent or "")[:MAX_USER_AGENT] or None,
            replaces=None if replaces is None else token_id(replaces),
            amr=list(amr),
            forgive=forgives is not None,
            unless_locked_at=live.now if forgives and forgives.trusted_device else None,
        )
        if not written:
            return None
        # The statement wrote the login_succeeded event with the session.
        audit.recorded(user_id, "login_succeeded", now=live.now, remember=remember, amr=list(amr))
    return token


class SessionLookups:
    """Resolves cookies to live sessions, the lookups of requests that arrive together in
    one statement (BatchLoader)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._loader: BatchLoader[bytes, str | None, SessionAccount] = BatchLoader(self._load)

    async def resolve(self, token: str, ip: str | None) -> SessionAccount | None:
        """The live session of a cookie's token and its user; marks it seen (once a minute)."""
        session_id = token_id(token)
        if session_id is None:
            return None
        return await self._loader.get(session_id, clean_ip(ip))

    async def _load(self, asked: dict[bytes, str | None]) -> dict[bytes, SessionAccount]:
        live = liveness(self._settings)
        async with self._db.connection() as connection:
            return await select_live_session_accounts(
                connection, asked, live, touch_before=live.now - LAST_SEEN_RESOLUTION
            )


async def revoke_session(db: Database, token: str) -> None:
    """Sign out: end the session of this token, if it has not ended already."""
    session_id = token_id(token)
    if session_id is None:
        return
    async with db.transaction() as connection:
        user_id = await update_session_revoked(connection, session_id, clock.utcnow())
        if user_id is not None:
            await audit.record(connection, user_id, "logout")


# --- fresh sign-in -------------------------------------------------------------------------


def is_fresh(account: SessionAccount, settings: Settings) -> bool:
    """Whether the password was proved on this session within AUTHAPP_FRESHNESS."""
    return account.authenticated_at > clock.utcnow() - timedelta(seconds=settings.freshness)


def reauth_required() -> APIError:
    return APIError(
        401, "REAUTH_REQUIRED", "Confirm your password to continue: this needs a fresh sign-in."
    )


# --- the user's view of their sessions -----------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    id: UUID
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    last_seen_ip: str | None
    device: str
    remember: bool
    expires_at: datetime
    current: bool
    amr: list[str]


async def list_sessions(
    db: Database, settings: Settings, user_id: UUID, current: UUID | None
) -> list[SessionInfo]:
    """The user's live sessions, the most recently seen first; `current` is this request's."""
    async with db.connection() as connection:
        rows = await select_live_sessions_of_user(connection, user_id, liveness(settings))
    return [
        SessionInfo(
            id=row.public_id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            ip=row.ip,
            last_seen_ip=row.last_seen_ip,
            device=device_name(row.user_agent),
            remember=row.remember,
            expires_at=row.expires_at,
            current=row.public_id == current,
            amr=row.amr,
        )
        for row in rows
    ]


async def revoke_session_of_user(
    db: Database, settings: Settings, user_id: UUID, public_id: UUID
) -> None:
    """Revoke one of the user's live sessions by its public id; 404 when there is none."""
    async with db.transaction() as connection:
        revoked = await update_session_revoked_by_public_id(
            connection, user_id, public_id, liveness(settings)
        )
        if revoked:
            await audit.record(connection, user_id, "session_revoked", session_id=str(public_id))
    if not revoked:
        raise APIError(404, "SESSION_NOT_FOUND", "You have no live session with this id.")
    log.info("user %s revoked a session", user_id)


async def revoke_other_sessions(db: Database, settings: Settings, account: SessionAccount) -> int:
    """Sign out everywhere else; return how many sessions that ended."""
    async with db.transaction() as connection:
        revoked = await update_other_sessions_revoked(
            connection, account.user_id, account.session_id, liveness(settings)
        )
        await audit.record(
            connection, account.user_id, "sessions_revoked", which="others", count=revoked
        )
    log.info("user %s revoked %d other sessions", account.user_id, revoked)
    return revoked


async def revoke_all_sessions(db: Database, user_id: UUID) -> int:
    """Sign out everywhere, this session included; return how many sessions that ended."""
    async with db.transaction() as connection:
        revoked = await update_sessions_revoked_of_user(connection, user_id, clock.utcnow())
        await audit.record(connection, user_id, "sessions_revoked", which="all", count=revoked)
    log.info("user %s revoked all %d sessions", user_id, revoked)
    return revoked
