"""Cross-origin calls to the API (an allow-list, none by default) and HSTS over https."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import quart_cors
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import ConfigError, create_app
from authapp.models.users import User
from tests.conftest import PASSWORD, settings_for

MakeUser = Callable[..., Awaitable[User]]
APP_ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Origin": APP_ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


async def test_by_default_no_origin_may_call_the_api(client: Client) -> None:
    preflight = await client.options("/api/auth/login", headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = await client.get("/api/me", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 401
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


async def test_an_answer_without_origin_varies_on_origin_once(client: Client) -> None:
    """Such answers skip quart-cors (see cross_origin_headers): they still say that another
    origin would get another answer, to any cache on the way."""
    me = await client.get("/api/me")
    assert me.status_code == 401
    assert me.headers.getlist("Vary") == ["Origin"]
    assert "Access-Control-Allow-Origin" not in me.headers
    login = await client.post("/api/auth/login", json={"email": "a@example.com", "password": "x"})
    assert [name.strip() for name in ",".join(login.headers.getlist("Vary")).split(",")].count(
        "Origin"
    ) == 1


def test_quart_cors_still_answers_through_its_after_request_hook() -> None:
    # The API calls quart-cors's private hook itself (only for requests with an Origin).
    parameters = inspect.signature(quart_cors._after_request).parameters
    assert next(iter(parameters)) == "response"
    assert all(p.kind is p.KEYWORD_ONLY for p in list(parameters.values())[1:])
    assert "_after_request" in inspect.getsource(quart_cors.cors)


@pytest.mark.settings(CORS_ORIGINS=f"{APP_ORIGIN}, https://admin.example.com")
async def test_a_listed_origin_may_call_the_api_with_credentials(
    client: Client, make_user: MakeUser
) -> None:
    await make_user()
    preflight = await client.options("/api/auth/login", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"].lower() == "content-type"
    assert preflight.headers["Access-Control-Max-Age"] == "600"

    login = await client.post(
        "/api/auth/login",
        json={"email": "alice@example.com", "password": PASSWORD},
        headers={"Origin": APP_ORIGIN},
    )
    assert login.status_code == 200
    assert login.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert login.headers["Access-Control-Allow-Credentials"] == "true"
    me = await client.get("/api/me", headers={"Origin": APP_ORIGIN})
    assert me.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    # Errors carry it too, and expose the headers a program needs.
    invalid = await client.patch("/api/me", json={}, headers={"Origin": APP_ORIGIN})
    assert invalid.status_code == 400
    assert invalid.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "retry-after" in invalid.headers["Access-Control-Expose-Headers"].lower()


@pytest.mark.settings(CORS_ORIGINS=APP_ORIGIN)
@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example.com",  # another scheme is another origin
        "https://app.example.com.evil.example",
        "https://sub.app.example.com",
        "null",
    ],
)
async def test_other_origins_get_no_access(client: Client, origin: str) -> None:
    preflight = await client.options("/api/auth/login", headers={**PREFLIGHT, "Origin": origin})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = await client.get("/api/me", headers={"Origin": origin})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.settings(CORS_ORIGINS=APP_ORIGIN)
async def test_pages_never_answer_cross_origin(client: Client) -> None:
    response = await client.get("/auth/login", headers={"Origin": APP_ORIGIN})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.settings(CORS_ORIGINS=APP_ORIGIN, LOGIN_RATE_LIMIT_IP="2/minute")
async def test_a_preflight_spends_no_budget(client: Client) -> None:
    for _ in range(5):
        assert (await client.options("/api/auth/login", headers=PREFLIGHT)).status_code == 200
    statuses = [
        (
            await client.post(
                "/api/auth/login", json={"email": "x@example.com", "password": "wrong password"}
            )
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]


@pytest.mark.parametrize(
    "origins", ["*", "https://app.example.com/", "app.example.com", "https://*.example.com"]
)
def test_cors_origins_must_be_plain_origins(
    database_url: str, tmp_path: Path, origins: str
) -> None:
    with pytest.raises(ConfigError, match="AUTHAPP_CORS_ORIGINS"):
        create_app(settings_for(database_url, tmp_path, CORS_ORIGINS=origins))


async def test_hsts_only_over_https(client: Client) -> None:
    secure = await client.get("/auth/login", scheme="https")
    assert secure.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"
    api = await client.get("/api/me", scheme="https")
    assert "Strict-Transport-Security" in api.headers
    plain = await client.get("/auth/login")
    assert "Strict-Transport-Security" not in plain.headers


@pytest.mark.settings(HSTS_MAX_AGE=0)
async def test_hsts_can_be_left_out(client: Client) -> None:
    response = await client.get("/auth/login", scheme="https")
    assert "Strict-Transport-Security" not in response.headers


@pytest.mark.settings(TRUSTED_PROXY_HOPS=1)
async def test_hsts_behind_a_trusted_proxy_that_terminated_tls(app: Quart) -> None:
    response = await app.test_client().get(
        "/auth/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    )
    assert "Strict-Transport-Security" in response.headers
