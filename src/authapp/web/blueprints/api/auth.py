"""The JSON API's auth resource: register, sign in and out, mailed links (verify, reset, confirm an
address), confirming the password again."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import (
    document_response,
    security_scheme,
    tag,
    validate_request,
    validate_response,
)

from ....accounts import lifecycle, mfa_signin, signin
from ....state import state
from ... import devices
from ...enrolment import enrolment_allowed
from ...errors import documents_errors
from ...features import feature
from ...guards import auth_required, signed_in_session
from ...limits import (
    LOGIN_LIMITS,
    MAIL_LIMITS,
    PASSWORD_CHANGE_LIMITS,
    REGISTER_LIMITS,
    TOKEN_LIMITS,
)
from ...schemas import DisplayName, Email, LoginEmail, NoContent, Password
from ...signing import (
    SecondFactorRequired,
    mail_after_answer,
    public_base_url,
    sign_in,
    sign_out,
)
from .blueprint import CHECK_INBOX, SENT_IF_KNOWN, SESSION_IF_ANY, MessageOut, UserOut, bp


class RegisterIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    email: Email
    password: Password
    display_name: DisplayName | None = None


@bp.post("/auth/register")
@feature("registration")
@rate_limit(limits=REGISTER_LIMITS)
@tag(["auth"])
@validate_request(RegisterIn)
@validate_response(UserOut, 201)
@validate_response(MessageOut, 202)
@documents_errors(400, 409, 413, 429)
async def register(data: RegisterIn) -> tuple[UserOut | MessageOut, int]:
    """Create an account and mail a link to verify the address.

    The password needs AUTHAPP_PASSWORD_MIN_LENGTH characters (12 by default) and no more
    than 1024; no composition rules, but 400 `PASSWORD_TOO_COMMON` for a common password and
    `PASSWORD_TOO_SIMILAR` for one too much like the email or display name. 201 with the user,
    or 409 `EMAIL_TAKEN` when the email has an account. With AUTHAPP_REQUIRE_VERIFIED_EMAIL
    the answer is always 202 with the same body, and a taken address gets a mail instead, so
    nobody learns who has an account.
    """
    app_state = state()
    user = await lifecycle.sign_up(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        email=data.email,
        password=data.password,
        display_name=data.display_name,
        base_url=public_base_url(),
    )
    if app_state.settings.require_verified_email or user is None:
        return MessageOut(message=CHECK_INBOX), 202
    return UserOut.of(user), 201


class LoginIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    email: LoginEmail
    password: Password
    remember: bool = False


class SecondFactorRequiredOut(BaseModel):
    """The password was right; finish with POST /api/auth/mfa within 5 minutes."""

    mfa_required: bool = True
    methods: list[str]


@bp.post("/auth/login")
@rate_limit(limits=LOGIN_LIMITS)
@tag(["auth"])
@validate_request(LoginIn)
@validate_response(UserOut, 200)
@validate_response(SecondFactorRequiredOut, 202)
@documents_errors(400, 401, 403, 413, 429)
async def login(data: LoginIn) -> tuple[UserOut | SecondFactorRequiredOut, int]:
    """Sign in: sets the session cookie, or asks for the second factor.

    `remember: true` makes the cookie outlive the browser session (AUTHAPP_REMEMBER_LIFETIME);
    otherwise it ends with the browser session and AUTHAPP_SESSION_LIFETIME on the server.
    401 `INVALID_CREDENTIALS` for a wrong email or password or an inactive account alike.
    For an account with two-factor sign-in the answer is 202 with the `methods` it takes and
    a pending sign-in's cookie (no session yet): send a code to POST /api/auth/mfa.
    """
    signed_in = await sign_in(data.email, data.password, remember=data.remember)
    if isinstance(signed_in, SecondFactorRequired):
        return SecondFactorRequiredOut(methods=signed_in.methods), 202
    return UserOut.of(signed_in), 200


@bp.post("/auth/logout")
@rate_exempt
@enrolment_allowed
@tag(["auth"])
@security_scheme(SESSION_IF_ANY)
@document_response(NoContent, 204)
async def logout() -> tuple[str, int]:
    """Sign out: revokes the session on the server and clears the cookie (204 also without one)."""
    await sign_out()
    return "", 204


class TokenIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    token: str = Field(min_length=1, max_length=128)


class EmailIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    email: LoginEmail


@bp.post("/auth/verify-email")
@rate_limit(limits=TOKEN_LIMITS)
@tag(["auth"])
@validate_request(TokenIn)
@document_response(NoContent, 204)
@documents_errors(400, 429)
async def verify_email(data: TokenIn) -> tuple[str, int]:
    """Verify an address with the token from the mailed link (single-use, 24 hours).

    400 `TOKEN_INVALID` (unknown, used, or for an address the user has left) or `TOKEN_EXPIRED`.
    """
    await lifecycle.verify_email(state().db, data.token)
    return "", 204


@bp.post("/auth/verify-email/resend")
@rate_limit(limits=MAIL_LIMITS)
@tag(["auth"])
@validate_request(EmailIn)
@validate_response(MessageOut, 202)
@documents_errors(400, 429)
async def resend_verification(data: EmailIn) -> tuple[MessageOut, int]:
    """Mail a new verification link; the answer is the same whether or not it was sent."""
    mail_after_answer(lifecycle.resend_verification, data.email)
    return MessageOut(message=SENT_IF_KNOWN), 202


@bp.post("/auth/forgot-password")
@rate_limit(limits=MAIL_LIMITS)
@tag(["auth"])
@validate_request(EmailIn)
@validate_response(MessageOut, 202)
@documents_errors(400, 429)
async def forgot_password(data: EmailIn) -> tuple[MessageOut, int]:
    """Mail a password-reset link (single-use, 1 hour).

    Always 202 with the same body, sent or not; the work happens after the answer, so it
    takes as long either way.
    """
    mail_after_answer(lifecycle.request_password_reset, data.email)
    return MessageOut(message=SENT_IF_KNOWN), 202


class ResetPasswordIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    token: str = Field(min_length=1, max_length=128)
    password: Password


@bp.post("/auth/reset-password")
@rate_limit(limits=TOKEN_LIMITS)
@tag(["auth"])
@validate_request(ResetPasswordIn)
@document_response(NoContent, 204)
@documents_errors(400, 429)
async def reset_password(data: ResetPasswordIn) -> tuple[str, int]:
    """Set a new password with the token from the mailed link.

    Every session of the user is revoked and the owner gets a notice. 400 `TOKEN_INVALID`,
    `TOKEN_EXPIRED`, or for the password policy `VALIDATION_ERROR`, `PASSWORD_TOO_COMMON` or
    `PASSWORD_TOO_SIMILAR`.
    """
    app_state = state()
    await lifecycle.reset_password(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        token=data.token,
        password=data.password,
    )
    return "", 204


@bp.post("/auth/confirm-email")
@rate_limit(limits=TOKEN_LIMITS)
@tag(["auth"])
@validate_request(TokenIn)
@document_response(NoContent, 204)
@documents_errors(400, 409, 429)
async def confirm_email_change(data: TokenIn) -> tuple[str, int]:
    """Switch to a new address with the token mailed to it; the old address gets a notice.

    400 `TOKEN_INVALID` or `TOKEN_EXPIRED`; 409 `EMAIL_TAKEN` if another account took the
    address meanwhile.
    """
    await lifecycle.confirm_email_change(state().db, data.token)
    return "", 204


class ReauthIn(BaseModel):
    """The password, or a code from the authenticator app (exactly one)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    password: Password | None = None
    code: str | None = Field(default=None, min_length=1, max_length=32)

    @model_validator(mode="after")
    def exactly_one(self) -> Self:
        if (self.password is None) == (self.code is None):
            raise ValueError("give either password or code")
        return self


@bp.post("/auth/reauth")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required()
@enrolment_allowed
@tag(["auth"])
@validate_request(ReauthIn)
@document_response(NoContent, 204)
@documents_errors(400, 401, 403, 409, 429)
async def reauth(data: ReauthIn) -> tuple[str, int]:
    """Prove the password (or a code from the app) again: this session counts as fresh.

    For AUTHAPP_FRESHNESS seconds this session may then change the password or the address,
    delete the account, create tokens, change second factors or sign out everywhere. 400
    `WRONG_PASSWORD` or `MFA_CODE_INVALID`; 409 `MFA_NOT_ENABLED` for a code without an
    authenticator. Tries count against the account's sign-in limit.
    """
    app_state = state()
    account = await signed_in_session()
    device = devices.trusted(account.user_id)
    if data.code is not None:
        await mfa_signin.reauthenticate_with_code(
            app_state.db, app_state.encryption, app_state.settings, account, data.code,
            device=device,
        )  # fmt: skip
    else:
        assert data.password is not None  # exactly_one
        await signin.reauthenticate(
            app_state.db, app_state.hashing, app_state.settings, account, data.password,
            device=device,
        )  # fmt: skip
    return "", 204
