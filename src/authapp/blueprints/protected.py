"""Pages behind sign-in: the dashboard, the account page and its forms, the protected page."""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, ResponseReturnValue, flash, redirect, render_template, request
from quart_auth import Unauthorized, current_user, login_required, logout_user
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request

from .. import accounts, lifecycle
from ..csrf import check_csrf
from ..errors import APIError, ErrorDetail, details_from, handle_http_exception, wants_json
from ..extensions import (
    EMAIL_CHANGE_LIMITS,
    PASSWORD_CHANGE_LIMITS,
    WRITE_LIMITS,
    public_base_url,
    signed_in_session,
    state,
)
from ..pages import mismatch, render_form
from ..passwords import MAX_PASSWORD_LENGTH
from ..schemas import DisplayName, Email, Password

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
    return await render_template("protected/dashboard.html", account=await signed_in_session())


@bp.get("/protected")
@rate_exempt
@login_required
@hide
async def protected() -> ResponseReturnValue:
    return await render_template("protected/protected.html", account=await signed_in_session())


async def _account_page(
    *, status: int = 200, errors: list[ErrorDetail] | None = None
) -> ResponseReturnValue:
    account = await signed_in_session()
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
    await accounts.change_display_name(state().db, await signed_in_session(), data.display_name)
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
        revoked = await lifecycle.change_password(
            app_state.db,
            app_state.hashing,
            app_state.settings,
            await signed_in_session(),
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


def _as_field(errors: list[ErrorDetail] | None, field: str) -> list[ErrorDetail] | None:
    """The service names the password "password"; on the account page each form has its own."""
    if errors is None:
        return None
    return [error.model_copy(update={"field": field}) if error.field == "password" else error
            for error in errors]  # fmt: skip


@bp.post("/account/verify-email")
@rate_limit(limits=WRITE_LIMITS)
@login_required
@hide
async def resend_verification() -> ResponseReturnValue:
    account = await signed_in_session()
    if account.email_verified_at is None:
        app_state = state()
        await lifecycle.resend_verification(
            app_state.db, app_state.settings, account.email, public_base_url()
        )
        await flash(f"We sent a new link to {account.email}.", "success")
    return redirect("/account")


class EmailChangeForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    new_email: Email
    email_password: Password


@bp.post("/account/email")
@rate_limit(limits=EMAIL_CHANGE_LIMITS)
@login_required
@hide
@validate_request(EmailChangeForm, source=DataSource.FORM)
async def change_email(data: EmailChangeForm) -> ResponseReturnValue:
    app_state = state()
    try:
        await lifecycle.request_email_change(
            app_state.db, app_state.hashing, app_state.settings, await signed_in_session(),
            password=data.email_password, new_email=data.new_email, base_url=public_base_url(),
        )  # fmt: skip
    except APIError as error:
        if error.status != 400:
            raise
        return await _account_page(status=400, errors=_as_field(error.details, "email_password"))
    await flash(
        f"We sent a link to {data.new_email}. Your address changes when you follow it.", "success"
    )
    return redirect("/account")


class DeleteAccountForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    delete_password: Password


@bp.post("/account/delete")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@login_required
@hide
@validate_request(DeleteAccountForm, source=DataSource.FORM)
async def delete_account(data: DeleteAccountForm) -> ResponseReturnValue:
    app_state = state()
    try:
        await lifecycle.delete_account(
            app_state.db, app_state.hashing, await signed_in_session(),
            password=data.delete_password,
        )  # fmt: skip
    except APIError as error:
        if error.status != 400:
            raise
        return await _account_page(status=400, errors=_as_field(error.details, "delete_password"))
    logout_user()
    await flash("Your account and everything of it are deleted. Goodbye!", "success")
    return redirect("/auth/login")
