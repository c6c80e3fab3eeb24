"""The administrators' pages (/admin): a searchable, paged table of users and one user's page,
whose acts are forms behind CSRF, a ticked confirmation and a fresh session; the rules are
accounts/roles.py's, as for the admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import ResponseReturnValue, flash, redirect, request
from quart_auth import Unauthorized
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request

from ...accounts import admin, admin_views, roles
from ...accounts.admin_views import Status
from ...accounts.sessions import is_fresh
from ...errors import APIError, ErrorDetail
from ...state import state
from ..csrf import check_csrf
from ..errors import details_from, handle_api_error, handle_http_exception, wants_json
from ..features import SwitchedBlueprint
from ..guards import auth_required, holds, signed_in_session
from ..limits import WRITE_LIMITS
from ..pages import render_form, send_to_reauth, send_to_sign_in
from ..schemas import RoleName
from ..signing import public_base_url

bp = SwitchedBlueprint("admin", __name__, url_prefix="/admin")
bp.before_request(check_csrf)

USERS_PAGE = "/admin"
PAGE_SIZE = 50
STATUSES = ("active", "inactive")


def user_page(user_id: UUID) -> str:
    return f"{USERS_PAGE}/users/{user_id}"


def _target() -> str | None:
    """The user page a request is about (its acts go back there)."""
    user_id = (request.view_args or {}).get("user_id")
    return user_page(user_id) if isinstance(user_id, UUID) else None


@bp.errorhandler(Unauthorized)
async def sign_in_first(error: Unauthorized) -> ResponseReturnValue:
    if wants_json():
        return await handle_http_exception(error)
    target = request.full_path.rstrip("?") if request.query_string else request.path
    return await send_to_sign_in(target)


@bp.errorhandler(APIError)
async def answer_error(error: APIError) -> ResponseReturnValue:
    """A stale session confirms its password and comes back; a refused act is said on the
    user's page; anything else is the app's to answer (a missing permission: 403)."""
    if wants_json():
        return await handle_api_error(error)
    target = _target()
    if error.code == "REAUTH_REQUIRED":
        return await send_to_reauth(target or USERS_PAGE)
    if request.method == "POST" and target and error.status in {403, 404, 409}:
        await flash(error.message, "error")
        return redirect(USERS_PAGE if error.status == 404 else target)
    return await handle_api_error(error)


@bp.errorhandler(RequestSchemaValidationError)
async def invalid_form(error: RequestSchemaValidationError) -> ResponseReturnValue:
    user_id = (request.view_args or {}).get("user_id")
    assert isinstance(user_id, UUID)  # only the user page's forms are validated
    try:
        return await _user_page(user_id, status=400, errors=details_from(error.validation_error))
    except APIError as refused:  # no such user (an error handler's own error would be a 500)
        await flash(refused.message, "error")
        return redirect(USERS_PAGE)


@bp.get("")
@rate_exempt
@auth_required(permission="users:read")
@hide
async def users() -> ResponseReturnValue:
    args = request.args
    status = args.get("status", "")
    query, role, after = (args.get(name, "")[:254] for name in ("query", "role", "after"))
    try:
        page = await admin_views.search_users(
            state().db, query=query, status=cast(Status, status) if status in STATUSES else None,
            role=role[:40] or None, after=after or None, limit=PAGE_SIZE,
        )  # fmt: skip
    except APIError as error:  # a cursor that is not one: start over
        if error.code != "VALIDATION_ERROR":
            raise
        return redirect(USERS_PAGE)
    return await render_form(
        "admin/users.html", page=page, query=query, chosen_status=status, role=role,
        roles=await roles.list_roles(state().db), more_args={"query": query, "status": status,
                                                             "role": role},
    )  # fmt: skip


async def _user_page(
    user_id: UUID, *, status: int = 200, errors: list[ErrorDetail] | None = None
) -> ResponseReturnValue:
    app_state = state()
    account = await signed_in_session()
    detail = await admin_views.user_detail(
        app_state.db, app_state.settings, user_id, with_events=holds(account, "audit:read")
    )
    return await render_form(
        "admin/user.html", status=status, errors=errors, detail=detail,
        held=[grant.role for grant in detail.roles], all_roles=await roles.list_roles(app_state.db),
        own=account.user_id == user_id,
        fresh=is_fresh(account, app_state.settings), failed=request.path.rsplit("/", 1)[-1],
        may_write=holds(account, "users:write"), may_grant=holds(account, "roles:write"),
    )  # fmt: skip


@bp.get("/users/<uuid:user_id>")
@rate_exempt
@auth_required(permission="users:read")
@hide
async def user(user_id: UUID) -> ResponseReturnValue:
    return await _user_page(user_id)


class ConfirmForm(BaseModel):
    """An act's form: its box must be ticked (the page's confirmation, without script)."""

    model_config = ConfigDict(extra="ignore")

    confirm: str = Field(default="", max_length=3, validate_default=True)

    @field_validator("confirm")
    @classmethod
    def ticked(cls, value: str) -> str:
        if value != "yes":
            raise ValueError("Tick the box to confirm.")
        return value


Act = Callable[[UUID, UUID], Awaitable[str]]


async def _act(user_id: UUID, act: Act) -> ResponseReturnValue:
    actor = await signed_in_session()
    message = await act(actor.user_id, user_id)
    await flash(message, "success")
    return redirect(USERS_PAGE if message.endswith("deleted.") else user_page(user_id))


View = Callable[..., Awaitable[ResponseReturnValue]]


def _action(
    path: str, endpoint: str, permission: str, form: type[BaseModel] = ConfirmForm
) -> Callable[[View], View]:
    """Register an act's POST route, in the house's order of decorators."""

    def register(view: View) -> View:
        view.__name__ = endpoint
        decorated = validate_request(form, source=DataSource.FORM)(view)
        decorated = hide(decorated)
        decorated = auth_required(permission=permission, fresh=True)(decorated)
        decorated = rate_limit(limits=WRITE_LIMITS)(decorated)
        bp.post(f"/users/<uuid:user_id>/{path}")(decorated)
        return decorated

    return register


async def _deactivate(actor_id: UUID, user_id: UUID) -> str:
    app_state = state()
    change = await admin.set_active_by_admin(
        app_state.db, app_state.settings, actor_id, user_id, False
    )
    return f"{change.user.email} is deactivated: every session and API token of theirs ended."


async def _activate(actor_id: UUID, user_id: UUID) -> str:
    app_state = state()
    change = await admin.set_active_by_admin(
        app_state.db, app_state.settings, actor_id, user_id, True
    )
    return f"{change.user.email} can sign in again."


async def _revoke_sessions(actor_id: UUID, user_id: UUID) -> str:
    count = await admin.revoke_sessions_by_admin(state().db, actor_id, user_id)
    return f"Signed out everywhere: {count} session{'' if count == 1 else 's'} ended."


async def _reset_access(actor_id: UUID, user_id: UUID) -> str:
    app_state = state()
    reset = await admin.reset_access_by_admin(app_state.db, app_state.settings, actor_id, user_id)
    factor = " and the second factor was removed" if reset.second_factor_removed else ""
    return (
        f"Access reset: {reset.sessions_revoked} session(s) and {reset.tokens_revoked} "
        f"token(s) ended{factor}."
    )


async def _send_password_reset(actor_id: UUID, user_id: UUID) -> str:
    app_state = state()
    await admin.send_password_reset_by_admin(
        app_state.db, app_state.settings, actor_id, user_id, public_base_url()
    )
    return "A link to reset the password is on its way."


async def _delete(actor_id: UUID, user_id: UUID) -> str:
    deleted = await admin.delete_by_admin(state().db, actor_id, user_id)
    return f"{deleted.email} and everything of theirs are deleted."


ACTS: dict[str, tuple[str, Act]] = {
    "deactivate": ("deactivate_user", _deactivate),
    "activate": ("activate_user", _activate),
    "revoke-sessions": ("revoke_user_sessions", _revoke_sessions),
    "reset-access": ("reset_user_access", _reset_access),
    "send-password-reset": ("send_password_reset", _send_password_reset),
    "delete": ("delete_user", _delete),
}


def _register_acts() -> None:
    for path, (endpoint, act) in ACTS.items():

        async def view(user_id: UUID, data: ConfirmForm, act: Act = act) -> ResponseReturnValue:
            return await _act(user_id, act)

        _action(path, endpoint, "users:write")(view)


_register_acts()


class RolesForm(ConfirmForm):
    roles: list[RoleName] = Field(default_factory=list, max_length=64)

    @field_validator("roles", mode="before")
    @classmethod
    def one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value  # one ticked box comes as a string


@_action("roles", "set_user_roles", "roles:write", RolesForm)
async def set_user_roles(user_id: UUID, data: RolesForm) -> ResponseReturnValue:
    async def change(actor_id: UUID, target_id: UUID) -> str:
        done = await roles.set_roles(state().db, actor_id, target_id, data.roles)
        return f"Roles saved: {', '.join(done.roles) or 'none'}."

    return await _act(user_id, change)
