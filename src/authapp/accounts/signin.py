"""Accounts: the rules for registering and signing in, shared by the JSON API and the pages."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from ..config import Settings
from ..errors import APIError, ErrorDetail, wait_text
from ..infra import clock
from ..infra.database import Database
from ..infra.hashing import PasswordHashing
from ..infra.mail import Mail, mailer
from ..infra.tasks import after_answer
from ..models.sessions import SessionAccount, update_session_authenticated
from ..models.users import (
    Account,
    CountedAttempt,
    Lockout,
    TrustedDevice,
    User,
    update_user_attempt_counted_by_email_key,
    update_user_attempt_counted_by_id,
    update_user_attempt_uncounted,
    update_user_attempts_cleared,
    update_user_password_hash,
)
from . import attempts, audit
from .passwords import normalize_password
from .sessions import Forgives

log = logging.getLogger("authapp.accounts")  # see authapp.infra.logs

# How long the latest password checks took, so that a refused attempt on a locked account
# can take as long as a checked one without spending a hash (one process serves one app).
_VERIFY_SECONDS: deque[float] = deque(maxlen=64)


def invalid_credentials() -> APIError:
    # One answer for an unknown email, a wrong password and an inactive account.
    return APIError(401, "INVALID_CREDENTIALS", "Email or password is wrong.")


@dataclass(frozen=True)
class PasswordProved:
    """A right password of an active account. Unless it has a second factor, the failures
    before it are to be forgiven: by the session it starts, in the same statement
    (`forgives`), or by forgive_without_session when it starts none."""

    user: User
    # Then the password alone signs nobody in: the second factor must follow, and only it
    # forgives the failures before (so knowing the password buys no fresh run of codes).
    has_second_factor: bool
    trusted: bool  # the client's device cookie names this user and their current stamp

    @property
    def forgives(self) -> Forgives | None:
        """What this password forgives: nothing when the second factor must follow."""
        return None if self.has_second_factor else Forgives(trusted_device=self.trusted)


async def authenticate(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    *,
    key: str | None,
    password: str,
    device: TrustedDevice | None = None,
) -> PasswordProved:
    """Return the active user with this address key (emails.email_key of what was typed;
    None when it was no address) and password, or raise INVALID_CREDENTIALS.

    Unknown emails verify a dummy hash, so the answer takes as long either way. A locked
    account is refused unchecked, with the same answer, after as long a wait as a check
    takes but no hash: a guess there learns nothing, and a locked account looks like an
    unknown email. What a failure writes is written after the answer, for the same reason.
    `device` is what the client's device cookie claims: when it names this user and their
    current security stamp, the lockout (which is for untrusted clients) neither refuses nor
    counts the attempt, and its success forgives no stranger's failures on a locked account.
    """
    attempts.checking()
    password = normalize_password(password)
    found = None
    if key is not None:
        async with db.connection() as connection:
            found = await update_user_attempt_counted_by_email_key(
                connection, key, now=clock.utcnow(), lockout=lockout_of(settings), device=device
            )
    if found is None:
        await _verify(hashing, None, password)
        raise invalid_credentials()
    user, attempt = found.user, found.attempt
    if attempt is None and not found.trusted:
        await _wait_as_long_as_a_verification(hashing, password)
        after_answer(record_failure, db, settings, found, "login_failed")
        raise invalid_credentials()
    if not await _verify(hashing, user.password_hash, password):
        after_answer(record_failure, db, settings, found, "login_failed")
        raise invalid_credentials()
    if found.has_second_factor and attempt is not None:
        async with db.connection() as connection:
            await update_user_attempt_uncounted(connection, user.id, lockout_of(settings))
    proved = PasswordProved(user, found.has_second_factor, found.trusted)
    if not user.is_active:
        await forgive_without_session(db, proved)
        raise invalid_credentials()
    attempts.proved()
    if hashing.needs_rehash(user.password_hash):
        new_hash = await hashing.hash(password)
        async with db.connection() as connection:
            await update_user_password_hash(connection, user.id, new_hash, clock.utcnow())
        log.info("upgraded the password hash of user %s", user.id)
    return proved


async def forgive_without_session(db: Database, proved: PasswordProved) -> None:
    """A right password refused after its check (an inactive account, an unverified address)
    starts no session, so it forgives by itself what the session's statement would have."""
    forgives = proved.forgives
    if forgives is not None:
        await forgive_failures(db, proved.user.id, trusted=forgives.trusted_device)


async def forgive_failures(db: Database, user_id: UUID, *, trusted: bool) -> None:
    """The right password forgives the failures before it; on a trusted device only while the
    account is not locked, so the owner signing in elsewhere does not hand whoever locked it
    a fresh run of guesses."""
    async with db.connection() as connection:
        await update_user_attempts_cleared(
            connection, user_id, unless_locked_at=clock.utcnow() if trusted else None
        )


