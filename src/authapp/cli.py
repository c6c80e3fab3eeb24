"""The `authapp` command: serve, db migrate, users create/list/deactivate/activate, keys rotate.

Which environment a command runs in: AUTHAPP_ENV when it is set (production by default). When
neither AUTHAPP_ENV nor AUTHAPP_DATABASE_URL is set and the instance folder holds the embedded
PostgreSQL that `make run` made, a command runs in development on that database, as `make run`
does, so `authapp users create` reaches what `make run` serves (see config.development_instance).
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import socket
import sys
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import click
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from . import resolve_settings
from .accounts import admin
from .accounts.emails import normalize_email
from .accounts.keys import UnreadableSecret, rotate_encryption_keys
from .config import ConfigError, Settings, development_instance, load_settings, parse_bind
from .errors import APIError
from .infra import supervisor
from .infra import workers as workers_module
from .infra.logs import AccessLogger, configure_logging
from .infra.mail import OUTBOX_FOLDER, parse_smtp_url
from .models.users import User
from .state import AppState

DEFAULT_FACTORY = "authapp:create_app"
_factory = DEFAULT_FACTORY  # --app, for the commands below


def make_app() -> Quart:
    """An app from the factory --app names (module:function, called with no arguments)."""
    module_name, _, function = _factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function or "create_app")
    except (ImportError, AttributeError) as error:
        fail(f"--app {_factory}: {error}")
    return cast(Quart, factory())


T = TypeVar("T")

log = logging.getLogger(__name__)


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"authapp: error: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            fail(str(error))


@click.group(cls=_Group)
@click.option(
    "--app",
    "factory",
    envvar="AUTHAPP_APP",
    default=DEFAULT_FACTORY,
    show_default=True,
    help="The app factory, module:function (a product built on authapp names its own).",
)
@click.pass_context
def main(ctx: click.Context, factory: str) -> None:
    """authapp: sign-up, sign-in and revocable sessions on Quart.

    Without AUTHAPP_ENV and AUTHAPP_DATABASE_URL, where `make run` left its embedded
    PostgreSQL (instance/pgdata), commands run in development on it, as `make run` does.
    """
    global _factory
    _factory = factory
    pgdata = development_instance(os.environ)
    if pgdata is not None:
        os.environ["AUTHAPP_ENV"] = "development"  # exported: `serve`'s workers agree
        if ctx.invoked_subcommand != "serve":  # serve says its environment as it starts
            click.echo(f"authapp: development, on the embedded PostgreSQL in {pgdata}", err=True)


# --- serve --------------------------------------------------------------------------------


class _ServeLogger(AccessLogger):
    """Hypercorn's logger without its "Running on" line from every worker: `serve` says where
    it listens once, with the rest of its start-up lines."""

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        if not message.startswith("Running on "):
            await super().info(message, *args, **kwargs)


@main.command()
@click.option(
    "--config",
    "config_path",
    default="hypercorn.toml",
    show_default=True,
    help="Hypercorn settings (TOML); skipped when the file does not exist.",
)
@click.option(
    "--bind",
    multiple=True,
    help="Address to listen on, like 127.0.0.1:8000 (default: AUTHAPP_BIND, 127.0.0.1:8000).",
)
@click.option("--workers", type=int, help="Worker processes.")
@click.option(
    "--exit-with-parent",
    is_flag=True,
    help="Stop when the process that started this one ends (make run: killing make stops it).",
)
def serve(
    config_path: str, bind: tuple[str, ...], workers: int | None, exit_with_parent: bool
) -> None:
    """Serve the app with Hypercorn's workers; one that dies is replaced (see supervisor.py)."""
    if exit_with_parent:
        workers_module.exit_with_parent()
    settings = load_settings()
    configure_logging(settings)
    hypercorn_config = _hypercorn_config(Path(config_path))
    hypercorn_config.bind = list(bind) or [settings.bind]
    if workers is not None:
        hypercorn_config.workers = workers
    supervisor.check(hypercorn_config)
    for address in hypercorn_config.bind:  # before the database starts: the usual mistake
        if problem := bind_problem(address):
            fail(problem)

    # Settle the settings once here, so a bad one is one line, and so every worker shares
    # the same embedded database and development secret.
    embedded = settings.database_url is None
    settings = resolve_settings()
    os.environ["AUTHAPP_DATABASE_URL"] = settings.database_url or ""
    os.environ["AUTHAPP_SECRET_KEY"] = settings.secret_key or ""
    os.environ["AUTHAPP_ENCRYPTION_KEYS"] = ",".join(settings.encryption_keys)
    hypercorn_config.application_path = f"{_factory}()"
    hypercorn_config.logger_class = _ServeLogger
    announce(settings, hypercorn_config, embedded=embedded)
    try:
        supervisor.supervise(hypercorn_config)
    except supervisor.StartupFailure as error:
        fail(str(error), 1)
    except OSError as error:  # taken between the check above and now
        if error.errno != errno.EADDRINUSE:
            raise
        taken = ", ".join(hypercorn_config.bind)
        fail(f"{taken} is in use: set AUTHAPP_BIND or stop the other server")


