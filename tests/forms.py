"""Helpers for driving the HTML forms through the test client, as a browser would."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.conftest import PASSWORD, fetch_val
from tests.mailbox import drain

HTML = {"Accept": "text/html"}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


async def page_text(response: Any) -> str:
    return str(await response.get_data(as_text=True))


async def csrf_from(client: Client, path: str = "/auth/login") -> str:
    """The CSRF token of the first form on a page, as the browser would send it back."""
    page = await client.get(path, headers=HTML)
    match = re.search(r'name="csrf_token" value="([^"]+)"', await page_text(page))
    assert match is not None, f"no form on {path} ({page.status_code})"
    return match[1]


async def post_form(
    client: Client, path: str, form: Mapping[str, str | list[str]], page: str = ""
) -> Any:
    """Post a form with a fresh token from `page` (by default the page at `path`); a list is
    sent as one field many times, as ticked checkboxes are."""
    token = await csrf_from(client, page or path)
    body = urlencode({"csrf_token": token, **form}, doseq=True)
    headers = {**HTML, "Content-Type": "application/x-www-form-urlencoded"}
    return await client.post(path, data=body, headers=headers)


async def form_login(client: Client, token: str, **fields: str) -> Any:
    form = {"email": "alice@example.com", "password": PASSWORD, "csrf_token": token, **fields}
    return await client.post("/auth/login", form=form, headers=HTML)


async def sign_in_from(app: Quart, address: str = "192.0.2.10", user_agent: str = "") -> Client:
    """A browser at `address` (with a User-Agent, if given) that signs in with the form."""
    client = app.test_client()
    scope = {"client": (address, 40000)}
    headers = {**HTML, "User-Agent": user_agent} if user_agent else HTML
    page = await client.get("/auth/login", headers=headers, scope_base=scope)
    token = (await page_text(page)).split('name="csrf_token" value="')[1].split('"')[0]
    form = {"email": "alice@example.com", "password": PASSWORD, "csrf_token": token}
    response = await client.post("/auth/login", form=form, headers=headers, scope_base=scope)
    assert response.status_code == 302
    return client


async def api_client(
    app: Quart,
    email: str = "alice@example.com",
    user_agent: str = FIREFOX,
    *,
    remember: bool = False,
    address: str | None = None,
) -> Client:
    """Another device, signed in through the JSON API (from `address`, if given)."""
    client = app.test_client()
    login = {"email": email, "password": PASSWORD, "remember": remember}
    where = {"scope_base": {"client": (address, 40000)}} if address else {}
    response = await client.post(
        "/api/auth/login", json=login, headers={"User-Agent": user_agent}, **where
    )
    assert response.status_code == 200
    return client


async def snapshot(app: Quart) -> tuple[Any, ...]:
    """Everything a form could change (once the work it does after answering is done)."""
    await drain(app)
    return (
        await fetch_val(app, "SELECT count(*) FROM email_tokens"),
        await fetch_val(app, "SELECT count(*) FROM users"),
        await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL"),
        await fetch_val(app, "SELECT string_agg(display_name || password_hash, ',') FROM users"),
        await fetch_val(app, "SELECT count(*) FROM api_tokens"),
        await fetch_val(app, "SELECT max(authenticated_at) FROM sessions"),
        await fetch_val(app, "SELECT count(*) FROM mfa_totp"),
    )


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


DEVICE_COOKIE = "__Host-authapp_device"


def forget_device(client: Client) -> Client:
    """Drop the device cookie a sign-in gave this client: from now on it is an untrusted
    client of the account (a stranger's, or the owner's on a new device)."""
    client.delete_cookie("localhost", DEVICE_COOKIE)
    assert not any(cookie.name == DEVICE_COOKIE for cookie in client.cookie_jar or [])
    return client


def device_cookie(client: Client) -> str | None:
    return next(
        (cookie.value for cookie in client.cookie_jar or [] if cookie.name == DEVICE_COOKIE), None
    )
