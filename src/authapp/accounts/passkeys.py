"""Passkeys (WebAuthn, with py_webauthn): adding one to an account, naming and removing them;
the challenges and errors that signing in with one shares (passkey_signin.py).

Every ceremony answers a challenge the server made: 32 random bytes in a row of their own,
used once whatever the answer proves, dead after 5 minutes. Adding a passkey binds the
challenge to the signed-in user; signing in binds it to the client, by the SHA-256 of a
reference in a cookie (web/passkey_signing.py). An authenticator stores a random user handle,
never the user's id or email. A signature counter that does not move forward (for a key that
counts) is a cloned key: refused, and recorded.

Adding or removing a passkey is a change of credentials, as turning the authenticator app on
or off is (credentials.py): whoever held the account by the old credentials alone (another
session, a pending reset link, a trusted device, a sign-in waiting for its second factor)
holds nothing more, and the owner is told by mail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ..config import Settings
from ..errors import APIError, ErrorDetail, validation_error
from ..infra import clock
from ..infra.database import Database
from ..models.mfa import select_totp
from ..models.sessions import SessionAccount
from ..models.users import Account
from ..models.webauthn import (
    Passkey,
    Purpose,
    delete_passkey,
    insert_challenge,
    insert_passkey,
    select_passkeys_of_user,
    update_challenge_used,
    update_passkey_name,
    upsert_user_handle,
)
from . import audit
from .credentials import credentials_changed
from .links import send_mail

if TYPE_CHECKING:
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

# py_webauthn (with cryptography.x509 and cbor2: some 15 MiB a worker) is imported inside the
# functions that run a ceremony, not with the app: most workers never see a passkey (issue 20).

log = logging.getLogger("authapp.passkeys")  # see authapp.infra.logs

CHALLENGE_LIFETIME = timedelta(minutes=5)
CEREMONY_TIMEOUT_MS = int(CHALLENGE_LIFETIME.total_seconds() * 1000)
NAME_MAX_LENGTH = 64


def malformed() -> tuple[type[Exception], ...]:
    """What a malformed answer raises inside py_webauthn besides its own exceptions (base64,
    CBOR): for `except malformed():`, evaluated only once something was raised."""
    from webauthn.helpers.exceptions import WebAuthnException

    return (WebAuthnException, ValueError, TypeError, KeyError, IndexError)


@dataclass(frozen=True)
class RelyingParty:
    """Who asks: the RP ID (a host name) and the one origin answers must come from."""

    id: str
    origin: str
    name: str


# --- errors -------------------------------------------------------------------------------


def passkey_invalid() -> APIError:
    detail = ErrorDetail(
        field="credential", type="wrong",
        message="This passkey could not be checked: try adding it again.",
    )  # fmt: skip
    return APIError(400, "PASSKEY_INVALID", "The passkey was not accepted.", [detail])


def passkey_not_found() -> APIError:
    return APIError(404, "PASSKEY_NOT_FOUND", "You have no passkey with this id.")


def name_taken() -> APIError:
    detail = ErrorDetail(field="name", message="You have a passkey of this name.", type="taken")
    return APIError(409, "PASSKEY_NAME_TAKEN", "You have a passkey of this name.", [detail])


def name_required() -> APIError:
    return validation_error("name", "Give the passkey a name.", "missing")


def passkey_rejected() -> APIError:
    # One answer for every failure of a sign-in with a passkey: nothing tells which.
    return APIError(401, "INVALID_CREDENTIALS", "This passkey did not sign you in.")


def clean_name(name: str | None) -> str | None:
    """The name without outer spaces; None for none (a numbered default is chosen)."""
    stripped = (name or "").strip()
    return stripped[:NAME_MAX_LENGTH] or None


# --- challenges ----------------------------------------------------------------------------


async def new_challenge(
    db: Database, purpose: Purpose, user_id: UUID | None, challenge_id: bytes | None = None
) -> bytes:
    """A new challenge, its row keyed by `challenge_id` (or its own SHA-256)."""
    challenge = secrets.token_bytes(32)
    now = clock.utcnow()
    async with db.connection() as connection:
        await insert_challenge(
            connection, challenge_id=challenge_id or hashlib.sha256(challenge).digest(),
            challenge=challenge, purpose=purpose, user_id=user_id, now=now,
            expires_at=now + CHALLENGE_LIFETIME,
        )  # fmt: skip
    return challenge


async def use_challenge(
    db: Database, challenge_id: bytes | None, purpose: Purpose, user_id: UUID | None
) -> bytes | None:
    """Spend the challenge, in its own commit: an answer that fails spends it too."""
    if challenge_id is None:
        return None
    async with db.connection() as connection:
        return await update_challenge_used(
            connection, challenge_id, purpose, user_id, clock.utcnow()
        )


# --- adding, listing, naming, removing -------------------------------------------------------


async def registration_options(db: Database, rp: RelyingParty, account: Account) -> Any:
    """Options for navigator.credentials.create(), as JSON (base64url): the user's random
    handle, their keys excluded, a resident key and user verification preferred."""
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    async with db.connection() as connection:
        handle = await upsert_user_handle(connection, account.user_id, secrets.token_bytes(32))
        existing = await select_passkeys_of_user(connection, account.user_id)
    challenge = await new_challenge(db, "register", account.user_id)
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_name=account.email, user_id=handle,
        user_display_name=account.display_name, challenge=challenge,
        timeout=CEREMONY_TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[descriptor(each) for each in existing],
    )  # fmt: skip
    return json.loads(options_to_json(options))


async def add_passkey(
    db: Database,
    settings: Settings,
    rp: RelyingParty,
    account: SessionAccount,
    *,
    name: str | None,
    credential: dict[str, Any],
) -> Passkey:
    """Check the authenticator's answer to the user's challenge and keep its public key."""
    from webauthn import verify_registration_response
    from webauthn.helpers import parse_client_data_json, parse_registration_credential_json
    from webauthn.helpers.structs import AuthenticatorTransport

    try:
        parsed = parse_registration_credential_json(credential)
        challenge = parse_client_data_json(parsed.response.client_data_json).challenge
    except malformed() as error:
        log.info("a passkey of user %s was refused: %s", account.user_id, error)
        raise passkey_invalid() from None
    expected = await use_challenge(
        db, hashlib.sha256(challenge).digest(), "register", account.user_id
    )
    if expected is None:
        raise passkey_invalid()
    try:
        verified = verify_registration_response(
            credential=parsed, expected_challenge=expected, expected_rp_id=rp.id,
            expected_origin=rp.origin,
        )  # fmt: skip
    except malformed() as error:
        log.info("a passkey of user %s was refused: %s", account.user_id, error)
        raise passkey_invalid() from None
    known = {str(transport.value) for transport in AuthenticatorTransport}
    transports = sorted({str(t.value) for t in parsed.response.transports or []} & known)
    async with db.transaction() as connection:
        existing = await select_passkeys_of_user(connection, account.user_id)
        chosen = name or _default_name({each.name for each in existing})
        added = await insert_passkey(
            connection, user_id=account.user_id, credential_id=verified.credential_id,
            public_key=verified.credential_public_key, sign_count=verified.sign_count,
            transports=transports, backed_up=verified.credential_backed_up,
            device_type=verified.credential_device_type.value, name=chosen, now=clock.utcnow(),
        )  # fmt: skip
        if added == "name_taken":
            raise name_taken()
        if added == "credential_taken":  # this user's already, or another account's
            raise passkey_invalid()
        revoked = await credentials_changed(connection, settings, account.user_id, by=account)
        await audit.record(
            connection, account.user_id, "passkey_added", passkey_id=str(added.id),
            name=added.name, sessions_revoked=revoked.sessions, tokens_revoked=revoked.tokens,
        )  # fmt: skip
    log.info("user %s added a passkey", account.user_id)
    await send_mail(
        account.email, "A passkey was added", "mail/passkey_added",
        name=account.display_name, passkey=added.name,
    )  # fmt: skip
    return added


def _default_name(taken: set[str]) -> str:
    number = 1
    while (name := "Passkey" if number == 1 else f"Passkey {number}") in taken:
        number += 1
    return name


async def list_passkeys(db: Database, user_id: UUID) -> list[Passkey]:
    async with db.connection() as connection:
        return await select_passkeys_of_user(connection, user_id)


async def rename_passkey(db: Database, account: Account, passkey_id: UUID, name: str) -> Passkey:
    async with db.connection() as connection:
        renamed = await update_passkey_name(connection, account.user_id, passkey_id, name)
    if renamed == "not_found":
        raise passkey_not_found()
    if renamed == "name_taken":
        raise name_taken()
    return renamed


async def remove_passkey(
    db: Database, settings: Settings, account: SessionAccount, passkey_id: UUID
) -> bool:
    """Remove one of the user's passkeys (the route asks for a fresh session); return whether
    it was the account's last second factor, which the mail to the owner says."""
    async with db.transaction() as connection:
        removed = await delete_passkey(connection, account.user_id, passkey_id)
        if removed is None:
            raise passkey_not_found()
        totp = await select_totp(connection, account.user_id)
        others = await select_passkeys_of_user(connection, account.user_id)
        last = not others and (totp is None or totp.confirmed_at is None)
        revoked = await credentials_changed(connection, settings, account.user_id, by=account)
        await audit.record(
            connection, account.user_id, "passkey_removed", passkey_id=str(removed.id),
            name=removed.name, last_second_factor=last, sessions_revoked=revoked.sessions,
            tokens_revoked=revoked.tokens,
        )  # fmt: skip
    log.info("user %s removed a passkey", account.user_id)
    await send_mail(
        account.email, "A passkey was removed", "mail/passkey_removed",
        name=account.display_name, passkey=removed.name, last=last,
    )  # fmt: skip
    return last


def descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

    return PublicKeyCredentialDescriptor(
        id=passkey.credential_id,
        transports=[AuthenticatorTransport(each) for each in passkey.transports],
    )