def _hypercorn_config(path: Path) -> HypercornConfig:
    if not path.is_file():
        return HypercornConfig()
    if "bind" in tomllib.loads(path.read_text()):
        fail(f"{path} sets bind, which `authapp serve` does not read: set AUTHAPP_BIND instead")
    return HypercornConfig.from_toml(path)


def bind_problem(address: str) -> str | None:
    """Why Hypercorn could not listen on `address`, found by trying (as Hypercorn binds, but
    never sharing the port: another server sharing it would be one in the way), or None."""
    if address.startswith(("unix:", "fd://")):
        return None
    try:
        host, port = parse_bind(address)
    except ValueError as error:  # AUTHAPP_BIND is checked with the settings: this is --bind
        return f"--bind: {error}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} is in use: set AUTHAPP_BIND or stop the other server"
            return f"cannot listen on {address}: {error.strerror}"
    return None


def announce(settings: Settings, config: HypercornConfig, *, embedded: bool) -> None:
    """The start-up lines, once, in the log's format: where it listens, the docs, the data,
    the mail."""
    scheme = "https" if config.ssl_enabled else "http"
    urls = [a if a.startswith(("unix:", "fd://")) else f"{scheme}://{a}" for a in config.bind]
    log.info("authapp (%s) listening on %s", settings.env, ", ".join(urls))
    log.info("API docs: %s/docs", urls[0])
    instance = Path(settings.instance_path)
    if embedded:
        log.info("data: embedded PostgreSQL in %s", instance / "pgdata")
    else:
        log.info("data: PostgreSQL at %s", _without_password(settings.database_url or ""))
    if settings.smtp_url:
        target = parse_smtp_url(settings.smtp_url)
        log.info("mail: SMTP server %s:%d (TLS: %s)", target.hostname, target.port, target.tls)
    else:
        # /dev/outbox is served in development only, and only with the pages (blueprints/dev.py).
        outbox_page = settings.env == "development" and settings.pages
        page = f"; latest at {urls[0]}/dev/outbox" if outbox_page else ""
        log.info("mail: files in %s (no AUTHAPP_SMTP_URL); links also in this log%s",
                 instance / OUTBOX_FOLDER, page)  # fmt: skip


def _without_password(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{separator}{user}@{location}"


# --- db -----------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database commands."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply the pending migrations, authapp's and then the app's own (quart-db's own
    db-migrate is broken in 0.12)."""
    app = make_app()
    app_state: AppState = app.extensions["authapp"]
    version = asyncio.run(app_state.db.migrate_now())
    click.echo(f"database at migration {version}")


# --- keys ---------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Encryption key commands."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every authenticator secret with the first key of AUTHAPP_ENCRYPTION_KEYS."""
    try:
        count = in_app(lambda state: rotate_encryption_keys(state.db, state.encryption))
    except UnreadableSecret as error:
        fail(str(error), 1)
    click.echo(
        f"re-encrypted {count} authenticator secret(s) with the first key of "
        "AUTHAPP_ENCRYPTION_KEYS; the other keys can now be removed"
    )


# --- users --------------------------------------------------------------------------------


@main.group()
def users() -> None:
    """User commands: create, list, deactivate, activate."""


