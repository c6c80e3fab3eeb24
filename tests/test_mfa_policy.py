"""AUTHAPP_MFA_REQUIRED walked over the whole app: until an account has a second factor, its
sessions and tokens reach only enrolment; and what a wrong password tells about an account with
a second factor (nothing)."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from authapp import create_app
from authapp.models.users import User
from authapp.web.enrolment import is_enrolment_allowed
from authapp.web.guards import GUARD_ATTRIBUTE
from tests.conftest import PASSWORD, Clock, settings_for
from tests.test_mfa import enrol, mid_step

MakeUser = Callable[..., Awaitable[User]]
REQUIRED = pytest.mark.settings(MFA_REQUIRED="true", RATE_LIMIT_ENABLED="false")
# What an account without its second factor may still do: set one up, prove who it is for
# that, read which it has, sign out.
ENROLMENT = {
    "api.start_totp",
    "api.confirm_totp",
    "api.mfa_status",
    "api.regenerate_recovery_codes",
    "api.disable_totp",
    "api.passkey_registration_options",
    "api.add_passkey",
    "api.list_passkeys",
    "api.rename_passkey",
    "api.remove_passkey",
    "api.logout",
    "api.reauth",
}


def api_routes(app: Quart) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) of every signed-in API route, path arguments filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if not rule.rule.startswith("/api/") or getattr(view, GUARD_ATTRIBUTE, None) is None:
            continue
        path = re.sub(r"<uuid:[^>]+>", "00000000-0000-4000-8000-000000000000", rule.rule)
        path = re.sub(r"<[^>]+>", "x", path)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, path))
    return routes


def test_the_enrolment_routes_are_exactly_these(app: Quart) -> None:
    """A new route is never reachable without a second factor by accident: the marked set
    is this list, and growing it is a decision."""
    marked = {
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint.startswith("api.") and is_enrolment_allowed(view)
    }
    assert marked == ENROLMENT


@REQUIRED
async def test_a_session_without_a_second_factor_reaches_only_enrolment(
    app: Quart, signed_in: Client, clock: Clock
) -> None:
    refused = []
    for endpoint, method, path in api_routes(app):
        if endpoint in ENROLMENT:
            continue
        response = await signed_in.open(path, method=method, json={})
        body = await response.get_json()
        if response.status_code != 403 or body["code"] != "MFA_ENROLLMENT_REQUIRED":
            refused.append((endpoint, method, response.status_code, body))
    assert refused == []
    assert (await signed_in.get("/api/me/mfa")).status_code == 200
    # Once it has one, everything opens.
    mid_step(clock)
    await enrol(signed_in, clock)
    assert (await signed_in.get("/api/me")).status_code == 200
    assert (await signed_in.get("/api/sessions")).status_code == 200


@REQUIRED
async def test_sign_out_stays_open(app: Quart, signed_in: Client) -> None:
    assert (await signed_in.post("/api/auth/logout")).status_code == 204
    assert (await signed_in.get("/api/me")).status_code == 401


@REQUIRED
async def test_the_docs_the_spec_and_the_probes_stay_open(app: Quart, signed_in: Client) -> None:
    for path in ("/openapi.json", "/docs", "/healthz", "/static/style.css"):
        response = await signed_in.get(path)
        assert response.status_code == 200, path


@REQUIRED
async def test_the_policy_reaches_pages(app: Quart, signed_in: Client) -> None:
    response = await signed_in.get("/account", headers={"Accept": "text/html"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/account/security")


async def test_a_token_of_an_account_without_a_second_factor_is_refused(
    app: Quart, database_url: str, tmp_path: Path, signed_in: Client
) -> None:
    made = await signed_in.post("/api/tokens", json={"name": "ci", "scopes": ["profile:read"]})
    assert made.status_code == 201
    bearer = {"Authorization": f"Bearer {(await made.get_json())['token']}"}
    assert (await signed_in.get("/api/me", headers=bearer)).status_code == 200
    # The same database served by an app that requires a second factor.
    strict = create_app(settings_for(database_url, tmp_path, MFA_REQUIRED="true"))
    async with strict.test_app():
        client = strict.test_client()
        refused = await client.get("/api/me", headers=bearer)
        assert refused.status_code == 403
        assert (await refused.get_json())["code"] == "MFA_ENROLLMENT_REQUIRED"
        assert (await client.get("/api/me/mfa", headers=bearer)).status_code == 200


async def test_without_the_policy_nothing_is_refused(signed_in: Client) -> None:
    assert (await signed_in.get("/api/me")).status_code == 200


# --- what a wrong password tells -----------------------------------------------------------


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
async def test_a_wrong_password_answers_alike_with_or_without_a_second_factor(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    """Same status, body and headers, and the same time (loosely: the same work, one
    argon2 verification and one statement that also reads whether a second factor exists)."""
    await make_user("plain@example.com")
    await make_user("guarded@example.com")
    owner = app.test_client()
    login = {"email": "guarded@example.com", "password": PASSWORD}
    assert (await owner.post("/api/auth/login", json=login)).status_code == 200
    mid_step(clock)
    await enrol(owner, clock)

    answers: dict[str, list[Any]] = {"plain@example.com": [], "guarded@example.com": []}
    timings: dict[str, list[float]] = {email: [] for email in answers}
    for _ in range(8):
        for email in answers:
            client = app.test_client()
            started = time.perf_counter()
            response = await client.post(
                "/api/auth/login", json={"email": email, "password": "a wrong guess 123"}
            )
            timings[email].append(time.perf_counter() - started)
            headers = sorted(
                (name, value)
                for name, value in response.headers.items()
                if name.lower() not in {"date", "x-request-id", "content-length"}
            )
            answers[email].append((response.status_code, await response.get_json(), headers))
    plain, guarded = answers.values()
    assert plain[0][0] == 401
    assert plain == guarded
    ratio = statistics.median(timings["guarded@example.com"]) / statistics.median(
        timings["plain@example.com"]
    )
    assert 0.5 < ratio < 2, timings


async def test_the_right_password_of_a_guarded_account_sets_no_session(
    app: Quart, signed_in: Client, clock: Clock
) -> None:
    mid_step(clock)
    secret, _ = await enrol(signed_in, clock)
    client = app.test_client()
    response = await client.post(
        "/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 202
    assert (await client.get("/api/me")).status_code == 401
    assert pyotp.TOTP(secret).now()  # the secret stays the caller's to use
