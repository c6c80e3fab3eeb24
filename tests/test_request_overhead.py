"""What authapp adds to every request, and the library overrides that keep it small: pinned
here, so an upgrade of Quart, itsdangerous or quart-auth that changes what they rely on fails
a test rather than a sign-in."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
import quart.app
import quart_schema.conversion
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer
from quart import Quart
from quart.asgi import ASGIHTTPConnection
from quart.sessions import SecureCookieSessionInterface
from quart.typing import TestClientProtocol as Client
from quart_auth import QuartAuth
from quart_schema.extension import create_json_provider

import authapp.extensions
import authapp.web.guards
from authapp.extensions import _model_dump
from authapp.web.guards import AuthappAuth
from authapp.web.wrappers import (
    AuthappHTTPConnection,
    AuthappQuart,
    CachedSessionInterface,
    PlainSerializer,
    PlainTimedSerializer,
)
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


def test_the_auth_cookie_serializer_is_made_once_per_set_of_keys(app: Quart) -> None:
    (auth,) = app.extensions["QUART_AUTH"]
    assert isinstance(auth, AuthappAuth)
    first = auth._serializer_of(app)
    assert auth._serializer_of(app) is first
    # What it signs, quart-auth's own way reads, and the other way round.
    token = auth.dump_token("session-token", app)
    assert QuartAuth.load_token(auth, token, app) == "session-token"
    assert auth.load_token(QuartAuth.dump_token(auth, "other", app), app) == "other"
    assert auth.load_token(token + "x", app) is None
    # A new key makes a new one, which still reads cookies signed under the old key.
    app.config["SECRET_KEY_FALLBACKS"] = [app.secret_key]
    app.secret_key = "another secret key of enough length for the test"
    assert auth._serializer_of(app) is not first
    assert auth.load_token(token, app) == "session-token"
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert auth.load_token(token, app) is None


def test_quart_auth_still_reads_and_writes_cookies_through_its_token_methods() -> None:
    # The overrides are of these two; the cookie's paths go through them.
    for method in ("load_token", "dump_token"):
        assert list(inspect.signature(getattr(QuartAuth, method)).parameters) == [
            "self",
            "token" if method == "load_token" else "auth_id",
            "app",
        ]
    assert "self.load_token(" in inspect.getsource(QuartAuth.load_cookie)
    assert "self.dump_token(" in inspect.getsource(QuartAuth.after_request)


async def test_a_plain_json_answer_skips_quart_schemas_conversion(
    client: Client, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quart-schema converts every answer through pydantic; a dict of plain values and the
    absent headers go around it (authapp.extensions._model_dump), models still through it.
    This also pins the name quart-schema's answers look up."""
    assert quart_schema.conversion.model_dump is _model_dump
    assert "model_dump(" in inspect.getsource(quart_schema.conversion.convert_response_return_value)
    converted: list[object] = []

    def counted(raw: object, **options: Any) -> Any:
        converted.append(raw)
        return original(raw, **options)

    original = authapp.extensions._quart_schema_model_dump
    monkeypatch.setattr(authapp.extensions, "_quart_schema_model_dump", counted)
    answer = await client.get("/healthz")
    assert await answer.get_json() == {"status": "alive"}
    assert converted == []
    await make_user()
    await client.post("/api/auth/login", json={"email": "alice@example.com", "password": PASSWORD})
    converted.clear()
    me = await client.get("/api/me")
    assert (await me.get_json())["email"] == "alice@example.com"
    assert [type(raw).__name__ for raw in converted] == ["UserOut"]


def test_fast_json_answers_are_the_json_module_answers(app: Quart) -> None:
    """FastJSONProvider writes what quart-schema's provider (json.dumps) wrote."""
    value = {
        "z": [1, 2.5, None, True],
        "a": "café ✓ \u2028",
        "when": datetime(2026, 12, 1, 6, 0, tzinfo=UTC),
        "id": UUID("0b1d20b0-1111-2222-3333-444455556666"),
        "nested": {"b": 1, "a": {"y": "x"}},
        "statuses": {200: "OK", 404: "Not Found"},  # the spec's keys
    }

    async def answer() -> tuple[bytes, bytes]:
        async with app.app_context():
            fast = await app.json.response(value).get_data()
            slow = await create_json_provider(app).response(value).get_data()
        return fast, slow

    fast, slow = asyncio.run(answer())
    assert json.loads(fast) == json.loads(slow)
    assert list(json.loads(fast)) == [
        "a",
        "id",
        "nested",
        "statuses",
        "when",
        "z",
    ]  # sorted, as before
    assert fast.endswith(b"}\n")


