"""Signing in with a passkey: alone (a discoverable key, user verification required), or as the
second factor after a password (the account's keys listed; accounts/mfa.py's prove() counts
it on the lockout). The challenge is bound to the client by the SHA-256 of a reference in its
cookie; a failure of one of our keys is recorded on its owner, and a counter that does not move
forward (for a key that counts) is taken for a cloned key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from quart_db import Connection

from ..infra import clock
from ..infra.database import Database
from ..models.users import User, select_user_by_id
from ..models.webauthn import (
    Passkey,
    select_passkey_by_credential_id,
    select_user_handle,
    update_passkey_used,
)
from . import attempts, audit
from .passkeys import (
    CEREMONY_TIMEOUT_MS,
    RelyingParty,
    descriptor,
    list_passkeys,
    malformed,
    new_challenge,
    passkey_rejected,
    use_challenge,
)
from .sessions import new_token, token_id

if TYPE_CHECKING:
    from webauthn.helpers.structs import AuthenticationCredential

# py_webauthn is imported in the functions that use it, not with the app (passkeys.py says why).

log = logging.getLogger("authapp.passkeys")  # see authapp.infra.logs


async def authentication_options(
    db: Database, rp: RelyingParty, *, second_factor_of: UUID | None
) -> tuple[str, Any]:
    """A reference for the client's cookie and the options for navigator.credentials.get().
    Alone, a passkey must verify its user and is discoverable (no list of keys: nobody is
    named yet); as the second factor of `second_factor_of`, their keys are listed."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import UserVerificationRequirement

    reference = new_token()
    keys: list[Passkey] = []
    if second_factor_of is not None:
        keys = await list_passkeys(db, second_factor_of)
    challenge = await new_challenge(db, "authenticate", second_factor_of, token_id(reference))
    options = generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
        allow_credentials=[descriptor(each) for each in keys],
        user_verification=UserVerificationRequirement.PREFERRED
        if second_factor_of else UserVerificationRequirement.REQUIRED,
    )  # fmt: skip
    return reference, json.loads(options_to_json(options))


async def sign_in(
    db: Database, rp: RelyingParty, reference: str | None, credential: dict[str, Any]
) -> User:
    """The user a passkey alone proves (user verification required); 401
    INVALID_CREDENTIALS, the one answer, for anything else."""
    attempts.checking()
    challenge_id = None if reference is None else token_id(reference)
    expected = await use_challenge(db, challenge_id, "authenticate", None)
    parsed = _parsed_assertion(credential)
    if expected is None or parsed is None:
        raise passkey_rejected()
    async with db.transaction() as connection:
        passkey = await select_passkey_by_credential_id(connection, parsed.raw_id)
        if passkey is None:
            raise passkey_rejected()
        user = await select_user_by_id(connection, passkey.user_id)
        handle = await select_user_handle(connection, passkey.user_id)
        if parsed.response.user_handle is None or parsed.response.user_handle != handle:
            # The key is one of ours, but the handle names someone else (or nobody).
            await _failed(connection, passkey, "user_handle")
            proved = False
        else:
            proved = await _check(connection, rp, parsed, expected, passkey, uv=True)
        if proved and user is not None and user.is_active:
            await audit.record(
                connection, passkey.user_id, "passkey_sign_in", passkey_id=str(passkey.id),
                second_factor=False,
            )  # fmt: skip
    if not proved or user is None or not user.is_active:
        raise passkey_rejected()
    attempts.proved()
    return user


async def second_factor_check(
    db: Database, rp: RelyingParty, reference: str | None, credential: dict[str, Any], user_id: UUID
) -> Callable[[Connection], Awaitable[bool]]:
    """What mfa.prove runs, in its transaction, for a passkey as `user_id`'s second factor
    (their key, on a challenge made for them): whether it proved. The challenge is spent
    now, whatever follows."""
    challenge_id = None if reference is None else token_id(reference)
    expected = await use_challenge(db, challenge_id, "authenticate", user_id)
    parsed = _parsed_assertion(credential)

    async def check(connection: Connection) -> bool:
        if expected is None or parsed is None:
            return False
        passkey = await select_passkey_by_credential_id(connection, parsed.raw_id)
        if passkey is None or passkey.user_id != user_id:
            return False
        if not await _check(connection, rp, parsed, expected, passkey, uv=False):
            return False
        await audit.record(
            connection, user_id, "passkey_sign_in", passkey_id=str(passkey.id),
            second_factor=True,
        )  # fmt: skip
        return True

    return check


def _parsed_assertion(credential: dict[str, Any]) -> AuthenticationCredential | None:
    from webauthn.helpers import parse_authentication_credential_json

    try:
        return parse_authentication_credential_json(credential)
    except malformed():
        return None


async def _check(
    connection: Connection,
    rp: RelyingParty,
    parsed: AuthenticationCredential,
    expected: bytes,
    passkey: Passkey,
    *,
    uv: bool,
) -> bool:
    """Whether the assertion is `passkey`'s signature over the challenge, for this RP and
    origin (and with user verification when `uv`), its counter moved on; the counter is kept.
    A failure is recorded on the key's owner."""
    from webauthn import verify_authentication_response

    try:
        verified = verify_authentication_response(
            credential=parsed, expected_challenge=expected, expected_rp_id=rp.id,
            expected_origin=rp.origin, credential_public_key=passkey.public_key,
            # The counter is compared below, after the signature, so that only a genuine
            # signature with a counter gone back is taken for a cloned key.
            credential_current_sign_count=0, require_user_verification=uv,
        )  # fmt: skip
    except malformed() as error:
        log.info("a passkey of user %s failed: %s", passkey.user_id, error)
        await _failed(connection, passkey, "invalid")
        return False
    reported, known = verified.new_sign_count, passkey.sign_count
    if (reported > 0 or known > 0) and reported <= known:
        log.warning(
            "the signature counter of a passkey of user %s went from %d to %d: a cloned key?",
            passkey.user_id, known, reported,
        )  # fmt: skip
        await _failed(connection, passkey, "sign_count", known=known, reported=reported)
        return False
    # False when a parallel use of the key counted as far first.
    return await update_passkey_used(
        connection, passkey.id, sign_count=reported, backed_up=verified.credential_backed_up,
        now=clock.utcnow(),
    )  # fmt: skip


async def _failed(connection: Connection, passkey: Passkey, reason: str, **details: Any) -> None:
    await audit.record(
        connection, passkey.user_id, "passkey_failed", passkey_id=str(passkey.id),
        reason=reason, **details,
    )  # fmt: skip
