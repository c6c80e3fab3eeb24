"""Who is calling: the session cookie or, on the JSON API, a bearer token, resolved to an
account once per request; and `auth_required`, the guard of every signed-in route (scopes,
permissions, fresh sign-in, and the OpenAPI security it documents)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from itsdangerous import BadSignature, URLSafeTimedSerializer
from quart import Quart, Response, current_app, g, has_request_context, request
from quart_auth import Action, AuthUser, QuartAuth, Unauthorized, current_user
from quart_auth.extension import _AuthSerializer  # its cookie's serializer; pinned by a test
from quart_schema.openapi import QUART_SCHEMA_SECURITY_ATTRIBUTE

from ..accounts.sessions import is_fresh, reauth_required
from ..accounts.tokens import Scope
from ..errors import APIError
from ..models.api_tokens import TokenAccount
from ..models.sessions import SessionAccount
from ..state import state
from .wrappers import PlainTimedSerializer, signing_keys

# How many checked cookies each worker remembers (see AuthappAuth.load_token): 1,024 clients
# at a time, about 200 KiB.
VERIFIED_COOKIES = 1024

P = ParamSpec("P")
R = TypeVar("R")


class AccountUser(AuthUser):
    """quart-auth's user, resolved on first use to the account behind its credential."""

    async def account(self) -> SessionAccount | TokenAccount | None:
        raise NotImplementedError

    @property
    async def is_authenticated(self) -> bool:
        return await self.account() is not None


class SessionUser(AccountUser):
    """The cookie's token, resolved to a live session and its user in one query, so a
    revoked, expired or idle session or a deactivated user is refused on the very next request.
    """

    def __init__(
        self,
        auth_id: str | None,
        action: Action = Action.PASS,
        account: SessionAccount | None = None,
    ) -> None:
        super().__init__(auth_id, action)
        self._account = account
        self._resolved = account is not None

    async def account(self) -> SessionAccount | None:
        if not self._resolved:
            self._resolved = True
            if self.auth_id is not None:
                self._account = await state().sessions.resolve(self.auth_id, request.remote_addr)
        return self._account


class TokenUser(AccountUser):
    """An API request's bearer token, resolved to its live token and user on first use.

    It has no auth_id, so quart-auth never writes or clears a cookie for it.
    """

    def __init__(self, token: str) -> None:
        super().__init__(None)
        self._token = token
        self._account: TokenAccount | None = None
        self._resolved = False

    async def account(self) -> TokenAccount | None:
        if not self._resolved:
            self._resolved = True
            self._account = await state().tokens.resolve(self._token)
        return self._account


class _PlainAuthSerializer(PlainTimedSerializer, _AuthSerializer):
    """quart-auth's cookie serializer (HMAC-SHA512), without itsdangerous' zlib pass (see
    wrappers.PlainTimedSerializer): cookies read as before, both ways."""


class AuthappAuth(QuartAuth):
    """quart-auth in cookie mode, with bearer tokens on the JSON API only, under /api/ (authapp's
    and a product's own resources alike; never on pages, where a browser could be made to send
    one it did not mean to), and only while AUTHAPP_API_TOKENS is on: off, a bearer token is
    not even looked up."""

    def resolve_user(self) -> AuthUser:
        if has_request_context() and (token := bearer_token()) is not None:
            return TokenUser(token)
        return super().resolve_user()

    serializer_class = _PlainAuthSerializer
    _serializer: tuple[tuple[object, ...], URLSafeTimedSerializer] | None = None
    # Cookies whose signature checked out under the current keys: their session token and
    # when they were signed. Bounded; emptied when the keys change.
    _verified: dict[str, tuple[str, int]]

    def _serializer_of(self, app: Quart) -> URLSafeTimedSerializer:
        """quart-auth's serializer, made once per set of keys instead of on every request that
        carries the cookie (a fifth of the CPU the cookie's check took). As quart-auth orders
        them: the current key last, which itsdangerous signs with; the fallbacks still read
        older cookies."""
        keys = signing_keys(app)
        cached = self._serializer
        if cached is None or cached[0] != keys:
            serializer = self.serializer_class(list(keys), cast(str, self.salt))
            cached = self._serializer = (keys, serializer)
            self._verified = {}
        return cached[1]

    def dump_token(self, auth_id: str, app: Quart | None = None) -> str:
        return self._serializer_of(app or current_app).dumps(auth_id)

    def load_token(self, token: str, app: Quart | None = None) -> str | None:
        """The session token the cookie carries, if its signature is ours and it is younger than
        the session's longest life (quart-auth's `duration`).

        A client sends the same cookie on every request, and checking its signature was the
        largest part of a signed-in request after the database (itsdangerous: base64, the
        HMAC-SHA512, the timestamp, JSON). So a cookie that checked out is remembered with when
        it was signed, and only its age is checked again. This remembers what the cookie says,
        never whether the session lives: every request still looks the session up (revoked,
        expired, idle), and new keys forget every cookie checked under the old ones.
        """
        serializer = self._serializer_of(app or current_app)
        known = self._verified.get(token)
        if known is None:
            try:
                auth_id, signed = serializer.loads(
                    token, max_age=self.duration, return_timestamp=True
                )
            except BadSignature:  # SignatureExpired is one
                return None
            known = (cast(str, auth_id), int(signed.timestamp()))
            if len(self._verified) >= VERIFIED_COOKIES:
                del self._verified[next(iter(self._verified))]  # the oldest goes
            self._verified[token] = known
        age = int(time.time()) - known[1]  # as itsdangerous counts it
        if self.duration is not None and not 0 <= age <= self.duration:
            return None
        return known[0]

    async def after_request(self, response: Response) -> Response:
        # Signing in or out (login_user, logout_user, renew_login) leaves a user on `g` whose
        # action is not PASS; otherwise nothing changed, and asking quart-auth only to learn
        # that is wasted on every request (resolving the user where nobody asked who calls:
        # /healthz, files, public pages).
        user = g.get(self.attribute_name)
        if user is None or user.action is Action.PASS:
            return response
        return await super().after_request(response)