def test_a_checked_cookie_is_remembered_but_its_age_still_counts(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AuthappAuth.load_token checks a cookie's signature once, then only its age."""
    (auth,) = app.extensions["QUART_AUTH"]
    token = auth.dump_token("session-token", app)
    checked: list[str] = []
    serializer = auth._serializer_of(app)
    loads = serializer.loads

    def counted(value: str, **options: Any) -> Any:
        checked.append(value)
        return loads(value, **options)

    monkeypatch.setattr(serializer, "loads", counted)
    assert auth.load_token(token, app) == "session-token"
    assert auth.load_token(token, app) == "session-token"
    assert checked == [token]
    # Tampered: refused, checked each time, never remembered.
    assert auth.load_token(token[:-2] + "xx", app) is None
    assert auth.load_token(token[:-2] + "xx", app) is None
    assert len(checked) == 3
    # Older than the longest session: refused, remembered or not.
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + auth.duration + 5)
    assert auth.load_token(token, app) is None
    monkeypatch.setattr(time, "time", lambda: now - 60)  # a clock set back: not yet signed
    assert auth.load_token(token, app) is None


def test_the_remembered_cookies_are_bounded_and_forgotten_with_the_keys(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    (auth,) = app.extensions["QUART_AUTH"]
    monkeypatch.setattr(authapp.web.guards, "VERIFIED_COOKIES", 3)
    tokens = [auth.dump_token(f"session-{n}", app) for n in range(5)]
    for token in tokens:
        assert auth.load_token(token, app) is not None
    assert list(auth._verified) == tokens[2:]  # the oldest went first
    app.config["SECRET_KEY_FALLBACKS"] = []
    app.secret_key = "a new key, with the old one dropped, of enough length"
    assert auth.load_token(tokens[-1], app) is None
    assert auth._verified == {}


def test_cookies_and_form_tokens_are_signed_without_zlib_and_read_as_before() -> None:
    """itsdangerous' URL-safe serializers compress every value they sign (a deflate stream set
    up per value); ours sign the same JSON plainly and still load compressed values."""
    value = {"token": "x" * 200}  # compresses well: the stock serializer does
    stock = URLSafeTimedSerializer("key", salt="salt")
    assert stock.dumps(value).startswith(".")  # what the override exists to skip
    plain = PlainTimedSerializer("key", salt="salt")
    signed = plain.dumps(value)
    assert not signed.startswith(".")
    assert stock.loads(signed) == plain.loads(stock.dumps(value)) == value
    devices = PlainSerializer("key", salt="salt")
    assert URLSafeSerializer("key", salt="salt").loads(devices.dumps(value)) == value


def test_the_session_cookie_serializer_is_quart_auths_without_zlib(app: Quart) -> None:
    """Pins quart-auth's private `_AuthSerializer` (HMAC-SHA512), which ours extends: its
    cookies and ours read each other's."""
    from quart_auth.extension import _AuthSerializer

    assert QuartAuth.serializer_class is _AuthSerializer
    auth = next(ext for ext in app.extensions["QUART_AUTH"] if isinstance(ext, AuthappAuth))
    ours = auth.serializer_class(["key"], "quart auth salt")
    theirs = _AuthSerializer(["key"], "quart auth salt")
    assert issubclass(type(ours), _AuthSerializer)
    assert ours.loads(theirs.dumps("a" * 43)) == theirs.loads(ours.dumps("a" * 43)) == "a" * 43
    assert not ours.dumps("a" * 200).startswith(".")


# --- Quart's own steps (web/wrappers.py: AuthappQuart, AuthappHTTPConnection) --------------


def test_the_app_is_authapps_quart(app: Quart) -> None:
    assert isinstance(app, AuthappQuart)
    # From Python 3.12 `wait_for` makes no task, and Quart's own connection is as cheap.
    ours = sys.version_info < (3, 12)
    assert app.asgi_http_class is (AuthappHTTPConnection if ours else ASGIHTTPConnection)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the override serves Python 3.11 only")
def test_the_connection_is_quarts_but_for_how_it_bounds_the_send() -> None:
    """The override copies Quart's `handle_request`: an upgrade that changes it fails here."""
    theirs = inspect.getsource(ASGIHTTPConnection.handle_request)
    ours = inspect.getsource(AuthappHTTPConnection.handle_request)
    bounded = (
        "            await asyncio.wait_for(self._send_response(send, response), timeout=timeout)\n"
    )
    assert bounded in theirs
    assert (
        ours.replace("response: ResponseTypes = await", "response = await").replace(
            "            async with asyncio.timeout(timeout):\n"
            "                await self._send_response(send, response)\n",
            bounded,
        )
        == theirs
    )


async def _serve_once(
    app: Quart,
    path: str,
    send: Callable[[dict[str, Any]], Awaitable[None]],
    disconnect_after: float | None = None,
) -> None:
    """One request over ASGI, as Hypercorn calls the app: the client goes (http.disconnect)
    once the answer is complete, or after `disconnect_after` seconds."""
    done = asyncio.Event()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def sent(message: dict[str, Any]) -> None:
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    if disconnect_after is not None:
        asyncio.get_running_loop().call_later(disconnect_after, done.set)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80), "extensions": {},
    }  # fmt: skip
    try:
        await asyncio.wait_for(app(scope, receive, sent), timeout=10)  # type: ignore[arg-type]
    finally:
        done.set()


