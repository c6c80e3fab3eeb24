"""The app and request classes: strict JSON and form parsing, so bad bodies are clear 400s and
never 500s; the cookie session's interface; and two of Quart's per-request steps made cheaper."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from inspect import CO_COROUTINE
from types import FunctionType, MethodType
from typing import Any, cast

import orjson
from flask.json.provider import DefaultJSONProvider
from hypercorn.typing import ASGISendCallable
from itsdangerous import Serializer, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.url_safe import URLSafeSerializerMixin
from quart import Quart, Request, Response, request
from quart.asgi import ASGIHTTPConnection, _handle_exception
from quart.sessions import SecureCookieSessionInterface
from quart.typing import ResponseTypes
from werkzeug.datastructures import MultiDict

from ..errors import APIError

MAX_JSON_DEPTH = 32
# As hypercorn.toml's h11_max_incomplete_size, which h11 applies only to headers that arrive in
# pieces: a 20 KiB block that arrives at once passes it, so the app counts too.
MAX_HEADER_BYTES = 16 * 1024


async def refuse_oversized_headers() -> None:
    # Counted in the ASGI scope's bytes, as they came: decoding them (request.headers) and
    # quoting the path again (request.full_path) cost every request more than the count.
    scope = request.scope
    size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
    if size + target > MAX_HEADER_BYTES:
        raise APIError(431, "HEADERS_TOO_LARGE", "The request's headers are too large.")


def _bad_body(code: str, message: str) -> APIError:
    return APIError(400, code, message)


def _check_tree(value: Any) -> None:
    """Refuse deep nesting and NUL characters (PostgreSQL text cannot hold them) in one walk."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise _bad_body("INVALID_BODY", "The body contains a NUL character.")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _bad_body("INVALID_BODY", f"JSON is nested deeper than {MAX_JSON_DEPTH}.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class AuthappRequest(Request):
    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """Parse the body as JSON, answering 400 (never 500) for anything that is not plain JSON.

        Quart's own parser lets a RecursionError (deep nesting) escape as a 500 and, being
        called without a JSON content type, hands quart-schema a None it reports poorly.
        """
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        try:
            result = await self._parse_json(force)
        except APIError:
            if not silent:
                raise
            result = None
        if cache:
            self._cached_json[silent] = result
        return result

    async def _parse_json(self, force: bool) -> Any:
        if not (force or self.is_json):
            raise APIError(
                400,
                "UNSUPPORTED_MEDIA_TYPE",
                "Send the body as JSON (Content-Type: application/json).",
            )
        raw = cast(bytes, await self.get_data(cache=True, as_text=False))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad_body("INVALID_BODY", "The body is not valid UTF-8.") from None
        try:
            # NaN and Infinity are not JSON; Python accepts them unless told otherwise.
            result = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:
            raise _bad_body("INVALID_BODY", "JSON is nested too deeply.") from None
        except ValueError:
            raise _bad_body("MALFORMED_JSON", "The body is not valid JSON.") from None
        _check_tree(result)
        return result

    async def _load_form_data(self) -> None:
        """Parse a form as Quart does, refusing NUL characters as the JSON parser does: no
        field of ours may hold one, and PostgreSQL text cannot."""
        await super()._load_form_data()
        form = cast(MultiDict[str, str], self._form)
        if any("\x00" in key or "\x00" in value for key, value in form.items(multi=True)):
            raise _bad_body("INVALID_BODY", "The form contains a NUL character.")


def signing_keys(app: Quart) -> tuple[str, ...]:
    """The keys that sign the app's cookies and form tokens, as itsdangerous takes them: the
    fallbacks (AUTHAPP_SECRET_KEY_FALLBACKS), which still verify after a rotation, then the
    current key, last, which signs."""
    return (*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.config["SECRET_KEY"])


