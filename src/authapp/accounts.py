"""Accounts: the rules for registering and signing in, shared by the JSON API and the pages."""

from __future__ import annotations

import logging

from . import clock
from .config import Settings
from .database import Database
from .errors import APIError, ErrorDetail, validation_error
from .models.users import (
    Account,
    User,
    insert_user,
    select_user_by_email,
    select_user_by_id,
    update_user_display_name,
    update_user_password_hash,
)
from .passwords import PasswordHashing, PasswordPolicyError, check_policy, normalize_password

log = logging.getLogger(__name__)


def invalid_credentials() -> APIError:
    # One answer for an unknown email, a wrong password and an inactive account.
    return APIError(401, "INVALID_CREDENTIALS", "Email or password is wrong.")


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
    display_name = display_name or default_display_name(email)
    password = acceptable_password("password", password, settings, email, display_name)
    # Hash before looking at the table, so a taken email costs the same time as a free one.
    password_hash = await hashing.hash(password)
    async with db.connection() as connection:
        user = await insert_user(
            connection,
            email=email,
            password_hash=password_hash,
            display_name=display_name,
            now=clock.utcnow(),
        )
    if user is None:
        raise APIError(409, "EMAIL_TAKEN", "An account with this email already exists.")
    log.info("registered user %s", user.id)
    return user


async def authenticate(
    db: Database, hashing: PasswordHashing, *, email: str, password: str
) -> User:
    """Return the active user with this email and password, or raise INVALID_CREDENTIALS.

    Unknown emails verify a dummy hash, so the answer takes as long either way.
    """
    password = normalize_password(password)
    async with db.connection() as connection:
        user = await select_user_by_email(connection, email)
    if user is None:
        await hashing.verify_dummy(password)
        raise invalid_credentials()
    if not await hashing.verify(user.password_hash, password) or not user.is_active:
        raise invalid_credentials()
    if hashing.needs_rehash(user.password_hash):
        new_hash = await hashing.hash(password)
        async with db.connection() as connection:
            await update_user_password_hash(connection, user.id, new_hash, clock.utcnow())
        log.info("upgraded the password hash of user %s", user.id)
    return user


async def change_display_name(db: Database, account: Account, display_name: str) -> None:
    async with db.connection() as connection:
        await update_user_display_name(connection, account.user_id, display_name, clock.utcnow())


async def check_current_password(
    db: Database,
    hashing: PasswordHashing,
    account: Account,
    password: str,
    field: str = "current_password",
) -> User:
    """The signed-in user, once they have proved they know their password."""
    async with db.connection() as connection:
        user = await select_user_by_id(connection, account.user_id)
    if user is None or not await hashing.verify(user.password_hash, normalize_password(password)):
        detail = ErrorDetail(
            field=field, message="This is not your current password.", type="wrong"
        )
        raise APIError(400, "WRONG_PASSWORD", "The current password is wrong.", [detail])
    return user
