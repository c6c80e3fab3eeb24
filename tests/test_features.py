"""Feature switches: AUTHAPP_REGISTRATION, AUTHAPP_API_TOKENS and AUTHAPP_PAGES, each in both
states: its routes registered or absent (the router's 404, with 405 elsewhere as before), its
pages and their links there or not, /openapi.json listing exactly the operations and security
schemes that exist, and bearer tokens honoured or never looked up."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypercorn.config import Config as HypercornConfig
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from authapp.cli import announce
from authapp.config import ConfigError, load_settings
from tests.conftest import PASSWORD, fetch_val, settings_for
from tests.forms import HTML, page_text
from tests.mailbox import Mailbox, SmtpServer
from tests.servers import BIN, clean_env

# Every operation of /openapi.json with every switch on (tests/test_docs.py checks the paths).
ALL_OPERATIONS = frozenset({
    ("/api/auth/register", "post"), ("/api/auth/login", "post"), ("/api/auth/logout", "post"),
    ("/api/auth/verify-email", "post"), ("/api/auth/verify-email/resend", "post"),
    ("/api/auth/forgot-password", "post"), ("/api/auth/reset-password", "post"),
    ("/api/auth/confirm-email", "post"), ("/api/auth/reauth", "post"), ("/api/me", "get"),
    ("/api/me", "patch"), ("/api/me", "delete"), ("/api/me/password", "post"),
    ("/api/me/email", "post"), ("/api/me/events", "get"), ("/api/sessions", "get"),
    ("/api/sessions/{session_id}", "delete"), ("/api/sessions/revoke-others", "post"),
    ("/api/sessions/revoke-all", "post"), ("/api/tokens", "get"), ("/api/tokens", "post"),
    ("/api/tokens/{token_id}", "delete"), ("/api/auth/mfa", "post"), ("/api/me/mfa", "get"),
    ("/api/me/mfa/totp", "post"), ("/api/me/mfa/totp/confirm", "post"),
    ("/api/me/mfa/totp", "delete"), ("/api/me/mfa/recovery-codes", "post"),
    ("/api/admin/users", "get"), ("/api/admin/users/{user_id}", "get"),
    ("/api/admin/roles", "get"), ("/api/admin/users/{user_id}/deactivate", "post"),
    ("/api/admin/users/{user_id}/activate", "post"),
    ("/api/admin/users/{user_id}/sessions/revoke-all", "post"),
    ("/api/admin/users/{user_id}/reset-access", "post"),
    ("/api/admin/users/{user_id}/send-password-reset", "post"),
    ("/api/admin/users/{user_id}/roles", "put"), ("/api/admin/users/{user_id}", "delete"),
    ("/api/me/passkeys/options", "post"), ("/api/me/passkeys", "post"),
    ("/api/me/passkeys", "get"), ("/api/me/passkeys/{passkey_id}", "patch"),
    ("/api/me/passkeys/{passkey_id}", "delete"), ("/api/auth/passkey/options", "post"),
    ("/api/auth/passkey", "post"),
})  # fmt: skip
REGISTRATION_OPERATIONS = {("/api/auth/register", "post")}
TOKEN_OPERATIONS = {
    ("/api/tokens", "get"), ("/api/tokens", "post"), ("/api/tokens/{token_id}", "delete"),
}  # fmt: skip
REGISTRATION_ENDPOINTS = {"api.register", "auth.register", "auth.register_page"}
TOKEN_ENDPOINTS = {"api.create_token", "api.list_tokens", "api.revoke_token",
                   "protected.api_tokens", "protected.create_token",
                   "protected.revoke_token"}  # fmt: skip
FRONT_END = "https://app.example.com"  # a JSON-only deployment's front end
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


def both(name: str, on: Any, off: Any, **others: Any) -> pytest.MarkDecorator:
    """Run the test with the switch on, then off (`on` says which), with `others` set too."""
    return pytest.mark.parametrize(
        "on",
        [
            pytest.param(True, marks=pytest.mark.settings(**{name: on}, **others), id=f"{on}"),
            pytest.param(False, marks=pytest.mark.settings(**{name: off}, **others), id=f"{off}"),
        ],
    )


def endpoints(app: Quart) -> set[str]:
    return {rule.endpoint for rule in app.url_map.iter_rules()}


async def spec_of(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = await response.get_json()
    return spec


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, by_method in spec["paths"].items() for method in by_method}


def schemes_listed(spec: dict[str, Any]) -> set[str]:
    """Every security scheme that some operation lists."""
    return {
        scheme
        for by_method in spec["paths"].values()
        for operation in by_method.values()
        for requirement in operation.get("security", [])
        for scheme in requirement
    }


async def error_code(response: Any) -> str:
    assert response.content_type == "application/json", response.content_type
    code: str = (await response.get_json())["code"]
    return code


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AUTHAPP_REGISTRATION", "invite", "AUTHAPP_REGISTRATION must be open or closed"),
        ("AUTHAPP_REGISTRATION", "Closed", "AUTHAPP_REGISTRATION must be open or closed"),
        ("AUTHAPP_API_TOKENS", "maybe", "AUTHAPP_API_TOKENS: 'maybe' is not a boolean"),
        ("AUTHAPP_PAGES", "json", "AUTHAPP_PAGES: 'json' is not a boolean"),
    ],
)
def test_a_wrong_switch_is_refused_in_one_line(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"AUTHAPP_ENV": "testing", name: value})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_every_capability_is_on_by_default() -> None:
    settings = load_settings(environ={"AUTHAPP_ENV": "testing"})
    assert (settings.registration, settings.api_tokens, settings.pages) == ("open", True, True)


# --- AUTHAPP_REGISTRATION --------------------------------------------------------------------


@both("REGISTRATION", "open", "closed")
async def test_registration_open_or_closed(app: Quart, on: bool) -> None:
    visitor = app.test_client()  # never signed in: the sign-up pages would send it home
    register_page = await visitor.get("/auth/register", headers=HTML)
    assert register_page.status_code == (200 if on else 404)
    posted = await visitor.post("/auth/register", form={}, headers=HTML)
    assert posted.status_code == (400 if on else 404)  # open: the form's missing CSRF token
    login_page = await page_text(await visitor.get("/auth/login", headers=HTML))
    assert ('href="/auth/register"' in login_page) == on  # the nav's link and the page's
    assert ("Create account" in login_page, "No account yet?" in login_page) == (on, on)

    body = {"email": "new@example.com", "password": PASSWORD}
    registered = await app.test_client().post("/api/auth/register", json=body)
    assert registered.status_code == (201 if on else 404)
    if not on:
        assert await error_code(registered) == "NOT_FOUND"
    # The router's answers: 404 for every method of a path that is gone, 405 elsewhere as before.
    other_method = await visitor.get("/api/auth/register")
    assert other_method.status_code == (405 if on else 404)
    wrong_method = await visitor.get("/api/auth/login")
    assert wrong_method.status_code == 405
    assert set(wrong_method.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}

    assert (REGISTRATION_ENDPOINTS & endpoints(app)) == (REGISTRATION_ENDPOINTS if on else set())
    spec = await spec_of(visitor)
    assert operations(spec) == ALL_OPERATIONS - (set() if on else REGISTRATION_OPERATIONS)
    (auth_tag,) = [tag for tag in spec["tags"] if tag["name"] == "auth"]
    assert auth_tag["description"] == ("Register, sign in" if on else "Sign in") + " and sign out."
    assert spec["info"]["description"].startswith(
        "Sign-up, sign-in, revocable" if on else "Sign-in, revocable"
    )


def create_with_cli(env: dict[str, str], email: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "authapp", "users", "create", "--email", email, "--verified"],
        env=env, input=PASSWORD, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.settings(REGISTRATION="closed")
async def test_with_registration_closed_the_cli_still_creates_users(
    app: Quart, database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    env = clean_env(
        AUTHAPP_ENV="testing",
        AUTHAPP_DATABASE_URL=database_url,
        AUTHAPP_INSTANCE_PATH=str(tmp_path / "instance"),
        AUTHAPP_SMTP_URL=smtp_server.url,
        AUTHAPP_REGISTRATION="closed",
    )
    created = create_with_cli(env, "ops@example.com")
    assert created.returncode == 0, created.stderr
    login = await app.test_client().post(
        "/api/auth/login", json={"email": "ops@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200


# --- AUTHAPP_API_TOKENS ----------------------------------------------------------------------


@both("API_TOKENS", True, False)
async def test_api_tokens_on_or_off(app: Quart, signed_in: Client, on: bool) -> None:
    listed = await signed_in.get("/api/tokens")
    assert listed.status_code == (200 if on else 404)
    created = await signed_in.post("/api/tokens", json={"name": "x", "scopes": ["profile:read"]})
    assert created.status_code == (201 if on else 404)
    revoked = await signed_in.delete(f"/api/tokens/{uuid4()}")
    assert await error_code(revoked) == ("TOKEN_NOT_FOUND" if on else "NOT_FOUND")
    wrong_method = await signed_in.put("/api/me")
    assert (wrong_method.status_code, await error_code(wrong_method)) == (405, "METHOD_NOT_ALLOWED")

    # The pages: the tokens page and the account page's link to it.
    tokens_page = await signed_in.get("/account/tokens", headers=HTML)
    assert tokens_page.status_code == (200 if on else 404)
    posted = await signed_in.post("/account/tokens", form={}, headers=HTML)
    assert posted.status_code == (400 if on else 404)  # on: the form's missing CSRF token
    account_page = await page_text(await signed_in.get("/account", headers=HTML))
    assert ('href="/account/tokens"' in account_page, "API tokens" in account_page) == (on, on)

    assert (TOKEN_ENDPOINTS & endpoints(app)) == (TOKEN_ENDPOINTS if on else set())
    spec = await spec_of(signed_in)
    assert operations(spec) == ALL_OPERATIONS - (set() if on else TOKEN_OPERATIONS)
    expected_schemes = {"sessionCookie", "bearerToken"} if on else {"sessionCookie"}
    assert set(spec["components"]["securitySchemes"]) == expected_schemes
    assert schemes_listed(spec) == expected_schemes
    assert ("tokens" in {tag["name"] for tag in spec["tags"]}) == on
    description = spec["info"]["description"]
    assert ("Scopes: profile:read" in description, "bearer" in description.lower()) == (on, on)
    assert ("token" in description.lower()) == on


async def test_with_tokens_off_a_bearer_token_is_never_looked_up(
    app: Quart, signed_in: Client, database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    """A token made while tokens were on, presented to an app with them off (as after an
    operator turns them off), gets exactly the answer of no credential at all."""
    created = await signed_in.post("/api/tokens", json={"name": "x", "scopes": ["profile:read"]})
    bearer = {"Authorization": f"Bearer {(await created.get_json())['token']}"}
    off = create_app(
        settings_for(database_url, tmp_path, SMTP_URL=smtp_server.url, API_TOKENS=False)
    )
    async with off.test_app():
        anonymous = await off.test_client().get("/api/me")
        with_token = await off.test_client().get("/api/me", headers=bearer)
        with_junk = await off.test_client().get("/api/me", headers={"Authorization": "Bearer x"})
    for response in (with_token, with_junk):
        assert response.status_code == anonymous.status_code == 401
        assert await response.get_json() == await anonymous.get_json()
        assert response.headers.get("WWW-Authenticate") == anonymous.headers.get("WWW-Authenticate")
    # Not even looked up: a lookup marks the token used, as the app with tokens on does.
    assert await fetch_val(app, "SELECT last_used_at FROM api_tokens") is None
    assert (await app.test_client().get("/api/me", headers=bearer)).status_code == 200
    assert await fetch_val(app, "SELECT last_used_at FROM api_tokens") is not None


@both("API_TOKENS", True, False)
@pytest.mark.parametrize("authorization", ["Bearer x", "Basic YWxpY2U6eA=="])
async def test_only_a_bearer_token_the_app_takes_skips_the_origin_check(
    app: Quart, signed_in: Client, on: bool, authorization: str
) -> None:
    """A cross-site call with an Authorization header the app does not answer by (any but a
    bearer token, or a bearer token with tokens off) is the cookie's, so it is checked."""
    headers = {"Authorization": authorization, **CROSS_SITE}
    response = await signed_in.post("/api/sessions/revoke-all", headers=headers)
    taken = on and authorization.startswith("Bearer")
    assert (response.status_code, await error_code(response)) == (
        (401, "UNAUTHENTICATED") if taken else (400, "CSRF_FAILED")
    )
    assert (await signed_in.get("/api/me")).status_code == 200  # the session lives on