class _WithoutZlib(URLSafeSerializerMixin):
    """itsdangerous' URL-safe payload without its zlib pass, which set up a deflate stream for
    every value it signed (about 256 KiB allocated and zeroed, 15-50 µs a cookie) to save a
    few bytes of a short value, and none of a random token. Loading is unchanged, so values
    signed compressed before still load."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


class PlainSerializer(_WithoutZlib, URLSafeSerializer):
    """URLSafeSerializer, uncompressed (see _WithoutZlib)."""


class PlainTimedSerializer(_WithoutZlib, URLSafeTimedSerializer):
    """URLSafeTimedSerializer, uncompressed (see _WithoutZlib)."""


class CachedSessionInterface(SecureCookieSessionInterface):
    """Quart's signed cookie session (the CSRF token and flash messages), with its serializer
    made once per set of keys instead of once per request: building one signs a probe value
    to learn its type, a twentieth of a bare request on every request, the API's included."""

    _cached: tuple[tuple[object, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Quart) -> URLSafeTimedSerializer | None:
        keys = signing_keys(app)
        cached = self._cached
        if cached is None or cached[0] != keys:
            cached = self._cached = (keys, super().get_signing_serializer(app))
        return cached[1]


class FastJSONProvider(DefaultJSONProvider):
    """The app's JSON (quart-schema's provider: its `default` turns dates, models and the
    rest into JSON through pydantic), with its answers' bodies written by orjson: a tenth of
    the CPU of `json.dumps` with sorted keys, about 10 µs of a small answer. The same JSON,
    keys sorted, but non-ASCII characters as UTF-8 rather than `\\u` escapes (a JSON parser
    sees no difference). Dates and dataclasses still go through `default`, as before;
    indented answers (debug) still through `json.dumps`."""

    def __init__(self, app: Quart, default: Callable[[Any], Any]) -> None:
        super().__init__(app)
        self.default = default

    _OPTIONS = (
        orjson.OPT_SORT_KEYS
        | orjson.OPT_NON_STR_KEYS  # as json.dumps: the spec's status codes are ints
        | orjson.OPT_APPEND_NEWLINE
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
    )

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if self.compact is False or (self.compact is None and self._app.debug):
            return cast(Response, super().response(*args, **kwargs))
        body = orjson.dumps(
            self._prepare_response_obj(args, kwargs), default=self.default, option=self._OPTIONS
        )
        return cast(Response, cast(Any, self._app).response_class(body, mimetype=self.mimetype))


class AuthappHTTPConnection(ASGIHTTPConnection):
    """Quart's HTTP connection, which on Python 3.11 sent every answer through
    `asyncio.wait_for`: a task of its own per request, started on a later turn of the loop,
    only to bound how long sending may take (RESPONSE_TIMEOUT, or the response's own). The
    same bound by `asyncio.timeout`, in the request's task, as `wait_for` itself does from
    Python 3.12: 58 k instructions a request, a fifteenth of `/healthz` in process. Otherwise
    Quart 0.22's method line for line (tests/test_request_overhead.py compares them). Used on
    Python 3.11 only, which Quart 0.23 (3.13 and later) does not run on."""

    async def handle_request(self, request: Request, send: ASGISendCallable) -> None:
        try:
            response: ResponseTypes = await self.app.handle_request(request)
        except Exception as error:
            response = await _handle_exception(self.app, error)

        if isinstance(response, Response) and response.timeout != Ellipsis:
            timeout = cast(float | None, response.timeout)
        else:
            timeout = self.app.config["RESPONSE_TIMEOUT"]
        try:
            async with asyncio.timeout(timeout):
                await self._send_response(send, response)
        except TimeoutError:
            pass


class AuthappQuart(Quart):
    """Quart, answering `ensure_async` for a plain `async def` (function or bound method) by
    its code's flag. Quart asks it of every hook and view on every request (ten times for
    `/api/me`), and `asyncio.iscoroutinefunction` unwraps partials and looks for markers each
    time: 31 k instructions a request. Anything else (sync functions, partials, marked or
    wrapped callables) goes to Quart's answer as before. Nothing is remembered, so a view
    made per request (a class-based view's bound method) holds nothing alive."""

    asgi_http_class = AuthappHTTPConnection if sys.version_info < (3, 12) else ASGIHTTPConnection

    def ensure_async(self, func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        kind = type(func)
        if (kind is FunctionType or kind is MethodType) and (
            cast(FunctionType, func).__code__.co_flags & CO_COROUTINE
        ):
            return func
        return super().ensure_async(func)
