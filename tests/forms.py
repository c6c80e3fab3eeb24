"""Helpers for driving the HTML forms through the test client, as a browser would."""

from __future__ import annotations

import re
from typing import Any

from quart.typing import TestClientProtocol as Client

from tests.conftest import PASSWORD

HTML = {"Accept": "text/html"}


async def page_text(response: Any) -> str:
    return str(await response.get_data(as_text=True))


async def csrf_from(client: Client, path: str = "/auth/login") -> str:
    """The CSRF token of the first form on a page, as the browser would send it back."""
    page = await client.get(path, headers=HTML)
    match = re.search(r'name="csrf_token" value="([^"]+)"', await page_text(page))
    assert match is not None, f"no form on {path} ({page.status_code})"
    return match[1]


async def post_form(client: Client, path: str, form: dict[str, str], page: str = "") -> Any:
    """Post a form with a fresh token from `page` (by default the page at `path`)."""
    token = await csrf_from(client, page or path)
    return await client.post(path, form={"csrf_token": token, **form}, headers=HTML)


async def form_login(client: Client, token: str, **fields: str) -> Any:
    form = {"email": "alice@example.com", "password": PASSWORD, "csrf_token": token, **fields}
    return await client.post("/auth/login", form=form, headers=HTML)


def field_error(html: str, field: str) -> str | None:
    """The error shown under a field, checking it is tied to the field for screen readers."""
    match = re.search(rf'<small id="{field}-error" class="field-error">([^<]*)</small>', html)
    if match is None:
        return None
    assert re.search(rf'aria-describedby="[^"]*\b{field}-error"', html), field
    return match[1]


def flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash flash-\w+" role="\w+">([^<]*)</p>', html)


def without_tokens(html: str) -> str:
    """A page without its CSRF tokens (they differ per render), to compare two pages whole."""
    return "\n".join(line for line in html.splitlines() if "csrf_token" not in line)
