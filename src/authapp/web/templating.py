"""Jinja helpers for the pages: the signed-in account for the header, CSRF tokens, dates."""

from __future__ import annotations

from datetime import UTC, datetime

from quart import Quart

from ..config import Settings
from ..errors import APIError
from ..models.users import Account
from .csrf import csrf_token
from .features import enabled_features
from .guards import current_account


async def nav_account() -> Account | None:
    """The signed-in account for the page header, looked up only by pages that show it.

    An outage must not break the error page that reports it, so it shows as signed out.
    """
    try:
        return await current_account()
    except APIError:
        return None


def format_datetime(moment: datetime) -> str:
    """A moment in UTC, as people read it: "21 Nov 2026, 14:03 UTC"."""
    return moment.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


def init_templating(app: Quart, settings: Settings) -> None:
    app.jinja_env.globals.update(
        csrf_token=csrf_token,
        features=enabled_features(settings),  # what the pages may link to
        nav_account=nav_account,
        password_min_length=settings.password_min_length,
    )
    app.jinja_env.filters["datetime"] = format_datetime
