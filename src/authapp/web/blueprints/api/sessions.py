"""The JSON API's sessions resource: where the user is signed in, and signing out anywhere."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field
from quart_auth import logout_user
from quart_rate_limiter import rate_limit
from quart_schema import (
    document_response,
    tag,
    validate_response,
)

from ....accounts import sessions
from ....models.sessions import SessionAccount
from ....state import state
from ...errors import documents_errors
from ...guards import auth_required, signed_in_account, signed_in_session
from ...limits import (
    WRITE_LIMITS,
)
from ...schemas import NoContent
from .blueprint import bp


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
    amr: list[str] = Field(
        description="How it signed in (RFC 8176): pwd, then otp or recovery for a second factor.",
        examples=[["pwd", "otp"]],
    )


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