# --- AUTHAPP_PAGES -----------------------------------------------------------------------------


@both("PAGES", True, False, BASE_URL=FRONT_END)
async def test_pages_on_or_off(app: Quart, client: Client, mailbox: Mailbox, on: bool) -> None:
    blueprints = {endpoint.split(".")[0] for endpoint in endpoints(app)}
    pages = {"auth", "second_step", "protected", "security"}
    assert blueprints & pages == (pages if on else set())
    assert {"api", "docs", "health", "openapi", "static"} <= blueprints

    home = await client.get("/", headers=HTML)
    assert home.status_code == (302 if on else 404)
    for path in ("/auth/login", "/account", "/auth/verify-email/resend", "/account/security"):
        page = await client.get(path, headers=HTML)
        assert page.status_code == (200 if path.startswith("/auth") else 302) if on else 404
    # Without pages there are no error pages: a browser gets JSON too.
    unknown = await client.get("/nowhere", headers=HTML)
    assert unknown.status_code == 404
    assert unknown.content_type == ("text/html; charset=utf-8" if on else "application/json")
    if not on:
        assert await error_code(home) == "NOT_FOUND"
    # The API's docs stay; so do the 405s and the health checks.
    for path in ("/docs", "/docs/assets/swagger-ui.css", "/static/docs.js", "/healthz"):
        assert (await client.get(path)).status_code == 200, path
    wrong_method = await client.get("/api/auth/login", headers=HTML)
    assert (wrong_method.status_code, await error_code(wrong_method)) == (405, "METHOD_NOT_ALLOWED")
    assert operations(await spec_of(client)) == ALL_OPERATIONS  # the pages were never in it

    # Mailed links keep their paths under AUTHAPP_BASE_URL; without pages, the front end there
    # serves them by calling the API with the link's token.
    body = {"email": "new@example.com", "password": PASSWORD}
    assert (await client.post("/api/auth/register", json=body)).status_code == 201
    (message,) = await mailbox.wait_for(1, to="new@example.com")
    link = mailbox.link(message, "/auth/verify-email/")
    assert link.startswith(f"{FRONT_END}/auth/verify-email/")
    verify = await client.post("/api/auth/verify-email", json={"token": link.rsplit("/", 1)[1]})
    assert verify.status_code == 204


