"""The account's life by email: verify the address, reset a forgotten password, change the
password or the address, delete the account; one service for the JSON API and the pages.

Mailed tokens are 256 random bits, bound to one purpose and one address, single-use and
expiring; the database keeps only their SHA-256, so neither a database dump nor a log holds
a usable link. Mail goes out after the response (see mail.py): a failed delivery never
undoes the change it reports.
"""

from __future__ import annotations

import logging

from quart_db import Connection

from .. import signals
from ..config import Settings
from ..errors import APIError, validation_error
from ..infra import clock
from ..infra.database import Database
from ..infra.hashing import PasswordHashing
from ..models.email_tokens import (
    update_email_tokens_used,
)
from ..models.sessions import SessionAccount
from ..models.users import (
    Account,
    TrustedDevice,
    User,
    delete_user,
    select_user_by_id,
    update_user_attempts_cleared,
    update_user_email,
    update_user_email_verified,
    update_user_password_hash,
)
from . import audit, registration, signin
from .credentials import Revoked, credentials_changed
from .emails import email_key
from .links import (
    check_link,
    mail_link,
    send_mail,
    spend_link,
    token_invalid,
    user_by_email,
)

log = logging.getLogger("authapp.lifecycle")  # see authapp.infra.logs


# --- verification ------------------------------------------------------------------------


async def send_verification(db: Database, settings: Settings, user: User, base_url: str) -> None:
    await mail_link(
        db, settings, user.id, "verify_email",
        email=user.email, name=user.display_name, base_url=base_url, stamp=user.security_stamp,
    )  # fmt: skip


async def sign_up(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    *,
    email: str,
    password: str,
    display_name: str | None,
    base_url: str,
) -> User | None:
    """Register and mail a verification link.

    With AUTHAPP_REQUIRE_VERIFIED_EMAIL, an address that already has an account is not
    revealed: the owner gets a mail instead and the caller answers as for a new account
    (None here).
    """
    try:
        user = await registration.register(
            db, hashing, settings, email=email, password=password, display_name=display_name
        )
    except APIError as error:
        if error.code != "EMAIL_TAKEN" or not settings.require_verified_email:
            raise
        await send_mail(
            email, "Someone tried to sign up with your address", "mail/already_registered",
            login_link=f"{base_url}/auth/login", reset_link=f"{base_url}/auth/forgot-password",
        )  # fmt: skip
        return None
    await send_verification(db, settings, user, base_url)
    return user


async def verify_email(db: Database, token: str) -> None:
    async with db.transaction() as connection:
        found = await spend_link(connection, token, "verify_email")
        # A link for an address the user has since left verifies nothing.
        now = clock.utcnow()
        if not await update_user_email_verified(connection, found.user_id, found.email, now):
            raise token_invalid()
        audit.announce(found.user_id, signals.email_verified, email=found.email)
    log.info("user %s verified their email", found.user_id)


async def resend_verification(db: Database, settings: Settings, email: str, base_url: str) -> None:
    """Mail a new link if the address has an unverified account; nothing otherwise.

    Callers run this after answering, so the answer is the same (and as quick) either way.
    """
    async with db.connection() as connection:
        user = await user_by_email(connection, email)
    if user is not None and user.is_active and user.email_verified_at is None:
        await send_verification(db, settings, user, base_url)


# --- forgotten password ------------------------------------------------------------------


async def request_password_reset(
    db: Database, settings: Settings, email: str, base_url: str
) -> None:
    """Mail a reset link if the address has an active account; nothing otherwise.

    Callers run this after answering, so the answer is the same (and as quick) either way.
    """
    async with db.connection() as connection:
        user = await user_by_email(connection, email)
    if user is None or not user.is_active:
        return
    await mail_link(
        db, settings, user.id, "reset_password",
        email=user.email, name=user.display_name, base_url=base_url, stamp=user.security_stamp,
    )  # fmt: skip


async def _reset_target(connection: Connection, token: str, *, spending: bool = False) -> User:
    """The user a live reset link resets: it must have been mailed to their address as it is
    now, so a link sent to an address the account has left opens nothing. `spending`: the
    link is spent too (the caller's transaction undoes that if it fails)."""
    if spending:
        found = await spend_link(connection, token, "reset_password")
    else:
        found = await check_link(connection, token, "reset_password")
    user = await select_user_by_id(connection, found.user_id)
    if user is None or not user.is_active or email_key(found.email) != user.email_key:
        raise token_invalid()
    return user


async def check_reset_token(db: Database, token: str) -> None:
    """Raise TOKEN_INVALID or TOKEN_EXPIRED unless the reset link still works (spends nothing)."""
    async with db.connection() as connection:
        await _reset_target(connection, token)


