"""Administration: what an operator does to accounts from the shell (`authapp users ...`):
create a user (verified, or mailed a link), list the users, deactivate and reactivate one; and
what an administrator does to another account from the admin API and pages (deactivate,
reactivate, sign out, reset access, mail a reset link, delete), under roles.py's rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from quart_db import Connection

from .. import signals
from ..config import Settings
from ..errors import APIError
from ..infra import clock
from ..infra.database import Database
from ..infra.hashing import PasswordHashing
from ..models.mfa import delete_totp
from ..models.roles import ADMIN_ROLE, lock_admins
from ..models.sessions import update_sessions_revoked_of_user
from ..models.users import (
    User,
    delete_user,
    select_user_by_email_key,
    select_user_by_id,
    select_users,
    update_user_active,
    update_user_email_verified,
)
from ..models.webauthn import delete_passkeys_of_user
from . import audit, lifecycle, registration, roles
from .credentials import credentials_changed
from .emails import email_key
from .links import mail_link

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
    """Deactivate or reactivate the user with this email (the CLI); None when there is none.

    Either way every session is revoked, every API token deleted and every mailed link spent:
    deactivating ends all access at once (the lookups also refuse an inactive user's
    credentials), and neither a credential of before nor one a sign-in racing the deactivation
    made comes back to life when the user is reactivated. The last active admin stays (409
    `LAST_ADMIN`).
    """
    key = email_key(email)
    if key is None:
        return None
    async with db.transaction() as connection:
        await lock_admins(connection)
        user = await select_user_by_email_key(connection, key)
        if user is None:
            return None
        is_admin = any(g.role == ADMIN_ROLE for g in await roles.roles_of_user(connection, user.id))
        change = await _set_active(connection, settings, user, active, is_admin=is_admin)
    if change.changed:
        _log_active(change, "an operator")
    return change


async def _set_active(
    connection: Connection, settings: Settings, user: User, active: bool, *, is_admin: bool,
    **by: str,
) -> ActiveChange:  # fmt: skip
    if user.is_active == active:
        return ActiveChange(user, changed=False)
    if not active:
        await roles.keep_an_admin(connection, user, is_admin=is_admin)
    await update_user_active(connection, user.id, active, clock.utcnow())
    revoked = await credentials_changed(connection, settings, user.id, by=None, everything=True)
    await audit.record(
        connection, user.id, "account_activated" if active else "account_deactivated",
        sessions_revoked=revoked.sessions, tokens_revoked=revoked.tokens, **by,
    )  # fmt: skip
    return ActiveChange(user, True, revoked.sessions, revoked.tokens)


def _log_active(change: ActiveChange, by: str) -> None:
    log.info(
        "user %s %s by %s; %d sessions and %d tokens revoked", change.user.id,
        "deactivated" if change.user.is_active else "reactivated", by,
        change.sessions_revoked, change.tokens_revoked,
    )  # fmt: skip


# --- an administrator's acts on another account (the rules: roles.py) -----------------------


async def set_active_by_admin(
    db: Database, settings: Settings, actor_id: UUID, target_id: UUID, active: bool
) -> ActiveChange:
    """Deactivate (every session and token of the user ends at once) or reactivate."""
    async with db.transaction() as connection:
        act = await roles.authorize(connection, actor_id, target_id, "users:write")
        change = await _set_active(
            connection, settings, act.target, active, is_admin=act.target_is_admin,
            by=roles.BY_ADMINISTRATOR,
        )  # fmt: skip
        if change.changed:
            await roles.record_act(
                connection, act, None, "activate" if active else "deactivate",
                sessions_revoked=change.sessions_revoked, tokens_revoked=change.tokens_revoked,
            )  # fmt: skip
    if change.changed:
        _log_active(change, f"administrator {actor_id}")
    return change


async def revoke_sessions_by_admin(db: Database, actor_id: UUID, target_id: UUID) -> int:
    """Sign the user out everywhere (their API tokens stay); return how many sessions ended."""
    async with db.transaction() as connection:
        act = await roles.authorize(connection, actor_id, target_id, "users:write")
        count = await update_sessions_revoked_of_user(connection, target_id, clock.utcnow())
        await roles.record_act(
            connection, act, "sessions_revoked", "revoke_sessions", which="all", count=count
        )
    log.info("administrator %s revoked the %d sessions of %s", actor_id, count, target_id)
    return count


@dataclass(frozen=True)
class AccessReset:
    sessions_revoked: int
    tokens_revoked: int
    second_factor_removed: bool


async def reset_access(db: Database, settings: Settings, email: str) -> AccessReset | None:
    """The operator's reset of a user's access (the CLI): for someone who lost their second
    factor and its recovery codes. None when no user has the email."""
    key = email_key(email)
    if key is None:
        return None
    async with db.transaction() as connection:
        user = await select_user_by_email_key(connection, key)
        if user is None:
            return None
        reset = await _reset_access(connection, settings, user.id)
        await audit.record(
            connection, user.id, "access_reset", by="operator",
            sessions_revoked=reset.sessions_revoked, tokens_revoked=reset.tokens_revoked,
            second_factor_removed=reset.second_factor_removed,
        )  # fmt: skip
    log.info("user %s had their access reset by an operator", user.id)
    return reset


async def _reset_access(connection: Connection, settings: Settings, user_id: UUID) -> AccessReset:
    revoked = await credentials_changed(connection, settings, user_id, by=None, everything=True)
    totp = await delete_totp(connection, user_id)
    passkeys = await delete_passkeys_of_user(connection, user_id)
    return AccessReset(revoked.sessions, revoked.tokens, totp or passkeys > 0)


async def reset_access_by_admin(
    db: Database, settings: Settings, actor_id: UUID, target_id: UUID
) -> AccessReset:
    """End everything that lets the user in but the password (Flask-Security-Too's
    reset_user_access): sessions, API tokens, mailed links, pending sign-ins, trusted devices
    and every second factor (the authenticator app, its recovery codes, the passkeys), which
    they set up again after signing in."""
    async with db.transaction() as connection:
        act = await roles.authorize(connection, actor_id, target_id, "users:write")
        reset = await _reset_access(connection, settings, target_id)
        removed = reset.second_factor_removed
        await roles.record_act(
            connection, act, "access_reset", "reset_access",
            sessions_revoked=reset.sessions_revoked, tokens_revoked=reset.tokens_revoked,
            second_factor_removed=removed,
        )  # fmt: skip
    log.info("administrator %s reset the access of %s", actor_id, target_id)
    return reset


async def send_password_reset_by_admin(
    db: Database, settings: Settings, actor_id: UUID, target_id: UUID, base_url: str
) -> None:
    """Mail the user a link to set a new password (as if they had asked for one)."""
    async with db.transaction() as connection:
        act = await roles.authorize(connection, actor_id, target_id, "users:write")
        if not act.target.is_active:
            raise APIError(409, "ACCOUNT_INACTIVE", "Activate the account first.")
        await roles.record_act(connection, act, "password_reset_sent", "send_password_reset")
    user = act.target
    await mail_link(
        db, settings, user.id, "reset_password",
        email=user.email, name=user.display_name, base_url=base_url, stamp=user.security_stamp,
    )  # fmt: skip
    log.info("administrator %s sent %s a password reset link", actor_id, target_id)


async def delete_by_admin(db: Database, actor_id: UUID, target_id: UUID) -> User:
    """Delete the user and everything of theirs; the actor's event keeps who it was."""
    async with db.transaction() as connection:
        act = await roles.authorize(connection, actor_id, target_id, "users:write")
        await roles.keep_an_admin(connection, act.target, is_admin=act.target_is_admin)
        await delete_user(connection, target_id)
        await roles.record_act(connection, act, None, "delete_user")
        audit.announce(
            target_id, signals.account_deleted, email=act.target.email, by=roles.BY_ADMINISTRATOR
        )
    log.info("administrator %s deleted user %s", actor_id, target_id)
    return act.target
