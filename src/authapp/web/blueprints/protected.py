"""Pages behind sign-in: the dashboard, the account page and its forms (sessions among
them), the API tokens page, the protected page."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import ResponseReturnValue, flash, redirect, render_template, request
from quart_auth import Unauthorized, login_required, logout_user
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request
from werkzeug.datastructures import MultiDict

from ...accounts import lifecycle, registration, sessions, tokens
from ...accounts.passwords import MAX_PASSWORD_LENGTH
from ...errors import APIError, ErrorDetail
from ...models.api_tokens import ApiToken
from ...state import state
from .. import devices
from ..csrf import check_csrf
from ..errors import details_from, handle_api_error, handle_http_exception, wants_json
from ..features import SwitchedBlueprint, feature
from ..guards import auth_required, signed_in_session
from ..limits import EMAIL_CHANGE_LIMITS, PASSWORD_CHANGE_LIMITS, WRITE_LIMITS
from ..pages import mismatch, render_form, send_to_reauth, send_to_sign_in
from ..schemas import DisplayName, Email, Password, ScopeList, TokenName
from ..signing import change_password_here, public_base_url

bp = SwitchedBlueprint("protected", __name__)
bp.before_request(check_csrf)

ACCOUNT_PAGE = "/account"
TOKENS_PAGE = "/account/tokens"


@bp.errorhandler(Unauthorized)
async def sign_in_first(error: Unauthorized) -> ResponseReturnValue:
    """Browsers go to the login page and come back after; API clients get a 401."""
    if wants_json():
        return await handle_http_exception(error)
    target = request.full_path.rstrip("?") if request.query_string else request.path
    # The front door needs no explanation; a deep link does.
    return await send_to_sign_in(target, explain=target != "/")


@bp.errorhandler(APIError)
async def confirm_password_first(error: APIError) -> ResponseReturnValue:
    """A form that needs a fresh sign-in sends the browser to confirm the password and back
    to the page the form is on; every other error is the app's to answer."""
    if error.code != "REAUTH_REQUIRED" or wants_json():
        return await handle_api_error(error)
    form_page = TOKENS_PAGE if request.path.startswith(TOKENS_PAGE) else ACCOUNT_PAGE
    return await send_to_reauth(form_page)


@bp.errorhandler(RequestSchemaValidationError)
async def invalid_form(error: RequestSchemaValidationError) -> ResponseReturnValue:
    details = details_from(error.validation_error)
    if request.endpoint == "protected.create_token":
        return await _tokens_page(status=400, errors=details)
    return await _account_page(status=400, errors=details)


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


async def _settings_page(
    template: str, *, status: int, errors: list[ErrorDetail] | None, **context: Any
) -> ResponseReturnValue:
    """A page of the signed-in account, whose sensitive forms show only on a fresh session."""
    account = await signed_in_session()
    fresh = sessions.is_fresh(account, state().settings)
    return await render_form(
        template, status=status, errors=errors, account=account, fresh=fresh, **context
    )


