"""Extensions: QuartDB, QuartAuth, QuartSchema and RateLimiter for one app, and their glue.

They are built per app rather than at module level: quart-db and quart-auth copy settings onto
the extension object in init_app, so a shared instance would keep the first app's database URL
and cookie name (tests build many apps).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from math import ceil
from typing import Any, cast

from quart import Quart, current_app, request
from quart_auth import (
    current_user,
    login_user,
    logout_user,
)
from quart_db import QuartDB
from quart_rate_limiter import KeyCallable, RateLimit, RateLimiter
from quart_rate_limiter.redis_store import RedisStore
from quart_rate_limiter.store import MemoryStore, RateLimiterStoreABC
from quart_schema import DataSource, QuartSchema
from quart_schema.openapi import OpenAPIProvider

from .accounts import authenticate
from .config import RateSpec, Settings
from .csrf import rotate_csrf_token
from .database import Database, migrations_path
from .errors import APIError
from .guards import AuthappAuth, SessionUser, current_account
from .models.users import User
from .passwords import PasswordHashing
from .schemas import NoContent, lookup_email
from .sessions import (
    device_name,
    revoke_session,
    start_session,
)
from .state import AppState, state
from .tokens import SCOPES

# --- rate limiting -------------------------------------------------------------------------


async def client_address_key() -> str:
    """The socket peer; proxy headers count only through AUTHAPP_TRUSTED_PROXY_HOPS."""
    return f"ip:{request.remote_addr or 'unknown'}"


async def named_account_key() -> str:
    """The account a body names (login, forgotten password), hashed to keep emails out of stores."""
    email: object = None
    if request.is_json:
        body = await request.get_json(silent=True)
        if isinstance(body, dict):
            email = body.get("email")
    else:
        email = (await request.form).get("email")
    if not isinstance(email, str) or not email.strip():
        return "account:none"
    return _account_key(email)


async def signed_in_account_key() -> str:
    """The signed-in account, keyed as its logins are (so both draw on one budget)."""
    account = await current_account()
    if account is None:
        return await client_address_key()
    return _account_key(account.email)


def _account_key(email: str) -> str:
    # The same normalisation as the lookup, so no spelling of one account gets a fresh budget.
    normalized = lookup_email(email).casefold()
    digest = hashlib.sha256(normalized.encode("utf-8", "replace")).hexdigest()
    return f"account:{digest[:32]}"


class ConfiguredLimit(RateLimit):
    """A limit whose rate is read from the settings at request time, not at import time."""

    def __init__(self, setting: str, key_function: KeyCallable) -> None:
        self.setting = setting
        self.key_function = key_function
        self.skip_function = None

    @property
    def spec(self) -> RateSpec:
        return cast(RateSpec, getattr(state().settings, self.setting))

    @property
    def count(self) -> int:  # type: ignore[override]
        return self.spec.count

    @property
    def period(self) -> timedelta:  # type: ignore[override]
        return self.spec.period

    @property
    def key(self) -> str:
        return f"{self.setting}-{self.spec.count}-{self.spec.period.total_seconds()}"


class SharedBucketRateLimiter(RateLimiter):
    """quart-rate-limiter, with one bucket per setting for the routes that share it.

    The library keys every bucket by endpoint too, so the JSON and the form login would each
    grant an attacker a fresh budget; our configured limits count across routes instead.
    """

    async def _create_key(self, endpoint: str, rate_limit: RateLimit) -> str:
        if isinstance(rate_limit, ConfiguredLimit):
            key_function = rate_limit.key_function or self.key_function
            return f"authapp-{rate_limit.key}-{await key_function()}"
        return await super()._create_key(endpoint, rate_limit)


LOGIN_LIMITS: list[RateLimit] = [
    ConfiguredLimit("login_rate_limit_ip", client_address_key),
    ConfiguredLimit("login_rate_limit_account", named_account_key),
]
REGISTER_LIMITS: list[RateLimit] = [ConfiguredLimit("register_rate_limit_ip", client_address_key)]
# Checking a current password is a login attempt, so it spends the account's login budget.
PASSWORD_CHANGE_LIMITS: list[RateLimit] = [
    ConfiguredLimit("login_rate_limit_account", signed_in_account_key)
]
WRITE_LIMITS: list[RateLimit] = [ConfiguredLimit("write_rate_limit", signed_in_account_key)]
# Each of these sends mail: per address and per account named, so nobody is flooded.
MAIL_LIMITS: list[RateLimit] = [
    ConfiguredLimit("mail_rate_limit_ip", client_address_key),
    ConfiguredLimit("mail_rate_limit_account", named_account_key),
]
EMAIL_CHANGE_LIMITS: list[RateLimit] = [
    *PASSWORD_CHANGE_LIMITS,
    ConfiguredLimit("mail_rate_limit_account", signed_in_account_key),
]
# Mailed tokens are unguessable; this only keeps a client from hammering the table.
TOKEN_LIMITS: list[RateLimit] = [ConfiguredLimit("login_rate_limit_ip", client_address_key)]


class PruningMemoryStore(MemoryStore):
    """quart-rate-limiter's per-process store, forgetting keys whose time has passed.

    The library's store keeps every key forever: one per address or email ever seen.
    """

    PRUNE_EVERY = 1024

    def __init__(self) -> None:
        super().__init__()
        self._writes = 0

    async def set(self, key: str, tat: datetime) -> None:
        await super().set(key, tat)
        self._writes += 1
        if self._writes % self.PRUNE_EVERY == 0:
            now = datetime.now(UTC)
            self._tats = {key: value for key, value in self._tats.items() if value > now}


class ExpiringRedisStore(RedisStore):
    """quart-rate-limiter's Redis store (shared by workers and hosts), with keys that expire.

    A stored time in the past means the same as no key, so each key can go once it passes.
    """

    async def set(self, key: str, tat: datetime) -> None:
        milliseconds = ceil((tat - datetime.now(UTC)).total_seconds() * 1000)
        await self._redis.set(key, tat.timestamp(), px=max(milliseconds, 1))  # type: ignore[union-attr]

    async def after_serving(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()  # the library still calls the deprecated close()
            self._redis = None


def _limiter_store(settings: Settings) -> RateLimiterStoreABC:
    if settings.redis_url:
        return ExpiringRedisStore(settings.redis_url)
    return PruningMemoryStore()


# --- assembly ------------------------------------------------------------------------------


class AuthappOpenAPIProvider(OpenAPIProvider):
    """quart-schema's spec builder, taught that a NoContent answer (204) has no body and that
    a route with a request model refuses a request without its body."""

    def build_request_body(
        self, model: Any, source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        body, definitions = super().build_request_body(model, source)
        return {**body, "required": True}, definitions

    def build_response_object(
        self, model: Any, headers_model: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No content."}, {}
        return super().build_response_object(model, headers_model)


def init_extensions(app: Quart, settings: Settings) -> AppState:
    quart_db = QuartDB(
        app,
        url=settings.database_url,
        migrations_folder=str(migrations_path()),  # absolute: quart-db joins it to root_path
        auto_request_connection=False,  # requests take a connection only while running SQL
        backend_options={
            "min_size": settings.db_pool_min_size,
            "max_size": settings.db_pool_max_size,
            "command_timeout": settings.db_command_timeout,
            "max_inactive_connection_lifetime": 300,
        },
    )
    AuthappAuth(
        app,
        cookie_name=settings.session_cookie_name,
        cookie_secure=settings.secure_cookies,
        cookie_samesite=settings.cookie_samesite,
        cookie_http_only=True,
        cookie_path="/",
        duration=settings.remember_lifetime,
        mode="cookie",
        salt="authapp.session",
        user_class=SessionUser,
    )
    QuartSchema(
        app,
        info={
            "title": "authapp",
            "version": version("authapp"),
            "description": "Sign-up, sign-in, revocable sessions and personal API tokens. "
            'Errors are `{"code", "message", "details"?}` with a stable `code`. '
            "Routes take the session cookie that signing in sets; those that list a "
            "`bearerToken` scope also take `Authorization: Bearer <token>` with a token "
            "(`POST /api/tokens`) that has it. Scopes: " + ", ".join(SCOPES) + ".",
        },
        tags=[
            {"name": "auth", "description": "Register, sign in and sign out."},
            {"name": "account", "description": "The signed-in user."},
            {"name": "sessions", "description": "Where you are signed in; sign out anywhere."},
            {"name": "tokens", "description": "Personal API tokens for scripts and programs."},
        ],
        security_schemes={
            "sessionCookie": {
                "type": "apiKey",
                "in_": "cookie",
                "name": settings.session_cookie_name,
            },
            "bearerToken": {
                "type": "http",
                "scheme": "bearer",
                "bearer_format": "authapp_pat_...",
            },
        },
        # The stock pages load their scripts from CDNs; /docs is served locally instead.
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=AuthappOpenAPIProvider,
    )
    SharedBucketRateLimiter(
        app,
        key_function=client_address_key,
        store=_limiter_store(settings),
        enabled=settings.rate_limit_enabled,
    )
    hashing = PasswordHashing(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
        threads=settings.hash_thread_count,
    )
    app_state = AppState(settings, Database(quart_db, settings.db_pool_timeout), hashing)
    app.extensions["authapp"] = app_state

    @app.before_serving
    async def warm_up() -> None:
        # The first unknown-email login must not be the slow one, and building the
        # User-Agent parser (a tenth of a second) must not block the loop on a request.
        await hashing.verify_dummy("")
        await asyncio.to_thread(device_name, "")

    @app.after_serving
    async def stop_hashing() -> None:
        hashing.close()

    return app_state


# --- signing the current client in and out (shared by the JSON API and the pages) ---------


async def sign_in(email: str, password: str, *, remember: bool) -> User:
    """Check the credentials, start a new session and hand its token to quart-auth's cookie."""
    app_state = state()
    user = await authenticate(
        app_state.db, app_state.hashing, email=lookup_email(email), password=password
    )
    if app_state.settings.require_verified_email and user.email_verified_at is None:
        # Only after the password checked out, so this reveals nothing to a stranger.
        raise APIError(
            403, "EMAIL_NOT_VERIFIED", "Verify your email address first: follow the link we sent."
        )
    await start_client_session(user, remember=remember)
    return user


async def start_client_session(user: User, *, remember: bool) -> None:
    """Give the current client a new session of `user` (replacing any it had)."""
    app_state = state()
    token = await start_session(
        app_state.db,
        app_state.settings,
        user.id,
        remember=remember,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        replaces=current_user.auth_id,
    )
    login_user(SessionUser(token), remember=remember)
    rotate_csrf_token()  # a form token from before sign-in is worthless after it


def mail_after_answer(
    work: Callable[[Database, Settings, str, str], Awaitable[None]], email: str
) -> None:
    """Run a lookup that may mail `email` after the answer is sent, so the answer is the same,
    and as quick, whether or not the address has an account."""
    app_state = state()
    current_app.add_background_task(
        work, app_state.db, app_state.settings, lookup_email(email), public_base_url()
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
