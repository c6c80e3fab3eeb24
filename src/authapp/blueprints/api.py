"""The JSON API: register, sign in, sign out and the signed-in user."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from quart import Blueprint
from quart_auth import login_required
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import (
    document_response,
    security_scheme,
    tag,
    validate_request,
    validate_response,
)

from .. import accounts
from ..errors import documents_errors
from ..extensions import (
    LOGIN_LIMITS,
    PASSWORD_CHANGE_LIMITS,
    REGISTER_LIMITS,
    WRITE_LIMITS,
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


@bp.post("/auth/register")
@rate_limit(limits=REGISTER_LIMITS)
@tag(["auth"])
@validate_request(RegisterIn)
@validate_response(UserOut, 201)
@documents_errors(400, 409, 413, 429)
async def register(data: RegisterIn) -> tuple[UserOut, int]:
    """Create an account.

    The password needs AUTHAPP_PASSWORD_MIN_LENGTH characters (12 by default) and no more
    than 1024; no composition rules. 409 `EMAIL_TAKEN` when the email has an account.
    """
    app_state = state()
    user = await accounts.register(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        email=data.email,
        password=data.password,
        display_name=data.display_name,
    )
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
@documents_errors(400, 401, 413, 429)
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

    Every other session of the user is revoked; this one stays. 400 `WRONG_PASSWORD` when
    `current_password` is wrong, `VALIDATION_ERROR` when the new one breaks the policy. Tries
    count against the account's sign-in limit (AUTHAPP_LOGIN_RATE_LIMIT_ACCOUNT).
    """
    app_state = state()
    await accounts.change_password(
        app_state.db,
        app_state.hashing,
        app_state.settings,
        await signed_in_account(),
        current_password=data.current_password,
        new_password=data.new_password,
    )
    return "", 204
