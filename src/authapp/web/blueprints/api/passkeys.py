"""The JSON API's passkey resource: adding, listing, naming and removing the account's passkeys,
and signing in with a passkey alone (a passkey as the second factor goes to /auth/mfa)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart_rate_limiter import rate_limit
from quart_schema import document_response, tag, validate_request, validate_response

from ....accounts import passkeys
from ....models.webauthn import Passkey
from ....state import state
from ...enrolment import enrolment_allowed
from ...errors import documents_errors
from ...guards import auth_required, signed_in_account, signed_in_session
from ...limits import MFA_LIMITS, TOKEN_LIMITS, WRITE_LIMITS
from ...passkey_signing import relying_party, sign_in_options, sign_in_with_passkey
from ...schemas import NoContent
from .blueprint import UserOut, bp

# What navigator.credentials gives, as JSON (base64url): a handful of members, each checked by
# py_webauthn; the body's size bounds the rest (AUTHAPP_MAX_BODY_SIZE).
CREDENTIAL_MEMBERS = 16


def credential_field(description: str) -> Any:
    return Field(max_length=CREDENTIAL_MEMBERS, description=description)


class OptionsOut(BaseModel):
    """Options for navigator.credentials (WebAuthn's JSON form: binary values in base64url)."""

    model_config = ConfigDict(extra="allow")

    challenge: str = Field(description="Single use, for 5 minutes.")
    timeout: int


class PasskeyOut(BaseModel):
    """One passkey of the account (never its key)."""

    id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    backed_up: bool = Field(description="Whether the key is synced off the device (a backup).")
    transports: list[str]

    @classmethod
    def of(cls, passkey: Passkey) -> PasskeyOut:
        return cls(
            id=passkey.id, name=passkey.name, created_at=passkey.created_at,
            last_used_at=passkey.last_used_at, backed_up=passkey.backed_up,
            transports=passkey.transports,
        )  # fmt: skip


class PasskeysOut(BaseModel):
    passkeys: list[PasskeyOut]


class NewPasskeyIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: str | None = Field(
        default=None, min_length=1, max_length=passkeys.NAME_MAX_LENGTH,
        description="Unique among your passkeys; without one, `Passkey`, `Passkey 2`, …",
    )  # fmt: skip
    credential: dict[str, Any] = credential_field(
        "What navigator.credentials.create() gave, as JSON (PublicKeyCredential.toJSON())."
    )


class PasskeyNameIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: str = Field(min_length=1, max_length=passkeys.NAME_MAX_LENGTH)


class PasskeySignInIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    credential: dict[str, Any] = credential_field(
        "What navigator.credentials.get() gave, as JSON (PublicKeyCredential.toJSON())."
    )
    remember: bool = False


@bp.post("/me/passkeys/options")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["passkeys"])
@validate_response(OptionsOut, 200)
@documents_errors(401, 403, 429)
async def passkey_registration_options() -> OptionsOut:
    """Start adding a passkey: options for navigator.credentials.create().

    Your keys are excluded; a resident key and user verification are preferred. Needs a
    fresh sign-in.
    """
    options = await passkeys.registration_options(
        state().db, relying_party(), await signed_in_session()
    )
    return OptionsOut(**options)


@bp.post("/me/passkeys")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["passkeys"])
@validate_request(NewPasskeyIn)
@validate_response(PasskeyOut, 201)
@documents_errors(400, 401, 403, 409, 413, 429)
async def add_passkey(data: NewPasskeyIn) -> tuple[PasskeyOut, int]:
    """Add the passkey the authenticator made for the options' challenge.

    A change of credentials: every other session is signed out. 400 `PASSKEY_INVALID` (a bad
    attestation, another origin or RP ID, a used or expired challenge, a key already added);
    409 `PASSKEY_NAME_TAKEN`.
    """
    app_state = state()
    added = await passkeys.add_passkey(
        app_state.db, app_state.settings, relying_party(), await signed_in_session(),
        name=passkeys.clean_name(data.name), credential=data.credential,
    )  # fmt: skip
    return PasskeyOut.of(added), 201


@bp.get("/me/passkeys")
@auth_required("profile:read")
@enrolment_allowed
@tag(["passkeys"])
@validate_response(PasskeysOut, 200)
@documents_errors(401, 403)
async def list_passkeys() -> PasskeysOut:
    """List your passkeys, the oldest first."""
    account = await signed_in_account()
    found = await passkeys.list_passkeys(state().db, account.user_id)
    return PasskeysOut(passkeys=[PasskeyOut.of(each) for each in found])


@bp.patch("/me/passkeys/<uuid:passkey_id>")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["passkeys"])
@validate_request(PasskeyNameIn)
@validate_response(PasskeyOut, 200)
@documents_errors(400, 401, 403, 404, 409, 429)
async def rename_passkey(passkey_id: UUID, data: PasskeyNameIn) -> PasskeyOut:
    """Rename a passkey.

    404 `PASSKEY_NOT_FOUND`; 409 `PASSKEY_NAME_TAKEN`.
    """
    name = passkeys.clean_name(data.name)
    if name is None:
        raise passkeys.name_required()
    renamed = await passkeys.rename_passkey(state().db, await signed_in_session(), passkey_id, name)
    return PasskeyOut.of(renamed)


@bp.delete("/me/passkeys/<uuid:passkey_id>")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["passkeys"])
@document_response(NoContent, 204)
@documents_errors(401, 403, 404, 429)
async def remove_passkey(passkey_id: UUID) -> tuple[str, int]:
    """Remove a passkey: it signs nobody in from now on.

    A change of credentials: every other session is signed out; you are told by mail. 404
    `PASSKEY_NOT_FOUND`.
    """
    app_state = state()
    await passkeys.remove_passkey(
        app_state.db, app_state.settings, await signed_in_session(), passkey_id
    )
    return "", 204


@bp.post("/auth/passkey/options")
@rate_limit(limits=TOKEN_LIMITS)
@tag(["auth"])
@validate_response(OptionsOut, 200)
@documents_errors(429)
async def passkey_sign_in_options() -> OptionsOut:
    """Start signing in with a passkey: options for navigator.credentials.get().

    Its challenge is bound to this client by a cookie. Alone, any of your passkeys may answer
    (discoverable; user verification required); after a password that answered 202, the
    account's keys are listed and the passkey is its second factor (`POST /api/auth/mfa`).
    """
    return OptionsOut(**await sign_in_options())


@bp.post("/auth/passkey")
@rate_limit(limits=MFA_LIMITS)
@tag(["auth"])
@validate_request(PasskeySignInIn)
@validate_response(UserOut, 200)
@documents_errors(400, 401, 403, 413, 429)
async def passkey_sign_in(data: PasskeySignInIn) -> UserOut:
    """Sign in with a passkey alone; sets the session cookie (fresh).

    Answers the options' challenge, from the same client. 401 `INVALID_CREDENTIALS`, the
    one answer for every failure.
    """
    user = await sign_in_with_passkey(data.credential, remember=data.remember)
    return UserOut.of(user)
