"""The account's security page: two-factor sign-in set up with an authenticator app (a QR code
and the secret as text), its recovery codes shown once and as a download, new codes, turning
it off; passkeys listed, renamed and removed (static/passkeys.js adds them through the API);
behind CSRF, every change on a fresh session."""

from __future__ import annotations

from urllib.parse import quote
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quart import ResponseReturnValue, flash, redirect, request
from quart_auth import Unauthorized, login_required
from quart_rate_limiter import rate_exempt, rate_limit
from quart_schema import DataSource, RequestSchemaValidationError, hide, validate_request

from ...accounts import mfa, passkeys, sessions
from ...errors import APIError, ErrorDetail
from ...state import state
from .. import devices
from ..csrf import check_csrf
from ..enrolment import SECURITY_PAGE, enrolment_allowed
from ..errors import details_from, handle_api_error, handle_http_exception, wants_json
from ..features import SwitchedBlueprint
from ..guards import auth_required, signed_in_session
from ..limits import PASSWORD_CHANGE_LIMITS, WRITE_LIMITS
from ..pages import render_form, send_to_reauth, send_to_sign_in

bp = SwitchedBlueprint("security", __name__)
bp.before_request(check_csrf)

CODES_FILE_NAME = "authapp-recovery-codes.txt"
# A field's error when a form came without the one value it needs.
REQUIRED = "This field is required."


@bp.errorhandler(Unauthorized)
async def sign_in_first(error: Unauthorized) -> ResponseReturnValue:
    """Browsers go to the login page and come back to the security page after."""
    if wants_json():
        return await handle_http_exception(error)
    return await send_to_sign_in(SECURITY_PAGE)


@bp.errorhandler(APIError)
async def confirm_password_first(error: APIError) -> ResponseReturnValue:
    """A change needs a fresh sign-in: confirm it, then back to this page; the rules' refusals
    of a state the page did not expect (on already, not waiting) say so on the page."""
    if wants_json():
        return await handle_api_error(error)
    if error.code == "REAUTH_REQUIRED":
        return await send_to_reauth(SECURITY_PAGE)
    if error.code in {
        "MFA_ALREADY_ENABLED", "MFA_NOT_ENABLED", "MFA_NOT_PENDING", "PASSKEY_NOT_FOUND",
        "PASSKEY_NAME_TAKEN",
    }:  # fmt: skip
        await flash(error.message, "error")  # another tab or device changed it meanwhile
        return redirect(SECURITY_PAGE)
    return await handle_api_error(error)


@bp.errorhandler(RequestSchemaValidationError)
async def invalid_form(error: RequestSchemaValidationError) -> ResponseReturnValue:
    details = details_from(error.validation_error)
    if request.endpoint == "security.confirm_setup":
        return await _setup_page(status=400, errors=details)
    return await _security_page(status=400, errors=details)


async def _security_page(
    *, status: int = 200, errors: list[ErrorDetail] | None = None
) -> ResponseReturnValue:
    account = await signed_in_session()
    app_state = state()
    return await render_form(
        "protected/security.html", status=status, errors=errors, account=account,
        fresh=sessions.is_fresh(account, app_state.settings),
        mfa=await mfa.mfa_status(app_state.db, account.user_id),
        passkeys=await passkeys.list_passkeys(app_state.db, account.user_id),
    )  # fmt: skip


async def _setup_page(
    *,
    status: int = 200,
    errors: list[ErrorDetail] | None = None,
    enrolment: mfa.Enrolment | None = None,
) -> ResponseReturnValue:
    """The set-up's second step: the QR code and the secret (only in the answer that made
    them: they are never stored where a page could show them again) and the confirm form."""
    grouped = None if enrolment is None else _grouped(enrolment.secret)
    return await render_form(
        "protected/security_setup.html", status=status, errors=errors, enrolment=enrolment,
        secret=grouped,
    )  # fmt: skip


def _grouped(secret: str) -> str:
    """The secret in groups of four, as people read and type it (apps ignore the spaces)."""
    return " ".join(secret[start : start + 4] for start in range(0, len(secret), 4))


async def _codes_page(codes: list[str], *, signed_out_others: bool) -> ResponseReturnValue:
    """The recovery codes, in this answer only, and as a text file the link carries itself
    (a data: URL: nothing kept on the server to download later)."""
    account = await signed_in_session()
    text = "\n".join(
        [
            f"Recovery codes for {account.email} at {request.host}",
            "Each one signs you in once in place of a code from your authenticator app.",
            "",
            *codes,
            "",
        ]
    )
    return await render_form(
        "protected/security_codes.html", codes=codes, signed_out_others=signed_out_others,
        download_name=CODES_FILE_NAME, download_href="data:text/plain;charset=utf-8," + quote(text),
    )  # fmt: skip


