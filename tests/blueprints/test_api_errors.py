"""Bad input gets a clear 4xx with a stable code, never a 500 or an HTML traceback."""

from __future__ import annotations

import json

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.conftest import PASSWORD, fetch_val

JSON = {"Content-Type": "application/json"}
ROUTES = ["/api/auth/login", "/api/auth/register"]

# (case, raw body, headers, status, code, field named in details or None)
BAD_BODIES = [
    ("malformed JSON", b'{"email": ', JSON, 400, "MALFORMED_JSON", None),
    ("invalid UTF-8", b'{"email": "\xff\xfe@example.com", "password": "x"}', JSON, 400,
     "INVALID_BODY", None),
    ("nested thousands deep", b"[" * 5000 + b"]" * 5000, JSON, 400, "INVALID_BODY", None),
    ("nested past the limit", b'{"email": ' + b"[" * 40 + b"]" * 40 + b"}", JSON, 400,
     "INVALID_BODY", None),
    ("NaN", b'{"email": "a@example.com", "password": NaN}', JSON, 400, "MALFORMED_JSON", None),
    ("NUL byte", json.dumps({"email": "a\u0000@example.com", "password": PASSWORD}).encode(),
     JSON, 400, "INVALID_BODY", None),
    ("not JSON content type", json.dumps({"email": "a@example.com", "password": PASSWORD}).encode(),
     {"Content-Type": "text/plain"}, 400, "UNSUPPORTED_MEDIA_TYPE", None),
    ("form content type", b"email=a%40example.com&password=x",
     {"Content-Type": "application/x-www-form-urlencoded"}, 400, "UNSUPPORTED_MEDIA_TYPE", None),
    ("no body", b"", JSON, 400, "MALFORMED_JSON", None),
    ("a JSON array", b"[]", JSON, 400, "VALIDATION_ERROR", "body"),
    ("a JSON string", b'"hello"', JSON, 400, "VALIDATION_ERROR", "body"),
    ("email as a list", json.dumps({"email": ["a@example.com"], "password": PASSWORD}).encode(),
     JSON, 400, "VALIDATION_ERROR", "email"),
    ("password null", json.dumps({"email": "a@example.com", "password": None}).encode(), JSON,
     400, "VALIDATION_ERROR", "password"),
    ("password a number", json.dumps({"email": "a@example.com", "password": 123456789012}).encode(),
     JSON, 400, "VALIDATION_ERROR", "password"),
    ("missing password", json.dumps({"email": "a@example.com"}).encode(), JSON, 400,
     "VALIDATION_ERROR", "password"),
    ("empty email", json.dumps({"email": "", "password": PASSWORD}).encode(), JSON, 400,
     "VALIDATION_ERROR", "email"),
    ("unknown field", json.dumps({"email": "a@example.com", "password": PASSWORD, "admin": True})
     .encode(), JSON, 400, "VALIDATION_ERROR", "admin"),
    ("over the body limit", json.dumps({"email": "a@example.com", "password": "x" * 70_000})
     .encode(), JSON, 413, "PAYLOAD_TOO_LARGE", None),
]  # fmt: skip


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("case", "body", "headers", "status", "code", "field"),
    BAD_BODIES,
    ids=[row[0] for row in BAD_BODIES],
)
async def test_bad_bodies(
    client: Client,
    app: Quart,
    route: str,
    case: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    field: str | None,
) -> None:
    response = await client.post(route, data=body, headers=headers)
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.content_type == "application/json"
    payload = await response.get_json()
    assert payload["code"] == code
    assert payload["message"]
    if field is not None:
        assert field in [detail["field"] for detail in payload["details"]]
    assert await fetch_val(app, "SELECT count(*) FROM users") == 0


@pytest.mark.parametrize(
    ("email", "field_type"),
    [
        ("not-an-email", "value_error"),
        ("a@b", "value_error"),  # no dot in the domain
        ("@example.com", "value_error"),
        ("a" * 250 + "@example.com", "string_too_long"),
        ("a\u202e@example.com", "value_error"),  # a right-to-left override
    ],
)
async def test_register_rejects_bad_emails(client: Client, email: str, field_type: str) -> None:
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 400
    details = (await response.get_json())["details"]
    assert details[0]["field"] == "email"
    assert details[0]["type"] == field_type


@pytest.mark.parametrize("display_name", ["", "   ", "x" * 101, "tab\there", "bidi\u202eoverride"])
async def test_register_rejects_bad_display_names(client: Client, display_name: str) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "a@example.com", "password": PASSWORD, "display_name": display_name},
    )
    assert response.status_code == 400
    assert (await response.get_json())["details"][0]["field"] == "display_name"


async def test_unknown_api_path_is_json_404(client: Client) -> None:
    response = await client.get("/api/nothing/here")
    assert response.status_code == 404
    assert await response.get_json() == {"code": "NOT_FOUND", "message": "There is nothing here."}


async def test_wrong_method_is_json_405(client: Client) -> None:
    response = await client.get("/api/auth/login")
    assert response.status_code == 405
    assert (await response.get_json())["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in response.headers["Allow"]


async def test_browser_404_is_an_html_page(client: Client) -> None:
    response = await client.get("/no/such/page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.content_type.startswith("text/html")
    assert "There is nothing here." in await response.get_data(as_text=True)
