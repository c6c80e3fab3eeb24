"""Every field of every JSON body and form has a bound: an overlong one is a 400 naming the field
(VALIDATION_ERROR for JSON, the error under the field on a page), never a 500, and a 413 only
past AUTHAPP_MAX_BODY_SIZE."""

from __future__ import annotations

import json
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from annotated_types import MaxLen
from pydantic.fields import FieldInfo
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE

from authapp.models.users import User
from tests.conftest import PASSWORD
from tests.forms import field_error, page_text, post_form, sign_in_from

MakeUser = Callable[..., Awaitable[User]]
TOKEN = "x" * 43  # a token's shape; validation answers before anyone looks it up

EMAIL = "a" * 250 + "@example.com"  # 262 > 254, the longest address
LOGIN_EMAIL = "a" * 309 + "@example.com"  # 321 > 320, what sign-in and lookups take
PASSWORD_1025 = "x" * 1025
NAME_101 = "x" * 101
NINE_SCOPES = ["profile:read"] * 9  # 8 scopes exist (4 of them permissions)

# Numbers and booleans are bounded by their type or a range check, not a length.
UNBOUNDED_BY_LENGTH = {"remember", "expires_in_days"}


def _max_length(annotation: Any, field: FieldInfo | None = None) -> int | None:
    """The max_length a field carries, in its own metadata or inside Optional[Annotated[...]]."""
    metadata = list(field.metadata) if field is not None else []
    metadata += list(getattr(annotation, "__metadata__", ()))
    for item in metadata:
        if isinstance(item, MaxLen) or getattr(item, "max_length", None) is not None:
            return int(item.max_length)
        # Optional[Annotated[str, Field(...)]]: pydantic keeps the inner Field as it is.
        if isinstance(item, FieldInfo) and (found := _max_length(None, item)) is not None:
            return found
    for argument in typing.get_args(annotation):
        if (found := _max_length(argument)) is not None:
            return found
    return None


def test_every_request_field_has_a_max_length(app: Quart) -> None:
    checked = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions[rule.endpoint], QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        if spec is None:
            continue
        model = spec[0]
        for name, field in model.model_fields.items():
            checked.append(f"{rule.rule} {name}")
            if name in UNBOUNDED_BY_LENGTH:
                continue
            assert _max_length(field.annotation, field) is not None, f"{rule.rule} {name}"
    assert len(checked) > 40  # the walk found the models (JSON and forms)


REGISTER = {"email": "b@example.com", "password": PASSWORD}

# (method, path, a valid body, the field made too long, its value)
JSON_FIELDS = [
    ("POST", "/api/auth/register", REGISTER, "email", EMAIL),
    ("POST", "/api/auth/register", REGISTER, "password", PASSWORD_1025),
    ("POST", "/api/auth/register", REGISTER, "display_name", NAME_101),
    ("POST", "/api/auth/login", {"email": "alice@example.com", "password": PASSWORD}, "email",
     LOGIN_EMAIL),
    ("POST", "/api/auth/login", {"email": "alice@example.com", "password": PASSWORD}, "password",
     PASSWORD_1025),
    ("POST", "/api/auth/verify-email", {"token": TOKEN}, "token", "x" * 129),
    ("POST", "/api/auth/verify-email/resend", {"email": "alice@example.com"}, "email",
     LOGIN_EMAIL),
    ("POST", "/api/auth/forgot-password", {"email": "alice@example.com"}, "email", LOGIN_EMAIL),
    ("POST", "/api/auth/reset-password", {"token": TOKEN, "password": PASSWORD}, "token",
     "x" * 129),
    ("POST", "/api/auth/reset-password", {"token": TOKEN, "password": PASSWORD}, "password",
     PASSWORD_1025),
    ("POST", "/api/auth/confirm-email", {"token": TOKEN}, "token", "x" * 129),
    ("PATCH", "/api/me", {"display_name": "Alice"}, "display_name", NAME_101),
    ("POST", "/api/me/password", {"current_password": PASSWORD, "new_password": PASSWORD},
     "current_password", PASSWORD_1025),
    ("POST", "/api/me/password", {"current_password": PASSWORD, "new_password": PASSWORD},
     "new_password", PASSWORD_1025),
    ("POST", "/api/me/email", {"new_email": "b@example.com", "password": PASSWORD}, "new_email",
     EMAIL),
    ("POST", "/api/me/email", {"new_email": "b@example.com", "password": PASSWORD}, "password",
     PASSWORD_1025),
    ("DELETE", "/api/me", {"password": PASSWORD}, "password", PASSWORD_1025),
    ("POST", "/api/auth/reauth", {"password": PASSWORD}, "password", PASSWORD_1025),
    ("POST", "/api/tokens", {"name": "ci", "scopes": ["profile:read"]}, "name", NAME_101),
    ("POST", "/api/tokens", {"name": "ci", "scopes": ["profile:read"]}, "scopes", NINE_SCOPES),
    ("POST", "/api/tokens", {"name": "ci", "scopes": ["profile:read"]}, "expires_in_days",
     10**30),
    # Far past the field's limit but under the body limit: still the field's 400, not a 413.
    ("POST", "/api/auth/register", REGISTER, "password", "x" * 60_000),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "value"),
    JSON_FIELDS,
    ids=[f"{row[1]} {row[3]} {len(str(row[4]))}" for row in JSON_FIELDS],
)
async def test_an_overlong_json_field_is_a_validation_error_naming_it(
    signed_in: Client,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    value: Any,
) -> None:
    response = await signed_in.open(path, method=method, json={**body, field: value})
    assert response.status_code == 400, await response.get_data(as_text=True)
    error = await response.get_json()
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]] == [field]