def in_app(work: Callable[[AppState], Awaitable[T]]) -> T:
    """Run `work` in a started app, as a request would; what it leaves to be done after the
    response (mail) is done before this returns. An account rule's refusal is one line."""
    app = make_app()
    app_state: AppState = app.extensions["authapp"]

    async def run() -> T:
        await app.startup()
        try:
            async with app.app_context():
                return await work(app_state)
        finally:
            await app.shutdown()

    try:
        return asyncio.run(run())
    except APIError as error:
        # The API's "The request is not valid." says less than its detail ("Use at least...").
        fail(error.details[0].message if error.details else error.message, 1)


def link_base(settings: Settings) -> str:
    """Where links in mail point: AUTHAPP_BASE_URL, else the address `authapp serve` binds."""
    if settings.base_url:
        return settings.base_url.rstrip("/")
    host, port = parse_bind(settings.bind)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 (not a bind)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _FailedMail(logging.Handler):
    """Notes mail that could not be delivered (the mailer logs it, and never raises)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.failures += 1


@users.command("create")
@click.option("--email", required=True, help="The new user's email.")
@click.option("--display-name", default=None, help="How the user is greeted.")
@click.option(
    "--verified",
    is_flag=True,
    help="Mark the address verified; without it the user is mailed a link to verify it.",
)
def users_create(email: str, display_name: str | None, verified: bool) -> None:
    """Create a user. The password is read from a prompt, or from stdin when piped; never argv."""
    try:
        email = normalize_email(email)
    except ValueError as error:
        fail(f"invalid email: {error}", 1)
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    mail_log = logging.getLogger("authapp.mail")
    failed_mail = _FailedMail()
    mail_log.addHandler(failed_mail)

    async def create(app_state: AppState) -> tuple[User, Settings]:
        user = await admin.create_user(
            app_state.db, app_state.hashing, app_state.settings, email=email,
            password=password, display_name=display_name, verified=verified,
            base_url=link_base(app_state.settings),
        )  # fmt: skip
        return user, app_state.settings

    try:
        user, settings = in_app(create)
    finally:
        mail_log.removeHandler(failed_mail)
    click.echo(f"created user {user.id} <{user.email}>")
    if verified:
        click.echo("its address is marked verified")
    elif failed_mail.failures:
        click.echo(
            "authapp: warning: the verification mail could not be delivered (see above); "
            "the user can ask for a new link on the sign-in page",
            err=True,
        )
    elif settings.smtp_url:
        click.echo(f"a verification link was mailed to {user.email}")
    else:
        outbox = Path(settings.instance_path) / OUTBOX_FOLDER
        click.echo(f"a verification link was written to {outbox} (no AUTHAPP_SMTP_URL)")


@users.command("list")
def users_list() -> None:
    """List the users, the oldest first."""
    found = in_app(lambda app_state: admin.list_users(app_state.db))
    rows = [("EMAIL", "NAME", "VERIFIED", "ACTIVE", "CREATED", "LAST SIGN-IN")]
    for user in found:
        rows.append(
            (
                user.email,
                user.display_name,
                "yes" if user.email_verified_at else "no",
                "yes" if user.is_active else "no",
                f"{user.created_at:%Y-%m-%d %H:%M}",
                f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())
    if not found:
        click.echo("(no users yet)")


@users.command("deactivate")
@click.argument("email")
def users_deactivate(email: str) -> None:
    """Stop a user signing in: their sessions end and their API tokens are deleted."""
    set_active(email, active=False)


@users.command("activate")
@click.argument("email")
def users_activate(email: str) -> None:
    """Let a deactivated user sign in again (with new sessions and tokens)."""
    set_active(email, active=True)


def set_active(email: str, *, active: bool) -> None:
    change = in_app(
        lambda app_state: admin.set_active(app_state.db, app_state.settings, email, active)
    )
    if change is None:
        fail(f"no user has the email {email}", 1)
    state = "active" if active else "deactivated"
    if not change.changed:
        click.echo(f"{change.user.email} is already {state}")
        return
    click.echo(
        f"{change.user.email} is {state}: {change.sessions_revoked} session(s) revoked, "
        f"{change.tokens_revoked} API token(s) deleted"
    )