@bp.get(SECURITY_PAGE)
@rate_exempt
@login_required
@enrolment_allowed
@hide
async def security() -> ResponseReturnValue:
    return await _security_page()


@bp.post(f"{SECURITY_PAGE}/setup")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@hide
async def start_setup() -> ResponseReturnValue:
    app_state = state()
    enrolment = await mfa.start_enrolment(
        app_state.db, app_state.encryption, app_state.settings, await signed_in_session()
    )
    return await _setup_page(enrolment=enrolment)


class CodeForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str = Field(max_length=32)


@bp.post(f"{SECURITY_PAGE}/confirm")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@hide
@validate_request(CodeForm, source=DataSource.FORM)
async def confirm_setup(data: CodeForm) -> ResponseReturnValue:
    if not data.code.strip():
        return await _setup_page(status=400, errors=[_required("code")])
    app_state = state()
    try:
        codes = await mfa.confirm_enrolment(
            app_state.db, app_state.encryption, app_state.settings, await signed_in_session(),
            data.code,
        )  # fmt: skip
    except APIError as error:
        if error.code != "MFA_CODE_INVALID":
            raise
        return await _setup_page(status=400, errors=error.details)
    return await _codes_page(codes, signed_out_others=True)


@bp.post(f"{SECURITY_PAGE}/recovery-codes")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@hide
async def regenerate_codes() -> ResponseReturnValue:
    app_state = state()
    codes = await mfa.regenerate_recovery_codes(
        app_state.db, app_state.settings, await signed_in_session()
    )
    return await _codes_page(codes, signed_out_others=False)


class TurnOffForm(BaseModel):
    """A code from the app or a recovery code: whichever field is filled in."""

    model_config = ConfigDict(extra="ignore")

    code: str = Field(default="", max_length=32)
    recovery_code: str = Field(default="", max_length=64)


@bp.post(f"{SECURITY_PAGE}/disable")
@rate_limit(limits=PASSWORD_CHANGE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@hide
@validate_request(TurnOffForm, source=DataSource.FORM)
async def disable(data: TurnOffForm) -> ResponseReturnValue:
    code, recovery_code = data.code.strip() or None, data.recovery_code.strip() or None
    if (code is None) == (recovery_code is None):
        message = "Fill in one of the two: a code from the app, or a recovery code."
        return await _security_page(status=400, errors=[_required("code", message)])
    app_state = state()
    account = await signed_in_session()
    try:
        await mfa.disable(
            app_state.db, app_state.encryption, app_state.settings, account, code=code,
            recovery_code=recovery_code, device=devices.trusted(account.user_id),
        )  # fmt: skip
    except APIError as error:
        if error.code != "MFA_CODE_INVALID":
            raise
        return await _security_page(status=400, errors=error.details)
    await flash(
        "Two-factor sign-in is off, and your recovery codes with it. Every other session of "
        "your account was signed out.",
        "success",
    )
    return redirect(SECURITY_PAGE)


class PasskeyNameForm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="", max_length=passkeys.NAME_MAX_LENGTH)


@bp.post(f"{SECURITY_PAGE}/passkeys/<uuid:passkey_id>/rename")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@hide
@validate_request(PasskeyNameForm, source=DataSource.FORM)
async def rename_passkey(passkey_id: UUID, data: PasskeyNameForm) -> ResponseReturnValue:
    name = passkeys.clean_name(data.name)
    if name is None:
        await flash("Give the passkey a name.", "error")
        return redirect(SECURITY_PAGE)
    await passkeys.rename_passkey(state().db, await signed_in_session(), passkey_id, name)
    await flash(f"The passkey is now called {name}.", "success")
    return redirect(SECURITY_PAGE)


@bp.post(f"{SECURITY_PAGE}/passkeys/<uuid:passkey_id>/remove")
@rate_limit(limits=WRITE_LIMITS)
@auth_required(fresh=True)
@enrolment_allowed
@hide
async def remove_passkey(passkey_id: UUID) -> ResponseReturnValue:
    app_state = state()
    last = await passkeys.remove_passkey(
        app_state.db, app_state.settings, await signed_in_session(), passkey_id
    )
    message = "The passkey was removed. Every other session of your account was signed out."
    if last:
        message += " It was your last second factor: your password alone signs you in again."
    await flash(message, "success")
    return redirect(SECURITY_PAGE)


def _required(field: str, message: str = REQUIRED) -> ErrorDetail:
    return ErrorDetail(field=field, message=message, type="missing")
