"""The JSON API: register, sign in, sign out and the signed-in user."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_auth import logout_user
from quart_cors import cors
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import (
    document_response,
    security_scheme,
    tag,
    validate_querystring,
    validate_request,
    validate_response,
)

from .. import accounts, audit, devices, lifecycle, sessions, tokens
from ..audit import EventKind
from ..csrf import check_api_origin
from ..errors import documents_errors
from ..extensions import mail_after_answer, public_base_url, sign_in, sign_out
from ..guards import auth_required, signed_in_account, signed_in_session
from ..limits import (
    EMAIL_CHANGE_LIMITS,
    LOGIN_LIMITS,
    MAIL_LIMITS,
    PASSWORD_CHANGE_LIMITS,
    REGISTER_LIMITS,
    TOKEN_LIMITS,
    WRITE_LIMITS,
)
from ..models.sessions import SessionAccount
from ..models.users import Account, User
from ..schemas import DisplayName, Email, LoginEmail, NoContent, Password, TokenName
from ..state import state
from ..tokens import Scope

# Cross-origin callers: only the origins in AUTHAPP_CORS_ORIGINS (none by default; see
# init_extensions), with credentials, so a trusted front end elsewhere may call the API.
bp = cors(Blueprint("api", __name__, url_prefix="/api"))
bp.before_request(check_api_origin)

# Signing out takes the session cookie, and answers 204 without one too: `{}` says it is optional.
SESSION_IF_ANY: list[dict[str, list[str]]] = [{"sessionCookie": []}, {}]


class UserOut(BaseModel):
    """A user, as every route shows one (never the password hash)."""

    id: UUID
    email: str
    display_name: str
    email_verified: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User | Account) -> UserOut:
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
@security_scheme(SESSION_IF_ANY)
@document_response(NoContent, 204)
async def logout() -> tuple[str, int]:
    """Sign out: revokes the session on the server and clears the cookie (204 also without one)."""
    await sign_out()
    return "", 204


@bp.get("/me")
@auth_required("profile:read")
@tag(["account"])
@validate_response(UserOut, 200)
@documents_errors(401, 403)
async def me() -> UserOut:
    """Show the signed-in user.

    401 `UNAUTHENTICATED` without a live session or a valid token.
    """
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


class ProfileIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    display_name: DisplayName


@bp.patch("/me")
@rate_limit(limits=WRITE_LIMITS)
@auth_required("profile:write")
@tag(["account"])
@validate_request(ProfileIn)
@validate_response(UserOut, 200)
@documents_errors(400, 401, 403, 429)
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
@auth_required(fresh=True)
@tag(["account"])
@validate_request(PasswordChangeIn)
@document_response(NoContent, 204)
@documents_errors(400, 401, 403, 429)
async def change_password(data: PasswordChangeIn) -> tuple[str, int]:
    """Change the password, proving the current one.

    Every other session of the user is revoked, and so are password-reset links; this
    session stays, and the owner gets a notice by mail. 400 `WRONG_PASSWORD` when
    `current_password` is wrong; `VALIDATION_ERROR`, `PASSWORD_TOO_COMMON` or
    `PASSWORD_TOO_SIMILAR` when the new one breaks the policy. Tries
    count against the account's sign-in limit (AUTHAPP_LOGIN_RATE_LIMIT_ACCOUNT). Needs a
    fresh sign-in: 401 `REAUTH_REQUIRED` (see `POST /api/auth/reauth`).
    """
    app_state = state()
    account = await signed_in_session()
    revoked = await lifecycle.change_password(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        account,
        current_password=data.current_password,
        new_password=data.new_password,
        device=devices.trusted(account.user_id),
    )
    # Every device's trust ended with the old password; this one proved both.
    devices.remember_device(account.user_id, revoked.security_stamp, account.email_key)
    return "", 204


class EmailChangeIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    new_email: Email
    password: Password


@bp.post("/me/email")
@rate_limit(limits=EMAIL_CHANGE_LIMITS)
@auth_required(fresh=True)
@tag(["account"])
@validate_request(EmailChangeIn)
@validate_response(MessageOut, 202)
@documents_errors(400, 401, 403, 429)
async def change_email(data: EmailChangeIn) -> tuple[MessageOut, int]:
    """Ask to move the account to a new address, proving the password.

    A link goes to the new address; the address changes only when it is followed
    (`POST /api/auth/confirm-email`). 400 `WRONG_PASSWORD` or `VALIDATION_ERROR`. Needs a
    fresh sign-in: 401 `REAUTH_REQUIRED`.
    """
    app_state = state()
    account = await signed_in_session()
    await lifecycle.request_email_change(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        account,
        password=data.password,
        new_email=data.new_email,
        base_url=public_base_url(),
        device=devices.trusted(account.user_id),
    )
    return MessageOut(message="Check the new inbox: the change needs its link."), 202


class DeleteAccountIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    password: Password


@bp.delete("/me")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required(fresh=True)
@tag(["account"])
@validate_request(DeleteAccountIn)
@document_response(NoContent, 204)
@documents_errors(400, 401, 403, 429)
async def delete_me(data: DeleteAccountIn) -> tuple[str, int]:
    """Delete the account and everything of it, proving the password; the session ends too.

    400 `WRONG_PASSWORD`. Needs a fresh sign-in: 401 `REAUTH_REQUIRED`.
    """
    app_state = state()
    account = await signed_in_session()
    await lifecycle.delete_account(
        app_state.db, app_state.hashing, account, password=data.password,
        device=devices.trusted(account.user_id),
    )  # fmt: skip
    logout_user()
    return "", 204


# --- fresh sign-in, sessions and API tokens ------------------------------------------------


class ReauthIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    password: Password


@bp.post("/auth/reauth")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required()
@tag(["auth"])
@validate_request(ReauthIn)
@document_response(NoContent, 204)
@documents_errors(400, 401, 403, 429)
async def reauth(data: ReauthIn) -> tuple[str, int]:
    """Prove the password again, so this session counts as a fresh sign-in.

    For AUTHAPP_FRESHNESS seconds this session may then change the password or the address,
    delete the account, create tokens or sign out everywhere. 400 `WRONG_PASSWORD`; tries count
    against the account's sign-in limit.
    """
    app_state = state()
    account = await signed_in_session()
    await sessions.reauthenticate(
        app_state.db, app_state.hashing, account, data.password,
        device=devices.trusted(account.user_id),
    )  # fmt: skip
    return "", 204


class SessionOut(BaseModel):
    """A live session: a public id (never its token), where and when it was seen."""

    id: UUID
    created_at: datetime
    last_seen_at: datetime = Field(description="Kept to the minute.")
    ip: str | None = Field(description="The address it signed in from.")
    last_seen_ip: str | None
    device: str = Field(examples=["Firefox on Linux"])
    remember: bool
    expires_at: datetime = Field(description="The absolute end; idling ends it sooner.")
    current: bool = Field(description="Whether this request came with this session.")


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


@bp.get("/sessions")
@auth_required("sessions:read")
@tag(["sessions"])
@validate_response(SessionsOut, 200)
@documents_errors(401, 403)
async def list_sessions() -> SessionsOut:
    """List the user's live sessions, the most recently seen first."""
    account = await signed_in_account()
    app_state = state()
    current = account.session_public_id if isinstance(account, SessionAccount) else None
    found = await sessions.list_sessions(app_state.db, app_state.settings, account.user_id, current)
    return SessionsOut(sessions=[SessionOut.model_validate(item, from_attributes=True)
                                 for item in found])  # fmt: skip