@pytest.mark.parametrize("pages", [True, False])
def test_without_pages_development_has_no_outbox_page(
    database_url: str, tmp_path: Path, pages: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(database_url, tmp_path, ENV="development", SMTP_URL=None, PAGES=pages)
    assert ("dev.outbox" in endpoints(create_app(settings))) == pages
    config = HypercornConfig()
    config.bind = ["127.0.0.1:8000"]
    with caplog.at_level(logging.INFO, logger="authapp.cli"):
        announce(load_settings(settings, environ={}), config, embedded=False)
    (mail_line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("mail:")]
    assert ("http://127.0.0.1:8000/dev/outbox" in mail_line) == pages  # no link to a 404


@pytest.mark.settings(REGISTRATION="closed", API_TOKENS=False, PAGES=False)
async def test_every_switch_off_at_once(app: Quart, client: Client) -> None:
    assert {endpoint.split(".")[0] for endpoint in endpoints(app)} == {
        "api", "docs", "health", "openapi", "static",
    }  # fmt: skip
    assert not (REGISTRATION_ENDPOINTS | TOKEN_ENDPOINTS) & endpoints(app)
    spec = await spec_of(client)
    assert operations(spec) == ALL_OPERATIONS - REGISTRATION_OPERATIONS - TOKEN_OPERATIONS
    assert schemes_listed(spec) == set(spec["components"]["securitySchemes"]) == {"sessionCookie"}
    assert spec["info"]["description"].startswith("Sign-in and revocable sessions. Errors")
