"""The JSON API: register, sign in, sign out and the signed-in user."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_auth import login_required, logout_user
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import (
    document_response,
    security_scheme,
    tag,
    validate_request,
    validate_response,
)

from .. import accounts, lifecycle
from ..errors import documents_errors
from ..extensions import (
    EMAIL_CHANGE_LIMITS,
    LOGIN_LIMITS,
    MAIL_LIMITS,
    PASSWORD_CHANGE_LIMITS,
    REGISTER_LIMITS,
    TOKEN_LIMITS,
    WRITE_LIMITS,
    mail_after_answer,
    public_base_url,
    sign_in,
    sign_out,
    signed_in_account,
    state,
)
from ..models.sessions import SessionAccount
from ..models.users import User
from ..schemas import DisplayName, Email, LoginEmail, NoContent, Password

bp = Blueprint("api", __name__, url_prefix="/api")

SESSION: list[dict[str, list[str]]] = [{"sessionCookie": []}]


class UserOut(BaseModel):
    """A user, as every route shows one (never the password hash)."""

    id: UUID
    email: str
    display_name: str
    email_verified: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User | SessionAccount) -> UserOut:
        return cls(
            id=user.id if isinstance(user, User) else user.user_id,
            email=user.email,
            display_name=user.display_name,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
        )


class RegisterIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    email: Email
    password: Password
    display_name: DisplayName | None = None


class MessageOut(BaseModel):
    """An answer that tells a person what happens next."""

    message: str


CHECK_INBOX = "Check your inbox: we sent you a link to verify your address."
SENT_IF_KNOWN = "If an account uses this address, we have sent it a link."


@bp.post("/auth/register")
@rate_limit(limits=REGISTER_LIMITS)
@tag(["auth"])
@validate_request(RegisterIn)
@validate_response(UserOut, 201)
@validate_response(MessageOut, 202)
@documents_errors(400, 409, 413, 429)
async def register(data: RegisterIn) -> tuple[UserOut | MessageOut, int]:
    """Create an account and mail a link to verify the address.

    The password needs AUTHAPP_PASSWORD_MIN_LENGTH characters (12 by default) and no more
    than 1024; no composition rules. 201 with the user, or 409 `EMAIL_TAKEN` when the email
    has an account. With AUTHAPP_REQUIRE_VERIFIED_EMAIL the answer is always 202 with the
    same body, and a taken address gets a mail instead, so nobody learns who has an account.
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


@bp.post("/auth/login")
@rate_limit(limits=LOGIN_LIMITS)
@tag(["auth"])
@validate_request(LoginIn)
@validate_response(UserOut, 200)
@documents_errors(400, 401, 403, 413, 429)
async def login(data: LoginIn) -> UserOut:
    """Sign in: sets the session cookie.

    `remember: true` makes the cookie outlive the browser session (AUTHAPP_REMEMBER_LIFETIME);
    otherwise it ends with the browser session and AUTHAPP_SESSION_LIFETIME on the server.
    401 `INVALID_CREDENTIALS` for a wrong email or password or an inactive account alike.
    """
    user = await sign_in(data.email, data.password, remember=data.remember)
    return UserOut.of(user)


@bp.post("/auth/logout")
@rate_exempt
@tag(["auth"])
@security_scheme(SESSION)
@document_response(NoContent, 204)
async def logout() -> tuple[str, int]:
    """Sign out: revokes the session on the server and clears the cookie (204 also without one)."""
    await sign_out()
    return "", 204


@bp.get("/me")
@login_required
@tag(["account"])
@security_scheme(SESSION)
@validate_response(UserOut, 200)
@documents_errors(401)
async def me() -> UserOut:
    """The signed-in user. 401 `UNAUTHENTICATED` without a live session."""
    return UserOut.of(await signed_in_account())


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
    `TOKEN_EXPIRED` or `VALIDATION_ERROR` (the password policy).
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


class ProfileIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    display_name: DisplayName


@bp.patch("/me")
@rate_limit(limits=WRITE_LIMITS)
@login_required
@tag(["account"])
@security_scheme(SESSION)
@validate_request(ProfileIn)
@validate_response(UserOut, 200)
@documents_errors(400, 401, 429)
async def update_me(data: ProfileIn) -> UserOut:
    """Change the display name."""
    account = await signed_in_account()
    await accounts.change_display_name(state().db, account, data.display_name)
    return UserOut.of(replace(account, display_name=data.display_name))


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    current_password: Password
    new_password: Password


@bp.post("/me/password")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@login_required
@tag(["account"])
@security_scheme(SESSION)
@validate_request(PasswordChangeIn)
@document_response(NoContent, 204)
@documents_errors(400, 401, 429)
async def change_password(data: PasswordChangeIn) -> tuple[str, int]:
    """Change the password, proving the current one.

    Every other session of the user is revoked, and so are password-reset links; this
    session stays, and the owner gets a notice by mail. 400 `WRONG_PASSWORD` when
    `current_password` is wrong, `VALIDATION_ERROR` when the new one breaks the policy. Tries
    count against the account's sign-in limit (AUTHAPP_LOGIN_RATE_LIMIT_ACCOUNT).
    """
    app_state = state()
    await lifecycle.change_password(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        await signed_in_account(),
        current_password=data.current_password,
        new_password=data.new_password,
    )
    return "", 204


class EmailChangeIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    new_email: Email
    password: Password


@bp.post("/me/email")
@rate_limit(limits=EMAIL_CHANGE_LIMITS)
@login_required
@tag(["account"])
@security_scheme(SESSION)
@validate_request(EmailChangeIn)
@validate_response(MessageOut, 202)
@documents_errors(400, 401, 429)
async def change_email(data: EmailChangeIn) -> tuple[MessageOut, int]:
    """Ask to move the account to a new address, proving the password.

    A link goes to the new address; the address changes only when it is followed
    (`POST /api/auth/confirm-email`). 400 `WRONG_PASSWORD` or `VALIDATION_ERROR`.
    """
    app_state = state()
    await lifecycle.request_email_change(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        await signed_in_account(),
        password=data.password,
        new_email=data.new_email,
        base_url=public_base_url(),
    )
    return MessageOut(message="Check the new inbox: the change needs its link."), 202


class DeleteAccountIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    password: Password


@bp.delete("/me")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@login_required
@tag(["account"])
@security_scheme(SESSION)
@validate_request(DeleteAccountIn)
@document_response(NoContent, 204)
@documents_errors(400, 401, 429)
async def delete_me(data: DeleteAccountIn) -> tuple[str, int]:
    """Delete the account and everything of it, proving the password; the session ends too.

    400 `WRONG_PASSWORD`.
    """
    app_state = state()
    await lifecycle.delete_account(
        app_state.db, app_state.hashing, await signed_in_account(), password=data.password
    )
    logout_user()
    return "", 204
