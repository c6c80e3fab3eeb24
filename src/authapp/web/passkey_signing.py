"""Passkeys at the HTTP edge: who the relying party is (AUTHAPP_BASE_URL, or in development the
request's own origin), the cookie that binds a sign-in's challenge to this client, and signing
the client in with a passkey alone."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from quart import after_this_request, request
from quart.typing import ResponseTypes

from ..accounts import mfa_signin, passkey_signin, passkeys
from ..errors import APIError
from ..models.users import User
from ..state import state
from .signing import start_client_session


def relying_party() -> passkeys.RelyingParty:
    """The RP ID is the host of AUTHAPP_BASE_URL (required in production), the one origin
    answers may come from its scheme and host; without it (development, tests), this
    request's own origin, as the browser on localhost sees it."""
    settings = state().settings
    parts = urlsplit(settings.base_url or request.host_url)
    return passkeys.RelyingParty(
        id=parts.hostname or "localhost",
        origin=f"{parts.scheme}://{parts.netloc}",
        name=settings.mfa_issuer,
    )


def cookie_name() -> str:
    # The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
    return "__Host-authapp_passkey" if state().settings.secure_cookies else "authapp_passkey"


def challenge_reference() -> str | None:
    """The reference of the challenge this client was given, from its cookie."""
    return request.cookies.get(cookie_name())


def set_challenge_cookie(reference: str | None) -> None:
    """Set (None: clear) the cookie naming this client's sign-in challenge. Strict: only this
    site's own pages send it."""
    settings = state().settings
    name = cookie_name()

    @after_this_request
    async def set_cookie(response: ResponseTypes) -> ResponseTypes:
        if reference is None:
            response.delete_cookie(
                name, path="/", secure=settings.secure_cookies, httponly=True,
                samesite="Strict",
            )  # fmt: skip
        else:
            response.set_cookie(
                name, reference, max_age=int(passkeys.CHALLENGE_LIFETIME.total_seconds()),
                path="/", secure=settings.secure_cookies, httponly=True, samesite="Strict",
            )  # fmt: skip
        return response


async def sign_in_options() -> Any:
    """Options for navigator.credentials.get(), their challenge bound to this client. After a
    password proved right (a live pending sign-in's cookie), for that user's second factor:
    their keys listed; else for a passkey alone, discoverable."""
    app_state = state()
    pending_of = await mfa_signin.pending_user(
        app_state.db, request.cookies.get(app_state.settings.mfa_cookie_name)
    )
    reference, options = await passkey_signin.authentication_options(
        app_state.db, relying_party(), second_factor_of=pending_of
    )
    set_challenge_cookie(reference)
    return options


async def sign_in_with_passkey(credential: dict[str, Any], *, remember: bool) -> User:
    """A passkey alone signs the client in: a new session, fresh, `amr` hwk + user (the
    authenticator verified its user). The challenge's cookie goes either way."""
    app_state = state()
    set_challenge_cookie(None)
    user = await passkey_signin.sign_in(
        app_state.db, relying_party(), challenge_reference(), credential
    )
    if app_state.settings.require_verified_email and user.email_verified_at is None:
        # Only after the passkey proved itself, so this reveals nothing to a stranger.
        raise APIError(
            403, "EMAIL_NOT_VERIFIED", "Verify your email address first: follow the link we sent."
        )
    await start_client_session(user, remember=remember, amr=("hwk", "user"))
    return user
