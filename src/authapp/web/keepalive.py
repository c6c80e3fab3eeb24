"""The one ASGI layer authapp puts around the app (EdgeMiddleware), next to the server (inside
the proxy fix, when there is one). One pass over each request's headers and one wrapper of its
answer do three things that were three layers:

- the request context (authapp.infra.context): its id, and its client, for every log line and
  security event of the request; the answer carries the id in X-Request-ID;
- the security headers of every answer, and `Cache-Control: no-store` on every answer but
  static files' (which set their own caching): answers are per user;
- keep-alive after an early answer, below.

Keep-alive after an early answer: a request body the app did not wait for is read to its end
(and dropped) before the answer, or the answer says `Connection: close`.

An error answer can come before its request's body has arrived: a wrong method, a body declared
too large, a refused origin, a rate limit. Hypercorn recycles an HTTP/1.1 connection only once
the whole request has been read, so it closed the connection after such an answer without
saying so, and the client's next request on it failed. Quart reads every body message in a
task of its own while the request is served (past MAX_CONTENT_LENGTH it drops them), so waiting
here is enough to read the body. HTTP/2 streams end on their own and need none of this.

No wait here runs past the request's body bound (AUTHAPP_BODY_TIMEOUT from the request's start),
so a client trickling its body holds the connection no longer than that, however the app
answers. A 408 (the app gave up waiting for the body: Quart's BODY_TIMEOUT) always closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from ..infra.context import enter, leave, request_context

# How long a client has to finish a body we will read and drop, before we answer and close
# (less when the body's bound comes sooner).
DRAIN_SECONDS = 5.0
CLOSE = (b"connection", b"close")
# No inline script or style anywhere, so the policy can stay this strict.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
NO_STORE = (b"cache-control", b"no-store")


class _RequestBody:
    """How much of the request's body the app has received, and whether all of it."""

    def __init__(self, headers: dict[bytes, bytes]) -> None:
        length = headers.get(b"content-length")
        self.declared = int(length) if length is not None and length.isdigit() else None
        self.received = 0
        # Without a length or chunks, HTTP/1.1 has no body (h11 refuses other framings).
        self.ended = b"transfer-encoding" not in headers and not self.declared
        self._changed = asyncio.Event()

    def track(self, message: ASGIReceiveEvent) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.ended = self.ended or not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.ended = True  # nothing more will come, and the connection is gone anyway
        self._changed.set()

    async def wait_for_end(self, seconds: float, most_bytes: int) -> bool:
        """Wait until the body ended, more than `most_bytes` of it came (a chunked body says
        no length up front) or `seconds` passed: did it end?"""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self.ended and self.received <= most_bytes:
            self._changed.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._changed.wait()
            except TimeoutError:
                break
        return self.ended


class EdgeMiddleware:
    """Per HTTP request: the request context, the security headers and caching rule, and
    keep-alive. Before an answer starts, waits for the rest of a request body of at most
    `max_body_size`; a larger body, one not finished in DRAIN_SECONDS or by `body_timeout`
    after the request's start, or a 408, gets `Connection: close`. `hsts_max_age` (0: none)
    for answers over https; answers under `cached_prefixes` (static files) keep their own
    caching."""

    def __init__(
        self,
        app: ASGIFramework,
        *,
        max_body_size: int,
        body_timeout: float,
        hsts_max_age: int,
        cached_prefixes: tuple[str, ...],
    ) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout
        self.hsts = (
            (b"strict-transport-security", f"max-age={hsts_max_age}; includeSubDomains".encode())
            if hsts_max_age
            else None
        )
        self.cached_prefixes = cached_prefixes

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)  # the first of repeated headers
        context = request_context(headers, scope.get("client"))
        added = [(b"x-request-id", context.request_id.encode("ascii"))]
        if self.hsts is not None and scope["scheme"] == "https":
            added.append(self.hsts)  # over plain http a browser would ignore it anyway
        cached = scope["path"].startswith(self.cached_prefixes)
        body, deadline = None, 0.0
        if scope["http_version"] in {"1.0", "1.1"}:  # HTTP/2 streams end on their own
            body = _RequestBody(headers)
            deadline = asyncio.get_running_loop().time() + self.body_timeout
            inner = receive

            async def receive_tracked() -> ASGIReceiveEvent:
                message = await inner()
                body.track(message)
                return message

            receive = receive_tracked

        async def send_at_the_edge(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                extra = [*added, *self._missing(message.get("headers", ()), cached)]
                if body is not None and not await self._stays_open(
                    message["status"], body, deadline
                ):
                    extra.append(CLOSE)
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        token = enter(context)
        try:
            await self.app(scope, receive, send_at_the_edge)
        finally:
            leave(token)

    def _missing(
        self, headers: Iterable[tuple[bytes, bytes]], cached: bool
    ) -> list[tuple[bytes, bytes]]:
        """The security headers (and no-store) that the answer does not set itself."""
        names = {}
        for name, value in headers:
            names[name.lower()] = value
        missing = [header for header in SECURITY_HEADERS if header[0] not in names]
        content_type = names.get(b"content-type", b"")
        if content_type.split(b";", 1)[0].strip().lower() == b"text/html" and (
            b"content-security-policy" not in names
        ):
            missing.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
        if not cached and b"cache-control" not in names:
            missing.append(NO_STORE)
        return missing

    async def _stays_open(self, status: int, body: _RequestBody, deadline: float) -> bool:
        """Can the connection take another request after this answer: was (or is, after a
        wait) the request read to its end?"""
        if status == 408:  # the client was too slow; RFC 9110 asks to close
            return False
        if body.ended:
            return True
        if body.declared is not None and body.declared > self.max_body_size:
            return False
        seconds = min(DRAIN_SECONDS, deadline - asyncio.get_running_loop().time())
        return await body.wait_for_end(seconds, self.max_body_size)
