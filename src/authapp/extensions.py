"""Extensions: QuartDB, QuartAuth, QuartSchema and RateLimiter for one app, and their glue.

They are built per app rather than at module level: quart-db and quart-auth copy settings onto
the extension object in init_app, so a shared instance would keep the first app's database URL
and cookie name (tests build many apps).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import quart_schema.conversion
from pydantic import TypeAdapter
from quart import Quart
from quart_schema import DataSource, QuartSchema
from quart_schema.openapi import (
    APIKeySecurityScheme,
    HttpSecurityScheme,
    OpenAPIProvider,
    SecuritySchemeBase,
    Tag,
)
from werkzeug.routing import Rule

from .accounts import audit
from .accounts.sessions import SessionLookups
from .accounts.tokens import TokenLookups
from .config import Settings
from .infra.clients import device_name
from .infra.database import AuthappDB, Database, migrations_path, skip_reset
from .infra.encryption import Encryption
from .infra.hashing import PasswordHashing
from .infra.limit_stores import limiter_store
from .state import AppState
from .web.guards import AuthappAuth, SessionUser
from .web.limits import SharedBucketRateLimiter, client_address_key, is_preflight
from .web.schemas import NoContent
from .web.wrappers import FastJSONProvider

# --- assembly ------------------------------------------------------------------------------


class AuthappOpenAPIProvider(OpenAPIProvider):
    """quart-schema's spec builder, taught that a NoContent answer (204) has no body, that
    a route with a request model refuses a request without its body, and that a route lists
    only the security schemes the app has (auth_required names bearerToken at import, before
    any app says whether AUTHAPP_API_TOKENS is on)."""

    def schema(self) -> dict[str, Any]:
        built = super().schema()
        app_state: AppState = self._app.extensions["authapp"]
        built["info"]["description"] = _about(app_state.settings, app_state.scopes.names())
        return built

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        schemes = set(self._extension.security_schemes or {})
        for operations in paths.values():
            for operation in operations.values():
                if "security" in operation:
                    operation["security"] = [
                        requirement
                        for requirement in operation["security"]
                        if set(requirement) <= schemes
                    ]
        return paths, components

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
    quart_db = AuthappDB(
        app,
        url=settings.database_url,
        migrations_folder=str(migrations_path()),  # absolute: quart-db joins it to root_path
        extra_migrations=None
        if settings.extra_migrations is None
        else Path(settings.extra_migrations).resolve(),
        auto_request_connection=False,  # requests take a connection only while running SQL
        backend_options={
            "min_size": settings.db_pool_min_size,
            "max_size": settings.db_pool_max_size,
            "command_timeout": settings.db_command_timeout,
            "max_inactive_connection_lifetime": 300,
            "reset": skip_reset,
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
    reuse_type_adapters()
    QuartSchema(
        app,
        info={"title": "authapp", "version": version("authapp")},  # its description: schema()
        tags=_tags(settings),
        security_schemes=_security_schemes(settings),
        # The stock pages load their scripts from CDNs; /docs is served locally instead.
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=AuthappOpenAPIProvider,
    )
    app.json = FastJSONProvider(app, default=cast(Any, app.json).default)  # quart-schema's, faster
    app.config.update(
        QUART_CORS_ALLOW_ORIGIN=list(settings.cors_origins),  # empty: no origin but our own
        QUART_CORS_ALLOW_CREDENTIALS=True,
        QUART_CORS_ALLOW_HEADERS=["Content-Type", "Authorization", "X-Request-ID"],
        QUART_CORS_ALLOW_METHODS=["GET", "POST", "PATCH", "DELETE"],
        QUART_CORS_EXPOSE_HEADERS=[
            "Retry-After",
            "X-Request-ID",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ],
        QUART_CORS_MAX_AGE=600,
        QUART_CORS_SEND_ORIGIN_WILDCARD=False,
    )
    SharedBucketRateLimiter(
        app,
        key_function=client_address_key,
        skip_function=is_preflight,
        store=limiter_store(settings),
        enabled=settings.rate_limit_enabled,
    )
    hashing = PasswordHashing(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
        threads=settings.hash_thread_count,
    )
    db = Database(quart_db, settings.db_pool_timeout)
    app_state = AppState(
        settings,
        db,
        hashing,
        SessionLookups(db, settings),
        TokenLookups(db),
        Encryption(settings.encryption_keys),
    )
    app.extensions["authapp"] = app_state

    @app.before_serving
    async def warm_up() -> None:
        # The first unknown-email login must not be the slow one, and building the
        # User-Agent parser (a tenth of a second) must not block the loop on a request.
        await hashing.verify_dummy("")
        await asyncio.to_thread(device_name, "")
        freeze_startup_objects()

    @app.after_serving
    async def stop_hashing() -> None:
        hashing.close()

    return app_state


def _about(settings: Settings, scopes: tuple[str, ...]) -> str:
    """The spec's description, of the capabilities these settings switch on, and the scopes
    the app's tokens may have (a product registers its own after create_app)."""
    open_ = settings.registration == "open"
    about = ["Sign-up, sign-in" if open_ else "Sign-in", "revocable sessions"]
    if settings.api_tokens:
        about.append("personal API tokens")
    text = f"{', '.join(about[:-1])} and {about[-1]}. "
    text += 'Errors are `{"code", "message", "details"?}` with a stable `code`. '
    text += "Routes take the session cookie that signing in sets"
    if not settings.api_tokens:
        return text + "."
    return (
        f"{text}; those that list a `bearerToken` scope also take `Authorization: Bearer "
        "<token>` with a token (`POST /api/tokens`) that has it. Scopes: "
        f"{', '.join(scopes)}."
    )