async def test_an_answer_is_sent_by_the_task_that_made_it() -> None:
    """No task of its own per answer (Quart's `wait_for`, on Python 3.11)."""
    app = AuthappQuart(__name__)
    tasks: dict[str, asyncio.Task[Any] | None] = {}

    @app.get("/")
    async def index() -> str:
        tasks["view"] = asyncio.current_task()
        return "hello"

    async def send(message: dict[str, Any]) -> None:
        tasks.setdefault("send", asyncio.current_task())

    await _serve_once(app, "/", send)
    assert tasks["send"] is not None
    assert tasks["send"] is tasks["view"]


async def test_a_send_that_stalls_is_still_abandoned_at_the_response_timeout() -> None:
    app = AuthappQuart(__name__)
    app.config["RESPONSE_TIMEOUT"] = 0.2
    sent: list[str] = []
    abandoned: list[float] = []

    @app.get("/")
    async def index() -> str:
        return "hello"

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "http.response.body":
            try:
                await asyncio.sleep(60)  # a client that stopped reading
            except asyncio.CancelledError:
                abandoned.append(time.monotonic() - started)
                raise

    started = time.monotonic()
    await _serve_once(app, "/", send, disconnect_after=1.5)
    assert sent == ["http.response.start", "http.response.body"]
    assert len(abandoned) == 1
    assert abandoned[0] < 1.0  # at the timeout (0.2 s), long before the client went


class _Resource:
    async def fetch(self) -> str:
        return "async method"

    def read(self) -> str:
        return "sync method"

    async def __call__(self) -> str:
        return "async callable"


async def _fetch(value: str) -> str:
    return value


def _read() -> str:
    return "sync"


async def test_ensure_async_answers_as_quarts_and_skips_its_check_for_async_defs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours, theirs = AuthappQuart(__name__), Quart(__name__)
    resource = _Resource()

    @functools.wraps(_fetch)
    def wrapped(value: str) -> Awaitable[str]:  # sync, returning an awaitable
        return _fetch(value)

    callables: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (_fetch, ("f",)), (resource.fetch, ()), (_read, ()), (resource.read, ()),
        (resource, ()), (functools.partial(_fetch, "p"), ()), (wrapped, ("w",)),
    ]  # fmt: skip
    for func, args in callables:
        made, stock = ours.ensure_async(func), theirs.ensure_async(func)
        assert (made is func) == (stock is func), func
        async with ours.app_context(), theirs.app_context():
            assert await _outcome(made(*args)) == await _outcome(stock(*args))
    # A plain async def never reaches Quart's check (the instructions it cost).
    monkeypatch.setattr(quart.app, "iscoroutinefunction", _refuse)
    assert ours.ensure_async(_fetch) is _fetch
    assert ours.ensure_async(resource.fetch) == resource.fetch
    with pytest.raises(AssertionError, match="asked"):
        theirs.ensure_async(_fetch)


async def _outcome(awaitable: Awaitable[Any]) -> Any:
    """What a call comes to (Quart runs an object with an async __call__ as a sync function,
    on a thread, and answers the coroutine it returns, as ours does)."""
    result = await awaitable
    return await result if inspect.iscoroutine(result) else result


def _refuse(func: object) -> bool:
    raise AssertionError(f"asked of {func!r}")
