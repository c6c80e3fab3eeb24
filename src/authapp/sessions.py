"""Sessions: random tokens whose SHA-256 is the database key; start, resolve and revoke them."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from datetime import UTC, datetime, timedelta
from uuid import UUID

from .config import Settings
from .database import Database
from .models.sessions import (
    SessionAccount,
    delete_dead_sessions_of_user,
    insert_session,
    select_live_session_account,
    update_session_revoked,
)
from .models.users import update_user_last_login

TOKEN_BYTES = 32  # 256 bits
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
MAX_USER_AGENT = 512


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_id(token: str) -> bytes | None:
    """The database key of a token (its SHA-256), or None for anything that is not a token."""
    if not _TOKEN_RE.match(token):
        return None
    return hashlib.sha256(token.encode("ascii")).digest()


def _clean_ip(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None  # a unix socket peer or nothing at all


async def start_session(
    db: Database,
    settings: Settings,
    user_id: UUID,
    *,
    remember: bool,
    ip: str | None,
    user_agent: str | None,
    replaces: str | None = None,
) -> str:
    """Create a session and return its token; the token is shown once and never stored.

    `replaces` is the token the client signed in with before, if any: it is revoked, so a
    session id planted before sign-in (fixation) is worthless afterwards.
    """
    token = new_token()
    session_id = token_id(token)
    assert session_id is not None  # new_token() makes tokens of exactly that shape
    now = utcnow()
    address = _clean_ip(ip)
    lifetime = settings.remember_lifetime if remember else settings.session_lifetime
    async with db.transaction() as connection:
        if replaces is not None and (old_id := token_id(replaces)) is not None:
            await update_session_revoked(connection, old_id, now)
        await delete_dead_sessions_of_user(connection, user_id, now)
        await insert_session(
            connection,
            session_id=session_id,
            user_id=user_id,
            now=now,
            expires_at=now + timedelta(seconds=lifetime),
            remember=remember,
            ip=address,
            user_agent=(user_agent or "")[:MAX_USER_AGENT] or None,
        )
        await update_user_last_login(connection, user_id, now, address)
    return token


async def resolve_session(db: Database, token: str) -> SessionAccount | None:
    session_id = token_id(token)
    if session_id is None:
        return None
    async with db.connection() as connection:
        return await select_live_session_account(connection, session_id, utcnow())


async def revoke_session(db: Database, token: str) -> None:
    session_id = token_id(token)
    if session_id is None:
        return
    async with db.connection() as connection:
        await update_session_revoked(connection, session_id, utcnow())
