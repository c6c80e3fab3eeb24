"""The sign-in that waits for its second factor (a password proved right, a server-side row
found by the SHA-256 of its cookie's reference: 5 minutes, 5 tries, single use, dead at any
change of credentials), and confirming a session again with a code (accounts/mfa.py checks
the codes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from quart_db import Connection

from ..config import Settings
from ..infra import clock
from ..infra.clients import clean_ip
from ..infra.database import Database
from ..infra.encryption import Encryption
from ..models.pending_sign_ins import (
    insert_pending_sign_in,
    select_live_pending_user,
    update_pending_attempt_counted,
    update_pending_used,
)
from ..models.sessions import SessionAccount, update_session_authenticated
from ..models.users import TrustedDevice, User, select_user_by_id
from . import audit, passkey_signin, passkeys
from .mfa import Method, mfa_status, not_enabled, pending_expired, prove
from .sessions import new_token, token_id

PENDING_LIFETIME = timedelta(minutes=5)
PENDING_MAX_ATTEMPTS = 5


async def begin_sign_in(db: Database, user: User, *, remember: bool, ip: str | None) -> str:
    """The password proved right for an account with a second factor: a pending sign-in
    (5 minutes, 5 tries), whose reference goes in a cookie and whose SHA-256 is stored."""
    reference = new_token()
    pending_id = token_id(reference)
    assert pending_id is not None  # new_token() makes tokens of exactly that shape
    now = clock.utcnow()
    async with db.connection() as connection:
        await insert_pending_sign_in(
            connection, pending_id=pending_id, user_id=user.id,
            security_stamp=user.security_stamp, now=now, expires_at=now + PENDING_LIFETIME,
            remember=remember, ip=clean_ip(ip),
        )  # fmt: skip
    return reference


@dataclass(frozen=True)
class SecondFactorProved:
    user: User
    method: Method
    remember: bool


async def complete_sign_in(
    db: Database,
    encryption: Encryption,
    settings: Settings,
    reference: str | None,
    *,
    code: str | None,
    recovery_code: str | None,
    device_of: Callable[[UUID], TrustedDevice | None],
    passkey: tuple[passkeys.RelyingParty, str | None, dict[str, Any]] | None = None,
) -> SecondFactorProved:
    """The second step: a code (or `passkey`: the relying party, the reference of the
    client's passkey challenge and the authenticator's answer) for the pending sign-in of
    `reference`; 401 MFA_PENDING_EXPIRED for no, an expired, used, spent or outlived pending
    sign-in."""
    pending_id = None if reference is None else token_id(reference)
    if pending_id is None:
        raise pending_expired()
    async with db.connection() as connection:
        pending = await update_pending_attempt_counted(
            connection, pending_id, clock.utcnow(), PENDING_MAX_ATTEMPTS
        )
    if pending is None:
        raise pending_expired()

    async def use_pending(connection: Connection) -> bool:
        return await update_pending_used(connection, pending_id, clock.utcnow())

    async with db.connection() as connection:
        user = await select_user_by_id(connection, pending.user_id)
    if user is None:
        raise pending_expired()
    check = None
    if passkey is not None:
        check = await passkey_signin.second_factor_check(db, *passkey, user.id)
    method = await prove(
        db, encryption, settings, user, code=code, recovery_code=recovery_code,
        device=device_of(user.id), then=use_pending, passkey=check,
    )  # fmt: skip
    return SecondFactorProved(user, method, pending.remember)


async def reauthenticate_with_code(
    db: Database,
    encryption: Encryption,
    settings: Settings,
    account: SessionAccount,
    code: str,
    *,
    device: TrustedDevice | None,
) -> None:
    """A code from the authenticator makes this session fresh, as the password does."""
    if not (await mfa_status(db, account.user_id)).totp:
        raise not_enabled()
    await prove(db, encryption, settings, account, code=code, recovery_code=None, device=device)
    async with db.transaction() as connection:
        await update_session_authenticated(connection, account.session_id, clock.utcnow())
        await audit.record(connection, account.user_id, "reauthenticated", method="otp")


async def pending_user(db: Database, reference: str | None) -> UUID | None:
    """Whose live pending sign-in `reference` names, without spending a try (the passkey
    options and the second step's page ask), or None."""
    pending_id = None if reference is None else token_id(reference)
    if pending_id is None:
        return None
    async with db.connection() as connection:
        return await select_live_pending_user(connection, pending_id, clock.utcnow())
