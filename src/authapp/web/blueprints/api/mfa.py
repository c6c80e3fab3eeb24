"""The JSON API's two-factor resource: turning an authenticator app on and off, recovery codes,
and the second step of a sign-in."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from quart_rate_limiter import rate_limit
from quart_schema import document_response, tag, validate_request, validate_response

from ....accounts import mfa
from ....state import state
from ... import devices
from ...enrolment import enrolment_allowed
from ...errors import documents_errors
from ...guards import auth_required, signed_in_account, signed_in_session
from ...limits import MFA_LIMITS, PASSWORD_CHANGE_LIMITS, WRITE_LIMITS
from ...passkey_signing import challenge_reference, relying_party, set_challenge_cookie
from ...schemas import NoContent
from ...signing import complete_sign_in
from .blueprint import UserOut, bp
from .passkeys import CREDENTIAL_MEMBERS


class EnrolmentOut(BaseModel):
    """An authenticator set-up waiting for its first code."""

    secret: str = Field(description="The secret in base32, for typing into an app by hand.")
    otpauth_uri: str = Field(description="The otpauth:// URI a QR code carries.")
    qr_svg: str = Field(description="The URI as a QR code, an inline SVG element.")


class CodeIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    code: str = Field(
        min_length=1, max_length=32, description="Six digits from the authenticator app."
    )


class RecoveryCodesOut(BaseModel):
    """Recovery codes, shown this once: each signs in once in place of a code."""

    recovery_codes: list[str]


class MfaOut(BaseModel):
    """Which second factors the account has."""

    totp: bool
    recovery_codes_left: int
    methods: list[str]


class SecondFactorIn(BaseModel):
    """A code from the authenticator app, or one of the recovery codes (exactly one)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    code: str | None = Field(default=None, min_length=1, max_length=32)
    recovery_code: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def exactly_one(self) -> Self:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("give either code or recovery_code")
        return self


class SignInSecondFactorIn(BaseModel):
    """A code, a recovery code, or a passkey's answer to `POST /api/auth/passkey/options`
    (exactly one)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    code: str | None = Field(default=None, min_length=1, max_length=32)
    recovery_code: str | None = Field(default=None, min_length=1, max_length=64)
    credential: dict[str, Any] | None = Field(
        default=None, max_length=CREDENTIAL_MEMBERS,
        description="What navigator.credentials.get() gave, as JSON.",
    )  # fmt: skip

    @model_validator(mode="after")
    def exactly_one(self) -> Self:
        given = [self.code, self.recovery_code, self.credential]
        if sum(each is not None for each in given) != 1:
            raise ValueError("give one of code, recovery_code or credential")
        return self


@bp.post("/me/mfa/totp")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["mfa"])
@validate_response(EnrolmentOut, 200)
@documents_errors(401, 403, 409, 429)
async def start_totp() -> EnrolmentOut:
    """Start setting up an authenticator app: a new secret, not on until confirmed.

    Scan `qr_svg` (or type `secret`) into the app, then confirm with a code. A new call
    replaces a set-up still waiting. Needs a fresh sign-in. 409 `MFA_ALREADY_ENABLED`.
    """
    app_state = state()
    enrolment = await mfa.start_enrolment(
        app_state.db, app_state.encryption, app_state.settings, await signed_in_session()
    )
    return EnrolmentOut(
        secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
    )


@bp.post("/me/mfa/totp/confirm")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["mfa"])
@validate_request(CodeIn)
@validate_response(RecoveryCodesOut, 200)
@documents_errors(400, 401, 403, 409, 429)
async def confirm_totp(data: CodeIn) -> RecoveryCodesOut:
    """Turn two-factor sign-in on with the first code from the app.

    The answer holds ten recovery codes, never shown again. Every other session is signed
    out. 400 `MFA_CODE_INVALID`; 409 `MFA_NOT_PENDING` without a set-up waiting.
    """
    app_state = state()
    codes = await mfa.confirm_enrolment(
        app_state.db, app_state.encryption, app_state.settings, await signed_in_session(),
        data.code,
    )  # fmt: skip
    return RecoveryCodesOut(recovery_codes=codes)


@bp.get("/me/mfa")
@auth_required("profile:read")
@enrolment_allowed
@tag(["mfa"])
@validate_response(MfaOut, 200)
@documents_errors(401, 403)
async def mfa_status() -> MfaOut:
    """Show which second factors the account has and how many recovery codes are left."""
    account = await signed_in_account()
    status = await mfa.mfa_status(state().db, account.user_id)
    return MfaOut(
        totp=status.totp, recovery_codes_left=status.recovery_codes_left, methods=status.methods
    )


@bp.post("/me/mfa/recovery-codes")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["mfa"])
@validate_response(RecoveryCodesOut, 200)
@documents_errors(401, 403, 409, 429)
async def regenerate_recovery_codes() -> RecoveryCodesOut:
    """Make a new set of recovery codes; every code of before stops working.

    Needs a fresh sign-in. 409 `MFA_NOT_ENABLED`.
    """
    app_state = state()
    codes = await mfa.regenerate_recovery_codes(
        app_state.db, app_state.settings, await signed_in_session()
    )
    return RecoveryCodesOut(recovery_codes=codes)


@bp.delete("/me/mfa/totp")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@tag(["mfa"])
@validate_request(SecondFactorIn)
@document_response(NoContent, 204)
@documents_errors(400, 401, 403, 409, 429)
async def disable_totp(data: SecondFactorIn) -> tuple[str, int]:
    """Turn two-factor sign-in off, proved by a current code or a recovery code.

    The recovery codes stop working and every other session is signed out. Tries count as
    sign-in attempts. 400 `MFA_CODE_INVALID`; 409 `MFA_NOT_ENABLED`.
    """
    app_state = state()
    account = await signed_in_session()
    await mfa.disable(
        app_state.db, app_state.encryption, app_state.settings, account, code=data.code,
        recovery_code=data.recovery_code, device=devices.trusted(account.user_id),
    )  # fmt: skip
    return "", 204


@bp.post("/auth/mfa")
@rate_limit(limits=MFA_LIMITS)
@tag(["auth"])
@validate_request(SignInSecondFactorIn)
@validate_response(UserOut, 200)
@documents_errors(400, 401, 413, 429)
async def second_factor(data: SignInSecondFactorIn) -> UserOut:
    """Finish a sign-in that answered 202: a code, a recovery code or a passkey.

    Sets the session cookie. Needs the pending sign-in's cookie from that answer (5 minutes, 5
    tries). `methods` in the 202 lists `webauthn` when the account has a passkey: it answers
    the challenge of `POST /api/auth/passkey/options`, asked after the password. 400
    `MFA_CODE_INVALID`; 401 `MFA_PENDING_EXPIRED` when there is no live pending sign-in:
    sign in with the password again.
    """
    passkey = None
    if data.credential is not None:
        passkey = (relying_party(), challenge_reference(), data.credential)
        set_challenge_cookie(None)
    user = await complete_sign_in(code=data.code, recovery_code=data.recovery_code, passkey=passkey)
    return UserOut.of(user)
