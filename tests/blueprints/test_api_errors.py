"""Bad input gets a clear 4xx with a stable code, never a 500 or an HTML traceback.

Bad bodies on every route (malformed, nested, wrong types, content types, sizes) are the
attack table's, in tests/test_attacks.py; here the rules of particular fields and paths."""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol as Client

from tests.conftest import PASSWORD


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