async def check_current_password(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    account: Account,
    password: str,
    field: str = "current_password",
    *,
    device: TrustedDevice | None = None,
) -> User:
    """The signed-in user, once they have proved they know their password.

    Each try counts towards the account's lockout as a sign-in does (unless from the user's
    trusted device, as in `authenticate`). A locked account gets 429 ACCOUNT_LOCKED,
    unchecked: the caller is signed in, so that tells them nothing new.
    """
    attempts.checking()
    async with db.connection() as connection:
        found = await update_user_attempt_counted_by_id(
            connection,
            account.user_id,
            now=clock.utcnow(),
            lockout=lockout_of(settings),
            device=device,
        )
    if found is None:
        raise _wrong_password(field)
    user, attempt = found.user, found.attempt
    if attempt is None and not found.trusted:
        await record_failure(db, settings, found, "password_check_failed")
        raise account_locked(user.locked_until, settings)
    if not await _verify(hashing, user.password_hash, normalize_password(password)):
        await record_failure(db, settings, found, "password_check_failed")
        raise _wrong_password(field)
    await forgive_failures(db, user.id, trusted=found.trusted)
    attempts.proved()
    return user


def _wrong_password(field: str) -> APIError:
    detail = ErrorDetail(field=field, message="This is not your current password.", type="wrong")
    return APIError(400, "WRONG_PASSWORD", "The current password is wrong.", [detail])


# --- lockout: failed passwords counted on the account, whatever the address -----------------
# Each attempt is counted as failed before its hash is checked (a right password clears the
# count), so a burst of concurrent guesses cannot slip past a lock while the first ones hash.


def lockout_of(settings: Settings) -> Lockout:
    return Lockout(settings.lockout_threshold, settings.lockout_delay, settings.lockout_max_delay)


async def _verify(hashing: PasswordHashing, password_hash: str | None, password: str) -> bool:
    """Check a password (against the dummy hash without one) and remember how long it took."""
    started = time.perf_counter()
    if password_hash is None:
        await hashing.verify_dummy(password)
        matched = False
    else:
        matched = await hashing.verify(password_hash, password)
    _VERIFY_SECONDS.append(time.perf_counter() - started)
    return matched


async def _wait_as_long_as_a_verification(hashing: PasswordHashing, password: str) -> None:
    if not _VERIFY_SECONDS:  # nothing measured yet in this process: measure once
        await _verify(hashing, None, password)
        return
    await asyncio.sleep(random.choice(_VERIFY_SECONDS))  # noqa: S311 (a delay, not a secret)


async def record_failure(
    db: Database,
    settings: Settings,
    found: CountedAttempt,
    kind: audit.EventKind,
    wrong: str = "wrong_password",
) -> None:
    """Record a wrong password or second factor (`wrong` says which; or one refused unchecked
    as the account was locked); when it locked the account, record that too, and at the start
    of a lockout (the first lock since the last success) tell the owner by mail."""
    user, attempt = found.user, found.attempt
    locked_until = attempt.locked_until if attempt else None
    unchecked = attempt is None and not found.trusted
    details: dict[str, object] = {"reason": "locked" if unchecked else wrong}
    if found.trusted:
        details["trusted_device"] = True
    async with db.transaction() as connection:
        await audit.record(connection, user.id, kind, **details)
        if attempt is not None and locked_until is not None:
            await audit.record(
                connection, user.id, "account_locked", failures=attempt.failed_logins,
                until=locked_until.isoformat(),
            )  # fmt: skip
    if (
        attempt is None
        or locked_until is None
        or attempt.failed_logins != settings.lockout_threshold
    ):
        return
    log.warning("user %s locked after %d failed passwords", user.id, attempt.failed_logins)
    await mailer().send_later(
        Mail(
            to=user.email, subject="Your account is locked for a while",
            template="mail/account_locked",
            context={"name": user.display_name, "failures": attempt.failed_logins,
                     "wait": wait_text(_seconds_until(locked_until)),
                     "max_wait": wait_text(settings.lockout_max_delay)},
        )
    )  # fmt: skip


def _seconds_until(moment: datetime) -> int:
    return max(int((moment - clock.utcnow()).total_seconds() + 0.999), 1)


def account_locked(locked_until: datetime | None, settings: Settings) -> APIError:
    seconds = _seconds_until(locked_until) if locked_until else settings.lockout_delay
    return APIError(
        429, "ACCOUNT_LOCKED",
        f"Too many wrong passwords: the account is locked. Try again in {wait_text(seconds)}.",
        headers={"Retry-After": str(seconds)},
    )  # fmt: skip


async def reauthenticate(
    db: Database,
    hashing: PasswordHashing,
    settings: Settings,
    account: SessionAccount,
    password: str,
    *,
    device: TrustedDevice | None = None,
) -> None:
    """Prove the password again on this session, which makes it fresh."""
    await check_current_password(
        db, hashing, settings, account, password, field="password", device=device
    )
    async with db.transaction() as connection:
        await update_session_authenticated(connection, account.session_id, clock.utcnow())
        await audit.record(connection, account.user_id, "reauthenticated")
    log.info("user %s confirmed their password", account.user_id)
