"""authapp: create_app() builds the app (settings, extensions, blueprints, error handlers), and
the public API a product built on authapp imports from here:

    from authapp import APIError, auth_required, create_app, current_account, database
    from authapp import NoContent, check_api_origin, check_csrf, documents_errors
    from authapp import register_permission, register_scope, signals, signed_in_account
    from authapp import validation_error

Everything else is authapp's own and may move.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart

from . import signals
from .config import (
    ConfigError,
    Settings,
    load_settings,
    with_development_encryption_key,
    with_development_secret,
)
from .errors import APIError, ErrorDetail, validation_error
from .extensions import init_audit, init_extensions
from .infra.database import Database
from .infra.embedded import start_embedded_postgres
from .infra.encryption import generate_key
from .infra.logs import configure_logging
from .infra.mail import init_mail
from .infra.workers import exit_worker_with_parent
from .state import AppState, state
from .web.blueprints import admin, api, auth, dev, docs, health, protected, second_step, security
from .web.csrf import check_api_origin, check_csrf
from .web.enrolment import enforce_mfa_enrolment
from .web.errors import documents_errors, register_error_handlers
from .web.guards import (
    auth_required,
    current_account,
    signed_in_account,
    unregistered_scopes,
)
from .web.keepalive import EdgeMiddleware
from .web.schemas import NoContent
from .web.templating import init_templating
from .web.wrappers import (
    AuthappQuart,
    AuthappRequest,
    CachedSessionInterface,
    refuse_oversized_headers,
)

__all__ = [
    "APIError",
    "ConfigError",
    "ErrorDetail",
    "NoContent",
    "auth_required",
    "check_api_origin",
    "check_csrf",
    "create_app",
    "current_account",
    "database",
    "documents_errors",
    "register_permission",
    "register_scope",
    "signals",
    "signed_in_account",
    "validation_error",
]

# Files that set their own caching; every other answer is per user (Cache-Control: no-store).
STATIC_ENDPOINTS = frozenset({"static", "docs.docs_asset"})


def resolve_settings(config: Mapping[str, Any] | None = None) -> Settings:
    """The settings with what development fills in: a kept secret and an embedded database."""
    settings = load_settings(config)
    instance_path = Path(settings.instance_path).resolve()
    settings = with_development_secret(settings, instance_path)
    settings = with_development_encryption_key(settings, instance_path)
    if settings.env == "testing" and not settings.secret_key:
        settings = replace(settings, secret_key=secrets.token_urlsafe(48))
    if settings.env == "testing" and not settings.encryption_keys:
        # This app's alone: what it encrypts is unreadable to the next (tests start empty).
        settings = replace(settings, encryption_keys=(generate_key(),))
    if not settings.database_url:
        if settings.env != "development":
            raise ConfigError("AUTHAPP_DATABASE_URL is required outside development")
        settings = replace(settings, database_url=start_embedded_postgres(instance_path))
    return replace(settings, instance_path=str(instance_path))


def create_app(config: Mapping[str, Any] | None = None) -> Quart:
    """Build the app: defaults, then AUTHAPP_* environment variables, then `config`."""
    exit_worker_with_parent()  # a Hypercorn worker whose parent is killed leaves no orphan
    settings = resolve_settings(config)
    configure_logging(settings)

    app = AuthappQuart(
        __name__,
        instance_path=settings.instance_path,
        # The pages' templates and files are the HTTP edge's (mail's templates are there too).
        template_folder="web/templates",
        static_folder="web/static",
    )
    app.request_class = AuthappRequest
    app.session_interface = CachedSessionInterface()
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        TESTING=settings.env == "testing",
        MAX_CONTENT_LENGTH=settings.max_body_size,
        # One wait for the whole body (not per read), from when the app first reads it.
        BODY_TIMEOUT=settings.body_timeout,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        CSRF_TIME_LIMIT=settings.csrf_time_limit,
        # Quart's signed cookie session carries only the CSRF token and flash messages.
        SESSION_COOKIE_NAME=settings.csrf_cookie_name,
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE=settings.cookie_samesite,
        SESSION_COOKIE_PATH="/",
    )
    app_state = init_extensions(app, settings)
    init_mail(app, settings)
    init_audit(app, app_state.db, settings)
    # The API's docs stay with the API when AUTHAPP_PAGES leaves out the HTML pages.
    pages = (auth.bp, second_step.bp, protected.bp, security.bp, admin.bp) if settings.pages else ()
    for blueprint in (*pages, api.bp, docs.bp, health.bp):
        app.register_blueprint(blueprint)
    if settings.env == "development" and settings.pages:  # mailed links for the developer's eyes
        app.register_blueprint(dev.bp)
    register_error_handlers(app)
    init_templating(app, settings)

    @app.before_serving
    async def refuse_unregistered_scopes() -> None:
        # Checked once every blueprint is in (a product adds its own after create_app).
        if missing := unregistered_scopes(app):
            raise ConfigError(
                "routes name scopes this app does not have (authapp.register_scope): "
                + "; ".join(missing)
            )

    app.before_request(refuse_oversized_headers)
    if settings.mfa_required:  # off, not even a hook runs
        app.before_request(enforce_mfa_enrolment)
    # One layer next to the server (inside the proxy fix): every line logged while serving a
    # request carries its id and events know its client; the security headers and no-store;
    # an early answer leaves an HTTP/1.1 connection usable.
    static = [rule.rule for rule in app.url_map.iter_rules() if rule.endpoint in STATIC_ENDPOINTS]
    app.asgi_app = EdgeMiddleware(  # type: ignore[method-assign]
        app.asgi_app,
        max_body_size=settings.max_body_size,
        body_timeout=settings.body_timeout,
        hsts_max_age=settings.hsts_max_age,
        cached_prefixes=tuple(rule.split("<", 1)[0] for rule in static),
    )
    if settings.trusted_proxy_hops:
        # Only then do X-Forwarded-For/-Proto count, and only the hops we trust.
        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            app.asgi_app, mode="legacy", trusted_hops=settings.trusted_proxy_hops
        )
    return app


def database() -> Database:
    """The serving app's database, for a product's own SQL: `async with database().connection()
    as connection:` (or `.transaction()`) takes a pool connection for one unit of work; an
    outage is a 503 by itself."""
    return state().db


def register_scope(app: Quart, name: str, description: str) -> str:
    """Let this app's API tokens have the scope `name` (`resource:action`, such as
    `notes:write`), described so in the token form and the API docs; returns `name`, for
    `auth_required(name)`. Every scope a route names must be registered before the app serves."""
    app_state: AppState = app.extensions["authapp"]
    return app_state.scopes.register(name, description)


def register_permission(app: Quart, name: str, description: str) -> str:
    """Add a permission to this app (`resource:action`, such as `notes:moderate`): a role may
    hold it (`authapp roles create`), and `auth_required(permission=name)` lets in only a
    session or token of a user who holds it now (a token also needs it as a scope); returns
    `name`. Register it before the app serves."""
    app_state: AppState = app.extensions["authapp"]
    return app_state.scopes.register(name, description, permission=True)
