"""Registration: the password a new account may have, creating the account, its profile."""

from __future__ import annotations

import logging

from .. import signals
from ..config import Settings
from ..errors import APIError, ErrorDetail, validation_error
from ..infra import clock
from ..infra.database import Database
from ..infra.hashing import PasswordHashing
from ..models.users import (
    Account,
    User,
    insert_user,
    update_user_display_name,
)
from . import audit
from .emails import email_key
from .passwords import PasswordPolicyError, check_policy

log = logging.getLogger("authapp.accounts")  # see authapp.infra.logs


# Policy breaches with a code of their own; the rest (length, blank) are VALIDATION_ERROR.
_POLICY_CODES = {
    "password_too_common": ("PASSWORD_TOO_COMMON", "The password is too common."),
    "password_too_similar": (
        "PASSWORD_TOO_SIMILAR",
        "Choose a password that is not based on your email address or name.",
    ),
}


def acceptable_password(
    field: str, password: str, settings: Settings, email: str, display_name: str | None
) -> str:
    """The password as it will be hashed, or a 400 naming `field`: VALIDATION_ERROR,
    PASSWORD_TOO_SIMILAR (to the email or the display name) or PASSWORD_TOO_COMMON."""
    try:
        return check_policy(
            password,
            min_length=settings.password_min_length,
            email=email,
            display_name=display_name,
        )
    except PasswordPolicyError as error:
        if error.type not in _POLICY_CODES:
            raise validation_error(field, error.message, error.type) from None
        code, message = _POLICY_CODES[error.type]
        detail = ErrorDetail(field=field, message=error.message, type=error.type)
        raise APIError(400, code, message, [detail]) from None


def default_display_name(email: str) -> str:
    return email.split("@", 1)[0][:100].strip() or "user"


async def register(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    *,
    email: str,
    password: str,
    display_name: str | None,
) -> User:
    key = email_key(email)
    if key is None:
        raise validation_error("email", "This is not an email address.", "value_error")
    display_name = display_name or default_display_name(email)
    password = acceptable_password("password", password, settings, email, display_name)
    # Hash before looking at the table, so a taken email costs the same time as a free one.
    password_hash = await hashing.hash(password)
    async with db.connection() as connection:
        user = await insert_user(
            connection,
            email=email,
            email_key=key,
            password_hash=password_hash,
            display_name=display_name,
            now=clock.utcnow(),
        )
        if user is not None:
            audit.announce(user.id, signals.registered, email=user.email)
    if user is None:
        raise APIError(409, "EMAIL_TAKEN", "An account with this email already exists.")
    log.info("registered user %s", user.id)
    return user


async def change_display_name(db: Database, account: Account, display_name: str) -> None:
    async with db.connection() as connection:
        await update_user_display_name(connection, account.user_id, display_name, clock.utcnow())


# --- lockout: failed passwords counted on the account, whatever the address -----------------
# Each attempt is counted as failed before its hash is checked (a right password clears the
# count), so a burst of concurrent guesses cannot slip past a lock while the first ones hash.
