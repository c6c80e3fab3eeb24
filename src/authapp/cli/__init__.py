"""The `authapp` command: serve, db migrate, users create/list/deactivate/activate, roles
list/create/grant/revoke, keys rotate (a module per group of commands).

Which environment a command runs in: AUTHAPP_ENV when it is set (production by default). When
neither AUTHAPP_ENV nor AUTHAPP_DATABASE_URL is set and the instance folder holds the embedded
PostgreSQL that `make run` made, a command runs in development on that database, as `make run`
does, so `authapp users create` reaches what `make run` serves (see config.development_instance).
"""

from __future__ import annotations

import asyncio
import os

import click

from ..accounts.keys import UnreadableSecret, rotate_encryption_keys
from ..config import ConfigError, development_instance
from ..state import AppState
from .common import DEFAULT_FACTORY, fail, in_app, make_app, use_factory
from .roles import roles
from .serve import announce, serve
from .users import users

__all__ = ["announce", "main"]


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
    use_factory(factory)
    pgdata = development_instance(os.environ)
    if pgdata is not None:
        os.environ["AUTHAPP_ENV"] = "development"  # exported: `serve`'s workers agree
        if ctx.invoked_subcommand != "serve":  # serve says its environment as it starts
            click.echo(f"authapp: development, on the embedded PostgreSQL in {pgdata}", err=True)


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


main.add_command(serve)
main.add_command(users)
main.add_command(roles)
