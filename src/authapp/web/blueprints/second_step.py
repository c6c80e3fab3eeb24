"""The sign-in's second step as a page (/auth/mfa): after the login form proved the password of
an account with two-factor sign-in, a code from the authenticator app or a recovery code (or,
with static/passkeys.js, a passkey through the API); behind CSRF."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from quart import ResponseReturnValue, flash, redirect, request
from quart_auth import current_user
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request

from ...accounts import mfa, mfa_signin
from ...errors import APIError, ErrorDetail
from ...state import state
from ..csrf import check_csrf
from ..errors import details_from
from ..features import SwitchedBlueprint
from ..limits import MFA_LIMITS
from ..pages import render_form, with_next
from ..redirects import safe_next
from ..signing import complete_sign_in

bp = SwitchedBlueprint("second_step", __name__, url_prefix="/auth")
bp.before_request(check_csrf)

SECOND_STEP_PAGE = "/auth/mfa"
LOGIN_PAGE = "/auth/login"


async def _next_url() -> str:
    form = await request.form if request.method == "POST" else {}
    return safe_next(form.get("next") or request.args.get("next"))


async def _second_step_page(
    *, recovery: bool, status: int = 200, errors: list[ErrorDetail] | None = None
) -> ResponseReturnValue:
    """The code form, or (`recovery`) the recovery code form."""
    app_state = state()
    pending_of = await mfa_signin.pending_user(
        app_state.db, request.cookies.get(app_state.settings.mfa_cookie_name)
    )
    methods = [] if pending_of is None else (await mfa.mfa_status(app_state.db, pending_of)).methods
    return await render_form(
        "auth/mfa.html", status=status, errors=errors, recovery=recovery, next=await _next_url(),
        passkey=mfa.PASSKEY_METHOD in methods,
        # The code forms, unless a passkey is the account's only second factor (and for a
        # pending sign-in gone meanwhile: their answer sends the person back to sign in).
        codes=not methods or "totp" in methods,
    )  # fmt: skip


@bp.errorhandler(RequestSchemaValidationError)
async def invalid_form(error: RequestSchemaValidationError) -> ResponseReturnValue:
    recovery = "recovery_code" in await request.form
    details = details_from(error.validation_error)
    return await _second_step_page(recovery=recovery, status=400, errors=details)


@bp.get("/mfa")
@rate_exempt
@hide
async def second_factor_page() -> ResponseReturnValue:
    if await current_user.is_authenticated:
        return redirect(await _next_url())
    if request.cookies.get(state().settings.mfa_cookie_name) is None:
        # No password step waiting (or its cookie ran out): the sign-in starts over.
        return redirect(with_next(LOGIN_PAGE, await _next_url()))
    return await _second_step_page(recovery=request.args.get("method") == "recovery")


class SecondFactorForm(BaseModel):
    """The code form sends `code`, the recovery code form `recovery_code`."""

    model_config = ConfigDict(extra="ignore")

    code: str | None = Field(default=None, max_length=32)
    recovery_code: str | None = Field(default=None, max_length=64)


@bp.post("/mfa")
@rate_limit(limits=MFA_LIMITS)
@hide
@validate_request(SecondFactorForm, source=DataSource.FORM)
async def second_factor(data: SecondFactorForm) -> ResponseReturnValue:
    recovery = data.recovery_code is not None
    field, given = ("recovery_code", data.recovery_code) if recovery else ("code", data.code)
    if not (given or "").strip():  # an empty form spends none of the pending sign-in's tries
        required = ErrorDetail(field=field, message="This field is required.", type="missing")
        return await _second_step_page(recovery=recovery, status=400, errors=[required])
    try:
        await complete_sign_in(
            code=None if recovery else given, recovery_code=given if recovery else None
        )
    except APIError as error:
        if error.code == "MFA_PENDING_EXPIRED":
            await flash(error.message, "error")
            return redirect(with_next(LOGIN_PAGE, await _next_url()))
        if error.code != "MFA_CODE_INVALID":
            raise
        return await _second_step_page(recovery=recovery, status=400, errors=error.details)
    return redirect(await _next_url())
