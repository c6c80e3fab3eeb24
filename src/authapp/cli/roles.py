"""`authapp roles ...`: list and create roles, grant and revoke them; the first admin comes
from here (`authapp roles grant EMAIL admin`)."""

from __future__ import annotations

import click

from ..accounts import roles as rules
from .common import echo_table, in_app


@click.group()
def roles() -> None:
    """Role commands: list, create, grant, revoke."""


@roles.command("list")
def roles_list() -> None:
    """List the roles, their permissions and how many users hold each."""
    found = in_app(lambda app_state: rules.list_roles(app_state.db))
    rows = [("ROLE", "USERS", "PERMISSIONS", "DESCRIPTION")]
    for role in found:
        permissions = " ".join(role.permissions) or "-"
        rows.append((role.name, str(role.holders), permissions, role.description))
    echo_table(rows)


@roles.command("create")
@click.argument("name")
@click.option(
    "--permission", "permissions", multiple=True,
    help="A permission the role holds (repeat it): users:read, users:write, roles:write, "
    "audit:read, or one the product registered.",
)  # fmt: skip
@click.option("--description", default="", help="What the role is for, up to 200 characters.")
def roles_create(name: str, permissions: tuple[str, ...], description: str) -> None:
    """Create a role holding some permissions."""
    role = in_app(
        lambda app_state: rules.create_role(
            app_state.db, app_state.scopes, name, description[:200], list(permissions)
        )
    )
    click.echo(f"created role {role.name}: {', '.join(role.permissions) or 'no permissions'}")


@roles.command("grant")
@click.argument("email")
@click.argument("role")
def roles_grant(email: str, role: str) -> None:
    """Give a user a role (it counts on their very next request)."""
    change = in_app(lambda app_state: rules.grant_by_email(app_state.db, email, role))
    if not change.granted:
        click.echo(f"{change.user.email} holds {role} already")
        return
    click.echo(f"{change.user.email} now holds {role}")


@roles.command("revoke")
@click.argument("email")
@click.argument("role")
def roles_revoke(email: str, role: str) -> None:
    """Take a role from a user (on their very next request); never the last active admin's."""
    change = in_app(lambda app_state: rules.revoke_by_email(app_state.db, email, role))
    if not change.revoked:
        click.echo(f"{change.user.email} does not hold {role}")
        return
    click.echo(f"{change.user.email} no longer holds {role}")