async def _account_page(
    *, status: int = 200, errors: list[ErrorDetail] | None = None
) -> ResponseReturnValue:
    account = await signed_in_session()
    app_state = state()
    signed_in = await sessions.list_sessions(
        app_state.db, app_state.settings, account.user_id, account.session_public_id
    )
    return await _settings_page(
        "protected/account.html", status=status, errors=errors, sessions=signed_in
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
    await registration.change_display_name(state().db, await signed_in_session(), data.display_name)
    await flash("Your display name is saved.", "success")
    return redirect(ACCOUNT_PAGE)


class PasswordForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    current_password: Password
    new_password: Password
    new_password_confirm: str = Field(max_length=MAX_PASSWORD_LENGTH)


@bp.post("/account/password")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required(fresh=True)
@hide
@validate_request(PasswordForm, source=DataSource.FORM)
async def change_password(data: PasswordForm) -> ResponseReturnValue:
    if data.new_password != data.new_password_confirm:
        return await _account_page(status=400, errors=mismatch("new_password_confirm"))
    try:
        revoked = await change_password_here(
            await signed_in_session(),
            current_password=data.current_password,
            new_password=data.new_password,
        )
    except APIError as error:
        if error.status != 400:
            raise
        return await _account_page(status=400, errors=error.details)
    message = "Your password is changed."
    if revoked.sessions:
        message += f" {_signed_out(revoked.sessions)}"
    await flash(message, "success")
    return redirect(ACCOUNT_PAGE)


def _signed_out(count: int) -> str:
    if count == 0:
        return "You were signed in nowhere else."
    return f"{count} other session{'s were' if count != 1 else ' was'} signed out."


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
    return redirect(ACCOUNT_PAGE)


class EmailChangeForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    new_email: Email
    email_password: Password


@bp.post("/account/email")
@rate_limit(limits=EMAIL_CHANGE_LIMITS)
@auth_required(fresh=True)
@hide
@validate_request(EmailChangeForm, source=DataSource.FORM)
async def change_email(data: EmailChangeForm) -> ResponseReturnValue:
    app_state = state()
    account = await signed_in_session()
    try:
        await lifecycle.request_email_change(
            app_state.db, app_state.hashing, app_state.settings, account,
            password=data.email_password, new_email=data.new_email, base_url=public_base_url(),
            device=devices.trusted(account.user_id),
        )  # fmt: skip
    except APIError as error:
        if error.status != 400:
            raise
        return await _account_page(status=400, errors=_as_field(error.details, "email_password"))
    await flash(
        f"We sent a link to {data.new_email}. Your address changes when you follow it.", "success"
    )
    return redirect(ACCOUNT_PAGE)


class DeleteAccountForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    delete_password: Password


@bp.post("/account/delete")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required(fresh=True)
@hide
@validate_request(DeleteAccountForm, source=DataSource.FORM)
async def delete_account(data: DeleteAccountForm) -> ResponseReturnValue:
    app_state = state()
    account = await signed_in_session()
    try:
        await lifecycle.delete_account(
            app_state.db, app_state.hashing, app_state.settings, account,
            password=data.delete_password,
            device=devices.trusted(account.user_id),
        )  # fmt: skip
    except APIError as error:
        if error.status != 400:
            raise
        return await _account_page(status=400, errors=_as_field(error.details, "delete_password"))
    logout_user()
    await flash("Your account and everything of it are deleted. Goodbye!", "success")
    return redirect("/auth/login")


# --- where you're signed in ----------------------------------------------------------------


@bp.post("/account/sessions/<uuid:session_id>/revoke")
@rate_limit(limits=WRITE_LIMITS)
@login_required
@hide
async def revoke_session(session_id: UUID) -> ResponseReturnValue:
    account = await signed_in_session()
    app_state = state()
    try:
        await sessions.revoke_session_of_user(
            app_state.db, app_state.settings, account.user_id, session_id
        )
    except APIError as error:
        if error.code != "SESSION_NOT_FOUND":
            raise
        await flash("That session had already ended.", "error")
    else:
        await flash("That session is signed out.", "success")
    return redirect(ACCOUNT_PAGE)


@bp.post("/account/sessions/revoke-others")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@hide
async def revoke_other_sessions() -> ResponseReturnValue:
    app_state = state()
    revoked = await sessions.revoke_other_sessions(
        app_state.db, app_state.settings, await signed_in_session()
    )
    await flash(_signed_out(revoked), "success")
    return redirect(ACCOUNT_PAGE)


# --- personal API tokens -------------------------------------------------------------------

# The lifetimes the form offers (those within AUTHAPP_TOKEN_MAX_LIFETIME_DAYS).
TOKEN_LIFETIMES = (7, 30, 90, 365)


async def _tokens_page(
    *,
    status: int = 200,
    errors: list[ErrorDetail] | None = None,
    message: str | None = None,
    created: tuple[ApiToken, str] | None = None,
) -> ResponseReturnValue:
    """The tokens page; `created` is a new token and its secret, shown in this answer only."""
    app_state = state()
    settings = app_state.settings
    lifetimes = sorted({*TOKEN_LIFETIMES, settings.token_lifetime_days})
    # After an error the form keeps its choices; after a token was made it starts over.
    form = await request.form if request.method == "POST" and created is None else MultiDict()
    account = await signed_in_session()
    return await _settings_page(
        "protected/tokens.html",
        status=status,
        errors=errors,
        message=message,
        created=created,
        tokens=await tokens.list_api_tokens(app_state.db, account),
        # Permissions only to those who hold them: a token of anyone else could not use one.
        scopes=app_state.scopes.described(account.permissions),
        chosen_scopes=form.getlist("scopes"),
        lifetimes=[days for days in lifetimes if days <= settings.token_max_lifetime_days],
        chosen_lifetime=form.get("expires_in_days", str(settings.token_lifetime_days)),
    )


@bp.get("/account/tokens")
@feature("api_tokens")
@rate_exempt
@login_required
@hide
async def api_tokens() -> ResponseReturnValue:
    return await _tokens_page()


class TokenForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: TokenName
    scopes: ScopeList = Field(default_factory=list, validate_default=True)
    expires_in_days: int | None = None

    @field_validator("scopes", mode="before")
    @classmethod
    def one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value  # one ticked box comes as a string

    @field_validator("scopes")
    @classmethod
    def at_least_one(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("Choose at least one scope.")
        return value


@bp.post("/account/tokens")
@feature("api_tokens")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@hide
@validate_request(TokenForm, source=DataSource.FORM)
async def create_token(data: TokenForm) -> ResponseReturnValue:
    app_state = state()
    try:
        created = await tokens.create_api_token(
            app_state.db, app_state.settings, await signed_in_session(),
            name=data.name, scopes=data.scopes, expires_in_days=data.expires_in_days,
            known=app_state.scopes,
        )  # fmt: skip
    except APIError as error:
        if error.code == "TOKEN_NAME_TAKEN":
            taken = ErrorDetail(field="name", message=error.message, type="taken")
            return await _tokens_page(status=error.status, errors=[taken])
        if error.code == "TOO_MANY_TOKENS":
            return await _tokens_page(status=error.status, message=error.message)
        if error.code == "VALIDATION_ERROR":
            return await _tokens_page(status=error.status, errors=error.details)
        raise
    # Shown in this answer only: never in a flash, the cookie or a redirect's address.
    return await _tokens_page(created=created)


@bp.post("/account/tokens/<uuid:token_id>/revoke")
@feature("api_tokens")
@rate_limit(limits=WRITE_LIMITS)
@login_required
@hide
async def revoke_token(token_id: UUID) -> ResponseReturnValue:
    try:
        await tokens.revoke_api_token(state().db, await signed_in_session(), token_id)
    except APIError as error:
        if error.code != "TOKEN_NOT_FOUND":
            raise
        await flash("That token had already been revoked or had expired.", "error")
    else:
        await flash("The token is revoked: it no longer works.", "success")
    return redirect(TOKENS_PAGE)
