"""What every command of the `authapp` CLI shares: the app factory --app names, a started app to
work in, a refusal in one line, and where mailed links point."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar, cast

import click
from quart import Quart

from ..config import Settings, parse_bind
from ..errors import APIError
from ..state import AppState

DEFAULT_FACTORY = "authapp:create_app"
_factory = DEFAULT_FACTORY  # --app, for the commands


def use_factory(factory: str) -> None:
    global _factory
    _factory = factory


def make_app() -> Quart:
    """An app from the factory --app names (module:function, called with no arguments)."""
    module_name, _, function = _factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function or "create_app")
    except (ImportError, AttributeError) as error:
        fail(f"--app {_factory}: {error}")
    return cast(Quart, factory())


T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"authapp: error: {message}", err=True)
    sys.exit(code)


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


def echo_table(rows: Sequence[tuple[str, ...]]) -> None:
    """Rows (the first the heading) in columns as wide as their widest cell."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())
