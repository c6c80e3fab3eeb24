"""The JSON API's me resource: the signed-in user, their profile, password, address, deletion and
security events."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart_auth import logout_user
from quart_rate_limiter import rate_limit
from quart_schema import (
    document_response,
    tag,
    validate_querystring,
    validate_request,
    validate_response,
)

from ....accounts import audit, lifecycle, registration
from ....accounts.audit import EventKind
from ....state import state
from ... import devices
from ...errors import documents_errors
from ...guards import auth_required, signed_in_account, signed_in_session
from ...limits import (
    EMAIL_CHANGE_LIMITS,
    PASSWORD_CHANGE_LIMITS,
    WRITE_LIMITS,
)
from ...schemas import DisplayName, Email, NoContent, Password
from ...signing import change_password_here, public_base_url
from .blueprint import MessageOut, UserOut, bp


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
    await registration.change_display_name(state().db, account, data.display_name)
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
    await change_password_here(
        await signed_in_session(),
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
        app_state.db, app_state.hashing, app_state.settings, account, password=data.password,
        device=devices.trusted(account.user_id),
    )  # fmt: skip
    logout_user()
    return "", 204


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
        "and `scopes` (tokens), `granted` and `revoked` (roles_changed), `action`, `target_id` "
        "and `target_email` (admin_action); `by`: `administrator` when one did it."
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