async def reset_password(
    db: Database, hashing: PasswordHashing, settings: Settings, *, token: str, password: str
) -> None:
    """Set a new password from a reset link; everything the old credentials granted ends
    (every session among it: see credentials.py)."""
    async with db.connection() as connection:
        user = await _reset_target(connection, token)
    password = registration.acceptable_password(
        "password", password, settings, user.email, user.display_name
    )
    new_hash = await hashing.hash(password)  # outside the transaction: it holds no connection
    async with db.transaction() as connection:
        # Again, now locked and spent: one use only, and the address may have changed meanwhile.
        if (await _reset_target(connection, token, spending=True)).id != user.id:
            raise token_invalid()
        now = clock.utcnow()
        await update_user_password_hash(connection, user.id, new_hash, now)
        await update_user_attempts_cleared(connection, user.id)  # the mailbox proved it: unlock
        revoked = await credentials_changed(connection, settings, user.id, by=None)
        await audit.record(
            connection, user.id, "password_reset", sessions_revoked=revoked.sessions,
            tokens_revoked=revoked.tokens,
        )  # fmt: skip
    log.info(
        "user %s reset their password; every session and %d tokens revoked",
        user.id, revoked.tokens,
    )  # fmt: skip
    await _notify_password_changed(user)


# --- changes by the signed-in user ---------------------------------------------------------


async def _notify_password_changed(user: User | Account) -> None:
    await send_mail(
        user.email, "Your password was changed", "mail/password_changed",
        name=user.display_name,
    )  # fmt: skip


async def change_password(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    account: SessionAccount,
    *,
    current_password: str,
    new_password: str,
    device: TrustedDevice | None = None,
) -> Revoked:
    """Replace the password of a signed-in user who knows the current one.

    Everything the old password granted ends but the session making the change (see
    credentials.py): whoever else holds a session must sign in with the new password, and
    reset links and pending address changes die. The owner gets a notice. Returns what ended.
    """
    new_password = registration.acceptable_password(
        "new_password", new_password, settings, account.email, account.display_name
    )
    user = await signin.check_current_password(
        db, hashing, settings, account, current_password, device=device
    )
    new_hash = await hashing.hash(new_password)
    async with db.transaction() as connection:
        await update_user_password_hash(connection, user.id, new_hash, clock.utcnow())
        revoked = await credentials_changed(connection, settings, user.id, by=account)
        await audit.record(
            connection, user.id, "password_changed", sessions_revoked=revoked.sessions,
            tokens_revoked=revoked.tokens,
        )  # fmt: skip
    log.info(
        "user %s changed their password; %d other sessions and %d tokens revoked",
        user.id, revoked.sessions, revoked.tokens,
    )  # fmt: skip
    await _notify_password_changed(account)
    return revoked


async def request_email_change(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    account: SessionAccount,
    *,
    password: str,
    new_email: str,
    base_url: str,
    device: TrustedDevice | None = None,
) -> None:
    """Mail a confirmation link to the new address; the address changes only when it is used.

    An address that another account has gets no mail, and the answer is the same, so this
    cannot be used to find out who has an account.
    """
    if email_key(new_email) == account.email_key:
        raise validation_error("new_email", "This is already your address.", "same")
    await signin.check_current_password(
        db, hashing, settings, account, password, field="password", device=device
    )
    async with db.connection() as connection:
        # Recorded whether or not a link goes out: the owner sees what was asked.
        await audit.record(
            connection, account.user_id, "email_change_requested", new_email=new_email
        )
        taken = await user_by_email(connection, new_email) is not None
    if taken:
        log.info("user %s asked for an address another account has", account.user_id)
        return
    await mail_link(
        db, settings, account.user_id, "change_email",
        email=new_email, name=account.display_name, base_url=base_url,
        stamp=account.security_stamp,  # as the session was resolved: before the password check
    )  # fmt: skip


async def check_email_change_token(db: Database, token: str) -> str:
    """The new address a change link confirms (spends nothing)."""
    async with db.connection() as connection:
        return (await check_link(connection, token, "change_email")).email


async def confirm_email_change(db: Database, token: str) -> str:
    """Switch to the address the link was mailed to; the old address is told. Returns it.

    Every link mailed before the move dies with it (reset and verification links went to the
    old address; other pending changes lose to this one)."""
    async with db.transaction() as connection:
        found = await spend_link(connection, token, "change_email")
        user = await select_user_by_id(connection, found.user_id)
        key = email_key(found.email)
        if user is None or key is None:
            raise token_invalid()
        now = clock.utcnow()
        if not await update_user_email(connection, user.id, found.email, key, now):
            raise APIError(409, "EMAIL_TAKEN", "An account with this email already exists.")
        await update_email_tokens_used(
            connection, user.id, ("verify_email", "reset_password", "change_email"), now
        )
        await audit.record(
            connection,
            user.id,
            "email_change_confirmed",
            old_email=user.email,
            new_email=found.email,
        )
    log.info("user %s changed their email", user.id)
    await send_mail(
        user.email, "Your email address was changed", "mail/email_changed",
        name=user.display_name, new_email=found.email,
    )  # fmt: skip
    return found.email


async def delete_account(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    account: Account,
    *,
    password: str,
    device: TrustedDevice | None = None,
) -> None:
    """Delete the user and everything of theirs (sessions, tokens) in one transaction."""
    user = await signin.check_current_password(
        db, hashing, settings, account, password, field="password", device=device
    )
    async with db.transaction() as connection:
        await delete_user(connection, user.id)
        audit.announce(user.id, signals.account_deleted, email=user.email)
    log.info("user %s deleted their account", user.id)
    await send_mail(
        user.email, "Your account was deleted", "mail/account_deleted", name=user.display_name
    )
