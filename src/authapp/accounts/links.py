"""Mailed links: tokens of 256 random bits, bound to one purpose and one address, single-use
and expiring, kept only as their SHA-256; issuing one and mailing it, checking and spending it
(lifecycle.py says what each purpose does)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from quart_db import Connection

from ..config import Settings
from ..errors import APIError
from ..infra import clock
from ..infra.database import Database
from ..infra.mail import Mail, mailer
from ..models.email_tokens import (
    EmailToken,
    Purpose,
    insert_email_token,
    lock_email_tokens_of_user,
    lock_user_of_email_token,
    select_email_token,
    update_email_tokens_used,
)
from ..models.users import (
    User,
    select_user_by_email_key,
)
from .credentials import ENDED_BY_A_CHANGE
from .emails import email_key
from .sessions import new_token, token_id

# purpose: (the setting of its lifetime, the page its link opens, the mail's subject, template)
LINKS: dict[Purpose, tuple[str, str, str, str]] = {
    "verify_email": ("verify_email_lifetime", "/auth/verify-email",
                     "Verify your email address", "mail/verify_email"),
    "reset_password": ("reset_password_lifetime", "/auth/reset-password",
                       "Reset your password", "mail/reset_password"),
    "change_email": ("change_email_lifetime", "/auth/confirm-email",
                     "Confirm your new email address", "mail/change_email"),
}  # fmt: skip


def token_invalid() -> APIError:
    return APIError(400, "TOKEN_INVALID", "This link is not valid. It may have been used already.")


def token_expired() -> APIError:
    return APIError(400, "TOKEN_EXPIRED", "This link has expired. Ask for a new one.")


def hours(seconds: int) -> str:
    count = max(round(seconds / 3600), 1)
    return f"{count} hour{'s' if count != 1 else ''}"


async def send_mail(to: str, subject: str, template: str, **context: Any) -> None:
    await mailer().send_later(Mail(to=to, subject=subject, template=template, context=context))


async def issue_link(
    connection: Connection,
    settings: Settings,
    user_id: UUID,
    purpose: Purpose,
    email: str,
    stamp: UUID,
) -> str:
    """A new token; the older ones of the same purpose die, so only the newest link works, even
    when two requests issue at once (the second waits for the first to commit). `stamp`: the
    user's security stamp when the request was proved (check_link says why)."""
    token = new_token()
    hashed = token_id(token)
    assert hashed is not None  # new_token() makes tokens of exactly that shape
    await lock_email_tokens_of_user(connection, user_id)
    now = clock.utcnow()  # read once the lock is held: after the time of any token it spends
    lifetime = timedelta(seconds=getattr(settings, LINKS[purpose][0]))
    await update_email_tokens_used(connection, user_id, (purpose,), now)
    await insert_email_token(
        connection, token_id=hashed, user_id=user_id, purpose=purpose, email=email,
        security_stamp=stamp, now=now, expires_at=now + lifetime,
    )  # fmt: skip
    return token


async def mail_link(
    db: Database,
    settings: Settings,
    user_id: UUID,
    purpose: Purpose,
    *,
    email: str,
    name: str,
    base_url: str,
    stamp: UUID,
) -> None:
    """Issue a token of `purpose` for `email` and mail its link there (`stamp`: see issue_link)."""
    async with db.transaction() as connection:
        token = await issue_link(connection, settings, user_id, purpose, email, stamp)
    lifetime, path, subject, template = LINKS[purpose]
    await send_mail(
        email, subject, template, name=name, link=f"{base_url}{path}/{token}",
        valid_for=hours(getattr(settings, lifetime)),
    )  # fmt: skip


async def check_link(
    connection: Connection, token: str, purpose: Purpose, *, spending: bool = False
) -> EmailToken:
    """The live token of this purpose, or TOKEN_INVALID / TOKEN_EXPIRED.

    A link of a purpose that a change of credentials ends works only under the stamp it was
    issued under: the change spends the links it finds, and this ends one written after it by
    a request proved before it (an intruder asking to move the address as the owner resets).

    `spending` (in the transaction that will act on it): the user's row, then the token's, are
    held to its end. Every change to a user takes their row before their links' rows (a change
    of credentials rotates the stamp first), so two uses at once queue instead of deadlocking.
    """
    hashed = token_id(token)
    found = None
    if hashed is not None:
        if spending:
            await lock_user_of_email_token(connection, hashed)
        found = await select_email_token(connection, hashed, purpose, lock=spending)
    if found is None or found.used_at is not None:
        raise token_invalid()
    if purpose in ENDED_BY_A_CHANGE and not found.under_current_stamp:
        raise token_invalid()
    if found.expires_at <= clock.utcnow():
        raise token_expired()
    return found


async def user_by_email(connection: Connection, email: str) -> User | None:
    key = email_key(email)
    return None if key is None else await select_user_by_email_key(connection, key)


async def spend_link(connection: Connection, token: str, purpose: Purpose) -> EmailToken:
    """Check the token and spend it (with every other of its purpose for that user)."""
    found = await check_link(connection, token, purpose, spending=True)
    await update_email_tokens_used(connection, found.user_id, (purpose,), clock.utcnow())
    return found


# --- verification ------------------------------------------------------------------------


# --- forgotten password ------------------------------------------------------------------


# --- changes by the signed-in user ---------------------------------------------------------