@bp.delete("/sessions/<uuid:session_id>")
@rate_limit(limits=WRITE_LIMITS)
@auth_required("sessions:write")
@tag(["sessions"])
@document_response(NoContent, 204)
@documents_errors(401, 403, 404, 429)
async def revoke_session(session_id: UUID) -> tuple[str, int]:
    """Revoke one session; its cookie stops working at once.

    Revoking the current session signs this client out. 404 `SESSION_NOT_FOUND` for an id that
    is not a live session of yours.
    """
    account = await signed_in_account()
    app_state = state()
    await sessions.revoke_session_of_user(
        app_state.db, app_state.settings, account.user_id, session_id
    )
    if isinstance(account, SessionAccount) and account.session_public_id == session_id:
        logout_user()
    return "", 204


class RevokedOut(BaseModel):
    revoked: int = Field(description="How many live sessions ended.")


@bp.post("/sessions/revoke-others")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@tag(["sessions"])
@validate_response(RevokedOut, 200)
@documents_errors(401, 403, 429)
async def revoke_other_sessions() -> RevokedOut:
    """Sign out everywhere else: every session but this one.

    Needs a fresh sign-in.
    """
    app_state = state()
    revoked = await sessions.revoke_other_sessions(
        app_state.db, app_state.settings, await signed_in_session()
    )
    return RevokedOut(revoked=revoked)


@bp.post("/sessions/revoke-all")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@tag(["sessions"])
@validate_response(RevokedOut, 200)
@documents_errors(401, 403, 429)
async def revoke_all_sessions() -> RevokedOut:
    """Sign out everywhere, this client included (the cookie is cleared).

    Needs a fresh sign-in. API tokens are not sessions: revoke them with
    `DELETE /api/tokens/{id}`.
    """
    account = await signed_in_session()
    revoked = await sessions.revoke_all_sessions(state().db, account.user_id)
    logout_user()
    return RevokedOut(revoked=revoked)


class TokenCreateIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: TokenName
    scopes: list[Scope] = Field(min_length=1, max_length=len(tokens.SCOPES))
    expires_in_days: int | None = Field(
        default=None,
        description="1 to AUTHAPP_TOKEN_MAX_LIFETIME_DAYS (365); "
        "AUTHAPP_TOKEN_LIFETIME_DAYS (30) when left out.",
    )


class TokenOut(BaseModel):
    """An API token as listed: never the token itself."""

    id: UUID
    name: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None = Field(description="Kept to the minute.")
    expires_at: datetime


class TokenCreatedOut(TokenOut):
    token: str = Field(description="Shown this once; send it as `Authorization: Bearer <token>`.")


class TokensOut(BaseModel):
    tokens: list[TokenOut]


@bp.post("/tokens")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@tag(["tokens"])
@validate_request(TokenCreateIn)
@validate_response(TokenCreatedOut, 201)
@documents_errors(400, 401, 403, 409, 429)
async def create_token(data: TokenCreateIn) -> tuple[TokenCreatedOut, int]:
    """Create a personal API token for scripts and other programs.

    The answer holds the token, which is never shown again. Needs a fresh sign-in.
    409 `TOKEN_NAME_TAKEN` or `TOO_MANY_TOKENS` (50 at most).
    """
    app_state = state()
    created, token = await tokens.create_api_token(
        app_state.db, app_state.settings, await signed_in_session(),
        name=data.name, scopes=data.scopes, expires_in_days=data.expires_in_days,
    )  # fmt: skip
    listed = TokenOut.model_validate(created, from_attributes=True)
    return TokenCreatedOut(**listed.model_dump(), token=token), 201


@bp.get("/tokens")
@auth_required()
@tag(["tokens"])
@validate_response(TokensOut, 200)
@documents_errors(401, 403)
async def list_tokens() -> TokensOut:
    """List your live API tokens, the newest first (never the tokens themselves)."""
    found = await tokens.list_api_tokens(state().db, await signed_in_session())
    return TokensOut(tokens=[TokenOut.model_validate(item, from_attributes=True)
                             for item in found])  # fmt: skip


@bp.delete("/tokens/<uuid:token_id>")
@rate_limit(limits=WRITE_LIMITS)
@auth_required()
@tag(["tokens"])
@document_response(NoContent, 204)
@documents_errors(401, 403, 404, 429)
async def revoke_token(token_id: UUID) -> tuple[str, int]:
    """Revoke a token: it stops working at once.

    404 `TOKEN_NOT_FOUND`.
    """
    await tokens.revoke_api_token(state().db, await signed_in_session(), token_id)
    return "", 204


# --- security events -----------------------------------------------------------------------


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before: UUID | None = Field(
        default=None, description="The `next_before` of the previous page: older events follow."
    )
    limit: int = Field(default=20, ge=1, le=100, description="Events per page, 1 to 100.")


class SecurityEventOut(BaseModel):
    """Something that happened to the account, when, and from which address and device."""

    id: UUID
    kind: EventKind
    created_at: datetime
    ip: str | None = Field(description="The client's address, when the event came by a request.")
    device: str | None = Field(examples=["Firefox on Linux"])
    details: dict[str, Any] = Field(
        description="By kind: `reason` (login_failed, password_check_failed), `failures` and "
        "`until` (account_locked), `sessions_revoked` and `tokens_revoked` (password_changed, "
        "password_reset, account_deactivated, account_activated), `new_email` and `old_email` "
        "(email changes), `session_id`, `which` and `count` (sessions), `token_id`, `name` "
        "and `scopes` (tokens)."
    )


class SecurityEventsOut(BaseModel):
    events: list[SecurityEventOut]
    next_before: UUID | None = Field(
        description="Pass as `before` for the next, older page; null on the last page."
    )


@bp.get("/me/events")
@auth_required("profile:read")
@tag(["account"])
@validate_querystring(EventsQuery)
@validate_response(SecurityEventsOut, 200)
@documents_errors(400, 401, 403)
async def list_security_events(query_args: EventsQuery) -> SecurityEventsOut:
    """List the account's security events, newest first.

    The events: sign-ins and failed ones, sign-outs, lockouts, password and address changes,
    revoked sessions, created and revoked tokens. Kept AUTHAPP_SECURITY_EVENT_RETENTION_DAYS
    (90) days. Page with `limit` and `before`; 400 `VALIDATION_ERROR` for a `before` that is
    none of your events.
    """
    account = await signed_in_account()
    page = await audit.list_events(
        state().db, account.user_id, before=query_args.before, limit=query_args.limit
    )
    events = [SecurityEventOut.model_validate(item, from_attributes=True) for item in page.events]
    return SecurityEventsOut(
        events=events, next_before=events[-1].id if page.more and events else None
    )