async def test_a_number_too_long_for_json_is_malformed_json(signed_in: Client) -> None:
    """Python's JSON parser refuses integers of more than 4300 digits, before any field."""
    body = json.dumps({"name": "ci", "scopes": ["profile:read"]})[:-1]
    raw = (body + ', "expires_in_days": ' + "9" * 5000 + "}").encode()
    response = await signed_in.post(
        "/api/tokens", data=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "MALFORMED_JSON"


# (path, a valid form, the field made too long, its value, whether it needs a session)
FORM_FIELDS = [
    ("/auth/login", {"email": "alice@example.com", "password": PASSWORD}, "email", LOGIN_EMAIL,
     False),
    ("/auth/login", {"email": "alice@example.com", "password": PASSWORD}, "password",
     PASSWORD_1025, False),
    ("/auth/register", {"email": "b@example.com", "password": PASSWORD,
                        "password_confirm": PASSWORD}, "email", EMAIL, False),
    ("/auth/register", {"email": "b@example.com", "password": PASSWORD,
                        "password_confirm": PASSWORD}, "display_name", NAME_101, False),
    ("/auth/register", {"email": "b@example.com", "password": PASSWORD,
                        "password_confirm": PASSWORD}, "password", PASSWORD_1025, False),
    ("/auth/register", {"email": "b@example.com", "password": PASSWORD,
                        "password_confirm": PASSWORD}, "password_confirm", PASSWORD_1025, False),
    ("/auth/forgot-password", {"email": "alice@example.com"}, "email", LOGIN_EMAIL, False),
    ("/auth/verify-email/resend", {"email": "alice@example.com"}, "email", LOGIN_EMAIL, False),
    (f"/auth/reset-password/{TOKEN}", {"password": PASSWORD, "password_confirm": PASSWORD},
     "password", PASSWORD_1025, False),
    (f"/auth/reset-password/{TOKEN}", {"password": PASSWORD, "password_confirm": PASSWORD},
     "password_confirm", PASSWORD_1025, False),
    ("/auth/reauth", {"password": PASSWORD}, "password", PASSWORD_1025, True),
    ("/account/profile", {"display_name": "Alice"}, "display_name", NAME_101, True),
    ("/account/password", {"current_password": PASSWORD, "new_password": PASSWORD,
                           "new_password_confirm": PASSWORD}, "current_password",
     PASSWORD_1025, True),
    ("/account/password", {"current_password": PASSWORD, "new_password": PASSWORD,
                           "new_password_confirm": PASSWORD}, "new_password", PASSWORD_1025,
     True),
    ("/account/password", {"current_password": PASSWORD, "new_password": PASSWORD,
                           "new_password_confirm": PASSWORD}, "new_password_confirm",
     PASSWORD_1025, True),
    ("/account/email", {"new_email": "b@example.com", "email_password": PASSWORD}, "new_email",
     EMAIL, True),
    ("/account/email", {"new_email": "b@example.com", "email_password": PASSWORD},
     "email_password", PASSWORD_1025, True),
    ("/account/delete", {"delete_password": PASSWORD}, "delete_password", PASSWORD_1025, True),
    ("/account/tokens", {"name": "ci", "scopes": "profile:read"}, "name", NAME_101, True),
    ("/account/tokens", {"name": "ci", "scopes": "profile:read"}, "scopes", NINE_SCOPES, True),
    ("/account/tokens", {"name": "ci", "scopes": "profile:read"}, "expires_in_days", "9" * 5000,
     True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "form", "field", "value", "signed_in"),
    FORM_FIELDS,
    ids=[f"{row[0]} {row[2]}" for row in FORM_FIELDS],
)
async def test_an_overlong_form_field_shows_its_error_under_it(
    app: Quart,
    make_user: MakeUser,
    path: str,
    form: dict[str, str],
    field: str,
    value: str | list[str],
    signed_in: bool,
) -> None:
    await make_user(display_name="Alice")
    browser = await sign_in_from(app) if signed_in else app.test_client()
    # A CSRF token belongs to the visitor, not the form: any page of theirs gives one.
    page = "/account" if signed_in else "/auth/login"
    response = await post_form(browser, path, {**form, field: value}, page)
    assert response.status_code == 400
    html = await page_text(response)
    assert field_error(html, field), html
