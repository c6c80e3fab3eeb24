"""Two-factor sign-in: an authenticator app (TOTP, RFC 6238: 6 digits, 30 seconds, one step of
drift either way) and ten single-use recovery codes; the sign-in that waits for its second
factor; confirming a session again with a code.

Every check of a second factor counts on the account's lockout as a password does, and only a
right second factor forgives the failures before it (a password alone never does, for an
account that has one). A code is accepted once per account and time step. Secrets are stored
encrypted (AUTHAPP_ENCRYPTION_KEYS); recovery codes only as keyed digests.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import pyotp
import segno
from quart_db import Connection

from ..config import Settings
from ..errors import APIError, ErrorDetail
from ..infra import clock
from ..infra.database import Database
from ..infra.encryption import Encryption
from ..models.mfa import (
    count_unused_recovery_codes,
    delete_totp,
    replace_recovery_codes,
    select_totp,
    select_unused_recovery_digests,
    update_recovery_code_used,
    update_totp_confirmed,
    update_totp_step_used,
    upsert_totp_pending,
)
from ..models.sessions import SessionAccount
from ..models.users import (
    Account,
    CountedAttempt,
    TrustedDevice,
    User,
    update_user_attempt_counted_by_id,
)
from ..models.webauthn import count_passkeys_of_user
from . import attempts, audit
from .credentials import credentials_changed
from .links import send_mail
from .signin import account_locked, forgive_failures, lockout_of, record_failure

log = logging.getLogger("authapp.mfa")  # see authapp.infra.logs

STEP_SECONDS = 30
DRIFT_STEPS = 1  # a code of the step before or after is accepted too (clocks drift)
RECOVERY_CODE_COUNT = 10
# Ten characters of an alphabet without 0/o, 1/l/i: about 50 bits, read aloud without doubt.
RECOVERY_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
RECOVERY_CODE_LENGTH = 10

Method = Literal["otp", "recovery", "hwk"]
# What the second step of a sign-in takes (the 202's `methods`): the authenticator app's, and
# a passkey's for an account that has one.
SIGN_IN_METHODS = ("totp", "recovery_code")
PASSKEY_METHOD = "webauthn"
_CODE_RE = re.compile(r"[0-9]{6}")


# --- the one spelling of each kind of code --------------------------------------------------


def normalize_totp_code(text: str) -> str | None:
    """Six ASCII digits, with any spaces people type or paste taken out; None for anything
    else (never a Unicode digit: `\\d` would take them)."""
    compact = "".join(text.split())
    return compact if _CODE_RE.fullmatch(compact) else None


def normalize_recovery_code(text: str) -> str | None:
    """The ten characters of a recovery code, lowercase, without the hyphens and spaces it is
    shown and typed with; None for anything that cannot be one."""
    compact = "".join(text.split()).replace("-", "")
    if not compact.isascii():
        return None
    compact = compact.lower()
    if len(compact) != RECOVERY_CODE_LENGTH or not set(compact) <= set(RECOVERY_ALPHABET):
        return None
    return compact


def format_recovery_code(normalized: str) -> str:
    """Grouped for reading: k7fq-29xm-pd."""
    return f"{normalized[:4]}-{normalized[4:8]}-{normalized[8:]}"


def _new_recovery_codes() -> list[str]:
    return [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]


def _recovery_digest(key: str, normalized: str) -> bytes:
    """Keyed, so a copy of the table alone cannot be searched for codes (50 bits is few)."""
    message = b"authapp recovery code\0" + normalized.encode("ascii")
    return hmac.new(key.encode(), message, hashlib.sha256).digest()


def _digest_keys(settings: Settings) -> list[str]:
    # The current secret makes new digests; the fallbacks still recognise older ones.
    assert settings.secret_key is not None  # create_app refuses to start without one
    return [settings.secret_key, *settings.secret_key_fallbacks]


# --- errors -------------------------------------------------------------------------------


def code_invalid(field: str = "code") -> APIError:
    detail = ErrorDetail(field=field, message="This code is wrong, used or expired.", type="wrong")
    return APIError(400, "MFA_CODE_INVALID", "The code is wrong, used or expired.", [detail])


def pending_expired() -> APIError:
    return APIError(
        401, "MFA_PENDING_EXPIRED",
        "This sign-in expired or was already used: sign in with your password again.",
    )  # fmt: skip


def not_enabled() -> APIError:
    return APIError(409, "MFA_NOT_ENABLED", "Two-factor sign-in is not on for this account.")


# --- enrolment and status -----------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    secret: str  # base32, for typing into an app by hand
    otpauth_uri: str
    qr_svg: str  # the URI as an inline SVG QR code


@dataclass(frozen=True)
class MfaStatus:
    totp: bool
    recovery_codes_left: int
    methods: list[str]
    passkeys: int = 0


async def start_enrolment(
    db: Database, encryption: Encryption, settings: Settings, account: Account
) -> Enrolment:
    """A new secret, waiting for its first code (a new call replaces it); 409 when the
    authenticator is on already."""
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    async with db.connection() as connection:
        started = await upsert_totp_pending(
            connection, account.user_id, encryption.encrypt(secret), clock.utcnow()
        )
    if not started:
        raise APIError(
            409, "MFA_ALREADY_ENABLED", "Two-factor sign-in is already on for this account."
        )
    uri = pyotp.TOTP(secret).provisioning_uri(name=account.email, issuer_name=settings.mfa_issuer)
    qr_svg = segno.make(uri, error="m").svg_inline(scale=4, dark="#111", light="#fff")
    return Enrolment(secret, uri, qr_svg)


async def confirm_enrolment(
    db: Database,
    encryption: Encryption,
    settings: Settings,
    account: SessionAccount,
    code: str,
) -> list[str]:
    """Switch the authenticator on with its first code; return the recovery codes (shown this
    once). Turning a second factor on is a change of credentials: every other session, link
    and device trust of the password alone ends here (credentials.py)."""
    async with db.transaction() as connection:
        totp = await select_totp(connection, account.user_id)
        if totp is None or totp.confirmed_at is not None:
            raise APIError(
                409, "MFA_NOT_PENDING", "Start the set-up first: there is no enrolment waiting."
            )
        if not await _accept_totp(connection, encryption, account.user_id, code, confirmed=False):
            raise code_invalid()
        await update_totp_confirmed(connection, account.user_id, clock.utcnow())
        codes = await _replace_codes(connection, settings, account.user_id)
        revoked = await credentials_changed(connection, settings, account.user_id, by=account)
        await audit.record(
            connection, account.user_id, "mfa_enabled", method="totp",
            sessions_revoked=revoked.sessions, tokens_revoked=revoked.tokens,
        )  # fmt: skip
    log.info("user %s turned two-factor sign-in on", account.user_id)
    await _notify(account, "Two-factor sign-in is on", "mfa_enabled")
    return codes


async def mfa_status(db: Database, user_id: UUID) -> MfaStatus:
    async with db.connection() as connection:
        totp = await select_totp(connection, user_id)
        left = await count_unused_recovery_codes(connection, user_id)
        passkeys = await count_passkeys_of_user(connection, user_id)
    enabled = totp is not None and totp.confirmed_at is not None
    methods = [*(SIGN_IN_METHODS if enabled else ()), *([PASSKEY_METHOD] if passkeys else [])]
    return MfaStatus(enabled, left, methods, passkeys)


async def regenerate_recovery_codes(
    db: Database, settings: Settings, account: Account
) -> list[str]:
    """A new set of recovery codes; every code of before dies."""
    async with db.transaction() as connection:
        totp = await select_totp(connection, account.user_id)
        if totp is None or totp.confirmed_at is None:
            raise not_enabled()
        codes = await _replace_codes(connection, settings, account.user_id)
        await audit.record(connection, account.user_id, "recovery_codes_regenerated")
    await _notify(account, "New recovery codes", "recovery_codes_regenerated")
    return codes


async def disable(
    db: Database,
    encryption: Encryption,
    settings: Settings,
    account: SessionAccount,
    *,
    code: str | None,
    recovery_code: str | None,
    device: TrustedDevice | None,
) -> None:
    """Switch the authenticator and its recovery codes off, once a current code or a recovery
    code proves the caller holds them. A change of credentials, like turning it on."""
    if not (await mfa_status(db, account.user_id)).totp:
        raise not_enabled()
    await prove(
        db, encryption, settings, account, code=code, recovery_code=recovery_code, device=device
    )
    async with db.transaction() as connection:
        if not await delete_totp(connection, account.user_id):
            raise not_enabled()  # a parallel request switched it off first
        revoked = await credentials_changed(connection, settings, account.user_id, by=account)
        await audit.record(
            connection, account.user_id, "mfa_disabled", method="totp",
            sessions_revoked=revoked.sessions, tokens_revoked=revoked.tokens,
        )  # fmt: skip
    log.info("user %s turned two-factor sign-in off", account.user_id)
    await _notify(account, "Two-factor sign-in is off", "mfa_disabled")


# --- checking a second factor ---------------------------------------------------------------


async def prove(
    db: Database,
    encryption: Encryption,
    settings: Settings,
    who: User | Account,
    *,
    code: str | None,
    recovery_code: str | None,
    device: TrustedDevice | None,
    then: Callable[[Connection], Awaitable[bool]] | None = None,
    passkey: Callable[[Connection], Awaitable[bool]] | None = None,
) -> Method:
    """Check a code, a recovery code or (`passkey`, passkeys.second_factor_check) a passkey of
    the user, counted on the account's lockout before it is checked; `then` runs in the
    transaction that uses the code, and a False from it (the pending sign-in went meanwhile)
    undoes the use."""
    user_id = who.id if isinstance(who, User) else who.user_id
    attempts.checking()
    async with db.connection() as connection:
        found = await _count(connection, settings, user_id, device)
    if found is None:
        raise code_invalid()
    if found.attempt is None and not found.trusted:
        await record_failure(db, settings, found, "mfa_failed")
        raise account_locked(found.user.locked_until, settings)
    method: Method | None = None
    left = 0
    async with db.transaction() as connection:
        if code is not None:
            if await _accept_totp(connection, encryption, user_id, code, confirmed=True):
                method = "otp"
        elif recovery_code is not None:
            used = await _use_recovery_code(connection, settings, user_id, recovery_code)
            if used is not None:
                method, left = "recovery", used
                await audit.record(connection, user_id, "recovery_code_used", left=left)
        elif passkey is not None and await passkey(connection):
            method = "hwk"
        if method is not None and then is not None and not await then(connection):
            raise pending_expired()
    if method is None:
        wrong = "wrong_code" if passkey is None else "wrong_passkey"
        await record_failure(db, settings, found, "mfa_failed", wrong=wrong)
        field = "code" if code is not None else "recovery_code"
        raise code_invalid(field if passkey is None else "credential")
    await forgive_failures(db, user_id, trusted=found.trusted)
    attempts.proved()
    if method == "recovery":
        log.info("user %s used a recovery code; %d left", user_id, left)
        await send_mail(
            found.user.email, "A recovery code was used", "mail/recovery_code_used",
            name=found.user.display_name, left=left,
        )  # fmt: skip
    return method


async def _count(
    connection: Connection, settings: Settings, user_id: UUID, device: TrustedDevice | None
) -> CountedAttempt | None:
    return await update_user_attempt_counted_by_id(
        connection, user_id, now=clock.utcnow(), lockout=lockout_of(settings), device=device
    )


async def _accept_totp(
    connection: Connection, encryption: Encryption, user_id: UUID, code: str, *, confirmed: bool
) -> bool:
    """Whether `code` is the authenticator's for now (one step of drift either way), and its
    step later than any accepted before; the step is then marked used."""
    normalized = normalize_totp_code(code)
    totp = await select_totp(connection, user_id)
    if normalized is None or totp is None or (totp.confirmed_at is not None) != confirmed:
        return False
    generator = pyotp.TOTP(encryption.decrypt(totp.secret_encrypted))
    now_step = int(clock.utcnow().timestamp()) // STEP_SECONDS
    matched = None
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        # Every candidate is compared, in constant time, whichever matches.
        if hmac.compare_digest(generator.generate_otp(step), normalized):
            matched = step
    if matched is None:
        return False
    return await update_totp_step_used(connection, user_id, matched, confirmed=confirmed)


async def _use_recovery_code(
    connection: Connection, settings: Settings, user_id: UUID, text: str
) -> int | None:
    """Use one of the user's unused recovery codes; return how many are left, or None."""
    normalized = normalize_recovery_code(text)
    if normalized is None:
        return None
    candidates = [_recovery_digest(key, normalized) for key in _digest_keys(settings)]
    matched = None
    for stored in await select_unused_recovery_digests(connection, user_id):
        for candidate in candidates:
            if hmac.compare_digest(stored, candidate):
                matched = stored
    if matched is None:
        return None
    return await update_recovery_code_used(connection, user_id, matched, clock.utcnow())


async def _replace_codes(connection: Connection, settings: Settings, user_id: UUID) -> list[str]:
    codes = _new_recovery_codes()
    key = _digest_keys(settings)[0]
    digests = [_recovery_digest(key, code) for code in codes]
    await replace_recovery_codes(connection, user_id, digests, clock.utcnow())
    return [format_recovery_code(code) for code in codes]


async def _notify(account: Account, subject: str, template: str) -> None:
    await send_mail(account.email, subject, f"mail/{template}", name=account.display_name)
