"""`authapp users ...`: create, list, deactivate and activate users from the shell."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ..accounts import admin
from ..accounts.emails import normalize_email
from ..config import Settings
from ..infra.mail import OUTBOX_FOLDER
from ..models.users import User
from ..state import AppState
from .common import echo_table, fail, in_app, link_base


@click.group()
def users() -> None:
    """User commands: create, list, deactivate, activate."""


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
    echo_table(rows)
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


@users.command("reset-access")
@click.argument("email")
def users_reset_access(email: str) -> None:
    """End everything that lets a user in but the password, their second factor included (for
    someone who lost their phone and their recovery codes)."""
    reset = in_app(lambda app_state: admin.reset_access(app_state.db, app_state.settings, email))
    if reset is None:
        fail(f"no user has the email {email}", 1)
    factor = "removed" if reset.second_factor_removed else "none was on"
    click.echo(
        f"{email}: {reset.sessions_revoked} session(s) revoked, {reset.tokens_revoked} API "
        f"token(s) deleted, second factor: {factor}; they sign in with their password and set "
        "one up again"
    )


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
