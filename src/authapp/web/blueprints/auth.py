"""The sign-in pages: login, registration, logout, verification, password reset and confirming
the password again, behind CSRF."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import (
    ResponseReturnValue,
    flash,
    redirect,
    render_template,
    request,
)
from quart_auth import Unauthorized, current_user, logout_user
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request

from ...accounts import lifecycle, links, mfa_signin, signin
from ...accounts.passwords import MAX_PASSWORD_LENGTH
from ...errors import APIError, ErrorDetail, wait_text
from ...state import state
from .. import devices
from ..csrf import check_csrf
from ..enrolment import enrolment_allowed
from ..errors import details_from, handle_http_exception, wants_json
from ..features import SwitchedBlueprint, feature
from ..guards import auth_required, signed_in_session
from ..limits import (
    LOGIN_LIMITS,
    MAIL_LIMITS,
    PASSWORD_CHANGE_LIMITS,
    REGISTER_LIMITS,
    TOKEN_LIMITS,
)
from ..pages import mismatch, render_form, send_to_sign_in, with_next
from ..redirects import DEFAULT_NEXT, safe_next
from ..schemas import DisplayName, Email, LoginEmail, Password
from ..signing import (
    SecondFactorRequired,
    mail_after_answer,
    public_base_url,
    sign_in,
    sign_out,
    start_client_session,
)
from .api.blueprint import CHECK_INBOX, SENT_IF_KNOWN
from .second_step import SECOND_STEP_PAGE

bp = SwitchedBlueprint("auth", __name__, url_prefix="/auth")
bp.before_request(check_csrf)

# The page that shows each form again after an error.
_TEMPLATES = {
    "auth.login": "auth/login.html",
    "auth.register": "auth/register.html",
    "auth.forgot_password": "auth/forgot_password.html",
    "auth.resend_verification": "auth/resend_verification.html",
    "auth.reset_password": "auth/reset_password.html",
    "auth.reauth": "auth/reauth.html",
}
# Where a form leads when it carries no safe `next`.
_NEXT_DEFAULTS = {"/auth/reauth": "/account"}


async def _next_url() -> str:
    form = await request.form if request.method == "POST" else {}
    default = _NEXT_DEFAULTS.get(request.path, DEFAULT_NEXT)
    return safe_next(form.get("next") or request.args.get("next"), default)


async def _form_page(
    endpoint: str,
    *,
    status: int = 200,
    errors: list[ErrorDetail] | None = None,
    message: str | None = None,
    **context: Any,
) -> ResponseReturnValue:
    return await render_form(
        _TEMPLATES[endpoint], status=status, errors=errors, message=message,
        next=await _next_url(), **context,
    )  # fmt: skip


async def _message_page(title: str, text: str, *, status: int = 200) -> ResponseReturnValue:
    """A page that tells a person what happened and what comes next."""
    return await render_template("auth/message.html", title=title, text=text), status


@bp.errorhandler(Unauthorized)
async def sign_in_first(error: Unauthorized) -> ResponseReturnValue:
    """Confirming the password needs a session: without one, signing in does as much."""
    if wants_json():
        return await handle_http_exception(error)
    return await send_to_sign_in(await _next_url())


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
        signed_in = await sign_in(data.email, data.password, remember=data.remember)
    except APIError as error:
        if error.code not in {"INVALID_CREDENTIALS", "EMAIL_NOT_VERIFIED"}:
            raise
        unverified = error.code == "EMAIL_NOT_VERIFIED"
        return await _form_page(
            "auth.login", status=error.status, message=error.message, unverified=unverified
        )
    target = safe_next((await request.form).get("next"))
    if isinstance(signed_in, SecondFactorRequired):
        return redirect(with_next(SECOND_STEP_PAGE, target))
    return redirect(target)


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
@feature("registration")
@rate_exempt
@hide
async def register_page() -> ResponseReturnValue:
    return await _signed_in_redirect() or await _form_page("auth.register")


@bp.post("/register")
@feature("registration")
@rate_limit(limits=REGISTER_LIMITS)
@hide
@validate_request(RegisterForm, source=DataSource.FORM)
async def register(data: RegisterForm) -> ResponseReturnValue:
    if data.password != data.password_confirm:
        return await _form_page("auth.register", status=400, errors=mismatch("password_confirm"))
    app_state = state()
    try:
        user = await lifecycle.sign_up(
            app_state.db,
            app_state.hashing,
            app_state.settings,
            email=data.email,
            password=data.password,
            display_name=data.display_name,
            base_url=public_base_url(),
        )
    except APIError as error:
        if error.code == "EMAIL_TAKEN":
            taken = ErrorDetail(field="email", message=error.message, type="taken")
            return await _form_page("auth.register", status=409, errors=[taken])
        if error.status == 400 and error.details:  # the password policy, by field
            return await _form_page("auth.register", status=400, errors=error.details)
        raise
    if app_state.settings.require_verified_email or user is None:
        # The same page whether the address was new or taken (its owner got a mail).
        return await _message_page("Check your inbox", CHECK_INBOX)
    await start_client_session(user, remember=False)
    await flash(f"Your account is ready. We sent a link to {user.email} to verify it.", "success")
    return redirect(safe_next((await request.form).get("next")))


@bp.post("/logout")
@rate_exempt
@enrolment_allowed
@hide
async def logout() -> ResponseReturnValue:
    await sign_out()
    await flash("You have been signed out.", "success")
    return redirect("/auth/login")


@bp.get("/verify-email/<token>")
@rate_limit(limits=TOKEN_LIMITS)
@hide
async def verify_email(token: str) -> ResponseReturnValue:
    # A GET does it (mail clients only open links); a prefetch can only prove delivery.
    await lifecycle.verify_email(state().db, token)
    return await _message_page("Email verified", "Thank you: your email address is verified.")


class EmailForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: LoginEmail


@bp.get("/verify-email/resend")
@rate_exempt
@hide
async def resend_verification_page() -> ResponseReturnValue:
    return await _form_page("auth.resend_verification")


@bp.post("/verify-email/resend")
@rate_limit(limits=MAIL_LIMITS)
@hide
@validate_request(EmailForm, source=DataSource.FORM)
async def resend_verification(data: EmailForm) -> ResponseReturnValue:
    mail_after_answer(lifecycle.resend_verification, data.email)
    return await _message_page("Check your inbox", SENT_IF_KNOWN)


@bp.get("/forgot-password")
@rate_exempt
@hide
async def forgot_password_page() -> ResponseReturnValue:
    return await _form_page("auth.forgot_password")


@bp.post("/forgot-password")
@rate_limit(limits=MAIL_LIMITS)
@hide
@validate_request(EmailForm, source=DataSource.FORM)
async def forgot_password(data: EmailForm) -> ResponseReturnValue:
    mail_after_answer(lifecycle.request_password_reset, data.email)
    valid_for = links.hours(state().settings.reset_password_lifetime)
    return await _message_page(
        "Check your inbox", f"{SENT_IF_KNOWN} It works once, for {valid_for}."
    )


@bp.get("/reset-password/<token>")
@rate_limit(limits=TOKEN_LIMITS)
@hide
async def reset_password_page(token: str) -> ResponseReturnValue:
    await lifecycle.check_reset_token(state().db, token)  # a dead link says so before any typing
    return await _form_page("auth.reset_password", token=token)


class ResetPasswordForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    password: Password
    password_confirm: str = Field(max_length=MAX_PASSWORD_LENGTH)


@bp.post("/reset-password/<token>")
@rate_limit(limits=TOKEN_LIMITS)
@hide
@validate_request(ResetPasswordForm, source=DataSource.FORM)
async def reset_password(token: str, data: ResetPasswordForm) -> ResponseReturnValue:
    if data.password != data.password_confirm:
        return await _form_page(
            "auth.reset_password", status=400, errors=mismatch("password_confirm"), token=token
        )
    app_state = state()
    try:
        await lifecycle.reset_password(
            app_state.db, app_state.hashing, app_state.settings, token=token,
            password=data.password,
        )  # fmt: skip
    except APIError as error:
        if error.status != 400 or not error.details:  # a dead link: not the password policy
            raise
        return await _form_page(
            "auth.reset_password", status=400, errors=error.details, token=token
        )
    if current_user.auth_id is not None:
        logout_user()  # every session was revoked; this browser's cookie with them
    await flash(
        "Your password is changed and every session signed out. Sign in with it.", "success"
    )
    return redirect("/auth/login")


@bp.get("/confirm-email/<token>")
@rate_limit(limits=TOKEN_LIMITS)
@hide
async def confirm_email_page(token: str) -> ResponseReturnValue:
    # Only a button here: link scanners in mail systems must not switch an address.
    new_email = await lifecycle.check_email_change_token(state().db, token)
    return await render_template("auth/confirm_email.html", token=token, new_email=new_email)


@bp.post("/confirm-email/<token>")
@rate_limit(limits=TOKEN_LIMITS)
@hide
async def confirm_email(token: str) -> ResponseReturnValue:
    new_email = await lifecycle.confirm_email_change(state().db, token)
    await flash(f"Your email address is now {new_email}.", "success")
    return redirect("/account")


class ReauthForm(BaseModel):
    """The password form sends `password`; for an account with an authenticator app, the
    code form sends `code` instead."""

    model_config = ConfigDict(extra="ignore")

    password: Password | None = None
    code: str | None = Field(default=None, max_length=32)


@bp.get("/reauth")
@rate_exempt
@auth_required()
@enrolment_allowed
@hide
async def reauth_page() -> ResponseReturnValue:
    return await _form_page("auth.reauth")


@bp.post("/reauth")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required()
@enrolment_allowed
@hide
@validate_request(ReauthForm, source=DataSource.FORM)
async def reauth(data: ReauthForm) -> ResponseReturnValue:
    app_state = state()
    account = await signed_in_session()
    device = devices.trusted(account.user_id)
    by_code = data.code is not None and data.password is None
    field = "code" if by_code else "password"
    given = data.code if by_code else data.password
    if not (given or "").strip():
        required = ErrorDetail(field=field, message="This field is required.", type="missing")
        return await _form_page("auth.reauth", status=400, errors=[required])
    assert given is not None
    try:
        if by_code:
            await mfa_signin.reauthenticate_with_code(
                app_state.db, app_state.encryption, app_state.settings, account, given,
                device=device,
            )  # fmt: skip
        else:
            await signin.reauthenticate(
                app_state.db, app_state.hashing, app_state.settings, account, given,
                device=device,
            )  # fmt: skip
    except APIError as error:
        if error.code not in {"WRONG_PASSWORD", "MFA_CODE_INVALID"}:
            raise
        return await _form_page("auth.reauth", status=400, errors=error.details)
    window = wait_text(app_state.settings.freshness)
    await flash(f"Thank you. For {window} you can change what needs your password.", "success")
    return redirect(await _next_url())
