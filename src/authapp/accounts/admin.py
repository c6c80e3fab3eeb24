"""Administration: what an operator does to accounts from the shell (`authapp users ...`):
create a user (verified, or mailed a link), list the users, deactivate and reactivate one."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Settings
from ..infra import clock
from ..infra.database import Database
from ..infra.hashing import PasswordHashing
from ..models.users import (
    User,
    select_user_by_email_key,
    select_user_by_id,
    select_users,
    update_user_active,
    update_user_email_verified,
)
from . import audit, lifecycle, registration
from .credentials import credentials_changed
from .emails import email_key

log = logging.getLogger("authapp.admin")  # see authapp.infra.logs


async def create_user(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    *,
    email: str,
    password: str,
    display_name: str | None,
    verified: bool,
    base_url: str,
) -> User:
    """Register a user as sign-up does; mark the address verified, or mail a verification
    link (its mail goes out when the app shuts down, as after a response)."""
    user = await registration.register(
        db, hashing, settings, email=email, password=password, display_name=display_name
    )
    if not verified:
        await lifecycle.send_verification(db, settings, user, base_url)
        return user
    async with db.connection() as connection:
        await update_user_email_verified(connection, user.id, user.email, clock.utcnow())
        verified_user = await select_user_by_id(connection, user.id)
    log.info("user %s created verified by an operator", user.id)
    return verified_user or user


async def list_users(db: Database) -> list[User]:
    async with db.connection() as connection:
        return await select_users(connection)


@dataclass(frozen=True)
class ActiveChange:
    """What setting a user's active flag did."""

    user: User  # as it was before
    changed: bool
    sessions_revoked: int = 0
    tokens_revoked: int = 0


async def set_active(
    db: Database, settings: Settings, email: str, active: bool
) -> ActiveChange | None:
    """Deactivate or reactivate the user with this email; None when there is none.

    Either way every session is revoked, every API token deleted and every mailed link spent:
    deactivating ends all access at once (the lookups also refuse an inactive user's
    credentials), and neither a credential of before nor one a sign-in racing the deactivation
    made comes back to life when the user is reactivated.
    """
    key = email_key(email)
    if key is None:
        return None
    async with db.transaction() as connection:
        user = await select_user_by_email_key(connection, key)
        if user is None:
            return None
        if user.is_active == active:
            return ActiveChange(user, changed=False)
        now = clock.utcnow()
        await update_user_active(connection, user.id, active, now)
        revoked = await credentials_changed(
            connection, settings, user.id, keep_session=None, everything=True
        )
        sessions, tokens = revoked.sessions, revoked.tokens
        await audit.record(
            connection,
            user.id,
            "account_activated" if active else "account_deactivated",
            sessions_revoked=sessions,
            tokens_revoked=tokens,
        )
    log.info(
        "user %s %s by an operator; %d sessions and %d tokens revoked",
        user.id, "reactivated" if active else "deactivated", sessions, tokens,
    )  # fmt: skip
    return ActiveChange(user, changed=True, sessions_revoked=sessions, tokens_revoked=tokens)