def _tags(settings: Settings) -> list[Tag | dict[Any, Any]]:
    auth = "Register, sign in" if settings.registration == "open" else "Sign in"
    tags: list[Tag | dict[Any, Any]] = [
        Tag(name="auth", description=f"{auth} and sign out."),
        Tag(name="account", description="The signed-in user."),
        Tag(name="sessions", description="Where you are signed in; sign out anywhere."),
    ]
    if settings.api_tokens:
        tags.append(Tag(name="tokens", description="Personal API tokens for scripts and programs."))
    tags.append(Tag(name="admin", description="Administration: users and roles, by permission."))
    return tags


def _security_schemes(settings: Settings) -> dict[str, SecuritySchemeBase | dict[Any, Any]]:
    schemes: dict[str, SecuritySchemeBase | dict[Any, Any]] = {
        "sessionCookie": APIKeySecurityScheme(in_="cookie", name=settings.session_cookie_name)
    }
    if settings.api_tokens:
        token = HttpSecurityScheme(scheme="bearer", bearer_format="authapp_pat_...")
        schemes["bearerToken"] = token
    return schemes


@functools.lru_cache(maxsize=256)
def _type_adapter_of(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _type_adapter(kind: Any, *args: Any, **kwargs: Any) -> TypeAdapter[Any]:
    if not args and not kwargs:
        with contextlib.suppress(TypeError):  # a type that cannot be a key (unhashable)
            return _type_adapter_of(kind)
    return TypeAdapter(kind, *args, **kwargs)


def reuse_type_adapters() -> None:
    """quart-schema (0.25) builds a pydantic TypeAdapter for every dict or list an answer
    returns, and for every request model it loads: 8% of the CPU of /healthz. One per type
    does the same work. (It looks the name up in its module: tests/test_serving.py pins it.)
    And an answer that is already plain JSON, or no headers at all, skips the conversion."""
    quart_schema.conversion.TypeAdapter = _type_adapter  # type: ignore[assignment,attr-defined]
    quart_schema.conversion.model_dump = _model_dump


_quart_schema_model_dump = quart_schema.conversion.model_dump
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _model_dump(raw: Any, **options: Any) -> Any:
    """quart-schema's model_dump, which returns a dict of plain values (`{"status": "alive"}`)
    as it is after a pydantic round trip, and None after five type checks: a tenth of the CPU
    of /healthz. Renaming keys (camelize, kebabize) still goes through it."""
    if raw is None or (
        type(raw) is dict
        and not options.get("camelize")
        and not options.get("kebabize")
        and all(type(value) in _PLAIN for value in raw.values())
    ):
        return raw
    return _quart_schema_model_dump(raw, **options)


_frozen = False


def freeze_startup_objects() -> None:
    """Move everything built at start-up out of the garbage collector's sight, once per process.

    The app, its routes, schemas and the User-Agent parser live as long as the process, yet
    each full collection walked them all: 23-37 ms pauses of every request in flight on the
    worker, measured under `make bench`. Frozen, a full collection takes 1-3 ms.
    """
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


# --- signing the current client in and out (shared by the JSON API and the pages) ---------


def init_audit(app: Quart, db: Database, settings: Settings) -> None:
    """Sweep old security events (accounts/audit.py) while the app serves."""
    sweeping: list[asyncio.Task[None]] = []

    @app.before_serving
    async def start_sweeping() -> None:
        sweeping.append(asyncio.create_task(audit.sweep_forever(db, settings)))

    @app.after_serving
    async def stop_sweeping() -> None:
        while sweeping:
            sweeping.pop().cancel()
