"""The sign-in pages: forms for login and registration, and logout, all behind CSRF checks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint, ResponseReturnValue, flash, redirect, request
from quart_auth import current_user
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request

from .. import accounts
from ..csrf import check_csrf
from ..errors import APIError, ErrorDetail, details_from
from ..extensions import (
    LOGIN_LIMITS,
    REGISTER_LIMITS,
    sign_in,
    sign_out,
    start_client_session,
    state,
)
from ..pages import mismatch, render_form
from ..redirects import safe_next
from ..schemas import DisplayName, Email, LoginEmail, Password

bp = Blueprint("auth", __name__, url_prefix="/auth")
bp.before_request(check_csrf)

_TEMPLATES = {"auth.login": "auth/login.html", "auth.register": "auth/register.html"}


async def _form_page(
    endpoint: str,
    *,
    status: int = 200,
    errors: list[ErrorDetail] | None = None,
    message: str | None = None,
) -> ResponseReturnValue:
    form = await request.form if request.method == "POST" else {}
    next_url = safe_next(form.get("next") or request.args.get("next"))
    return await render_form(
        _TEMPLATES[endpoint], status=status, errors=errors, message=message, next=next_url
    )


@bp.errorhandler(RequestSchemaValidationError)
async def invalid_form(error: RequestSchemaValidationError) -> ResponseReturnValue:
    details = details_from(error.validation_error)
    return await _form_page(str(request.endpoint), status=400, errors=details)


async def _signed_in_redirect() -> ResponseReturnValue | None:
    if await current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    return None


class LoginForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: LoginEmail
    password: Password
    remember: bool = False


@bp.get("/login")
@rate_exempt
@hide
async def login_page() -> ResponseReturnValue:
    return await _signed_in_redirect() or await _form_page("auth.login")


@bp.post("/login")
@rate_limit(limits=LOGIN_LIMITS)
@hide
@validate_request(LoginForm, source=DataSource.FORM)
async def login(data: LoginForm) -> ResponseReturnValue:
    try:
        await sign_in(data.email, data.password, remember=data.remember)
    except APIError as error:
        if error.code != "INVALID_CREDENTIALS":
            raise
        return await _form_page("auth.login", status=401, message=error.message)
    return redirect(safe_next((await request.form).get("next")))


class RegisterForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: Email
    display_name: DisplayName | None = None
    password: Password
    password_confirm: str = Field(max_length=1024)

    @field_validator("display_name", mode="before")
    @classmethod
    def empty_means_not_given(cls, value: object) -> object:
        return None if value == "" else value


@bp.get("/register")
@rate_exempt
@hide
async def register_page() -> ResponseReturnValue:
    return await _signed_in_redirect() or await _form_page("auth.register")


@bp.post("/register")
@rate_limit(limits=REGISTER_LIMITS)
@hide
@validate_request(RegisterForm, source=DataSource.FORM)
async def register(data: RegisterForm) -> ResponseReturnValue:
    if data.password != data.password_confirm:
        return await _form_page("auth.register", status=400, errors=mismatch("password_confirm"))
    app_state = state()
    try:
        user = await accounts.register(
            app_state.db,
            app_state.hashing,
            app_state.settings,
            email=data.email,
            password=data.password,
            display_name=data.display_name,
        )
    except APIError as error:
        if error.code == "EMAIL_TAKEN":
            taken = ErrorDetail(field="email", message=error.message, type="taken")
            return await _form_page("auth.register", status=409, errors=[taken])
        if error.code == "VALIDATION_ERROR":
            return await _form_page("auth.register", status=400, errors=error.details)
        raise
    await start_client_session(user, remember=False)
    await flash("Your account is ready. Welcome!", "success")
    return redirect(safe_next((await request.form).get("next")))


@bp.post("/logout")
@rate_exempt
@hide
async def logout() -> ResponseReturnValue:
    await sign_out()
    await flash("You have been signed out.", "success")
    return redirect("/auth/login")
