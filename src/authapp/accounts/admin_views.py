"""What administrators see: the users' table (a search, filters, stable cursor pages) and one
user's account (profile, roles, sessions, tokens, second factor, recent events)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from ..config import Settings
from ..errors import validation_error
from ..infra import clock
from ..infra.database import Database
from ..models.api_tokens import count_live_tokens_of_user
from ..models.roles import Grant, select_grants_of_user
from ..models.users import ListedUser, User, UserFilter, select_user_by_id, select_users_page
from . import audit
from .emails import email_key_fragment, like_pattern
from .mfa import MfaStatus, mfa_status
from .roles import user_not_found
from .sessions import SessionInfo, list_sessions

Status = Literal["active", "inactive"]
RECENT_EVENTS = 20


@dataclass(frozen=True)
class UserPage:
    users: list[ListedUser]
    next_after: str | None  # the cursor of the next page; None on the last


def cursor_of(user: User) -> str:
    """An opaque cursor: where a page ended, in the table's order (created_at, id)."""
    raw = f"{user.created_at.isoformat()}|{user.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, user_id = raw.partition("|")
        return datetime.fromisoformat(at), UUID(user_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        message = "Pass the next_after of an earlier page."
        raise validation_error("after", message, "cursor") from None


async def search_users(
    db: Database,
    *,
    query: str | None,
    status: Status | None,
    role: str | None,
    after: str | None,
    limit: int,
) -> UserPage:
    """Users whose address key or display name holds `query`, the newest first.

    The address is compared by its key (emails.py), never lower() or ILIKE in SQL, whose
    answer would depend on the database's locale; the wildcards of `query` match themselves.
    """
    text = (query or "").strip()
    where = UserFilter(
        key_pattern=like_pattern(email_key_fragment(text)) if text else None,
        name_pattern=like_pattern(text) if text else None,
        active=None if status is None else status == "active",
        role=role or None,
        after=parse_cursor(after) if after else None,
    )
    async with db.connection() as connection:
        users = await select_users_page(connection, where, limit + 1)
    more = len(users) > limit
    users = users[:limit]
    return UserPage(users, cursor_of(users[-1]) if more and users else None)


@dataclass(frozen=True)
class UserDetail:
    user: User
    roles: list[Grant]
    sessions: list[SessionInfo]
    tokens: int  # live API tokens
    mfa: MfaStatus
    events: list[audit.SecurityEvent] | None  # None: the viewer lacks audit:read


async def user_detail(
    db: Database, settings: Settings, user_id: UUID, *, with_events: bool
) -> UserDetail:
    async with db.connection() as connection:
        user = await select_user_by_id(connection, user_id)
        if user is None:
            raise user_not_found()
        grants = await select_grants_of_user(connection, user_id)
        tokens = await count_live_tokens_of_user(connection, user_id, clock.utcnow())
    signed_in = await list_sessions(db, settings, user_id, None)
    events = None
    if with_events:
        events = (await audit.list_events(db, user_id, before=None, limit=RECENT_EVENTS)).events
    return UserDetail(user, grants, signed_in, tokens, await mfa_status(db, user_id), events)
