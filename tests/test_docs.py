"""The OpenAPI spec and the docs page, which must render with no internet."""

from __future__ import annotations

import re

from quart.typing import TestClientProtocol as Client


async def test_openapi_describes_the_api(client: Client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    assert spec["info"]["title"] == "authapp"
    assert spec["info"]["version"] == "0.1.0"
    assert {tag["name"] for tag in spec["tags"]} == {"auth", "account", "sessions", "tokens"}
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
        "/api/tokens/{token_id}", "/api/me/events",
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
