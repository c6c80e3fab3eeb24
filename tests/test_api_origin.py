"""A browser on another site cannot make the API change anything with our cookie, even where
CORS never asks (a body-less POST is a "simple" request), while programs pass as before."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.conftest import fetch_val
from tests.forms import api_client

CROSS_SITE = [
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://blog.example.com", "Sec-Fetch-Site": "same-site"},  # a sibling subdomain
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},  # a sandboxed frame
    {"Sec-Fetch-Site": "same-site"},  # no Origin, but the browser says where it comes from
]
# (method, path, body): body-less or not, each changes something with a cookie alone.
CHANGES: list[tuple[str, str, Any]] = [
    ("POST", "/api/auth/logout", None),
    ("POST", "/api/sessions/revoke-others", None),
    ("POST", "/api/sessions/revoke-all", None),
    ("PATCH", "/api/me", {"display_name": "Mallory"}),
]


async def live_sessions(app: Quart) -> int:
    return int(await fetch_val(app, "SELECT count(*) FROM sessions WHERE revoked_at IS NULL"))


@pytest.mark.parametrize("headers", CROSS_SITE)
@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
async def test_a_cross_site_call_changes_nothing(
    signed_in: Client, app: Quart, headers: dict[str, str], method: str, path: str, body: Any
) -> None:
    await api_client(app)  # a second session, which a forged revoke-others would end
    response = await signed_in.open(path, method=method, json=body, headers=headers)
    assert response.status_code == 400
    error = await response.get_json()
    assert (error["code"], error["message"]) == (
        "CSRF_FAILED",
        "This request came from another site.",
    )
    assert await live_sessions(app) == 2
    assert await fetch_val(app, "SELECT display_name FROM users") == "Alice"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, scripts: no browser headers at all
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},  # our own pages
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
async def test_our_own_pages_and_programs_pass(
    signed_in: Client, app: Quart, headers: dict[str, str]
) -> None:
    response = await signed_in.post("/api/sessions/revoke-others", headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)


@pytest.mark.settings(CORS_ORIGINS="https://app.example.com")
async def test_an_allowed_origin_passes(signed_in: Client) -> None:
    headers = {"Origin": "https://app.example.com", "Sec-Fetch-Site": "same-site"}
    response = await signed_in.patch("/api/me", json={"display_name": "Ada"}, headers=headers)
    assert response.status_code == 200


async def test_a_bearer_token_carries_no_ambient_authority(signed_in: Client, app: Quart) -> None:
    created = await signed_in.post(
        "/api/tokens", json={"name": "script", "scopes": ["profile:write"]}
    )
    token = (await created.get_json())["token"]
    response = await app.test_client().patch(
        "/api/me",
        json={"display_name": "Ada"},
        headers={"Authorization": f"Bearer {token}", **CROSS_SITE[0]},
    )
    assert response.status_code == 200


async def test_reading_is_never_refused(signed_in: Client) -> None:
    response = await signed_in.get("/api/me", headers=CROSS_SITE[0])
    assert response.status_code == 200  # and without CORS the other site cannot read it
    assert "Access-Control-Allow-Origin" not in response.headers