def bearer_token() -> str | None:
    """The request's bearer token, if it is one the app takes: under /api/, tokens switched on."""
    if not request.path.startswith("/api/") or not state().settings.api_tokens:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def current_account() -> SessionAccount | TokenAccount | None:
    return await cast(AccountUser, current_user).account()


async def signed_in_account() -> SessionAccount | TokenAccount:
    """The account of a route behind a sign-in guard (which has already resolved it)."""
    account = await current_account()
    if account is None:
        raise Unauthorized()
    return account


async def signed_in_session() -> SessionAccount:
    """The session of a route that only a session may call (see auth_required)."""
    account = await signed_in_account()
    if not isinstance(account, SessionAccount):
        raise insufficient_scope(None)
    return account


def forbidden(permission: Scope) -> APIError:
    return APIError(403, "FORBIDDEN", f"This needs the {permission} permission, which you lack.")


def holds(account: SessionAccount | TokenAccount, permission: Scope) -> bool:
    """Whether the caller may use `permission` now: its user holds it through a role, and a
    token was also given it as a scope."""
    if isinstance(account, TokenAccount) and permission not in account.scopes:
        return False
    return permission in account.permissions


def insufficient_scope(scope: Scope | None) -> APIError:
    if scope is None:
        message = "API tokens cannot do this: sign in with your password."
    else:
        message = f"This API token lacks the {scope} scope."
    return APIError(403, "INSUFFICIENT_SCOPE", message)


@dataclass(frozen=True)
class Guard:
    """What auth_required asks of a route's caller (kept on the view for tests that walk)."""

    scope: Scope | None
    fresh: bool
    permission: Scope | None = None


GUARD_ATTRIBUTE = "_authapp_guard"


def auth_required(
    scope: Scope | None = None, *, permission: Scope | None = None, fresh: bool = False
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Let a route run only for a signed-in caller, and document who may call it.

    A session may always call it; a bearer token only when the route names a `scope` and the
    token has it. `fresh` routes (password, email, deletion, new tokens, signing out
    everywhere) take only a session whose password was proved within AUTHAPP_FRESHNESS, else
    401 `REAUTH_REQUIRED`. Without a scope a route is the session's alone: a new route added
    without thought never lets tokens in.

    A `permission` (`users:read`) is asked of the user behind the session or token at each
    request, resolved with it (accounts/roles.py): 403 `FORBIDDEN` without it. A token must
    also have it as a scope; a fresh route takes no token at all.
    """
    if scope is not None and permission is not None:
        raise ValueError("a route names a scope or a permission, not both")
    token_scope = permission or scope
    # OpenAPI 3.1 lets a non-OAuth scheme list the roles it needs: the permission.
    security: list[dict[str, list[str]]] = [{"sessionCookie": [permission] if permission else []}]
    if token_scope is not None and not fresh:
        security.append({"bearerToken": [token_scope]})

    def decorator(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            account = await current_account()
            if account is None:
                if isinstance(current_user, TokenUser):
                    raise APIError(
                        401, "UNAUTHENTICATED", "The API token is unknown, revoked or expired.",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                    )  # fmt: skip
                raise Unauthorized()
            if isinstance(account, TokenAccount):
                if token_scope is None or fresh or token_scope not in account.scopes:
                    raise insufficient_scope(None if fresh else token_scope)
                stale = False
            else:
                stale = fresh and not is_fresh(account, state().settings)
            # Before freshness: nobody is sent to confirm a password for what they may not do.
            if permission is not None and permission not in account.permissions:
                raise forbidden(permission)
            if stale:
                raise reauth_required()
            return await func(*args, **kwargs)

        setattr(guarded, QUART_SCHEMA_SECURITY_ATTRIBUTE, security)
        setattr(guarded, GUARD_ATTRIBUTE, Guard(scope, fresh, permission))
        return guarded

    return decorator


def unregistered_scopes(app: Quart) -> list[str]:
    """The routes of `app` whose guard names a scope the app's tokens cannot have, or a
    permission no role can give (a typo, or a product's scope or permission never registered
    with authapp.register_scope or register_permission)."""
    scopes = cast(Any, app.extensions["authapp"]).scopes
    known, permissions = set(scopes.names()), set(scopes.permissions())
    missing = []
    for endpoint, view in app.view_functions.items():
        guard = getattr(view, GUARD_ATTRIBUTE, None)
        if guard is None:
            continue
        if guard.scope is not None and guard.scope not in known:
            missing.append(f"{endpoint} needs {guard.scope!r}")
        if guard.permission is not None and guard.permission not in permissions:
            missing.append(f"{endpoint} needs the permission {guard.permission!r}")
    return sorted(missing)
