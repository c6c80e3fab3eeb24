"""The JSON API's admin resource (/api/admin): find users, see one account, and act on it; each
route guarded by a permission, each write by a fresh session (accounts/roles.py's rules)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart_rate_limiter import rate_limit
from quart_schema import (
    document_response,
    tag,
    validate_querystring,
    validate_request,
    validate_response,
)

from ....accounts import admin, admin_views, roles
from ....accounts.admin_views import Status
from ....models.users import ListedUser, User
from ....state import state
from ...errors import documents_errors
from ...guards import auth_required, holds, signed_in_account, signed_in_session
from ...limits import WRITE_LIMITS
from ...schemas import NoContent, RoleName
from ...signing import public_base_url
from .blueprint import MessageOut, bp
from .me import SecurityEventOut
from .mfa import MfaOut
from .sessions import RevokedOut, SessionOut


class AdminUserOut(BaseModel):
    """A user as administrators see them."""

    id: UUID
    email: str
    display_name: str
    email_verified: bool
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None = Field(description="The last sign-in, if any.")
    roles: list[str]

    @classmethod
    def of(cls, user: User, roles: list[str]) -> AdminUserOut:
        return cls(
            id=user.id, email=user.email, display_name=user.display_name,
            email_verified=user.email_verified_at is not None, is_active=user.is_active,
            created_at=user.created_at, last_login_at=user.last_login_at, roles=roles,
        )  # fmt: skip

    @classmethod
    def listed(cls, user: ListedUser) -> AdminUserOut:
        return cls.of(user, user.roles)


class UsersQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(
        default=None, max_length=254,
        description="Part of the address (compared by its key: only A-Z fold) or of the name.",
    )  # fmt: skip
    status: Status | None = None
    role: RoleName | None = None
    after: str | None = Field(
        default=None, max_length=200, description="The `next_after` of the page before."
    )
    limit: int = Field(default=50, ge=1, le=100, description="Users per page, 1 to 100.")


class AdminUsersOut(BaseModel):
    users: list[AdminUserOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null: none.")


@bp.get("/admin/users")
@auth_required(permission="users:read")
@tag(["admin"])
@validate_querystring(UsersQuery)
@validate_response(AdminUsersOut, 200)
@documents_errors(400, 401, 403)
async def list_users(query_args: UsersQuery) -> AdminUsersOut:
    """Find users, the newest first, a page at a time.

    Needs the `users:read` permission. The order is stable (created, then id), so pages
    neither skip nor repeat a user whatever is added meanwhile.
    """
    page = await admin_views.search_users(
        state().db, query=query_args.query, status=query_args.status, role=query_args.role,
        after=query_args.after, limit=query_args.limit,
    )  # fmt: skip
    return AdminUsersOut(
        users=[AdminUserOut.listed(user) for user in page.users], next_after=page.next_after
    )


class GrantOut(BaseModel):
    role: str
    granted_by: UUID | None = Field(description="Null: from the CLI, or by a deleted user.")
    granted_at: datetime


class AdminUserDetailOut(BaseModel):
    user: AdminUserOut
    roles: list[GrantOut]
    sessions: list[SessionOut]
    api_tokens: int = Field(description="Live API tokens.")
    mfa: MfaOut
    events: list[SecurityEventOut] | None = Field(
        description="The 20 latest security events; null without the `audit:read` permission."
    )


@bp.get("/admin/users/<uuid:user_id>")
@auth_required(permission="users:read")
@tag(["admin"])
@validate_response(AdminUserDetailOut, 200)
@documents_errors(401, 403, 404)
async def get_user(user_id: UUID) -> AdminUserDetailOut:
    """Show one user's account: profile, roles, sessions, tokens, second factor, events.

    Needs `users:read`; the events also `audit:read`. 404 `USER_NOT_FOUND`.
    """
    app_state = state()
    detail = await admin_views.user_detail(
        app_state.db, app_state.settings, user_id,
        with_events=holds(await signed_in_account(), "audit:read"),
    )  # fmt: skip
    return AdminUserDetailOut(
        user=AdminUserOut.of(detail.user, [grant.role for grant in detail.roles]),
        roles=[GrantOut.model_validate(grant, from_attributes=True) for grant in detail.roles],
        sessions=[SessionOut.model_validate(item, from_attributes=True)
                  for item in detail.sessions],
        api_tokens=detail.tokens,
        mfa=MfaOut.model_validate(detail.mfa, from_attributes=True),
        events=None if detail.events is None else [
            SecurityEventOut.model_validate(event, from_attributes=True) for event in detail.events
        ],
    )  # fmt: skip


class RoleOut(BaseModel):
    name: str
    description: str
    permissions: list[str]
    holders: int = Field(description="Users who hold it.")


class RolesOut(BaseModel):
    roles: list[RoleOut]


@bp.get("/admin/roles")
@auth_required(permission="users:read")
@tag(["admin"])
@validate_response(RolesOut, 200)
@documents_errors(401, 403)
async def list_roles() -> RolesOut:
    """List the roles and the permissions each holds.

    Needs `users:read`. Roles are made with `authapp roles create`.
    """
    found = await roles.list_roles(state().db)
    return RolesOut(roles=[RoleOut.model_validate(role, from_attributes=True) for role in found])


class ActiveOut(BaseModel):
    is_active: bool
    changed: bool = Field(description="False: it was so already.")
    sessions_revoked: int
    tokens_revoked: int


async def _set_active(user_id: UUID, active: bool) -> ActiveOut:
    app_state = state()
    change = await admin.set_active_by_admin(
        app_state.db, app_state.settings, (await signed_in_session()).user_id, user_id, active
    )
    return ActiveOut(
        is_active=active, changed=change.changed, sessions_revoked=change.sessions_revoked,
        tokens_revoked=change.tokens_revoked,
    )  # fmt: skip


@bp.post("/admin/users/<uuid:user_id>/deactivate")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(permission="users:write", fresh=True)
@tag(["admin"])
@validate_response(ActiveOut, 200)
@documents_errors(401, 403, 404, 409, 429)
async def deactivate_user(user_id: UUID) -> ActiveOut:
    """Deactivate a user: every session and API token of theirs stops at once.

    Needs `users:write` and a fresh sign-in. 409 `LAST_ADMIN` for the last active admin,
    `OWN_ACCOUNT` for your own.
    """
    return await _set_active(user_id, False)


@bp.post("/admin/users/<uuid:user_id>/activate")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(permission="users:write", fresh=True)
@tag(["admin"])
@validate_response(ActiveOut, 200)
@documents_errors(401, 403, 404, 409, 429)
async def activate_user(user_id: UUID) -> ActiveOut:
    """Let a deactivated user sign in again (no session or token of before comes back).

    Needs `users:write` and a fresh sign-in.
    """
    return await _set_active(user_id, True)


@bp.post("/admin/users/<uuid:user_id>/sessions/revoke-all")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(permission="users:write", fresh=True)
@tag(["admin"])
@validate_response(RevokedOut, 200)
@documents_errors(401, 403, 404, 409, 429)
async def revoke_user_sessions(user_id: UUID) -> RevokedOut:
    """Sign a user out everywhere (their API tokens stay).

    Needs `users:write` and a fresh sign-in.
    """
    actor = await signed_in_session()
    revoked = await admin.revoke_sessions_by_admin(state().db, actor.user_id, user_id)
    return RevokedOut(revoked=revoked)


class AccessResetOut(BaseModel):
    sessions_revoked: int
    tokens_revoked: int
    second_factor_removed: bool


@bp.post("/admin/users/<uuid:user_id>/reset-access")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(permission="users:write", fresh=True)
@tag(["admin"])
@validate_response(AccessResetOut, 200)
@documents_errors(401, 403, 404, 409, 429)
async def reset_user_access(user_id: UUID) -> AccessResetOut:
    """End every way into an account but its password.

    Sessions, API tokens, mailed links, sign-ins waiting for a second factor, trusted devices
    and the second factor itself (with its recovery codes). Needs `users:write` and a fresh
    sign-in.
    """
    app_state = state()
    actor = await signed_in_session()
    reset = await admin.reset_access_by_admin(
        app_state.db, app_state.settings, actor.user_id, user_id
    )
    return AccessResetOut.model_validate(reset, from_attributes=True)


@bp.post("/admin/users/<uuid:user_id>/send-password-reset")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(permission="users:write", fresh=True)
@tag(["admin"])
@validate_response(MessageOut, 202)
@documents_errors(401, 403, 404, 409, 429)
async def send_password_reset(user_id: UUID) -> tuple[MessageOut, int]:
    """Mail a user a link to set a new password.

    Needs `users:write` and a fresh sign-in. 409 `ACCOUNT_INACTIVE` for a deactivated user.
    """
    app_state = state()
    actor = await signed_in_session()
    await admin.send_password_reset_by_admin(
        app_state.db, app_state.settings, actor.user_id, user_id, public_base_url()
    )
    return MessageOut(message="A link to reset the password is on its way."), 202


class RolesIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    roles: list[RoleName] = Field(max_length=64, description="Every role the user is to hold.")


class RolesSetOut(BaseModel):
    roles: list[str]
    granted: list[str]
    revoked: list[str]


@bp.put("/admin/users/<uuid:user_id>/roles")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(permission="roles:write", fresh=True)
@tag(["admin"])
@validate_request(RolesIn)
@validate_response(RolesSetOut, 200)
@documents_errors(400, 401, 403, 404, 409, 429)
async def set_user_roles(user_id: UUID, data: RolesIn) -> RolesSetOut:
    """Give a user exactly these roles.

    Needs `roles:write` and a fresh sign-in; 403 `FORBIDDEN` for a role granted or taken
    that holds a permission you lack. 409 `LAST_ADMIN` when it would leave no active admin.
    """
    actor = await signed_in_session()
    change = await roles.set_roles(state().db, actor.user_id, user_id, data.roles)
    return RolesSetOut(roles=change.roles, granted=change.granted, revoked=change.revoked)


@bp.delete("/admin/users/<uuid:user_id>")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(permission="users:write", fresh=True)
@tag(["admin"])
@document_response(NoContent, 204)
@documents_errors(401, 403, 404, 409, 429)
async def delete_user(user_id: UUID) -> tuple[str, int]:
    """Delete a user and everything of theirs.

    Needs `users:write` and a fresh sign-in. 409 `LAST_ADMIN` for the last active admin.
    """
    actor = await signed_in_session()
    await admin.delete_by_admin(state().db, actor.user_id, user_id)
    return "", 204
