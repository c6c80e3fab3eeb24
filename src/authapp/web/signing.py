"""Signing the current client in and out, for the JSON API and the pages alike: the session
cookie, the device cookie and the CSRF secret; and the work a request leaves for after its
answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from quart import after_this_request, current_app, request
from quart.typing import ResponseTypes
from quart_auth import (
    current_user,
    login_user,
    logout_user,
)

from ..accounts import mfa, mfa_signin
from ..accounts.credentials import Revoked
from ..accounts.emails import email_key, email_key_digest
from ..accounts.lifecycle import change_password
from ..accounts.passkeys import RelyingParty
from ..accounts.sessions import Forgives, revoke_session, start_session
from ..accounts.signin import authenticate, forgive_without_session, invalid_credentials
from ..config import Settings
from ..errors import APIError
from ..infra.database import Database
from ..models.sessions import SessionAccount
from ..models.users import User
from ..state import state
from . import devices
from .csrf import rotate_csrf_token
from .guards import SessionUser

# --- signing the current client in and out (shared by the JSON API and the pages) ---------


@dataclass(frozen=True)
class SecondFactorRequired:
    """The password proved right, and the account asks for its second factor next."""

    methods: list[str]


async def sign_in(email: str, password: str, *, remember: bool) -> User | SecondFactorRequired:
    """Check the credentials, start a new session and hand its token to quart-auth's cookie;
    or, for an account with a second factor, start a pending sign-in (its cookie, no session).

    The device cookie the client presents for this account, if any, lets the rules tell the
    owner's device from a stranger (see devices.py)."""
    app_state = state()
    key = email_key(email)
    device = None if key is None else devices.for_account(email_key_digest(key))
    proved = await authenticate(
        app_state.db, app_state.hashing, app_state.settings, key=key, password=password,
        device=None if device is None else device.trusted,
    )  # fmt: skip
    user = proved.user
    if app_state.settings.require_verified_email and user.email_verified_at is None:
        # Only after the password checked out, so this reveals nothing to a stranger; which
        # forgives the failures before it, as a sign-in would.
        await forgive_without_session(app_state.db, proved)
        raise APIError(
            403, "EMAIL_NOT_VERIFIED", "Verify your email address first: follow the link we sent."
        )
    if proved.has_second_factor:
        reference = await mfa_signin.begin_sign_in(
            app_state.db, user, remember=remember, ip=request.remote_addr
        )
        _set_pending_cookie(reference)
        return SecondFactorRequired((await mfa.mfa_status(app_state.db, user.id)).methods)
    await start_client_session(user, remember=remember, forgives=proved.forgives)
    return user


async def complete_sign_in(
    *,
    code: str | None,
    recovery_code: str | None,
    passkey: tuple[RelyingParty, str | None, dict[str, Any]] | None = None,
) -> User:
    """The second step of a sign-in: the code (or the passkey: the relying party, this
    client's challenge reference and the authenticator's answer) for the pending sign-in this
    client's cookie names; the cookie goes either way once the pending sign-in is done or
    dead."""
    app_state = state()
    reference = request.cookies.get(app_state.settings.mfa_cookie_name)
    try:
        proved = await mfa_signin.complete_sign_in(
            app_state.db, app_state.encryption, app_state.settings, reference, code=code,
            recovery_code=recovery_code, device_of=devices.trusted, passkey=passkey,
        )  # fmt: skip
    except APIError as error:
        if error.code == "MFA_PENDING_EXPIRED":
            _set_pending_cookie(None)
        raise
    _set_pending_cookie(None)
    await start_client_session(proved.user, remember=proved.remember, amr=("pwd", proved.method))
    return proved.user


def _set_pending_cookie(reference: str | None) -> None:
    """Set the pending sign-in's cookie on the answer (None: clear it). Strict: only this
    site's own second-step form sends it."""
    settings = state().settings

    @after_this_request
    async def set_cookie(response: ResponseTypes) -> ResponseTypes:
        if reference is None:
            response.delete_cookie(
                settings.mfa_cookie_name, path="/", secure=settings.secure_cookies,
                httponly=True, samesite="Strict",
            )  # fmt: skip
        else:
            response.set_cookie(
                settings.mfa_cookie_name, reference,
                max_age=int(mfa_signin.PENDING_LIFETIME.total_seconds()), path="/",
                secure=settings.secure_cookies, httponly=True, samesite="Strict",
            )  # fmt: skip
        return response


async def start_client_session(
    user: User,
    *,
    remember: bool,
    amr: tuple[str, ...] = ("pwd",),
    forgives: Forgives | None = None,
) -> None:
    """Give the current client a new session of `user` (replacing any it had), and a device
    cookie for them: it proved its credentials here (`amr`: how; `forgives`: see
    sessions.start_session)."""
    app_state = state()
    token = await start_session(
        app_state.db,
        app_state.settings,
        user.id,
        security_stamp=user.security_stamp,
        remember=remember,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        replaces=current_user.auth_id,
        amr=amr,
        forgives=forgives,
    )
    if token is None:  # the credentials changed while these were checked: they prove nothing
        raise invalid_credentials()
    login_user(SessionUser(token), remember=remember)
    rotate_csrf_token()  # a form token from before sign-in is worthless after it
    devices.remember_device(user.id, user.security_stamp, user.email_key)


def mail_after_answer(
    work: Callable[[Database, Settings, str, str], Awaitable[None]], email: str
) -> None:
    """Run a lookup that may mail `email` after the answer is sent, so the answer is the same,
    and as quick, whether or not the address has an account."""
    app_state = state()
    current_app.add_background_task(
        work, app_state.db, app_state.settings, email, public_base_url()
    )


def public_base_url() -> str:
    """Where links in mail lead: AUTHAPP_BASE_URL (required in production, so a forged Host
    header cannot redirect a reset link), else this request's own origin."""
    return (state().settings.base_url or request.host_url).rstrip("/")


async def sign_out() -> None:
    """Revoke the session on the server (so copies of the cookie die too) and clear the cookie."""
    token = current_user.auth_id
    if token is not None:
        await revoke_session(state().db, token)
    logout_user()
    rotate_csrf_token()


async def change_password_here(
    account: SessionAccount, *, current_password: str, new_password: str
) -> Revoked:
    """Change the password from this client's session (see lifecycle.change_password). Every
    device's trust ended with the old password; this client proved both, so it is trusted
    anew under the new security stamp."""
    app_state = state()
    revoked = await change_password(
        app_state.db, app_state.hashing, app_state.settings, account,
        current_password=current_password, new_password=new_password,
        device=devices.trusted(account.user_id),
    )  # fmt: skip
    devices.remember_device(account.user_id, revoked.security_stamp, account.email_key)
    return revoked
