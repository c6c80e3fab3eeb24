"""Pages behind sign-in: the dashboard, the account page and its forms, the protected page."""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, ResponseReturnValue, flash, redirect, render_template, request
from quart_auth import Unauthorized, current_user, login_required, logout_user
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request

from .. import accounts
from ..csrf import check_csrf
from ..errors import APIError, ErrorDetail, details_from, handle_http_exception, wants_json
from ..extensions import PASSWORD_CHANGE_LIMITS, WRITE_LIMITS, signed_in_account, state
from ..pages import mismatch, render_form
from ..passwords import MAX_PASSWORD_LENGTH
from ..schemas import DisplayName, Password

bp = Blueprint("protected", __name__)
bp.before_request(check_csrf)


@bp.errorhandler(Unauthorized)
async def sign_in_first(error: Unauthorized) -> ResponseReturnValue:
    """Browsers go to the login page and come back after; API clients get a 401."""
    if wants_json():
        return await handle_http_exception(error)
    target = request.full_path.rstrip("?") if request.query_string else request.path
    if current_user.auth_id is not None:  # a cookie whose session expired or was revoked
        logout_user()
        await flash("Your session has ended. Please sign in again.", "error")
    elif target != "/":  # the front door needs no explanation; a deep link does
        await flash("Please sign in to see that page.", "info")
    return redirect("/auth/login?" + urlencode({"next": target}, safe="/"))


@bp.errorhandler(RequestSchemaValidationError)
async def invalid_form(error: RequestSchemaValidationError) -> ResponseReturnValue:
    return await _account_page(status=400, errors=details_from(error.validation_error))


@bp.get("/")
@rate_exempt
@login_required
@hide
async def dashboard() -> ResponseReturnValue:
    return await render_template("protected/dashboard.html", account=await signed_in_account())


@bp.get("/protected")
@rate_exempt
@login_required
@hide
async def protected() -> ResponseReturnValue:
    return await render_template("protected/protected.html", account=await signed_in_account())


async def _account_page(
    *, status: int = 200, errors: list[ErrorDetail] | None = None
) -> ResponseReturnValue:
    account = await signed_in_account()
    return await render_form(
        "protected/account.html", status=status, errors=errors, account=account
    )


@bp.get("/account")
@rate_exempt
@login_required
@hide
async def account() -> ResponseReturnValue:
    return await _account_page()


class ProfileForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    display_name: DisplayName


@bp.post("/account/profile")
@rate_limit(limits=WRITE_LIMITS)
@login_required
@hide
@validate_request(ProfileForm, source=DataSource.FORM)
async def update_profile(data: ProfileForm) -> ResponseReturnValue:
    await accounts.change_display_name(state().db, await signed_in_account(), data.display_name)
    await flash("Your display name is saved.", "success")
    return redirect("/account")


class PasswordForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    current_password: Password
    new_password: Password
    new_password_confirm: str = Field(max_length=MAX_PASSWORD_LENGTH)


@bp.post("/account/password")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@login_required
@hide
@validate_request(PasswordForm, source=DataSource.FORM)
async def change_password(data: PasswordForm) -> ResponseReturnValue:
    if data.new_password != data.new_password_confirm:
        return await _account_page(status=400, errors=mismatch("new_password_confirm"))
    app_state = state()
    try:
        revoked = await accounts.change_password(
            app_state.db,
            app_state.hashing,
            app_state.settings,
            await signed_in_account(),
            current_password=data.current_password,
            new_password=data.new_password,
        )
    except APIError as error:
        if error.status != 400:
            raise
        return await _account_page(status=400, errors=error.details)
    message = "Your password is changed."
    if revoked:
        message += f" {revoked} other session{'s were' if revoked != 1 else ' was'} signed out."
    await flash(message, "success")
    return redirect("/account")
