"""Whole-app rules, walking app.url_map: what needs a session, what is throttled."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_rate_limiter import (
    QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE,
    QUART_RATE_LIMITER_LIMITS_ATTRIBUTE,
)

from authapp.models.users import User
from tests.conftest import Clock
from tests.forms import HTML, csrf_from, form_login

MakeUser = Callable[..., Awaitable[User]]

# Routes reachable without a session, by endpoint; everything else in api/protected needs one.
PUBLIC = {"api.register", "api.login", "api.logout", "api.verify_email",
          "api.resend_verification", "api.forgot_password", "api.reset_password",
          "api.confirm_email_change", "api.second_factor", "api.passkey_sign_in_options",
          "api.passkey_sign_in"}  # fmt: skip
# Page forms that need a sign-in within AUTHAPP_FRESHNESS (as their JSON routes do).
NEEDS_FRESH = {"protected.change_password", "protected.change_email", "protected.delete_account",
               "protected.revoke_other_sessions", "protected.create_token",
               "security.start_setup", "security.confirm_setup", "security.regenerate_codes",
               "security.disable", "security.rename_passkey",
               "security.remove_passkey"}  # fmt: skip
# The blueprints of pages behind a session, and of every page's forms.
SIGNED_IN_PAGES = {"protected", "security", "admin"}
PAGES = {"auth", "second_step", *SIGNED_IN_PAGES}
# Mutating routes that need no limit: sign-out only ends the caller's own session.
EXEMPT_FROM_LIMITS = {"api.logout", "auth.logout"}


def _path(rule_text: str, word: str = "x") -> str:
    # Any UUID (routes find nothing by it), else any word.
    rule_text = re.sub(r"<uuid:[^>]+>", "00000000-0000-4000-8000-000000000000", rule_text)
    return re.sub(r"<[^>]+>", word, rule_text)


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")  # many anonymous posts from one address
async def test_every_api_and_protected_route_needs_a_session(app: Quart, client: Client) -> None:
    token = await csrf_from(client)  # a visitor's own token, so forms get past CSRF to the check
    checked = 0
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".")[0]
        if blueprint not in {"api", *SIGNED_IN_PAGES} or rule.endpoint in PUBLIC:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = await client.open(
                _path(rule.rule),
                method=method,
                headers={"Accept": "application/json"},
                form={"csrf_token": token},
            )
            assert response.status_code == 401, (method, rule.rule)
            assert (await response.get_json())["code"] == "UNAUTHENTICATED"
            checked += 1
    assert checked >= 8  # /api/me (GET, PATCH), /api/me/password, /, /account (and forms), ...


def test_every_mutating_route_is_limited_or_exempt_by_name(app: Quart) -> None:
    for rule in app.url_map.iter_rules():
        if not rule.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            continue
        view = app.view_functions[rule.endpoint]
        limited = bool(getattr(view, QUART_RATE_LIMITER_LIMITS_ATTRIBUTE, []))
        exempt = getattr(view, QUART_RATE_LIMITER_EXEMPT_ATTRIBUTE, False)
        if rule.endpoint in EXEMPT_FROM_LIMITS:
            assert exempt, rule.endpoint
        else:
            assert limited, f"{rule.endpoint} changes state but has no rate limit"


def test_login_and_register_are_limited(app: Quart) -> None:
    for endpoint in ("api.login", "auth.login", "api.register", "auth.register"):
        assert getattr(app.view_functions[endpoint], QUART_RATE_LIMITER_LIMITS_ATTRIBUTE)


async def test_every_form_post_needs_a_csrf_token(app: Quart, make_user: MakeUser) -> None:
    """Every state-changing route of the page blueprints refuses a post without a token,
    from a signed-in visitor (so no redirect to the login page hides the check)."""
    await make_user()
    client = app.test_client()
    assert (await form_login(client, await csrf_from(client))).status_code == 302
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in PAGES or "POST" not in rule.methods:
            continue
        response = await client.post(_path(rule.rule, "x" * 43), form={}, headers=HTML)
        assert response.status_code == 400, rule.rule
        assert "<code>CSRF_FAILED</code>" in await response.get_data(as_text=True), rule.rule
        checked += 1
    assert checked >= 10


@pytest.mark.settings(RATE_LIMIT_ENABLED="false")
async def test_the_sensitive_page_forms_and_only_they_need_a_fresh_session(
    app: Quart, make_user: MakeUser, clock: Clock
) -> None:
    """Posted from a session whose sign-in is older than AUTHAPP_FRESHNESS, exactly these
    forms send the browser to confirm the password first."""
    await make_user()
    client = app.test_client()
    assert (await form_login(client, await csrf_from(client))).status_code == 302
    token = await csrf_from(client, "/")
    clock.advance(minutes=16)
    needs_fresh = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in SIGNED_IN_PAGES or "POST" not in rule.methods:
            continue
        response = await client.post(_path(rule.rule), form={"csrf_token": token}, headers=HTML)
        assert response.status_code in {200, 302, 400}, rule.rule
        if response.headers.get("Location", "").startswith("/auth/reauth?next=/account"):
            needs_fresh.add(rule.endpoint)
    assert needs_fresh == NEEDS_FRESH
