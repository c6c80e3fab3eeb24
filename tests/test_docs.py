"""The OpenAPI spec and the docs page, which must render with no internet."""

from __future__ import annotations

import inspect
import re
from typing import Any

from quart import Quart
from quart.typing import TestClientProtocol as Client


async def test_openapi_describes_the_api(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    assert spec["info"]["title"] == "authapp"
    assert spec["info"]["version"] == "0.1.0"
    assert {tag["name"] for tag in spec["tags"]} == {
        "auth",
        "account",
        "sessions",
        "tokens",
        "admin",
    }
    assert spec["components"]["securitySchemes"] == {
        "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "__Host-authapp_session"},
        "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "authapp_pat_..."},
    }
    paths = spec["paths"]
    assert set(paths) == {
        "/api/auth/register", "/api/auth/login", "/api/auth/logout", "/api/auth/verify-email",
        "/api/auth/verify-email/resend", "/api/auth/forgot-password", "/api/auth/reset-password",
        "/api/auth/confirm-email", "/api/auth/reauth", "/api/me", "/api/me/password",
        "/api/me/email", "/api/sessions", "/api/sessions/{session_id}",
        "/api/sessions/revoke-others", "/api/sessions/revoke-all", "/api/tokens",
        "/api/tokens/{token_id}", "/api/me/events", "/api/auth/mfa", "/api/me/mfa",
        "/api/me/mfa/totp", "/api/me/mfa/totp/confirm", "/api/me/mfa/recovery-codes",
        "/api/admin/users", "/api/admin/users/{user_id}", "/api/admin/roles",
        "/api/admin/users/{user_id}/deactivate", "/api/admin/users/{user_id}/activate",
        "/api/admin/users/{user_id}/sessions/revoke-all",
        "/api/admin/users/{user_id}/reset-access",
        "/api/admin/users/{user_id}/send-password-reset", "/api/admin/users/{user_id}/roles",
        "/api/me/passkeys", "/api/me/passkeys/options", "/api/me/passkeys/{passkey_id}",
        "/api/auth/passkey", "/api/auth/passkey/options",
    }  # fmt: skip
    login = paths["/api/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"]
    assert {"200", "400", "401", "429"} <= set(login["responses"])
    assert "content" not in paths["/api/auth/logout"]["post"]["responses"]["204"]
    user = paths["/api/me"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(user["properties"]) == {
        "id",
        "email",
        "display_name",
        "email_verified",
        "created_at",
    }


# Who may call each signed-in route: a session always; a token only with the scope named.
SESSION = {"sessionCookie": []}
READ = {"sessionCookie": ["users:read"]}
WRITE = {"sessionCookie": ["users:write"]}
SECURITY = {
    ("/api/me", "get"): [SESSION, {"bearerToken": ["profile:read"]}],
    ("/api/me/events", "get"): [SESSION, {"bearerToken": ["profile:read"]}],
    ("/api/me", "patch"): [SESSION, {"bearerToken": ["profile:write"]}],
    ("/api/sessions", "get"): [SESSION, {"bearerToken": ["sessions:read"]}],
    ("/api/sessions/{session_id}", "delete"): [SESSION, {"bearerToken": ["sessions:write"]}],
    ("/api/me", "delete"): [SESSION],
    ("/api/me/password", "post"): [SESSION],
    ("/api/me/email", "post"): [SESSION],
    ("/api/auth/reauth", "post"): [SESSION],
    ("/api/auth/logout", "post"): [SESSION, {}],  # 204 without a session too
    ("/api/sessions/revoke-others", "post"): [SESSION],
    ("/api/sessions/revoke-all", "post"): [SESSION],
    ("/api/tokens", "post"): [SESSION],
    ("/api/tokens", "get"): [SESSION],
    ("/api/tokens/{token_id}", "delete"): [SESSION],
    ("/api/me/mfa", "get"): [SESSION, {"bearerToken": ["profile:read"]}],
    ("/api/me/mfa/totp", "post"): [SESSION],
    ("/api/me/mfa/totp/confirm", "post"): [SESSION],
    ("/api/me/mfa/totp", "delete"): [SESSION],
    ("/api/me/mfa/recovery-codes", "post"): [SESSION],
    # A permission: a session of a user who holds it (OpenAPI 3.1 lets an API key name the
    # roles it needs); a token too for reads, when it also has it as a scope.
    ("/api/admin/users", "get"): [READ, {"bearerToken": ["users:read"]}],
    ("/api/admin/users/{user_id}", "get"): [READ, {"bearerToken": ["users:read"]}],
    ("/api/admin/roles", "get"): [READ, {"bearerToken": ["users:read"]}],
    ("/api/admin/users/{user_id}/deactivate", "post"): [WRITE],
    ("/api/admin/users/{user_id}/activate", "post"): [WRITE],
    ("/api/admin/users/{user_id}/sessions/revoke-all", "post"): [WRITE],
    ("/api/admin/users/{user_id}/reset-access", "post"): [WRITE],
    ("/api/admin/users/{user_id}/send-password-reset", "post"): [WRITE],
    ("/api/admin/users/{user_id}/roles", "put"): [{"sessionCookie": ["roles:write"]}],
    ("/api/admin/users/{user_id}", "delete"): [WRITE],
    ("/api/me/passkeys/options", "post"): [SESSION],
    ("/api/me/passkeys", "post"): [SESSION],
    ("/api/me/passkeys", "get"): [SESSION, {"bearerToken": ["profile:read"]}],
    ("/api/me/passkeys/{passkey_id}", "patch"): [SESSION],
    ("/api/me/passkeys/{passkey_id}", "delete"): [SESSION],
}


async def test_the_spec_says_who_may_call_each_route(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    found = {
        (path, method): operation["security"]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "security" in operation
    }
    assert found == SECURITY


def _openapi_path(rule: str) -> str:
    """`/api/tokens/<uuid:token_id>` as the spec writes it: `/api/tokens/{token_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0 and text.count("`") % 2 == 0


def _faults(operation: dict[str, Any], docstring: str | None) -> list[str]:
    """What is wrong with an operation's summary and description, in words."""
    summary = operation.get("summary", "")
    faults = []
    if not summary.endswith("."):
        faults.append("the summary does not end with a full stop")
    if re.search(r"[.!?]\s", summary):
        faults.append("the summary is more than one sentence")
    if re.search(r",\W*$", summary):
        faults.append("the summary ends with a comma")
    if not _balanced(summary):
        faults.append("the summary leaves a ( or ` open")
    lines = (docstring or "").splitlines()
    if lines[:1] != [summary]:
        faults.append("the summary is not the docstring's first line")
    if lines[1:]:  # PEP 257: a blank line after the summary, then the description
        if lines[1] != "":
            faults.append("the docstring's first sentence runs on to a second line")
        description = operation.get("description", "").strip()
        if not description:
            faults.append("the docstring's rest is not in the description")
        if not _balanced(description):
            faults.append("the description leaves a ( or ` open")
    return faults


async def test_every_operation_has_a_one_sentence_summary(app: Quart, client: Client) -> None:
    """quart-schema takes a docstring's first line as the summary and the rest as the
    description, so a sentence that runs over a line break is cut in the docs page."""
    docstrings = {
        (_openapi_path(rule.rule), method.lower()): inspect.getdoc(
            app.view_functions[rule.endpoint]
        )
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    spec = await (await client.get("/openapi.json")).get_json()
    operations = [
        (f"{method.upper()} {path}", operation, docstrings[(path, method)])
        for path, by_method in spec["paths"].items()
        for method, operation in by_method.items()
    ]
    assert len(operations) > 20  # the walk reached the API, not an empty spec
    faults = [
        f"{where} {operation.get('summary')!r}: {'; '.join(found)}"
        for where, operation, docstring in operations
        if (found := _faults(operation, docstring))
    ]
    assert not faults, "\n".join(faults)


async def test_docs_page_uses_only_local_assets(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "the docs page must not use a CDN"
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', html)
    assert "/docs/assets/swagger-ui-bundle.js" in assets
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(await served.get_data()) > 100
    bundle = await (await client.get("/docs/assets/swagger-ui-bundle.js")).get_data(as_text=True)
    assert "SwaggerUIBundle" in bundle


async def test_other_docs_assets_are_not_served(client: Client) -> None:
    response = await client.get("/docs/assets/index.html")
    assert response.status_code == 404
    for page in ("/redocs", "/scalar"):  # quart-schema's CDN pages are off
        assert (await client.get(page)).status_code == 404
