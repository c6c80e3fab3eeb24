"""What authapp adds to every request, and the library overrides that keep it small: pinned
here, so an upgrade of Quart, itsdangerous or quart-auth that changes what they rely on fails
a test rather than a sign-in."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from quart import Quart
from quart.sessions import SecureCookieSessionInterface
from quart.typing import TestClientProtocol as Client
from quart_auth import QuartAuth

from authapp.web.guards import AuthappAuth
from authapp.web.wrappers import CachedSessionInterface
from tests.conftest import PASSWORD
from tests.forms import csrf_from


def test_the_session_serializer_is_made_once_per_set_of_keys(app: Quart) -> None:
    interface = app.session_interface
    assert isinstance(interface, CachedSessionInterface)
    first = interface.get_signing_serializer(app)
    assert first is not None
    assert interface.get_signing_serializer(app) is first
    # It is the serializer Quart would make: what one signs, the other reads.
    fresh = SecureCookieSessionInterface().get_signing_serializer(app)
    assert fresh is not None
    assert fresh.loads(first.dumps({"csrf": "x"})) == {"csrf": "x"}
    # New keys (a rotation in a test app) make a new one, which still reads the old key's.
    signed = first.dumps({"csrf": "y"})
    app.config["SECRET_KEY_FALLBACKS"] = [app.secret_key]
    app.secret_key = "another secret key of enough length for the test"
    rotated = interface.get_signing_serializer(app)
    assert rotated is not first
    assert rotated is not None
    assert rotated.loads(signed) == {"csrf": "y"}


def test_quart_still_asks_the_interface_for_its_serializer() -> None:
    # The override is of this method; Quart's open and save go through it.
    assert list(
        inspect.signature(SecureCookieSessionInterface.get_signing_serializer).parameters
    ) == [
        "self",
        "app",
    ]
    for method in ("open_session", "save_session"):
        assert "get_signing_serializer" in inspect.getsource(
            getattr(SecureCookieSessionInterface, method)
        )


async def test_a_form_token_survives_the_cached_serializer(client: Client) -> None:
    token = await csrf_from(client)
    response = await client.post(
        "/auth/forgot-password", form={"csrf_token": token, "email": "x@example.com"}
    )
    assert response.status_code in {200, 302}


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each time quart-auth resolves who is calling (a spy: the real method still runs)."""
    seen: list[str] = []
    resolve = AuthappAuth.resolve_user

    def counting(self: AuthappAuth) -> Any:
        seen.append("resolved")
        return resolve(self)

    monkeypatch.setattr(AuthappAuth, "resolve_user", counting)
    return seen


async def test_a_request_that_never_asks_who_calls_resolves_nobody(
    client: Client, resolutions: list[str]
) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert resolutions == []
    assert response.headers.getlist("Set-Cookie") == []


async def test_signing_in_and_out_still_writes_and_clears_the_cookie(
    client: Client, make_user: Any, resolutions: list[str]
) -> None:
    await make_user()
    body = {"email": "alice@example.com", "password": PASSWORD}
    signed_in = await client.post("/api/auth/login", json=body)
    assert any(
        v.startswith("__Host-authapp_session=") for v in signed_in.headers.getlist("Set-Cookie")
    )
    signed_out = await client.post("/api/auth/logout")
    cleared = [
        v
        for v in signed_out.headers.getlist("Set-Cookie")
        if v.startswith("__Host-authapp_session=")
    ]
    assert len(cleared) == 1
    assert "Max-Age=0" in cleared[0] or "expires=Thu, 01 Jan 1970" in cleared[0]


def test_quart_auth_keeps_the_user_on_g_where_the_override_looks(app: Quart) -> None:
    # after_request skips when `g` has no user: login_user and logout_user both put it there,
    # under the extension's attribute (renew_login goes through current_user, which loads it).
    for method in ("login_user", "logout_user"):
        source = inspect.getsource(getattr(QuartAuth, method))
        assert "setattr(g, self.attribute_name, user)" in source
    assert isinstance(app.extensions["QUART_AUTH"][0], AuthappAuth)
